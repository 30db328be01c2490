// The same-run storage ceiling: raw @azure/data-tables upsertEntity and getEntity against the same Azurite, at the
// same concurrency, on a table of its own with small entities (6 properties over 50 partitions, as in
// reference/official-clients.md §8). Registrations/s divided by upserts/s says how close the service gets to storage.
// Also the one query a registration makes (its device partition, on the host's own Devices table): Azurite answers
// queries by scanning the whole table, so that read, unlike a point get, slows down as the table grows.
import { randomBytes } from 'node:crypto';

import { TableClient, odata } from '@azure/data-tables';

import { loadConfig } from '../shared/config';
import { registrationKey } from '../shared/domain/registrationId';
import { createTables } from '../shared/storage/tables';

import type { LatencySummary } from './stats';
import { rate, summarize } from './stats';
import { runPool } from './pool';

export interface CeilingOp {
  perSecond: number;
  latencyMs: LatencySummary;
  failed: number;
}

export interface CeilingResult {
  concurrency: number;
  operations: number;
  upsert: CeilingOp;
  get: CeilingOp;
  /** The device-partition query of a registration, on the host's Devices table (read-only). */
  query: CeilingOp;
  /** Rows in the Devices table when the query was measured. */
  devicesTableRows: number;
}

export class TablesCeiling {
  private readonly client: TableClient;
  private ready: Promise<void> | undefined;

  constructor(connectionString: string) {
    this.client = TableClient.fromConnectionString(connectionString, `benchceiling${randomBytes(4).toString('hex')}`, {
      allowInsecureConnection: true,
    });
  }

  /**
   * `hostSettings` name the host's Devices table (through the project's own table naming); `registrationIds` are
   * enrolled devices whose partitions the query benchmark reads.
   */
  async measure(
    concurrency: number,
    operations: number,
    hostSettings: Record<string, string>,
    registrationIds: readonly string[],
  ): Promise<CeilingResult> {
    const cfg = loadConfig(hostSettings);
    const devices = createTables({ connectionString: cfg.tablesConnectionString, prefix: cfg.tablePrefix }).devices;
    this.ready ??= this.client.createTable();
    await this.ready;
    // Fresh row keys per level, so upserts insert as a first registration does.
    const key = (i: number) => ({ partitionKey: `p${i % 50}`, rowKey: `c${concurrency}-r${i}` });
    const upsert = await timed(operations, concurrency, (i) =>
      this.client.upsertEntity({ ...key(i), a: 'value-a', b: i, c: true, d: 1.5, e: 'value-e', f: `f${i}` }, 'Merge'),
    );
    const get = await timed(operations, concurrency, (i) => this.client.getEntity(key(i).partitionKey, key(i).rowKey));
    const query = await timed(operations, concurrency, async (i) => {
      const partition = registrationKey(registrationIds[i % registrationIds.length] ?? '');
      for await (const row of devices.listEntities({
        queryOptions: { filter: odata`PartitionKey eq ${partition}` },
      })) {
        void row;
      }
    });
    let devicesTableRows = 0;
    for await (const page of devices
      .listEntities({ queryOptions: { select: ['RowKey'] } })
      .byPage({ maxPageSize: 1000 })) {
      devicesTableRows += page.length;
    }
    return { concurrency, operations, upsert, get, query, devicesTableRows };
  }

  async dispose(): Promise<void> {
    if (this.ready) await this.client.deleteTable().catch(() => undefined);
  }
}

async function timed(count: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<CeilingOp> {
  const samples: number[] = [];
  let failed = 0;
  const wallMs = await runPool(count, concurrency, async (i) => {
    const started = performance.now();
    try {
      await op(i);
      samples.push(performance.now() - started);
    } catch {
      failed++;
    }
  });
  return { perSecond: rate(samples.length, wallMs), latencyMs: summarize(samples), failed };
}
