// The official DPS service SDK (azure-iot-provisioning-service) against the service API, and the full loop with the
// official device SDK: enroll → register → read the registration state → delete it → register afresh.

import { ProvisioningServiceClient } from 'azure-iot-provisioning-service';
import type {
  BulkEnrollmentOperation,
  BulkEnrollmentOperationResult,
  EnrollmentGroup,
  IndividualEnrollment,
} from 'azure-iot-provisioning-service/dist/interfaces';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import type { Stack } from '../../dev/stack';
import { deriveKey, registerDevice } from '../support/device';
import { newKey, symmetric } from '../support/service';
import { startTestStack } from '../support/stack';

const headers = (page: { httpResponse: unknown }) => (page.httpResponse as { headers: Record<string, string> }).headers;

describe('service API with the official service SDK', () => {
  let stack: Stack;
  let dps: ProvisioningServiceClient;
  const seenBodies: string[] = [];

  const logged: string[] = [];

  beforeAll(async () => {
    // Everything the service logs in this file, to check that no secret ever reaches a log line.
    for (const level of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      const original = console[level].bind(console);
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
        logged.push(args.map(String).join(' '));
        original(...args);
      });
    }
    stack = await startTestStack({ hubs: { count: 2 } });
    dps = ProvisioningServiceClient.fromConnectionString(stack.serviceConnectionString);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const remember = <T>(body: T): T => {
    seenBodies.push(JSON.stringify(body));
    return body;
  };

  it('creates an enrollment, generating 64-byte keys: the PUT answer shows them (as DPS), GET never does', async () => {
    // Not remembered: like DPS, a PUT answers with the enrollment as written, keys included (az CLI's live tests
    // check `attestation.symmetricKey.primaryKey` in `iot dps enrollment update`'s output, which is that answer).
    const created = (
      await dps.createOrUpdateIndividualEnrollment({
        registrationId: 'svc-dev-1',
        attestation: symmetric(),
      } as IndividualEnrollment)
    ).responseBody;
    expect(created.registrationId).toBe('svc-dev-1');
    expect(created.provisioningStatus).toBe('enabled');
    expect(created.etag).toMatch(/^".+"$/);

    const fetched = remember((await dps.getIndividualEnrollment('svc-dev-1')).responseBody);
    expect(fetched.attestation).toEqual({ type: 'symmetricKey', symmetricKey: {} });

    const mechanism = (await dps.getIndividualEnrollmentAttestationMechanism('svc-dev-1')).responseBody;
    const primary = mechanism.symmetricKey?.primaryKey ?? '';
    expect(Buffer.from(primary, 'base64')).toHaveLength(64);
    expect(mechanism.symmetricKey?.secondaryKey).not.toBe(primary);
    expect(created.attestation).toEqual(mechanism);
  });

  it('updates with a matching etag, keeps the keys, and rejects a stale etag with 412', async () => {
    const before = (await dps.getIndividualEnrollmentAttestationMechanism('svc-dev-1')).responseBody;
    const current = (await dps.getIndividualEnrollment('svc-dev-1')).responseBody;
    const updated = (
      await dps.createOrUpdateIndividualEnrollment({
        ...current,
        initialTwin: { tags: { floor: 3 } },
      } as unknown as IndividualEnrollment)
    ).responseBody;
    expect(updated.etag).not.toBe(current.etag);
    expect(updated.initialTwin).toEqual({ tags: { floor: 3 } });
    expect(updated.createdDateTimeUtc).toBe(current.createdDateTimeUtc);
    const after = (await dps.getIndividualEnrollmentAttestationMechanism('svc-dev-1')).responseBody;
    expect(after).toEqual(before);
    expect(updated.attestation).toEqual(before);

    await expect(dps.createOrUpdateIndividualEnrollment(current)).rejects.toMatchObject({
      responseBody: expect.stringContaining('412') as unknown,
    });
  });

  it('deletes with and without an etag; a stale etag is refused', async () => {
    for (const id of ['svc-del-1', 'svc-del-2', 'svc-del-3']) {
      await dps.createOrUpdateIndividualEnrollment({
        registrationId: id,
        attestation: symmetric(),
      } as IndividualEnrollment);
    }
    await dps.deleteIndividualEnrollment('svc-del-1');
    const second = (await dps.getIndividualEnrollment('svc-del-2')).responseBody;
    await expect(dps.deleteIndividualEnrollment('svc-del-2', '"bm9wZQ=="')).rejects.toBeDefined();
    await dps.deleteIndividualEnrollment(second);
    const third = (await dps.getIndividualEnrollment('svc-del-3')).responseBody;
    await dps.deleteIndividualEnrollment('svc-del-3', third.etag ?? '');
    for (const id of ['svc-del-1', 'svc-del-2', 'svc-del-3']) {
      await expect(dps.getIndividualEnrollment(id)).rejects.toMatchObject({ response: { statusCode: 404 } });
    }
  });

  it('manages enrollment groups: create, get, attestation mechanism, update, delete', async () => {
    const groupKey = newKey();
    const created = (
      await dps.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: 'svc-group-1',
        attestation: symmetric(groupKey),
        reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: true },
      } as EnrollmentGroup)
    ).responseBody;
    const mechanism = (await dps.getEnrollmentGroupAttestationMechanism('svc-group-1')).responseBody;
    expect(mechanism.symmetricKey?.primaryKey).toBe(groupKey);
    expect(created.attestation).toEqual(mechanism);
    const fetched = remember((await dps.getEnrollmentGroup('svc-group-1')).responseBody);
    const disabled = (await dps.createOrUpdateEnrollmentGroup({ ...fetched, provisioningStatus: 'disabled' }))
      .responseBody;
    expect(disabled.provisioningStatus).toBe('disabled');
    await dps.deleteEnrollmentGroup(disabled);
    await expect(dps.getEnrollmentGroup('svc-group-1')).rejects.toBeDefined();
  });

  it('pages a query across at least 3 pages with x-ms-continuation', async () => {
    for (let i = 0; i < 7; i++) {
      await dps.createOrUpdateIndividualEnrollment({
        registrationId: `page-${i}`,
        attestation: symmetric(),
      } as IndividualEnrollment);
    }
    const query = dps.createIndividualEnrollmentQuery(
      { query: "SELECT * FROM enrollments WHERE attestation.type = 'symmetricKey'" },
      3,
    );
    const ids: string[] = [];
    let pages = 0;
    // The SDK's next() without an argument does not send the token: pass it explicitly.
    let page = await query.next();
    for (;;) {
      pages++;
      const items = page.responseBody as unknown as IndividualEnrollment[];
      remember(items);
      expect(items.length).toBeLessThanOrEqual(3);
      ids.push(...items.map((e) => e.registrationId));
      expect(headers(page)['x-ms-item-type']).toBe('Enrollment');
      if (!query.hasMoreResults) break;
      page = await query.next(query.continuationToken);
    }
    expect(pages).toBeGreaterThanOrEqual(3);
    for (let i = 0; i < 7; i++) expect(ids).toContain(`page-${i}`);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('filters queries with WHERE and rejects unsupported queries with 400', async () => {
    await dps.createOrUpdateIndividualEnrollment({
      registrationId: 'filter-off',
      attestation: symmetric(),
      provisioningStatus: 'disabled',
    } as IndividualEnrollment);
    const query = dps.createIndividualEnrollmentQuery(
      { query: "SELECT * FROM enrollments WHERE provisioningStatus = 'disabled'" },
      100,
    );
    const page = await query.next();
    const items = page.responseBody as unknown as IndividualEnrollment[];
    expect(items.map((e) => e.registrationId)).toEqual(['filter-off']);
    const bad = dps.createIndividualEnrollmentQuery({
      query: 'SELECT * FROM enrollments WHERE registrationState.status > 3',
    });
    await expect(bad.next()).rejects.toMatchObject({
      responseBody: expect.stringContaining('Unsupported query') as unknown,
    });
  });

  it('runs bulk operations (create, update, delete) with per-item results', async () => {
    const bulk = (op: BulkEnrollmentOperation) =>
      new Promise<BulkEnrollmentOperationResult>((resolve, reject) => {
        // The promise form of runBulkEnrollmentOperation never settles (reference/official-clients.md §0): callback.
        dps.runBulkEnrollmentOperation(op, (err, result) =>
          err ? reject(err) : resolve(result as BulkEnrollmentOperationResult),
        );
      });
    const enrollments = Array.from({ length: 25 }, (_, i) => ({
      registrationId: `bulk-${i}`,
      attestation: symmetric(),
    })) as IndividualEnrollment[];
    expect(await bulk({ mode: 'create', enrollments })).toEqual({ isSuccessful: true, errors: [] });
    const again = await bulk({ mode: 'create', enrollments: enrollments.slice(0, 2) });
    expect(again.isSuccessful).toBe(false);
    expect(again.errors.map((e) => [e.registrationId, e.errorCode])).toEqual(
      expect.arrayContaining([
        ['bulk-0', 409001],
        ['bulk-1', 409001],
      ]),
    );
    const updated = await bulk({
      mode: 'update',
      enrollments: enrollments.map((e) => ({ ...e, provisioningStatus: 'disabled' as const })),
    });
    expect(updated.isSuccessful).toBe(true);
    expect((await dps.getIndividualEnrollment('bulk-7')).responseBody.provisioningStatus).toBe('disabled');
    const deleted = await bulk({
      mode: 'delete',
      enrollments: [...enrollments, { registrationId: 'bulk-missing' } as IndividualEnrollment],
    });
    expect(deleted.errors).toEqual([
      { registrationId: 'bulk-missing', errorCode: 404202, errorStatus: expect.any(String) as unknown },
    ]);
    await expect(dps.getIndividualEnrollment('bulk-3')).rejects.toBeDefined();
  });

  it('full loop: enroll → device registers → state visible → deleted → device registers afresh', async () => {
    const groupKey = newKey();
    await dps.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'loop-group',
      attestation: symmetric(groupKey),
    } as EnrollmentGroup);
    const id = 'loop-device-1';
    const first = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
    expect(first.status).toBe('assigned');

    const state = remember((await dps.getDeviceRegistrationState(id)).responseBody);
    expect(state).toMatchObject({
      registrationId: id,
      status: 'assigned',
      assignedHub: first.assignedHub,
      deviceId: id,
    });

    const query = dps.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, 'loop-group', 10);
    const page = await query.next();
    expect((page.responseBody as unknown as { registrationId: string }[]).map((s) => s.registrationId)).toEqual([id]);
    expect(headers(page)['x-ms-item-type']).toBe('DeviceRegistration');

    await dps.deleteDeviceRegistrationState(state);
    await expect(dps.getDeviceRegistrationState(id)).rejects.toBeDefined();

    const second = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
    expect(second.substatus).toBe('initialAssignment');
    expect(second.createdDateTimeUtc).not.toBe(first.createdDateTimeUtc);
  });

  it('an individual enrollment created through the SDK provisions a device with its key', async () => {
    const key = newKey();
    await dps.createOrUpdateIndividualEnrollment({
      registrationId: 'svc-device-7',
      deviceId: 'thermostat-7',
      attestation: symmetric(key, newKey()),
    } as IndividualEnrollment);
    const state = await registerDevice(stack.deviceEndpoint, stack.idScope, 'svc-device-7', key);
    expect(state.deviceId).toBe('thermostat-7');
  });

  it("GET of an individual enrollment carries its device's registrationState, as DPS's does (not the query)", async () => {
    // DPS fills the read-only IndividualEnrollment.registrationState on GET (Azure/azure-iot-sdk-csharp#3478).
    const enrollment = remember((await dps.getIndividualEnrollment('svc-device-7')).responseBody);
    expect(enrollment.registrationState).toMatchObject({
      registrationId: 'svc-device-7',
      deviceId: 'thermostat-7',
      status: 'assigned',
      substatus: 'initialAssignment',
      assignedHub: expect.any(String) as unknown,
      etag: expect.any(String) as unknown,
    });
    const state = (await dps.getDeviceRegistrationState('svc-device-7')).responseBody;
    expect(enrollment.registrationState).toEqual(state);
    // Written back as read, it is ignored; an enrollment whose device never registered has none.
    const written = (await dps.createOrUpdateIndividualEnrollment(enrollment)).responseBody;
    expect(written.registrationId).toBe('svc-device-7');
    expect((await dps.getIndividualEnrollment('svc-dev-1')).responseBody).not.toHaveProperty('registrationState');
  });

  it('no GET or query response carried a symmetric key (PUT answers do, as in DPS)', async () => {
    const keys: string[] = [];
    for (const id of ['svc-dev-1', 'svc-device-7', 'filter-off']) {
      const m = (await dps.getIndividualEnrollmentAttestationMechanism(id)).responseBody;
      keys.push(m.symmetricKey?.primaryKey ?? '', m.symmetricKey?.secondaryKey ?? '');
    }
    expect(seenBodies.length).toBeGreaterThan(5);
    for (const body of seenBodies) for (const key of keys) expect(body).not.toContain(key);
    const hubKeys = stack.hubs.map((h) => h.connectionString.split('SharedAccessKey=')[1] ?? '<none>');
    for (const line of logged) for (const secret of [...keys, ...hubKeys]) expect(line).not.toContain(secret);
  });
});
