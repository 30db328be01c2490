// The transactional outbox: no committed change without its event.
//
// 1. Before a change can commit, a *marker* goes to a small pending index (`pending-0…7` partitions of the outbox
//    table). A marker lists device partitions that may hold unsent registration events from its time on, and carries
//    the events of management changes about to be made. Markers are group-committed: the requests that open while one
//    marker write is in flight share the next one — one entity, a plain insert; a register PUT's is written in
//    parallel with its partition read, so it costs no sequential round trip.
// 2. The change commits with its events: a registration's events ride in its registration row (the `events` column,
//    storage/devices.ts), so the state and its events are one entity written in one request. They stay there as the
//    device's recent event history.
// 3. After the commit the events are queued in memory and sent in the background (off the device's latency path).
//    Once every request of a marker ended and Event Hubs accepted everything committed under it, the marker is
//    deleted; deletes wait a moment and go as one transaction per index partition (markers of one second share one).
// 4. The sweep (timer function; the dev stack on an interval) reads only the index: markers older than
//    `sweepAfterMs` belong to an instance that crashed, was throttled or overflowed. For each listed device it reads
//    the registration row and sends its events from the marker's time on; a management change's events are confirmed
//    by reading the changed object. A marker is dropped only once it is older than
//    `settleAfterMs` (beyond the longest a change can still be landing); until then the sweep keeps it, with a cursor
//    per device so the same events are not re-sent. It never reads rows that have nothing pending.
import type { TableClient } from '@azure/data-tables';
import { odata } from '@azure/data-tables';

import type { CloudEvent, EventOrigin } from './catalogue';
import { newEventId } from './catalogue';
import { crashPoint } from './crashPoint';
import type { EventSink } from './sinks';
import { joinColumn, splitColumn } from '../storage/columns';
import { isStatus } from '../storage/tables';

export const SHARDS = 8;
/** Requests per marker. */
const MARKER_PARTS = 100;
/** How long a new marker waits for more requests to join it before its write starts. */
const MARKER_LINGER_MS = 3;
/** Marker deletes per transaction (the Table limit), and how long a settled marker waits for others to join it. */
const DELETE_BATCH = 100;
const DELETE_AFTER_MS = 1000;
/** Events handed to the sink per send, and how long the sender waits for more when it has fewer. */
const SEND_CHUNK = 500;
const SEND_LINGER_MS = 10;
/** The sweep reads a registration marker's devices from a little before the marker (clock adjustments). */
const CLOCK_SLACK_MS = 60_000;
/** Device rows the sweep reads at once. */
const SWEEP_READS = 16;

type MarkerEntity = {
  partitionKey: string;
  rowKey: string;
  /** The device partitions this marker covers, one per line (register PUTs). */
  partitions?: string;
  /** Management changes' events, as JSON (continued in `events1`, … as columns.ts splits it). */
  events?: string;
  /** Per device partition, the last event ID the sweep sent (JSON; a marker the sweep keeps until it settles). */
  sent?: string;
  [column: string]: string | undefined;
};

/** What a request puts in a marker: a device partition (a register PUT) or a management change's events. */
type Part = { partition: string } | { events: readonly CloudEvent[] };

/** A management change's events, announced to the index before the change commits. */
export interface Intent {
  readonly events: readonly CloudEvent[];
  /** Its part of the marker is done (the events were sent, or the change failed). */
  readonly done: () => void;
}

/**
 * A registration operation's place in a marker: events committed to its device partition while it is open are found
 * by the sweep. `ready` resolves once the marker is durable; no event may commit before (DeviceRepository awaits it).
 */
export interface Ticket {
  readonly ready: Promise<void>;
  /** Events that committed under this marker: sent in the background. */
  committed(events: readonly CloudEvent[]): void;
  /**
   * Events about to leave the device's row maybe unsent (pushed out by its cap): made durable in the index first (a
   * marker carrying them, as a management change's), then sent once the write that drops them committed.
   */
  carry(events: readonly CloudEvent[]): Promise<{ committed(): void; abandon(): void }>;
  /** Another party (a background commit) will commit under this marker: the marker stays until it releases too. */
  retain(): void;
  /** The holder will commit nothing more; once nothing is left to send, its part of the marker is done. */
  release(): void;
}

