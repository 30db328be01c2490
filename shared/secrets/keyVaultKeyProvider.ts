// Key Vault key provider: wraps and unwraps data keys with an RSA key in Key Vault (RSA-OAEP-256) through the official
// client. The envelope calls it once per data key, never per secret (secrets/envelope.ts), so Key Vault's limits and
// latency stay off the registration path.
import type { Agent } from 'node:https';

import type { TokenCredential } from '@azure/core-auth';
import type * as Keys from '@azure/keyvault-keys';
import type { CryptographyClient, KeyClientOptions } from '@azure/keyvault-keys';

import type { KeyProvider, WrappedKey } from './keyProvider';

type KeysSdk = typeof Keys;
/**
 * Loaded on first use, not at import (~100 ms of cold start that a local-provider deployment never needs); required,
 * not import()ed, so the CommonJS build is shared with the other @azure clients instead of a second ESM copy.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const keysSdk = (): KeysSdk => require('@azure/keyvault-keys') as KeysSdk;

const ALGORITHM = 'RSA-OAEP-256';
/** How long the newest key version is trusted before it is looked up again, so a rotation reaches every instance. */
const CURRENT_VERSION_TTL_MS = 3600_000;

export interface KeyVaultKeyOptions {
  /** e.g. https://contoso-dps.vault.azure.net */
  vaultUrl: string;
  keyName: string;
  credential: TokenCredential;
  /** Only for a local double of Key Vault, whose challenge cannot name a vault domain. */
  disableChallengeResourceVerification?: boolean;
  /** Only for a local double whose certificate a dev CA issued. */
  agent?: Agent;
}

export class KeyVaultKeyProvider implements KeyProvider {
  private current: { at: number; key: Promise<{ keyId: string; client: CryptographyClient }> } | undefined;
  /** One client per key version: a client built from a key ID fetches the key once, then only calls the operation. */
  private readonly clients = new Map<string, Promise<CryptographyClient>>();
  private readonly prefix: string;

  constructor(private readonly options: KeyVaultKeyOptions) {
    this.prefix = `${options.vaultUrl.replace(/\/+$/, '')}/keys/${options.keyName}/`.toLowerCase();
  }

  async wrap(dataKey: Buffer): Promise<WrappedKey> {
    const { keyId, client } = await this.latest();
    const result = await client.wrapKey(ALGORITHM, dataKey);
    return { keyId, wrapped: Buffer.from(result.result) };
  }

  async unwrap(wrapped: Buffer, keyId: string): Promise<Buffer> {
    if (!this.owns(keyId)) throw new Error(`Data key was wrapped by ${keyId}, not by Key Vault key ${this.prefix}.`);
    const result = await (await this.clientFor(keyId)).unwrapKey(ALGORITHM, wrapped);
    return Buffer.from(result.result);
  }

  owns(keyId: string): boolean {
    return keyId.toLowerCase().startsWith(this.prefix);
  }

  refresh(): void {
    this.current = undefined;
  }

  /** The newest version of the key: one `keys/get` per instance (and per hour, to follow rotations). */
  private latest(): Promise<{ keyId: string; client: CryptographyClient }> {
    if (!this.current || Date.now() - this.current.at > CURRENT_VERSION_TTL_MS) {
      const key = (async () => {
        const { KeyClient, CryptographyClient } = keysSdk();
        const { credential } = this.options;
        const found = await new KeyClient(this.options.vaultUrl, credential, this.clientOptions()).getKey(
          this.options.keyName,
        );
        if (!found.id) throw new Error(`Key Vault key ${this.options.keyName} has no ID.`);
        // Built from the fetched key, the client wraps with this exact version and needs no second lookup.
        const client = new CryptographyClient(found, credential, this.clientOptions());
        this.clients.set(found.id.toLowerCase(), Promise.resolve(client));
        return { keyId: found.id, client };
      })();
      const entry = { at: Date.now(), key };
      this.current = entry;
      key.catch(() => {
        if (this.current === entry) this.current = undefined; // a failed lookup is retried by the next call
      });
    }
    return this.current.key;
  }

  private clientFor(keyId: string): Promise<CryptographyClient> {
    const id = keyId.toLowerCase();
    let client = this.clients.get(id);
    if (!client) {
      const { CryptographyClient } = keysSdk();
      client = Promise.resolve(new CryptographyClient(keyId, this.options.credential, this.clientOptions()));
      this.clients.set(id, client);
    }
    return client;
  }

  private clientOptions(): KeyClientOptions {
    return {
      ...(this.options.disableChallengeResourceVerification ? { disableChallengeResourceVerification: true } : {}),
      ...(this.options.agent ? { agent: this.options.agent } : {}),
    };
  }
}
