// A device, as a customer would write it: the official Azure IoT DPS device SDK over HTTPS, symmetric key.
// Usage (see the `npm start` banner for ready values):
//   NODE_EXTRA_CA_CERTS=.dev/certs/ca.pem node -r ./dev/hostPortShim.cjs dev/exampleDevice.cjs \
//     <host[:port]> <idScope> <registrationId> (--device-key <base64> | --group-key <base64>)
// Against a DPS on port 443 with a trusted certificate, neither the shim nor NODE_EXTRA_CA_CERTS is needed.
'use strict';
const { createHmac } = require('node:crypto');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const [host, idScope, registrationId, flag, key] = process.argv.slice(2);
if (!host || !idScope || !registrationId || !['--device-key', '--group-key'].includes(flag ?? '') || !key) {
  console.error('usage: exampleDevice.cjs <host[:port]> <idScope> <registrationId> (--device-key K | --group-key K)');
  process.exit(2);
}
// A device in a group derives its own key: base64(HMAC-SHA256(base64decode(groupKey), registrationId)).
const deviceKey =
  flag === '--group-key'
    ? createHmac('sha256', Buffer.from(key, 'base64')).update(registrationId).digest('base64')
    : key;

const client = ProvisioningDeviceClient.create(
  host,
  idScope,
  new Http(),
  new SymmetricKeySecurityClient(registrationId, deviceKey),
);
client.setProvisioningPayload({ modelId: 'dtmi:openDps:example;1' });
client
  .register()
  .then((state) => {
    console.log(`assigned to ${state.assignedHub} as ${state.deviceId} (${state.substatus})`);
    console.log(JSON.stringify(state, null, 2));
  })
  .catch((err) => {
    console.error(`registration failed: ${err.message}`);
    process.exit(1);
  });
