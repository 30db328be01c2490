// TPM attestation (reference/dps-protocol.md §2.4): the first PUT presents the EK and SRK and gets a 401 carrying an
// activation blob only that TPM can open; later requests carry a SAS signed inside the TPM with the key it imported.
import type { IndividualEnrollment } from '../../domain/enrollment';
import { badRequest, DpsError, unauthorized } from '../../errors';
import type { SasToken } from '../../http/sas';
import { verifySignature } from '../../http/sas';
import type { DeviceRequest } from '../../registration/deviceRequest';
import type { Attestation, AttestationCandidates, Attestor } from '../attestation';
import { assertTokenFor, resourceOf } from '../symmetricKey';
import { createActivationChallenge } from './activation';
import type { TpmChallenge, TpmChallengeStore } from './challengeStore';
import { TpmFormatError } from './marshal';
import type { TpmPublicKey } from './publicKey';
import { decodeTpmPublicKey } from './publicKey';

/** How long a challenge's key is accepted: a device signs right after activating it; a later run asks afresh. */
export const TPM_CHALLENGE_TTL_MS = 60 * 60 * 1000;

export class TpmAttestor implements Attestor {
  readonly mechanism = 'tpm';

  /** `maxSasLifetimeSeconds`: DPS_MAX_SAS_LIFETIME_SECONDS (default one year). */
  constructor(
    private readonly challenges: TpmChallengeStore,
    private readonly maxSasLifetimeSeconds?: number,
  ) {}

  async attest(request: DeviceRequest, candidates: AttestationCandidates, now: Date): Promise<Attestation> {
    const enrollment = candidates.individual;
    const enrolled = enrollment?.attestation.type === 'tpm' ? enrollment.attestation.tpm : undefined;
    // One answer whether the ID is unknown, enrolled for another mechanism or for another EK: a stranger presenting
    // some EK must not learn which IDs are enrolled. The event says which it was.
    const notEnrolled = (detail: string) =>
      unauthorized(`The endorsement key is not enrolled for registration ID '${request.registrationId}'.`, detail);
    if (!enrollment || !enrolled) {
      throw notEnrolled(
        enrollment
          ? `wrong mechanism: the individual enrollment uses ${enrollment.attestation.type} attestation, not TPM`
          : 'no TPM individual enrollment for this registration ID',
      );
    }
    const enrolledEk = enrolledKey(enrolled.endorsementKey);
    // Devices re-send the EK with their SAS (C#, Node, C): it must still be the enrolled one.
    const presentedEk = request.tpm ? bodyKey(request.tpm.endorsementKey, 'tpm.endorsementKey') : undefined;
    if (presentedEk && !presentedEk.tpm2b.equals(enrolledEk.tpm2b)) {
      throw notEnrolled('the endorsement key does not match the enrolled one');
    }
    const token = request.sasToken;
    if (token === null) return this.challenge(request, enrollment, enrolledEk, enrolled.storageRootKey, now);
    // Checked as for any SAS (the symmetric-key attestor gives the same answers for an unknown ID).
    assertTokenFor(token, resourceOf(request), now, this.maxSasLifetimeSeconds);
    try {
      return await this.verify(token, enrollment, enrolledEk, candidates.tpmChallenge, now);
    } catch (err) {
      // A bare SAS (a poll) did not show the enrolled EK: answer as the symmetric-key attestor answers a SAS for an
      // unknown ID, so a SAS made up for any ID does not reveal TPM enrollments. With the EK, the reason is told.
      if (presentedEk || !(err instanceof DpsError) || err.status !== 401) throw err;
      throw unauthorized(undefined, err.detail ?? err.message);
    }
  }

