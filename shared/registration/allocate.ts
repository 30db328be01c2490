// The allocation step of a registration: the plan (plan.ts), after asking the enrollment's custom-allocation webhook
// for its decision when the policy is `custom`. Runs before the row is claimed, so the decision is recorded in the
// plan: a poll that takes the operation over applies it and never calls the webhook a second time.
import type { Attestation } from '../attestation/attestation';
import type { RuntimeAttestation, WebhookOptions, WebhookOutcome, WebhookRequestInput } from '../allocation/custom';
import { callAllocationWebhook } from '../allocation/custom';
import type { GeoLatencySettings } from '../allocation/geoLatency';
import type { DeviceRequest } from './deviceRequest';
import type { HealthFilter, PlanInput, PlanOutcome } from './plan';
import { allocationCandidates, effectivePolicy, planAssignment } from './plan';

export interface AllocationPorts {
  /** geoLatency's region and latency table (config: DPS_REGION, DPS_REGION_LATENCIES). */
  geo: GeoLatencySettings;
  /** Hub health (hubs/health.ts): hashed and geoLatency skip hubs cooling down. */
  health?: HealthFilter;
  /** Overall deadline of a webhook call, retry included (DPS_WEBHOOK_TIMEOUT_MS). */
  webhookTimeoutMs: number;
  /** Injected for tests; default allocation/custom.ts's client. */
  callWebhook?: (input: WebhookRequestInput, options: WebhookOptions) => Promise<WebhookOutcome>;
  log: (message: string) => void;
}

export type AllocationInput = Omit<PlanInput, 'geo' | 'health' | 'custom'> & {
  /** The device's payload (`DeviceRegistration.payload`): sent to the webhook, never echoed to the device. */
  devicePayload?: unknown;
};

/**
 * Custom-allocation failures in `registrationState.errorCode`: 400208 ("no IoT hub could be assigned", the code the
 * C SDK maps to HUB_NOT_SPECIFIED) for every cause, told apart by the message (status and body excerpt included).
 */
export const WEBHOOK_FAILED = 400208;

export async function allocate(
  input: AllocationInput,
  attestation: Attestation,
  request: Pick<DeviceRequest, 'tpm'>,
  ports: AllocationPorts,
): Promise<PlanOutcome> {
  const { devicePayload: _payload, ...plain } = input;
  const planInput: PlanInput = { ...plain, geo: ports.geo, ...(ports.health ? { health: ports.health } : {}) };
  const definition = input.enrollment.customAllocationDefinition;
  if (effectivePolicy(input.enrollment, input.defaultAllocationPolicy) !== 'custom') return planAssignment(planInput);
  if (!definition) {
    // Validation refuses this at enrollment time; an enrollment stored before that rule still fails clearly.
    return {
      ok: false,
      errorCode: WEBHOOK_FAILED,
      errorMessage: "The allocation policy is 'custom' but the enrollment has no customAllocationDefinition.",
    };
  }

  const previous = input.previous?.status === 'assigned' ? input.previous : undefined;
  const candidates = allocationCandidates(input.enrollment, input.linkedHubs, previous).map((h) => h.hostName);
  const outcome = await (ports.callWebhook ?? callAllocationWebhook)(
    {
      webhookUrl: definition.webhookUrl,
      apiVersion: definition.apiVersion,
      enrollment:
        attestation.kind === 'individual'
          ? { kind: 'individual', value: attestation.enrollment }
          : { kind: 'group', value: attestation.enrollment },
      registrationId: input.registrationId,
      ...(previous?.assignedHub && previous.deviceId
        ? { current: { iotHubHostName: previous.assignedHub, deviceId: previous.deviceId } }
        : {}),
      attestation: runtimeAttestation(attestation, request),
      ...(input.devicePayload !== undefined ? { payload: input.devicePayload } : {}),
      candidates,
    },
    { timeoutMs: ports.webhookTimeoutMs },
  );
  if (outcome.ok) {
    return planAssignment({
      ...planInput,
      custom: {
        iotHubHostName: outcome.iotHubHostName,
        ...(outcome.initialTwin ? { initialTwin: outcome.initialTwin } : {}),
        ...(outcome.payload !== undefined ? { payload: outcome.payload } : {}),
      },
    });
  }
  const fallback = definition.fallbackAllocationPolicy;
  // The message is secret-free (custom.ts masks the URL's query and scrubs its values from the excerpt).
  ports.log(`${input.registrationId}: ${outcome.errorMessage}${fallback ? ` Falling back to ${fallback}.` : ''}`);
  if (fallback) {
    return planAssignment({ ...planInput, enrollment: { ...input.enrollment, allocationPolicy: fallback } });
  }
  return { ok: false, errorCode: WEBHOOK_FAILED, errorMessage: outcome.errorMessage };
}

/** What the device proved, for the webhook's `deviceRuntimeContext`: public parts only. */
function runtimeAttestation(attestation: Attestation, request: Pick<DeviceRequest, 'tpm'>): RuntimeAttestation {
  const fields = attestation.registrationFields;
  if ('x509' in fields) return { type: 'x509', x509: { ...fields.x509 } };
  if ('tpm' in fields) {
    const enrolled = attestation.enrollment.attestation.tpm;
    const endorsementKey = request.tpm?.endorsementKey ?? enrolled?.endorsementKey ?? '';
    const storageRootKey = request.tpm?.storageRootKey ?? enrolled?.storageRootKey;
    return { type: 'tpm', endorsementKey, ...(storageRootKey !== undefined ? { storageRootKey } : {}) };
  }
  return { type: 'symmetricKey' };
}
