// The service API's view of device registration states (GET /registrations/{id} and the group query).
import { describe, expect, it } from 'vitest';

import type { ServiceAuthorizer } from '../../shared/management/auth';
import { RegistrationStateManager } from '../../shared/management/registrations';
import type { ServiceRequest } from '../../shared/management/serviceRequest';
import type { StoredRegistration, Versioned } from '../../shared/storage/devices';

const allow = { require: async () => {} } as unknown as ServiceAuthorizer;
const request: ServiceRequest = { authorization: 'x', host: 'dps', pageSize: 100, body: undefined };

const tpmDevice: Versioned<StoredRegistration> = {
  etag: `W/"datetime'2026-01-01T00%3A00%3A00.0000000Z'"`,
  value: {
    state: {
      registrationId: 'tpm-1',
      status: 'assigned',
      assignedHub: 'hub.azure-devices.net',
      deviceId: 'tpm-1',
      substatus: 'initialAssignment',
      tpm: { authenticationKey: 'AAAA-the-hub-key-wrapped-for-the-tpm' },
    },
    operation: { operationId: 'op', status: 'assigned', startedAtUtc: '2026-01-01T00:00:00.000Z' },
  },
};

const manager = new RegistrationStateManager(
  {
    getRegistration: () => Promise.resolve(tpmDevice),
    queryRegistrations: () => Promise.resolve({ items: [tpmDevice] }),
    deleteRegistration: () => Promise.resolve(true),
    listEvents: () => Promise.resolve([]),
  },
  allow,
);

describe('registration states in the service API', () => {
  it("never show a TPM device's authenticationKey (the hub key blob is the device's, not in DPS's DeviceRegistrationState)", async () => {
    const got = await manager.get(request, 'tpm-1');
    expect(got.body).toMatchObject({
      registrationId: 'tpm-1',
      status: 'assigned',
      assignedHub: 'hub.azure-devices.net',
    });
    expect(got.body).not.toHaveProperty('tpm');
    const page = await manager.queryGroup(request, 'group-1');
    expect(JSON.stringify(page.body)).not.toContain('authenticationKey');
  });
});
