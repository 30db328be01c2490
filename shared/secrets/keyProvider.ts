// The key-provider port: wraps and unwraps data-encryption keys with a key-encryption key. Implementations: local
// (master key from settings) and Key Vault. Nothing else in the service holds a key-encryption key.

export interface WrappedKey {
  /** Identifies the key-encryption key (and its version) that wrapped the data key; stored beside it for rotation. */
  keyId: string;
  wrapped: Buffer;
}

export interface KeyProvider {
  wrap(dataKey: Buffer): Promise<WrappedKey>;
  unwrap(wrapped: Buffer, keyId: string): Promise<Buffer>;
  /** True for the key IDs this provider can unwrap with. */
  owns(keyId: string): boolean;
  /** Forgets a cached "current key version", so the next wrap uses the newest (after a rotation). */
  refresh?(): void;
}

/**
 * Wraps with the first provider and unwraps with whichever owns the key ID: with Key Vault configured, values sealed
 * earlier by the local provider (DPS_MASTER_KEY) keep opening without a migration.
 */
export function chainProviders(primary: KeyProvider, ...others: KeyProvider[]): KeyProvider {
  if (others.length === 0) return primary;
  const all = [primary, ...others];
  return {
    wrap: (dataKey) => primary.wrap(dataKey),
    unwrap: (wrapped, keyId) => {
      const owner = all.find((p) => p.owns(keyId));
      return owner ? owner.unwrap(wrapped, keyId) : primary.unwrap(wrapped, keyId);
    },
    owns: (keyId) => all.some((p) => p.owns(keyId)),
    refresh: () => primary.refresh?.(),
  };
}
