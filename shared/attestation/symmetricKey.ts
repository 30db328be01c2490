// Symmetric-key attestation: "is this SAS token from this device?" for individual enrollments and groups.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import type { EnrollmentGroup, IndividualEnrollment } from '../domain/enrollment';
import { symmetricKeys } from '../domain/enrollment';
import { unauthorized } from '../errors';
import type { SasToken } from '../http/sas';
import { assertNotExpired } from '../http/sas';
import type { DeviceRequest } from '../registration/deviceRequest';
import type { Attestation, AttestationCandidates, Attestor } from './attestation';

/** HMAC-SHA256; a port so tests can count the work an attestation does. */
export type Hmac = (key: Buffer, data: string) => Buffer;

const hmacSha256: Hmac = (key, data) => createHmac('sha256', key).update(data, 'utf8').digest();

/** Group device key = base64(HMAC-SHA256(base64decode(groupKey), registrationId)) — DPS docs, C SDK symm_key_provision. */
export function deriveDeviceKey(groupKeyBase64: string, registrationId: string, hmac: Hmac = hmacSha256): string {
  return hmac(Buffer.from(groupKeyBase64, 'base64'), registrationId).toString('base64');
}

export type SymmetricKeyMatch =
  | { kind: 'individual'; enrollment: IndividualEnrollment; deviceKeys: string[] }
  | { kind: 'group'; group: EnrollmentGroup; deviceKeys: string[] };

/**
 * Stands in for an individual enrollment's keys when there is none (or it has one key), so that every request checks
 * the same number of keys. Random per process: it can never be the key a token was signed with.
 */
const PLACEHOLDER_KEY = randomBytes(32).toString('base64');
const INDIVIDUAL_SLOTS = 2;

/**
 * Checks the token's resource and expiry, then finds the enrollment whose key signed it: the individual enrollment if
 * there is one (it is authoritative: no fallback to groups, as DPS), else the first symmetric-key group whose derived
 * primary or secondary key verifies. Every failure is 401/401002, so a caller cannot probe which devices are enrolled.
 *
 * The work does not depend on whether the registration ID is enrolled, nor on which group (if any) matches: every
 * group's keys are derived and checked, and two individual-key slots are checked (placeholders when there is no
 * individual enrollment). Otherwise an unknown ID (tried against every group) would take measurably longer than an
 * enrolled one, and enrolled devices could be found by timing. The cost is 2 + 2 × (group keys) HMACs per request.
 * `deviceKeys` are the device's own keys (derived for groups), primary first, for the hub identity.
 */
export function attestSymmetricKey(
  token: SasToken,
  expectedResource: string,
  registrationId: string,
  individual: IndividualEnrollment | undefined,
  groups: readonly EnrollmentGroup[],
  now: Date,
  hmac: Hmac = hmacSha256,
  maxSasLifetimeSeconds?: number,
): SymmetricKeyMatch {
  assertTokenFor(token, expectedResource, now, maxSasLifetimeSeconds);
  const individualKeys = individual ? symmetricKeys(individual.attestation) : [];
  const slots = Array.from({ length: INDIVIDUAL_SLOTS }, (_, i) => individualKeys[i] ?? PLACEHOLDER_KEY);
  const individualSigned = slots.map((k) => signedBy(token, k, hmac)).some(Boolean);
  // Every group, every key, no early exit (see above).
  const derived = groups.map((g) => symmetricKeys(g.attestation).map((k) => deriveDeviceKey(k, registrationId, hmac)));
  const groupSigned = derived.map((keys) => keys.map((k) => signedBy(token, k, hmac)).some(Boolean));

  if (individual) {
    if (individualSigned && individualKeys.length > 0) {
      return { kind: 'individual', enrollment: individual, deviceKeys: individualKeys };
    }
    // The device only hears 401 (no hint which IDs are enrolled); the event says which check failed.
    throw unauthorized(
      undefined,
      individualKeys.length > 0
        ? "bad signature: the token is not signed by the individual enrollment's keys"
        : `wrong mechanism: the individual enrollment uses ${individual.attestation.type} attestation, not a symmetric key`,
    );
  }
  const index = groupSigned.indexOf(true);
  const group = groups[index];
  const deviceKeys = derived[index];
  if (group && deviceKeys) return { kind: 'group', group, deviceKeys };
  throw unauthorized(
    undefined,
    'unknown device or bad signature: no individual enrollment, and no group key signs the token',
  );
}

