// The events of device requests: which events a registration's writes commit (with the operation's outbox marker),
// and the best-effort event of a refused attestation. RegistrationService calls it at its commit points only.
import type { Attestation } from '../attestation/attestation';
import { presentedMechanism } from '../attestation/attestation';
import { registrationKey } from '../domain/registrationId';
import type { DeviceRegistrationResult } from '../domain/registrationState';
import { DpsError } from '../errors';
import type { DeviceRequest } from '../registration/deviceRequest';
import type { EventCommit } from '../storage/devices';
import type { AttestationType, CloudEvent, EventOrigin, FailureStep, RegistrationContext } from './catalogue';
import {
  attestationFailed,
  registrationAccepted,
  registrationAssigned,
  registrationDisabled,
  registrationFailed,
} from './catalogue';
import type { Outbox, Ticket } from './outbox';

/** The device call a refusal answered. */
export type DeviceCall = 'register' | 'operationStatus' | 'statusLookup';

export class RegistrationJournal {
  constructor(
    private readonly outbox: Pick<Outbox, 'open' | 'publishBestEffort'>,
    private readonly origin: EventOrigin,
  ) {}

  /**
   * A request that may commit registration events: its outbox marker is written now, so call this before the
   * partition read (the two overlap). `accepted`: the operation's `accepted` event already committed (a takeover).
   */
  begin(registrationId: string, accepted = false): RegistrationAttempt {
    return new RegistrationAttempt(this.outbox.open(registrationKey(registrationId)), this.origin, accepted);
  }

  /**
   * A refused request (401): `attestationFailed`, best effort (no state changed, so nothing is committed). The reason
   * is the error's detail or message in words; the request's token, certificate or key never enter the event.
   */
  refused(request: DeviceRequest, call: DeviceCall, err: unknown): void {
    if (!(err instanceof DpsError) || err.status !== 401) return;
    // A 401 with body fields is TPM's challenge: a step of a successful registration, not a refusal.
    if (Object.keys(err.extraBody).length > 0) return;
    const mechanism = presentedMechanism(request);
    this.outbox.publishBestEffort([
      attestationFailed(this.origin, {
        registrationId: request.registrationId,
        idScope: request.idScope,
        ...(mechanism ? { attestationType: mechanism } : {}),
        errorCode: err.errorCode,
        reason: err.detail ?? err.message,
        request: call,
      }),
    ]);
  }
}

/** One register PUT (or a poll's takeover) from attestation to its final commit. */
export class RegistrationAttempt {
  private context: RegistrationContext | undefined;

  constructor(
    readonly ticket: Ticket,
    private readonly origin: EventOrigin,
    private acceptedCommitted: boolean,
  ) {}

  /** Attestation passed: the events of this operation name its enrollment and mechanism. */
  attested(request: DeviceRequest, operationId: string, attestation: Attestation): void {
    this.context = {
      registrationId: request.registrationId,
      operationId,
      attestationType: mechanismOf(attestation),
      enrollment:
        attestation.kind === 'group'
          ? { kind: 'group', id: attestation.enrollmentGroupId }
          : { kind: 'individual', id: attestation.enrollment.registrationId },
    };
  }

  /** The events of a claim (the operation's first write): `accepted`. */
  claim(): EventCommit | undefined {
    return this.commit([]);
  }

  /**
   * The events of the write of a final state: `accepted` if no write of this operation carried it yet, then
   * `assigned`, `failed` (with the step, and `detail` as the reason when there is more to say than the device was
   * told) or `disabled`.
   */
  outcome(
    state: DeviceRegistrationResult,
    startedAtUtc: string,
    step: FailureStep,
    detail?: string,
  ): EventCommit | undefined {
    const c = this.context;
    if (!c) return undefined;
    const o = this.origin;
    const final =
      state.status === 'assigned'
        ? registrationAssigned(o, c, state, o.clock().getTime() - Date.parse(startedAtUtc))
        : state.status === 'disabled'
          ? registrationDisabled(o, c)
          : registrationFailed(o, c, {
              errorCode: state.errorCode ?? 500000,
              reason: detail ?? state.errorMessage ?? 'unknown',
              step,
              ...(state.assignedHub ? { assignedHub: state.assignedHub } : {}),
            });
    return this.commit([final]);
  }

  private commit(events: CloudEvent[]): EventCommit | undefined {
    const c = this.context;
    if (!c) return undefined;
    const all = this.acceptedCommitted ? events : [registrationAccepted(this.origin, c), ...events];
    // Built for one write; if that write loses its race the operation ends there, so no event is lost or repeated.
    this.acceptedCommitted = true;
    return { ticket: this.ticket, events: all };
  }
}

function mechanismOf(attestation: Attestation): AttestationType {
  const fields = attestation.registrationFields;
  if ('x509' in fields) return 'x509';
  if ('tpm' in fields) return 'tpm';
  return 'symmetricKey';
}
