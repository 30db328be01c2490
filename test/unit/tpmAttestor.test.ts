// The TPM attestor on its own (in-memory challenge store, fixed clock): challenge, verification, and every refusal.
import { randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { TPM_CHALLENGE_TTL_MS, TpmAttestor } from '../../shared/attestation/tpm/attestor';
import type { TpmChallenge, TpmChallengeStore } from '../../shared/attestation/tpm/challengeStore';
import type { IndividualEnrollment } from '../../shared/domain/enrollment';
import { DpsError } from '../../shared/errors';
import { createSas, parseSas } from '../../shared/http/sas';
import type { DeviceRequest } from '../../shared/registration/deviceRequest';
import { dpsErrorOf } from '../support/dpsError';
import { CAPTURED_EK, CAPTURED_SRK, foreignEndorsementKey } from '../support/tpmKeys';

const SCOPE = '0ne00000A0A';
const REG_ID = 'tpm-device-1';
const NOW = new Date('2026-01-01T00:00:00Z');

class MemoryStore implements TpmChallengeStore {
  readonly rows = new Map<string, TpmChallenge>();
  save(id: string, challenge: TpmChallenge): Promise<void> {
    this.rows.set(id, challenge);
    return Promise.resolve();
  }
  latest(id: string): Promise<TpmChallenge | undefined> {
    return Promise.resolve(this.rows.get(id));
  }
}

const enrollment = (tpm: { endorsementKey: string; storageRootKey?: string }): IndividualEnrollment => ({
  registrationId: REG_ID,
  attestation: { type: 'tpm', tpm },
  provisioningStatus: 'enabled',
});

function request(extra: Partial<DeviceRequest> = {}): DeviceRequest {
  return {
    idScope: SCOPE,
    registrationId: REG_ID,
    sasToken: null,
    tpm: { endorsementKey: CAPTURED_EK, storageRootKey: CAPTURED_SRK },
    forceRegistration: false,
    ...extra,
  };
}

const sas = (keyBase64: string, at = NOW) =>
  parseSas(createSas(`${SCOPE}/registrations/${REG_ID}`, keyBase64, Math.floor(at.getTime() / 1000) + 3600));

async function refusal(promise: Promise<unknown>, message: RegExp): Promise<DpsError> {
  const err = await dpsErrorOf(promise);
  expect(err).toMatchObject({ status: 401, errorCode: 401002 });
  expect(err.message).toMatch(message);
  return err;
}

describe('TpmAttestor', () => {
  const setup = (tpm: { endorsementKey: string; storageRootKey?: string } = { endorsementKey: CAPTURED_EK }) => {
    const store = new MemoryStore();
    return { store, attestor: new TpmAttestor(store), candidates: { individual: enrollment(tpm), groups: [] } };
  };

  it('answers the EK with a challenge, then accepts a SAS signed with its key: hub key and blob from the same challenge', async () => {
    const { store, attestor, candidates } = setup();
    const err = await refusal(attestor.attest(request(), candidates, NOW), /TPM challenge/);
    const blob = err.extraBody.authenticationKey as string;
    expect(Buffer.from(blob, 'base64')).toHaveLength(766);
    expect(err.extraBody.keyName).toBe('registration');
    const stored = store.rows.get(REG_ID);
    expect(stored).toBeDefined();
    const challenge = stored as TpmChallenge;
    expect(challenge.challengeKey).not.toBe(challenge.hubKey);

    const attestation = await attestor.attest(request({ sasToken: sas(challenge.challengeKey) }), candidates, NOW);
    expect(attestation).toMatchObject({
      kind: 'individual',
      hubAuthentication: { type: 'sas', primaryKey: challenge.hubKey, secondaryKey: challenge.hubKey },
      registrationFields: { tpm: { authenticationKey: challenge.hubAuthenticationKey } },
    });
    // Polls (no tpm body, like the Edge runtime) pass on the same key, and the fast path agrees.
    const poll = request({ sasToken: sas(challenge.challengeKey), tpm: undefined });
    await expect(attestor.attest(poll, candidates, NOW)).resolves.toBeDefined();
    expect(attestation.recent?.(poll, NOW)).toBe(true);
    expect(attestation.recent?.(request({ sasToken: sas(randomBytes(32).toString('base64')) }), NOW)).toBe(false);
  });

  it('uses the enrolled SRK when the device sends none, and says so when neither has one', async () => {
    const withSrk = setup({ endorsementKey: CAPTURED_EK, storageRootKey: CAPTURED_SRK });
    const only = request({ tpm: { endorsementKey: CAPTURED_EK } });
    await refusal(withSrk.attestor.attest(only, withSrk.candidates, NOW), /TPM challenge/);
    const without = setup();
    await refusal(without.attestor.attest(only, without.candidates, NOW), /storage root key is missing/);
    expect(without.store.rows.size).toBe(0);
  });

  it('refuses an EK that is not enrolled, or not the enrolled one', async () => {
    const { attestor, candidates } = setup();
    const unknown = await refusal(attestor.attest(request(), { groups: [] }, NOW), /endorsement key is not enrolled/);
    const symmetric: IndividualEnrollment = { registrationId: REG_ID, attestation: { type: 'symmetricKey' } };
    const other = await refusal(attestor.attest(request(), { individual: symmetric, groups: [] }, NOW), /not enrolled/);
    const wrong = request({ tpm: { endorsementKey: foreignEndorsementKey(), storageRootKey: CAPTURED_SRK } });
    const mismatch = await refusal(attestor.attest(wrong, candidates, NOW), /not enrolled/);
    // The device sees one answer (no hint which IDs are enrolled); the event detail says which check failed.
    expect(new Set([unknown.message, other.message, mismatch.message]).size).toBe(1);
    expect([unknown.detail, other.detail, mismatch.detail]).toEqual([
      expect.stringMatching(/no TPM individual enrollment/),
      expect.stringMatching(/uses symmetricKey attestation/),
      expect.stringMatching(/does not match the enrolled one/),
    ]);
  });

  it('answers a malformed EK or SRK with a 400 naming the field', async () => {
    const { attestor, candidates } = setup();
    const badSrk = request({ tpm: { endorsementKey: CAPTURED_EK, storageRootKey: 'AAAA' } });
    const err = await dpsErrorOf(attestor.attest(badSrk, candidates, NOW));
    expect(err.status).toBe(400);
    expect(err.message).toContain("'tpm.storageRootKey'");
  });

  it('refuses a SAS with no challenge, an expired challenge, another key, or a challenge for an EK since replaced', async () => {
    const { store, attestor, candidates } = setup();
    const someKey = randomBytes(32).toString('base64');
    await refusal(attestor.attest(request({ sasToken: sas(someKey) }), candidates, NOW), /No TPM challenge was issued/);

    await refusal(attestor.attest(request(), candidates, NOW), /TPM challenge/);
    const key = (store.rows.get(REG_ID) as TpmChallenge).challengeKey;
    await refusal(attestor.attest(request({ sasToken: sas(someKey) }), candidates, NOW), /not signed with the key/);
    const later = new Date(NOW.getTime() + TPM_CHALLENGE_TTL_MS + 1000);
    await refusal(attestor.attest(request({ sasToken: sas(key, later) }), candidates, later), /expired/);

    const reEnrolled = { individual: enrollment({ endorsementKey: foreignEndorsementKey() }), groups: [] };
    const poll = request({ sasToken: sas(key), tpm: undefined });
    // A bare SAS did not show the enrolled EK: answered as a SAS for an unknown ID, the reason in the detail.
    const bare = await refusal(attestor.attest(poll, reEnrolled, NOW), /^Unauthorized$/);
    expect(bare.detail).toMatch(/changed after the TPM challenge/);
    const stranger = request({ sasToken: sas(someKey), tpm: undefined });
    expect((await refusal(attestor.attest(stranger, candidates, NOW), /^Unauthorized$/)).detail).toMatch(
      /not signed with the key/,
    );
  });

  it('a new challenge replaces the old one', async () => {
    const { store, attestor, candidates } = setup();
    await refusal(attestor.attest(request(), candidates, NOW), /TPM challenge/);
    const first = (store.rows.get(REG_ID) as TpmChallenge).challengeKey;
    await refusal(attestor.attest(request(), candidates, NOW), /TPM challenge/);
    const err = await refusal(
      attestor.attest(request({ sasToken: sas(first) }), candidates, NOW),
      /latest TPM challenge \(an earlier, replaced challenge or another key\)/,
    );
    expect(err).toBeInstanceOf(DpsError);
  });
});
