// Table Storage clients for the service's tables, with a request counter (round trips are the cost model). Reached
// with a connection string (Azurite, shared key) or with an endpoint and a token credential (managed identity).
import type { TokenCredential } from '@azure/core-auth';
import { TableClient } from '@azure/data-tables';
import type { TableEntityResult, TableServiceClientOptions } from '@azure/data-tables';
import { isRestError } from '@azure/core-rest-pipeline';

import { invalidContinuationToken } from '../errors';

export interface TableSettings {
  /** `UseDevelopmentStorage=true` or a full connection string; used when no endpoint is given. */
  connectionString?: string;
  /** The table service URL, reached with `credential` (Entra ID: "Storage Table Data Contributor"). */
  endpoint?: string;
  credential?: TokenCredential;
  /** Table name prefix, so several instances (or test runs) can share one storage account. */
  prefix: string;
}

export interface Tables {
  /** One partition per registration ID: the individual enrollment and the registration state (with its operation). */
  devices: TableClient;
  /** Enrollment groups, one partition. */
  groups: TableClient;
  /** Service configuration: linked hubs, access policies. */
  config: TableClient;
  /** The events outbox's pending index (events/outbox.ts). */
  outbox: TableClient;
  /** Creates the tables if needed; call once per instance before first use. */
  ensure(): Promise<void>;
}

/**
 * Every HTTP request sent to Table Storage by this process, retries included; `outbox`: those to the events outbox's
 * pending index (group-committed markers, off the device's latency path). Read by benchmarks and tests.
 */
export const tableRequestCounter = { count: 0, outbox: 0 };

export function createTables(settings: TableSettings): Tables {
  const { connectionString, endpoint, credential } = settings;
  // Per table: a transaction's URL is `$batch`, so the table is known from the client, not the request.
  const options = (name: string): TableServiceClientOptions => ({
    allowInsecureConnection: /^UseDevelopmentStorage=true|TableEndpoint=http:/i.test(connectionString ?? ''),
    additionalPolicies: [
      {
        position: 'perRetry',
        policy: {
          name: 'countTableRequests',
          sendRequest: (request, next) => {
            tableRequestCounter.count++;
            if (name === 'Outbox') tableRequestCounter.outbox++;
            return next(request);
          },
        },
      },
    ],
  });
  const client = (name: string): TableClient => {
    const table = `${settings.prefix}${name}`;
    if (endpoint && credential) return new TableClient(endpoint, table, credential, options(name));
    if (connectionString) return TableClient.fromConnectionString(connectionString, table, options(name));
    throw new Error('Table Storage needs a connection string, or an endpoint and a credential.');
  };
  const tables = {
    devices: client('Devices'),
    groups: client('Groups'),
    config: client('Config'),
    outbox: client('Outbox'),
  };
  let ensured: Promise<void> | undefined;
  return {
    ...tables,
    ensure() {
      ensured ??= Promise.all(Object.values(tables).map((t) => t.createTable())).then(
        () => undefined,
        (err: unknown) => {
          ensured = undefined; // let the next request try again
          throw err;
        },
      );
      return ensured;
    },
  };
}

/** One page of a query: at most `pageSize` rows and the token of the next page, if storage says there may be one. */
export async function firstPage<T extends object>(
  table: TableClient,
  filter: string,
  pageSize: number,
  continuationToken?: string,
): Promise<{ rows: TableEntityResult<T>[]; continuationToken?: string }> {
  const pages = table
    .listEntities<T>({ queryOptions: { filter } })
    .byPage({ maxPageSize: pageSize, ...(continuationToken ? { continuationToken } : {}) });
  const page = await pages.next().catch((err: unknown) => {
    // The token's shape was checked, but storage still refuses keys it never issued: the client's fault, not ours.
    throw continuationToken && isStatus(err, 400) ? invalidContinuationToken() : err;
  });
  if (page.done) return { rows: [] };
  return {
    rows: page.value,
    ...(page.value.continuationToken ? { continuationToken: page.value.continuationToken } : {}),
  };
}

export function isStatus(err: unknown, ...statuses: number[]): boolean {
  return isRestError(err) && err.statusCode !== undefined && statuses.includes(err.statusCode);
}
