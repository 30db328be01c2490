// The event catalogue: CloudEvents 1.0 (structured JSON) for every registration attempt and every change. Each
// builder copies named, non-secret fields only, so no key, signature, token, connection string or private key can
// ride along whatever object it is given (test/unit/eventCatalogue.test.ts checks every type).
import { randomUUID } from 'node:crypto';

import type { EnrollmentCommon, EnrollmentGroup, IndividualEnrollment } from '../domain/enrollment';
import type { LinkedHub } from '../domain/linkedHub';
import type { DeviceRegistrationResult } from '../domain/registrationState';
import type { AccessPolicy, ServiceSettings } from '../domain/serviceConfig';

export interface CloudEvent<D extends object = Record<string, unknown>> {
  specversion: '1.0';
  /** Unique and stable: a redelivered event keeps its ID, so consumers dedupe on it. Sorts by creation time. */
  id: string;
  /** `https://<service host>`. */
  source: string;
  type: EventType;
  /** The registration ID, enrollment group ID, hub host name, policy name or `settings`. */
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  data: D;
}

export const EVENT_TYPES = [
  'opendps.registration.accepted',
  'opendps.registration.assigned',
  'opendps.registration.failed',
  'opendps.registration.disabled',
  'opendps.registration.attestationFailed',
  'opendps.enrollment.created',
  'opendps.enrollment.updated',
  'opendps.enrollment.deleted',
  'opendps.enrollmentGroup.created',
  'opendps.enrollmentGroup.updated',
  'opendps.enrollmentGroup.deleted',
  'opendps.registrationState.deleted',
  'opendps.linkedHub.created',
  'opendps.linkedHub.updated',
  'opendps.linkedHub.deleted',
  'opendps.accessPolicy.created',
  'opendps.accessPolicy.updated',
  'opendps.accessPolicy.keyRegenerated',
  'opendps.accessPolicy.deleted',
  'opendps.settings.updated',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** A time-sortable unique ID: 12 hex digits of milliseconds, then 16 random hex digits. */
export function newEventId(now: Date = new Date()): string {
  // randomUUID draws from a cached entropy pool (randomBytes(8) is a native call per event): its first 16 hex
  // digits carry 60 random bits.
  return `${now.getTime().toString(16).padStart(12, '0')}-${randomUUID().replace(/-/g, '').slice(0, 16)}`;
}

/** Where events come from and when: the service host and the clock. */
export interface EventOrigin {
  source: string;
  clock: () => Date;
}

function event<D extends object>(origin: EventOrigin, type: EventType, subject: string, data: D): CloudEvent<D> {
  const now = origin.clock();
  return {
    specversion: '1.0',
    id: newEventId(now),
    source: origin.source,
    type,
    subject,
    time: now.toISOString(),
    datacontenttype: 'application/json',
    data,
  };
}

/** `source` for a host name: `https://dps.example.com`. */
export const eventSource = (hostName: string): string => `https://${hostName}`;

// ---- registration -------------------------------------------------------------------------------------------------

/** Which enrollment a device was attested by. */
export interface EnrollmentRef {
  kind: 'individual' | 'group';
  /** The registration ID (individual) or the enrollment group ID. */
  id: string;
}

export type AttestationType = 'symmetricKey' | 'x509' | 'tpm';

export interface RegistrationContext {
  registrationId: string;
  operationId: string;
  attestationType: AttestationType;
  enrollment: EnrollmentRef;
}

const registrationFields = (c: RegistrationContext) => ({
  registrationId: c.registrationId,
  operationId: c.operationId,
  attestationType: c.attestationType,
  enrollment: { kind: c.enrollment.kind, id: c.enrollment.id },
});

/** A register PUT passed attestation: the state machine takes it from here. */
export const registrationAccepted = (o: EventOrigin, c: RegistrationContext) =>
  event(o, 'opendps.registration.accepted', c.registrationId, registrationFields(c));

/** The device was assigned to a hub (created or updated there). */
export const registrationAssigned = (
  o: EventOrigin,
  c: RegistrationContext,
  result: Pick<DeviceRegistrationResult, 'assignedHub' | 'deviceId' | 'substatus'>,
  durationMs: number,
) =>
  event(o, 'opendps.registration.assigned', c.registrationId, {
    ...registrationFields(c),
    assignedHub: result.assignedHub ?? '',
    deviceId: result.deviceId ?? '',
    substatus: result.substatus ?? 'initialAssignment',
    durationMs: Math.round(durationMs),
  });

/** Where a registration failed. */
export type FailureStep = 'allocation' | 'hub' | 'commit';

/** The registration failed after attestation (no hub to assign, the hub refused): the device was told `failed`. */
export const registrationFailed = (
  o: EventOrigin,
  c: RegistrationContext,
  failure: { errorCode: number; reason: string; step: FailureStep; assignedHub?: string },
) =>
  event(o, 'opendps.registration.failed', c.registrationId, {
    ...registrationFields(c),
    errorCode: failure.errorCode,
    reason: failure.reason,
    step: failure.step,
    ...(failure.assignedHub ? { assignedHub: failure.assignedHub } : {}),
  });

/** The enrollment (or its group) is disabled: the device was told `disabled`. */
export const registrationDisabled = (o: EventOrigin, c: RegistrationContext) =>
  event(o, 'opendps.registration.disabled', c.registrationId, registrationFields(c));

/**
 * Attestation refused the request (the device only hears 401). `reason` names the failed check in words — unknown
 * device, bad signature, expired token, wrong scope — and never carries the token, signature or key.
 */
export const attestationFailed = (
  o: EventOrigin,
  refusal: {
    registrationId: string;
    idScope: string;
    attestationType?: AttestationType;
    errorCode: number;
    reason: string;
    /** `register`, `operationStatus` or `statusLookup`. */
    request: string;
  },
) =>
  event(o, 'opendps.registration.attestationFailed', refusal.registrationId, {
    registrationId: refusal.registrationId,
    idScope: refusal.idScope,
    ...(refusal.attestationType ? { attestationType: refusal.attestationType } : {}),
    errorCode: refusal.errorCode,
    reason: refusal.reason,
    request: refusal.request,
  });

// ---- management ---------------------------------------------------------------------------------------------------

export type Change = 'created' | 'updated' | 'deleted';

/** Enrollment fields an operator filters on; never the attestation's keys or certificates, nor the initial twin. */
const enrollmentFields = (e: EnrollmentCommon) => ({
  attestationType: e.attestation.type,
  provisioningStatus: e.provisioningStatus ?? 'enabled',
  ...(e.allocationPolicy ? { allocationPolicy: e.allocationPolicy } : {}),
  ...(e.iotHubs ? { iotHubs: [...e.iotHubs] } : {}),
  ...(e.lastUpdatedDateTimeUtc ? { lastUpdatedDateTimeUtc: e.lastUpdatedDateTimeUtc } : {}),
});

export const enrollmentChanged = (
  o: EventOrigin,
  change: Exclude<Change, 'deleted'>,
  e: IndividualEnrollment,
  etag: string,
) =>
  event(o, `opendps.enrollment.${change}`, e.registrationId, {
    registrationId: e.registrationId,
    etag,
    ...(e.deviceId ? { deviceId: e.deviceId } : {}),
    ...enrollmentFields(e),
  });

export const enrollmentDeleted = (o: EventOrigin, registrationId: string) =>
  event(o, 'opendps.enrollment.deleted', registrationId, { registrationId });

export const enrollmentGroupChanged = (
  o: EventOrigin,
  change: Exclude<Change, 'deleted'>,
  g: EnrollmentGroup,
  etag: string,
) =>
  event(o, `opendps.enrollmentGroup.${change}`, g.enrollmentGroupId, {
    enrollmentGroupId: g.enrollmentGroupId,
    etag,
    ...enrollmentFields(g),
  });

export const enrollmentGroupDeleted = (o: EventOrigin, enrollmentGroupId: string) =>
  event(o, 'opendps.enrollmentGroup.deleted', enrollmentGroupId, { enrollmentGroupId });

export const registrationStateDeleted = (o: EventOrigin, registrationId: string) =>
  event(o, 'opendps.registrationState.deleted', registrationId, { registrationId });

/** A linked hub without its connection string. */
export const linkedHubChanged = (o: EventOrigin, change: Exclude<Change, 'deleted'>, hub: LinkedHub) =>
  event(o, `opendps.linkedHub.${change}`, hub.hostName, {
    hostName: hub.hostName,
    ...(hub.location ? { location: hub.location } : {}),
    allocationWeight: hub.allocationWeight,
    applyAllocationPolicy: hub.applyAllocationPolicy,
  });

export const linkedHubDeleted = (o: EventOrigin, hostName: string) =>
  event(o, 'opendps.linkedHub.deleted', hostName, { hostName });

/** A policy's name and rights, never its keys. */
export const accessPolicyChanged = (
  o: EventOrigin,
  change: Exclude<Change, 'deleted'>,
  policy: Pick<AccessPolicy, 'name' | 'rights'>,
) => event(o, `opendps.accessPolicy.${change}`, policy.name, { name: policy.name, rights: [...policy.rights] });

export const accessPolicyKeyRegenerated = (
  o: EventOrigin,
  policy: Pick<AccessPolicy, 'name' | 'rights'>,
  keyType: 'primary' | 'secondary',
) =>
  event(o, 'opendps.accessPolicy.keyRegenerated', policy.name, {
    name: policy.name,
    rights: [...policy.rights],
    keyType,
  });

export const accessPolicyDeleted = (o: EventOrigin, name: string) =>
  event(o, 'opendps.accessPolicy.deleted', name, { name });

export const settingsUpdated = (o: EventOrigin, settings: ServiceSettings) =>
  event(o, 'opendps.settings.updated', 'settings', { defaultAllocationPolicy: settings.defaultAllocationPolicy });

/** The partition key of an event on Event Hubs: its subject, lower-cased (registration IDs are case-insensitive). */
export const partitionKeyOf = (e: CloudEvent): string => e.subject.toLowerCase();
