import { describe, expect, it } from 'vitest';

import { allocateHashed } from '../../shared/allocation/hashed';
import type { EnrollmentCommon } from '../../shared/domain/enrollment';
import type { LinkedHub } from '../../shared/domain/linkedHub';
import type { DeviceRegistrationResult } from '../../shared/domain/registrationState';
import type { PlanInput, PlanOutcome } from '../../shared/registration/plan';
import { candidateHubs, planAssignment } from '../../shared/registration/plan';
import type { AssignmentPlan } from '../../shared/storage/devices';

const linked = (hostName: string, applyAllocationPolicy = true, allocationWeight = 1): LinkedHub => ({
  hostName,
  connectionString: `HostName=${hostName};SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA`,
  allocationWeight,
  applyAllocationPolicy,
});

const HUB_A = linked('hub-a.azure-devices.net');
const HUB_B = linked('hub-b.azure-devices.net');
const HUB_OFF = linked('hub-off.azure-devices.net', false);
const ALL = [HUB_A, HUB_B, HUB_OFF];

const enrollment = (extra: Partial<EnrollmentCommon> = {}): EnrollmentCommon => ({
  attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'AAAA' } },
  ...extra,
});

const input = (extra: Partial<PlanInput> = {}): PlanInput => ({
  registrationId: 'sym-device-1',
  deviceId: 'sym-device-1',
  enrollment: enrollment(),
  linkedHubs: ALL,
  ...extra,
});

const assigned = (assignedHub: string, deviceId = 'sym-device-1'): DeviceRegistrationResult => ({
  registrationId: 'sym-device-1',
  status: 'assigned',
  assignedHub,
  deviceId,
  substatus: 'initialAssignment',
});

function planOf(outcome: PlanOutcome): AssignmentPlan {
  if (!outcome.ok) throw new Error(`expected a plan, got ${outcome.errorCode}: ${outcome.errorMessage}`);
  return outcome.plan;
}

/** A registration ID that hashed allocation puts on `hostName` among `hubs` (so tests do not hard-code the hash). */
function idLandingOn(hostName: string, hubs: readonly LinkedHub[]): string {
  for (let i = 0; i < 1000; i++) {
    const id = `probe-${i}`;
    if (allocateHashed(id, hubs)?.hostName === hostName) return id;
  }
  throw new Error(`no id lands on ${hostName}`);
}

describe('candidateHubs', () => {
  it('without iotHubs: every linked hub that takes allocation, excluding applyAllocationPolicy=false', () => {
    expect(candidateHubs(enrollment(), ALL).map((h) => h.hostName)).toEqual([HUB_A.hostName, HUB_B.hostName]);
  });

  it('iotHubs restricts the candidates to the named hubs (case-insensitively)', () => {
    expect(candidateHubs(enrollment({ iotHubs: ['HUB-B.azure-devices.net'] }), ALL)).toEqual([HUB_B]);
  });

  it('a hub with applyAllocationPolicy=false is a candidate when the enrollment names it', () => {
    expect(candidateHubs(enrollment({ iotHubs: [HUB_OFF.hostName] }), ALL)).toEqual([HUB_OFF]);
  });

  it('uses the legacy iotHubHostName when iotHubs is empty', () => {
    expect(candidateHubs(enrollment({ iotHubs: [], iotHubHostName: HUB_B.hostName }), ALL)).toEqual([HUB_B]);
  });

  it('ignores named hubs that are not linked', () => {
    expect(candidateHubs(enrollment({ iotHubs: ['unknown.azure-devices.net'] }), ALL)).toEqual([]);
  });
});

