// Envelope encryption of secrets at rest. Values are sealed with AES-256-GCM under a data key of the current epoch
// and a random 96-bit nonce; the data key is wrapped once by the key provider (Key Vault or the local master key) and
// stored by ID (storage/dataKeys.ts). So the key provider is called once per data key an instance meets, never per
// value: no call on a registration in steady state, and a fresh instance's calls don't grow with the enrollments.
// Format v2: {v:2, k:<data-key ID>, ct: nonce ‖ tag ‖ ciphertext} (the ID is the GCM associated data).
// Format v1 (earlier releases: a wrapped data key inside every value) still opens.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

import type { KeyProvider } from './keyProvider';

/** A data key as stored: wrapped by the key provider's key `keyId`. */
export interface DataKeyRecord {
  id: string;
  keyId: string;
  /** base64 */
  wrapped: string;
  /** ISO time the epoch started. */
  created: string;
}

export interface DataKeyStore {
  get(id: string): Promise<DataKeyRecord | undefined>;
  /** The data key every instance seals under, if an epoch was started. */
  current(): Promise<DataKeyRecord | undefined>;
  /** Stores a new data key and makes it current. */
  create(key: DataKeyRecord): Promise<void>;
  replace(key: DataKeyRecord): Promise<void>;
  list(): Promise<DataKeyRecord[]>;
}

export interface EpochPolicy {
  /** A data key is sealed under for at most this long (default one day). */
  maxAgeMs: number;
  /**
   * Seals one instance makes under one data key before it starts a new epoch (default 2^20). Random 96-bit nonces
   * are safe for 2^32 seals per key (NIST SP 800-38D); even 1,000 instances sharing an epoch stay 4x below that.
   */
  maxSealsPerInstance: number;
}

export const DEFAULT_EPOCH: EpochPolicy = { maxAgeMs: 86_400_000, maxSealsPerInstance: 2 ** 20 };

interface SealedV1 {
  v: 1;
  kid: string;
  /** The wrapped data key. */
  dk: string;
  /** iv ‖ tag ‖ ciphertext of the JSON value. */
  ct: string;
}

interface SealedV2 {
  v: 2;
  /** Data-key ID. */
  k: string;
  /** nonce ‖ tag ‖ ciphertext of the JSON value. */
  ct: string;
}

interface Epoch {
  id: string;
  key: Buffer;
  startedAt: number;
  seals: number;
}

export interface RewrapResult {
  dataKeys: number;
  rewrapped: number;
  /** The key-encryption key every data key is now wrapped by (the newest Key Vault key version). */
  keyId: string;
}

export class SecretBox {
  /** Unwrapped data keys by ID: a handful (one per epoch), kept for the instance's life. */
  private readonly dataKeys = new Map<string, Promise<Buffer>>();
  /** v1 values' keys, by wrapped value (one per value, so bounded). */
  private readonly legacyKeys = new Map<string, Buffer>();
  private epoch: Promise<Epoch> | undefined;

  constructor(
    private readonly provider: KeyProvider,
    private readonly store: DataKeyStore,
    private readonly policy: EpochPolicy = DEFAULT_EPOCH,
    private readonly clock: () => number = Date.now,
    private readonly maxLegacyKeys = 50_000,
  ) {}

  async seal(value: unknown): Promise<string> {
    const epoch = await this.currentEpoch();
    epoch.seals++;
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', epoch.key, nonce);
    cipher.setAAD(Buffer.from(epoch.id, 'utf8'));
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
    const sealed: SealedV2 = {
      v: 2,
      k: epoch.id,
      ct: Buffer.concat([nonce, cipher.getAuthTag(), body]).toString('base64'),
    };
    return JSON.stringify(sealed);
  }

  async open<T>(text: string): Promise<T> {
    const sealed = JSON.parse(text) as SealedV1 | SealedV2;
    if (sealed.v === 2) return decrypt<T>(await this.dataKey(sealed.k), sealed.ct, Buffer.from(sealed.k, 'utf8'));
    if (sealed.v === 1) return decrypt<T>(await this.legacyKey(sealed), sealed.ct);
    throw new Error('Unknown sealed-value format.');
  }

