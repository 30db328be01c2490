// The device partition: one Table partition per registration ID holding the individual enrollment (row
// `enrollment`) and the registration state with its current operation (row `registration`). Both come back from one
// partition query, so a registration costs one read and one write.
export type { Versioned } from './enrollmentTable';
import type { TableClient, TableEntityResult, TransactionAction } from '@azure/data-tables';
import { odata } from '@azure/data-tables';

import type { IndividualEnrollment, InitialTwin } from '../domain/enrollment';
import { registrationKey } from '../domain/registrationId';
import type { DeviceRegistrationResult, RegistrationStatus } from '../domain/registrationState';
import { conflict, preconditionFailed } from '../errors';
import type { CloudEvent } from '../events/catalogue';
import { crashPoint } from '../events/crashPoint';
import type { Ticket } from '../events/outbox';
import { EVENT_ROW_PREFIX, eventRows, eventTime } from '../events/outbox';
import type { EnrollmentEntity, EnrollmentTable, Page, Versioned } from './enrollmentTable';
import { joinColumn, splitColumn } from './columns';
import { firstPage, isStatus } from './tables';

const ENROLLMENT = 'enrollment';
const REGISTRATION = 'registration';

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
}

export interface DevicePartition {
  enrollment?: Versioned<IndividualEnrollment>;
  registration?: Versioned<StoredRegistration>;
  /** Row keys of the device's recent events (outbox.ts), oldest first: a commit prunes the oldest. */
  eventRows?: string[];
}

/**
 * Events committed with a registration write, under the operation's outbox marker, and the partition's event rows as
 * `load` saw them (the oldest are pruned in the same transaction).
 */
export interface EventCommit {
  ticket: Ticket;
  events: readonly CloudEvent[];
  seen?: readonly string[];
}

/** Event rows a device partition keeps: the newest few, and every row younger than the sweep's horizon. */
const KEEP_EVENTS = 10;
const KEEP_EVENTS_MS = 60 * 60 * 1000;

/** Columns `state` and `operation` (JSON), continued in `state1`, `operation1`, … (columns.ts): a payload can be 96 KB. */
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
      else if (row.rowKey.startsWith(EVENT_ROW_PREFIX)) (result.eventRows ??= []).push(row.rowKey);
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
   * Writes the registration row: creates it when `etag` is undefined, otherwise replaces it only if unchanged.
   * A lost race is DPS's 409203 "Precondition failed." (a concurrent registration of the same device).
   * With `events`, they commit in the same Table transaction as the row (one round trip) once their ticket's marker is
   * in the outbox index, and are sent in the background once committed (outbox.ts).
   */
  async saveRegistration(
    registrationId: string,
    value: StoredRegistration,
    etag: string | undefined,
    events?: EventCommit,
  ): Promise<string> {
    const entity: RegistrationEntity = {
      partitionKey: registrationKey(registrationId),
      rowKey: REGISTRATION,
      ...splitColumn('state', JSON.stringify({ ...value.state, etag: undefined })),
      ...splitColumn('operation', JSON.stringify(value.operation)),
      status: value.operation.status,
      enrollmentGroupId: (
        value.state.symmetricKey?.enrollmentGroupId ??
        value.state.x509?.enrollmentGroupId ??
        ''
      ).toLowerCase(),
    };
    if (events && events.events.length > 0) return this.saveWithEvents(entity, etag, events);
    try {
      const response =
        etag === undefined
          ? await this.table.createEntity(entity)
          : await this.table.updateEntity(entity, 'Replace', { etag });
      return response.etag ?? '';
    } catch (err) {
      // A stale ETag, a row created meanwhile, or one deleted meanwhile (404): all the same lost race.
      if (isStatus(err, 404, 409, 412)) throw conflict('Precondition failed.');
      throw err;
    }
  }

  private async saveWithEvents(entity: RegistrationEntity, etag: string | undefined, commit: EventCommit) {
    await commit.ticket.ready; // normally written long ago, alongside the partition read
    const actions: TransactionAction[] = [
      etag === undefined ? ['create', entity] : ['update', entity, 'Replace', { etag }],
      ...eventRows(entity.partitionKey, commit.events),
      ...prunable(commit.seen ?? [], commit.events.length, Date.now()).map((rowKey): TransactionAction => [
        'delete',
        { partitionKey: entity.partitionKey, rowKey },
      ]),
    ];
    let rowEtag: string;
    try {
      const response = await this.table.submitTransaction(actions);
      rowEtag = response.subResponses[0]?.etag ?? '';
    } catch (err) {
      // The row's condition failed (or a pruned row was already gone): the same lost race as without events.
      if (isStatus(err, 404, 409, 412)) throw conflict('Precondition failed.');
      throw err;
    }
    crashPoint('commit');
    commit.ticket.committed(commit.events);
    return rowEtag;
  }

  /** The device's recent events, newest first (the partition's event rows; attestation refusals are not kept). */
  async listEvents(registrationId: string): Promise<CloudEvent[]> {
    const partitionKey = registrationKey(registrationId);
    const filter = odata`PartitionKey eq ${partitionKey} and RowKey gt ${EVENT_ROW_PREFIX} and RowKey lt ${'event}'}`;
    const events: CloudEvent[] = [];
    for await (const row of this.table.listEntities<{ doc: string }>({ queryOptions: { filter } })) {
      events.push(JSON.parse(row.doc) as CloudEvent);
    }
    return events.reverse();
  }

  /** Deletes the registration state (the device then provisions afresh); false if absent, 412 on ETag mismatch. */
  async deleteRegistration(registrationId: string, etag = '*'): Promise<boolean> {
    try {
      await this.table.deleteEntity(registrationKey(registrationId), REGISTRATION, { etag });
      return true;
    } catch (err) {
      if (isStatus(err, 404)) return false;
      if (isStatus(err, 412)) throw preconditionFailed();
      throw err;
    }
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

/** The oldest rows beyond KEEP_EVENTS (counting the ones being added) that are older than KEEP_EVENTS_MS. */
function prunable(seen: readonly string[], adding: number, now: number): string[] {
  const sorted = [...seen].sort();
  const excess = sorted.length + adding - KEEP_EVENTS;
  if (excess <= 0) return [];
  // A transaction holds at most 100 actions: prune a few per commit, the rest next time.
  return sorted
    .slice(0, Math.min(excess, 20))
    .filter((rowKey) => now - eventTime(rowKey.slice(EVENT_ROW_PREFIX.length)) > KEEP_EVENTS_MS);
}

function toRegistration(row: TableEntityResult<RegistrationEntity>): Versioned<StoredRegistration> {
  return {
    value: {
      state: JSON.parse(joinColumn(row, 'state')) as DeviceRegistrationResult,
      operation: JSON.parse(joinColumn(row, 'operation')) as OperationRecord,
    },
    etag: row.etag,
  };
}
