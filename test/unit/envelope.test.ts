import { createCipheriv, randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { SecretBox } from '../../shared/secrets/envelope';
import type { KeyProvider, WrappedKey } from '../../shared/secrets/keyProvider';
import { chainProviders } from '../../shared/secrets/keyProvider';
import { LocalKeyProvider } from '../../shared/secrets/localKeyProvider';
import { MemoryDataKeys } from '../support/memoryDataKeys';

const SECRET = { primaryKey: 'c2VjcmV0LXByaW1hcnkta2V5LXZhbHVlLTEyMzQ1Ng==', note: 'top-secret-marker-text' };

/** Wraps a real provider and counts the calls that would go to Key Vault. */
class CountingProvider implements KeyProvider {
  wraps = 0;
  unwraps = 0;
  constructor(private readonly inner: KeyProvider) {}
  wrap(dataKey: Buffer): Promise<WrappedKey> {
    this.wraps++;
    return this.inner.wrap(dataKey);
  }
  unwrap(wrapped: Buffer, keyId: string): Promise<Buffer> {
    this.unwraps++;
    return this.inner.unwrap(wrapped, keyId);
  }
  owns(keyId: string): boolean {
    return this.inner.owns(keyId);
  }
}

interface SealedShape {
  v: number;
  k: string;
  ct: string;
}

/** What the previous release wrote: a data key per value, wrapped inside the value (format v1). */
async function sealV1(provider: LocalKeyProvider, value: unknown): Promise<string> {
  const dataKey = randomBytes(32);
  const { keyId, wrapped } = await provider.wrap(dataKey);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', dataKey, iv);
  const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  const ct = Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
  return JSON.stringify({ v: 1, kid: keyId, dk: wrapped.toString('base64'), ct });
}

describe('SecretBox (data keys per epoch)', () => {
  const master = randomBytes(32);
  const box = (store = new MemoryDataKeys(), provider: KeyProvider = new LocalKeyProvider(master)) =>
    new SecretBox(provider, store);

  it('seal then open round-trips a JSON value, also on a fresh box over the same store', async () => {
    const store = new MemoryDataKeys();
    const sealed = await box(store).seal(SECRET);
    await expect(box(store).open<typeof SECRET>(sealed)).resolves.toEqual(SECRET);
    const one = box(store);
    await expect(one.open(await one.seal('plain string'))).resolves.toBe('plain string');
  });

  it('the sealed text holds a data-key ID and the ciphertext, never the plaintext or a key', async () => {
    const store = new MemoryDataKeys();
    const sealed = await box(store).seal(SECRET);
    expect(sealed).not.toContain(SECRET.note);
    expect(sealed).not.toContain(SECRET.primaryKey);
    const parsed = JSON.parse(sealed) as SealedShape;
    expect(Object.keys(parsed).sort()).toEqual(['ct', 'k', 'v']);
    expect(parsed.v).toBe(2);
    expect(store.keys.get(parsed.k)?.keyId).toBe(new LocalKeyProvider(master).keyId);
  });

  it('one data key (one wrap) for many seals; each seal has its own nonce', async () => {
    const provider = new CountingProvider(new LocalKeyProvider(master));
    const b = box(new MemoryDataKeys(), provider);
    const sealed = await Promise.all(Array.from({ length: 50 }, () => b.seal(SECRET)));
    const parsed = sealed.map((s) => JSON.parse(s) as SealedShape);
    expect(new Set(parsed.map((p) => p.k)).size).toBe(1);
    expect(new Set(parsed.map((p) => p.ct.slice(0, 16))).size).toBe(50);
    expect(provider.wraps).toBe(1);
  });

  it('a fresh instance unwraps each data key once, however many values it opens (concurrently too)', async () => {
    const store = new MemoryDataKeys();
    const writer = box(store);
    const sealed = await Promise.all(Array.from({ length: 200 }, (_, i) => writer.seal({ i })));
    const provider = new CountingProvider(new LocalKeyProvider(master));
    const reader = box(store, provider);
    store.gets = 0;
    await expect(Promise.all(sealed.map((s) => reader.open<{ i: number }>(s)))).resolves.toHaveLength(200);
    expect(provider.unwraps).toBe(1);
    expect(store.gets).toBe(1);
  });

  it('a new instance joins the current epoch instead of starting one (no wrap)', async () => {
    const store = new MemoryDataKeys();
    const first = JSON.parse(await box(store).seal('a')) as SealedShape;
    const provider = new CountingProvider(new LocalKeyProvider(master));
    const second = JSON.parse(await box(store, provider).seal('b')) as SealedShape;
    expect(second.k).toBe(first.k);
    expect(provider.wraps).toBe(0);
    expect(provider.unwraps).toBe(1);
  });

  it('starts a new epoch after maxSealsPerInstance seals and after maxAgeMs', async () => {
    const store = new MemoryDataKeys();
    let now = Date.parse('2025-01-01T00:00:00Z');
    const b = new SecretBox(new LocalKeyProvider(master), store, { maxAgeMs: 1000, maxSealsPerInstance: 3 }, () => now);
    const ids = async (n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push((JSON.parse(await b.seal(i)) as SealedShape).k);
      return out;
    };
    const [a1, a2, a3, b1] = await ids(4);
    expect([a1, a2]).toEqual([a3, a3]);
    expect(b1).not.toBe(a3);
    now += 1001;
    const [c1] = await ids(1);
    expect(c1).not.toBe(b1);
    expect(store.keys.size).toBe(3);
    // every epoch's values still open
    const reader = box(store);
    for (const id of [a1, b1, c1]) expect(store.keys.has(id ?? '')).toBe(true);
    await expect(reader.open(await b.seal('late'))).resolves.toBe('late');
  });

  it('detects a tampered ciphertext, tag, or a value moved under another data-key ID', async () => {
    const store = new MemoryDataKeys();
    const b = box(store);
    const sealed = JSON.parse(await b.seal(SECRET)) as SealedShape;
    const flip = (at: (ct: Buffer) => number) => {
      const ct = Buffer.from(sealed.ct, 'base64');
      const i = at(ct);
      ct[i] = (ct[i] ?? 0) ^ 0x01;
      return JSON.stringify({ ...sealed, ct: ct.toString('base64') });
    };
    await expect(box(store).open(flip((ct) => ct.length - 1))).rejects.toThrow();
    await expect(box(store).open(flip(() => 12))).rejects.toThrow();
    // same key material under another ID: the ID is authenticated (GCM associated data)
    const record = store.keys.get(sealed.k);
    if (!record) throw new Error('no data key stored');
    await store.replace({ ...record, id: 'other' });
    await expect(box(store).open(JSON.stringify({ ...sealed, k: 'other' }))).rejects.toThrow();
    await expect(box(store).open(JSON.stringify({ ...sealed, k: 'missing' }))).rejects.toThrow(/not found/);
  });

  it('a different master key cannot open the value', async () => {
    const store = new MemoryDataKeys();
    const sealed = await box(store).seal(SECRET);
    await expect(box(store, new LocalKeyProvider(randomBytes(32))).open(sealed)).rejects.toThrow();
  });

  it('values sealed by the previous release (v1: a data key per value) still open', async () => {
    const provider = new LocalKeyProvider(master);
    const legacy = await sealV1(provider, SECRET);
    await expect(box().open(legacy)).resolves.toEqual(SECRET);
    // and through a chain whose primary is another provider (Key Vault configured beside DPS_MASTER_KEY)
    const chained = chainProviders(new LocalKeyProvider(randomBytes(32)), provider);
    await expect(box(new MemoryDataKeys(), chained).open(legacy)).resolves.toEqual(SECRET);
  });

  it('rewrap re-wraps every data key with the newest key; values open without the old key', async () => {
    const store = new MemoryDataKeys();
    const oldKey = new LocalKeyProvider(master);
    const newKey = new LocalKeyProvider(randomBytes(32));
    let now = Date.parse('2025-01-01T00:00:00Z');
    const epochs = { maxAgeMs: 1000, maxSealsPerInstance: 1000 };
    const writer = new SecretBox(oldKey, store, epochs, () => now);
    const first = await writer.seal('first');
    now += 2000;
    const second = await writer.seal('second');
    expect(store.keys.size).toBe(2);
    const result = await new SecretBox(chainProviders(newKey, oldKey), store).rewrap();
    expect(result).toEqual({ dataKeys: 2, rewrapped: 2, keyId: newKey.keyId });
    expect([...store.keys.values()].every((k) => k.keyId === newKey.keyId)).toBe(true);
    const reader = box(store, newKey);
    await expect(reader.open(first)).resolves.toBe('first');
    await expect(reader.open(second)).resolves.toBe('second');
    // idempotent
    await expect(new SecretBox(newKey, store).rewrap()).resolves.toMatchObject({ dataKeys: 2, rewrapped: 0 });
  });
});

describe('LocalKeyProvider', () => {
  it('rejects a master key that is not 32 bytes', () => {
    expect(() => new LocalKeyProvider(randomBytes(31))).toThrow(/32 bytes/);
    expect(() => new LocalKeyProvider(randomBytes(33))).toThrow(/32 bytes/);
  });

  it('key id is a stable fingerprint that does not contain the key', () => {
    const master = randomBytes(32);
    const a = new LocalKeyProvider(master);
    expect(a.keyId).toBe(new LocalKeyProvider(Buffer.from(master)).keyId);
    expect(a.keyId).not.toBe(new LocalKeyProvider(randomBytes(32)).keyId);
    expect(a.keyId).not.toContain(master.toString('hex').slice(0, 16));
    expect(a.keyId).not.toContain(master.toString('base64').slice(0, 16));
  });

  it('wrap/unwrap round-trips a data key and rejects a foreign key id', async () => {
    const p = new LocalKeyProvider(randomBytes(32));
    const dk = randomBytes(32);
    const { keyId, wrapped } = await p.wrap(dk);
    expect(keyId).toBe(p.keyId);
    expect(wrapped.includes(dk)).toBe(false);
    expect((await p.unwrap(wrapped, p.keyId)).equals(dk)).toBe(true);
    await expect(p.unwrap(wrapped, 'local:0000000000000000')).rejects.toThrow();
  });
});
