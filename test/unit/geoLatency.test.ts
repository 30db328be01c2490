import { describe, expect, it } from 'vitest';

import type { GeoCandidate } from '../../shared/allocation/geoLatency';
import {
  allocateGeoLatency,
  latencyKey,
  normalizeRegion,
  parseLatencyTable,
  regionLatencyMs,
} from '../../shared/allocation/geoLatency';
import { allocateHashed } from '../../shared/allocation/hashed';
import { ConfigError, loadConfig } from '../../shared/config';

const hub = (hostName: string, location?: string, allocationWeight = 1): GeoCandidate => ({
  hostName,
  allocationWeight,
  ...(location !== undefined ? { location } : {}),
});
const none = new Map<string, number>();
const ids = (n: number) => Array.from({ length: n }, (_, i) => `geo-device-${i}`);

describe('region latency', () => {
  it('normalises region names as Azure does (REGION_NAME may be the display name)', () => {
    expect(normalizeRegion(' West Europe ')).toBe('westeurope');
    expect(normalizeRegion('SouthEastAsia')).toBe('southeastasia');
  });

  it('is 0 within a region, an estimate within and between geographies, unknown otherwise', () => {
    expect(regionLatencyMs('westeurope', 'West Europe', none)).toBe(0);
    expect(regionLatencyMs('westeurope', 'northeurope', none)).toBe(30);
    const toUs = regionLatencyMs('westeurope', 'eastus', none);
    const toAsia = regionLatencyMs('westeurope', 'southeastasia', none);
    expect(toUs).toBeLessThan(toAsia);
    expect(regionLatencyMs('eastus', 'westeurope', none)).toBe(toUs); // symmetric
    expect(regionLatencyMs('westeurope', 'my-basement', none)).toBe(Infinity);
    expect(regionLatencyMs(undefined, 'westeurope', none)).toBe(Infinity);
    expect(regionLatencyMs('westeurope', undefined, none)).toBe(Infinity);
  });

  it("lets the operator's table win over the estimates, in either direction, and name non-Azure places", () => {
    const table = parseLatencyTable('westeurope:eastus=5; onprem-paris : West Europe = 2');
    expect(regionLatencyMs('eastus', 'westeurope', table)).toBe(5);
    expect(regionLatencyMs('westeurope', 'onprem-paris', table)).toBe(2);
    expect(table.get(latencyKey('westeurope', 'onprem-paris'))).toBe(2);
  });

  it.each(['westeurope=5', 'a:b', 'a:b=x', 'a:b=-1', 'a b:c=1:2', ':b=3'])(
    'refuses the malformed latency entry %j with a message naming it',
    (entry) => {
      expect(() => parseLatencyTable(entry)).toThrow(/regionA:regionB=milliseconds/);
    },
  );
});

describe('geoLatency allocation', () => {
  const europe = hub('eu.azure-devices.net', 'westeurope');
  const us = hub('us.azure-devices.net', 'eastus');
  const asia = hub('asia.azure-devices.net', 'southeastasia');

  it('picks the hub closest to the serving region, whatever the device', () => {
    for (const [region, expected] of [
      ['westeurope', europe],
      ['northeurope', europe],
      ['eastus', us],
      ['westus2', us],
      ['japaneast', asia],
    ] as const) {
      for (const id of ids(20)) {
        expect(allocateGeoLatency(id, [us, asia, europe], { region, latencies: none })).toBe(expected);
      }
    }
  });

  it('hashes by weight among hubs of equal latency: deterministic and within ±3 % for weights 1/2/7', () => {
    const equals = [hub('w1', 'westeurope', 1), hub('w2', 'westeurope', 2), hub('w7', 'westeurope', 7)];
    const counts = new Map<string, number>();
    for (const id of ids(10_000)) {
      const chosen = allocateGeoLatency(id, [...equals, us], { region: 'westeurope', latencies: none });
      expect(chosen).toBe(allocateGeoLatency(id, [...equals, us], { region: 'westeurope', latencies: none }));
      counts.set(chosen?.hostName ?? '', (counts.get(chosen?.hostName ?? '') ?? 0) + 1);
    }
    expect(counts.get('us.azure-devices.net')).toBeUndefined();
    expect(Math.abs((counts.get('w1') ?? 0) / 10_000 - 0.1)).toBeLessThan(0.03);
    expect(Math.abs((counts.get('w2') ?? 0) / 10_000 - 0.2)).toBeLessThan(0.03);
    expect(Math.abs((counts.get('w7') ?? 0) / 10_000 - 0.7)).toBeLessThan(0.03);
  });

  it('is hashed allocation when the region is unknown (no setting, or no hub with a known location)', () => {
    const hubs = [hub('a', undefined, 3), hub('b', 'nowhere', 1), us];
    for (const id of ids(200)) {
      expect(allocateGeoLatency(id, hubs, { latencies: none })).toBe(allocateHashed(id, hubs));
      const unlocated = [hub('a'), hub('b', 'x')];
      expect(allocateGeoLatency(id, unlocated, { region: 'westeurope', latencies: none })).toBe(
        allocateHashed(id, unlocated),
      );
    }
  });

  it('ranks hubs of unknown location after known ones, and skips a closest tier that weighs nothing', () => {
    const unknown = hub('unknown', undefined, 1000);
    const idle = hub('idle.azure-devices.net', 'westeurope', 0);
    for (const id of ids(50)) {
      expect(allocateGeoLatency(id, [unknown, asia], { region: 'westeurope', latencies: none })).toBe(asia);
      expect(allocateGeoLatency(id, [idle, us, asia], { region: 'westeurope', latencies: none })).toBe(us);
    }
    expect(allocateGeoLatency('x', [], { region: 'westeurope', latencies: none })).toBeUndefined();
  });

  it('follows the operator table', () => {
    const latencies = parseLatencyTable('northeurope:southeastasia=1');
    expect(allocateGeoLatency('d', [europe, asia, us], { region: 'northeurope', latencies })).toBe(asia);
  });
});

describe('geoLatency settings', () => {
  const base = { DPS_ID_SCOPE: '0ne00000001', DPS_MASTER_KEY: Buffer.alloc(32, 1).toString('base64') };
  const env = (extra: Record<string, string>) => ({ ...base, DPS_TABLES_CONNECTION_STRING: 'x', ...extra });

  it('takes DPS_REGION, else the platform REGION_NAME, normalised', () => {
    expect(loadConfig(env({ REGION_NAME: 'West Europe' })).region).toBe('westeurope');
    expect(loadConfig(env({ REGION_NAME: 'West Europe', DPS_REGION: 'eastus' })).region).toBe('eastus');
    expect(loadConfig(env({})).region).toBeUndefined();
  });

  it('parses DPS_REGION_LATENCIES and names the setting when it is malformed', () => {
    const cfg = loadConfig(env({ DPS_REGION_LATENCIES: 'westeurope:eastus=12' }));
    expect(cfg.regionLatencies.get(latencyKey('eastus', 'westeurope'))).toBe(12);
    expect(() => loadConfig(env({ DPS_REGION_LATENCIES: 'westeurope-eastus' }))).toThrow(ConfigError);
    expect(() => loadConfig(env({ DPS_REGION_LATENCIES: 'westeurope-eastus' }))).toThrow(/DPS_REGION_LATENCIES/);
  });
});
