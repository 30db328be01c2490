// The official device SDK (azure-iot-provisioning-device + -http + -security-symmetric-key) against the dev host.
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { createSas } from '../../shared/http/sas';
import { tableRequestCounter } from '../../shared/storage/tables';
import { deriveKey, registerDevice } from '../support/device';
import { rawRequest } from '../support/rawHttps';
import { startTestStack } from '../support/stack';

const key = () => randomBytes(64).toString('base64');

describe('symmetric-key provisioning with the official device SDK', () => {
  let stack: Stack;
  const groupKey = key();
  const individualKey = key();
  const individualSecondary = key();

  beforeAll(async () => {
    stack = await startTestStack({ hubs: { count: 2 } });
    await stack.services.enrollments.save({
      registrationId: 'sym-individual-1',
      deviceId: 'custom-device-id',
      attestation: {
        type: 'symmetricKey',
        symmetricKey: { primaryKey: individualKey, secondaryKey: individualSecondary },
      },
      capabilities: { iotEdge: true },
      initialTwin: { tags: { site: 'lab' }, properties: { desired: { interval: 10 } } },
    });
    await stack.services.enrollments.save({
      registrationId: 'sym-disabled-1',
      attestation: {
        type: 'symmetricKey',
        symmetricKey: { primaryKey: individualKey, secondaryKey: individualSecondary },
      },
      provisioningStatus: 'disabled',
    });
    await stack.services.groups.save({
      enrollmentGroupId: 'factory-a',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: key() } },
      initialTwin: { tags: { line: 'a' } },
    });
    stack.services.invalidateCaches();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('registers an individual-enrollment device: hub, deviceId, substatus, and no echo of its payload', async () => {
    const state = await registerDevice(stack.deviceEndpoint, stack.idScope, 'sym-individual-1', individualKey, {
      modelId: 'dtmi:test:dev;1',
    });
    expect(stack.hubs.map((h) => h.hostName)).toContain(state.assignedHub);
    expect(state.deviceId).toBe('custom-device-id');
    expect(state.status).toBe('assigned');
    expect(state.substatus).toBe('initialAssignment');
    // DPS returns a payload only from a custom-allocation webhook, never the device's own.
    expect(state.payload).toBeUndefined();

    const hub = stack.hubs.find((h) => h.hostName === state.assignedHub);
    const device = hub?.device('custom-device-id') as
      | {
          authentication: { symmetricKey: { primaryKey: string; secondaryKey: string } };
          capabilities: { iotEdge: boolean };
        }
      | undefined;
    expect(device?.authentication.symmetricKey).toEqual({
      primaryKey: individualKey,
      secondaryKey: individualSecondary,
    });
    expect(device?.capabilities.iotEdge).toBe(true);
  });

  it('accepts a token signed with the secondary key', async () => {
    const state = await registerDevice(stack.deviceEndpoint, stack.idScope, 'sym-individual-1', individualSecondary);
    expect(state.deviceId).toBe('custom-device-id');
  });

  it('registers two group devices with keys derived from the group key', async () => {
    for (const id of ['factory-a-dev-1', 'factory-a-dev-2']) {
      const state = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
      expect(state.status).toBe('assigned');
      expect(state.deviceId).toBe(id);
      expect(state.substatus).toBe('initialAssignment');
      expect(state.symmetricKey).toEqual({ enrollmentGroupId: 'factory-a' });
      const hub = stack.hubs.find((h) => h.hostName === state.assignedHub);
      const device = hub?.device(id) as { authentication: { symmetricKey: { primaryKey: string } } } | undefined;
      expect(device?.authentication.symmetricKey.primaryKey).toBe(deriveKey(groupKey, id));
    }
  });

  it('re-registering an assigned device is idempotent: same hub, same device, no duplicate', async () => {
    const id = 'factory-a-dev-3';
    const first = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
    const devicesBefore = stack.hubs.reduce((n, h) => n + h.deviceCount(), 0);
    const second = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
    expect(second.assignedHub).toBe(first.assignedHub);
    expect(second.deviceId).toBe(first.deviceId);
    expect(second.createdDateTimeUtc).toBe(first.createdDateTimeUtc);
    expect(second.substatus).toBe('reprovisionedToInitialAssignment');
    expect(stack.hubs.reduce((n, h) => n + h.deviceCount(), 0)).toBe(devicesBefore);
  });

  it('a first registration costs three Table round trips (partition read, claim, commit), a re-registration two', async () => {
    const id = 'factory-a-dev-5';
    await registerDevice(
      stack.deviceEndpoint,
      stack.idScope,
      'factory-a-dev-6',
      deriveKey(groupKey, 'factory-a-dev-6'),
    );
    // Device-path round trips, and apart the events outbox's marker write and delete (the write overlaps the
    // partition read; both are group-committed with other requests' under load; the events ride in the writes).
    const counts = () => ({
      path: tableRequestCounter.count - tableRequestCounter.outbox,
      outbox: tableRequestCounter.outbox,
    });
    const settled = async () => {
      await new Promise((r) => setTimeout(r, 100)); // the send follows the answer
      await stack.services.events.outbox.drain(); // sends, and deletes the settled markers now
    };
    await settled(); // the registration above leaves nothing pending
    const before = counts();
    const state = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
    expect(state.status).toBe('assigned');
    expect(counts().path - before.path).toBe(3);
    await settled();
    expect(counts().outbox - before.outbox).toBe(2);
    // Again, same hub and device ID: no new identity can appear, so no claim is needed.
    const again = counts();
    expect((await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id))).status).toBe(
      'assigned',
    );
    expect(counts().path - again.path).toBe(2);
    await settled();
    expect(counts().outbox - again.outbox).toBe(2);
  });

  it('a poll of the finished operation costs one Table round trip', async () => {
    const id = 'factory-a-dev-7';
    const headers = {
      Authorization: createSas(
        `${stack.idScope}/registrations/${id}`,
        deriveKey(groupKey, id),
        Math.floor(Date.now() / 1000) + 3600,
        'x',
      ),
      'Content-Type': 'application/json',
    };
    const base = `/${stack.idScope}/registrations/${id}`;
    const put = await rawRequest(stack.deviceEndpoint, 'PUT', `${base}/register?api-version=2021-06-01`, '{}', headers);
    const { operationId, status } = put.json as { operationId: string; status: string };
    expect(status).toBe('assigned');
    const before = tableRequestCounter.count;
    const poll = await rawRequest(stack.deviceEndpoint, 'GET', `${base}/operations/${operationId}`, undefined, headers);
    expect(poll.status).toBe(200);
    expect(poll.json).toMatchObject({ operationId, status: 'assigned', registrationState: { deviceId: id } });
    expect(tableRequestCounter.count - before).toBe(1);
  });

  it('rejects a device whose key is wrong with 401', async () => {
    await expect(registerDevice(stack.deviceEndpoint, stack.idScope, 'factory-a-dev-9', key())).rejects.toMatchObject({
      name: 'UnauthorizedError',
    });
  });

  it('rejects a device that uses the wrong ID scope with 401', async () => {
    const id = 'factory-a-dev-4';
    await expect(
      registerDevice(stack.deviceEndpoint, '0ne00000000', id, deriveKey(groupKey, id)),
    ).rejects.toMatchObject({
      name: 'UnauthorizedError',
    });
  });

  it('reports a disabled enrollment as status "disabled" (the Node SDK surfaces it as an unknown status)', async () => {
    await expect(registerDevice(stack.deviceEndpoint, stack.idScope, 'sym-disabled-1', individualKey)).rejects.toThrow(
      /status is disabled/,
    );
    const record = await stack.services.devices.getRegistration('sym-disabled-1');
    expect(record?.value.state.status).toBe('disabled');
  });
});
