// The TPM 2.0 cryptographic primitives DPS's activation blob needs, on node:crypto: KDFa (SP 800-108 counter mode with
// HMAC-SHA256, TPM 2.0 Part 1 §11.4.10.2), AES-CFB with a zero IV, and RSA-OAEP with the TPM's NUL-terminated labels.
import type { KeyObject } from 'node:crypto';
import { constants, createCipheriv, createHmac, publicEncrypt } from 'node:crypto';

import { u32 } from './marshal';

/** KDFa(SHA-256, key, label, contextU, contextV, bits): the first bits/8 bytes of ‖ HMAC(key, i ‖ label ‖ 0 ‖ U ‖ V ‖ bits). */
export function kdfa(key: Buffer, label: string, contextU: Buffer, contextV: Buffer, bits: number): Buffer {
  const bytes = bits / 8;
  const blocks: Buffer[] = [];
  for (let i = 1, have = 0; have < bytes; i++, have += 32) {
    const hmac = createHmac('sha256', key);
    hmac.update(u32(i)).update(label, 'latin1').update(Buffer.of(0)).update(contextU).update(contextV);
    blocks.push(hmac.update(u32(bits)).digest());
  }
  return Buffer.concat(blocks).subarray(0, bytes);
}

/** Full-block CFB-128 with an all-zero IV, as TPM2 uses for parameter and sensitive-area encryption. */
export function aesCfbEncrypt(key: Buffer, data: Buffer): Buffer {
  const cipher = createCipheriv(`aes-${key.length * 8}-cfb`, key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

export function hmacSha256(key: Buffer, ...parts: Buffer[]): Buffer {
  const hmac = createHmac('sha256', key);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

/**
 * RSA-OAEP (SHA-256 for hash and MGF1, the key's nameAlg) with a TPM label. The TPM includes the label's terminating
 * NUL ("IDENTITY\0", "DUPLICATE\0"); without it the device's TPM refuses the secret (verified on swtpm).
 */
export function oaepEncrypt(key: KeyObject, label: 'IDENTITY' | 'DUPLICATE', secret: Buffer): Buffer {
  return publicEncrypt(
    {
      key,
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: 'sha256',
      oaepLabel: Buffer.from(`${label}\0`, 'latin1'),
    },
    secret,
  );
}
