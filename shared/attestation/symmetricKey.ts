// Symmetric-key attestation: "is this SAS token from this device?" for individual enrollments and groups.
import { createHmac } from 'node:crypto';

import type { EnrollmentGroup, IndividualEnrollment } from '../domain/enrollment';
import { symmetricKeys } from '../domain/enrollment';
import { unauthorized } from '../errors';
import type { SasToken } from '../http/sas';
import { assertNotExpired, verifySignature } from '../http/sas';

/** Group device key = base64(HMAC-SHA256(base64decode(groupKey), registrationId)) — DPS docs, C SDK symm_key_provision. */
export function deriveDeviceKey(groupKeyBase64: string, registrationId: string): string {
  return createHmac('sha256', Buffer.from(groupKeyBase64, 'base64')).update(registrationId, 'utf8').digest('base64');
}

export type SymmetricKeyMatch =
  | { kind: 'individual'; enrollment: IndividualEnrollment; deviceKeys: string[] }
  | { kind: 'group'; group: EnrollmentGroup; deviceKeys: string[] };

/**
 * Checks the token's resource and expiry, then finds the enrollment whose key signed it: the individual enrollment if
 * there is one (it is authoritative: no fallback to groups, as DPS), else the first symmetric-key group whose derived
 * primary or secondary key verifies. Every failure is 401/401002, so a caller cannot probe which devices are enrolled.
 * `deviceKeys` are the device's own keys (derived for groups), primary first, for the hub identity.
 */
export function attestSymmetricKey(
  token: SasToken,
  expectedResource: string,
  registrationId: string,
  individual: IndividualEnrollment | undefined,
  groups: readonly EnrollmentGroup[],
  now: Date,
): SymmetricKeyMatch {
  assertTokenFor(token, expectedResource, now);
  if (individual) {
    const keys = symmetricKeys(individual.attestation);
    if (signedByOneOf(token, keys)) return { kind: 'individual', enrollment: individual, deviceKeys: keys };
    throw unauthorized();
  }
  for (const group of groups) {
    const derived = symmetricKeys(group.attestation).map((k) => deriveDeviceKey(k, registrationId));
    if (signedByOneOf(token, derived)) return { kind: 'group', group, deviceKeys: derived };
  }
  throw unauthorized();
}

/** The token names this resource and has not expired (401 otherwise). */
export function assertTokenFor(token: SasToken, expectedResource: string, now: Date): void {
  // The C SDK encodes sr with lower-case %2f and others with %2F; the decoded form is compared case-insensitively.
  if (token.resource.toLowerCase() !== expectedResource.toLowerCase()) {
    throw unauthorized('The SharedAccessSignature resource (sr) does not match this registration.');
  }
  assertNotExpired(token, now);
}

/** Whether one of these device keys (base64) signed the token. */
export function signedByOneOf(token: SasToken, deviceKeys: readonly string[]): boolean {
  return deviceKeys.some((k) => verifySignature(token, Buffer.from(k, 'base64')));
}
