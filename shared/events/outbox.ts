// The transactional outbox: no committed change without its event.
//
// 1. Before a change can commit, a *marker* goes to a small sharded index (`pending-0…7` partitions of the outbox
//    table). A registration's marker says "device partition P may hold unsent events from time T on"; it is written
//    when the register PUT starts, in parallel with the device-partition read, so it costs no sequential round trip.
//    Markers of concurrent requests are group-committed: one batch write covers every request waiting at that moment.
// 2. The change commits with its events: registration events as `event|<id>` rows in the device's partition, in the
//    same Table transaction as the registration row (still one round trip). They stay there as the device's recent
//    event history and are the proof that the change committed.
// 3. After the commit the events are queued in memory and sent in the background (off the device's latency path);
//    once Event Hubs accepted every event committed under a marker and its operation ended, the marker is deleted.
// 4. The sweep (timer function; the dev stack on an interval) reads only the index: markers older than
//    `sweepAfterMs` belong to an instance that crashed, was throttled or overflowed. A registration marker's partition
//    is read from T on (event IDs begin with their time) and what is there is sent; a management marker carries its
//    events and is confirmed by reading the changed object. A marker is dropped only once it is older than
//    `settleAfterMs` (beyond the longest a change can still be landing); until then the sweep keeps it, with a cursor
//    so the same events are not re-sent. It never reads rows that have nothing pending.
import type { TableClient, TransactionAction } from '@azure/data-tables';
import { odata } from '@azure/data-tables';

import type { CloudEvent, EventOrigin } from './catalogue';
import { newEventId } from './catalogue';
import { crashPoint } from './crashPoint';
import type { EventSink } from './sinks';
import { isStatus } from '../storage/tables';

export const SHARDS = 8;
/** Marker rows per batch write: the Table transaction limit. */
const BATCH = 100;
/** Events handed to the sink per send. */
const SEND_CHUNK = 500;
export const EVENT_ROW_PREFIX = 'event|';
/** The sweep reads a registration marker's partition from a little before the marker (clock adjustments). */
const CLOCK_SLACK_MS = 60_000;

type MarkerEntity = {
  partitionKey: string;
  rowKey: string;
  /** The device partition whose event rows this marker covers (registration markers). */
  partition?: string;
  /** The events, as JSON (management markers). */
  events?: string;
  /** The last event row the sweep sent from `partition` (a marker the sweep keeps until it settles). */
  sent?: string;
};

/** A management change's events, announced to the index before the change commits. */
export interface Intent {
  readonly events: readonly CloudEvent[];
  readonly marker: MarkerEntity;
}

/**
 * A registration operation's marker: events committed to its device partition while it is open are found by the
 * sweep. `ready` resolves once the marker is durable; no event may commit before (DeviceRepository awaits it).
 */
export interface Ticket {
  readonly ready: Promise<void>;
  /** Events that committed under this marker: sent in the background. */
  committed(events: readonly CloudEvent[]): void;
  /** Another party (a background commit) will commit under this marker: the marker stays until it releases too. */
  retain(): void;
  /** The holder will commit nothing more; once nothing is left to send, the marker is deleted. */
  release(): void;
}

export interface OutboxOptions {
  /** The outbox table: the pending index. */
  table: TableClient;
  /** The devices table, where registration events are committed. */
  devices: TableClient;
  sink: EventSink;
  /**
   * For a management marker found by the sweep: the events whose change did commit, with fields only known after it
   * (an ETag). Empty when the change never happened (or has not landed yet).
   */
  confirm: (events: readonly CloudEvent[]) => Promise<CloudEvent[]>;
  /** A marker older than this is the sweep's. */
  sweepAfterMs: number;
  /**
   * A marker older than this can have no change still landing under it (beyond the longest register PUT, hub step
   * and commit, retries included): the sweep may drop it. Until then it keeps it. Default: 10 × sweepAfterMs.
   */
  settleAfterMs?: number;
  /** Events held in memory for the background sender; beyond it, committed events wait for the sweep. */
  queueLimit?: number;
  log: (message: string) => void;
  now?: () => number;
}

export interface OutboxStats {
  /** Events the sink accepted. */
  delivered: number;
  /** Committed events left to the sweep because the in-memory queue was full. */
  deferred: number;
  /** Best-effort events (attestation refusals) dropped because the queue was full. */
  dropped: number;
  /** Best-effort events published (delivered or dropped). */
  bestEffort: number;
  /** Failed sends (each retried). */
  sendFailures: number;
  /** Events delivered by the sweep. */
  swept: number;
  queued: number;
}

