// The device partition: one Table partition per registration ID holding the individual enrollment (row
// `enrollment`) and the registration state with its current operation and the device's recent events (row
// `registration`). Both come back from one partition query, so a registration costs one read and one write.
export type { Versioned } from './enrollmentTable';
import type { TableClient, TableEntityResult } from '@azure/data-tables';
import { odata } from '@azure/data-tables';

import type { IndividualEnrollment, InitialTwin } from '../domain/enrollment';
import { registrationKey } from '../domain/registrationId';
import type { DeviceRegistrationResult, RegistrationStatus } from '../domain/registrationState';
import { conflict, preconditionFailed } from '../errors';
import type { CloudEvent } from '../events/catalogue';
import { crashPoint } from '../events/crashPoint';
import type { Ticket } from '../events/outbox';
import { eventTime } from '../events/outbox';
import type { EnrollmentEntity, EnrollmentTable, Page, Versioned } from './enrollmentTable';
import { joinColumn, splitColumn } from './columns';
import { firstPage, isStatus } from './tables';

const ENROLLMENT = 'enrollment';
const REGISTRATION = 'registration';
/** The latest TPM challenge, sealed (attestation/tpm/challengeStore.ts). */
export const TPM_CHALLENGE = 'tpmChallenge';
/** The events of the device's deleted registration states. */
const ARCHIVE = 'events';

/** What a resumed operation needs to finish without redoing attestation or allocation. */
export interface AssignmentPlan {
  assignedHub: string;
  deviceId: string;
  enrollmentGroupId?: string;
  substatus: NonNullable<DeviceRegistrationResult['substatus']>;
  /** Whether the hub device gets the enrollment's initial twin (initial assignment and data reset). */
  applyInitialTwin: boolean;
  /** Set when the device moves: where it was, so its data can be migrated and the old identity removed. */
  previousHub?: string;
  previousDeviceId?: string;
  /** The payload a custom-allocation webhook returned: the only `payload` the device is given back (as DPS). */
  webhookPayload?: unknown;
  /**
   * The initial twin a custom-allocation webhook answered (used instead of the enrollment's where `applyInitialTwin`):
   * recorded so that a poll taking the operation over applies the webhook's decision without calling it again.
   */
  webhookInitialTwin?: InitialTwin;
  /**
   * Another candidate hub for a first registration under hashed or geoLatency allocation, tried once if the hub step
   * fails on `assignedHub` (health-aware allocation, beyond DPS).
   */
  alternateHub?: string;
}

export interface OperationRecord {
  operationId: string;
  status: RegistrationStatus;
  startedAtUtc: string;
  /**
   * When the instance now running the hub step claimed the operation (the PUT, or a poll that took it over): a poll
   * takes it over only once this is older than the hub deadline, and only one poll wins the conditional claim.
   */
  claimedAtUtc?: string;
  plan?: AssignmentPlan;
}

export interface StoredRegistration {
  /** The last committed registration state; its `etag` is derived from the row's ETag on read. */
  state: DeviceRegistrationResult;
  operation: OperationRecord;
  /**
   * The device's recent events as stored (a JSON array of CloudEvents, oldest first). Every write of the row carries
   * over those of the row it replaces (whatever `value` says) and appends the events it commits.
   */
  events?: string;
}

export interface DevicePartition {
  enrollment?: Versioned<IndividualEnrollment>;
  registration?: Versioned<StoredRegistration>;
  /** The sealed TPM challenge row, if any: read with the rest, so a TPM attestation costs no extra round trip. */
  tpmChallenge?: string;
}

/** Events committed with a registration write, under the operation's outbox marker (outbox.ts). */
export interface EventCommit {
  ticket: Ticket;
  events: readonly CloudEvent[];
}

/**
 * The events a registration row keeps: the newest 10, and those of the last hour up to 50 (a device re-registering
 * in a loop): an event not yet sent is never older than that unless Event Hubs has been down as long.
 */
const KEEP_EVENTS = 10;
const KEEP_EVENTS_MS = 60 * 60 * 1000;
const MAX_EVENTS = 50;

/**
 * Columns `state`, `operation` and `events` (JSON), continued in `state1`, `operation1`, … (columns.ts): a payload can
 * be 96 KB.
 */
interface RegistrationEntity {
  partitionKey: string;
  rowKey: string;
  status: string;
  /** Lower-cased, so a group's registrations are found whatever case the query uses. */
  enrollmentGroupId: string;
  [column: string]: string;
}

