// The same-run storage ceiling: raw @azure/data-tables upsertEntity and getEntity against the same Azurite, at the
// same concurrency, on a table of its own with small entities (6 properties over 50 partitions, as in
// reference/official-clients.md §8). Registrations/s divided by upserts/s says how close the service gets to storage.
// Also the one query a registration makes (its device partition, on the host's own Devices table): Azurite answers
// queries by scanning the whole table, so that read, unlike a point get, slows down as the table grows.
// Azurite is warmed first (a cold one ran the first level at half speed) and upserts and gets are measured several
// times, interleaved: the median is the ceiling, and the spread says how far a ratio against it can be trusted.
import { randomBytes } from 'node:crypto';

import { TableClient, odata } from '@azure/data-tables';

import { loadConfig } from '../shared/config';
import { registrationKey } from '../shared/domain/registrationId';
import { createTables } from '../shared/storage/tables';

import type { LatencySummary } from './stats';
import { median, rate, summarize } from './stats';
import { runPool } from './pool';

export interface CeilingOp {
  /** The median of the runs' rates. */
  perSecond: number;
  /** Each run's rate, in the order measured. */
  runs: number[];
  /** (max − min) ÷ median of the runs' rates; 0 for a single run. */
  spread: number;
  /** Over every run's samples. */
  latencyMs: LatencySummary;
  failed: number;
}

/** Unmeasured upserts and gets before the first measured run, so Azurite (and the client's pool) are warm. */
const WARM_UP_MIN = 200;

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
    runs = 3,
  ): Promise<CeilingResult> {
    const cfg = loadConfig(hostSettings);
    const devices = createTables({ connectionString: cfg.tablesConnectionString, prefix: cfg.tablePrefix }).devices;
    this.ready ??= this.client.createTable();
    await this.ready;
    // Fresh row keys per level and run, so upserts insert as a first registration does.
    const key = (run: string, i: number) => ({ partitionKey: `p${i % 50}`, rowKey: `c${concurrency}-${run}-r${i}` });
    const upsertOp = (run: string) => (i: number) =>
      this.client.upsertEntity(
        { ...key(run, i), a: 'value-a', b: i, c: true, d: 1.5, e: 'value-e', f: `f${i}` },
        'Merge',
      );
    const getOp = (run: string) => (i: number) => this.client.getEntity(key(run, i).partitionKey, key(run, i).rowKey);

    const warmUp = Math.max(WARM_UP_MIN, Math.ceil(operations / 2));
    await timed(warmUp, concurrency, upsertOp('warm'));
    await timed(warmUp, concurrency, getOp('warm'));
    const upserts: Timed[] = [];
    const gets: Timed[] = [];
    for (let run = 0; run < Math.max(1, runs); run++) {
      upserts.push(await timed(operations, concurrency, upsertOp(`m${run}`)));
      gets.push(await timed(operations, concurrency, getOp(`m${run}`)));
    }
    const upsert = combine(upserts);
    const get = combine(gets);
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
    return { concurrency, operations, upsert, get, query: combine([query]), devicesTableRows };
  }

  async dispose(): Promise<void> {
    if (this.ready) await this.client.deleteTable().catch(() => undefined);
  }
}

interface Timed {
  perSecond: number;
  samples: number[];
  failed: number;
}

function combine(runs: readonly Timed[]): CeilingOp {
  const rates = runs.map((r) => r.perSecond);
  const mid = median(rates);
  return {
    perSecond: mid,
    runs: rates,
    spread: rates.length > 1 && mid > 0 ? (Math.max(...rates) - Math.min(...rates)) / mid : 0,
    latencyMs: summarize(runs.flatMap((r) => r.samples)),
    failed: runs.reduce((sum, r) => sum + r.failed, 0),
  };
}

async function timed(count: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<Timed> {
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
  return { perSecond: rate(samples.length, wallMs), samples, failed };
}
