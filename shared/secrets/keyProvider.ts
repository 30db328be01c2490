// The key-provider port: wraps and unwraps data-encryption keys. Implementations: local (master key from settings)
// and, later, Key Vault. Nothing else in the service holds a key-encryption key.

export interface KeyProvider {
  /** Identifies the key-encryption key, stored beside each wrapped key so keys can be rotated. */
  readonly keyId: string;
  wrap(dataKey: Buffer): Promise<Buffer>;
  unwrap(wrapped: Buffer, keyId: string): Promise<Buffer>;
}
