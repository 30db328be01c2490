// The official Node TPM client (azure-iot-security-tpm) on swtpm opens the challenges this service builds: it reads
// the EK and registration ID the service expects, activates the blob, and signs with exactly the server-side key.
// (A blob for another EK is refused by the TPM — test/unit/tpmActivation.test.ts — but tss.js then throws inside a
// callback instead of reporting it, so that case is not driven through this client.)
import { createHmac, randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createActivationChallenge } from '../../shared/attestation/tpm/activation';
import type { TpmPublicKey } from '../../shared/attestation/tpm/publicKey';
import { decodeTpmPublicKey, defaultTpmRegistrationId } from '../../shared/attestation/tpm/publicKey';
import type { SoftwareTpm } from '../support/swtpm';
import { startSoftwareTpm } from '../support/swtpm';
import type { OfficialTpmClient } from '../support/tpmClient';
import { startOfficialTpmClient } from '../support/tpmClient';

describe('official TPM client on swtpm', () => {
  let tpm: SoftwareTpm;
  let client: OfficialTpmClient;
  let ek: TpmPublicKey;
  let srk: TpmPublicKey;

  beforeAll(async () => {
    tpm = await startSoftwareTpm();
    const keys = await tpm.provision();
    ek = decodeTpmPublicKey(keys.ek.toString('base64'));
    srk = decodeTpmPublicKey(keys.srk.toString('base64'));
    client = await startOfficialTpmClient(tpm);
  });
  afterAll(async () => {
    await client?.stop();
    await tpm?.stop();
  });

  it('sends the EK bytes tpm2-tools read, and derives the documented default registration ID', async () => {
    expect((await client.endorsementKey()).equals(ek.tpm2b)).toBe(true);
    expect(await client.registrationId()).toBe(defaultTpmRegistrationId(ek));
  });

  it('activates the blob and signs with the server-side key, short and long (HMAC sequence) inputs', async () => {
    const challenge = createActivationChallenge(ek, srk);
    await client.activate(challenge.blob);
    for (const data of [Buffer.from('abc'), randomBytes(5000)]) {
      expect(await client.sign(data)).toEqual(createHmac('sha256', challenge.hmacKey).update(data).digest());
    }
    // A second blob (DPS's hub key) replaces the identity key at 0x81000100.
    const hub = createActivationChallenge(ek, srk);
    await client.activate(hub.blob);
    expect(await client.sign(Buffer.from('abc'))).toEqual(createHmac('sha256', hub.hmacKey).update('abc').digest());
  });
});
