// The service configuration in one Table partition (`config`): linked hubs (`hub:<host>`), access policies
// (`policy:<name>`) and settings (`settings`). One query loads all of it, so an instance caches it as a whole.
// Hub connection strings and policy keys are sealed at rest.
import type { TableClient } from '@azure/data-tables';

import type { LinkedHub } from '../domain/linkedHub';
import type { AccessPolicy, Right, ServiceConfiguration, ServiceSettings } from '../domain/serviceConfig';
import { DEFAULT_SETTINGS } from '../domain/serviceConfig';
import type { SecretBox } from '../secrets/envelope';
import { isStatus } from './tables';

const PARTITION = 'config';
const hubKey = (hostName: string) => `hub:${hostName.toLowerCase()}`;
const policyKey = (name: string) => `policy:${name.toLowerCase()}`;

interface ConfigEntity {
  partitionKey: string;
  rowKey: string;
  /** JSON of the non-secret fields. */
  doc: string;
  /** Sealed JSON of the secret fields. */
  secrets?: string;
}

export class ServiceConfigStore {
  constructor(
    private readonly table: TableClient,
    private readonly secrets: SecretBox,
  ) {}

  async load(): Promise<ServiceConfiguration> {
    const config: ServiceConfiguration = { linkedHubs: [], accessPolicies: [], settings: { ...DEFAULT_SETTINGS } };
    for await (const row of this.table.listEntities<ConfigEntity>({
      queryOptions: { filter: `PartitionKey eq '${PARTITION}'` },
    })) {
      const doc = JSON.parse(row.doc) as Record<string, unknown>;
      const secret = row.secrets ? await this.secrets.open<Record<string, string>>(row.secrets) : {};
      if (row.rowKey.startsWith('hub:'))
        config.linkedHubs.push({
          ...(doc as Omit<LinkedHub, 'connectionString'>),
          ...(secret.connectionString ? { connectionString: secret.connectionString } : {}),
        });
      else if (row.rowKey.startsWith('policy:')) {
        config.accessPolicies.push({
          ...(doc as { name: string; rights: Right[] }),
          primaryKey: secret.primaryKey ?? '',
          secondaryKey: secret.secondaryKey ?? '',
        });
      } else if (row.rowKey === 'settings')
        config.settings = { ...config.settings, ...(doc as Partial<ServiceSettings>) };
    }
    return config;
  }

  async putLinkedHub(hub: LinkedHub): Promise<void> {
    const { connectionString, ...doc } = hub;
    // A hub linked without a connection string has no secret: the service reaches it with its managed identity.
    await this.put(hubKey(hub.hostName), doc, connectionString ? { connectionString } : undefined);
  }

  deleteLinkedHub(hostName: string): Promise<boolean> {
    return this.delete(hubKey(hostName));
  }

  async putAccessPolicy(policy: AccessPolicy): Promise<void> {
    const { primaryKey, secondaryKey, ...doc } = policy;
    await this.put(policyKey(policy.name), doc, { primaryKey, secondaryKey });
  }

  deleteAccessPolicy(name: string): Promise<boolean> {
    return this.delete(policyKey(name));
  }

  async putSettings(settings: ServiceSettings): Promise<void> {
    await this.put('settings', settings);
  }

  private async put(rowKey: string, doc: object, secrets?: Record<string, string>): Promise<void> {
    const entity: ConfigEntity = {
      partitionKey: PARTITION,
      rowKey,
      doc: JSON.stringify(doc),
      ...(secrets ? { secrets: await this.secrets.seal(secrets) } : {}),
    };
    await this.table.upsertEntity(entity, 'Replace');
  }

  private async delete(rowKey: string): Promise<boolean> {
    try {
      await this.table.deleteEntity(PARTITION, rowKey);
      return true;
    } catch (err) {
      if (isStatus(err, 404)) return false;
      throw err;
    }
  }
}
