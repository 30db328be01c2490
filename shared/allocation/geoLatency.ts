// Geo-latency allocation for a self-hosted service: the candidate hub whose `location` is closest to the region this
// instance serves from, by an operator latency table over built-in estimates; weighted hashing among equals.
//
// Azure DPS measures latency from its own region to each linked hub (reference/dps-protocol.md §5). Open DPS knows
// its region from DPS_REGION, else REGION_NAME (set by the Azure Functions platform, sometimes as the display name
// "West Europe": normalised like the Azure CLI does, spaces dropped and lower-cased), and each hub's from its linked
// `location`. The latency between two regions is, in order: the operator's DPS_REGION_LATENCIES entry; 0 for the same
// region; the built-in estimate between their geographies (below); unknown (ranked last). Without a region every hub
// is unknown, so geoLatency is hashed allocation.
import type { HubCandidate } from './hashed';
import { allocateHashed } from './hashed';

export interface GeoLatencySettings {
  /** The serving instance's region, normalised (e.g. `westeurope`); undefined when not configured. */
  region?: string;
  /** Operator latencies in ms between two normalised regions, keyed by `latencyKey`; they win over the estimates. */
  latencies: ReadonlyMap<string, number>;
}

export interface GeoCandidate extends HubCandidate {
  location?: string;
}

/** `West Europe`, `westeurope` and ` WestEurope ` are one region. */
export const normalizeRegion = (name: string): string => name.replace(/\s+/g, '').toLowerCase();

/** The key of a region pair in either order. */
export const latencyKey = (a: string, b: string): string => [a, b].sort().join('|');

// Built-in estimates: Azure regions by geography, and rough round-trip times (ms) between geographies, after
// Microsoft's published Azure network round-trip statistics. Good enough to rank hubs; an operator who knows better
// sets DPS_REGION_LATENCIES. Regions in one geography are estimated at SAME_GEOGRAPHY_MS.
const GEOGRAPHIES: Record<string, readonly string[]> = {
  europe: [
    'westeurope',
    'northeurope',
    'uksouth',
    'ukwest',
    'francecentral',
    'germanywestcentral',
    'swedencentral',
    'switzerlandnorth',
    'norwayeast',
    'italynorth',
    'polandcentral',
    'spaincentral',
  ],
  northamerica: [
    'eastus',
    'eastus2',
    'centralus',
    'northcentralus',
    'southcentralus',
    'westcentralus',
    'westus',
    'westus2',
    'westus3',
    'canadacentral',
    'canadaeast',
    'mexicocentral',
  ],
  southamerica: ['brazilsouth', 'chilecentral'],
  eastasia: ['eastasia', 'southeastasia', 'japaneast', 'japanwest', 'koreacentral', 'koreasouth'],
  india: ['centralindia', 'southindia', 'westindia'],
  australia: ['australiaeast', 'australiasoutheast', 'australiacentral'],
  africa: ['southafricanorth', 'southafricawest'],
  middleeast: ['uaenorth', 'qatarcentral', 'israelcentral'],
};
const SAME_GEOGRAPHY_MS = 30;
const BETWEEN_GEOGRAPHIES_MS: Record<string, number> = {
  'europe|northamerica': 90,
  'europe|southamerica': 190,
  'eastasia|europe': 200,
  'europe|india': 130,
  'australia|europe': 250,
  'africa|europe': 160,
  'europe|middleeast': 110,
  'northamerica|southamerica': 130,
  'eastasia|northamerica': 170,
  'india|northamerica': 220,
  'australia|northamerica': 200,
  'africa|northamerica': 230,
  'middleeast|northamerica': 200,
  'eastasia|southamerica': 290,
  'india|southamerica': 300,
  'australia|southamerica': 310,
  'africa|southamerica': 330,
  'middleeast|southamerica': 290,
  'eastasia|india': 90,
  'australia|eastasia': 110,
  'africa|eastasia': 280,
  'eastasia|middleeast': 130,
  'australia|india': 150,
  'africa|india': 210,
  'india|middleeast': 40,
  'africa|australia': 280,
  'australia|middleeast': 190,
  'africa|middleeast': 170,
};
const GEOGRAPHY_OF = new Map(
  Object.entries(GEOGRAPHIES).flatMap(([geography, regions]) => regions.map((r) => [r, geography] as const)),
);

/** Estimated latency in ms between two regions (any spelling); Infinity when unknown. */
export function regionLatencyMs(
  from: string | undefined,
  to: string | undefined,
  latencies: ReadonlyMap<string, number>,
): number {
  if (!from || !to) return Infinity;
  const a = normalizeRegion(from);
  const b = normalizeRegion(to);
  const configured = latencies.get(latencyKey(a, b));
  if (configured !== undefined) return configured;
  if (a === b) return 0;
  const ga = GEOGRAPHY_OF.get(a);
  const gb = GEOGRAPHY_OF.get(b);
  if (!ga || !gb) return Infinity;
  if (ga === gb) return SAME_GEOGRAPHY_MS;
  return BETWEEN_GEOGRAPHIES_MS[latencyKey(ga, gb)] ?? Infinity;
}

/**
 * The candidate with the lowest latency from `settings.region`; among hubs of equal latency, weighted rendezvous
 * hashing of the registration ID (deterministic, proportional to allocationWeight). A tier whose hubs all weigh 0
 * yields to the next one.
 */
export function allocateGeoLatency<T extends GeoCandidate>(
  registrationId: string,
  candidates: readonly T[],
  settings: GeoLatencySettings,
): T | undefined {
  const tiers = new Map<number, T[]>();
  for (const hub of candidates) {
    const ms = regionLatencyMs(settings.region, hub.location, settings.latencies);
    tiers.set(ms, [...(tiers.get(ms) ?? []), hub]);
  }
  for (const ms of [...tiers.keys()].sort((x, y) => x - y)) {
    const hub = allocateHashed(registrationId, tiers.get(ms) ?? []);
    if (hub) return hub;
  }
  return undefined;
}

const REGION = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Parses DPS_REGION_LATENCIES: comma- or semicolon-separated `regionA:regionB=ms` entries, symmetric, e.g.
 * `westeurope:northeurope=20, westeurope:onprem-paris=5`. Throws an Error that names the bad entry.
 */
export function parseLatencyTable(value: string): Map<string, number> {
  const table = new Map<string, number>();
  for (const raw of value.split(/[,;]/)) {
    const entry = raw.trim();
    if (entry === '') continue;
    const match = /^([^:=]+):([^:=]+)=\s*(\d{1,6})$/.exec(entry);
    const a = normalizeRegion(match?.[1] ?? '');
    const b = normalizeRegion(match?.[2] ?? '');
    if (!match || !REGION.test(a) || !REGION.test(b)) {
      throw new Error(`'${entry}' is not 'regionA:regionB=milliseconds' (e.g. westeurope:northeurope=20)`);
    }
    table.set(latencyKey(a, b), Number(match[3]));
  }
  return table;
}
