// The allocation step: which hubs the custom-allocation webhook is offered, what it is told, and its fallback.
import { describe, expect, it } from 'vitest';

import type { WebhookOutcome, WebhookRequestInput } from '../../shared/allocation/custom';
import type { Attestation } from '../../shared/attestation/attestation';
import type { EnrollmentGroup } from '../../shared/domain/enrollment';
import type { LinkedHub } from '../../shared/domain/linkedHub';
import type { AllocationPorts } from '../../shared/registration/allocate';
import { allocate } from '../../shared/registration/allocate';

const linked = (hostName: string): LinkedHub => ({
  hostName,
  connectionString: `HostName=${hostName};SharedAccessKeyName=o;SharedAccessKey=AAAA`,
  allocationWeight: 1,
  applyAllocationPolicy: true,
});
const HUBS = [linked('a.azure-devices.net'), linked('b.azure-devices.net'), linked('c.azure-devices.net')];
const group = (extra: Partial<EnrollmentGroup> = {}): EnrollmentGroup => ({
  enrollmentGroupId: 'g',
  allocationPolicy: 'custom',
  customAllocationDefinition: { webhookUrl: 'https://hook.example/a?code=k', apiVersion: '2021-10-01' },
  attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'AAAA' } },
  ...extra,
});
const attestationOf = (enrollment: EnrollmentGroup): Attestation => ({
  kind: 'group',
  enrollment,
  enrollmentGroupId: enrollment.enrollmentGroupId,
  hubAuthentication: { type: 'sas', primaryKey: 'p', secondaryKey: 's' },
  registrationFields: { symmetricKey: { enrollmentGroupId: enrollment.enrollmentGroupId } },
});

function ports(answer: (input: WebhookRequestInput) => WebhookOutcome) {
  const calls: WebhookRequestInput[] = [];
  const logs: string[] = [];
  const p: AllocationPorts = {
    geo: { latencies: new Map() },
    webhookTimeoutMs: 100,
    callWebhook: (input) => {
      calls.push(input);
      return Promise.resolve(answer(input));
    },
    log: (m) => logs.push(m),
  };
  return { ports: p, calls, logs };
}
const last = (input: WebhookRequestInput): WebhookOutcome => ({
  ok: true,
  iotHubHostName: input.candidates.at(-1) ?? '',
  durationMs: 1,
});
const previous = {
  registrationId: 'dev-1',
  status: 'assigned' as const,
  assignedHub: 'b.azure-devices.net',
  deviceId: 'dev-1',
};

describe('allocate (custom)', () => {
  it('offers every candidate and tells the webhook where a re-registering device is', async () => {
    const enrollment = group();
    const { ports: p, calls } = ports(last);
    const input = { registrationId: 'dev-1', deviceId: 'dev-1', enrollment, linkedHubs: HUBS, previous };
    const outcome = await allocate(
      { ...input, devicePayload: { modelId: 'dtmi:x;1' } },
      attestationOf(enrollment),
      {},
      p,
    );
    expect(outcome).toMatchObject({
      ok: true,
      plan: { assignedHub: 'c.azure-devices.net', substatus: 'deviceDataMigrated' },
    });
    expect(calls[0]).toMatchObject({
      candidates: HUBS.map((h) => h.hostName),
      current: { iotHubHostName: 'b.azure-devices.net', deviceId: 'dev-1' },
      payload: { modelId: 'dtmi:x;1' },
      attestation: { type: 'symmetricKey' },
    });
  });

  it('offers only the current hub when the enrollment never reprovisions (updateHubAssignment false)', async () => {
    const enrollment = group({ reprovisionPolicy: { updateHubAssignment: false, migrateDeviceData: true } });
    const { ports: p, calls } = ports(last);
    const input = { registrationId: 'dev-1', deviceId: 'dev-1', enrollment, linkedHubs: HUBS, previous };
    const outcome = await allocate(input, attestationOf(enrollment), {}, p);
    expect(calls[0]?.candidates).toEqual(['b.azure-devices.net']);
    expect(outcome).toMatchObject({ ok: true, plan: { assignedHub: 'b.azure-devices.net' } });
  });

  it('never calls the webhook for other policies', async () => {
    const enrollment = group({ allocationPolicy: 'hashed' });
    const { ports: p, calls } = ports(last);
    const outcome = await allocate(
      { registrationId: 'd', deviceId: 'd', enrollment, linkedHubs: HUBS },
      attestationOf(enrollment),
      {},
      p,
    );
    expect(outcome.ok).toBe(true);
    expect(calls).toHaveLength(0);
  });

  it('falls back to the named policy when the webhook fails, and logs why without the key', async () => {
    const definition = {
      webhookUrl: 'https://hook.example/a?code=k',
      apiVersion: '1',
      fallbackAllocationPolicy: 'static' as const,
    };
    const enrollment = group({ customAllocationDefinition: definition, iotHubs: ['a.azure-devices.net'] });
    const { ports: p, logs } = ports(() => ({
      ok: false,
      reason: 'status',
      errorMessage: 'webhook https://hook.example/a?**** answered HTTP 502',
      durationMs: 1,
    }));
    const outcome = await allocate(
      { registrationId: 'd', deviceId: 'd', enrollment, linkedHubs: HUBS },
      attestationOf(enrollment),
      {},
      p,
    );
    expect(outcome).toMatchObject({ ok: true, plan: { assignedHub: 'a.azure-devices.net' } });
    expect(logs.join('\n')).toContain('Falling back to static');
    expect(logs.join('\n')).not.toContain('code=k');
  });
});
