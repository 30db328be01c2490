// The benchmark's software TPM opens the activation blob to the very key the server made (as swtpm does in
// tpmActivation.test.ts), and not a blob made for another TPM.
import { describe, expect, it } from 'vitest';

import { SoftTpm } from '../../bench/softTpm';
import { createActivationChallenge } from '../../shared/attestation/tpm/activation';

describe('bench SoftTpm', () => {
  it('recovers the HMAC key of a blob made for it, and fails on a blob for another TPM', () => {
    const tpm = new SoftTpm();
    const challenge = createActivationChallenge(tpm.ek, tpm.srk);
    expect(tpm.open(challenge.blob).equals(challenge.hmacKey)).toBe(true);
    const other = new SoftTpm();
    expect(() => tpm.open(createActivationChallenge(other.ek, other.srk).blob)).toThrow();
  });
});
