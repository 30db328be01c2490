// Planning an assignment (pure): which hub, which device ID, and what happens to the device's data there.
import type { GeoLatencySettings } from '../allocation/geoLatency';
import { allocateGeoLatency } from '../allocation/geoLatency';
import { allocateHashed } from '../allocation/hashed';
import type { AllocationPolicy, EnrollmentCommon, InitialTwin } from '../domain/enrollment';
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
  /** geoLatency's view of the world (DPS_REGION, DPS_REGION_LATENCIES); without it geoLatency is hashed. */
  geo?: GeoLatencySettings;
  /** Hub health: hashed and geoLatency skip hubs cooling down (never all of them: hub/health.ts). */
  health?: HealthFilter;
  /** The custom-allocation webhook's decision (registration/allocate.ts); required for policy `custom`. */
  custom?: CustomDecision;
}

export interface HealthFilter {
  healthy<T extends { hostName: string }>(candidates: readonly T[]): T[];
}

/** What a custom-allocation webhook answered, validated (allocation/custom.ts). */
export interface CustomDecision {
  iotHubHostName: string;
  initialTwin?: InitialTwin;
  payload?: unknown;
}

/** The policy an enrollment is allocated by. */
export const effectivePolicy = (enrollment: EnrollmentCommon, defaultPolicy?: AllocationPolicy): AllocationPolicy =>
  enrollment.allocationPolicy ?? defaultPolicy ?? 'hashed';

/**
 * The hubs a re-registration may be given (reference/dps-protocol.md §4, `linkedHubs`): only the current one when
 * the enrollment keeps devices where they are (updateHubAssignment=false), else every candidate.
 */
export function allocationCandidates(
  enrollment: EnrollmentCommon,
  linkedHubs: readonly LinkedHub[],
  previous: DeviceRegistrationResult | undefined,
): LinkedHub[] {
  const current = previous?.status === 'assigned' ? previous.assignedHub?.toLowerCase() : undefined;
  const stays = current !== undefined && enrollment.reprovisionPolicy?.updateHubAssignment === false;
  const hub = stays ? linkedHubs.find((h) => h.hostName.toLowerCase() === current) : undefined;
  return hub ? [hub] : candidateHubs(enrollment, linkedHubs);
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
  const policy = effectivePolicy(input.enrollment, input.defaultAllocationPolicy);
  const previous = input.previous?.status === 'assigned' ? input.previous : undefined;
  // Hashed and geoLatency choose among healthy hubs; a first registration also gets a second choice to fall back to
  // if the hub step fails there. Re-registrations never do: moving an assigned device is the enrollment's decision.
  const pick = (choose: (hubs: readonly LinkedHub[]) => LinkedHub | undefined) => {
    const healthy = input.health ? input.health.healthy(candidates) : candidates;
    const first = choose(healthy);
    const rest = healthy.filter((h) => h !== first);
    const second = first && !previous?.assignedHub ? choose(rest) : undefined;
    return { hub: first, alternate: second };
  };
  let chosen: { hub: LinkedHub | undefined; alternate?: LinkedHub | undefined };
  if (policy === 'hashed') chosen = pick((hubs) => allocateHashed(input.registrationId, hubs));
  else if (policy === 'geoLatency') {
    const geo = input.geo ?? { latencies: new Map<string, number>() };
    chosen = pick((hubs) => allocateGeoLatency(input.registrationId, hubs, geo));
  } else if (policy === 'static') {
    // DPS accepts static enrollments without iotHubs: the one candidate is the hub, more (or none) is ambiguous.
    if (candidates.length !== 1)
      return { ok: false, errorCode: 400208, errorMessage: staticProblem(candidates.length) };
    chosen = { hub: candidates[0] };
  } else {
    const name = input.custom?.iotHubHostName.toLowerCase();
    if (name === undefined) {
      return { ok: false, errorCode: 400208, errorMessage: 'The custom allocation webhook named no IoT hub.' };
    }
    chosen = { hub: input.linkedHubs.find((h) => h.hostName.toLowerCase() === name) };
  }
  const hub = chosen.hub;
  if (!hub) {
    return { ok: false, errorCode: 400208, errorMessage: 'No linked IoT hub could be assigned to this device.' };
  }

  const custom = input.custom;
  const base = {
    deviceId: input.deviceId,
    ...(input.enrollmentGroupId !== undefined ? { enrollmentGroupId: input.enrollmentGroupId } : {}),
    ...(custom?.payload !== undefined ? { webhookPayload: custom.payload } : {}),
    ...(custom?.initialTwin !== undefined ? { webhookInitialTwin: custom.initialTwin } : {}),
  };
  if (!previous?.assignedHub) {
    return {
      ok: true,
      plan: {
        ...base,
        assignedHub: hub.hostName,
        substatus: 'initialAssignment',
        applyInitialTwin: true,
        ...(chosen.alternate ? { alternateHub: chosen.alternate.hostName } : {}),
      },
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