describe('planAssignment: initial assignment', () => {
  it('assigns a first-time device with initialAssignment and the initial twin', () => {
    const plan = planOf(planAssignment(input()));
    expect([HUB_A.hostName, HUB_B.hostName]).toContain(plan.assignedHub);
    expect(plan).toMatchObject({ deviceId: 'sym-device-1', substatus: 'initialAssignment', applyInitialTwin: true });
    expect(plan.previousHub).toBeUndefined();
  });

  it('uses hashed allocation over the candidates by default', () => {
    for (const id of ['a-1', 'b-2', 'c-3', 'd-4', 'e-5', 'f-6']) {
      const plan = planOf(planAssignment(input({ registrationId: id, deviceId: id })));
      expect(plan.assignedHub).toBe(allocateHashed(id, [HUB_A, HUB_B])?.hostName);
    }
  });

  it('never assigns a hub with applyAllocationPolicy=false unless it is named', () => {
    for (let i = 0; i < 200; i++) {
      expect(planOf(planAssignment(input({ registrationId: `dev-${i}` }))).assignedHub).not.toBe(HUB_OFF.hostName);
    }
    const named = planOf(planAssignment(input({ enrollment: enrollment({ iotHubs: [HUB_OFF.hostName] }) })));
    expect(named.assignedHub).toBe(HUB_OFF.hostName);
  });

  it('iotHubs subset: every device lands on a named hub', () => {
    const e = enrollment({ iotHubs: [HUB_B.hostName] });
    for (let i = 0; i < 100; i++) {
      expect(planOf(planAssignment(input({ registrationId: `dev-${i}`, enrollment: e }))).assignedHub).toBe(
        HUB_B.hostName,
      );
    }
  });

  it('carries enrollmentGroupId into the plan', () => {
    expect(planOf(planAssignment(input({ enrollmentGroupId: 'g1' })))).toMatchObject({ enrollmentGroupId: 'g1' });
  });

  it('uses the given device ID', () => {
    expect(planOf(planAssignment(input({ deviceId: 'custom-device-id' }))).deviceId).toBe('custom-device-id');
  });

  it('static assigns the one named hub', () => {
    const plan = planOf(
      planAssignment(input({ enrollment: enrollment({ allocationPolicy: 'static', iotHubs: [HUB_OFF.hostName] }) })),
    );
    expect(plan.assignedHub).toBe(HUB_OFF.hostName);
  });

  it('static with more than one candidate fails with 400208', () => {
    const outcome = planAssignment(
      input({ enrollment: enrollment({ allocationPolicy: 'static', iotHubs: [HUB_A.hostName, HUB_B.hostName] }) }),
    );
    expect(outcome).toMatchObject({ ok: false, errorCode: 400208 });
  });

  it('static without named hubs uses the one hub that takes allocation, and says what to set when there are more', () => {
    const staticEnrollment = enrollment({ allocationPolicy: 'static' });
    expect(
      planOf(planAssignment(input({ enrollment: staticEnrollment, linkedHubs: [HUB_B, HUB_OFF] }))).assignedHub,
    ).toBe(HUB_B.hostName);
    const two = planAssignment(input({ enrollment: staticEnrollment }));
    expect(two).toMatchObject({ ok: false, errorCode: 400208 });
    expect(two.ok ? '' : two.errorMessage).toMatch(/'static'.*2 linked IoT hubs.*iotHubs/);
    const none = planAssignment(input({ enrollment: staticEnrollment, linkedHubs: [HUB_OFF] }));
    expect(none.ok ? '' : none.errorMessage).toMatch(/no linked IoT hub.*iotHubs/);
  });

  it('no hub to assign fails with 400208', () => {
    expect(planAssignment(input({ linkedHubs: [] }))).toMatchObject({ ok: false, errorCode: 400208 });
    expect(planAssignment(input({ linkedHubs: [HUB_OFF] }))).toMatchObject({ ok: false, errorCode: 400208 });
    expect(planAssignment(input({ enrollment: enrollment({ iotHubs: ['gone.azure-devices.net'] }) }))).toMatchObject({
      ok: false,
      errorCode: 400208,
    });
  });

  it("custom: the webhook's hub, twin and payload go into the plan (a takeover applies them without a new call)", () => {
    const e = enrollment({ allocationPolicy: 'custom' });
    const twin = { tags: { t: 1 } };
    const plan = planOf(
      planAssignment(
        input({
          enrollment: e,
          custom: { iotHubHostName: HUB_B.hostName.toUpperCase(), initialTwin: twin, payload: 7 },
        }),
      ),
    );
    expect(plan).toMatchObject({ assignedHub: HUB_B.hostName, webhookInitialTwin: twin, webhookPayload: 7 });
    expect(plan).not.toHaveProperty('alternateHub'); // custom never falls over to another hub
  });

  it('custom without a decision fails with 400208', () => {
    const outcome = planAssignment(input({ enrollment: enrollment({ allocationPolicy: 'custom' }) }));
    expect(outcome).toMatchObject({ ok: false, errorCode: 400208 });
  });

  it('hashed skips hubs cooling down and gives a first registration an alternate; re-registrations get none', () => {
    const sick = new Set([HUB_A.hostName]);
    const health = {
      healthy: <T extends { hostName: string }>(c: readonly T[]) => c.filter((h) => !sick.has(h.hostName)),
    };
    const linkedHubs = [HUB_A, HUB_B, linked('hub-c.azure-devices.net')];
    for (let i = 0; i < 50; i++) {
      const plan = planOf(planAssignment(input({ registrationId: `dev-${i}`, health, linkedHubs })));
      expect(plan.assignedHub).not.toBe(HUB_A.hostName);
      expect(plan.alternateHub).toBeDefined();
      expect(plan.alternateHub).not.toBe(plan.assignedHub);
      expect(plan.alternateHub).not.toBe(HUB_A.hostName);
    }
    const previous = {
      registrationId: 'dev-1',
      status: 'assigned' as const,
      assignedHub: HUB_B.hostName,
      deviceId: 'dev-1',
    };
    expect(planOf(planAssignment(input({ registrationId: 'dev-1', health, previous, linkedHubs })))).not.toHaveProperty(
      'alternateHub',
    );
  });

  it('static never gets an alternate hub', () => {
    const e = enrollment({ allocationPolicy: 'static', iotHubs: [HUB_A.hostName] });
    expect(planOf(planAssignment(input({ enrollment: e })))).not.toHaveProperty('alternateHub');
  });

  it('a previous failed registration is treated as a first assignment', () => {
    const previous: DeviceRegistrationResult = { registrationId: 'sym-device-1', status: 'failed', errorCode: 400208 };
    expect(planOf(planAssignment(input({ previous }))).substatus).toBe('initialAssignment');
  });
});

