// Local key provider: AES-256-GCM key wrapping under a master key from settings (DPS_MASTER_KEY).
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

import type { KeyProvider, WrappedKey } from './keyProvider';

export class LocalKeyProvider implements KeyProvider {
  readonly keyId: string;

  constructor(private readonly masterKey: Buffer) {
    if (masterKey.length !== 32) throw new Error('The local master key must be 32 bytes (base64 of 32 random bytes).');
    // A fingerprint, not the key: lets a stored secret say which master key sealed it.
    this.keyId = `local:${createHash('sha256').update(masterKey).digest('hex').slice(0, 16)}`;
  }

  wrap(dataKey: Buffer): Promise<WrappedKey> {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.masterKey, iv);
    const body = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return Promise.resolve({ keyId: this.keyId, wrapped: Buffer.concat([iv, cipher.getAuthTag(), body]) });
  }

  owns(keyId: string): boolean {
    return keyId === this.keyId;
  }

  unwrap(wrapped: Buffer, keyId: string): Promise<Buffer> {
    if (keyId !== this.keyId)
      return Promise.reject(new Error(`Secret was sealed with key ${keyId}, not ${this.keyId}.`));
    const decipher = createDecipheriv('aes-256-gcm', this.masterKey, wrapped.subarray(0, 12));
    decipher.setAuthTag(wrapped.subarray(12, 28));
    return Promise.resolve(Buffer.concat([decipher.update(wrapped.subarray(28)), decipher.final()]));
  }
}
