import { describe, expect, it } from 'vitest';

import { RecentMap, TtlCache } from '../../shared/storage/cache';

function counter(values: Array<() => Promise<string>>): { load: () => Promise<string>; calls: () => number } {
  let n = 0;
  return {
    load: () => {
      const next = values[Math.min(n, values.length - 1)];
      n++;
      if (!next) throw new Error('no value');
      return next();
    },
    calls: () => n,
  };
}

describe('TtlCache', () => {
  it('reuses the value within the TTL', async () => {
    let now = 1_000;
    const src = counter([() => Promise.resolve('v1'), () => Promise.resolve('v2')]);
    const cache = new TtlCache(src.load, 5_000, () => now);
    await expect(cache.get()).resolves.toBe('v1');
    now += 4_999;
    await expect(cache.get()).resolves.toBe('v1');
    expect(src.calls()).toBe(1);
  });

  it('reloads after the TTL', async () => {
    let now = 1_000;
    const src = counter([() => Promise.resolve('v1'), () => Promise.resolve('v2')]);
    const cache = new TtlCache(src.load, 5_000, () => now);
    await expect(cache.get()).resolves.toBe('v1');
    now += 5_000;
    await expect(cache.get()).resolves.toBe('v2');
    expect(src.calls()).toBe(2);
  });

  it('concurrent callers share one load', async () => {
    let release: (v: string) => void = () => undefined;
    const src = counter([() => new Promise<string>((r) => (release = r))]);
    const cache = new TtlCache(src.load, 5_000, () => 0);
    const a = cache.get();
    const b = cache.get();
    release('shared');
    await expect(Promise.all([a, b])).resolves.toEqual(['shared', 'shared']);
    expect(src.calls()).toBe(1);
  });

  it('does not cache a failed load: the next call tries again', async () => {
    const src = counter([() => Promise.reject(new Error('table down')), () => Promise.resolve('recovered')]);
    const cache = new TtlCache(src.load, 60_000, () => 0);
    await expect(cache.get()).rejects.toThrow('table down');
    await expect(cache.get()).resolves.toBe('recovered');
    expect(src.calls()).toBe(2);
  });

  it('invalidate forces a reload within the TTL', async () => {
    const src = counter([() => Promise.resolve('v1'), () => Promise.resolve('v2')]);
    const cache = new TtlCache(src.load, 60_000, () => 0);
    await expect(cache.get()).resolves.toBe('v1');
    cache.invalidate();
    await expect(cache.get()).resolves.toBe('v2');
    expect(src.calls()).toBe(2);
  });

  it('a load that fails after invalidate does not discard the newer value', async () => {
    let rejectFirst: (e: Error) => void = () => undefined;
    const src = counter([() => new Promise<string>((_, rej) => (rejectFirst = rej)), () => Promise.resolve('fresh')]);
    const cache = new TtlCache(src.load, 60_000, () => 0);
    const first = cache.get();
    cache.invalidate();
    await expect(cache.get()).resolves.toBe('fresh');
    rejectFirst(new Error('late failure'));
    await expect(first).rejects.toThrow('late failure');
    await expect(cache.get()).resolves.toBe('fresh');
    expect(src.calls()).toBe(2);
  });
});

describe('RecentMap', () => {
  it('forgets an entry after its TTL', () => {
    let now = 0;
    const recent = new RecentMap<string, number>(100, 10, () => now);
    recent.set('a', 1);
    now = 99;
    expect(recent.get('a')).toBe(1);
    now = 100;
    expect(recent.get('a')).toBeUndefined();
    expect(recent.size).toBe(0);
  });

  it('drops expired entries when a new one is set, and deletes on request', () => {
    let now = 0;
    const recent = new RecentMap<string, number>(100, 10, () => now);
    recent.set('a', 1);
    recent.set('b', 2);
    now = 150;
    recent.set('c', 3);
    expect(recent.size).toBe(1);
    recent.delete('c');
    expect(recent.get('c')).toBeUndefined();
  });

  it('drops the oldest entry when full; setting a key again makes it the newest', () => {
    const recent = new RecentMap<string, number>(1_000, 2, () => 0);
    recent.set('a', 1);
    recent.set('b', 2);
    recent.set('a', 3);
    recent.set('c', 4);
    expect([recent.get('a'), recent.get('b'), recent.get('c')]).toEqual([3, undefined, 4]);
    recent.clear();
    expect(recent.size).toBe(0);
  });
});