/** The token names this resource, has not expired and is not valid for too long (401 otherwise). */
export function assertTokenFor(
  token: SasToken,
  expectedResource: string,
  now: Date,
  maxSasLifetimeSeconds?: number,
): void {
  // The C SDK encodes sr with lower-case %2f and others with %2F; the decoded form is compared case-insensitively.
  if (token.resource.toLowerCase() !== expectedResource.toLowerCase()) {
    throw unauthorized('The SharedAccessSignature resource (sr) does not match this registration.');
  }
  assertNotExpired(token, now, maxSasLifetimeSeconds);
}

/** Whether one of these device keys (base64) signed the token. */
export function signedByOneOf(token: SasToken, deviceKeys: readonly string[], hmac: Hmac = hmacSha256): boolean {
  return deviceKeys.some((k) => signedBy(token, k, hmac));
}

/** sig = HMAC-SHA256(key, sr + "\n" + se) over the literal sr, compared in constant time. */
function signedBy(token: SasToken, keyBase64: string, hmac: Hmac): boolean {
  const expected = hmac(Buffer.from(keyBase64, 'base64'), `${token.srLiteral}\n${token.expiry}`);
  return expected.length === token.signature.length && timingSafeEqual(expected, token.signature);
}

/** The `sr` a device's token must name. */
export const resourceOf = (request: Pick<DeviceRequest, 'idScope' | 'registrationId'>): string =>
  `${request.idScope}/registrations/${request.registrationId}`;

/** The symmetric-key implementation of the attestation seam. */
export class SymmetricKeyAttestor implements Attestor {
  readonly mechanism = 'symmetricKey';

  private readonly hmac: Hmac;
  private readonly maxSasLifetimeSeconds: number | undefined;

  /** `maxSasLifetimeSeconds`: DPS_MAX_SAS_LIFETIME_SECONDS (default one year); `hmac`: a port for tests. */
  constructor(options: { maxSasLifetimeSeconds?: number; hmac?: Hmac } = {}) {
    this.hmac = options.hmac ?? hmacSha256;
    this.maxSasLifetimeSeconds = options.maxSasLifetimeSeconds;
  }

  attest(request: DeviceRequest, candidates: AttestationCandidates, now: Date): Attestation {
    const token = request.sasToken;
    if (token === null) {
      throw unauthorized('This registration uses symmetric-key attestation: the SharedAccessSignature is missing.');
    }
    const match = attestSymmetricKey(
      token,
      resourceOf(request),
      request.registrationId,
      candidates.individual,
      candidates.groups.filter((g) => g.attestation.type === 'symmetricKey'),
      now,
      this.hmac,
      this.maxSasLifetimeSeconds,
    );
    const [primaryKey = '', secondaryKey = primaryKey] = match.deviceKeys;
    const { deviceKeys } = match;
    const hmac = this.hmac;
    // A later poll is this device if its token, for this registration and unexpired, is signed by one of these keys.
    const recent = (later: DeviceRequest, at: Date): boolean => {
      const t = later.sasToken;
      if (t === null || t.resource.toLowerCase() !== resourceOf(later).toLowerCase()) return false;
      if (t.expiry * 1000 <= at.getTime()) return false;
      return signedByOneOf(t, deviceKeys, hmac);
    };
    const common = { hubAuthentication: { type: 'sas', primaryKey, secondaryKey } as const, recent };
    return match.kind === 'individual'
      ? { ...common, kind: 'individual', enrollment: match.enrollment, registrationFields: { symmetricKey: {} } }
      : {
          ...common,
          kind: 'group',
          enrollment: match.group,
          enrollmentGroupId: match.group.enrollmentGroupId,
          registrationFields: { symmetricKey: { enrollmentGroupId: match.group.enrollmentGroupId } },
        };
  }
}
