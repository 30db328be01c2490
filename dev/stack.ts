// The whole local stack in one call: certificates, Azurite Tables, IoT hub emulators, the functions' settings and
// the dev HTTPS host. `npm start`, the e2e tests and the benchmark all start it through here.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Services } from '../shared/services';
import type { AzureClientOverrides } from '../shared/identity';
import { setAzureClientOverrides } from '../shared/identity';
import { ROOT_POLICY, resetServices, services } from '../shared/services';
import type { AzuriteTables } from './azurite';
import { startAzuriteTables } from './azurite';
import { createDevCertificates } from './certs';
import type { DevHost } from './host';
import { loadFunctions, startDevHost } from './host';
import type { HubEmulator } from './hubEmulator';
import { startHubEmulator } from './hubEmulator';

export interface CertificateFiles {
  caCert: string;
  serverCert: string;
  serverKey: string;
}

export interface ExternalHub {
  hostName: string;
  connectionString: string;
}

export interface StackOptions {
  /** Existing dev certificates (the e2e setup makes one CA per run); generated into `stateDir` otherwise. */
  certs?: CertificateFiles;
  /** Use this Table Storage instead of starting an embedded Azurite. */
  tablesConnectionString?: string;
  /** Embedded Azurite: port (0 = free) and an optional folder to persist to. */
  azurite?: { port?: number; location?: string };
  /** Dev host port; 0 = free. */
  port?: number;
  /**
   * How many hub emulators to start and link, and the first one's port (0 = free ports); `external` hubs (e.g. an
   * emulator in another process) are linked as they are.
   */
  hubs?: {
    count?: number;
    port?: number;
    persistDir?: string;
    external?: ExternalHub[];
    /** Each started hub's linked `location`; default: HUB_LOCATIONS in turn, so geo-latency can be tried locally. */
    locations?: string[];
  };
  /** Service settings (DPS_* keys) that win over the environment and the defaults. */
  settings?: Record<string, string>;
  /** Folder for generated certificates and hub state. */
  stateDir?: string;
  onRequest?: Parameters<typeof startDevHost>[1]['onRequest'];
  /** Bench only: the dev host trusts a client-supplied certificate header (DevHostOptions.trustClientCertHeader). */
  trustClientCertHeader?: boolean;
  /** How often the dev host runs the events sweep (the timer function's job in Azure); default 10 s. */
  eventSweepMs?: number;
  /** A credential (e.g. a static token for emulators) instead of DefaultAzureCredential. */
  azure?: AzureClientOverrides;
}

export interface Stack {
  idScope: string;
  /** The global device endpoint to give an SDK: `localhost:port`. */
  deviceEndpoint: string;
  /** For the service SDK: `HostName=localhost:port;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…`. */
  serviceConnectionString: string;
  host: DevHost;
  hubs: HubEmulator[];
  /** The `location` each of `hubs` is linked with (same order). */
  hubLocations: string[];
  tablesConnectionString: string;
  certs: CertificateFiles;
  /** The settings the functions run with (includes the master key: never print it). */
  settings: Record<string, string>;
  services: Services;
  stop(): Promise<void>;
}

/** Locations given to the local hubs in turn: distinct Azure regions of distinct geographies. */
export const HUB_LOCATIONS = ['westeurope', 'eastus', 'southeastasia', 'australiaeast', 'brazilsouth', 'japaneast'];

