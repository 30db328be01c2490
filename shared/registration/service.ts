// The registration state machine: attest → allocate → hub → commit, idempotent and resumable.
//
// One registration costs one partition read (enrollment + registration state) and one write (state + operation in a
// single row). A poll costs one read: a point read of the registration row when this instance attested the device a
// moment ago, else the partition read. The PUT runs the hub step within a time budget; if the hub is slow it records the operation as
// `assigning` and answers at once; the device's next poll (or re-register) finishes it. A crash at any step leaves
// either nothing or an `assigning` operation, and every step is idempotent, so retrying converges without duplicates.
import { randomBytes, randomUUID } from 'node:crypto';

import type { SymmetricKeyMatch } from '../attestation/symmetricKey';
import { assertTokenFor, attestSymmetricKey, signedByOneOf } from '../attestation/symmetricKey';
import type { EnrollmentCommon, EnrollmentGroup } from '../domain/enrollment';
import { isEnabled } from '../domain/enrollment';
import type { LinkedHub } from '../domain/linkedHub';
import type { ServiceConfiguration } from '../domain/serviceConfig';
import type {
  DeviceRegistrationResult,
  RegistrationOperationStatus,
  RegistrationStatus,
} from '../domain/registrationState';
import { DpsError, notFound, unauthorized } from '../errors';
import type { JsonResult } from '../http/response';
import type { SasToken } from '../http/sas';
import { parseSas } from '../http/sas';
import { registrationKey } from '../domain/registrationId';
import type { RecentMap } from '../storage/cache';
import type {
  DeviceRepository,
  DevicePartition,
  OperationRecord,
  StoredRegistration,
  Versioned,
} from '../storage/devices';
import { publicEtag } from '../storage/etag';
import type { HubClientPool } from './assign';
import { applyPlan } from './assign';
import type { DeviceRequest } from './deviceRequest';
import { planAssignment } from './plan';

export interface RegistrationPorts {
  idScope: string;
  devices: Pick<DeviceRepository, 'load' | 'getRegistration' | 'saveRegistration'>;
  groups: { list(): Promise<EnrollmentGroup[]> };
  /** The (cached) service configuration: linked hubs and the default allocation policy. */
  configuration: { get(): Promise<Pick<ServiceConfiguration, 'linkedHubs' | 'settings'>> };
  hubs: HubClientPool;
  /**
   * The keys that attested each device recently, by registration key (short TTL, per instance): a poll verifies the
   * device with them instead of reading its enrollment. Keys only (not enrollments), so 10,000 entries stay small.
   */
  recentAttestations: RecentMap<string, RecentAttestation>;
  clock: () => Date;
  /** How long a PUT waits for the hub before answering `assigning`. */
  budgetMs: number;
  /** Seconds a device should wait before polling an `assigning` operation. */
  retryAfterSeconds: number;
  log: (message: string) => void;
}

/** The device's own keys (derived for group devices, for the registration ID exactly as it was attested). */
export interface RecentAttestation {
  deviceKeys: string[];
}

interface Attested {
  match: SymmetricKeyMatch;
  enrollment: EnrollmentCommon;
  partition: DevicePartition;
}

type HubOutcome = { ok: true } | { ok: false; errorCode: number; errorMessage: string };

export class RegistrationService {
  constructor(private readonly ports: RegistrationPorts) {}