/** What a service needs to publish events: the outbox and the events' origin. */
export interface EventPorts {
  outbox: Pick<Outbox, 'record' | 'publishBestEffort'>;
  origin: EventOrigin;
}

/** Runs a change with its events when events are wired, else just the change. */
export function recorded<T>(
  ports: EventPorts | undefined,
  events: (origin: EventOrigin) => readonly CloudEvent[],
  change: () => Promise<T>,
  final?: (result: T, events: readonly CloudEvent[]) => readonly CloudEvent[],
): Promise<T> {
  if (!ports) return change();
  const planned = events(ports.origin);
  return ports.outbox.record(planned, change, final ? (result) => final(result, planned) : undefined);
}

interface QueueItem {
  events: readonly CloudEvent[];
  /** Called once the sink accepted them. */
  sent?: () => void;
}

/** The device-partition rows of a commit's events. */
export function eventRows(partitionKey: string, events: readonly CloudEvent[]): TransactionAction[] {
  return events.map((e) => ['create', { partitionKey, rowKey: `${EVENT_ROW_PREFIX}${e.id}`, doc: JSON.stringify(e) }]);
}

/** Event IDs begin with 12 hex digits of milliseconds, so a row key says how old an event is. */
export const eventTime = (id: string): number => parseInt(id.slice(0, 12), 16);
const hexTime = (ms: number): string => Math.max(0, ms).toString(16).padStart(12, '0');

export interface SweepReport {
  /** Markers read. */
  markers: number;
  delivered: number;
  /** Markers deleted (settled: delivered, or their change never happened). */
  settled: number;
  /** Markers kept because a change may still land under them. */
  kept: number;
}

export class Outbox {
  private readonly queue: QueueItem[] = [];
  private queuedEvents = 0;
  private pumping: Promise<void> | undefined;
  private backoffMs = 0;
  private closed = false;
  private readonly writes: GroupWriter;
  private readonly deletes: GroupWriter;
  private nextShard = 0;
  private readonly now: () => number;
  private readonly shard = () => `pending-${this.nextShard++ % SHARDS}`;
  readonly stats: OutboxStats = {
    delivered: 0,
    deferred: 0,
    dropped: 0,
    bestEffort: 0,
    sendFailures: 0,
    swept: 0,
    queued: 0,
  };

  constructor(private readonly options: OutboxOptions) {
    this.now = options.now ?? Date.now;
    this.writes = new GroupWriter(options.table, 'create');
    this.deletes = new GroupWriter(options.table, 'delete');
  }

  get sink(): EventSink {
    return this.options.sink;
  }

  /**
   * Step 1 of a registration: the marker for the device partition `partition`, written now (group-committed). Call
   * it before the partition read, so the write overlaps the read; release the ticket when the request ends.
   */
  open(partition: string): Ticket {
    const marker: MarkerEntity = { partitionKey: '', rowKey: newEventId(new Date(this.now())), partition };
    const ready = this.writes.write(marker, this.shard);
    ready.catch(() => undefined); // the commit awaiting it reports the failure
    let holders = 1;
    let sending = 0;
    let leftToSweep = false;
    const settle = () => {
      if (holders > 0 || sending > 0 || leftToSweep) return;
      // Nothing committed under a marker still waiting for its batch: it is never written at all.
      if (this.writes.cancel(marker)) return;
      ready.then(
        () => this.deletes.write(marker).catch(() => undefined), // a leftover is swept: duplicates, same IDs
        () => undefined,
      );
    };
    return {
      ready,
      committed: (events) => {
        sending++;
        const queued = this.enqueue({
          events,
          sent: () => {
            sending--;
            settle();
          },
        });
        if (!queued) {
          sending--;
          leftToSweep = true;
          this.stats.deferred += events.length;
        }
      },
      retain: () => {
        holders++;
      },
      release: () => {
        holders--;
        settle();
      },
    };
  }

  /** Step 1 of a management change: a marker carrying its events. */
  async intend(events: readonly CloudEvent[]): Promise<Intent> {
    const first = events[0];
    if (!first) throw new Error('An intent needs at least one event.');
    const marker: MarkerEntity = { partitionKey: '', rowKey: first.id, events: JSON.stringify(events) };
    await this.writes.write(marker, this.shard);
    return { events, marker };
  }

  /** Step 3: the change committed; send its events in the background (`events` may add post-commit fields). */
  committed(intent: Intent, events: readonly CloudEvent[] = intent.events): void {
    const marker = intent.marker;
    const sent = () => void this.deletes.write(marker).catch(() => undefined);
    if (!this.enqueue({ events, sent })) this.stats.deferred += events.length;
  }

