// Every event type: its CloudEvents envelope and fields, and never a key, signature, token, connection string or
// private key, whatever the builder was handed.
import { describe, expect, it } from 'vitest';

import type { CloudEvent, EventOrigin, RegistrationContext } from '../../shared/events/catalogue';
import * as catalogue from '../../shared/events/catalogue';
import { compactLine } from '../../shared/events/sinks';

const KEY = 'c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3ODkwYWJjZGVm';
const CONN = `HostName=hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`;
const origin: EventOrigin = { source: 'https://dps.example.com', clock: () => new Date('2025-01-02T03:04:05.000Z') };
const ctx: RegistrationContext = {
  registrationId: 'Dev-1',
  operationId: 'op-1',
  attestationType: 'symmetricKey',
  enrollment: { kind: 'group', id: 'factory' },
};
const enrollment = {
  registrationId: 'dev-1',
  deviceId: 'thermo-1',
  attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
  initialTwin: { tags: { secret: KEY } },
  provisioningStatus: 'enabled' as const,
  lastUpdatedDateTimeUtc: '2025-01-01T00:00:00.000Z',
};
const group = { ...enrollment, enrollmentGroupId: 'factory' };
const hub = {
  hostName: 'hub.azure-devices.net',
  connectionString: CONN,
  allocationWeight: 2,
  applyAllocationPolicy: true,
};
const policy = { name: 'tool', rights: ['EnrollmentRead' as const], primaryKey: KEY, secondaryKey: KEY };

const all: [CloudEvent, Record<string, unknown>][] = [
  [
    catalogue.registrationAccepted(origin, ctx),
    { registrationId: 'Dev-1', operationId: 'op-1', enrollment: { kind: 'group', id: 'factory' } },
  ],
  [
    catalogue.registrationAssigned(
      origin,
      ctx,
      { assignedHub: 'hub.azure-devices.net', deviceId: 'Dev-1', substatus: 'initialAssignment' },
      12.4,
    ),
    { assignedHub: 'hub.azure-devices.net', deviceId: 'Dev-1', substatus: 'initialAssignment', durationMs: 12 },
  ],
  [
    catalogue.registrationFailed(origin, ctx, { errorCode: 400208, reason: 'No linked hub.', step: 'allocation' }),
    { errorCode: 400208, reason: 'No linked hub.', step: 'allocation' },
  ],
  [catalogue.registrationDisabled(origin, ctx), { registrationId: 'Dev-1', attestationType: 'symmetricKey' }],
  [
    catalogue.attestationFailed(origin, {
      registrationId: 'Dev-1',
      idScope: '0ne1',
      errorCode: 401002,
      reason: 'bad signature',
      request: 'register',
    }),
    { reason: 'bad signature', errorCode: 401002, idScope: '0ne1', request: 'register' },
  ],
  [
    catalogue.enrollmentChanged(origin, 'created', enrollment, '"e1"'),
    { registrationId: 'dev-1', etag: '"e1"', deviceId: 'thermo-1', attestationType: 'symmetricKey' },
  ],
  [catalogue.enrollmentChanged(origin, 'updated', enrollment, '"e2"'), { etag: '"e2"', provisioningStatus: 'enabled' }],
  [catalogue.enrollmentDeleted(origin, 'dev-1'), { registrationId: 'dev-1' }],
  [catalogue.enrollmentGroupChanged(origin, 'created', group, '"g1"'), { enrollmentGroupId: 'factory', etag: '"g1"' }],
  [catalogue.enrollmentGroupChanged(origin, 'updated', group, '"g2"'), { etag: '"g2"' }],
  [catalogue.enrollmentGroupDeleted(origin, 'factory'), { enrollmentGroupId: 'factory' }],
  [catalogue.registrationStateDeleted(origin, 'dev-1'), { registrationId: 'dev-1' }],
  [catalogue.linkedHubChanged(origin, 'created', hub), { hostName: 'hub.azure-devices.net', allocationWeight: 2 }],
  [catalogue.linkedHubChanged(origin, 'updated', hub), { applyAllocationPolicy: true }],
  [catalogue.linkedHubDeleted(origin, 'hub.azure-devices.net'), { hostName: 'hub.azure-devices.net' }],
  [catalogue.accessPolicyChanged(origin, 'created', policy), { name: 'tool', rights: ['EnrollmentRead'] }],
  [catalogue.accessPolicyChanged(origin, 'updated', policy), { name: 'tool' }],
  [catalogue.accessPolicyKeyRegenerated(origin, policy, 'secondary'), { keyType: 'secondary' }],
  [catalogue.accessPolicyDeleted(origin, 'tool'), { name: 'tool' }],
  [catalogue.settingsUpdated(origin, { defaultAllocationPolicy: 'static' }), { defaultAllocationPolicy: 'static' }],
];

describe('event catalogue', () => {
  it('covers every event type', () => {
    expect(new Set(all.map(([e]) => e.type))).toEqual(new Set(catalogue.EVENT_TYPES));
  });

  it.each(all)('$type: a CloudEvents 1.0 envelope with its fields', (event, fields) => {
    expect(event).toMatchObject({
      specversion: '1.0',
      source: 'https://dps.example.com',
      time: '2025-01-02T03:04:05.000Z',
      datacontenttype: 'application/json',
    });
    expect(event.id).toMatch(/^[0-9a-f]{12}-[0-9a-f]{16}$/);
    expect(event.subject).not.toBe('');
    expect(event.data).toMatchObject(fields);
  });

  it.each(all)('$type: carries no key, signature, token or connection string', (event) => {
    const text = JSON.stringify(event) + compactLine(event);
    expect(text).not.toContain(KEY);
    expect(text).not.toMatch(/SharedAccessKey=/i);
    // No field is named like a secret (a reason may say "bad signature" in words).
    const names: string[] = [];
    JSON.stringify(event, (name, v: unknown) => (names.push(name), v));
    expect(names.filter((n) => /key$|^sig$|signature|token|connectionString|certificate|secret/i.test(n))).toEqual([]);
  });

  it('IDs are unique and sort by time', () => {
    const ids = Array.from({ length: 1000 }, () => catalogue.newEventId(new Date(1_700_000_000_000)));
    expect(new Set(ids).size).toBe(1000);
    expect(catalogue.newEventId(new Date(1)) < catalogue.newEventId(new Date(2))).toBe(true);
  });
});