  /** PUT {idScope}/registrations/{registrationId}/register */
  async register(request: DeviceRequest): Promise<JsonResult> {
    const { match, enrollment, partition } = await this.attest(request, this.tokenOf(request));
    const previous = partition.registration;
    const operationId = newOperationId();
    const now = this.ports.clock();

    if (!isEnabled(enrollment)) {
      const state = this.stateOf(request, previous, now, { status: 'disabled' });
      const etag = await this.save(
        request,
        { state, operation: this.operation(operationId, 'disabled', now) },
        previous,
      );
      return this.operationResult(operationId, { ...state, etag: publicEtag(etag) });
    }

    const { linkedHubs, settings } = await this.ports.configuration.get();
    const planned = planAssignment({
      defaultAllocationPolicy: settings.defaultAllocationPolicy,
      registrationId: request.registrationId,
      deviceId: deviceIdFor(match, request.registrationId, previous?.value.state),
      enrollment,
      ...(match.kind === 'group' ? { enrollmentGroupId: match.group.enrollmentGroupId } : {}),
      linkedHubs,
      ...(previous ? { previous: previous.value.state } : {}),
      ...(request.payload !== undefined ? { payload: request.payload } : {}),
    });
    if (!planned.ok) {
      const state = this.stateOf(request, previous, now, { status: 'failed', ...planned });
      const etag = await this.save(request, { state, operation: this.operation(operationId, 'failed', now) }, previous);
      return this.operationResult(operationId, { ...state, etag: publicEtag(etag) });
    }

    const operation = { ...this.operation(operationId, 'assigning', now), plan: planned.plan };
    const hubWork = this.runHubStep(operation.plan, match, enrollment, linkedHubs);
    const outcome = await withinBudget(hubWork, this.ports.budgetMs);
    if (outcome) return this.commit(request, previous, operation, outcome);

    // The hub is slow: record the operation so a poll can finish it, and let this instance finish it if it can.
    const pending: StoredRegistration = {
      state: previous?.value.state ?? { registrationId: request.registrationId, status: 'assigning' },
      operation,
    };
    const etag = await this.save(request, pending, previous);
    hubWork
      .then((late) => this.commit(request, { value: pending, etag }, operation, late))
      .catch((err: unknown) => this.ports.log(`background commit of ${operationId} skipped: ${String(err)}`));
    return this.assigning(request, operationId);
  }

  /** GET {idScope}/registrations/{registrationId}/operations/{operationId} */
  async operationStatus(request: DeviceRequest, operationId: string): Promise<JsonResult> {
    const token = this.tokenOf(request);
    const recent = await this.recentRegistration(request, token);
    if (recent?.value.operation.operationId === operationId && !this.dueForTakeover(recent.value.operation)) {
      return this.pollAnswer(request, operationId, recent);
    }
    const { match, enrollment, partition } = await this.attest(request, token);
    const current = partition.registration;
    if (!current || current.value.operation.operationId !== operationId) {
      throw notFound(`Operation ${operationId} was not found for registration ${request.registrationId}.`);
    }
    const { operation } = current.value;
    if (!this.dueForTakeover(operation) || !operation.plan) return this.pollAnswer(request, operationId, current);
    // The instance that started it is gone or stuck: finish the operation here (the hub step is idempotent).
    const { linkedHubs } = await this.ports.configuration.get();
    const outcome = await this.runHubStep(operation.plan, match, enrollment, linkedHubs);
    try {
      return { ...(await this.commit(request, current, operation, outcome)), status: 200 };
    } catch (err) {
      // Another instance committed first: its result is what the next poll returns.
      if (err instanceof DpsError && err.status === 409) return this.assigning(request, operationId);
      throw err;
    }
  }

  /** POST {idScope}/registrations/{registrationId}: the device asks for its current registration state. */
  async statusLookup(request: DeviceRequest): Promise<JsonResult> {
    const token = this.tokenOf(request);
    const current =
      (await this.recentRegistration(request, token)) ?? (await this.attest(request, token)).partition.registration;
    if (!current) throw notFound(`Registration ${request.registrationId} was not found.`);
    return { status: 200, body: { ...current.value.state, etag: publicEtag(current.etag) } };
  }

  /** Is this request this device, and by which enrollment? Reads the device partition (one round trip). */
  private async attest(request: DeviceRequest, token: SasToken): Promise<Attested> {
    const [partition, groups] = await Promise.all([
      this.ports.devices.load(request.registrationId),
      this.ports.groups.list(),
    ]);
    const key = registrationKey(request.registrationId);
    let match: SymmetricKeyMatch;
    try {
      match = attestSymmetricKey(
        token,
        resourceOf(request),
        request.registrationId,
        partition.enrollment?.value,
        groups.filter((g) => g.attestation.type === 'symmetricKey'),
        this.ports.clock(),
      );
    } catch (err) {
      // Whatever was remembered no longer holds (keys rotated, enrollment gone): polls must not outlive it.
      this.ports.recentAttestations.delete(key);
      throw err;
    }
    this.ports.recentAttestations.set(key, { deviceKeys: match.deviceKeys });
    const enrollment = match.kind === 'individual' ? match.enrollment : match.group;
    return { match, enrollment, partition };
  }

