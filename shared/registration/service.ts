// The registration state machine: attest → allocate → hub → commit, idempotent and resumable.
//
// Table round trips: a registration reads the device partition once (enrollment + registration state) and writes its
// row once, except when its hub step could create an identity the committed state does not name yet (a first
// registration, a move to another hub or device ID): then the row is first claimed with a conditional write of the
// `assigning` operation and its plan, so that of racing registrations (case variants of one ID, two instances) only
// the winner touches a hub — 3 round trips. A poll costs one read: a point read of the registration row when this
// instance attested the device a moment ago, else the partition read. The PUT runs the hub step within a time budget;
// if the hub is slow it answers `assigning` and finishes in the background; a poll takes over an operation whose hub
// deadline has passed (its owner is gone), and only the poll that wins a conditional claim of the row does. Every
// hub call and every hub step has a wall-clock deadline. The attestation seam (attestation/attestation.ts) keeps
// this file free of mechanism-specific branches.
import { randomBytes, randomUUID } from 'node:crypto';

import type { Attestation, Attestors, RecentCheck } from '../attestation/attestation';
import { chooseAttestor, noCredential, presentedMechanism } from '../attestation/attestation';
import { isEnabled } from '../domain/enrollment';
import type { EnrollmentGroup } from '../domain/enrollment';
import type { LinkedHub } from '../domain/linkedHub';
import { registrationKey } from '../domain/registrationId';
import type {
  DeviceRegistrationResult,
  RegistrationOperationStatus,
  RegistrationStatus,
} from '../domain/registrationState';
import type { ServiceConfiguration } from '../domain/serviceConfig';
import { DpsError, notFound, unauthorized } from '../errors';
import type { DeviceCall, RegistrationAttempt, RegistrationJournal } from '../events/registrationJournal';
import type { JsonResult } from '../http/response';
import type { RecentMap } from '../storage/cache';
import type {
  AssignmentPlan,
  DevicePartition,
  DeviceRepository,
  EventCommit,
  OperationRecord,
  StoredRegistration,
  Versioned,
} from '../storage/devices';
import { HubTimeout } from '../hubs/registryClient';
import { publicEtag } from '../storage/etag';
import { DeviceMissingError } from '../hubs/registryClient';
import type { AllocationPorts } from './allocate';
import { allocate } from './allocate';
import type { HubClientPool } from './assign';
import { applyPlanWithFailover, hubFailureMessage } from './assign';
import type { DeviceRequest } from './deviceRequest';

export interface RegistrationPorts {
  idScope: string;
  devices: Pick<DeviceRepository, 'load' | 'getRegistration' | 'saveRegistration'>;
  groups: { list(): Promise<EnrollmentGroup[]> };
  /** The (cached) service configuration: linked hubs and the default allocation policy. */
  configuration: { get(): Promise<Pick<ServiceConfiguration, 'linkedHubs' | 'settings'>> };
  hubs: HubClientPool;
  /** The allocation step's settings: geoLatency, hub health, the custom-allocation webhook (allocate.ts). */
  allocation: AllocationPorts;
  /** One attestor per mechanism this service accepts (attestation/*). */
  attestors: Attestors;
  /**
   * What each device's recent attestation lets a poll check instead of re-attesting, by registration key (short TTL,
   * per instance). Closures over the device's keys only (not enrollments), so 10,000 entries stay small.
   */
  recentAttestations: RecentMap<string, RecentAttestation>;
  clock: () => Date;
  /** How long a PUT (or a poll taking an operation over) waits for the hub before answering `assigning`. */
  budgetMs: number;
  /**
   * Wall-clock deadline of a registration's whole hub step; an `assigning` operation whose claim is older than this
   * has lost its owner, and a poll takes it over.
   */
  hubDeadlineMs: number;
  /** Seconds a device should wait before polling an `assigning` operation. */
  retryAfterSeconds: number;
  log: (message: string) => void;
  /** The registration events (accepted, assigned, failed, disabled, attestationFailed); none when events are off. */
  events?: RegistrationJournal;
}

export type RecentAttestation = RecentCheck;

interface Attested {
  attestation: Attestation;
  partition: DevicePartition;
}

/**
 * `assignedHub`: where the device was put (the plan's hub, or its alternate after a failover); `detail`: what went
 * wrong at the hub, for the `failed` event (the device is told only `errorMessage`).
 */
type HubOutcome =
  | { ok: true; assignedHub: string; identityMissing?: undefined }
  | { ok: false; errorCode: number; errorMessage: string; identityMissing?: true; detail?: string };

