// DPS's TPM challenge: the activation blob that only the TPM holding an EK (and its SRK) can open, carrying a fresh
// HMAC key the device then signs SAS tokens with. Layout and construction: reference/tpm-challenge.md (verified on
// swtpm with tpm2-tools and the official Node client); the producer mirrors TSS.MSR DrsServer / TSS.Net TpmKey.
import { createHash, randomBytes } from 'node:crypto';

import { aesCfbEncrypt, hmacSha256, kdfa, oaepEncrypt } from './crypto';
import type { TpmPublicKey } from './publicKey';
import { tpmName } from './publicKey';
import { tpm2b, u16, u32 } from './marshal';

const EMPTY = Buffer.alloc(0);
const TPM_ALG_KEYEDHASH = 0x0008;
const TPM_ALG_SHA256 = 0x000b;
const TPM_ALG_HMAC = 0x0005;
/** sign | noDA | userWithAuth; fixedTPM/fixedParent must stay clear for an imported (duplicated) object. */
const ID_KEY_ATTRIBUTES = 0x0004_0440;

export interface ActivationChallenge {
  /** base64 of ID_OBJECT ‖ ENCRYPTED_SECRET ‖ PRIVATE ‖ ENCRYPTED_SECRET (seed) ‖ PUBLIC ‖ DATA (all TPM2B). */
  readonly blob: string;
  /** The 32-byte HMAC-SHA256 key the device's TPM will hold once it imports the blob. */
  readonly hmacKey: Buffer;
}

/**
 * Wraps `hmacKey` (fresh when omitted) for the TPM that owns `ek` and `srk`: a credential (MakeCredential to the EK,
 * bound to the SRK's Name) carrying the inner wrap key E, and the HMAC key as a duplicate for the SRK whose inner
 * wrapper is E. Devices: ActivateCredential(SRK, EK) → E; Import(SRK, E, …) → Load → HMAC.
 */
export function createActivationChallenge(
  ek: TpmPublicKey,
  srk: TpmPublicKey,
  hmacKey: Buffer = randomBytes(32),
): ActivationChallenge {
  const seedValue = randomBytes(32);
  const idPublic = Buffer.concat([
    u16(TPM_ALG_KEYEDHASH),
    u16(TPM_ALG_SHA256),
    u32(ID_KEY_ATTRIBUTES),
    tpm2b(EMPTY), // authPolicy
    u16(TPM_ALG_HMAC),
    u16(TPM_ALG_SHA256),
    tpm2b(sha256(seedValue, hmacKey)), // unique binds the public area to the sensitive one
  ]);
  const idName = tpmName(idPublic);
  const sensitive = tpm2b(
    Buffer.concat([u16(TPM_ALG_KEYEDHASH), tpm2b(EMPTY), tpm2b(seedValue), tpm2b(hmacKey)]), // type, authValue, seed, key
  );

  // Inner wrapper (TPM 2.0 Part 1 §23.3.2.3): integrity digest and sensitive area, AES-128-CFB under E.
  const innerKey = randomBytes(16);
  const innerWrapped = aesCfbEncrypt(innerKey, Buffer.concat([tpm2b(sha256(sensitive, idName)), sensitive]));

  // Outer wrapper to the SRK (Part 1 §23.3.2.2): a seed for the SRK, keys derived from it, HMAC over the duplicate.
  const duplicateSeed = randomBytes(32);
  const duplicate = aesCfbEncrypt(kdfa(duplicateSeed, 'STORAGE', idName, EMPTY, srk.symmetricKeyBits), innerWrapped);
  const duplicateHmac = hmacSha256(kdfa(duplicateSeed, 'INTEGRITY', EMPTY, EMPTY, 256), duplicate, idName);
  const privateArea = tpm2b(Buffer.concat([tpm2b(duplicateHmac), duplicate]));

  // MakeCredential(EK, credential = E, objectName = Name(SRK)) (Part 1 §24): only that TPM's EK recovers E.
  const credentialSeed = randomBytes(32);
  const encIdentity = aesCfbEncrypt(
    kdfa(credentialSeed, 'STORAGE', srk.name, EMPTY, ek.symmetricKeyBits),
    tpm2b(innerKey),
  );
  const identityHmac = hmacSha256(kdfa(credentialSeed, 'INTEGRITY', EMPTY, EMPTY, 256), encIdentity, srk.name);
  const idObject = tpm2b(Buffer.concat([tpm2b(identityHmac), encIdentity]));

  const blob = Buffer.concat([
    idObject,
    tpm2b(oaepEncrypt(ek.key, 'IDENTITY', credentialSeed)),
    privateArea,
    tpm2b(oaepEncrypt(srk.key, 'DUPLICATE', duplicateSeed)),
    tpm2b(idPublic),
    // The encrypted "URI data" field: every client reads it (C# unconditionally), none uses it; empty is allowed.
    tpm2b(EMPTY),
  ]);
  return { blob: blob.toString('base64'), hmacKey };
}

function sha256(...parts: Buffer[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}
