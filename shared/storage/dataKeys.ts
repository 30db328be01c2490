// Wrapped data keys of the envelope (secrets/envelope.ts), in the config table's `datakeys` partition: one row per
// data key (`dk:<id>`, the key wrapped by the key provider) and `current`, the epoch every instance seals under.
import type { TableClient } from '@azure/data-tables';

import type { DataKeyRecord, DataKeyStore } from '../secrets/envelope';
import { isStatus } from './tables';

const PARTITION = 'datakeys';
const CURRENT = 'current';

interface DataKeyEntity {
  partitionKey: string;
  rowKey: string;
  /** The key-encryption key (and version) that wrapped it. */
  keyId: string;
  /** base64 of the wrapped data key. */
  wrapped: string;
  created: string;
}

export class DataKeyTable implements DataKeyStore {
  constructor(private readonly table: TableClient) {}

  async get(id: string): Promise<DataKeyRecord | undefined> {
    try {
      return record(await this.table.getEntity<DataKeyEntity>(PARTITION, `dk:${id}`));
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  async current(): Promise<DataKeyRecord | undefined> {
    try {
      const pointer = await this.table.getEntity<{ id: string }>(PARTITION, CURRENT);
      return await this.get(pointer.id);
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  async create(key: DataKeyRecord): Promise<void> {
    await this.table.createEntity<DataKeyEntity>(entity(key));
    // Last writer wins when two instances start an epoch at once: both keys stay valid, one becomes current.
    await this.table.upsertEntity({ partitionKey: PARTITION, rowKey: CURRENT, id: key.id }, 'Replace');
  }

  async replace(key: DataKeyRecord): Promise<void> {
    await this.table.updateEntity<DataKeyEntity>(entity(key), 'Replace');
  }

  async list(): Promise<DataKeyRecord[]> {
    const keys: DataKeyRecord[] = [];
    const filter = `PartitionKey eq '${PARTITION}' and RowKey ge 'dk:' and RowKey lt 'dk;'`;
    for await (const row of this.table.listEntities<DataKeyEntity>({ queryOptions: { filter } }))
      keys.push(record(row));
    return keys;
  }
}

const record = (row: DataKeyEntity): DataKeyRecord => ({
  id: row.rowKey.slice(3),
  keyId: row.keyId,
  wrapped: row.wrapped,
  created: row.created,
});

const entity = (key: DataKeyRecord): DataKeyEntity => ({
  partitionKey: PARTITION,
  rowKey: `dk:${key.id}`,
  keyId: key.keyId,
  wrapped: key.wrapped,
  created: key.created,
});
