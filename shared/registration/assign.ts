// The hub step of a registration: make the device's identity (and twin) on its assigned hub match the plan.
// Every call is idempotent, so a resumed or repeated operation converges on the same result. The device is created
// as the attestation's `hubAuthentication` says (symmetric keys, X.509 thumbprints, or its CA): no mechanism branch.
import type { HubAuthentication } from '../attestation/attestation';
import type { InitialTwin } from '../domain/enrollment';
import type { LinkedHub } from '../domain/linkedHub';
import type { HubRegistryClient } from '../hubs/registryClient';
import { HubError, HubTimeout } from '../hubs/registryClient';
import type { AssignmentPlan } from '../storage/devices';

export interface HubClientPool {
  for(hub: LinkedHub): Pick<HubRegistryClient, 'upsertDevice' | 'applyTwin' | 'getTwin' | 'deleteDevice'>;
}

export interface DeviceIdentity {
  authentication: HubAuthentication;
  iotEdge: boolean;
  initialTwin?: InitialTwin;
}

export async function applyPlan(
  plan: AssignmentPlan,
  identity: DeviceIdentity,
  linkedHubs: readonly LinkedHub[],
  pool: HubClientPool,
  /** Aborts the remaining hub calls when the hub step's deadline passes. */
  signal?: AbortSignal,
  /**
   * false: the step may only update the identity the committed state names (no claim was made): a missing identity
   * is a DeviceMissingError instead of a new one.
   */
  mayCreate = true,
): Promise<void> {
  const options = signal ? { signal } : {};
  const target = findHub(linkedHubs, plan.assignedHub);
  const client = pool.for(target);
  const previous = plan.previousHub ? linkedHubs.find((h) => sameHost(h.hostName, plan.previousHub)) : undefined;
  const previousId = plan.previousDeviceId ?? plan.deviceId;

  // A custom-allocation webhook's initial twin wins over the enrollment's (reference/dps-protocol.md §4).
  let twin = plan.applyInitialTwin ? (plan.webhookInitialTwin ?? identity.initialTwin) : undefined;
  if (previous && plan.substatus === 'deviceDataMigrated') {
    const old = await pool.for(previous).getTwin(previousId, options);
    if (old)
      twin = {
        ...(old.tags ? { tags: old.tags } : {}),
        properties: { desired: userProperties(old.properties?.desired) },
      };
  }

  // A reset in place starts from a fresh identity, so nothing of the old twin survives.
  if (plan.substatus === 'deviceDataReset' && !plan.previousHub) await client.deleteDevice(plan.deviceId, options);
  // Staying on the same hub under the same ID: the identity is normally there already.
  const likelyExists = plan.substatus === 'reprovisionedToInitialAssignment';
  await client.upsertDevice(
    { deviceId: plan.deviceId, authentication: identity.authentication, iotEdge: identity.iotEdge },
    likelyExists,
    mayCreate ? options : { ...options, create: false },
  );
  if (twin) await client.applyTwin(plan.deviceId, twin, options);
  if (previous) await pool.for(previous).deleteDevice(previousId, options);
}

/**
 * `applyPlan`, then once more on the plan's alternate hub if the assigned one fails (a first registration under
 * hashed or geoLatency: plan.ts). Resolves to the hub the device was put on; rejects with the first failure.
 */
export async function applyPlanWithFailover(
  plan: AssignmentPlan,
  identity: DeviceIdentity,
  linkedHubs: readonly LinkedHub[],
  pool: HubClientPool,
  signal?: AbortSignal,
  log?: (message: string) => void,
  mayCreate = true,
): Promise<string> {
  try {
    await applyPlan(plan, identity, linkedHubs, pool, signal, mayCreate);
    return plan.assignedHub;
  } catch (err) {
    const alternate = plan.alternateHub;
    if (alternate === undefined || signal?.aborted) throw err;
    log?.(`hub step for ${plan.deviceId} on ${plan.assignedHub} failed (${String(err)}); trying ${alternate}`);
    try {
      await applyPlan({ ...plan, assignedHub: alternate }, identity, linkedHubs, pool, signal);
    } catch {
      throw err;
    }
    return alternate;
  }
}

/**
 * Why a hub step failed, for the device's `registrationState.errorMessage`: a category only, never the hub's own
 * message or status (the log and GET linkedHubs' health carry those, for the operator).
 */
export function hubFailureMessage(err: unknown): string {
  if (err instanceof HubTimeout) return 'the IoT hub did not answer in time.';
  if (!(err instanceof HubError)) return 'the IoT hub could not be reached.';
  if (err.status === 401 || err.status === 403) {
    return "the IoT hub refused the provisioning service's credentials (the operator must fix the linked hub).";
  }
  if (err.status === 429) return 'the IoT hub is throttling requests; try again later.';
  if (err.status >= 500) return 'the IoT hub is unavailable; try again later.';
  return 'the IoT hub refused the device identity.';
}

export function findHub(linkedHubs: readonly LinkedHub[], hostName: string): LinkedHub {
  const hub = linkedHubs.find((h) => sameHost(h.hostName, hostName));
  if (!hub) throw new Error(`IoT hub ${hostName} is no longer linked.`);
  return hub;
}

const sameHost = (a: string, b: string | undefined): boolean => a.toLowerCase() === b?.toLowerCase();

/** Desired properties without the hub's `$metadata`/`$version` bookkeeping, which a PATCH must not send. */
function userProperties(desired: Record<string, unknown> | undefined): Record<string, unknown> {
  return Object.fromEntries(Object.entries(desired ?? {}).filter(([k]) => !k.startsWith('$')));
}