/** A random ID scope shaped like DPS's (`0ne` + 8 hex digits). */
export const newIdScope = (): string => `0ne${randomBytes(4).toString('hex').toUpperCase()}`;

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const stateDir = options.stateDir ?? join(process.cwd(), '.dev');
  const stoppers: (() => Promise<void>)[] = [];
  // Stops everything, last started first, then rejects with the first failure (e.g. a hub registry that could not
  // be saved), so a caller never mistakes a lossy stop for a clean one.
  const stop = async () => {
    const errors: unknown[] = [];
    for (const s of stoppers.splice(0).reverse()) await s().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw errors[0];
  };
  try {
    const certs = options.certs ?? (await loadOrCreateCertificates(join(stateDir, 'certs')));
    const tls = { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') };

    let tablesConnectionString = options.tablesConnectionString;
    if (!tablesConnectionString) {
      const azurite: AzuriteTables = await startAzuriteTables(options.azurite ?? {});
      stoppers.push(() => azurite.stop());
      tablesConnectionString = azurite.connectionString;
    }

    const hubs: HubEmulator[] = [];
    const locations = options.hubs?.locations ?? HUB_LOCATIONS;
    const hubLocations: string[] = [];
    const hubCount = options.hubs?.count ?? 1;
    for (let i = 0; i < hubCount; i++) {
      const basePort = options.hubs?.port ?? 0;
      const persistDir = options.hubs?.persistDir;
      const hub = await startHubEmulator({
        tls,
        port: basePort === 0 ? 0 : basePort + i,
        ...(persistDir ? { persistFile: join(persistDir, `hub-${i + 1}.json`) } : {}),
      });
      stoppers.push(() => hub.close());
      hubs.push(hub);
      hubLocations.push(locations[i % locations.length] ?? 'local');
    }

    // The functions read their settings from the environment, as under the Functions host.
    const settings: Record<string, string> = {
      DPS_ID_SCOPE: process.env.DPS_ID_SCOPE ?? newIdScope(),
      DPS_MASTER_KEY: process.env.DPS_MASTER_KEY ?? randomBytes(32).toString('base64'),
      DPS_SERVICE_OWNER_KEY: process.env.DPS_SERVICE_OWNER_KEY ?? randomBytes(32).toString('base64'),
      DPS_TABLES_CONNECTION_STRING: tablesConnectionString,
      DPS_HUB_CA_FILE: certs.caCert,
      // The dev stack's host name is whatever port it got: config.ts doesn't ask it for DPS_SERVICE_HOSTNAMES.
      DPS_DEV_STACK: '1',
      // The local event sink's JSON lines (no Event Hubs configured).
      DPS_EVENTS_FILE: process.env.DPS_EVENTS_FILE ?? join(stateDir, 'events.jsonl'),
      ...options.settings,
    };
    Object.assign(process.env, settings);

    // A stack is a fresh instance: settings read again, caches and data keys empty.
    setAzureClientOverrides(options.azure ?? {});
    resetServices();
    const svc = await services();
    stoppers.push(() => svc.events.outbox.close());
    // The dev host serves HTTP only: the timer function's sweep runs here on an interval.
    const sweep = setInterval(() => {
      svc.events.outbox.sweep().catch((err: unknown) => console.warn(`[events] sweep failed: ${String(err)}`));
    }, options.eventSweepMs ?? 10_000);
    stoppers.push(() => Promise.resolve(clearInterval(sweep)));
    // Linked so that a fresh stack provisions at once; more hubs can be linked through the service API.
    const linked = [
      ...hubs.map((hub, i) => ({ ...hub, location: hubLocations[i] ?? 'local' })),
      ...(options.hubs?.external ?? []).map((hub) => ({ ...hub, location: 'local' })),
    ];
    for (const hub of linked) {
      await svc.configuration.putLinkedHub({
        hostName: hub.hostName,
        connectionString: hub.connectionString,
        location: hub.location,
        allocationWeight: 1,
        applyAllocationPolicy: true,
      });
    }

    const host = await startDevHost(await loadFunctions(), {
      tls,
      port: options.port ?? 0,
      ...(options.onRequest ? { onRequest: options.onRequest } : {}),
      clientCertHeader: svc.config.clientCertHeader,
      ...(options.trustClientCertHeader ? { trustClientCertHeader: true } : {}),
    });
    stoppers.push(() => host.close());

    return {
      idScope: settings.DPS_ID_SCOPE ?? '',
      deviceEndpoint: host.hostName,
      serviceConnectionString:
        `HostName=${host.hostName};SharedAccessKeyName=${ROOT_POLICY};` +
        `SharedAccessKey=${settings.DPS_SERVICE_OWNER_KEY ?? ''}`,
      host,
      hubs,
      hubLocations,
      tablesConnectionString,
      certs,
      settings,
      services: svc,
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

async function loadOrCreateCertificates(dir: string): Promise<CertificateFiles> {
  const files = {
    caCert: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
  };
  if (Object.values(files).every((f) => existsSync(f))) return files;
  return (await createDevCertificates(dir)).files;
}

/** Settings kept in `.dev/settings.json` so that restarts (and the seed command) use the same scope and key. */
export function loadOrCreateDevSettings(stateDir: string): Record<string, string> {
  const file = join(stateDir, 'settings.json');
  const saved = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>) : {};
  const settings = {
    DPS_ID_SCOPE: newIdScope(),
    DPS_MASTER_KEY: randomBytes(32).toString('base64'),
    DPS_SERVICE_OWNER_KEY: randomBytes(32).toString('base64'),
    ...saved,
  };
  if (Object.keys(settings).length !== Object.keys(saved).length) {
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(file, JSON.stringify(settings, null, 2), { mode: 0o600 });
  }
  return settings;
}
