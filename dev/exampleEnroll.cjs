// An operator, as a customer would write it: the official DPS service SDK (azure-iot-provisioning-service).
// Usage (the `npm start` banner prints ready values):
//   NODE_EXTRA_CA_CERTS=.dev/certs/ca.pem node -r ./dev/hostPortShim.cjs dev/exampleEnroll.cjs \
//     "<service connection string>" (individual <registrationId> | group <enrollmentGroupId>)
// Prints the enrollment and its generated keys (fetched through the attestation mechanism, the only call that
// returns keys).
'use strict';
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');

const [connectionString, kind, id] = process.argv.slice(2);
if (!connectionString || !['individual', 'group'].includes(kind ?? '') || !id) {
  console.error(
    'usage: exampleEnroll.cjs "<connection string>" (individual <registrationId> | group <enrollmentGroupId>)',
  );
  process.exit(2);
}

async function main() {
  const dps = ProvisioningServiceClient.fromConnectionString(connectionString);
  const attestation = { type: 'symmetricKey' }; // keys left out: the service generates 64-byte keys
  const initialTwin = { tags: { enrolledBy: 'exampleEnroll' } };
  if (kind === 'individual') {
    const { responseBody } = await dps.createOrUpdateIndividualEnrollment({
      registrationId: id,
      attestation,
      initialTwin,
    });
    console.log(JSON.stringify(responseBody, null, 2));
    const keys = (await dps.getIndividualEnrollmentAttestationMechanism(id)).responseBody.symmetricKey;
    console.log(`device key (primary): ${keys.primaryKey}`);
  } else {
    const { responseBody } = await dps.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: id,
      attestation,
      initialTwin,
    });
    console.log(JSON.stringify(responseBody, null, 2));
    const keys = (await dps.getEnrollmentGroupAttestationMechanism(id)).responseBody.symmetricKey;
    console.log(`group key (primary): ${keys.primaryKey}`);
    console.log(
      'devices derive their key: base64(HMAC-SHA256(base64decode(groupKey), registrationId)); exampleDevice.cjs --group-key does it',
    );
  }
}

main().catch((err) => {
  console.error(`enrollment failed: ${err.responseBody ?? err.message}`);
  process.exit(1);
});
