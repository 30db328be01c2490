// Sizes near Table Storage's limits (64 KiB a property, 1 MiB an entity) and registration IDs in other letter case,
// end to end: the official SDKs where they can send it, raw HTTPS where they cannot.
import { ProvisioningServiceClient } from 'azure-iot-provisioning-service';
import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { deriveKey, registerDevice } from '../support/device';
import { expectDpsError } from '../support/rawHttps';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

describe('large documents and registration-ID case', () => {
  let stack: Stack;
  let service: ProvisioningServiceClient;
  let groupKey: string;
  const call = serviceCaller(() => stack);

  beforeAll(async () => {
    stack = await startTestStack();
    service = ProvisioningServiceClient.fromConnectionString(stack.serviceConnectionString);
    await service.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'Big-Group',
      attestation: { type: 'symmetricKey' },
      initialTwin: { properties: { desired: { blob: 'd'.repeat(30_000) } } },
    } as never);
    const mechanism = await service.getEnrollmentGroupAttestationMechanism('Big-Group');
    groupKey = (mechanism.responseBody as { symmetricKey: { primaryKey: string } }).symmetricKey.primaryKey;
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('accepts a 60 KB device payload (more than one Table property holds) and does not echo it', async () => {
    const id = 'big-payload-1';
    const payload = { blob: 'p'.repeat(60_000) };
    const state = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id), payload);
    expect(state.status).toBe('assigned');
    expect(state.payload).toBeUndefined();
    const { responseBody } = await service.getDeviceRegistrationState(id);
    expect((responseBody as { payload?: unknown }).payload).toBeUndefined();
  });

  it('keeps a 30 KB initial twin and applies it to the hub device', async () => {
    const { responseBody } = await service.getEnrollmentGroup('Big-Group');
    expect(JSON.stringify(responseBody.initialTwin).length).toBeGreaterThan(30_000);
    const id = 'big-twin-1';
    await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
    const twin = await Registry.fromConnectionString(stack.hubs[0]?.connectionString ?? '').getTwin(id);
    expect((twin.responseBody.properties.desired as { blob?: string }).blob).toHaveLength(30_000);
  });

  it("rejects twin sections over IoT Hub's limits (8 KB tags, 32 KB desired) with a 400 naming the field", async () => {
    const tags = { initialTwin: { tags: { t: 'x'.repeat(9000) } }, attestation: { type: 'symmetricKey' } };
    expectDpsError(await call('PUT', '/enrollments/too-big-1', tags), 400, /initialTwin\.tags/);
    const desired = { initialTwin: { properties: { desired: { d: 'x'.repeat(33_000) } } } };
    expectDpsError(
      await call('PUT', '/enrollmentGroups/too-big-2', { ...desired, attestation: { type: 'symmetricKey' } }),
      400,
      /initialTwin\.properties\.desired/,
    );
  });

  it('a bulk item that cannot be stored fails alone; the others are written and reported', async () => {
    const res = await call('POST', '/enrollments', {
      mode: 'create',
      enrollments: [
        { registrationId: 'bulk-ok-1', attestation: { type: 'symmetricKey' } },
        {
          registrationId: 'bulk-too-big',
          attestation: { type: 'symmetricKey' },
          optionalDeviceInformation: { d: 'x'.repeat(40_000) },
        },
        { registrationId: 'bulk-ok-2', attestation: { type: 'symmetricKey' } },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      isSuccessful: false,
      errors: [{ registrationId: 'bulk-too-big', errorCode: 400004 }],
    });
    expect((res.json as { errors: unknown[] }).errors).toHaveLength(1);
    expect((await call('GET', '/enrollments/bulk-ok-2')).status).toBe(200);
    expect((await call('GET', '/enrollments/bulk-too-big')).status).toBe(404);
  });

  it('If-Match: * on an enrollment that does not exist is 412; an invalid ID in the path is 400', async () => {
    const body = { attestation: { type: 'symmetricKey' } };
    expectDpsError(await call('PUT', '/enrollments/not-there-1', body, { 'If-Match': '*' }), 412);
    expectDpsError(await call('GET', '/enrollments/bad%20id'), 400, /registrationId/);
    expectDpsError(await call('GET', '/registrations/-bad-'), 400, /registrationId/);
  });

  it('a device registering again with other letter case stays one hub device, found by a group query in any case', async () => {
    const hub = Registry.fromConnectionString(stack.hubs[0]?.connectionString ?? '');
    await registerDevice(stack.deviceEndpoint, stack.idScope, 'case-dev-1', deriveKey(groupKey, 'case-dev-1'));
    const again = await registerDevice(
      stack.deviceEndpoint,
      stack.idScope,
      'Case-Dev-1',
      deriveKey(groupKey, 'Case-Dev-1'),
    );
    expect(again).toMatchObject({ status: 'assigned', deviceId: 'case-dev-1' });
    expect((await hub.get('case-dev-1')).responseBody.deviceId).toBe('case-dev-1');
    await expect(hub.get('Case-Dev-1')).rejects.toMatchObject({ name: 'DeviceNotFoundError' });

    const res = await call('POST', '/registrations/big-group/query', {});
    expect(res.status).toBe(200);
    const ids = (res.json as { registrationId: string }[]).map((r) => r.registrationId.toLowerCase());
    expect(ids).toContain('case-dev-1');
  });
});