/**
 * The plan for a device last assigned to `from` (as `previousDeviceId`) that registers again under an enrollment naming
 * only `to`, with the given reprovision policy (absent = the enrollment has none).
 */
function replan(
  from: string,
  to: string,
  policy?: { updateHubAssignment: boolean; migrateDeviceData: boolean },
  previousDeviceId?: string,
): AssignmentPlan {
  const e = enrollment({ iotHubs: [to], ...(policy ? { reprovisionPolicy: policy } : {}) });
  return planOf(planAssignment(input({ enrollment: e, previous: assigned(from, previousDeviceId) })));
}

const KEEP = { updateHubAssignment: false, migrateDeviceData: true };
const MIGRATE = { updateHubAssignment: true, migrateDeviceData: true };
const RESET = { updateHubAssignment: true, migrateDeviceData: false };

describe('planAssignment: reprovisioning', () => {
  it('updateHubAssignment=false keeps the device on its current hub without touching its data', () => {
    // The enrollment now only names hub B, but the device stays on hub A.
    const plan = replan(HUB_A.hostName, HUB_B.hostName, KEEP);
    expect(plan).toMatchObject({
      assignedHub: HUB_A.hostName,
      substatus: 'reprovisionedToInitialAssignment',
      applyInitialTwin: false,
    });
    expect(plan.previousHub).toBeUndefined();
  });

  it('migrate on the same hub: reprovisionedToInitialAssignment, no initial twin, no previousHub', () => {
    const plan = replan('HUB-A.azure-devices.net', HUB_A.hostName, MIGRATE);
    expect(plan).toMatchObject({
      assignedHub: HUB_A.hostName,
      substatus: 'reprovisionedToInitialAssignment',
      applyInitialTwin: false,
    });
    expect(plan.previousHub).toBeUndefined();
  });

  it('migrate to a new hub: deviceDataMigrated with previousHub and previousDeviceId', () => {
    const plan = replan(HUB_A.hostName, HUB_B.hostName, MIGRATE, 'old-device-id');
    expect(plan).toMatchObject({
      assignedHub: HUB_B.hostName,
      substatus: 'deviceDataMigrated',
      applyInitialTwin: false,
      previousHub: HUB_A.hostName,
      previousDeviceId: 'old-device-id',
    });
  });

  it('no reprovisionPolicy defaults to update + migrate', () => {
    const plan = replan(HUB_A.hostName, HUB_B.hostName);
    expect(plan).toMatchObject({ substatus: 'deviceDataMigrated', previousHub: HUB_A.hostName });
  });

  it('reset to a new hub: deviceDataReset with the initial twin and previousHub', () => {
    const plan = replan(HUB_A.hostName, HUB_B.hostName, RESET);
    expect(plan).toMatchObject({
      assignedHub: HUB_B.hostName,
      substatus: 'deviceDataReset',
      applyInitialTwin: true,
      previousHub: HUB_A.hostName,
    });
  });

  it('reset on the same hub: deviceDataReset with the initial twin', () => {
    const plan = replan(HUB_A.hostName, HUB_A.hostName, RESET);
    expect(plan).toMatchObject({ assignedHub: HUB_A.hostName, substatus: 'deviceDataReset', applyInitialTwin: true });
  });

  it('hashed reallocation can move a device when its hub is still linked (update=true)', () => {
    const id = idLandingOn(HUB_B.hostName, [HUB_A, HUB_B]);
    const plan = planOf(
      planAssignment(input({ registrationId: id, deviceId: id, previous: assigned(HUB_A.hostName, id) })),
    );
    expect(plan).toMatchObject({
      assignedHub: HUB_B.hostName,
      substatus: 'deviceDataMigrated',
      previousHub: HUB_A.hostName,
    });
  });

  it('updateHubAssignment=false reallocates when the current hub is no longer linked', () => {
    const plan = replan('unlinked.azure-devices.net', HUB_B.hostName, KEEP);
    expect(plan.assignedHub).toBe(HUB_B.hostName);
  });
});

