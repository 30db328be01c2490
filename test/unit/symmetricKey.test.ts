import { createHmac } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import type { Hmac } from '../../shared/attestation/symmetricKey';
import { attestSymmetricKey, deriveDeviceKey, SymmetricKeyAttestor } from '../../shared/attestation/symmetricKey';
import type { EnrollmentGroup, IndividualEnrollment } from '../../shared/domain/enrollment';
import type { SasToken } from '../../shared/http/sas';
import { parseSas } from '../../shared/http/sas';
import type { DeviceRequest } from '../../shared/registration/deviceRequest';
import { expect401 } from '../support/dpsError';

const SCOPE = '0ne00000A0A';
const REG_ID = 'sym-device-1';
const RESOURCE = `${SCOPE}/registrations/${REG_ID}`;
const NOW = new Date('2024-01-01T00:00:00Z');
const SE = Math.floor(NOW.getTime() / 1000) + 3600;

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const GROUP_PRIMARY = b64('group-key-material-for-tests-64!');
const GROUP_SECONDARY = b64('group-secondary-key-material-000');
const OTHER_GROUP_KEY = b64('some-other-group-key-material-00');
const IND_PRIMARY = b64('individual-primary-key-32-bytes!');
const IND_SECONDARY = b64('individual-secondary-key-32-byte');

/** Independent derivation (node:crypto), not deriveDeviceKey. */
const derive = (groupKeyB64: string, registrationId: string): string =>
  createHmac('sha256', Buffer.from(groupKeyB64, 'base64')).update(registrationId, 'utf8').digest('base64');

/** A token signed independently with node:crypto over the literal sr. */
function token(keyB64: string, sr: string = RESOURCE, se: number = SE): SasToken {
  const sig = createHmac('sha256', Buffer.from(keyB64, 'base64')).update(`${sr}\n${se}`).digest('base64');
  return parseSas(`SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=registration`);
}

const individual = (primaryKey?: string, secondaryKey?: string): IndividualEnrollment => ({
  registrationId: REG_ID,
  attestation: {
    type: 'symmetricKey',
    symmetricKey: { ...(primaryKey ? { primaryKey } : {}), ...(secondaryKey ? { secondaryKey } : {}) },
  },
});

const group = (id: string, primaryKey: string, secondaryKey?: string): EnrollmentGroup => ({
  enrollmentGroupId: id,
  attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, ...(secondaryKey ? { secondaryKey } : {}) } },
});

describe('deriveDeviceKey', () => {
  it('group device key = HMAC(groupKey, registrationId) (literal vector computed with openssl)', () => {
    expect(deriveDeviceKey(GROUP_PRIMARY, REG_ID)).toBe('FLlcMckl7S5svA55nNFtl8BRXDuqf/Eg5wlRTxqj9zA=');
  });

  it('group device key = HMAC(base64decode(groupKey), UTF-8 registrationId) for a 64-byte key', () => {
    const key64 = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff)).toString('base64');
    for (const id of ['dev-a', 'Dev.B_c:d', 'x']) {
      expect(deriveDeviceKey(key64, id)).toBe(derive(key64, id));
    }
  });

  it('depends on the registration ID', () => {
    expect(deriveDeviceKey(GROUP_PRIMARY, 'device-a')).not.toBe(deriveDeviceKey(GROUP_PRIMARY, 'device-b'));
  });
});

describe('attestSymmetricKey: individual enrollments', () => {
  it('accepts a token signed with the individual primary key', () => {
    const match = attestSymmetricKey(
      token(IND_PRIMARY),
      RESOURCE,
      REG_ID,
      individual(IND_PRIMARY, IND_SECONDARY),
      [],
      NOW,
    );
    expect(match.kind).toBe('individual');
    expect(match.deviceKeys).toEqual([IND_PRIMARY, IND_SECONDARY]);
  });

  it('accepts a token signed with the individual secondary key', () => {
    const match = attestSymmetricKey(
      token(IND_SECONDARY),
      RESOURCE,
      REG_ID,
      individual(IND_PRIMARY, IND_SECONDARY),
      [],
      NOW,
    );
    expect(match.kind).toBe('individual');
  });

  it('rejects a token signed with an unrelated key', () => {
    expect401(() =>
      attestSymmetricKey(token(OTHER_GROUP_KEY), RESOURCE, REG_ID, individual(IND_PRIMARY, IND_SECONDARY), [], NOW),
    );
  });

  it('individual enrollment is authoritative: a group-derived key is rejected when an individual enrollment exists', () => {
    const groupDerived = derive(GROUP_PRIMARY, REG_ID);
    // Sanity: the same token is accepted through the group when there is no individual enrollment.
    expect(
      attestSymmetricKey(token(groupDerived), RESOURCE, REG_ID, undefined, [group('g1', GROUP_PRIMARY)], NOW).kind,
    ).toBe('group');
    expect401(() =>
      attestSymmetricKey(
        token(groupDerived),
        RESOURCE,
        REG_ID,
        individual(IND_PRIMARY),
        [group('g1', GROUP_PRIMARY)],
        NOW,
      ),
    );
  });

  it('an individual enrollment with another attestation type rejects symmetric-key tokens', () => {
    const x509: IndividualEnrollment = { registrationId: REG_ID, attestation: { type: 'x509', x509: {} } };
    expect401(() => attestSymmetricKey(token(IND_PRIMARY), RESOURCE, REG_ID, x509, [], NOW));
  });
});

