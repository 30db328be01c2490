// Enrollment rows, for individual enrollments (in each device's partition) and groups (one partition) alike:
// the enrollment JSON without secrets, its symmetric keys sealed, and a few indexed columns for queries.
import type { TableClient, TableEntityResult } from '@azure/data-tables';

import type {
  EnrollmentCommon,
  EnrollmentGroup,
  IndividualEnrollment,
  SymmetricKeyAttestation,
} from '../domain/enrollment';
import { registrationKey } from '../domain/registrationId';
import { badRequest, conflict, notFound, preconditionFailed } from '../errors';
import type { SecretBox } from '../secrets/envelope';
import { joinColumn, splitColumn } from './columns';
import { firstPage, isStatus } from './tables';

export interface Versioned<T> {
  value: T;
  etag: string;
}

/** Column `doc` is the enrollment JSON, continued in `doc1`, `doc2`, … when long (columns.ts). */
export interface EnrollmentEntity {
  partitionKey: string;
  rowKey: string;
  secrets?: string;
  provisioningStatus: string;
  attestationType: string;
  iotHubHostName: string;
  allocationPolicy: string;
  deviceId: string;
  [column: string]: string | undefined;
}

/** A backstop under the 1 MiB entity limit (UTF-16: 2 bytes a character); field limits in validate.ts come first. */
const MAX_DOC_CHARS = 256_000;

/** Columns a query may filter on, by the enrollment field they index. */
export const QUERY_COLUMNS = {
  provisioningStatus: 'provisioningStatus',
  'attestation.type': 'attestationType',
  iotHubHostName: 'iotHubHostName',
  allocationPolicy: 'allocationPolicy',
  deviceId: 'deviceId',
} as const;

export type QueryField = keyof typeof QUERY_COLUMNS;

export interface QueryCondition {
  field: QueryField;
  op: '=' | '!=';
  value: string;
}

export interface Page<T> {
  items: T[];
  continuationToken?: string;
}

interface Layout<T> {
  /** Table keys of an enrollment ID. */
  keys(id: string): { partitionKey: string; rowKey: string };
  /** OData filter selecting this kind's rows. */
  scope: string;
  idOf(e: T): string;
}

export class EnrollmentTable<T extends EnrollmentCommon> {
  constructor(
    private readonly table: TableClient,
    private readonly secrets: SecretBox,
    private readonly layout: Layout<T>,
  ) {}

  async get(id: string): Promise<Versioned<T> | undefined> {
    const { partitionKey, rowKey } = this.layout.keys(id);
    try {
      return await this.fromEntity(await this.table.getEntity<EnrollmentEntity>(partitionKey, rowKey));
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** Every row of this kind (used for the small group list; individual enrollments go through `query`). */
  async list(): Promise<Versioned<T>[]> {
    const all: Versioned<T>[] = [];
    for await (const row of this.table.listEntities<EnrollmentEntity>({
      queryOptions: { filter: this.layout.scope },
    })) {
      all.push(await this.fromEntity(row));
    }
    return all;
  }

  /** Inserts; 409 if it exists. Returns the row ETag. */
  async create(enrollment: T): Promise<string> {
    try {
      return (await this.table.createEntity(await this.toEntity(enrollment))).etag ?? '';
    } catch (err) {
      if (isStatus(err, 409)) throw conflict(`'${this.layout.idOf(enrollment)}' already exists.`, 409001);
      throw err;
    }
  }

  /** Upsert when `etag` is undefined or `*`, else replace only if unchanged (412 otherwise, 404 if gone). */
  async save(enrollment: T, etag?: string): Promise<string> {
    const entity = await this.toEntity(enrollment);
    if (etag === undefined || etag === '*') return (await this.table.upsertEntity(entity, 'Replace')).etag ?? '';
    try {
      return (await this.table.updateEntity(entity, 'Replace', { etag })).etag ?? '';
    } catch (err) {
      if (isStatus(err, 412)) throw preconditionFailed();
      if (isStatus(err, 404)) throw notFound(`'${this.layout.idOf(enrollment)}' was not found.`);
      throw err;
    }
  }

  /** Deletes; false if absent, 412 on an ETag mismatch. */
  async delete(id: string, etag = '*'): Promise<boolean> {
    const { partitionKey, rowKey } = this.layout.keys(id);
    try {
      await this.table.deleteEntity(partitionKey, rowKey, { etag });
      return true;
    } catch (err) {
      if (isStatus(err, 404)) return false;
      if (isStatus(err, 412)) throw preconditionFailed();
      throw err;
    }
  }

  async query(
    conditions: readonly QueryCondition[],
    pageSize: number,
    continuationToken?: string,
  ): Promise<Page<Versioned<T>>> {
    const filter = [this.layout.scope, ...conditions.map(toOData)].join(' and ');
    const page = await firstPage<EnrollmentEntity>(this.table, filter, pageSize, continuationToken);
    const items = await Promise.all(page.rows.map((row) => this.fromEntity(row)));
    return { items, ...(page.continuationToken ? { continuationToken: page.continuationToken } : {}) };
  }

  private async toEntity(enrollment: T): Promise<EnrollmentEntity> {
    const { symmetricKey, ...attestation } = enrollment.attestation;
    const hubs = enrollment.iotHubs ?? [];
    const doc = JSON.stringify({ ...enrollment, attestation, etag: undefined });
    if (doc.length > MAX_DOC_CHARS) {
      throw badRequest(
        `The enrollment is too large to store (${doc.length} characters of JSON; at most ${MAX_DOC_CHARS}).`,
      );
    }
    return {
      ...this.layout.keys(this.layout.idOf(enrollment)),
      ...splitColumn('doc', doc),
      provisioningStatus: enrollment.provisioningStatus ?? 'enabled',
      attestationType: enrollment.attestation.type,
      iotHubHostName: enrollment.iotHubHostName ?? (hubs.length === 1 ? (hubs[0] ?? '') : ''),
      allocationPolicy: enrollment.allocationPolicy ?? '',
      deviceId: 'deviceId' in enrollment && typeof enrollment.deviceId === 'string' ? enrollment.deviceId : '',
      ...(symmetricKey ? { secrets: await this.secrets.seal(symmetricKey) } : {}),
    };
  }

  async fromEntity(row: TableEntityResult<EnrollmentEntity>): Promise<Versioned<T>> {
    const value = JSON.parse(joinColumn(row, 'doc')) as T;
    if (row.secrets) {
      value.attestation = {
        ...value.attestation,
        symmetricKey: await this.secrets.open<SymmetricKeyAttestation>(row.secrets),
      };
    }
    return { value, etag: row.etag };
  }
}

function toOData(condition: QueryCondition): string {
  const column = QUERY_COLUMNS[condition.field];
  const op = condition.op === '=' ? 'eq' : 'ne';
  // The column name comes from our own whitelist; the value is quoted with OData's '' escape.
  return `${column} ${op} '${condition.value.replace(/'/g, "''")}'`;
}

/** Individual enrollments live in their device's partition. */
export const individualLayout: Layout<IndividualEnrollment> = {
  keys: (id) => ({ partitionKey: registrationKey(id), rowKey: 'enrollment' }),
  scope: "RowKey eq 'enrollment'",
  idOf: (e) => e.registrationId,
};

/** Groups share one partition: DPS allows a few hundred. */
export const groupLayout: Layout<EnrollmentGroup> = {
  keys: (id) => ({ partitionKey: 'group', rowKey: id.toLowerCase() }),
  scope: "PartitionKey eq 'group'",
  idOf: (e) => e.enrollmentGroupId,
};
