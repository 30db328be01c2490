// TPM challenge cost: activation blobs built per second on one core (EK/SRK decoding included, as per request), and
// how much of it is the two RSA-OAEP encryptions (EK: the credential seed, SRK: the duplication seed).
import { randomBytes } from 'node:crypto';

import { createActivationChallenge } from '../shared/attestation/tpm/activation';
import { oaepEncrypt } from '../shared/attestation/tpm/crypto';
import { decodeTpmPublicKey } from '../shared/attestation/tpm/publicKey';
import { SoftTpm } from './softTpm';

export interface TpmChallengeResult {
  challengesPerSecond: number;
  meanMs: number;
  /** The share of a challenge's time spent in its two RSA-OAEP encryptions. */
  oaepShare: number;
}

/** Runs each measurement for about `durationMs` on this process's core. */
export function measureTpmChallenges(durationMs: number): TpmChallengeResult {
  const tpm = new SoftTpm();
  const ek = tpm.ek.tpm2b.toString('base64');
  const srk = tpm.srk.tpm2b.toString('base64');
  const challenge = () => createActivationChallenge(decodeTpmPublicKey(ek), decodeTpmPublicKey(srk));
  const challengeMs = meanMs(challenge, durationMs);
  const ekKey = decodeTpmPublicKey(ek).key;
  const seed = randomBytes(32);
  const oaepMs = 2 * meanMs(() => oaepEncrypt(ekKey, 'IDENTITY', seed), durationMs / 2);
  return { challengesPerSecond: 1000 / challengeMs, meanMs: challengeMs, oaepShare: oaepMs / challengeMs };
}

export function formatTpmChallenges(r: TpmChallengeResult): string {
  return (
    `TPM activation blobs: ${r.challengesPerSecond.toFixed(0)}/s on one core, ${r.meanMs.toFixed(2)} ms each ` +
    `(a challenge builds two: the device's key and the hub key); RSA-OAEP to the EK and SRK: ` +
    `${(r.oaepShare * 100).toFixed(0)}% of that, the rest AES-CFB, KDFa/HMAC, hashing and EK/SRK decoding.`
  );
}

function meanMs(work: () => unknown, durationMs: number): number {
  for (let i = 0; i < 20; i++) work(); // warm-up
  let runs = 0;
  const started = performance.now();
  while (performance.now() - started < durationMs) {
    work();
    runs++;
  }
  return (performance.now() - started) / runs;
}