export class RegistrationService {
  constructor(private readonly ports: RegistrationPorts) {}

  /** PUT {idScope}/registrations/{registrationId}/register */
  async register(request: DeviceRequest): Promise<JsonResult> {
    this.checkRequest(request, 'register');
    // The operation's outbox marker is written while the partition is read: no round trip of its own.
    const attempt = this.ports.events?.begin(request.registrationId);
    try {
      return await this.registerAttempt(request, attempt);
    } finally {
      attempt?.ticket.release();
    }
  }

  /** Every write of a register PUT commits its events with it (`attempt`: none when events are off). */
  private async registerAttempt(request: DeviceRequest, attempt: RegistrationAttempt | undefined): Promise<JsonResult> {
    const { attestation, partition } = await this.attest(request, 'register');
    const previous = partition.registration;
    const operationId = newOperationId();
    const now = this.ports.clock();
    attempt?.attested(request, operationId, attestation);

    if (!isEnabled(attestation.enrollment)) {
      const state = this.stateOf(request, previous, now, attestation, { status: 'disabled' });
      const { etag } = await this.save(
        request,
        { state, operation: this.operation(operationId, 'disabled', now) },
        previous,
        attempt?.outcome(state, now.toISOString(), 'allocation'),
      );
      return this.operationResult(operationId, { ...state, etag: publicEtag(etag) });
    }

    const { linkedHubs, settings } = await this.ports.configuration.get();
    // An operation in flight (or abandoned by its owner) may have created its identity already: a racer finishes that
    // plan rather than planning anew, or an enrollment changed meanwhile, or another instance's view of the linked
    // hubs, could leave a second identity. The next registration then moves the device from the committed state.
    // A custom-allocation webhook's decision is part of that plan: it is not asked again.
    const inFlight = previous?.value.operation.status === 'assigning' ? previous.value.operation.plan : undefined;
    const allocationStarted = Date.now();
    const planned = inFlight
      ? { ok: true as const, plan: inFlight }
      : await allocate(
          {
            defaultAllocationPolicy: settings.defaultAllocationPolicy,
            registrationId: request.registrationId,
            deviceId: deviceIdFor(attestation, request.registrationId, previous?.value),
            enrollment: attestation.enrollment,
            ...(attestation.enrollmentGroupId !== undefined
              ? { enrollmentGroupId: attestation.enrollmentGroupId }
              : {}),
            linkedHubs,
            ...(previous ? { previous: previous.value.state } : {}),
            ...(request.payload !== undefined ? { devicePayload: request.payload } : {}),
          },
          attestation,
          request,
          this.ports.allocation,
        );
    if (!planned.ok) {
      const state = this.stateOf(request, previous, now, attestation, { status: 'failed', ...planned });
      const { etag } = await this.save(
        request,
        { state, operation: this.operation(operationId, 'failed', now) },
        previous,
        attempt?.outcome(state, now.toISOString(), 'allocation'),
      );
      return this.operationResult(operationId, { ...state, etag: publicEtag(etag) });
    }

    const operation: OperationRecord = {
      ...this.operation(operationId, 'assigning', now),
      claimedAtUtc: now.toISOString(),
      plan: planned.plan,
    };
    const pending: StoredRegistration = {
      state: previous?.value.state ?? {
        registrationId: request.registrationId,
        createdDateTimeUtc: now.toISOString(),
        status: 'assigning',
      },
      operation,
    };
    // Claim first unless the hub step only updates the identity the committed state already names: a losing racer
    // (409203) then never creates a hub identity, whatever letter case or instance it came from. Unclaimed, the step
    // may not create: if the identity is gone (an operator deleted it, or a racing registration moved the device),
    // creating it again is a new identity, so the row is claimed first as for a first registration.
    const claimFirst = !updatesCommittedIdentity(planned.plan, previous?.value.state);
    const claimRow = () => this.save(request, pending, previous, attempt?.claim());
    let claim = claimFirst ? await claimRow() : undefined;

    // A webhook's time counts against the PUT's budget: the device hears `assigning` and polls instead of waiting.
    const budget = () => Math.max(0, this.ports.budgetMs - (Date.now() - allocationStarted));
    let hubWork = this.runHubStep(planned.plan, attestation, linkedHubs, claimFirst);
    let outcome = await withinBudget(hubWork, budget());
    if (outcome?.identityMissing) {
      claim = await claimRow();
      hubWork = this.runHubStep(planned.plan, attestation, linkedHubs, true);
      outcome = await withinBudget(hubWork, budget());
    }
    if (outcome) return this.commit(request, claim ?? previous, operation, outcome, attestation, attempt);

    // The hub is slow: make sure the row records the operation so a poll can finish it; finish it here if we can.
    if (!claim) {
      claim = await claimRow();
      // Claimed now (not before): an update-only step that finds the identity gone may create it from here on.
      const unclaimed = hubWork;
      hubWork = unclaimed.then((o) =>
        o.identityMissing ? this.runHubStep(planned.plan, attestation, linkedHubs, true) : o,
      );
    }
    this.commitLater(request, claim, operation, hubWork, attestation, attempt);
    return this.assigning(request, operationId);
  }

