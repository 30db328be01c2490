// TPM attestation end to end: the official TPM client (azure-iot-security-tpm on swtpm) and device SDK
// (azure-iot-provisioning-device-http) register against the dev stack; refusals (wrong EK, replaced challenge,
// another key) are 401s, which say why once the request shows the enrolled EK.
import { createHmac, randomBytes } from 'node:crypto';

import { ProvisioningDeviceClient } from 'azure-iot-provisioning-device';
import { Http } from 'azure-iot-provisioning-device-http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { decodeTpmPublicKey, defaultTpmRegistrationId } from '../../shared/attestation/tpm/publicKey';
import { createSas } from '../../shared/http/sas';
import type { RawResponse } from '../support/rawHttps';
import { rawRequest } from '../support/rawHttps';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';
import type { SoftwareTpm } from '../support/swtpm';
import { startSoftwareTpm } from '../support/swtpm';
import type { OfficialTpmClient } from '../support/tpmClient';
import { bounded, startOfficialTpmClient } from '../support/tpmClient';
import { foreignEndorsementKey } from '../support/tpmKeys';

interface TpmRegistration {
  status: string;
  registrationState: {
    registrationId: string;
    assignedHub: string;
    deviceId: string;
    status: string;
    tpm?: { authenticationKey: string };
  };
}

