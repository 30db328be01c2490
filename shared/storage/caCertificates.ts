// CA certificates in the config table, a partition of their own (`caCertificates`, row = lower-cased name): at most
// 25, so one query lists them all and an instance caches the list; each row's ETag guards its changes.
import type { TableClient } from '@azure/data-tables';

import type { CaCertificate } from '../domain/caCertificate';
import { conflict, preconditionFailed } from '../errors';
import type { Versioned } from './enrollmentTable';
import { isStatus } from './tables';

const PARTITION = 'caCertificates';

interface CaEntity {
  partitionKey: string;
  rowKey: string;
  doc: string;
}

export class CaCertificateStore {
  constructor(private readonly table: TableClient) {}

  async list(): Promise<Versioned<CaCertificate>[]> {
    const result: Versioned<CaCertificate>[] = [];
    for await (const row of this.table.listEntities<CaEntity>({
      queryOptions: { filter: `PartitionKey eq '${PARTITION}'` },
    })) {
      result.push({ value: JSON.parse(row.doc) as CaCertificate, etag: row.etag });
    }
    return result;
  }

  async get(name: string): Promise<Versioned<CaCertificate> | undefined> {
    try {
      const row = await this.table.getEntity<CaEntity>(PARTITION, name.toLowerCase());
      return { value: JSON.parse(row.doc) as CaCertificate, etag: row.etag };
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** Creates (no etag: fails with 409 if it exists) or replaces (etag, `*` for any). Returns the new row ETag. */
  async save(certificate: CaCertificate, etag?: string): Promise<string> {
    const entity: CaEntity = {
      partitionKey: PARTITION,
      rowKey: certificate.name.toLowerCase(),
      doc: JSON.stringify(certificate),
    };
    try {
      if (etag === undefined) return (await this.table.createEntity(entity)).etag ?? '';
      return (await this.table.updateEntity(entity, 'Replace', { etag })).etag ?? '';
    } catch (err) {
      if (isStatus(err, 409)) throw conflict(`The CA certificate '${certificate.name}' was changed meanwhile.`, 409001);
      if (isStatus(err, 412) || isStatus(err, 404)) throw preconditionFailed();
      throw err;
    }
  }

  async delete(name: string, etag = '*'): Promise<boolean> {
    try {
      await this.table.deleteEntity(PARTITION, name.toLowerCase(), { etag });
      return true;
    } catch (err) {
      if (isStatus(err, 404)) return false;
      if (isStatus(err, 412)) throw preconditionFailed();
      throw err;
    }
  }
}