  /** GET {idScope}/registrations/{registrationId}/operations/{operationId} */
  async operationStatus(request: DeviceRequest, operationId: string): Promise<JsonResult> {
    this.checkRequest(request, 'operationStatus');
    const recent = await this.recentRegistration(request);
    if (recent?.value.operation.operationId === operationId && !this.overdue(recent.value.operation)) {
      return this.pollAnswer(request, operationId, recent);
    }
    const { attestation, partition } = await this.attest(request, 'operationStatus');
    const current = partition.registration;
    if (!current || current.value.operation.operationId !== operationId) {
      throw notFound(`Operation ${operationId} was not found for registration ${request.registrationId}.`);
    }
    const { operation } = current.value;
    if (!this.overdue(operation) || !operation.plan) return this.pollAnswer(request, operationId, current);
    // A takeover commits the outcome under a marker of its own, written while the claim below is (its PUT's claim
    // committed `accepted`).
    const attempt = this.ports.events?.begin(request.registrationId, true);
    attempt?.attested(request, operationId, attestation);
    try {
      return await this.takeOver(request, current, attestation, attempt);
    } finally {
      attempt?.ticket.release();
    }
  }

  private async takeOver(
    request: DeviceRequest,
    current: Versioned<StoredRegistration>,
    attestation: Attestation,
    attempt: RegistrationAttempt | undefined,
  ): Promise<JsonResult> {
    const { operation } = current.value;
    const { operationId } = operation;
    if (!operation.plan) return this.pollAnswer(request, operationId, current);
    // The instance that started it is gone or stuck. Of the polls that see this, one takes the operation over: the
    // one whose conditional claim of the row (a new claim time, under the ETag it read) lands; the others wait.
    const taken: StoredRegistration = {
      state: current.value.state,
      operation: { ...operation, claimedAtUtc: this.ports.clock().toISOString() },
    };
    let owned: Versioned<StoredRegistration>;
    try {
      owned = await this.save(request, taken, current);
    } catch (err) {
      if (err instanceof DpsError && err.status === 409) return this.assigning(request, operationId);
      throw err;
    }
    const { linkedHubs } = await this.ports.configuration.get();
    const hubWork = this.runHubStep(operation.plan, attestation, linkedHubs);
    const outcome = await withinBudget(hubWork, this.ports.budgetMs);
    if (!outcome) {
      this.commitLater(request, owned, taken.operation, hubWork, attestation, attempt);
      return this.assigning(request, operationId);
    }
    try {
      const committed = await this.commit(request, owned, taken.operation, outcome, attestation, attempt);
      return { ...committed, status: 200 };
    } catch (err) {
      // Another registration replaced the row meanwhile: its result is what the next poll returns.
      if (err instanceof DpsError && err.status === 409) return this.assigning(request, operationId);
      throw err;
    }
  }

  /** POST {idScope}/registrations/{registrationId}: the device asks for its current registration state. */
  async statusLookup(request: DeviceRequest): Promise<JsonResult> {
    this.checkRequest(request, 'statusLookup');
    const current =
      (await this.recentRegistration(request)) ?? (await this.attest(request, 'statusLookup')).partition.registration;
    if (!current) throw notFound(`Registration ${request.registrationId} was not found.`);
    return { status: 200, body: { ...current.value.state, etag: publicEtag(current.etag) } };
  }