export class DeviceRepository {
  constructor(
    private readonly table: TableClient,
    /** Reads the `enrollment` rows this repository's partition queries return. */
    private readonly enrollments: EnrollmentTable<IndividualEnrollment>,
  ) {}

  /** Enrollment and registration of one device in a single round trip. */
  async load(registrationId: string): Promise<DevicePartition> {
    const result: DevicePartition = {};
    // Rows of both kinds come back from one query; rowKey says which shape each has.
    const rows = this.table.listEntities<EnrollmentEntity & RegistrationEntity>({
      queryOptions: { filter: odata`PartitionKey eq ${registrationKey(registrationId)}` },
    });
    for await (const row of rows) {
      if (row.rowKey === ENROLLMENT) result.enrollment = await this.enrollments.fromEntity(row);
      else if (row.rowKey === REGISTRATION) result.registration = toRegistration(row);
      else if (row.rowKey === TPM_CHALLENGE && typeof row.sealed === 'string') result.tpmChallenge = row.sealed;
    }
    return result;
  }

  async getRegistration(registrationId: string): Promise<Versioned<StoredRegistration> | undefined> {
    try {
      const row = await this.table.getEntity<RegistrationEntity>(registrationKey(registrationId), REGISTRATION);
      return toRegistration(row);
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /**
   * Writes the registration row: creates it when `previous` is undefined, otherwise replaces that version only if
   * unchanged. A lost race is DPS's 409203 "Precondition failed." (a concurrent registration of the same device).
   * With `events`, they are appended to the row's events (one entity: one write) once their ticket's marker is in the
   * outbox index, and are sent in the background once committed (outbox.ts).
   */
  async saveRegistration(
    registrationId: string,
    value: StoredRegistration,
    previous: Versioned<StoredRegistration> | undefined,
    events?: EventCommit,
  ): Promise<Versioned<StoredRegistration>> {
    const adding = events?.events ?? [];
    const history = withEvents(previous?.value.events, adding, Date.now());
    const entity: RegistrationEntity = {
      partitionKey: registrationKey(registrationId),
      rowKey: REGISTRATION,
      ...splitColumn('state', JSON.stringify({ ...value.state, etag: undefined })),
      ...splitColumn('operation', JSON.stringify(value.operation)),
      ...(history.events !== undefined ? splitColumn('events', history.events) : {}),
      status: value.operation.status,
      enrollmentGroupId: (
        value.state.symmetricKey?.enrollmentGroupId ??
        value.state.x509?.enrollmentGroupId ??
        ''
      ).toLowerCase(),
    };
    const ticket = adding.length > 0 ? events?.ticket : undefined;
    await ticket?.ready; // normally written long ago, alongside the read
    // Young events the cap pushes out may not be sent yet: once this write lands, only the index can still name them.
    const carried = ticket && history.pushedOut.length > 0 ? await ticket.carry(history.pushedOut) : undefined;
    let etag: string;
    try {
      const response =
        previous === undefined
          ? await this.table.createEntity(entity)
          : await this.table.updateEntity(entity, 'Replace', { etag: previous.etag });
      etag = response.etag ?? '';
    } catch (err) {
      carried?.abandon(); // still in the row
      // A stale ETag, a row created meanwhile, or one deleted meanwhile (404): all the same lost race.
      if (isStatus(err, 404, 409, 412)) throw conflict('Precondition failed.');
      throw err;
    }
    if (ticket) {
      crashPoint('commit');
      carried?.committed(); // they go again (same IDs)
      ticket.committed(adding);
    }
    const { events: _, ...rest } = value;
    return { value: { ...rest, ...(history.events !== undefined ? { events: history.events } : {}) }, etag };
  }

  /** The device's recent events, newest first (attestation refusals are not kept). */
  async listEvents(registrationId: string): Promise<CloudEvent[]> {
    return (await this.recentEvents(registrationKey(registrationId))).reverse();
  }

  /**
   * The recent events of a device partition, oldest first: its registration row's and those its deleted states left
   * (outbox.ts reads them for its sweep).
   */
  async recentEvents(partitionKey: string): Promise<CloudEvent[]> {
    const { registration, archive } = await this.eventRows(partitionKey);
    const byId = new Map<string, CloudEvent>();
    for (const row of [archive, registration]) {
      for (const e of parseEvents(joinColumn(row ?? {}, 'events'))) byId.set(e.id, e);
    }
    return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Deletes the registration state (the device then provisions afresh); false if absent, 412 on ETag mismatch. The
   * row's events are first copied to the partition's `events` row: the device's history, and events not sent yet,
   * outlive the state (a copy left by a delete that failed is only read twice: readers drop repeated IDs).
   */
  async deleteRegistration(registrationId: string, etag = '*'): Promise<boolean> {
    const partitionKey = registrationKey(registrationId);
    for (let attempt = 1; ; attempt++) {
      const { registration, archive } = await this.eventRows(partitionKey);
      if (!registration) return false;
      if (etag !== '*' && etag !== registration.etag) throw preconditionFailed();
      const events = joinColumn(registration, 'events');
      if (events) {
        const kept = withEvents(joinColumn(archive ?? {}, 'events'), parseEvents(events), Date.now()).events ?? '';
        const entity = { partitionKey, rowKey: ARCHIVE, ...splitColumn('events', kept) };
        try {
          // Conditional: a concurrent delete may have archived a newer state's events since our read.
          if (archive) await this.table.updateEntity(entity, 'Replace', { etag: archive.etag });
          else await this.table.createEntity(entity);
        } catch (err) {
          if (!isStatus(err, 404, 409, 412) || attempt >= 10) throw err;
          continue;
        }
      }
      try {
        await this.table.deleteEntity(partitionKey, REGISTRATION, { etag: registration.etag });
        return true;
      } catch (err) {
        // Changed (a registration) or deleted since the read: an unconditional delete reads again.
        if (!isStatus(err, 404, 412)) throw err;
        if (etag === '*' && attempt < 3) continue;
        if (isStatus(err, 404)) return false;
        throw preconditionFailed();
      }
    }
  }

  /** The partition's registration row and the events of its deleted registration states. */
  private async eventRows(partitionKey: string): Promise<EventRows> {
    const filter = odata`PartitionKey eq ${partitionKey} and (RowKey eq ${REGISTRATION} or RowKey eq ${ARCHIVE})`;
    const found: EventRows = {};
    for await (const row of this.table.listEntities<RegistrationEntity>({ queryOptions: { filter } })) {
      if (row.rowKey === REGISTRATION) found.registration = row;
      else found.archive = row;
    }
    return found;
  }

  /** Registration states of the devices provisioned through one enrollment group, a page at a time. */
  async queryRegistrations(
    enrollmentGroupId: string,
    pageSize: number,
    continuationToken?: string,
  ): Promise<Page<Versioned<StoredRegistration>>> {
    const filter = odata`RowKey eq ${REGISTRATION} and enrollmentGroupId eq ${enrollmentGroupId.toLowerCase()}`;
    const page = await firstPage<RegistrationEntity>(this.table, filter, pageSize, continuationToken);
    return {
      items: page.rows.map(toRegistration),
      ...(page.continuationToken ? { continuationToken: page.continuationToken } : {}),
    };
  }
}

interface EventRows {
  registration?: TableEntityResult<RegistrationEntity>;
  archive?: TableEntityResult<RegistrationEntity>;
}

/**
 * A row's events after appending `adding`: the newest KEEP_EVENTS, and younger ones up to MAX_EVENTS. Young events
 * pushed out by the cap are returned to be sent again. Without events to add, the stored text is kept as it is.
 */
function withEvents(
  stored: string | undefined,
  adding: readonly CloudEvent[],
  now: number,
): { events?: string; pushedOut: CloudEvent[] } {
  if (adding.length === 0) return { ...(stored ? { events: stored } : {}), pushedOut: [] };
  const all = [...parseEvents(stored ?? ''), ...adding];
  const pushedOut: CloudEvent[] = [];
  const kept = all.filter((e, i) => {
    const fromNewest = all.length - i;
    if (fromNewest <= KEEP_EVENTS) return true;
    const young = now - eventTime(e.id) <= KEEP_EVENTS_MS;
    if (young && fromNewest <= MAX_EVENTS) return true;
    if (young) pushedOut.push(e);
    return false;
  });
  return { events: JSON.stringify(kept), pushedOut };
}

const parseEvents = (text: string): CloudEvent[] => (text ? (JSON.parse(text) as CloudEvent[]) : []);

function toRegistration(row: TableEntityResult<RegistrationEntity>): Versioned<StoredRegistration> {
  return {
    value: {
      state: JSON.parse(joinColumn(row, 'state')) as DeviceRegistrationResult,
      operation: JSON.parse(joinColumn(row, 'operation')) as OperationRecord,
      ...(typeof row.events === 'string' ? { events: joinColumn(row, 'events') } : {}),
    },
    etag: row.etag,
  };
}