describe('attestSymmetricKey: enrollment groups', () => {
  it('accepts a token signed with the key derived from the group primary key', () => {
    const match = attestSymmetricKey(
      token(derive(GROUP_PRIMARY, REG_ID)),
      RESOURCE,
      REG_ID,
      undefined,
      [group('g1', GROUP_PRIMARY, GROUP_SECONDARY)],
      NOW,
    );
    expect(match).toMatchObject({ kind: 'group', group: { enrollmentGroupId: 'g1' } });
    expect(match.deviceKeys).toEqual([derive(GROUP_PRIMARY, REG_ID), derive(GROUP_SECONDARY, REG_ID)]);
  });

  it('accepts a token signed with the key derived from the group secondary key', () => {
    const match = attestSymmetricKey(
      token(derive(GROUP_SECONDARY, REG_ID)),
      RESOURCE,
      REG_ID,
      undefined,
      [group('g1', GROUP_PRIMARY, GROUP_SECONDARY)],
      NOW,
    );
    expect(match).toMatchObject({ kind: 'group', group: { enrollmentGroupId: 'g1' } });
  });

  it('rejects a token signed with the raw (underived) group key', () => {
    expect401(() =>
      attestSymmetricKey(token(GROUP_PRIMARY), RESOURCE, REG_ID, undefined, [group('g1', GROUP_PRIMARY)], NOW),
    );
  });

  it('rejects a key derived for another registration ID', () => {
    expect401(() =>
      attestSymmetricKey(
        token(derive(GROUP_PRIMARY, 'other-device')),
        RESOURCE,
        REG_ID,
        undefined,
        [group('g1', GROUP_PRIMARY)],
        NOW,
      ),
    );
  });

  it('finds the group whose key signed the token among several', () => {
    const groups = [group('g-other', OTHER_GROUP_KEY), group('g-mine', GROUP_PRIMARY)];
    const match = attestSymmetricKey(token(derive(GROUP_PRIMARY, REG_ID)), RESOURCE, REG_ID, undefined, groups, NOW);
    expect(match).toMatchObject({ kind: 'group', group: { enrollmentGroupId: 'g-mine' } });
  });

  it('rejects when no group matches, or there are no groups', () => {
    expect401(() =>
      attestSymmetricKey(
        token(derive(GROUP_PRIMARY, REG_ID)),
        RESOURCE,
        REG_ID,
        undefined,
        [group('g', OTHER_GROUP_KEY)],
        NOW,
      ),
    );
    expect401(() => attestSymmetricKey(token(derive(GROUP_PRIMARY, REG_ID)), RESOURCE, REG_ID, undefined, [], NOW));
  });
});

describe('attestSymmetricKey: resource and expiry', () => {
  it('rejects a token whose sr names another registration ID', () => {
    const sr = `${SCOPE}/registrations/other-device`;
    expect401(() => attestSymmetricKey(token(IND_PRIMARY, sr), RESOURCE, REG_ID, individual(IND_PRIMARY), [], NOW));
  });

  it('rejects a token whose sr names another ID scope', () => {
    const sr = `0ne00000B0B/registrations/${REG_ID}`;
    expect401(() => attestSymmetricKey(token(IND_PRIMARY, sr), RESOURCE, REG_ID, individual(IND_PRIMARY), [], NOW));
  });

  it('compares sr with the expected resource case-insensitively', () => {
    const sr = `${SCOPE.toLowerCase()}/registrations/${REG_ID.toUpperCase()}`;
    expect(attestSymmetricKey(token(IND_PRIMARY, sr), RESOURCE, REG_ID, individual(IND_PRIMARY), [], NOW).kind).toBe(
      'individual',
    );
  });

  it('accepts URL-encoded sr in both %2F and %2f forms, signed over the encoded text', () => {
    for (const sr of [encodeURIComponent(RESOURCE), encodeURIComponent(RESOURCE).replace(/%2F/g, '%2f')]) {
      expect(sr).not.toBe(RESOURCE);
      expect(attestSymmetricKey(token(IND_PRIMARY, sr), RESOURCE, REG_ID, individual(IND_PRIMARY), [], NOW).kind).toBe(
        'individual',
      );
    }
  });

  it('rejects an expired token even when the key is right', () => {
    const expired = Math.floor(NOW.getTime() / 1000) - 1;
    expect401(() =>
      attestSymmetricKey(token(IND_PRIMARY, RESOURCE, expired), RESOURCE, REG_ID, individual(IND_PRIMARY), [], NOW),
    );
  });
});