export interface OutboxOptions {
  /** The outbox table: the pending index. */
  table: TableClient;
  /** A device partition's recent events (its registration row's history, storage/devices.ts), oldest first. */
  recentEvents: (partition: string) => Promise<readonly CloudEvent[]>;
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

/** A marker's events the sweep found: `cursor` when it moved; `confirmedAll` when every announced change landed. */
interface Pending {
  events: CloudEvent[];
  cursor?: string;
  confirmedAll?: boolean;
}

interface QueueItem {
  events: readonly CloudEvent[];
  /** Called once the sink accepted them. */
  sent?: () => void;
}

/** Event IDs begin with 12 hex digits of milliseconds, so an ID says how old an event is. */
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
  /** Ends the sender's back-off sleep (close() does not wait it out). */
  private wake: (() => void) | undefined;
  private readonly markers: MarkerWriter;
  private readonly deletes: MarkerDeletes;
  private readonly now: () => number;
  /** The index partition of a new marker: markers of the same second share one, so their deletes share transactions. */
  private readonly shard = () => `pending-${Math.floor(this.now() / 1000) % SHARDS}`;
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
    this.deletes = new MarkerDeletes(options.table);
    this.markers = new MarkerWriter(options.table, this.deletes, () => ({
      partitionKey: this.shard(),
      rowKey: newEventId(new Date(this.now())),
    }));
  }

  get sink(): EventSink {
    return this.options.sink;
  }

  /**
   * Step 1 of a registration: a place for the device partition `partition` in the next marker (group-committed).
   * Call it before the partition read, so the write overlaps the read; release the ticket when the request ends.
   */
  open(partition: string): Ticket {
    const part: Part = { partition };
    const batch = this.markers.join(part);
    let holders = 1;
    let sending = 0;
    let leftToSweep = false;
    let done = false;
    const settle = () => {
      if (done || holders > 0 || sending > 0 || leftToSweep) return;
      done = true;
      this.markers.leave(batch, part);
    };
    return {
      ready: batch.ready,
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
      carry: async (events) => {
        const intent = await this.intend(events);
        return { committed: () => this.committed(intent), abandon: () => this.abandon(intent) };
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

  /** Step 1 of a management change: its events in the next marker (group-committed). */
  async intend(events: readonly CloudEvent[]): Promise<Intent> {
    if (events.length === 0) throw new Error('An intent needs at least one event.');
    const part: Part = { events };
    const batch = this.markers.join(part);
    try {
      await batch.ready;
    } catch (err) {
      this.markers.leave(batch, part);
      throw err;
    }
    return { events, done: () => this.markers.leave(batch, part) };
  }

  /** Step 3: the change committed; send its events in the background (`events` may add post-commit fields). */
  committed(intent: Intent, events: readonly CloudEvent[] = intent.events): void {
    // A full queue leaves the events to the sweep: the marker stays.
    if (!this.enqueue({ events, sent: intent.done })) this.stats.deferred += events.length;
  }

  /** The change failed for certain (e.g. a lost race): nothing to send for it. */
  abandon(intent: Intent): void {
    intent.done(); // should its change land after all, a marker left over is swept and confirms it
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

  /** Resolves when the in-memory queue is empty (or the sender is backing off) and settled markers are deleted. */
  async drain(): Promise<void> {
    while (this.pumping) await this.pumping;
    await this.deletes.flush();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
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
   * registration marker, its devices' registration rows. Stops at the first failed send (the next sweep resumes).
   */
  async sweep(): Promise<SweepReport> {
    const report: SweepReport = { markers: 0, delivered: 0, settled: 0, kept: 0 };
    const now = this.now();
    const cutoff = hexTime(now - this.options.sweepAfterMs);
    const settleAfterMs = this.options.settleAfterMs ?? 10 * this.options.sweepAfterMs;
    for (let shard = 0; shard < SHARDS; shard++) {
      const filter = odata`PartitionKey eq ${`pending-${shard}`} and RowKey lt ${cutoff}`;
      const pages = this.options.table.listEntities<MarkerEntity>({ queryOptions: { filter } }).byPage({
        maxPageSize: 20,
      });
      for await (const page of pages) {
        const found: Pending[] = [];
        for (const marker of page) found.push(await this.pendingEvents(marker));
        const events = found.flatMap((f) => f.events);
        for (let i = 0; i < events.length; i += SEND_CHUNK) {
          await this.options.sink.send(events.slice(i, i + SEND_CHUNK));
        }
        await Promise.all(
          page.map(async (marker, i) => {
            const { cursor, confirmedAll } = found[i] ?? { events: [] };
            const settled = now - eventTime(marker.rowKey) >= settleAfterMs;
            // Management changes all confirmed are done; anything else may still have a commit landing under it.
            if (settled || (marker.partitions === undefined && confirmedAll)) {
              report.settled++;
              this.deletes.add(marker);
              return;
            }
            report.kept++;
            if (cursor === undefined) return;
            const update = { partitionKey: marker.partitionKey, rowKey: marker.rowKey, sent: cursor };
            await this.options.table.updateEntity(update, 'Merge').catch((err: unknown) => {
              if (!isStatus(err, 404)) throw err; // the live sender finished and deleted it meanwhile
            });
          }),
        );
        report.markers += page.length;
        report.delivered += events.length;
      }
    }
    await this.deletes.flush();
    this.stats.swept += report.delivered;
    this.stats.delivered += report.delivered;
    return report;
  }

  /** What a marker covers that committed and the sweep has not sent yet. */
  private async pendingEvents(marker: MarkerEntity): Promise<Pending> {
    const announced = joinColumn(marker, 'events');
    const planned = announced ? (JSON.parse(announced) as CloudEvent[]) : [];
    const confirmed = planned.length > 0 ? await this.options.confirm(planned) : [];
    if (marker.partitions === undefined)
      return { events: confirmed, confirmedAll: confirmed.length === planned.length };
    const sent = JSON.parse(marker.sent ?? '{}') as Record<string, string>;
    const from = hexTime(eventTime(marker.rowKey) - CLOCK_SLACK_MS);
    const partitions = [...new Set(marker.partitions.split('\n'))];
    const found: CloudEvent[][] = [confirmed];
    let moved = false;
    for (let i = 0; i < partitions.length; i += SWEEP_READS) {
      const some = partitions.slice(i, i + SWEEP_READS);
      found.push(
        ...(await Promise.all(
          some.map(async (partition) => {
            const after = sent[partition] ?? from;
            const fresh = (await this.options.recentEvents(partition)).filter((e) => e.id > after);
            const last = fresh.reduce((max, e) => (e.id > max ? e.id : max), '');
            if (last) {
              sent[partition] = last;
              moved = true;
            }
            return fresh;
          }),
        )),
      );
    }
    return { events: found.flat(), confirmedAll: false, ...(moved ? { cursor: JSON.stringify(sent) } : {}) };
  }

  /** Waits `ms`, or less if close() wakes it. */
  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
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
      // A moment for more to arrive (a registration's outcome follows its `accepted` by about a hub call): fewer,
      // fuller sends — one Event Hubs batch per device rather than two, one file write for many registrations.
      if (this.queuedEvents < SEND_CHUNK && !this.closed) await this.sleep(SEND_LINGER_MS);
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
        await this.sleep(this.backoffMs);
        if (this.closed) return;
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

/** A marker, forming (requests join it) until its write starts. */
interface MarkerBatch {
  /**
   * Taken when the first request joins, not when the write starts (a previous write may hang): the sweep reads from
   * the marker's time on, and every event it covers is created after its request joined.
   */
  readonly key: { partitionKey: string; rowKey: string };
  readonly parts: Part[];
  /** Requests whose part is not done yet. */
  open: number;
  state: 'forming' | 'writing' | 'written' | 'failed';
  entity?: MarkerEntity;
  readonly ready: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

/**
 * Group commit of markers: one write in flight; the requests that open meanwhile (up to 100) form the next marker, a
 * single entity listing their device partitions and carrying their management events.
 */
class MarkerWriter {
  private readonly forming: MarkerBatch[] = [];
  private writing = false;
  private scheduled = false;

  constructor(
    private readonly table: TableClient,
    private readonly deletes: MarkerDeletes,
    private readonly key: () => { partitionKey: string; rowKey: string },
  ) {}

  join(part: Part): MarkerBatch {
    const last = this.forming.at(-1);
    const batch = last && last.parts.length < MARKER_PARTS ? last : this.newBatch();
    batch.parts.push(part);
    batch.open++;
    // A moment later: the requests that arrive meanwhile share the write. The marker is needed only at the first
    // commit, after the partition read, attestation and allocation, so the wait stays off the device's path.
    if (!this.writing && !this.scheduled) {
      this.scheduled = true;
      setTimeout(() => {
        this.scheduled = false;
        this.writeNext();
      }, MARKER_LINGER_MS);
    }
    return batch;
  }

  /** A request's part is done: a marker still forming forgets it; a written one is deleted once every part is. */
  leave(batch: MarkerBatch, part: Part): void {
    batch.open--;
    if (batch.state === 'forming') {
      batch.parts.splice(batch.parts.indexOf(part), 1);
      if (batch.parts.length === 0) {
        this.forming.splice(this.forming.indexOf(batch), 1);
        batch.reject(new Error('cancelled'));
      }
      return;
    }
    if (batch.open === 0 && batch.state === 'written' && batch.entity) this.deletes.add(batch.entity);
  }

  private newBatch(): MarkerBatch {
    let resolve = (): void => undefined;
    let reject = (_err: Error): void => undefined;
    const ready = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    ready.catch(() => undefined); // the commit awaiting it reports the failure
    const batch: MarkerBatch = { key: this.key(), parts: [], open: 0, state: 'forming', ready, resolve, reject };
    this.forming.push(batch);
    return batch;
  }

  private writeNext(): void {
    const batch = this.writing ? undefined : this.forming.shift();
    if (!batch) return;
    this.writing = true;
    batch.state = 'writing';
    const partitions = new Set(batch.parts.flatMap((p) => ('partition' in p ? [p.partition] : [])));
    const events = batch.parts.flatMap((p) => ('events' in p ? p.events : []));
    const entity: MarkerEntity = {
      ...batch.key,
      ...(partitions.size > 0 ? { partitions: [...partitions].join('\n') } : {}),
      ...(events.length > 0 ? splitColumn('events', JSON.stringify(events)) : {}),
    };
    batch.entity = entity;
    this.table
      .createEntity(entity)
      .then(
        () => {
          crashPoint('marker');
          batch.state = 'written';
          batch.resolve();
          if (batch.open === 0) this.deletes.add(entity);
        },
        (err: unknown) => {
          // Maybe written after all (a lost answer): then the sweep finds it and re-sends (same event IDs).
          batch.state = 'failed';
          batch.reject(err instanceof Error ? err : new Error(String(err)));
        },
      )
      .finally(() => {
        this.writing = false;
        this.writeNext();
      });
  }
}

/**
 * Deletes of settled markers, collected for a moment and sent as one transaction per index partition (≤ 100 rows).
 * A delete that never happens (the instance stopped first) leaves a marker the sweep re-sends: duplicates, same IDs.
 */
class MarkerDeletes {
  private readonly waiting = new Map<string, MarkerEntity[]>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly table: TableClient) {}

  add(marker: MarkerEntity): void {
    const list = this.waiting.get(marker.partitionKey) ?? [];
    list.push({ partitionKey: marker.partitionKey, rowKey: marker.rowKey });
    this.waiting.set(marker.partitionKey, list);
    if (list.length >= DELETE_BATCH) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), DELETE_AFTER_MS).unref();
  }

  /** Deletes everything waiting; resolves when done (failures are left to the sweep). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batches = [...this.waiting.values()].flatMap((list) => {
      const chunks = [];
      for (let i = 0; i < list.length; i += DELETE_BATCH) chunks.push(list.slice(i, i + DELETE_BATCH));
      return chunks;
    });
    this.waiting.clear();
    this.flushing = this.flushing.then(() => Promise.all(batches.map((b) => this.remove(b))).then(() => undefined));
    return this.flushing;
  }

  private async remove(markers: MarkerEntity[]): Promise<void> {
    try {
      await this.table.submitTransaction(markers.map((m) => ['delete', m]));
    } catch (err) {
      // One marker already gone (the sweep or another sender took it) fails the batch: delete one by one.
      if (!isStatus(err, 404)) return;
      await Promise.all(markers.map((m) => this.table.deleteEntity(m.partitionKey, m.rowKey).catch(() => undefined)));
    }
  }
}
