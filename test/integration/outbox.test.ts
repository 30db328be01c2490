// The outbox on Table Storage (Azurite) with the device repository: registration markers are group-committed (one
// entity listing the devices of the requests that opened together), events ride in the registration row, deleting a
// registration state keeps its events, and what a dead instance left is delivered by the next one's sweep.
import { randomBytes } from 'node:crypto';

import { describe, expect, it, vi } from 'vitest';

import type { IndividualEnrollment } from '../../shared/domain/enrollment';
import { registrationKey } from '../../shared/domain/registrationId';
import type { CloudEvent } from '../../shared/events/catalogue';
import { registrationAccepted } from '../../shared/events/catalogue';
import type { EventSink } from '../../shared/events/sinks';
import type { StoredRegistration } from '../../shared/storage/devices';
import { DeviceRepository } from '../../shared/storage/devices';
import type { EnrollmentTable } from '../../shared/storage/enrollmentTable';
import type { Tables } from '../../shared/storage/tables';
import { tableRequestCounter } from '../../shared/storage/tables';
import { outboxOf, outboxTables as setUp } from '../support/outbox';

const origin = { source: 'https://dps.test', clock: () => new Date() };
const accepted = (registrationId: string): CloudEvent =>
  registrationAccepted(origin, {
    registrationId,
    operationId: `op-${randomBytes(4).toString('hex')}`,
    attestationType: 'symmetricKey',
    enrollment: { kind: 'group', id: 'g' },
  });

const value = (registrationId: string): StoredRegistration => ({
  state: { registrationId, status: 'assigned' },
  operation: { operationId: `op-${registrationId}`, status: 'assigned', startedAtUtc: new Date().toISOString() },
});

