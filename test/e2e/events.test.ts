// Every event type through the dev stack, driven by the official device and service SDKs (and signed service-API
// calls for what the service SDK cannot send), read back from the local sink's JSON-lines file: its fields, and never
// a key, signature or token of what the test sent.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { EnrollmentGroup, IndividualEnrollment } from 'azure-iot-provisioning-service/dist/interfaces';
import { ProvisioningServiceClient } from 'azure-iot-provisioning-service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import type { CloudEvent } from '../../shared/events/catalogue';
import { EVENT_TYPES } from '../../shared/events/catalogue';
import { deriveKey, registerDevice } from '../support/device';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

const key = () => randomBytes(32).toString('base64');

describe('events: every type, from the official SDKs to the local sink', () => {
  let stack: Stack;
  let dps: ProvisioningServiceClient;
  const dir = mkdtempSync(join(tmpdir(), 'dps-events-'));
  const file = join(dir, 'events.jsonl');
  const call = serviceCaller(() => stack);
  const secrets: string[] = [];
  const groupKey = key();
  const individualKey = key();

  beforeAll(async () => {
    stack = await startTestStack({ hubs: { count: 2 }, settings: { DPS_EVENTS_FILE: file } });
    dps = ProvisioningServiceClient.fromConnectionString(stack.serviceConnectionString);
    secrets.push(groupKey, individualKey, stack.settings.DPS_SERVICE_OWNER_KEY ?? '');
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const events = async (): Promise<CloudEvent[]> => {
    await stack.services.events.outbox.drain();
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as CloudEvent);
  };
  const only = async (type: string, subject: string): Promise<CloudEvent> => {
    const found = (await events()).filter((e) => e.type === `opendps.${type}` && e.subject === subject);
    expect(found, `${type} ${subject}`).toHaveLength(1);
    return found[0] as CloudEvent;
  };

  it('a group device: group created, accepted and assigned (hub, device ID, substatus, group, mechanism, duration)', async () => {
    await dps.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'ev-group',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: key() } },
    } as unknown as EnrollmentGroup);
    expect((await only('enrollmentGroup.created', 'ev-group')).data).toMatchObject({
      enrollmentGroupId: 'ev-group',
      attestationType: 'symmetricKey',
      etag: expect.stringMatching(/^".+"$/) as unknown,
    });
    const device = await registerDevice(
      stack.deviceEndpoint,
      stack.idScope,
      'ev-dev-1',
      deriveKey(groupKey, 'ev-dev-1'),
    );
    expect(device.status).toBe('assigned');

    const accepted = await only('registration.accepted', 'ev-dev-1');
    const assigned = await only('registration.assigned', 'ev-dev-1');
    const enrollment = { kind: 'group', id: 'ev-group' };
    expect(accepted.data).toEqual({
      registrationId: 'ev-dev-1',
      operationId: expect.any(String) as unknown,
      attestationType: 'symmetricKey',
      enrollment,
    });
    expect(assigned.data).toMatchObject({
      operationId: accepted.data.operationId,
      attestationType: 'symmetricKey',
      enrollment,
      assignedHub: device.assignedHub,
      deviceId: 'ev-dev-1',
      substatus: 'initialAssignment',
      durationMs: expect.any(Number) as unknown,
    });
    expect(accepted).toMatchObject({ specversion: '1.0', source: expect.stringMatching(/^https:\/\//) as unknown });
    expect(accepted.id < assigned.id).toBe(true);

    // The service API's read of a device's recent events: newest first.
    const read = await call('GET', '/registrations/ev-dev-1/events');
    expect(read.status).toBe(200);
    expect((read.json as CloudEvent[]).map((e) => e.id)).toEqual([assigned.id, accepted.id]);
  });

  it('a refused device: attestationFailed with the reason in words, never the token', async () => {
    await expect(registerDevice(stack.deviceEndpoint, stack.idScope, 'ev-dev-1', key())).rejects.toBeDefined();
    const refused = (await events()).filter(
      (e) => e.type === 'opendps.registration.attestationFailed' && e.subject === 'ev-dev-1',
    );
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]?.data).toEqual({
      registrationId: 'ev-dev-1',
      idScope: stack.idScope,
      attestationType: 'symmetricKey',
      errorCode: 401002,
      reason: expect.stringMatching(/unknown device or bad signature/) as unknown,
      request: 'register',
    });
    expect(JSON.stringify(refused)).not.toMatch(/SharedAccessSignature|sig=/);
  });

  it('an individual enrollment: created, disabled, updated, failed (with its step), deleted', async () => {
    const created = await dps.createOrUpdateIndividualEnrollment({
      registrationId: 'ev-ind',
      deviceId: 'ev-ind-device',
      provisioningStatus: 'disabled',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: individualKey, secondaryKey: key() } },
    } as unknown as IndividualEnrollment);
    expect((await only('enrollment.created', 'ev-ind')).data).toMatchObject({
      registrationId: 'ev-ind',
      deviceId: 'ev-ind-device',
      provisioningStatus: 'disabled',
      etag: created.responseBody.etag,
    });
    await registerDevice(stack.deviceEndpoint, stack.idScope, 'ev-ind', individualKey).catch(() => undefined);
    expect((await only('registration.disabled', 'ev-ind')).data).toMatchObject({
      registrationId: 'ev-ind',
      enrollment: { kind: 'individual', id: 'ev-ind' },
      attestationType: 'symmetricKey',
    });

    // Static with two linked hubs and none named: allocation fails, and the device is told `failed`.
    const current = (await dps.getIndividualEnrollment('ev-ind')).responseBody;
    const updated = await dps.createOrUpdateIndividualEnrollment({
      ...current,
      provisioningStatus: 'enabled',
      allocationPolicy: 'static',
    } as unknown as IndividualEnrollment);
    expect((await only('enrollment.updated', 'ev-ind')).data).toMatchObject({
      provisioningStatus: 'enabled',
      allocationPolicy: 'static',
      etag: updated.responseBody.etag,
    });
    await registerDevice(stack.deviceEndpoint, stack.idScope, 'ev-ind', individualKey).catch(() => undefined);
    const failed = (await events()).filter((e) => e.type === 'opendps.registration.failed' && e.subject === 'ev-ind');
    expect(failed).toHaveLength(1);
    expect(failed[0]?.data).toMatchObject({
      registrationId: 'ev-ind',
      errorCode: expect.any(Number) as unknown,
      reason: expect.stringMatching(/static/) as unknown,
      step: 'allocation',
    });
    // Two PUTs passed attestation: two `accepted`.
    expect(
      (await events()).filter((e) => e.type === 'opendps.registration.accepted' && e.subject === 'ev-ind'),
    ).toHaveLength(2);

    await dps.deleteIndividualEnrollment('ev-ind');
    expect((await only('enrollment.deleted', 'ev-ind')).data).toEqual({ registrationId: 'ev-ind' });
  });

  it('group updated and deleted, registration state deleted', async () => {
    const group = (await dps.getEnrollmentGroup('ev-group')).responseBody;
    await dps.createOrUpdateEnrollmentGroup({ ...group, provisioningStatus: 'disabled' });
    expect((await only('enrollmentGroup.updated', 'ev-group')).data).toMatchObject({ provisioningStatus: 'disabled' });
    await dps.deleteDeviceRegistrationState('ev-dev-1');
    expect((await only('registrationState.deleted', 'ev-dev-1')).data).toEqual({ registrationId: 'ev-dev-1' });
    await dps.deleteEnrollmentGroup('ev-group');
    expect((await only('enrollmentGroup.deleted', 'ev-group')).data).toEqual({ enrollmentGroupId: 'ev-group' });
  });

  it('linked hubs, access policies and settings: names, rights and values, never keys or connection strings', async () => {
    const hub = stack.hubs[1];
    const host = hub?.hostName ?? '';
    expect((await call('DELETE', `/linkedHubs/${host}`)).status).toBe(204);
    expect((await only('linkedHub.deleted', host)).data).toEqual({ hostName: host });
    await call('PUT', `/linkedHubs/${host}`, { connectionString: hub?.connectionString, allocationWeight: 3 });
    expect((await only('linkedHub.created', host)).data).toMatchObject({ hostName: host, allocationWeight: 3 });
    await call('PUT', `/linkedHubs/${host}`, { connectionString: hub?.connectionString, allocationWeight: 4 });
    expect((await only('linkedHub.updated', host)).data).toMatchObject({ hostName: host, allocationWeight: 4 });
    secrets.push(/SharedAccessKey=([^;]+)/.exec(hub?.connectionString ?? '')?.[1] ?? 'none');

    const policyKey = key();
    secrets.push(policyKey);
    await call('PUT', '/accessPolicies/ev-reader', { rights: 'EnrollmentRead', primaryKey: policyKey });
    expect((await only('accessPolicy.created', 'ev-reader')).data).toEqual({
      name: 'ev-reader',
      rights: ['EnrollmentRead'],
    });
    await call('PUT', '/accessPolicies/ev-reader', {
      rights: 'EnrollmentRead, EnrollmentWrite',
      primaryKey: policyKey,
    });
    expect((await only('accessPolicy.updated', 'ev-reader')).data).toMatchObject({
      rights: expect.arrayContaining(['EnrollmentRead', 'EnrollmentWrite']) as unknown,
    });
    const rotated = await call('POST', '/accessPolicies/ev-reader/regenerateKey', { keyType: 'secondary' });
    expect(rotated.status).toBe(200);
    secrets.push(String((rotated.json as { secondaryKey?: string }).secondaryKey ?? 'none'));
    expect((await only('accessPolicy.keyRegenerated', 'ev-reader')).data).toMatchObject({ keyType: 'secondary' });
    await call('DELETE', '/accessPolicies/ev-reader');
    expect((await only('accessPolicy.deleted', 'ev-reader')).data).toEqual({ name: 'ev-reader' });

    await call('PUT', '/serviceConfiguration', { defaultAllocationPolicy: 'geoLatency' });
    expect((await only('settings.updated', 'settings')).data).toEqual({ defaultAllocationPolicy: 'geoLatency' });
  });

  it('every type was seen, each with a unique id, and no key, token or connection string anywhere', async () => {
    const all = await events();
    expect(new Set(all.map((e) => e.type))).toEqual(new Set(EVENT_TYPES));
    expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
    const text = readFileSync(file, 'utf8');
    for (const secret of secrets) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/SharedAccessKey=|SharedAccessSignature/);
  });
});
