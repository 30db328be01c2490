// An outbox on tables of its own in the test Azurite, with the device repository whose rows it reads: for tests of
// the outbox's storage side (markers, commits, the sweep) with a sink of their choice.
import { randomBytes } from 'node:crypto';

import { inject } from 'vitest';

import type { IndividualEnrollment } from '../../shared/domain/enrollment';
import type { OutboxOptions } from '../../shared/events/outbox';
import { Outbox } from '../../shared/events/outbox';
import type { EventSink } from '../../shared/events/sinks';
import { DeviceRepository } from '../../shared/storage/devices';
import type { EnrollmentTable } from '../../shared/storage/enrollmentTable';
import type { Tables } from '../../shared/storage/tables';
import { createTables } from '../../shared/storage/tables';

export async function outboxTables(): Promise<{ tables: Tables; devices: DeviceRepository }> {
  const tables = createTables({
    connectionString: inject('tablesConnectionString'),
    prefix: `ob${randomBytes(4).toString('hex')}`,
  });
  await tables.ensure();
  return { tables, devices: new DeviceRepository(tables.devices, {} as EnrollmentTable<IndividualEnrollment>) };
}

/** Sweeps take every marker at once (no delay, nothing kept) unless `more` says otherwise. */
export function outboxOf(
  tables: Tables,
  devices: DeviceRepository,
  sink: EventSink,
  more: Partial<OutboxOptions> = {},
): Outbox {
  return new Outbox({
    table: tables.outbox,
    recentEvents: (partition) => devices.recentEvents(partition),
    sink,
    confirm: (events) => Promise.resolve([...events]),
    sweepAfterMs: 0,
    settleAfterMs: 0,
    log: () => undefined,
    ...more,
  });
}