  /**
   * The fast path of a poll: if this instance attested the device a moment ago and the token is signed by one of the
   * keys it attested with, the registration row alone (one point read) answers. Undefined otherwise: the caller falls
   * back to `attest`, which reads the enrollment and gives the authoritative answer, errors included.
   */
  private async recentRegistration(
    request: DeviceRequest,
    token: SasToken,
  ): Promise<Versioned<StoredRegistration> | undefined> {
    const recent = this.ports.recentAttestations.get(registrationKey(request.registrationId));
    if (!recent) return undefined;
    try {
      assertTokenFor(token, resourceOf(request), this.ports.clock());
    } catch {
      return undefined;
    }
    if (!signedByOneOf(token, recent.deviceKeys)) return undefined;
    return this.ports.devices.getRegistration(request.registrationId);
  }

  /** The request's SAS token, for this service's ID scope (401 otherwise); parsed once per request. */
  private tokenOf(request: DeviceRequest): SasToken {
    if (request.idScope.toLowerCase() !== this.ports.idScope.toLowerCase()) {
      throw unauthorized(`The ID scope ${request.idScope} is not served here.`);
    }
    if (request.authorization === null) {
      throw unauthorized('The Authorization header is missing: only symmetric-key attestation is supported yet.');
    }
    return parseSas(request.authorization);
  }

  /** An `assigning` operation whose instance should have finished it by now: a poll takes it over. */
  private dueForTakeover(operation: OperationRecord): boolean {
    if (operation.status !== 'assigning' || !operation.plan) return false;
    return this.ports.clock().getTime() - Date.parse(operation.startedAtUtc) >= this.ports.budgetMs * 2;
  }

  private pollAnswer(request: DeviceRequest, operationId: string, current: Versioned<StoredRegistration>): JsonResult {
    const { operation, state } = current.value;
    if (operation.status === 'assigning') return this.assigning(request, operationId);
    return {
      status: 200,
      body: toOperationStatus(operationId, operation.status, { ...state, etag: publicEtag(current.etag) }),
    };
  }

  private async runHubStep(
    plan: NonNullable<StoredRegistration['operation']['plan']>,
    match: SymmetricKeyMatch,
    enrollment: EnrollmentCommon,
    linkedHubs: readonly LinkedHub[],
  ): Promise<HubOutcome> {
    try {
      await applyPlan(
        plan,
        {
          keys: match.deviceKeys,
          iotEdge: enrollment.capabilities?.iotEdge ?? false,
          ...(enrollment.initialTwin ? { initialTwin: enrollment.initialTwin } : {}),
        },
        linkedHubs,
        this.ports.hubs,
      );
      return { ok: true };
    } catch (err) {
      this.ports.log(`hub step for ${plan.deviceId} on ${plan.assignedHub} failed: ${String(err)}`);
      return { ok: false, errorCode: 500001, errorMessage: `The IoT hub ${plan.assignedHub} could not be updated.` };
    }
  }