/** A sink that records what it accepted, or refuses everything while `down`. */
class RecordingSink implements EventSink {
  readonly description = 'test sink';
  readonly received: CloudEvent[] = [];
  down = false;
  send(events: readonly CloudEvent[]): Promise<void> {
    if (this.down) return Promise.reject(new Error('Event Hubs is down'));
    this.received.push(...events);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function markers(tables: Tables): Promise<{ partitions?: string }[]> {
  const rows = [];
  for await (const m of tables.outbox.listEntities<{ partitions?: string }>()) rows.push(m);
  return rows;
}

const ids = (events: readonly CloudEvent[]) => [...new Set(events.map((e) => e.id))].sort();

describe('Outbox on Table Storage', () => {
  it('requests that open together share one marker write and one delete; each commit is one entity write', async () => {
    const { tables, devices } = await setUp();
    const sink = new RecordingSink();
    const outbox = outboxOf(tables, devices, sink);
    const before = { ...tableRequestCounter };
    const tickets = Array.from({ length: 20 }, (_, i) => outbox.open(registrationKey(`together-${i}`)));
    await Promise.all(tickets.map((t) => t.ready));
    expect(tableRequestCounter.outbox - before.outbox).toBe(1);
    const [marker, ...others] = await markers(tables);
    expect(others).toEqual([]);
    expect(marker?.partitions?.split('\n').sort()).toEqual(tickets.map((_, i) => `together-${i}`).sort());

    const committed: CloudEvent[] = [];
    const writes = tableRequestCounter.count - tableRequestCounter.outbox;
    await Promise.all(
      tickets.map(async (ticket, i) => {
        const events = [accepted(`together-${i}`), accepted(`together-${i}`)];
        await devices.saveRegistration(`together-${i}`, value(`together-${i}`), undefined, { ticket, events });
        ticket.release();
        committed.push(...events);
      }),
    );
    expect(tableRequestCounter.count - tableRequestCounter.outbox - writes).toBe(20);
    await outbox.drain();
    expect(tableRequestCounter.outbox - before.outbox).toBe(3); // the write, the listing above, the delete
    expect(ids(sink.received)).toEqual(ids(committed));
    expect(await markers(tables)).toEqual([]);
    await outbox.close();
  });

  it('a request that ends before its marker is written leaves no marker at all', async () => {
    const { tables, devices } = await setUp();
    const outbox = outboxOf(tables, devices, new RecordingSink());
    const before = tableRequestCounter.outbox;
    const ticket = outbox.open(registrationKey('refused-1'));
    ticket.release(); // e.g. attestation refused, in the same turn of the event loop
    await new Promise((r) => setTimeout(r, 50));
    await outbox.drain();
    expect(tableRequestCounter.outbox - before).toBe(0);
    expect(await markers(tables)).toEqual([]);
    await outbox.close();
  });

  it('events committed by an instance that died before sending them survive a deleted registration state', async () => {
    const { tables, devices } = await setUp();
    const dead = new RecordingSink();
    dead.down = true;
    const first = outboxOf(tables, devices, dead, { queueLimit: 0 }); // nothing leaves this instance
    const ticket = first.open(registrationKey('orphan-1'));
    const events = [accepted('orphan-1'), accepted('orphan-1')];
    await devices.saveRegistration('orphan-1', value('orphan-1'), undefined, { ticket, events });
    ticket.release();

    // An operator deletes the state before any sweep ran; the device's history stays readable.
    expect(await devices.deleteRegistration('orphan-1')).toBe(true);
    expect(await devices.getRegistration('orphan-1')).toBeUndefined();
    expect(ids(await devices.listEvents('orphan-1'))).toEqual(ids(events));

    const sink = new RecordingSink();
    const next = outboxOf(tables, devices, sink);
    const report = await next.sweep();
    expect(report).toMatchObject({ markers: 1, delivered: 2, settled: 1 });
    expect(ids(sink.received)).toEqual(ids(events));
    expect(await markers(tables)).toEqual([]);

    // The device registers again: its history spans both states, newest first.
    const again = next.open(registrationKey('orphan-1'));
    const later = [accepted('orphan-1')];
    await devices.saveRegistration('orphan-1', value('orphan-1'), undefined, { ticket: again, events: later });
    again.release();
    expect((await devices.listEvents('orphan-1')).map((e) => e.id)).toEqual(ids([...events, ...later]).reverse());
    await next.drain();
    await first.close();
    await next.close();
  });

  it('management changes share markers with register PUTs; the sweep sends what landed, keeps what may still land', async () => {
    const { tables, devices } = await setUp();
    const dead = new RecordingSink();
    dead.down = true;
    const first = outboxOf(tables, devices, dead, { queueLimit: 0 });
    const landed = accepted('landed-change');
    const pending = accepted('slow-change');
    const ticket = first.open(registrationKey('mixed-1'));
    const intents = await Promise.all([first.intend([landed]), first.intend([pending])]);
    await ticket.ready;
    expect(await markers(tables)).toHaveLength(1); // the three requests opened together
    intents.forEach((intent) => first.committed(intent)); // the queue is full: left to the sweep
    ticket.release();

    const sink = new RecordingSink();
    // What the sweep's confirmation finds: the first change is visible, the second not (yet).
    const confirm = (events: readonly CloudEvent[]) => Promise.resolve(events.filter((e) => e.id === landed.id));
    const next = outboxOf(tables, devices, sink, { confirm, settleAfterMs: 60_000 });
    expect(await next.sweep()).toMatchObject({ markers: 1, delivered: 1, kept: 1 });
    expect(ids(sink.received)).toEqual([landed.id]);
    expect(await markers(tables)).toHaveLength(1);
    await first.close();
    await next.close();
  });

  it('a device committing faster than events leave keeps 50 in its row; those pushed out are sent again', async () => {
    const { tables, devices } = await setUp();
    const sink = new RecordingSink();
    const outbox = outboxOf(tables, devices, sink);
    let previous = undefined as Awaited<ReturnType<DeviceRepository['saveRegistration']>> | undefined;
    const committed: CloudEvent[] = [];
    for (let i = 0; i < 30; i++) {
      const ticket = outbox.open(registrationKey('looping-1'));
      const events = [accepted('looping-1'), accepted('looping-1')];
      previous = await devices.saveRegistration('looping-1', value('looping-1'), previous, { ticket, events });
      ticket.release();
      committed.push(...events);
    }
    expect(await devices.listEvents('looping-1')).toHaveLength(50);
    await outbox.drain();
    expect(ids(sink.received)).toEqual(ids(committed));
    expect(sink.received.length).toBeGreaterThan(committed.length); // the pushed-out ones went twice
    await outbox.close();
  });
  it('events pushed out of a full row while the sender is behind are not lost when their instance dies', async () => {
    const { tables, devices } = await setUp();
    const dead = new RecordingSink();
    dead.down = true;
    const first = outboxOf(tables, devices, dead, { queueLimit: 0 }); // nothing leaves this instance
    let previous = undefined as Awaited<ReturnType<DeviceRepository['saveRegistration']>> | undefined;
    const committed: CloudEvent[] = [];
    for (let i = 0; i < 30; i++) {
      const ticket = first.open(registrationKey('looping-2'));
      const events = [accepted('looping-2'), accepted('looping-2')];
      previous = await devices.saveRegistration('looping-2', value('looping-2'), previous, { ticket, events });
      ticket.release();
      committed.push(...events);
    }
    const sink = new RecordingSink();
    const next = outboxOf(tables, devices, sink);
    await next.sweep();
    expect(ids(sink.received)).toEqual(ids(committed));
    expect(await markers(tables)).toEqual([]);
    await first.close();
    await next.close();
  });

  it('concurrent deletes of a registration state never overwrite each other in the events row', async () => {
    const { tables, devices } = await setUp();
    const outbox = outboxOf(tables, devices, new RecordingSink());
    // The first delete stalls between reading the partition and writing the events row.
    let stalled: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (stalled = resolve));
    let reached: () => void = () => undefined;
    const atGate = new Promise<void>((resolve) => (reached = resolve));
    const slowTable = new Proxy(tables.devices, {
      get(target, name, receiver) {
        if (name === 'upsertEntity' || name === 'createEntity' || name === 'updateEntity') {
          return async (...args: unknown[]) => {
            reached();
            await gate;
            return (Reflect.get(target, name, receiver) as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        const v = Reflect.get(target, name, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const slow = new DeviceRepository(slowTable, {} as EnrollmentTable<IndividualEnrollment>);
    const save = async (previous: Awaited<ReturnType<DeviceRepository['saveRegistration']>> | undefined) => {
      const ticket = outbox.open(registrationKey('deleted-twice'));
      const events = [accepted('deleted-twice')];
      const saved = await devices.saveRegistration('deleted-twice', value('deleted-twice'), previous, {
        ticket,
        events,
      });
      ticket.release();
      return { saved, events };
    };
    const one = await save(undefined);
    const firstDelete = slow.deleteRegistration('deleted-twice');
    await atGate;
    const two = await save(one.saved); // the device registers again meanwhile
    expect(await devices.deleteRegistration('deleted-twice')).toBe(true); // and another delete goes through
    stalled();
    await firstDelete;
    expect(ids(await devices.listEvents('deleted-twice'))).toEqual(ids([...one.events, ...two.events]));
    await outbox.close();
  });

  it('a marker written late still covers events created after its request opened', async () => {
    const { tables, devices } = await setUp();
    let skew = 0;
    const now = () => Date.now() + skew;
    // The marker write in flight before ours hangs for two minutes (a throttled Table).
    let release: () => void = () => undefined;
    const hung = new Promise<void>((resolve) => (release = resolve));
    let writes = 0;
    const table = new Proxy(tables.outbox, {
      get(target, name, receiver) {
        const v = Reflect.get(target, name, receiver) as unknown;
        if (typeof v !== 'function') return v;
        const fn = (v as (...a: unknown[]) => Promise<unknown>).bind(target);
        if (name !== 'createEntity') return fn;
        return async (...args: unknown[]) => {
          if (writes++ === 0) await hung;
          return fn(...args);
        };
      },
    });
    const dead = new RecordingSink();
    dead.down = true;
    const first = outboxOf(tables, devices, dead, { table, queueLimit: 0, now });
    const other = first.open(registrationKey('before-1'));
    await new Promise((r) => setImmediate(r)); // its marker write starts (and hangs)
    const ticket = first.open(registrationKey('late-marker-1'));
    const events = [accepted('late-marker-1')]; // attestation passed: its events exist
    const saving = devices.saveRegistration('late-marker-1', value('late-marker-1'), undefined, { ticket, events });
    skew = 120_000;
    release();
    await saving;
    ticket.release();
    other.release();
    await first.drain();

    const sink = new RecordingSink();
    const next = outboxOf(tables, devices, sink, { now });
    await next.sweep();
    expect(ids(sink.received)).toEqual(ids(events));
    await first.close();
    await next.close();
  });
  it('close() during an Event Hubs outage does not wait out the back-off', async () => {
    const { tables, devices } = await setUp();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const sink = new RecordingSink();
      sink.down = true;
      const outbox = outboxOf(tables, devices, sink);
      outbox.publishBestEffort([accepted('outage-1')]);
      for (let i = 0; i < 10; i++) await vi.advanceTimersByTimeAsync(30_000); // the back-off is at its 30 s cap
      let closed = false;
      const closing = outbox.close().then(() => (closed = true));
      await vi.advanceTimersByTimeAsync(1_000);
      expect(closed).toBe(true);
      await closing;
    } finally {
      vi.useRealTimers();
    }
  });
});