  /** The change failed for certain (e.g. a lost race): its marker goes. */
  abandon(intent: Intent): void {
    this.deletes.write(intent.marker).catch(() => undefined); // left over, the sweep finds no commit and drops it
  }

  /** Events of no state change (attestation refusals): sent in the background, counted when the queue is full. */
  publishBestEffort(events: readonly CloudEvent[]): void {
    this.stats.bestEffort += events.length;
    if (this.enqueue({ events })) return;
    if (this.stats.dropped === 0 || this.stats.dropped % 1000 === 0) {
      this.options.log(`event queue full: best-effort events dropped (${this.stats.dropped + events.length} so far)`);
    }
    this.stats.dropped += events.length;
  }

  /** Resolves when the in-memory queue is empty (or the sender is backing off with nothing new to try). */
  async drain(): Promise<void> {
    while (this.pumping) await this.pumping;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.drain();
    await this.options.sink.close();
  }

  /**
   * A management change with its events: the marker first (carrying the events), then the change, then the events
   * are sent (`final` may fill fields known only after the change, e.g. the new ETag).
   */
  async record<T>(
    events: readonly CloudEvent[],
    change: () => Promise<T>,
    final?: (result: T) => readonly CloudEvent[],
  ): Promise<T> {
    const intent = await this.intend(events);
    let result: T;
    try {
      result = await change();
    } catch (err) {
      this.abandon(intent);
      throw err;
    }
    this.committed(intent, final ? final(result) : events);
    return result;
  }

  /**
   * Step 4: delivers the events of markers older than `sweepAfterMs`, reading only the index partitions and, per
   * marker, its device partition's event rows from the marker's time on. Stops at the first failed send (the next
   * sweep resumes).
   */
  async sweep(): Promise<SweepReport> {
    const report: SweepReport = { markers: 0, delivered: 0, settled: 0, kept: 0 };
    const now = this.now();
    const cutoff = hexTime(now - this.options.sweepAfterMs);
    const settleAfterMs = this.options.settleAfterMs ?? 10 * this.options.sweepAfterMs;
    for (let shard = 0; shard < SHARDS; shard++) {
      const filter = odata`PartitionKey eq ${`pending-${shard}`} and RowKey lt ${cutoff}`;
      const pages = this.options.table.listEntities<MarkerEntity>({ queryOptions: { filter } }).byPage({
        maxPageSize: 200,
      });
      for await (const page of pages) {
        const found = await Promise.all(page.map((m) => this.pendingEvents(m)));
        const events = found.flatMap((f) => f.events);
        for (let i = 0; i < events.length; i += SEND_CHUNK) {
          await this.options.sink.send(events.slice(i, i + SEND_CHUNK));
        }
        await Promise.all(
          page.map(async (marker, i) => {
            const { events: sent, last } = found[i] ?? { events: [] };
            const settled = now - eventTime(marker.rowKey) >= settleAfterMs;
            // A management change confirmed is done; anything else may still have a commit landing under it.
            if (settled || (marker.partition === undefined && sent.length > 0)) {
              report.settled++;
              return this.deletes.write(marker);
            }
            report.kept++;
            if (last === undefined) return;
            const cursor = { partitionKey: marker.partitionKey, rowKey: marker.rowKey, sent: last };
            await this.options.table.updateEntity(cursor, 'Merge').catch((err: unknown) => {
              if (!isStatus(err, 404)) throw err; // the live sender finished and deleted it meanwhile
            });
          }),
        );
        report.markers += page.length;
        report.delivered += events.length;
      }
    }
    this.stats.swept += report.delivered;
    this.stats.delivered += report.delivered;
    return report;
  }

  /** What a marker covers that committed and the sweep has not sent yet (and the last such row key). */
  private async pendingEvents(marker: MarkerEntity): Promise<{ events: CloudEvent[]; last?: string }> {
    if (marker.partition === undefined) {
      return { events: await this.options.confirm(JSON.parse(marker.events ?? '[]') as CloudEvent[]) };
    }
    const from = marker.sent ?? `${EVENT_ROW_PREFIX}${hexTime(eventTime(marker.rowKey) - CLOCK_SLACK_MS)}`;
    const filter = odata`PartitionKey eq ${marker.partition} and RowKey gt ${from} and RowKey lt ${'event}'}`;
    const events: CloudEvent[] = [];
    let last: string | undefined;
    for await (const row of this.options.devices.listEntities<{ doc: string }>({ queryOptions: { filter } })) {
      events.push(JSON.parse(row.doc) as CloudEvent);
      last = row.rowKey;
    }
    return { events, ...(last !== undefined ? { last } : {}) };
  }