describe('planAssignment with geoLatency', () => {
  const located = (hostName: string, location: string): LinkedHub => ({ ...linked(hostName), location });
  const hubs = [located('eu.azure-devices.net', 'westeurope'), located('asia.azure-devices.net', 'southeastasia')];
  const geo = (region: string) => ({ region, latencies: new Map<string, number>() });

  it("assigns the candidate closest to the instance's region", () => {
    const policy = { enrollment: enrollment({ allocationPolicy: 'geoLatency' }), linkedHubs: hubs };
    expect(planOf(planAssignment(input({ ...policy, geo: geo('japaneast') }))).assignedHub).toBe(
      'asia.azure-devices.net',
    );
    expect(planOf(planAssignment(input({ ...policy, geo: geo('uksouth') }))).assignedHub).toBe('eu.azure-devices.net');
  });

  it('serves as the default policy, and among the enrollment’s iotHubs only', () => {
    expect(
      planOf(planAssignment(input({ defaultAllocationPolicy: 'geoLatency', linkedHubs: hubs, geo: geo('eastasia') })))
        .assignedHub,
    ).toBe('asia.azure-devices.net');
    const narrowed = enrollment({ allocationPolicy: 'geoLatency', iotHubs: ['eu.azure-devices.net'] });
    expect(
      planOf(planAssignment(input({ enrollment: narrowed, linkedHubs: hubs, geo: geo('eastasia') }))).assignedHub,
    ).toBe('eu.azure-devices.net');
  });
});
