// Repositories against Azurite: ETag semantics, the one-query device partition, sealing, paging.
import { randomBytes } from 'node:crypto';

import { TableClient } from '@azure/data-tables';
import { beforeAll, describe, expect, inject, it } from 'vitest';

import type { IndividualEnrollment } from '../../shared/domain/enrollment';
import { DpsError } from '../../shared/errors';
import { SecretBox } from '../../shared/secrets/envelope';
import { DataKeyTable } from '../../shared/storage/dataKeys';
import { LocalKeyProvider } from '../../shared/secrets/localKeyProvider';
import { DeviceRepository } from '../../shared/storage/devices';
import { EnrollmentTable, groupLayout, individualLayout } from '../../shared/storage/enrollmentTable';
import { ServiceConfigStore } from '../../shared/storage/serviceConfig';
import { createTables, tableRequestCounter } from '../../shared/storage/tables';

const key = () => randomBytes(32).toString('base64');

describe('Table repositories on Azurite', () => {
  const prefix = `s${randomBytes(4).toString('hex')}`;
  const tables = createTables({ connectionString: inject('tablesConnectionString'), prefix });
  const secrets = new SecretBox(new LocalKeyProvider(randomBytes(32)), new DataKeyTable(tables.config));
  const enrollments = new EnrollmentTable<IndividualEnrollment>(tables.devices, secrets, individualLayout);
  const groups = new EnrollmentTable(tables.groups, secrets, groupLayout);
  const devices = new DeviceRepository(tables.devices, enrollments);
  const raw = (name: string) =>
    TableClient.fromConnectionString(inject('tablesConnectionString'), `${prefix}${name}`, {
      allowInsecureConnection: true,
    });

  beforeAll(async () => {
    await tables.ensure();
  });

  it('stores symmetric keys sealed: the raw row holds neither key', async () => {
    const primaryKey = key();
    await enrollments.save({
      registrationId: 'Sealed-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey } },
    });
    const row = await raw('Devices').getEntity<Record<string, unknown>>('sealed-1', 'enrollment');
    expect(JSON.stringify(row)).not.toContain(primaryKey);
    expect((await enrollments.get('SEALED-1'))?.value.attestation.symmetricKey?.primaryKey).toBe(primaryKey);
  });

  it('create refuses an existing enrollment (409); save with a stale ETag is 412; delete with one too', async () => {
    const e: IndividualEnrollment = { registrationId: 'etag-1', attestation: { type: 'none' } };
    const first = await enrollments.create(e);
    await expect(enrollments.create(e)).rejects.toMatchObject({ status: 409 });
    const second = await enrollments.save({ ...e, deviceId: 'x' }, first);
    await expect(enrollments.save(e, first)).rejects.toMatchObject({ status: 412 });
    await expect(enrollments.delete('etag-1', first)).rejects.toMatchObject({ status: 412 });
    expect(await enrollments.delete('etag-1', second)).toBe(true);
    expect(await enrollments.delete('etag-1')).toBe(false);
  });

  it('loads enrollment and registration of a device in one round trip', async () => {
    await enrollments.save({ registrationId: 'part-1', attestation: { type: 'none' } });
    await devices.saveRegistration(
      'part-1',
      {
        state: { registrationId: 'part-1', status: 'assigned' },
        operation: { operationId: 'op', status: 'assigned', startedAtUtc: '' },
      },
      undefined,
    );
    const before = tableRequestCounter.count;
    const partition = await devices.load('part-1');
    expect(tableRequestCounter.count - before).toBe(1);
    expect(partition.enrollment?.value.registrationId).toBe('part-1');
    expect(partition.registration?.value.state.status).toBe('assigned');
  });

  it('a registration write loses a race with 409 "Precondition failed."', async () => {
    const value = {
      state: { registrationId: 'race-1', status: 'assigned' as const },
      operation: { operationId: 'a', status: 'assigned' as const, startedAtUtc: '' },
    };
    const first = await devices.saveRegistration('race-1', value, undefined);
    await expect(devices.saveRegistration('race-1', value, undefined)).rejects.toMatchObject({
      status: 409,
      errorCode: 409203,
    });
    await devices.saveRegistration('race-1', value, first);
    const error = await devices.saveRegistration('race-1', value, first).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DpsError);
  });

  it('pages a query with continuation tokens until exhausted', async () => {
    for (let i = 0; i < 5; i++)
      await groups.save({
        enrollmentGroupId: `pg-${i}`,
        attestation: { type: 'none' },
        provisioningStatus: i % 2 ? 'disabled' : 'enabled',
      });
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const page = await groups.query([{ field: 'provisioningStatus', op: '=', value: 'enabled' }], 2, token);
      seen.push(...page.items.map((g) => g.value.enrollmentGroupId));
      token = page.continuationToken;
    } while (token);
    expect(seen.sort()).toEqual(['pg-0', 'pg-2', 'pg-4']);
  });

  it('keeps the service configuration in one partition with hub connection strings sealed', async () => {
    const store = new ServiceConfigStore(tables.config, secrets);
    const connectionString = `HostName=hub.example.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${key()}`;
    await store.putLinkedHub({
      hostName: 'hub.example.net',
      connectionString,
      allocationWeight: 2,
      applyAllocationPolicy: true,
    });
    await store.putAccessPolicy({ name: 'reader', rights: ['EnrollmentRead'], primaryKey: key(), secondaryKey: key() });
    await store.putSettings({ defaultAllocationPolicy: 'static' });
    const rows: string[] = [];
    for await (const row of raw('Config').listEntities()) rows.push(JSON.stringify(row));
    expect(rows.join('\n')).not.toContain(connectionString.split('SharedAccessKey=')[1]);
    const before = tableRequestCounter.count;
    const loaded = await store.load();
    expect(tableRequestCounter.count - before).toBe(1);
    expect(loaded.linkedHubs).toEqual([
      { hostName: 'hub.example.net', connectionString, allocationWeight: 2, applyAllocationPolicy: true },
    ]);
    expect(loaded.accessPolicies.map((p) => p.name)).toEqual(['reader']);
    expect(loaded.settings.defaultAllocationPolicy).toBe('static');
  });
});
