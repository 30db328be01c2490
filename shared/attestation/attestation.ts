// The attestation seam: one result shape for every mechanism, one Attestor per mechanism, and the choice of attestor.
// RegistrationService only sees this module: allocation, the hub step and the commit are the same for all mechanisms.
import type { EnrollmentGroup, IndividualEnrollment } from '../domain/enrollment';
import type { X509CertificateInfo } from '../domain/registrationState';
import { unauthorized } from '../errors';
import type { DeviceRequest } from '../registration/deviceRequest';

export type Mechanism = 'symmetricKey' | 'x509' | 'tpm';

/** How the device's identity is created on its IoT hub (IoT Hub's `authentication` of a device). */
export type HubAuthentication =
  | { type: 'sas'; primaryKey: string; secondaryKey: string }
  | { type: 'selfSigned'; primaryThumbprint: string; secondaryThumbprint: string }
  | { type: 'certificateAuthority' };

/** What the mechanism contributes to `registrationState` (exactly one of these keys). */
export type RegistrationFields =
  | { symmetricKey: { enrollmentGroupId?: string } }
  | {
      x509: {
        enrollmentGroupId?: string;
        certificateInfo: X509CertificateInfo;
        signingCertificateInfo?: X509CertificateInfo;
      };
    }
  | { tpm: { authenticationKey: string } };

/**
 * What a later poll or status lookup of the same device, on this instance and within the cache TTL, may check
 * instead of re-attesting: true when the request is provably from the device attested before (e.g. its SAS token is
 * signed by one of the keys it attested with). Mechanisms that must verify on every request (X.509) leave it out.
 */
export type RecentCheck = (request: DeviceRequest, now: Date) => boolean;

/** The one result shape of every attestor: which enrollment matched, and what the rest of the flow needs from it. */
export type Attestation = {
  hubAuthentication: HubAuthentication;
  registrationFields: RegistrationFields;
  recent?: RecentCheck;
} & (
  | { kind: 'individual'; enrollment: IndividualEnrollment; enrollmentGroupId?: undefined }
  | { kind: 'group'; enrollment: EnrollmentGroup; enrollmentGroupId: string }
);

/** The enrollments a request may match: the device partition's individual enrollment and the (cached) groups. */
export interface AttestationCandidates {
  individual?: IndividualEnrollment;
  groups: readonly EnrollmentGroup[];
  /** The device partition's sealed TPM challenge, read with the enrollment (null: none; undefined: not read). */
  tpmChallenge?: string | null;
}

/**
 * One per mechanism, answering only "is this request this device, and by which enrollment?". A refusal is a
 * DpsError (401/401002 naming the failed check; it may carry extra body fields, e.g. TPM's challenge).
 */
export interface Attestor {
  readonly mechanism: Mechanism;
  attest(request: DeviceRequest, candidates: AttestationCandidates, now: Date): Attestation | Promise<Attestation>;
}

export type Attestors = Partial<Record<Mechanism, Attestor>>;

/** Which mechanism the request presents: a TPM body, else a client certificate, else a SAS token. */
export function presentedMechanism(request: DeviceRequest): Mechanism | undefined {
  if (request.tpm !== undefined) return 'tpm';
  if (request.clientCertificate !== undefined) return 'x509';
  if (request.sasToken !== null) return 'symmetricKey';
  return undefined;
}

/**
 * The attestor for this request. An individual enrollment's attestation type decides when the request presents that
 * mechanism's credential, or a SAS to a TPM enrollment (a TPM device's re-sent PUT and polls carry a SAS signed in the
 * TPM); otherwise the credential the request presents decides. A credential the enrolled mechanism can never accept
 * (a SAS for X.509, a TPM key or a certificate for another mechanism) goes to its own attestor, which refuses it
 * exactly as it refuses an unknown registration ID (same message, same work): answering in the enrolled mechanism's
 * terms ("the SharedAccessSignature is missing") would tell an unauthenticated caller which IDs are enrolled, and how.
 */
export function chooseAttestor(
  attestors: Attestors,
  request: DeviceRequest,
  individual: IndividualEnrollment | undefined,
): Attestor {
  const enrolled = individual?.attestation.type;
  const presented = presentedMechanism(request);
  const authoritative = enrolled === presented || (enrolled === 'tpm' && presented === 'symmetricKey');
  const mechanism = authoritative ? enrolled : presented;
  if (mechanism === undefined) throw noCredential();
  const attestor = attestors[mechanism];
  if (!attestor) throw unauthorized(`${MECHANISM_NAMES[mechanism]} attestation is not available on this service.`);
  return attestor;
}

/** 401 for a request that presents no credential at all (checked before anything is read). */
export const noCredential = () =>
  unauthorized(
    'No credential was presented: send a SharedAccessSignature in the Authorization header (symmetric key or TPM), ' +
      'a client certificate (X.509), or a TPM endorsement key in the request body.',
  );

const MECHANISM_NAMES: Record<Mechanism, string> = { symmetricKey: 'Symmetric-key', x509: 'X.509', tpm: 'TPM' };