describe('SymmetricKeyAttestor: the same work whether or not the registration ID is enrolled', () => {
  const counting = () => {
    const counter = { hmacs: 0 };
    const hmac: Hmac = (key, data) => {
      counter.hmacs++;
      return createHmac('sha256', key).update(data, 'utf8').digest();
    };
    return { counter, attestor: new SymmetricKeyAttestor({ hmac }) };
  };
  // Five symmetric-key groups (one with a primary key only: 9 group keys) and an X.509 group, which is not tried.
  const groups: EnrollmentGroup[] = [
    group('g1', b64('g1-primary-key-material-32-bytes'), b64('g1-secondary-key-material-32byte')),
    group('g2', b64('g2-primary-key-material-32-bytes'), b64('g2-secondary-key-material-32byte')),
    group('g3', b64('g3-primary-key-material-32-bytes')),
    group('g4', b64('g4-primary-key-material-32-bytes'), b64('g4-secondary-key-material-32byte')),
    group('g5', b64('g5-primary-key-material-32-bytes'), b64('g5-secondary-key-material-32byte')),
    { enrollmentGroupId: 'x', attestation: { type: 'x509' } },
  ];
  const EXPECTED_HMACS = 2 + 2 * 9; // two individual-key slots, then derive + verify each group key

  const request = (keyB64: string): DeviceRequest => ({
    idScope: SCOPE,
    registrationId: REG_ID,
    sasToken: token(keyB64),
    forceRegistration: false,
  });
  const work = (keyB64: string, individualEnrollment?: IndividualEnrollment): number => {
    const { counter, attestor } = counting();
    try {
      attestor.attest(
        request(keyB64),
        { ...(individualEnrollment ? { individual: individualEnrollment } : {}), groups },
        NOW,
      );
    } catch (err) {
      expect(err).toMatchObject({ status: 401, errorCode: 401002 });
    }
    return counter.hmacs;
  };

  it('counts the same HMACs for an unknown ID, an enrolled individual (right or wrong key) and any group device', () => {
    const counts = {
      unknown: work(OTHER_GROUP_KEY),
      individualRight: work(IND_PRIMARY, individual(IND_PRIMARY, IND_SECONDARY)),
      individualWrong: work(OTHER_GROUP_KEY, individual(IND_PRIMARY, IND_SECONDARY)),
      individualOneKey: work(IND_PRIMARY, individual(IND_PRIMARY)),
      firstGroup: work(derive(b64('g1-primary-key-material-32-bytes'), REG_ID)),
      lastGroupSecondary: work(derive(b64('g5-secondary-key-material-32byte'), REG_ID)),
    };
    expect(counts).toEqual({
      unknown: EXPECTED_HMACS,
      individualRight: EXPECTED_HMACS,
      individualWrong: EXPECTED_HMACS,
      individualOneKey: EXPECTED_HMACS,
      firstGroup: EXPECTED_HMACS,
      lastGroupSecondary: EXPECTED_HMACS,
    });
  });

  it('still answers by the enrollment that signed: individual authoritative, else the first group that verifies', () => {
    const { attestor } = counting();
    const ind = attestor.attest(
      request(IND_SECONDARY),
      { individual: individual(IND_PRIMARY, IND_SECONDARY), groups },
      NOW,
    );
    expect(ind).toMatchObject({
      kind: 'individual',
      hubAuthentication: { type: 'sas', primaryKey: IND_PRIMARY, secondaryKey: IND_SECONDARY },
      registrationFields: { symmetricKey: {} },
    });
    const g5 = b64('g5-secondary-key-material-32byte');
    const grp = attestor.attest(request(derive(g5, REG_ID)), { groups }, NOW);
    expect(grp).toMatchObject({
      kind: 'group',
      enrollmentGroupId: 'g5',
      hubAuthentication: { type: 'sas', secondaryKey: derive(g5, REG_ID) },
      registrationFields: { symmetricKey: { enrollmentGroupId: 'g5' } },
    });
    // A recent attestation vouches for later requests signed by the same device keys only.
    expect(grp.recent?.(request(derive(g5, REG_ID)), NOW)).toBe(true);
    expect(grp.recent?.(request(OTHER_GROUP_KEY), NOW)).toBe(false);
  });

  it('refuses a request without a SAS token, naming what is missing', () => {
    const { attestor } = counting();
    expect(() => attestor.attest({ ...request(IND_PRIMARY), sasToken: null }, { groups }, NOW)).toThrow(
      /SharedAccessSignature is missing/,
    );
  });
});