  private async commit(
    request: DeviceRequest,
    previous: Versioned<StoredRegistration> | undefined,
    operation: StoredRegistration['operation'],
    outcome: HubOutcome,
  ): Promise<JsonResult> {
    const now = this.ports.clock();
    const plan = operation.plan;
    const state: DeviceRegistrationResult =
      outcome.ok && plan
        ? {
            ...this.stateOf(request, previous, now, { status: 'assigned' }),
            assignedHub: plan.assignedHub,
            deviceId: plan.deviceId,
            substatus: plan.substatus,
            ...(plan.payload !== undefined ? { payload: plan.payload } : {}),
            ...(plan.enrollmentGroupId !== undefined
              ? { symmetricKey: { enrollmentGroupId: plan.enrollmentGroupId } }
              : {}),
          }
        : this.stateOf(request, previous, now, {
            status: 'failed',
            ...(outcome.ok ? { errorCode: 500001, errorMessage: 'The operation has no plan.' } : outcome),
          });
    // A finished operation needs no plan any more; dropping it keeps one copy of the device's payload in the row.
    const finished = { operationId: operation.operationId, status: state.status, startedAtUtc: operation.startedAtUtc };
    const etag = await this.save(request, { state, operation: finished }, previous);
    return this.operationResult(operation.operationId, { ...state, etag: publicEtag(etag) });
  }

  private stateOf(
    request: DeviceRequest,
    previous: Versioned<StoredRegistration> | undefined,
    now: Date,
    fields: { status: RegistrationStatus; errorCode?: number; errorMessage?: string },
  ): DeviceRegistrationResult {
    const before = previous?.value.state;
    const keep =
      fields.status === 'assigned'
        ? {}
        : {
            ...(before?.assignedHub ? { assignedHub: before.assignedHub } : {}),
            ...(before?.deviceId ? { deviceId: before.deviceId } : {}),
          };
    return {
      registrationId: request.registrationId,
      createdDateTimeUtc: before?.createdDateTimeUtc ?? now.toISOString(),
      ...keep,
      status: fields.status,
      ...(fields.errorCode !== undefined ? { errorCode: fields.errorCode, errorMessage: fields.errorMessage } : {}),
      lastUpdatedDateTimeUtc: now.toISOString(),
    };
  }

  private operation(operationId: string, status: RegistrationStatus, now: Date): StoredRegistration['operation'] {
    return { operationId, status, startedAtUtc: now.toISOString() };
  }

  private save(
    request: DeviceRequest,
    value: StoredRegistration,
    previous: Versioned<unknown> | undefined,
  ): Promise<string> {
    return this.ports.devices.saveRegistration(request.registrationId, value, previous?.etag);
  }

  private operationResult(operationId: string, state: DeviceRegistrationResult): JsonResult {
    // 202 even when already terminal: the C# SDK accepts nothing else from a PUT, and all SDKs stop on a final status.
    return { status: 202, body: toOperationStatus(operationId, state.status, state) };
  }

  private assigning(request: DeviceRequest, operationId: string): JsonResult {
    return {
      status: 202,
      body: toOperationStatus(operationId, 'assigning', {
        registrationId: request.registrationId,
        status: 'assigning',
      }),
      headers: { 'Retry-After': String(this.ports.retryAfterSeconds) },
    };
  }
}

function toOperationStatus(
  operationId: string,
  status: RegistrationStatus,
  registrationState: DeviceRegistrationResult,
): RegistrationOperationStatus {
  return { operationId, status, registrationState };
}

/** The `sr` a device's token must name. */
const resourceOf = (request: DeviceRequest): string => `${request.idScope}/registrations/${request.registrationId}`;

/**
 * The hub device ID: the individual enrollment's `deviceId`, else the registration ID. Registration IDs are
 * case-insensitive but IoT Hub device IDs are not, so a device that registers again with other letter case keeps the
 * device ID it was given first instead of becoming a second device.
 */
function deviceIdFor(match: SymmetricKeyMatch, registrationId: string, previous?: DeviceRegistrationResult): string {
  if (match.kind === 'individual' && match.enrollment.deviceId) return match.enrollment.deviceId;
  const before = previous?.deviceId;
  return before !== undefined && before.toLowerCase() === registrationId.toLowerCase() ? before : registrationId;
}

/** Opaque and URL-safe, shaped like DPS's (`5.<hex>.<guid>`). */
function newOperationId(): string {
  return `1.${randomBytes(8).toString('hex')}.${randomUUID()}`;
}

/** The work's result if it settles within `ms`, else undefined (the work keeps running). */
async function withinBudget<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
