// An EK or SRK as DPS receives it (base64 of a marshalled TPM2B_PUBLIC): decoding, validation as an RSA-2048 storage
// key (the only kind the SDKs' EK/SRK templates produce and the activation blob can target), and its TPM Name.
import type { KeyObject } from 'node:crypto';
import { createHash, createPublicKey } from 'node:crypto';

import { TpmFormatError, TpmReader, tpm2b, u16 } from './marshal';

const TPM_ALG_RSA = 0x0001;
const TPM_ALG_SHA256 = 0x000b;
const TPM_ALG_AES = 0x0006;
const TPM_ALG_CFB = 0x0043;
const TPM_ALG_NULL = 0x0010;
const RESTRICTED = 0x0001_0000;
const DECRYPT = 0x0002_0000;
const ALG_NAMES: Record<number, string> = { 0x0001: 'RSA', 0x0008: 'KEYEDHASH', 0x0023: 'ECC', 0x0025: 'SYMCIPHER' };
/** An RSA-2048 TPM2B_PUBLIC with a 64-byte policy is under 400 bytes; anything far longer is not one. */
const MAX_BASE64_CHARS = 2048;

/** A validated RSA-2048 storage key (EK or SRK) in the forms the activation blob needs. */
export interface TpmPublicKey {
  /** The canonical marshalled TPM2B_PUBLIC: what the SDKs send and what the default registration ID hashes. */
  readonly tpm2b: Buffer;
  /** Name = nameAlg ‖ SHA-256(TPMT_PUBLIC). */
  readonly name: Buffer;
  readonly key: KeyObject;
  /** The key's symmetric (AES-CFB) key size, which sizes the KDFa "STORAGE" key of secrets sent to it. */
  readonly symmetricKeyBits: number;
}

/**
 * Decodes and validates base64 of a TPM2B_PUBLIC. Accepted harmless variations (all decode to the same canonical
 * bytes): missing `=` padding, whitespace or line breaks (tools wrap base64 at 64/76 columns), and a bare TPMT_PUBLIC
 * without the UINT16 size prefix (`tpm2_readpublic -f tpmt`). Throws TpmFormatError naming what is wrong.
 */
export function decodeTpmPublicKey(base64: string): TpmPublicKey {
  if (base64.length > MAX_BASE64_CHARS) throw new TpmFormatError(`too long (${base64.length} characters)`);
  const compact = base64.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.replace(/=+$/, '').length % 4 === 1) {
    throw new TpmFormatError('not base64');
  }
  if (compact.includes('=') && compact.length % 4 !== 0) throw new TpmFormatError('not base64 (bad padding)');
  const bytes = Buffer.from(compact, 'base64');
  if (bytes.length < 2) throw new TpmFormatError('empty');
  const first = bytes.readUInt16BE(0);
  if (first === bytes.length - 2) return parseTpmtPublic(bytes.subarray(2));
  if (ALG_NAMES[first]) return parseTpmtPublic(bytes); // a bare TPMT_PUBLIC starts with its type
  throw new TpmFormatError(`its TPM2B size (${first}) does not match the ${bytes.length - 2} bytes that follow`);
}

/** Parses a TPMT_PUBLIC (TPM 2.0 Part 2 §12.2.4) and checks it is an RSA-2048 restricted decryption key. */
export function parseTpmtPublic(tpmt: Buffer): TpmPublicKey {
  const r = new TpmReader(tpmt);
  const type = r.u16();
  if (type !== TPM_ALG_RSA) {
    const name = ALG_NAMES[type] ?? `0x${type.toString(16).padStart(4, '0')}`;
    throw new TpmFormatError(
      `${/^[AEIOU]/.test(name) ? 'an' : 'a'} ${name} key; DPS TPM attestation needs an RSA-2048 key`,
    );
  }
  if (r.u16() !== TPM_ALG_SHA256) throw new TpmFormatError('its nameAlg is not SHA-256');
  const attributes = r.u32();
  const authPolicy = r.tpm2b();
  if (authPolicy.length > 64) throw new TpmFormatError(`its authPolicy is ${authPolicy.length} bytes`);
  const symmetric = r.u16();
  let symmetricKeyBits = 0;
  if (symmetric !== TPM_ALG_NULL) {
    symmetricKeyBits = r.u16();
    const mode = r.u16();
    if (symmetric !== TPM_ALG_AES || mode !== TPM_ALG_CFB || (symmetricKeyBits !== 128 && symmetricKeyBits !== 256)) {
      throw new TpmFormatError('its symmetric algorithm is not AES-128-CFB or AES-256-CFB');
    }
  }
  const scheme = r.u16();
  if (scheme !== TPM_ALG_NULL) r.u16(); // the scheme's hash algorithm
  const keyBits = r.u16();
  if (keyBits !== 2048) throw new TpmFormatError(`an RSA-${keyBits} key; DPS TPM attestation needs RSA-2048`);
  const exponent = r.u32() || 65537;
  const modulus = r.tpm2b();
  if (modulus.length !== 256) throw new TpmFormatError(`its modulus is ${modulus.length} bytes, not 256`);
  if (r.remaining !== 0) throw new TpmFormatError(`${r.remaining} unexpected bytes after the public area`);
  // The activation blob is a credential for, and a duplicate wrapped to, these keys: both must be storage keys.
  if ((attributes & (RESTRICTED | DECRYPT)) !== (RESTRICTED | DECRYPT) || symmetric === TPM_ALG_NULL) {
    throw new TpmFormatError('not a restricted decryption (storage) key, as an EK or SRK is');
  }
  if (scheme !== TPM_ALG_NULL) throw new TpmFormatError('a storage key must have the NULL scheme');
  const e = Buffer.alloc(4);
  e.writeUInt32BE(exponent);
  let key: KeyObject;
  try {
    key = createPublicKey({
      key: {
        kty: 'RSA',
        n: modulus.toString('base64url'),
        e: e.subarray(e.findIndex((b) => b !== 0)).toString('base64url'),
      },
      format: 'jwk',
    });
  } catch {
    throw new TpmFormatError('its RSA public key is not valid');
  }
  return { tpm2b: tpm2b(tpmt), name: tpmName(tpmt), key, symmetricKeyBits };
}

/** Name(object) = UINT16 nameAlg (SHA-256) ‖ SHA-256(marshalled TPMT_PUBLIC, without the TPM2B size). */
export function tpmName(tpmtPublic: Buffer): Buffer {
  return Buffer.concat([u16(TPM_ALG_SHA256), createHash('sha256').update(tpmtPublic).digest()]);
}

/**
 * The registration ID the SDKs (Node, C) derive for a TPM device when none is given: lower-case RFC 4648 base32 of
 * SHA-256 over the EK's TPM2B_PUBLIC bytes, `=` padding stripped (52 characters).
 */
export function defaultTpmRegistrationId(endorsementKey: TpmPublicKey): string {
  return base32(createHash('sha256').update(endorsementKey.tpm2b).digest());
}

function base32(bytes: Buffer): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}