  /** Is this request this device, and by which enrollment? Reads the device partition (one round trip). */
  private async attest(request: DeviceRequest, call: DeviceCall): Promise<Attested> {
    const [partition, groups] = await Promise.all([
      this.ports.devices.load(request.registrationId),
      this.ports.groups.list(),
    ]);
    const key = registrationKey(request.registrationId);
    const individual = partition.enrollment?.value;
    let attestation: Attestation;
    try {
      const attestor = chooseAttestor(this.ports.attestors, request, individual);
      attestation = await attestor.attest(
        request,
        { ...(individual ? { individual } : {}), groups, tpmChallenge: partition.tpmChallenge ?? null },
        this.ports.clock(),
      );
    } catch (err) {
      // Whatever was remembered no longer holds (keys rotated, enrollment gone): polls must not outlive it.
      this.ports.recentAttestations.delete(key);
      this.ports.events?.refused(request, call, err);
      throw err;
    }
    if (attestation.recent) this.ports.recentAttestations.set(key, attestation.recent);
    else this.ports.recentAttestations.delete(key);
    return { attestation, partition };
  }

  /**
   * The fast path of a poll: if this instance attested the device a moment ago and the request passes that
   * attestation's cheap check, the registration row alone (one point read) answers. Undefined otherwise: the caller
   * falls back to `attest`, which reads the enrollment and gives the authoritative answer, errors included.
   */
  private async recentRegistration(request: DeviceRequest): Promise<Versioned<StoredRegistration> | undefined> {
    const check = this.ports.recentAttestations.get(registrationKey(request.registrationId));
    if (!check?.(request, this.ports.clock())) return undefined;
    return this.ports.devices.getRegistration(request.registrationId);
  }

  /** The request is for this service's ID scope and presents some credential (401 otherwise, before any read). */
  private checkRequest(request: DeviceRequest, call: DeviceCall): void {
    const refusal =
      request.idScope.toLowerCase() !== this.ports.idScope.toLowerCase()
        ? unauthorized(`The ID scope ${request.idScope} is not served here.`, 'wrong ID scope')
        : presentedMechanism(request) === undefined
          ? noCredential()
          : undefined;
    if (!refusal) return;
    this.ports.events?.refused(request, call, refusal);
    throw refusal;
  }

  /** An `assigning` operation whose owner should have finished it by now (its hub deadline passed): take it over. */
  private overdue(operation: OperationRecord): boolean {
    if (operation.status !== 'assigning' || !operation.plan) return false;
    const claimedAt = Date.parse(operation.claimedAtUtc ?? operation.startedAtUtc);
    return this.ports.clock().getTime() - claimedAt >= this.ports.hubDeadlineMs;
  }

  private pollAnswer(request: DeviceRequest, operationId: string, current: Versioned<StoredRegistration>): JsonResult {
    const { operation, state } = current.value;
    if (operation.status === 'assigning') return this.assigning(request, operationId);
    return {
      status: 200,
      body: toOperationStatus(operationId, operation.status, { ...state, etag: publicEtag(current.etag) }),
    };
  }