  /**
   * Re-wraps every data key with the key provider's newest key (after the Key Vault key was rotated). Only the data
   * keys change: sealed values keep their data-key IDs and open as before.
   */
  async rewrap(): Promise<RewrapResult> {
    this.provider.refresh?.();
    const records = await this.store.list();
    let rewrapped = 0;
    let keyId = '';
    for (const record of records) {
      const key = await this.dataKey(record.id, record);
      const wrapped = await this.provider.wrap(key);
      keyId = wrapped.keyId;
      if (wrapped.keyId === record.keyId) continue;
      await this.store.replace({ ...record, keyId: wrapped.keyId, wrapped: wrapped.wrapped.toString('base64') });
      rewrapped++;
    }
    return { dataKeys: records.length, rewrapped, keyId };
  }

  /** The epoch this instance seals under: the shared current one while it is fresh, else a new one. */
  private async currentEpoch(): Promise<Epoch> {
    const pending = this.epoch ?? this.startEpoch(undefined);
    const epoch = await pending;
    if (this.clock() - epoch.startedAt < this.policy.maxAgeMs && epoch.seals < this.policy.maxSealsPerInstance) {
      return epoch;
    }
    // The first seal to find the epoch spent starts the next one; concurrent seals wait for that one.
    return this.epoch === pending || !this.epoch ? this.startEpoch(epoch.id) : this.epoch;
  }

  private startEpoch(retiring: string | undefined): Promise<Epoch> {
    const previous = this.epoch;
    const next = (async (): Promise<Epoch> => {
      // Another instance may have started a fresh epoch already: join it rather than add one more key.
      const shared = await this.store.current();
      const sharedAt = shared ? Date.parse(shared.created) : NaN;
      if (shared && shared.id !== retiring && this.clock() - sharedAt < this.policy.maxAgeMs) {
        return { id: shared.id, key: await this.dataKey(shared.id, shared), startedAt: sharedAt, seals: 0 };
      }
      const key = randomBytes(32);
      const id = `${new Date(this.clock()).toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(8).toString('hex')}`;
      const wrapped = await this.provider.wrap(key);
      const created = new Date(this.clock()).toISOString();
      await this.store.create({ id, keyId: wrapped.keyId, wrapped: wrapped.wrapped.toString('base64'), created });
      this.dataKeys.set(id, Promise.resolve(key));
      return { id, key, startedAt: this.clock(), seals: 0 };
    })();
    // Concurrent seals share one epoch start; a failed start is retried by the next seal.
    this.epoch = next;
    next.catch(() => {
      if (this.epoch === next) this.epoch = previous;
    });
    return next;
  }

  /** A data key by ID: loaded and unwrapped once per instance (concurrent readers share the one call). */
  private dataKey(id: string, known?: DataKeyRecord): Promise<Buffer> {
    let key = this.dataKeys.get(id);
    if (!key) {
      key = (async () => {
        const record = known ?? (await this.store.get(id));
        if (!record) throw new Error(`Data key ${id} was not found.`);
        return this.provider.unwrap(Buffer.from(record.wrapped, 'base64'), record.keyId);
      })();
      this.dataKeys.set(id, key);
      key.catch(() => this.dataKeys.delete(id)); // e.g. Key Vault unreachable: the next read tries again
    }
    return key;
  }

  private async legacyKey(sealed: SealedV1): Promise<Buffer> {
    let dataKey = this.legacyKeys.get(sealed.dk);
    if (!dataKey) {
      dataKey = await this.provider.unwrap(Buffer.from(sealed.dk, 'base64'), sealed.kid);
      if (this.legacyKeys.size >= this.maxLegacyKeys) this.legacyKeys.clear();
      this.legacyKeys.set(sealed.dk, dataKey);
    }
    return dataKey;
  }
}

function decrypt<T>(key: Buffer, ct: string, aad?: Buffer): T {
  const bytes = Buffer.from(ct, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
  if (aad) decipher.setAAD(aad);
  decipher.setAuthTag(bytes.subarray(12, 28));
  return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8')) as T;
}
