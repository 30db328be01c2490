// Settings, read and validated once. A missing or malformed setting fails fast with its name.
import { normalizeRegion, parseLatencyTable } from './allocation/geoLatency';
import { BASE64 } from './encoding';
import type { EventHubsTarget } from './events/sinks';

export interface Config {
  /** The ID scope devices use, e.g. 0ne00000A0A. */
  idScope: string;
  /** Table Storage connection string (`UseDevelopmentStorage=true` for Azurite); absent when `tablesEndpoint` is set. */
  tablesConnectionString?: string;
  /** Table service URL reached with the Azure credential (managed identity), e.g. `https://acct.table.core.windows.net`. */
  tablesEndpoint?: string;
  tablePrefix: string;
  /** Client ID of the user-assigned managed identity the Azure credential uses (`AZURE_CLIENT_ID`). */
  azureClientId?: string;
  /** Key Vault key provider: the vault URL and the key-encryption key's name. Absent: the local provider. */
  keyVault?: { url: string; keyName: string };
  /** 32-byte master key for the local key provider (base64); optional when Key Vault is configured. */
  masterKey?: Buffer;
  /** How long a register PUT waits for the IoT hub before answering `assigning`. */
  registerBudgetMs: number;
  /** Wall-clock deadline of a registration's hub step (and of each hub call); also when a poll takes it over. */
  hubTimeoutMs: number;
  retryAfterSeconds: number;
  /** TTL of the per-instance caches of enrollment groups and linked hubs. */
  cacheTtlMs: number;
  /** Extra CA certificate (PEM file) to trust for IoT hub connections, e.g. the dev hub emulator's. */
  hubCaFile?: string;
  /** Key of the root access policy `provisioningserviceowner` (all rights); the service API is closed without it. */
  serviceOwnerKey?: string;
  /** DPS_SERVICE_OWNER_KEY holds a Key Vault reference the platform did not resolve (the service API stays closed). */
  serviceOwnerKeyUnresolved?: true;
  /** Host names a service token's `sr` may name; empty: the request's Host header. */
  serviceHostNames: string[];
  /** How far in the future a SAS token's expiry (`se`) may be, for service and device tokens alike. */
  maxSasLifetimeSeconds: number;
  /** Set by the dev stack (DPS_DEV_STACK=1), which has no fixed host name. */
  devStack: boolean;
  /** Overall deadline of a custom allocation webhook call (retry included), default 3000 ms. */
  webhookTimeoutMs: number;
  /** Hub health: consecutive failed hub calls that put a hub on a cool-down (DPS_HUB_FAILURE_THRESHOLD, default 2). */
  hubFailureThreshold: number;
  /** How long hashed and geoLatency skip an unhealthy hub (DPS_HUB_COOLDOWN_MS, default 30,000). */
  hubCoolDownMs: number;
  /** The region this instance serves from (geoLatency): DPS_REGION, else the platform's REGION_NAME; normalised. */
  region?: string;
  /** DPS_REGION_LATENCIES: operator latencies (ms) between regions, keyed by allocation/geoLatency `latencyKey`. */
  regionLatencies: Map<string, number>;
  events: EventsConfig;
  /** The header the TLS front end forwards the device's leaf certificate in (lower case), default x-arr-clientcert. */
  clientCertHeader: string;
}

export interface EventsConfig {
  /** DPS_EVENTS=off records no events (default on). */
  enabled: boolean;
  /** Event Hubs, or undefined: the local sink (log lines, and a JSON-lines file when `file` is set). */
  eventHubs?: EventHubsTarget;
  file?: string;
  /** Print a line per event (local sink). */
  console: boolean;
  /** A pending event older than this is delivered by the sweep. */
  sweepAfterMs: number;
  /** The events' `source` host (CloudEvents): the first service host name, else the Functions app's host. */
  sourceHost: string;
}

