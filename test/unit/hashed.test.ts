import { describe, expect, it } from 'vitest';

import type { HubCandidate } from '../../shared/allocation/hashed';
import { allocateHashed } from '../../shared/allocation/hashed';

const hub = (hostName: string, allocationWeight = 1): HubCandidate => ({ hostName, allocationWeight });
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `device-${i}`);

function shares(candidates: readonly HubCandidate[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids(n)) {
    const chosen = allocateHashed(id, candidates);
    if (!chosen) throw new Error('no hub chosen');
    counts.set(chosen.hostName, (counts.get(chosen.hostName) ?? 0) + 1);
  }
  return new Map([...counts].map(([k, v]) => [k, v / n]));
}

describe('allocateHashed', () => {
  const hubs = [hub('a.azure-devices.net'), hub('b.azure-devices.net'), hub('c.azure-devices.net')];

  it('is deterministic: the same registration ID gets the same hub on every call', () => {
    for (const id of ids(200)) {
      expect(allocateHashed(id, hubs)?.hostName).toBe(allocateHashed(id, hubs)?.hostName);
    }
  });

  it('does not depend on the order of the candidates', () => {
    const reversed = [...hubs].reverse();
    const rotated = [hubs[1], hubs[2], hubs[0]].filter((h): h is HubCandidate => h !== undefined);
    for (const id of ids(500)) {
      const chosen = allocateHashed(id, hubs)?.hostName;
      expect(allocateHashed(id, reversed)?.hostName).toBe(chosen);
      expect(allocateHashed(id, rotated)?.hostName).toBe(chosen);
    }
  });

  it('actually spreads devices: every hub gets some of 300 devices', () => {
    expect(new Set(ids(300).map((id) => allocateHashed(id, hubs)?.hostName)).size).toBe(3);
  });

  it('treats the registration ID case-insensitively', () => {
    for (const id of ids(200)) {
      expect(allocateHashed(id.toUpperCase(), hubs)?.hostName).toBe(allocateHashed(id, hubs)?.hostName);
    }
    expect(allocateHashed('Sym-Device-1', hubs)?.hostName).toBe(allocateHashed('sym-device-1', hubs)?.hostName);
  });

  it('weights 1/2/7 over 10,000 IDs land within 3 points of 10/20/70 %', () => {
    const s = shares([hub('w1.net', 1), hub('w2.net', 2), hub('w7.net', 7)], 10_000);
    for (const [name, expected] of [
      ['w1.net', 0.1],
      ['w2.net', 0.2],
      ['w7.net', 0.7],
    ] as const) {
      expect(Math.abs((s.get(name) ?? 0) - expected)).toBeLessThan(0.03);
    }
  });

  it('weights 1:3 over 20,000 IDs land within 2 points of 25/75', () => {
    const s = shares([hub('light.azure-devices.net', 1), hub('heavy.azure-devices.net', 3)], 20_000);
    expect(s.get('light.azure-devices.net') ?? 0).toBeGreaterThan(0.23);
    expect(s.get('light.azure-devices.net') ?? 0).toBeLessThan(0.27);
    expect(s.get('heavy.azure-devices.net') ?? 0).toBeGreaterThan(0.73);
    expect(s.get('heavy.azure-devices.net') ?? 0).toBeLessThan(0.77);
  });

  it('equal weights split 20,000 IDs roughly evenly over three hubs', () => {
    const s = shares(hubs, 20_000);
    for (const h of hubs) {
      expect(s.get(h.hostName) ?? 0).toBeGreaterThan(1 / 3 - 0.02);
      expect(s.get(h.hostName) ?? 0).toBeLessThan(1 / 3 + 0.02);
    }
  });

  it('adding a hub only moves devices onto the new hub (rendezvous property)', () => {
    const more = [...hubs, hub('d.azure-devices.net')];
    for (const id of ids(2000)) {
      const before = allocateHashed(id, hubs)?.hostName;
      const after = allocateHashed(id, more)?.hostName;
      if (after !== 'd.azure-devices.net') expect(after).toBe(before);
    }
  });

  it('returns the candidate object itself', () => {
    const only = { hostName: 'only.azure-devices.net', allocationWeight: 5, extra: 42 };
    expect(allocateHashed('dev', [only])).toBe(only);
  });

  it('returns undefined for no candidates', () => {
    expect(allocateHashed('dev', [])).toBeUndefined();
  });

  it('never chooses a zero-weight hub when a weighted hub exists', () => {
    const candidates = [hub('zero.azure-devices.net', 0), hub('one.azure-devices.net', 1)];
    for (const id of ids(500)) expect(allocateHashed(id, candidates)?.hostName).toBe('one.azure-devices.net');
  });

  it('returns undefined when every candidate has zero (or negative) weight', () => {
    expect(allocateHashed('dev', [hub('zero.azure-devices.net', 0)])).toBeUndefined();
    expect(allocateHashed('dev', [hub('z1.azure-devices.net', 0), hub('neg.azure-devices.net', -2)])).toBeUndefined();
  });
});
