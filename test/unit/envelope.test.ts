import { randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { SecretBox } from '../../shared/secrets/envelope';
import type { KeyProvider } from '../../shared/secrets/keyProvider';
import { LocalKeyProvider } from '../../shared/secrets/localKeyProvider';

const SECRET = { primaryKey: 'c2VjcmV0LXByaW1hcnkta2V5LXZhbHVlLTEyMzQ1Ng==', note: 'top-secret-marker-text' };

/** Wraps a real provider and counts the calls that would go to Key Vault. */
class CountingProvider implements KeyProvider {
  wraps = 0;
  unwraps = 0;
  constructor(private readonly inner: KeyProvider) {}
  get keyId(): string {
    return this.inner.keyId;
  }
  wrap(dataKey: Buffer): Promise<Buffer> {
    this.wraps++;
    return this.inner.wrap(dataKey);
  }
  unwrap(wrapped: Buffer, keyId: string): Promise<Buffer> {
    this.unwraps++;
    return this.inner.unwrap(wrapped, keyId);
  }
}

interface SealedShape {
  v: number;
  kid: string;
  dk: string;
  ct: string;
}

describe('SecretBox with LocalKeyProvider', () => {
  const master = randomBytes(32);

  it('seal then open round-trips a JSON value', async () => {
    const box = new SecretBox(new LocalKeyProvider(master));
    const sealed = await box.seal(SECRET);
    await expect(new SecretBox(new LocalKeyProvider(master)).open<typeof SECRET>(sealed)).resolves.toEqual(SECRET);
    await expect(box.open(await box.seal('plain string'))).resolves.toBe('plain string');
  });

  it('the sealed text contains neither the plaintext nor its base64', async () => {
    const sealed = await new SecretBox(new LocalKeyProvider(master)).seal(SECRET);
    expect(sealed).not.toContain(SECRET.note);
    expect(sealed).not.toContain(SECRET.primaryKey);
    expect(sealed).not.toContain(Buffer.from(JSON.stringify(SECRET)).toString('base64').slice(0, 16));
    const parsed = JSON.parse(sealed) as SealedShape;
    expect(parsed.v).toBe(1);
    expect(parsed.kid).toBe(new LocalKeyProvider(master).keyId);
  });

  it('sealing the same value twice gives different texts (fresh data key and IV)', async () => {
    const box = new SecretBox(new LocalKeyProvider(master));
    const a = JSON.parse(await box.seal(SECRET)) as SealedShape;
    const b = JSON.parse(await box.seal(SECRET)) as SealedShape;
    expect(a.dk).not.toBe(b.dk);
    expect(a.ct).not.toBe(b.ct);
  });

  it('detects a tampered ciphertext', async () => {
    const sealed = JSON.parse(await new SecretBox(new LocalKeyProvider(master)).seal(SECRET)) as SealedShape;
    const ct = Buffer.from(sealed.ct, 'base64');
    ct[ct.length - 1] = (ct[ct.length - 1] ?? 0) ^ 0x01;
    const tampered = JSON.stringify({ ...sealed, ct: ct.toString('base64') });
    await expect(new SecretBox(new LocalKeyProvider(master)).open(tampered)).rejects.toThrow();
  });

  it('detects a tampered authentication tag', async () => {
    const sealed = JSON.parse(await new SecretBox(new LocalKeyProvider(master)).seal(SECRET)) as SealedShape;
    const ct = Buffer.from(sealed.ct, 'base64');
    ct[12] = (ct[12] ?? 0) ^ 0x80;
    await expect(
      new SecretBox(new LocalKeyProvider(master)).open(JSON.stringify({ ...sealed, ct: ct.toString('base64') })),
    ).rejects.toThrow();
  });

  it('detects a tampered wrapped data key', async () => {
    const sealed = JSON.parse(await new SecretBox(new LocalKeyProvider(master)).seal(SECRET)) as SealedShape;
    const dk = Buffer.from(sealed.dk, 'base64');
    dk[dk.length - 1] = (dk[dk.length - 1] ?? 0) ^ 0x01;
    await expect(
      new SecretBox(new LocalKeyProvider(master)).open(JSON.stringify({ ...sealed, dk: dk.toString('base64') })),
    ).rejects.toThrow();
  });

  it('a different master key cannot open the value', async () => {
    const sealed = await new SecretBox(new LocalKeyProvider(master)).seal(SECRET);
    await expect(new SecretBox(new LocalKeyProvider(randomBytes(32))).open(sealed)).rejects.toThrow();
  });

  it('a different master key fails even if the key id is forged to match', async () => {
    const sealed = JSON.parse(await new SecretBox(new LocalKeyProvider(master)).seal(SECRET)) as SealedShape;
    const other = new LocalKeyProvider(randomBytes(32));
    await expect(new SecretBox(other).open(JSON.stringify({ ...sealed, kid: other.keyId }))).rejects.toThrow();
  });

  it('values sealed by a box open from its data-key cache without unwrapping', async () => {
    const provider = new CountingProvider(new LocalKeyProvider(master));
    const box = new SecretBox(provider);
    const sealed = await box.seal(SECRET);
    await expect(box.open(sealed)).resolves.toEqual(SECRET);
    expect(provider.wraps).toBe(1);
    expect(provider.unwraps).toBe(0);
  });

  it('a data key is unwrapped once, then opened from the cache', async () => {
    const sealed = await new SecretBox(new LocalKeyProvider(master)).seal(SECRET);
    const provider = new CountingProvider(new LocalKeyProvider(master));
    const box = new SecretBox(provider);
    await expect(box.open(sealed)).resolves.toEqual(SECRET);
    await expect(box.open(sealed)).resolves.toEqual(SECRET);
    expect(provider.unwraps).toBe(1);
  });

  it('still opens values after the data-key cache overflows and is cleared', async () => {
    const provider = new CountingProvider(new LocalKeyProvider(master));
    const box = new SecretBox(provider, 2);
    const sealed = [await box.seal('one'), await box.seal('two'), await box.seal('three')];
    await expect(Promise.all(sealed.map((s) => box.open<string>(s)))).resolves.toEqual(['one', 'two', 'three']);
    expect(provider.unwraps).toBeGreaterThan(0);
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
    const wrapped = await p.wrap(dk);
    expect(wrapped.includes(dk)).toBe(false);
    expect((await p.unwrap(wrapped, p.keyId)).equals(dk)).toBe(true);
    await expect(p.unwrap(wrapped, 'local:0000000000000000')).rejects.toThrow();
  });
});