  private enqueue(item: QueueItem): boolean {
    if (this.closed || this.queuedEvents + item.events.length > (this.options.queueLimit ?? 10_000)) return false;
    this.queue.push(item);
    this.queuedEvents += item.events.length;
    this.stats.queued = this.queuedEvents;
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
    });
    return true;
  }

  /** Sends the queue in chunks; a failure backs off (exponentially, up to 30 s) and retries the same events. */
  private async pump(): Promise<void> {
    while (this.queue.length > 0) {
      const items: QueueItem[] = [];
      let count = 0;
      while (this.queue.length > 0 && count < SEND_CHUNK) {
        const item = this.queue.shift();
        if (!item) break;
        items.push(item);
        count += item.events.length;
      }
      try {
        await this.options.sink.send(items.flatMap((i) => i.events));
        crashPoint('send');
      } catch (err) {
        this.stats.sendFailures++;
        if (this.backoffMs === 0) this.options.log(`sending events failed, backing off: ${String(err)}`);
        this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 250), 30_000);
        this.queue.unshift(...items);
        if (this.closed) return; // left to the sweep
        await new Promise((resolve) => setTimeout(resolve, this.backoffMs));
        continue;
      }
      if (this.backoffMs > 0) this.options.log('sending events recovered');
      this.backoffMs = 0;
      this.queuedEvents -= count;
      this.stats.queued = this.queuedEvents;
      this.stats.delivered += count;
      for (const item of items) item.sent?.();
    }
  }
}

/**
 * Group commit of marker writes or deletes: everything waiting when a batch starts goes in one Table transaction per
 * shard partition (≤ 100 rows), one batch in flight: what arrives meanwhile goes in the next one.
 */
class GroupWriter {
  private readonly waiting: { entity: MarkerEntity; done: (err?: Error) => void }[] = [];
  private inFlight = 0;

  constructor(
    private readonly table: TableClient,
    private readonly kind: 'create' | 'delete',
  ) {}

  /** `shard` assigns the partition of entities that have none yet (one per batch). */
  write(entity: MarkerEntity, shard?: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ entity, done: (err) => (err === undefined ? resolve() : reject(err)) });
      this.flush(shard);
    });
  }

  /** Takes a write that is still waiting for its batch back (it is never made); false once it is in flight. */
  cancel(entity: MarkerEntity): boolean {
    const i = this.waiting.findIndex((w) => w.entity === entity);
    const [taken] = i < 0 ? [] : this.waiting.splice(i, 1);
    taken?.done(new Error('cancelled'));
    return taken !== undefined;
  }

  private flush(shard?: () => string): void {
    while (this.inFlight < 1 && this.waiting.length > 0) {
      const partition = shard?.();
      const batch = partition
        ? this.waiting.splice(0, BATCH)
        : this.takeSamePartition(this.waiting[0]?.entity.partitionKey ?? '');
      if (partition) for (const w of batch) w.entity.partitionKey = partition;
      this.inFlight++;
      this.submit(batch.map((w) => w.entity))
        .then(
          () => batch.forEach((w) => w.done()),
          (err: unknown) => batch.forEach((w) => w.done(err instanceof Error ? err : new Error(String(err)))),
        )
        .finally(() => {
          this.inFlight--;
          this.flush(shard);
        });
    }
  }

  private takeSamePartition(partitionKey: string): typeof this.waiting {
    const taken: typeof this.waiting = [];
    for (let i = 0; i < this.waiting.length && taken.length < BATCH;) {
      const w = this.waiting[i];
      if (w?.entity.partitionKey === partitionKey) {
        taken.push(w);
        this.waiting.splice(i, 1);
      } else i++;
    }
    return taken;
  }

  private async submit(entities: MarkerEntity[]): Promise<void> {
    if (this.kind === 'create') {
      await this.table.submitTransaction(entities.map((e) => ['create', e]));
      crashPoint('marker');
      return;
    }
    try {
      await this.table.submitTransaction(entities.map((e) => ['delete', e]));
    } catch (err) {
      // One marker already gone (the sweep or another sender took it) fails the batch: delete one by one.
      if (!isStatus(err, 404)) throw err;
      await Promise.all(
        entities.map((e) =>
          this.table.deleteEntity(e.partitionKey, e.rowKey).catch((inner: unknown) => {
            if (!isStatus(inner, 404)) throw inner;
          }),
        ),
      );
    }
  }
}
