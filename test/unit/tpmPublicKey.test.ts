// EK/SRK decoding and validation (RSA-2048 TPM2B_PUBLIC; harmless encodings accepted, anything else named), the TPM
// Name, TPM2 marshalling, KDFa, and the SDKs' default registration ID, on a real EK/SRK captured from the official client.
import { createHash, createHmac } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { kdfa } from '../../shared/attestation/tpm/crypto';
import { TpmFormatError, TpmReader, tpm2b } from '../../shared/attestation/tpm/marshal';
import { decodeTpmPublicKey, defaultTpmRegistrationId } from '../../shared/attestation/tpm/publicKey';
import { CAPTURED_EK, CAPTURED_REGISTRATION_ID, CAPTURED_SRK, rsaStorageTpmt } from '../support/tpmKeys';

function reason(base64: string): string {
  try {
    decodeTpmPublicKey(base64);
  } catch (error) {
    expect(error).toBeInstanceOf(TpmFormatError);
    return (error as Error).message;
  }
  throw new Error('expected a TpmFormatError');
}

describe('decodeTpmPublicKey', () => {
  it('reads the captured EK and SRK: RSA-2048 storage keys with AES-128-CFB', () => {
    const ek = decodeTpmPublicKey(CAPTURED_EK);
    expect(ek.tpm2b.toString('base64')).toBe(CAPTURED_EK);
    expect(ek.symmetricKeyBits).toBe(128);
    expect(ek.key.asymmetricKeyDetails).toEqual({ modulusLength: 2048, publicExponent: 65537n });
    const tpmt = Buffer.from(CAPTURED_EK, 'base64').subarray(2);
    expect(ek.name.toString('hex')).toBe('000b' + createHash('sha256').update(tpmt).digest('hex'));
    expect(decodeTpmPublicKey(CAPTURED_SRK).tpm2b.toString('base64')).toBe(CAPTURED_SRK);
  });

  it('derives the registration ID the official client derived', () => {
    expect(defaultTpmRegistrationId(decodeTpmPublicKey(CAPTURED_EK))).toBe(CAPTURED_REGISTRATION_ID);
  });

  it.each([
    ['without padding', CAPTURED_EK.replace(/=+$/, '')],
    ['wrapped at 64 columns', (CAPTURED_EK.match(/.{1,64}/g) ?? []).join('\r\n') + '\n'],
    ['as a bare TPMT_PUBLIC (no size prefix)', Buffer.from(CAPTURED_EK, 'base64').subarray(2).toString('base64')],
  ])('accepts the same key %s', (_, variant) => {
    expect(decodeTpmPublicKey(variant).tpm2b.toString('base64')).toBe(CAPTURED_EK);
  });

  const ekBytes = Buffer.from(CAPTURED_EK, 'base64');
  const withType = (type: number) => {
    const b = Buffer.from(ekBytes);
    b.writeUInt16BE(type, 2);
    return b.toString('base64');
  };
  it.each([
    ['not base64', 'not base64!', /not base64/],
    ['base64url', CAPTURED_EK.replace(/\+/g, '-').replace(/\//g, '_'), /not base64/],
    ['empty after decoding', 'AA==', /empty/],
    ['an ECC key', withType(0x0023), /ECC key; DPS TPM attestation needs an RSA-2048 key/],
    ['a keyed-hash object', withType(0x0008), /KEYEDHASH/],
    ['truncated', ekBytes.subarray(0, 200).toString('base64'), /TPM2B size \(314\) does not match the 198 bytes/],
    ['a truncated bare TPMT_PUBLIC', ekBytes.subarray(2, 200).toString('base64'), /truncated/],
    ['with trailing bytes', Buffer.concat([ekBytes, Buffer.of(0)]).toString('base64'), /does not match/],
    [
      'with bytes after the public area, inside the TPM2B',
      tpm2b(Buffer.concat([ekBytes.subarray(2), Buffer.of(0)])).toString('base64'),
      /1 unexpected bytes after the public area/,
    ],
    ['huge', 'A'.repeat(100_000), /too long/],
    ['RSA-1024', tpm2b(rsaStorageTpmt({ keyBits: 1024 })).toString('base64'), /RSA-1024/],
    [
      'not a storage key',
      tpm2b(rsaStorageTpmt({ attributes: 0x00040072 })).toString('base64'),
      /restricted decryption/,
    ],
  ])('refuses %s, saying why', (_, value, message) => {
    expect(reason(value)).toMatch(message);
  });
});

describe('TPM2 marshalling and KDFa', () => {
  it('reads big-endian integers and TPM2B fields, refusing reads past the end', () => {
    const r = new TpmReader(Buffer.from('0001000000020003aabbcc', 'hex'));
    expect([r.u16(), r.u32(), r.tpm2b().toString('hex'), r.remaining]).toEqual([1, 2, 'aabbcc', 0]);
    expect(() => r.u16()).toThrow(/truncated/);
  });

  it('KDFa follows SP 800-108 counter mode with the TPM framing, across HMAC blocks', () => {
    const key = Buffer.alloc(32, 1);
    const u = Buffer.from('context-u');
    const manual = (i: number, bits: number) =>
      createHmacHex(key, Buffer.concat([u32(i), Buffer.from('STORAGE\0'), u, u32(bits)]));
    expect(kdfa(key, 'STORAGE', u, Buffer.alloc(0), 128).toString('hex')).toBe(manual(1, 128).slice(0, 32));
    expect(kdfa(key, 'STORAGE', u, Buffer.alloc(0), 384).toString('hex')).toBe(
      (manual(1, 384) + manual(2, 384)).slice(0, 96),
    );
  });
});

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}

function createHmacHex(key: Buffer, data: Buffer): string {
  return createHmac('sha256', key).update(data).digest('hex');
}
