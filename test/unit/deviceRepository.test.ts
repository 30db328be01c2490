import { RestError } from '@azure/core-rest-pipeline';
import type { TableClient } from '@azure/data-tables';
import { describe, expect, it } from 'vitest';

import type { IndividualEnrollment } from '../../shared/domain/enrollment';
import { DpsError } from '../../shared/errors';
import type { StoredRegistration } from '../../shared/storage/devices';
import { DeviceRepository } from '../../shared/storage/devices';
import type { EnrollmentTable } from '../../shared/storage/enrollmentTable';

const VALUE: StoredRegistration = {
  state: { registrationId: 'device-1', status: 'assigned' },
  operation: { operationId: 'op', status: 'assigned', startedAtUtc: '2024-01-01T00:00:00.000Z' },
};

/** A Table client whose writes fail as Table Storage answers them (only the calls saveRegistration makes). */
function failingTable(statusCode: number): TableClient {
  const fail = () => Promise.reject(new RestError(`storage answered ${statusCode}`, { statusCode }));
  return { createEntity: fail, updateEntity: fail } as unknown as TableClient;
}

const repository = (table: TableClient) =>
  new DeviceRepository(table, {} as unknown as EnrollmentTable<IndividualEnrollment>);

async function saveError(statusCode: number, etag: string | undefined): Promise<unknown> {
  try {
    await repository(failingTable(statusCode)).saveRegistration(
      'device-1',
      VALUE,
      etag === undefined ? undefined : { value: VALUE, etag },
    );
  } catch (err) {
    return err;
  }
  throw new Error('saveRegistration succeeded');
}

describe('DeviceRepository.saveRegistration: a lost race is 409203', () => {
  it('create over an existing row (409) is the 409203 conflict', async () => {
    expect(await saveError(409, undefined)).toMatchObject({ status: 409, errorCode: 409203 });
  });

  it('replace with a stale ETag (412) is the 409203 conflict', async () => {
    expect(await saveError(412, 'W/"datetime\'x\'"')).toMatchObject({ status: 409, errorCode: 409203 });
  });

  // Table Storage (and Azurite) answer 404 to a conditional Replace of a row deleted since it was read, e.g. when the
  // registration state is deleted through the service API while the device's operation is being committed. That is
  // the same lost race, and must not reach the device as an unmapped 500.
  it('replace of a row deleted meanwhile (404) is the 409203 conflict, not an unmapped storage error', async () => {
    const err = await saveError(404, 'W/"datetime\'x\'"');
    expect(err).toBeInstanceOf(DpsError);
    expect(err).toMatchObject({ status: 409, errorCode: 409203 });
  });

  it('other storage failures are not disguised as conflicts', async () => {
    const err = await saveError(503, 'W/"datetime\'x\'"');
    expect(err).not.toBeInstanceOf(DpsError);
  });
});
