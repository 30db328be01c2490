// Embedded Azurite Table service. `require('azurite')` loads the VS Code extension entry and fails, so the table
// server is reached through its deep modules (reference/official-clients.md §8).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

interface AzuriteTableServer {
  start(): Promise<void>;
  close(): Promise<void>;
  clean(): Promise<void>;
  getHttpServerAddress(): string;
}
type TableServerCtor = new (config: unknown) => AzuriteTableServer;
type TableConfigurationCtor = new (...args: unknown[]) => unknown;

// The well-known Azurite account (public, documented; not a secret).
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteTables {
  /** e.g. http://127.0.0.1:10002 */
  url: string;
  connectionString: string;
  stop(): Promise<void>;
}

export interface AzuriteOptions {
  host?: string;
  /** 0 picks a free port; 10002 is what `UseDevelopmentStorage=true` expects. */
  port?: number;
  /** A folder to persist tables in; in memory when absent. */
  location?: string;
  /** Serve HTTPS with these PEM files; with `oauth: 'basic'` Azurite then accepts Entra ID-style bearer tokens. */
  tls?: { certFile: string; keyFile: string };
  oauth?: 'basic';
}

export function tablesConnectionString(url: string): string {
  return (
    `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
    `TableEndpoint=${url}/${AZURITE_ACCOUNT};`
  );
}

export async function startAzuriteTables(options: AzuriteOptions = {}): Promise<AzuriteTables> {
  /* eslint-disable @typescript-eslint/no-require-imports -- deep CommonJS modules without type declarations */
  const TableServer = (require('azurite/dist/src/table/TableServer') as { default: TableServerCtor }).default;
  const TableConfiguration = (
    require('azurite/dist/src/table/TableConfiguration') as { default: TableConfigurationCtor }
  ).default;
  /* eslint-enable @typescript-eslint/no-require-imports */
  const inMemory = options.location === undefined;
  if (options.location) mkdirSync(options.location, { recursive: true });
  const config = new TableConfiguration(
    options.host ?? '127.0.0.1',
    options.port ?? 0,
    5, // keep-alive seconds
    inMemory ? ':memory:' : join(options.location ?? '.', '__azurite_db_table__.json'),
    false, // debug log
    false, // access log
    undefined,
    undefined,
    false, // loose
    true, // skipApiVersionCheck: the SDK may be newer than this Azurite
    options.tls?.certFile ?? '',
    options.tls?.keyFile ?? '',
    '',
    options.oauth,
    false, // disableProductStyleUrl
    inMemory,
  );
  const server = new TableServer(config);
  await server.start();
  const url = server.getHttpServerAddress();
  return {
    url,
    connectionString: tablesConnectionString(url),
    async stop() {
      await server.close();
      if (inMemory) await server.clean();
    },
  };
}