describe('TPM attestation with the official TPM client on swtpm', () => {
  let stack: Stack;
  let tpm: SoftwareTpm;
  let device: OfficialTpmClient;
  let ek: string;
  let srk: string;
  let registrationId: string;
  const service = serviceCaller(() => stack);

  const put = (body: unknown, authorization?: string): Promise<RawResponse> =>
    rawRequest(
      stack.deviceEndpoint,
      'PUT',
      `/${stack.idScope}/registrations/${registrationId}/register?api-version=2019-03-31`,
      JSON.stringify(body),
      { 'Content-Type': 'application/json', ...(authorization ? { Authorization: authorization } : {}) },
    );
  /** A SAS as the Node TPM client builds it: URL-encoded sr, signed inside the TPM with the imported key. */
  const tpmSas = async (): Promise<string> => {
    const sr = encodeURIComponent(`${stack.idScope}/registrations/${registrationId}`);
    const se = Math.floor(Date.now() / 1000) + 3600;
    const sig = await device.sign(Buffer.from(`${sr}\n${se}`));
    return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig.toString('base64'))}&se=${se}&skn=registration`;
  };
  const challenge = async (): Promise<string> => {
    const res = await put({ registrationId, tpm: { endorsementKey: ek, storageRootKey: srk } });
    expect(res.status).toBe(401);
    const body = res.json as { authenticationKey: string; keyName: string; status?: unknown };
    expect(body.keyName).toBe('registration');
    expect(body).not.toHaveProperty('status'); // the C SDK refuses a challenge with a status field
    return body.authenticationKey;
  };

  beforeAll(async () => {
    [stack, tpm] = await Promise.all([startTestStack({ hubs: { count: 1 } }), startSoftwareTpm()]);
    const keys = await tpm.provision();
    ek = keys.ek.toString('base64');
    srk = keys.srk.toString('base64');
    registrationId = defaultTpmRegistrationId(decodeTpmPublicKey(ek));
    const enrolled = await service('PUT', `/enrollments/${registrationId}`, {
      registrationId,
      attestation: { type: 'tpm', tpm: { endorsementKey: ek } },
    });
    expect(enrolled.status).toBe(200);
    device = await startOfficialTpmClient(tpm);
  });

  afterAll(async () => {
    await device?.stop();
    await tpm?.stop();
    await stack?.stop();
  });

  it('registers with the official SDK: assigned, tpm.authenticationKey, and a hub identity keyed to it', async () => {
    const transport = new Http();
    transport.setTransportOptions({ pollingInterval: 50 });
    const client = ProvisioningDeviceClient.create(stack.deviceEndpoint, stack.idScope, transport, device.client);
    // The TPM client's register() resolves with the whole operation; it never settles on some failures: bound it.
    const result = await bounded<TpmRegistration>((cb) => {
      (client.register() as unknown as Promise<TpmRegistration>).then((r) => cb(null, r), cb);
    }, 20_000);
    expect(result.status).toBe('assigned');
    const state = result.registrationState;
    expect(state.registrationId).toBe(registrationId);
    expect(state.tpm?.authenticationKey).toMatch(/^[A-Za-z0-9+/]+=*$/);
    // The SDK activated the hub blob last: the TPM now signs with the key the hub device was created with.
    const hubDevice = stack.hubs[0]?.device(state.deviceId) as
      { authentication: { type: string; symmetricKey: { primaryKey: string } } } | undefined;
    expect(hubDevice?.authentication.type).toBe('sas');
    const hubKey = Buffer.from(hubDevice?.authentication.symmetricKey.primaryKey ?? '', 'base64');
    expect(hubKey).toHaveLength(32);
    const data = Buffer.from(`${state.assignedHub}/devices/${state.deviceId}\n1800000000`);
    expect(await device.sign(data)).toEqual(createHmac('sha256', hubKey).update(data).digest());
  });

  it('refuses an EK that is not the enrolled one, as an unknown one (enrollments are not revealed)', async () => {
    const res = await put({ registrationId, tpm: { endorsementKey: foreignEndorsementKey(), storageRootKey: srk } });
    expect(res.status).toBe(401);
    expect((res.json as { message: string }).message).toMatch(/endorsement key is not enrolled for registration ID/);
    expect(res.json).not.toHaveProperty('authenticationKey');
  });

  it('refuses an EK with no TPM enrollment, and a malformed EK with a 400 naming the field', async () => {
    const other = decodeTpmPublicKey(foreignEndorsementKey());
    const unknown = await rawRequest(
      stack.deviceEndpoint,
      'PUT',
      `/${stack.idScope}/registrations/${defaultTpmRegistrationId(other)}/register?api-version=2019-03-31`,
      JSON.stringify({ tpm: { endorsementKey: other.tpm2b.toString('base64'), storageRootKey: srk } }),
      { 'Content-Type': 'application/json' },
    );
    expect(unknown.status).toBe(401);
    expect((unknown.json as { message: string }).message).toMatch(/endorsement key is not enrolled/);
    const bad = await put({ registrationId, tpm: { endorsementKey: ek.slice(0, 100), storageRootKey: srk } });
    expect(bad.status).toBe(400);
    expect((bad.json as { message: string }).message).toMatch(/'tpm\.endorsementKey'.*RSA-2048 TPM2B_PUBLIC/);
  });

  it('needs the SRK: neither the device nor the enrollment gave one', async () => {
    const res = await put({ registrationId, tpm: { endorsementKey: ek } });
    expect(res.status).toBe(401);
    expect((res.json as { message: string }).message).toMatch(/storage root key is missing/);
  });

  it('accepts only the latest challenge: a replaced challenge or another key is refused, then the latest works', async () => {
    await device.activate(await challenge());
    const oldSas = await tpmSas();
    const latest = await challenge(); // replaces the one the TPM holds
    const replayed = await put({ registrationId, tpm: { endorsementKey: ek, storageRootKey: srk } }, oldSas);
    expect(replayed.status).toBe(401);
    expect((replayed.json as { message: string }).message).toMatch(
      /not signed with the key of this registration's latest TPM challenge/,
    );

    const resource = `${stack.idScope}/registrations/${registrationId}`;
    const forged = createSas(resource, randomBytes(32).toString('base64'), Math.floor(Date.now() / 1000) + 3600);
    const other = await put({ registrationId, tpm: { endorsementKey: ek, storageRootKey: srk } }, forged);
    expect(other.status).toBe(401);
    expect((other.json as { message: string }).message).toMatch(/not signed with the key/);

    await device.activate(latest);
    const ok = await put({ registrationId, tpm: { endorsementKey: ek, storageRootKey: srk } }, await tpmSas());
    expect(ok.status).toBe(202);
  });
});