  /** No SAS yet: issue a challenge (replacing any earlier one) and answer with it as DPS does, a 401. */
  private async challenge(
    request: DeviceRequest,
    enrollment: IndividualEnrollment,
    ek: TpmPublicKey,
    enrolledSrk: string | undefined,
    now: Date,
  ): Promise<never> {
    if (!request.tpm) {
      throw unauthorized(
        'This registration uses TPM attestation: send tpm.endorsementKey and tpm.storageRootKey without ' +
          'Authorization to get a challenge, then a SharedAccessSignature signed with the key it carries.',
      );
    }
    const srkText = request.tpm.storageRootKey ?? enrolledSrk;
    if (!srkText) {
      throw unauthorized('The storage root key is missing: send tpm.storageRootKey (the challenge is wrapped to it).');
    }
    const srk = request.tpm.storageRootKey
      ? bodyKey(srkText, 'tpm.storageRootKey')
      : enrolledKey(srkText, 'storage root key');
    const device = createActivationChallenge(ek, srk);
    const hub = createActivationChallenge(ek, srk);
    const record: TpmChallenge = {
      challengeKey: device.hmacKey.toString('base64'),
      hubKey: hub.hmacKey.toString('base64'),
      hubAuthenticationKey: hub.blob,
      endorsementKey: ek.tpm2b.toString('base64'),
      issuedAtUtc: now.toISOString(),
    };
    await this.challenges.save(enrollment.registrationId, record);
    // The C SDK uses keyName as the token's skn and refuses a body with a `status` field.
    throw new DpsError(
      401,
      401002,
      'TPM challenge: activate authenticationKey in the TPM, then sign a SharedAccessSignature with the imported key.',
      {},
      { authenticationKey: device.blob, keyName: 'registration' },
    );
  }

  /**
   * A SAS, its resource and expiry checked: it must be signed with the key of this registration's latest, unexpired
   * challenge for the enrolled EK.
   */
  private async verify(
    token: SasToken,
    enrollment: IndividualEnrollment,
    ek: TpmPublicKey,
    sealed: string | null | undefined,
    now: Date,
  ): Promise<Attestation> {
    const latest = await this.challenges.latest(enrollment.registrationId, sealed);
    if (!latest) {
      throw unauthorized(
        'No TPM challenge was issued for this registration: send the endorsement key without Authorization first.',
      );
    }
    if (now.getTime() - Date.parse(latest.issuedAtUtc) > TPM_CHALLENGE_TTL_MS) {
      throw unauthorized(
        `The TPM challenge for this registration expired (issued ${latest.issuedAtUtc}, valid for ` +
          `${TPM_CHALLENGE_TTL_MS / 60_000} minutes): send the endorsement key without Authorization for a new one.`,
      );
    }
    if (latest.endorsementKey !== ek.tpm2b.toString('base64')) {
      throw unauthorized('The enrolled endorsement key changed after the TPM challenge was issued: register again.');
    }
    const challengeKey = Buffer.from(latest.challengeKey, 'base64');
    if (!verifySignature(token, challengeKey)) {
      throw unauthorized(
        "The SharedAccessSignature is not signed with the key of this registration's latest TPM challenge " +
          '(an earlier, replaced challenge or another key).',
      );
    }
    return {
      kind: 'individual',
      enrollment,
      hubAuthentication: { type: 'sas', primaryKey: latest.hubKey, secondaryKey: latest.hubKey },
      registrationFields: { tpm: { authenticationKey: latest.hubAuthenticationKey } },
      // A later poll is this device if its token, for this registration and unexpired, is signed with the same key.
      recent: (later, at) => {
        const t = later.sasToken;
        if (t === null || t.resource.toLowerCase() !== resourceOf(later).toLowerCase()) return false;
        return t.expiry * 1000 > at.getTime() && verifySignature(t, challengeKey);
      },
    };
  }
}

/** A key from the device's body: malformed is the device's bad request, naming the field. */
function bodyKey(value: string, field: string): TpmPublicKey {
  try {
    return decodeTpmPublicKey(value);
  } catch (error) {
    if (error instanceof TpmFormatError) {
      throw badRequest(`Invalid field '${field}': must be base64 of an RSA-2048 TPM2B_PUBLIC (${error.message}).`);
    }
    throw error;
  }
}

/** A key from the enrollment (validated when written; this guards rows written before validation existed). */
function enrolledKey(value: string, what = 'endorsement key'): TpmPublicKey {
  try {
    return decodeTpmPublicKey(value);
  } catch (error) {
    if (error instanceof TpmFormatError) throw unauthorized(`The enrolled ${what} is not usable (${error.message}).`);
    throw error;
  }
}
