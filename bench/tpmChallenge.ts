// TPM challenge cost: activation blobs built per second on one core (EK/SRK decoding included, as per request), and
// how much of it is the two RSA-OAEP encryptions (EK: the credential seed, SRK: the duplication seed).
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import { createActivationChallenge } from '../shared/attestation/tpm/activation';
import { oaepEncrypt } from '../shared/attestation/tpm/crypto';
import { tpm2b, u16, u32 } from '../shared/attestation/tpm/marshal';
import { decodeTpmPublicKey } from '../shared/attestation/tpm/publicKey';

export interface TpmChallengeResult {
  challengesPerSecond: number;
  meanMs: number;
  /** The share of a challenge's time spent in its two RSA-OAEP encryptions. */
  oaepShare: number;
}

/** Runs each measurement for about `durationMs` on this process's core. */
export function measureTpmChallenges(durationMs: number): TpmChallengeResult {
  const ek = storageKeyBase64();
  const srk = storageKeyBase64();
  const challenge = () => createActivationChallenge(decodeTpmPublicKey(ek), decodeTpmPublicKey(srk));
  const challengeMs = meanMs(challenge, durationMs);
  const ekKey = decodeTpmPublicKey(ek).key;
  const seed = randomBytes(32);
  const oaepMs = 2 * meanMs(() => oaepEncrypt(ekKey, 'IDENTITY', seed), durationMs / 2);
  return { challengesPerSecond: 1000 / challengeMs, meanMs: challengeMs, oaepShare: oaepMs / challengeMs };
}

export function formatTpmChallenges(r: TpmChallengeResult): string {
  return (
    `TPM challenges (activation blobs, one core): ${r.challengesPerSecond.toFixed(0)}/s, ` +
    `${r.meanMs.toFixed(2)} ms each; RSA-OAEP to the EK and SRK is ${(r.oaepShare * 100).toFixed(0)}% of that.`
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

/** base64 TPM2B_PUBLIC of a software RSA-2048 storage key with the SRK template (an EK works the same way). */
function storageKeyBase64(): string {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
  const tpmt = Buffer.concat([
    u16(0x0001), // RSA
    u16(0x000b), // SHA-256
    u32(0x00030472), // restricted|decrypt|fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA
    tpm2b(Buffer.alloc(0)),
    u16(0x0006), // AES-128-CFB
    u16(128),
    u16(0x0043),
    u16(0x0010), // NULL scheme
    u16(2048),
    u32(0),
    tpm2b(Buffer.from(jwk.n ?? '', 'base64url')),
  ]);
  return tpm2b(tpmt).toString('base64');
}
