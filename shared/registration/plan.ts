// Planning an assignment (pure): which hub, which device ID, and what happens to the device's data there.
import type { GeoLatencySettings } from '../allocation/geoLatency';
import { allocateGeoLatency } from '../allocation/geoLatency';
import { allocateHashed } from '../allocation/hashed';
import { config } from '../config';
import type { AllocationPolicy, EnrollmentCommon } from '../domain/enrollment';
import type { LinkedHub } from '../domain/linkedHub';
import type { DeviceRegistrationResult } from '../domain/registrationState';
import type { AssignmentPlan } from '../storage/devices';

export type PlanOutcome = { ok: true; plan: AssignmentPlan } | { ok: false; errorCode: number; errorMessage: string };

export interface PlanInput {
  registrationId: string;
  deviceId: string;
  enrollment: EnrollmentCommon;
  enrollmentGroupId?: string;
  linkedHubs: readonly LinkedHub[];
  /** The service's default, for enrollments without an allocationPolicy of their own. */
  defaultAllocationPolicy?: AllocationPolicy;
  /** The last committed state, if the device was assigned before. */
  previous?: DeviceRegistrationResult;
  /** The device's payload: kept in the plan for the custom-allocation webhook, not echoed to the device. */
  devicePayload?: unknown;
  /** geoLatency's view of the world; default: this process's settings (DPS_REGION, DPS_REGION_LATENCIES). */
  geo?: GeoLatencySettings;
}

/** Candidate hubs: the enrollment's `iotHubs` (or legacy `iotHubHostName`), else every hub that takes allocation. */
export function candidateHubs(enrollment: EnrollmentCommon, linkedHubs: readonly LinkedHub[]): LinkedHub[] {
  const named = enrollment.iotHubs?.length
    ? enrollment.iotHubs
    : enrollment.iotHubHostName
      ? [enrollment.iotHubHostName]
      : [];
  if (named.length === 0) return linkedHubs.filter((h) => h.applyAllocationPolicy);
  const wanted = new Set(named.map((n) => n.toLowerCase()));
  return linkedHubs.filter((h) => wanted.has(h.hostName.toLowerCase()));
}

export function planAssignment(input: PlanInput): PlanOutcome {
  const candidates = candidateHubs(input.enrollment, input.linkedHubs);
  const policy = input.enrollment.allocationPolicy ?? input.defaultAllocationPolicy ?? 'hashed';
  let hub: LinkedHub | undefined;
  if (policy === 'hashed') hub = allocateHashed(input.registrationId, candidates);
  else if (policy === 'static') {
    // DPS accepts static enrollments without iotHubs: the one candidate is the hub, more (or none) is ambiguous.
    if (candidates.length !== 1)
      return { ok: false, errorCode: 400208, errorMessage: staticProblem(candidates.length) };
    hub = candidates[0];
  } else if (policy === 'geoLatency') {
    const geo = input.geo ?? { region: config().region, latencies: config().regionLatencies };
    hub = allocateGeoLatency(input.registrationId, candidates, geo);
  } else
    return { ok: false, errorCode: 400208, errorMessage: `The allocation policy '${policy}' is not supported yet.` };
  if (!hub) {
    return { ok: false, errorCode: 400208, errorMessage: 'No linked IoT hub could be assigned to this device.' };
  }

  const base = {
    deviceId: input.deviceId,
    ...(input.enrollmentGroupId !== undefined ? { enrollmentGroupId: input.enrollmentGroupId } : {}),
    ...(input.devicePayload !== undefined ? { devicePayload: input.devicePayload } : {}),
  };
  const previous = input.previous?.status === 'assigned' ? input.previous : undefined;
  if (!previous?.assignedHub) {
    return {
      ok: true,
      plan: { ...base, assignedHub: hub.hostName, substatus: 'initialAssignment', applyInitialTwin: true },
    };
  }
  // Reprovisioning (reference/dps-protocol.md §5): updateHubAssignment=false keeps the device where it is;
  // migrateDeviceData keeps its twin (moving it when the hub changes); otherwise it is reset to the initial twin.
  const reprovision = input.enrollment.reprovisionPolicy ?? { updateHubAssignment: true, migrateDeviceData: true };
  const current = input.linkedHubs.find((h) => h.hostName.toLowerCase() === previous.assignedHub?.toLowerCase());
  if (!reprovision.updateHubAssignment && current) {
    return {
      ok: true,
      plan: {
        ...base,
        assignedHub: current.hostName,
        substatus: 'reprovisionedToInitialAssignment',
        applyInitialTwin: false,
      },
    };
  }
  // A new hub or a new device ID both move the device: its old identity is migrated or reset, then removed.
  const moved =
    hub.hostName.toLowerCase() !== previous.assignedHub.toLowerCase() || previous.deviceId !== input.deviceId;
  const from = moved
    ? { previousHub: previous.assignedHub, previousDeviceId: previous.deviceId ?? input.deviceId }
    : {};
  if (reprovision.migrateDeviceData) {
    return {
      ok: true,
      plan: {
        ...base,
        assignedHub: hub.hostName,
        substatus: moved ? 'deviceDataMigrated' : 'reprovisionedToInitialAssignment',
        applyInitialTwin: false,
        ...from,
      },
    };
  }
  return {
    ok: true,
    plan: {
      ...base,
      assignedHub: hub.hostName,
      substatus: 'deviceDataReset',
      applyInitialTwin: true,
      ...from,
    },
  };
}

function staticProblem(candidates: number): string {
  const fix = "set the enrollment's iotHubs to the one linked IoT hub it should use.";
  return candidates === 0
    ? `The allocation policy is 'static' but no linked IoT hub can take the device: ${fix}`
    : `The allocation policy is 'static' but ${candidates} linked IoT hubs could take the device: ${fix}`;
}
