// Envelope encryption of secrets at rest: each sealed value has its own data key, wrapped by the key provider.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

import type { KeyProvider } from './keyProvider';

interface Sealed {
  v: 1;
  kid: string;
  /** The wrapped data key. */
  dk: string;
  /** iv ‖ tag ‖ ciphertext of the JSON value. */
  ct: string;
}

export class SecretBox {
  /** Unwrapped data keys by wrapped value: reads stay local once a key is known (Key Vault calls cost ~10 ms). */
  private readonly dataKeys = new Map<string, Buffer>();

  constructor(
    private readonly provider: KeyProvider,
    private readonly maxCachedKeys = 50_000,
  ) {}

  async seal(value: unknown): Promise<string> {
    const dataKey = randomBytes(32);
    const wrapped = (await this.provider.wrap(dataKey)).toString('base64');
    this.remember(wrapped, dataKey);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', dataKey, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
    const sealed: Sealed = {
      v: 1,
      kid: this.provider.keyId,
      dk: wrapped,
      ct: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'),
    };
    return JSON.stringify(sealed);
  }

  async open<T>(text: string): Promise<T> {
    const sealed = JSON.parse(text) as Sealed;
    let dataKey = this.dataKeys.get(sealed.dk);
    if (!dataKey) {
      dataKey = await this.provider.unwrap(Buffer.from(sealed.dk, 'base64'), sealed.kid);
      this.remember(sealed.dk, dataKey);
    }
    const bytes = Buffer.from(sealed.ct, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', dataKey, bytes.subarray(0, 12));
    decipher.setAuthTag(bytes.subarray(12, 28));
    return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8')) as T;
  }

  private remember(wrapped: string, dataKey: Buffer): void {
    if (this.dataKeys.size >= this.maxCachedKeys) this.dataKeys.clear();
    this.dataKeys.set(wrapped, dataKey);
  }
}