/** One year: far beyond what the official SDKs sign (1 hour; the C# device SDK 1 day), short of "forever". */
export const DEFAULT_MAX_SAS_LIFETIME_SECONDS = 365 * 24 * 3600;
/** The owner key signs tokens with every right: at least as strong as the keys DPS itself generates. */
const MIN_OWNER_KEY_BYTES = 32;

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): Config {
  const keyVault = keyVaultSettings(env);
  // With Key Vault the master key is only needed to open values sealed before by the local provider.
  const rawMasterKey = keyVault ? env.DPS_MASTER_KEY?.trim() : required(env, 'DPS_MASTER_KEY');
  const masterKey = rawMasterKey ? Buffer.from(rawMasterKey, 'base64') : undefined;
  if (masterKey && masterKey.length !== 32) {
    throw new ConfigError('DPS_MASTER_KEY must be the base64 of 32 random bytes.');
  }
  const tablesEndpoint = env.DPS_TABLES_ENDPOINT?.trim();
  if (tablesEndpoint && !/^https?:\/\/[^\s/]+/i.test(tablesEndpoint)) {
    throw new ConfigError(`The setting DPS_TABLES_ENDPOINT must be a URL like https://account.table.core.windows.net.`);
  }
  const azureClientId = env.AZURE_CLIENT_ID?.trim();
  const hubCaFile = env.DPS_HUB_CA_FILE?.trim();
  const rawOwnerKey = env.DPS_SERVICE_OWNER_KEY?.trim();
  // App Service leaves a Key Vault reference it cannot resolve (secret not yet written, role not yet effective) as its
  // literal text: close the service API with a warning rather than fail every request, device registrations included.
  const serviceOwnerKeyUnresolved = /^@Microsoft\.KeyVault\(/i.test(rawOwnerKey ?? '');
  const serviceOwnerKey = serviceOwnerKeyUnresolved ? undefined : rawOwnerKey;
  if (serviceOwnerKey && !BASE64.test(serviceOwnerKey)) {
    throw new ConfigError('DPS_SERVICE_OWNER_KEY must be base64 (e.g. of 32 random bytes).');
  }
  if (serviceOwnerKey && Buffer.from(serviceOwnerKey, 'base64').length < MIN_OWNER_KEY_BYTES) {
    throw new ConfigError(`DPS_SERVICE_OWNER_KEY must be the base64 of at least ${MIN_OWNER_KEY_BYTES} random bytes.`);
  }
  const maxSasLifetimeSeconds = integer(env, 'DPS_MAX_SAS_LIFETIME_SECONDS', DEFAULT_MAX_SAS_LIFETIME_SECONDS);
  if (maxSasLifetimeSeconds < 1) throw new ConfigError('The setting DPS_MAX_SAS_LIFETIME_SECONDS must be at least 1.');
  return {
    idScope: required(env, 'DPS_ID_SCOPE'),
    ...(tablesEndpoint
      ? { tablesEndpoint: tablesEndpoint.replace(/\/+$/, '') }
      : {
          tablesConnectionString: env.DPS_TABLES_CONNECTION_STRING?.trim() || required(env, 'AzureWebJobsStorage'),
        }),
    tablePrefix: matching(env, 'DPS_TABLE_PREFIX', 'dps', /^[A-Za-z][A-Za-z0-9]{0,40}$/),
    ...(azureClientId ? { azureClientId } : {}),
    ...(keyVault ? { keyVault } : {}),
    ...(masterKey ? { masterKey } : {}),
    registerBudgetMs: integer(env, 'DPS_REGISTER_BUDGET_MS', 5000),
    hubTimeoutMs: integer(env, 'DPS_HUB_TIMEOUT_MS', 10_000),
    retryAfterSeconds: integer(env, 'DPS_RETRY_AFTER_SECONDS', 3),
    cacheTtlMs: integer(env, 'DPS_CACHE_TTL_MS', 5000),
    ...(hubCaFile ? { hubCaFile } : {}),
    ...(serviceOwnerKey ? { serviceOwnerKey } : {}),
    ...(serviceOwnerKeyUnresolved ? { serviceOwnerKeyUnresolved: true as const } : {}),
    serviceHostNames: (env.DPS_SERVICE_HOSTNAMES ?? '')
      .split(',')
      .map((h) => h.trim())
      .filter((h) => h !== ''),
    maxSasLifetimeSeconds,
    devStack: env.DPS_DEV_STACK?.trim() === '1',
    webhookTimeoutMs: integer(env, 'DPS_WEBHOOK_TIMEOUT_MS', 3000),
    hubFailureThreshold: Math.max(1, integer(env, 'DPS_HUB_FAILURE_THRESHOLD', 2)),
    hubCoolDownMs: integer(env, 'DPS_HUB_COOLDOWN_MS', 30_000),
    ...region(env),
    regionLatencies: latencyTable(env),
    events: eventsConfig(env),
    clientCertHeader: matching(env, 'DPS_CLIENT_CERT_HEADER', 'x-arr-clientcert', /^[A-Za-z0-9-]{1,64}$/).toLowerCase(),
  };
}

function eventsConfig(env: Env): EventsConfig {
  const connectionString = env.DPS_EVENT_HUBS_CONNECTION_STRING?.trim();
  const namespace = env.DPS_EVENT_HUBS_NAMESPACE?.trim()
    .replace(/^(sb|amqps|https):\/\//i, '')
    .replace(/\/$/, '');
  const hubName = env.DPS_EVENT_HUB_NAME?.trim();
  let eventHubs: EventHubsTarget | undefined;
  if (connectionString) {
    if (!/(^|;)\s*Endpoint=/i.test(connectionString)) {
      throw new ConfigError('DPS_EVENT_HUBS_CONNECTION_STRING must be Endpoint=sb://…;SharedAccessKeyName=…;….');
    }
    if (!/(^|;)\s*EntityPath=/i.test(connectionString) && !hubName) {
      throw new ConfigError('DPS_EVENT_HUBS_CONNECTION_STRING has no EntityPath: set DPS_EVENT_HUB_NAME too.');
    }
    eventHubs = { kind: 'connectionString', connectionString, ...(hubName ? { hubName } : {}) };
  } else if (namespace) {
    if (!hubName) throw new ConfigError('DPS_EVENT_HUBS_NAMESPACE is set: DPS_EVENT_HUB_NAME is required too.');
    if (!/^[A-Za-z0-9.-]+(:\d+)?$/.test(namespace)) {
      throw new ConfigError(`DPS_EVENT_HUBS_NAMESPACE must be <namespace>.servicebus.windows.net, not '${namespace}'.`);
    }
    eventHubs = { kind: 'identity', namespace, hubName };
  }
  const file = env.DPS_EVENTS_FILE?.trim();
  const hosts = (env.DPS_SERVICE_HOSTNAMES ?? '').split(',').map((h) => h.trim());
  const enabled = (env.DPS_EVENTS?.trim().toLowerCase() ?? 'on') !== 'off';
  return {
    enabled,
    ...(eventHubs ? { eventHubs } : {}),
    ...(file ? { file } : {}),
    console: (env.DPS_EVENTS_CONSOLE?.trim() ?? 'true') !== 'false',
    sweepAfterMs: integer(env, 'DPS_EVENTS_SWEEP_AFTER_MS', 30_000),
    sourceHost: hosts.find((h) => h !== '') ?? env.WEBSITE_HOSTNAME?.trim() ?? 'localhost',
  };
}

/** What an operator should hear about at start: settings that are valid but weaken the deployment. */
export function configWarnings(cfg: Config): string[] {
  const warnings: string[] = [];
  if (cfg.serviceHostNames.length === 0 && !cfg.devStack) {
    warnings.push(
      'DPS_SERVICE_HOSTNAMES is not set: service tokens are checked against the Host header of each request. ' +
        "Set it to this service's public host name(s).",
    );
  }
  if (cfg.serviceOwnerKeyUnresolved) {
    warnings.push(
      'DPS_SERVICE_OWNER_KEY is a Key Vault reference the platform did not resolve: the root access policy is off ' +
        'until it does (check the secret exists and the app identity may read it; `azd hooks run postprovision`).',
    );
  }
  return warnings;
}

function region(env: Env): { region?: string } {
  const value = normalizeRegion(env.DPS_REGION ?? '') || normalizeRegion(env.REGION_NAME ?? '');
  return value ? { region: value } : {};
}

function latencyTable(env: Env): Map<string, number> {
  try {
    return parseLatencyTable(env.DPS_REGION_LATENCIES ?? '');
  } catch (err) {
    throw new ConfigError(`The setting DPS_REGION_LATENCIES is malformed: ${(err as Error).message}.`);
  }
}

/** DPS_KEY_VAULT_URL (+ DPS_KEY_VAULT_KEY, default `dps-kek`) selects the Key Vault key provider. */
function keyVaultSettings(env: Env): Config['keyVault'] {
  const url = env.DPS_KEY_VAULT_URL?.trim();
  if (!url) return undefined;
  if (!/^https:\/\/[^\s/]+\/?$/i.test(url)) {
    throw new ConfigError(`The setting DPS_KEY_VAULT_URL must be a vault URL like https://name.vault.azure.net/.`);
  }
  const keyName = matching(env, 'DPS_KEY_VAULT_KEY', 'dps-kek', /^[A-Za-z0-9-]{1,127}$/);
  return { url: url.replace(/\/+$/, ''), keyName };
}

function required(env: Env, key: string): string {
  const value = env[key]?.trim();
  if (!value) throw new ConfigError(`The setting ${key} is required but not set.`);
  return value;
}

function integer(env: Env, key: string, fallback: number): number {
  const raw = env[key]?.trim();
  if (!raw) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`The setting ${key} must be a whole number, not '${raw}'.`);
  return Number(raw);
}

function matching(env: Env, key: string, fallback: string, pattern: RegExp): string {
  const value = env[key]?.trim() || fallback;
  if (!pattern.test(value)) throw new ConfigError(`The setting ${key} ('${value}') must match ${pattern}.`);
  return value;
}

let current: Config | undefined;

/** Forgets the configuration read before: the next use reads the environment again (dev hosts, tests). */
export function resetConfig(): void {
  current = undefined;
}

/** The process's configuration, read from the environment on first use. */
export function config(): Config {
  if (!current) {
    current = loadConfig();
    for (const warning of configWarnings(current)) console.warn(`[config] ${warning}`);
  }
  return current;
}