  /**
   * The hub step, bounded by the hub deadline: when it passes, the remaining hub calls are abandoned. `mayCreate`
   * false (the row is not claimed): it only updates the identity, and a missing one is `identityMissing`.
   */
  private async runHubStep(
    plan: AssignmentPlan,
    attestation: Attestation,
    linkedHubs: readonly LinkedHub[],
    mayCreate = true,
  ): Promise<HubOutcome> {
    const deadline = new AbortController();
    const ms = this.ports.hubDeadlineMs;
    const timer = setTimeout(() => deadline.abort(), ms);
    const expired = new Promise<never>((_, reject) => {
      deadline.signal.addEventListener('abort', () =>
        reject(new HubTimeout(plan.assignedHub, `the hub step did not finish within ${ms} ms`)),
      );
    });
    try {
      const enrollment = attestation.enrollment;
      const identity = {
        authentication: attestation.hubAuthentication,
        iotEdge: enrollment.capabilities?.iotEdge ?? false,
        ...(enrollment.initialTwin ? { initialTwin: enrollment.initialTwin } : {}),
      };
      const { hubs, log } = this.ports;
      const work = applyPlanWithFailover(plan, identity, linkedHubs, hubs, deadline.signal, log, mayCreate);
      return { ok: true, assignedHub: await Promise.race([work, expired]) };
    } catch (err) {
      if (err instanceof DeviceMissingError) {
        return { ok: false, errorCode: 500001, errorMessage: err.message, identityMissing: true };
      }
      this.ports.log(`hub step for ${plan.deviceId} on ${plan.assignedHub} failed: ${String(err)}`);
      const why = hubFailureMessage(err);
      return {
        ok: false,
        errorCode: 500001,
        errorMessage: `The IoT hub ${plan.assignedHub} could not be updated: ${why}`,
        detail: (err instanceof Error ? err.message : String(err)).slice(0, 500),
      };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Commits a hub step that outlasted the budget when it ends; a lost race (the row moved on) is only logged. */
  private commitLater(
    request: DeviceRequest,
    current: Versioned<StoredRegistration>,
    operation: OperationRecord,
    hubWork: Promise<HubOutcome>,
    attestation: Attestation,
    attempt: RegistrationAttempt | undefined,
  ): void {
    attempt?.ticket.retain(); // the marker stays until this commit's events are sent
    hubWork
      .then((late) => this.commit(request, current, operation, late, attestation, attempt))
      .catch((err: unknown) => this.ports.log(`background commit of ${operation.operationId} skipped: ${String(err)}`))
      .finally(() => attempt?.ticket.release());
  }

  private async commit(
    request: DeviceRequest,
    previous: Versioned<StoredRegistration> | undefined,
    operation: OperationRecord,
    outcome: HubOutcome,
    attestation: Attestation,
    attempt: RegistrationAttempt | undefined,
  ): Promise<JsonResult> {
    const now = this.ports.clock();
    const plan = operation.plan;
    const state: DeviceRegistrationResult =
      outcome.ok && plan
        ? {
            ...this.stateOf(request, previous, now, attestation, { status: 'assigned' }),
            assignedHub: outcome.assignedHub,
            deviceId: plan.deviceId,
            substatus: plan.substatus,
            // DPS returns a payload only when a custom-allocation webhook supplied one, never the device's own.
            ...(plan.webhookPayload !== undefined ? { payload: plan.webhookPayload } : {}),
          }
        : this.stateOf(request, previous, now, attestation, {
            status: 'failed',
            ...(outcome.ok ? { errorCode: 500001, errorMessage: 'The operation has no plan.' } : outcome),
          });
    // A finished operation needs no plan any more; dropping it keeps the row small.
    const finished = { operationId: operation.operationId, status: state.status, startedAtUtc: operation.startedAtUtc };
    const events = attempt?.outcome(state, operation.startedAtUtc, 'hub', outcome.ok ? undefined : outcome.detail);
    const { etag } = await this.save(request, { state, operation: finished }, previous, events);
    return this.operationResult(operation.operationId, { ...state, etag: publicEtag(etag) });
  }

  private stateOf(
    request: DeviceRequest,
    previous: Versioned<StoredRegistration> | undefined,
    now: Date,
    attestation: Attestation,
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
      ...attestation.registrationFields,
      lastUpdatedDateTimeUtc: now.toISOString(),
    };
  }

  private operation(operationId: string, status: RegistrationStatus, now: Date): OperationRecord {
    return { operationId, status, startedAtUtc: now.toISOString() };
  }

  private save(
    request: DeviceRequest,
    value: StoredRegistration,
    previous: Versioned<StoredRegistration> | undefined,
    events?: EventCommit,
  ): Promise<Versioned<StoredRegistration>> {
    return this.ports.devices.saveRegistration(request.registrationId, value, previous, events);
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

/**
 * The hub device ID. An individual enrollment's `deviceId`, else its registration ID as the enrollment spells it;
 * a group device's registration ID as the request spells it. Registration IDs are case-insensitive but IoT Hub device
 * IDs are not, so a device that registers again with other letter case keeps the device ID it was given (or is being
 * given, by an operation in flight) instead of becoming a second device.
 */
function deviceIdFor(attestation: Attestation, registrationId: string, previous?: StoredRegistration): string {
  if (attestation.kind === 'individual' && attestation.enrollment.deviceId) return attestation.enrollment.deviceId;
  const canonical = attestation.kind === 'individual' ? attestation.enrollment.registrationId : registrationId;
  const known = previous?.state.deviceId ?? previous?.operation.plan?.deviceId;
  return known !== undefined && known.toLowerCase() === canonical.toLowerCase() ? known : canonical;
}

/**
 * Whether the plan's hub step only updates the identity the committed state already names (same hub, same device ID,
 * nothing moved or reset): then, run update-only, racing registrations cannot leave a second identity, and the row
 * need not be claimed. A reset in place deletes and creates the identity, so it is claimed like a move.
 */
function updatesCommittedIdentity(plan: AssignmentPlan, committed: DeviceRegistrationResult | undefined): boolean {
  return (
    committed?.status === 'assigned' &&
    committed.deviceId === plan.deviceId &&
    committed.assignedHub?.toLowerCase() === plan.assignedHub.toLowerCase() &&
    plan.previousHub === undefined &&
    plan.substatus === 'reprovisionedToInitialAssignment'
  );
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
