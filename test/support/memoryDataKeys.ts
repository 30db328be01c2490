// An in-memory DataKeyStore for unit tests of the envelope (the real one is a Table partition: storage/dataKeys.ts).
import type { DataKeyRecord, DataKeyStore } from '../../shared/secrets/envelope';

export class MemoryDataKeys implements DataKeyStore {
  readonly keys = new Map<string, DataKeyRecord>();
  currentId: string | undefined;
  gets = 0;

  get(id: string): Promise<DataKeyRecord | undefined> {
    this.gets++;
    return Promise.resolve(this.keys.get(id));
  }
  current(): Promise<DataKeyRecord | undefined> {
    return Promise.resolve(this.currentId === undefined ? undefined : this.keys.get(this.currentId));
  }
  create(key: DataKeyRecord): Promise<void> {
    this.keys.set(key.id, key);
    this.currentId = key.id;
    return Promise.resolve();
  }
  replace(key: DataKeyRecord): Promise<void> {
    this.keys.set(key.id, key);
    return Promise.resolve();
  }
  list(): Promise<DataKeyRecord[]> {
    return Promise.resolve([...this.keys.values()]);
  }
}
