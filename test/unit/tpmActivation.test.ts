// The TPM challenge this service builds in software, opened by a real TPM (swtpm + tpm2-tools): the TPM's HMAC with
// the imported key equals the server's, and a blob for another EK or SRK, or a tampered one, does not activate.
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createActivationChallenge } from '../../shared/attestation/tpm/activation';
import type { TpmPublicKey } from '../../shared/attestation/tpm/publicKey';
import { decodeTpmPublicKey, defaultTpmRegistrationId } from '../../shared/attestation/tpm/publicKey';
import type { SoftwareTpm } from '../support/swtpm';
import { EK_HANDLE, SRK_HANDLE, startSoftwareTpm } from '../support/swtpm';
import { foreignEndorsementKey } from '../support/tpmKeys';

describe('TPM activation blob on swtpm', () => {
  let tpm: SoftwareTpm;
  let ek: TpmPublicKey;
  let srk: TpmPublicKey;

  beforeAll(async () => {
    tpm = await startSoftwareTpm();
    const keys = await tpm.provision();
    ek = decodeTpmPublicKey(keys.ek.toString('base64'));
    srk = decodeTpmPublicKey(keys.srk.toString('base64'));
  });
  afterAll(() => tpm?.stop());

  it("computes the EK's and SRK's Names as the TPM does", async () => {
    await tpm.tool('tpm2_readpublic', '-c', EK_HANDLE, '-n', 'ek.name');
    await tpm.tool('tpm2_readpublic', '-c', SRK_HANDLE, '-n', 'srk.name');
    expect(readFileSync(join(tpm.dir, 'ek.name')).toString('hex')).toBe(ek.name.toString('hex'));
    expect(readFileSync(join(tpm.dir, 'srk.name')).toString('hex')).toBe(srk.name.toString('hex'));
  });

  it('the TPM imports the key and its HMAC equals the server-side key', async () => {
    const challenge = createActivationChallenge(ek, srk);
    expect(Buffer.from(challenge.blob, 'base64')).toHaveLength(766);
    const data = Buffer.from(`0ne00000A0A%2Fregistrations%2F${defaultTpmRegistrationId(ek)}\n1795357931`);
    const mac = await tpm.activateAndHmac(challenge.blob, data);
    expect(mac.toString('hex')).toBe(createHmac('sha256', challenge.hmacKey).update(data).digest('hex'));
  });

  it('each challenge carries a fresh key', async () => {
    const a = createActivationChallenge(ek, srk);
    const b = createActivationChallenge(ek, srk);
    expect(a.hmacKey.equals(b.hmacKey)).toBe(false);
    const data = randomBytes(64);
    expect(await tpm.activateAndHmac(b.blob, data)).toEqual(createHmac('sha256', b.hmacKey).update(data).digest());
  });

  it('a blob made for another EK does not activate', async () => {
    const challenge = createActivationChallenge(decodeTpmPublicKey(foreignEndorsementKey()), srk);
    await expect(tpm.activateAndHmac(challenge.blob, Buffer.from('x'))).rejects.toThrow(/tpm2_activatecredential/);
  });

  it('a blob bound to another SRK does not activate', async () => {
    const challenge = createActivationChallenge(ek, decodeTpmPublicKey(foreignEndorsementKey()));
    await expect(tpm.activateAndHmac(challenge.blob, Buffer.from('x'))).rejects.toThrow(/tpm2_activatecredential/);
  });

  it('a tampered duplicate does not import', async () => {
    const blob = Buffer.from(createActivationChallenge(ek, srk).blob, 'base64');
    const at = 54 + 258 + 40; // inside the TPM2B_PRIVATE's encrypted sensitive area
    blob.writeUInt8(blob.readUInt8(at) ^ 1, at);
    await expect(tpm.activateAndHmac(blob.toString('base64'), Buffer.from('x'))).rejects.toThrow(/tpm2_import/);
  });
});
