// The transactional outbox: no committed change without its event.
//
// 1. Before a change commits, a *marker* naming its events goes to a small sharded index (`pending-0…7` partitions
//    of the outbox table). Markers of concurrent changes are group-committed: one batch write covers every change
//    waiting at that moment, so under load a marker costs a fraction of a round trip.
// 2. The change commits with its events: registration events as `event|<id>` rows in the device's partition, in the
//    same Table transaction as the registration row (still one round trip). They stay there as the device's recent
//    event history and are the proof that the change committed.
// 3. After the commit the events are queued in memory and sent in the background (off the device's latency path);
//    once Event Hubs accepted them the marker is deleted (batched too).
// 4. The sweep (timer function; the dev stack on an interval) reads only the index: markers older than
//    `sweepAfterMs` are changes whose sender crashed, was throttled or overflowed. A registration marker is checked
//    against its device partition (events there: committed, send them; absent: the commit never happened, drop the
//    marker); a management marker carries its events and is confirmed by reading the changed object. It never reads
//    rows that have nothing pending.
import type { TableClient, TransactionAction } from '@azure/data-tables';
import { odata } from '@azure/data-tables';

import type { CloudEvent, EventOrigin } from './catalogue';
import type { EventSink } from './sinks';
import { isStatus } from '../storage/tables';

export const SHARDS = 8;
/** Marker rows per batch write: the Table transaction limit. */
const BATCH = 100;
/** Events handed to the sink per send. */
const SEND_CHUNK = 500;
export const EVENT_ROW_PREFIX = 'event|';

type MarkerEntity = {
  partitionKey: string;
  rowKey: string;
  /** The device partition holding the events (registration markers). */
  partition?: string;
  /** The events, as JSON. */
  events: string;
};

/** A change's events, announced to the index before the change commits. */
export interface Intent {
  readonly events: readonly CloudEvent[];
  readonly marker: MarkerEntity;
}

export interface OutboxOptions {
  /** The outbox table: the pending index. */
  table: TableClient;
  /** The devices table, where registration events are committed. */
  devices: TableClient;
  sink: EventSink;
  /**
   * For a management marker found by the sweep: the events whose change did commit, with fields only known after it
   * (an ETag). Empty when the change never happened.
   */
  confirm: (events: readonly CloudEvent[]) => Promise<CloudEvent[]>;
  /** A marker older than this is the sweep's. */
  sweepAfterMs: number;
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
  marker?: MarkerEntity;
}

/** The device-partition rows of a commit's events. */
export function eventRows(partitionKey: string, events: readonly CloudEvent[]): TransactionAction[] {
  return events.map((e) => ['create', { partitionKey, rowKey: `${EVENT_ROW_PREFIX}${e.id}`, doc: JSON.stringify(e) }]);
}

/** Event IDs begin with 12 hex digits of milliseconds, so a row key says how old an event is. */
export const eventTime = (id: string): number => parseInt(id.slice(0, 12), 16);

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
  readonly stats: OutboxStats = { delivered: 0, deferred: 0, dropped: 0, sendFailures: 0, swept: 0, queued: 0 };

  constructor(private readonly options: OutboxOptions) {
    this.now = options.now ?? Date.now;
    this.writes = new GroupWriter(options.table, 'create');
    this.deletes = new GroupWriter(options.table, 'delete');
  }

  get sink(): EventSink {
    return this.options.sink;
  }

  /**
   * Step 1: makes the events findable by the sweep before their change commits. `devicePartition`: the events will
   * be committed as rows of that device partition; otherwise the marker carries them (management changes).
   */
  async intend(events: readonly CloudEvent[], devicePartition?: string): Promise<Intent> {
    const first = events[0];
    if (!first) throw new Error('An intent needs at least one event.');
    const marker: MarkerEntity = {
      partitionKey: '',
      rowKey: first.id,
      ...(devicePartition !== undefined ? { partition: devicePartition } : {}),
      events: JSON.stringify(events),
    };
    await this.writes.write(marker, () => `pending-${this.nextShard++ % SHARDS}`);
    return { events, marker };
  }

  /** Step 3: the change committed; send its events in the background (`events` may add post-commit fields). */
  committed(intent: Intent, events: readonly CloudEvent[] = intent.events): void {
    if (!this.enqueue({ events, marker: intent.marker })) this.stats.deferred += events.length;
  }

  /** The change failed for certain (e.g. a lost race): its marker goes. */
  abandon(intent: Intent): void {
    this.deletes.write(intent.marker).catch(() => undefined); // left over, the sweep finds no commit and drops it
  }

  /** Events of no state change (attestation refusals): sent in the background, counted when the queue is full. */
  publishBestEffort(events: readonly CloudEvent[]): void {
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
   * marker, its device partition's event rows. Stops at the first failed send (the next sweep resumes).
   */
  async sweep(): Promise<{ markers: number; delivered: number; dropped: number }> {
    const report = { markers: 0, delivered: 0, dropped: 0 };
    const cutoff = (this.now() - this.options.sweepAfterMs).toString(16).padStart(12, '0');
    for (let shard = 0; shard < SHARDS; shard++) {
      const filter = odata`PartitionKey eq ${`pending-${shard}`} and RowKey lt ${cutoff}`;
      const pages = this.options.table.listEntities<MarkerEntity>({ queryOptions: { filter } }).byPage({
        maxPageSize: 200,
      });
      for await (const page of pages) {
        const found = await Promise.all(page.map((m) => this.committedEvents(m)));
        const events = found.flat();
        for (let i = 0; i < events.length; i += SEND_CHUNK) {
          await this.options.sink.send(events.slice(i, i + SEND_CHUNK));
        }
        await Promise.all(page.map((m) => this.deletes.write(m)));
        report.markers += page.length;
        report.delivered += events.length;
        report.dropped += page.length - found.filter((f) => f.length > 0).length;
      }
    }
    this.stats.swept += report.delivered;
    this.stats.delivered += report.delivered;
    return report;
  }

  /** The marker's events if their change committed, else none. */
  private async committedEvents(marker: MarkerEntity): Promise<CloudEvent[]> {
    const events = JSON.parse(marker.events) as CloudEvent[];
    if (marker.partition === undefined) return this.options.confirm(events);
    const ids = new Set(events.map((e) => `${EVENT_ROW_PREFIX}${e.id}`));
    const sorted = [...ids].sort();
    const filter = odata`PartitionKey eq ${marker.partition} and RowKey ge ${sorted[0] ?? ''} and RowKey le ${sorted[sorted.length - 1] ?? ''}`;
    const committed = new Set<string>();
    for await (const row of this.options.devices.listEntities({ queryOptions: { filter, select: ['RowKey'] } })) {
      if (typeof row.rowKey === 'string') committed.add(row.rowKey);
    }
    return events.filter((e) => committed.has(`${EVENT_ROW_PREFIX}${e.id}`));
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
      for (const item of items) {
        if (item.marker) this.deletes.write(item.marker).catch(() => undefined); // a leftover is swept (a duplicate)
      }
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
