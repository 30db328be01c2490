import { describe, expect, it } from 'vitest';

import type { Attestation, Attestor } from '../../shared/attestation/attestation';
import { chooseAttestor, presentedMechanism } from '../../shared/attestation/attestation';
import { SymmetricKeyAttestor } from '../../shared/attestation/symmetricKey';
import type { IndividualEnrollment } from '../../shared/domain/enrollment';
import type { DpsError } from '../../shared/errors';
import { createSas, parseSas } from '../../shared/http/sas';
import type { DeviceRequest } from '../../shared/registration/deviceRequest';
import { dpsErrorFrom } from '../support/dpsError';

const base: DeviceRequest = {
  idScope: '0ne00000A0A',
  registrationId: 'dev-1',
  sasToken: null,
  forceRegistration: false,
};
const sas = parseSas(
  createSas(
    '0ne00000A0A/registrations/dev-1',
    Buffer.alloc(32, 1).toString('base64'),
    Math.floor(Date.now() / 1000) + 3600,
  ),
);
const fake = (mechanism: Attestor['mechanism']): Attestor => ({
  mechanism,
  attest: () => Promise.reject<Attestation>(new Error('not called here')),
});
const attestors = { symmetricKey: new SymmetricKeyAttestor(), x509: fake('x509'), tpm: fake('tpm') };
const enrolled = (type: 'x509' | 'tpm' | 'symmetricKey'): IndividualEnrollment => ({
  registrationId: 'dev-1',
  attestation: { type },
});

describe('choosing the attestor', () => {
  it('by what the request presents: a TPM body, else a client certificate, else a SAS token', () => {
    const tpm = { endorsementKey: 'AAAA' };
    expect(presentedMechanism({ ...base, tpm, clientCertificate: 'MII', sasToken: sas })).toBe('tpm');
    expect(presentedMechanism({ ...base, clientCertificate: 'MII', sasToken: sas })).toBe('x509');
    expect(presentedMechanism({ ...base, sasToken: sas })).toBe('symmetricKey');
    expect(presentedMechanism(base)).toBeUndefined();
    expect(chooseAttestor(attestors, { ...base, clientCertificate: 'MII' }, undefined).mechanism).toBe('x509');
  });

  it("an individual enrollment's attestation type is authoritative (a SAS poll of a TPM device goes to TPM)", () => {
    expect(chooseAttestor(attestors, { ...base, sasToken: sas }, enrolled('tpm')).mechanism).toBe('tpm');
    expect(chooseAttestor(attestors, { ...base, clientCertificate: 'MII' }, enrolled('x509')).mechanism).toBe('x509');
  });

  it('a credential the enrolled mechanism can never accept goes to its own attestor (no hint what is enrolled)', () => {
    const tpm = { endorsementKey: 'AAAA' };
    expect(chooseAttestor(attestors, { ...base, clientCertificate: 'MII' }, enrolled('symmetricKey')).mechanism).toBe(
      'x509',
    );
    expect(chooseAttestor(attestors, { ...base, clientCertificate: 'MII' }, enrolled('tpm')).mechanism).toBe('x509');
    expect(chooseAttestor(attestors, { ...base, tpm }, enrolled('symmetricKey')).mechanism).toBe('tpm');
    expect(chooseAttestor(attestors, { ...base, tpm }, enrolled('x509')).mechanism).toBe('tpm');
  });

  it('a bare SAS for an X.509 enrollment is refused as for an unknown ID (same message, same work)', () => {
    expect(chooseAttestor(attestors, { ...base, sasToken: sas }, enrolled('x509')).mechanism).toBe('symmetricKey');
    const refusal = (individual?: IndividualEnrollment) =>
      dpsErrorFrom(() =>
        chooseAttestor(attestors, { ...base, sasToken: sas }, individual).attest(
          { ...base, sasToken: sas },
          { ...(individual ? { individual } : {}), groups: [] },
          new Date(),
        ),
      );
    // What the device sees is the same; only the operator's event detail says which check failed.
    const seen = (e: DpsError) => ({ status: e.status, errorCode: e.errorCode, message: e.message, body: e.extraBody });
    expect(seen(refusal(enrolled('x509')))).toEqual(seen(refusal(undefined)));
    expect(refusal(enrolled('x509')).detail).toMatch(/uses x509 attestation/);
    expect(refusal(undefined)).toMatchObject({ status: 401, errorCode: 401002, message: 'Unauthorized' });
  });

  it('no credential, or a mechanism this service does not run, is a 401 that says so', () => {
    expect(dpsErrorFrom(() => chooseAttestor(attestors, base, undefined))).toMatchObject({
      status: 401,
      errorCode: 401002,
      message: expect.stringMatching(/No credential was presented/) as string,
    });
    const onlySas = { symmetricKey: new SymmetricKeyAttestor() };
    expect(dpsErrorFrom(() => chooseAttestor(onlySas, { ...base, sasToken: sas }, enrolled('tpm')))).toMatchObject({
      status: 401,
      message: 'TPM attestation is not available on this service.',
    });
  });
});
