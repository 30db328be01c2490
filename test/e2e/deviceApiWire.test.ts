// The device API's wire contract probed with raw HTTPS where no SDK would go: content types, and refusals that must
// not tell a caller which registration IDs are enrolled (or with which mechanism).
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import type { TestCert } from '../../dev/testPki';
import { makeCert } from '../../dev/testPki';
import { createSas } from '../../shared/http/sas';
import type { RawResponse } from '../support/rawHttps';
import { expectDpsError, rawRequest } from '../support/rawHttps';
import { newKey, serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';
import { CAPTURED_EK, CAPTURED_SRK, foreignEndorsementKey } from '../support/tpmKeys';

describe('device API wire contract', () => {
  let stack: Stack;
  const call = serviceCaller(() => stack);
  const key = newKey();
  const certs: Record<string, TestCert> = {};

  const path = (id: string, rest = '/register') =>
    `/${stack.idScope}/registrations/${id}${rest}?api-version=2019-03-31`;
  const token = (id: string, k = key) =>
    createSas(`${stack.idScope}/registrations/${id}`, k, Math.floor(Date.now() / 1000) + 600, 'registration');

  beforeAll(async () => {
    stack = await startTestStack();
    for (const cn of ['wire-sym', 'wire-tpm', 'wire-x509', 'wire-nobody']) certs[cn] = await makeCert({ cn });
    const put = (id: string, attestation: unknown) =>
      call('PUT', `/enrollments/${id}`, { registrationId: id, attestation }).then((r) => expect(r.status).toBe(200));
    await put('wire-sym', { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: key } });
    await put('wire-tpm', { type: 'tpm', tpm: { endorsementKey: CAPTURED_EK, storageRootKey: CAPTURED_SRK } });
    const x509 = certs['wire-x509']?.pem ?? '';
    await put('wire-x509', { type: 'x509', x509: { clientCertificates: { primary: { certificate: x509 } } } });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  describe('content type (DPS documents 415)', () => {
    const put = (body: string, contentType?: string) =>
      rawRequest(stack.deviceEndpoint, 'PUT', path('wire-sym'), body, {
        Authorization: token('wire-sym'),
        ...(contentType !== undefined ? { 'Content-Type': contentType } : {}),
      });

    it('a body sent as text/plain, XML or a form is 415, not registered', async () => {
      const body = JSON.stringify({ registrationId: 'wire-sym' });
      for (const type of ['text/plain', 'application/xml', 'application/x-www-form-urlencoded']) {
        const res = await put(body, type);
        expectDpsError(res, 415, /content type/i);
        expect((res.json as { errorCode: number }).errorCode).toBe(415001);
      }
      expect((await call('GET', '/registrations/wire-sym')).status).toBe(404);
    });

    it('JSON media types the SDKs send (any case, with parameters) are accepted', async () => {
      const body = JSON.stringify({ registrationId: 'wire-sym' });
      for (const type of ['application/json; charset=utf-8', 'application/json', 'Application/JSON;charset=UTF-8']) {
        expect((await put(body, type)).status).toBe(202);
      }
    });

    it('an empty body needs no content type (the C# status lookup sends none)', async () => {
      const res = await rawRequest(stack.deviceEndpoint, 'POST', path('wire-sym', ''), undefined, {
        Authorization: token('wire-sym'),
      });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ registrationId: 'wire-sym', status: 'assigned' });
    });
  });

  it('a certificate signing request (csr, clientCertificateCsr) is a 400 saying issuance is not supported', async () => {
    for (const field of ['csr', 'clientCertificateCsr']) {
      const body = JSON.stringify({ registrationId: 'wire-sym', [field]: 'MIIBCjCBsQIBADA' });
      const res = await rawRequest(stack.deviceEndpoint, 'PUT', path('wire-sym'), body, {
        Authorization: token('wire-sym'),
        'Content-Type': 'application/json',
      });
      expectDpsError(res, 400, new RegExp(`issuance \\('${field}'\\) is not supported`));
    }
  });

  it("202 answers carry Location, the operation's URL (spec: RegisterDevice and OperationStatusLookup 202)", async () => {
    const id = 'wire-sym';
    const put = await rawRequest(stack.deviceEndpoint, 'PUT', path(id), JSON.stringify({ registrationId: id }), {
      Authorization: token(id),
      'Content-Type': 'application/json',
    });
    expect(put.status).toBe(202);
    const { operationId } = put.json as { operationId: string };
    const location = new URL(String(put.headers.location));
    expect(location.origin).toBe(`https://${stack.deviceEndpoint}`);
    expect(location.pathname).toBe(`/${stack.idScope}/registrations/${id}/operations/${operationId}`);
    expect(location.searchParams.get('api-version')).toBe('2019-03-31');
    const poll = await rawRequest(stack.deviceEndpoint, 'GET', `${location.pathname}${location.search}`, undefined, {
      Authorization: token(id),
    });
    expect(poll.status).toBe(200);
    expect(poll.json).toMatchObject({ operationId, status: 'assigned' });
    expect(poll.headers.location).toBeUndefined();
  });

  describe('a credential of another mechanism gets the answer an unenrolled ID gets', () => {
    /** What the caller learns: status, code and message (with the registration ID itself masked). */
    const seen = (res: RawResponse, id: string) => {
      const body = res.json as { errorCode: number; message: string };
      return { status: res.status, errorCode: body.errorCode, message: body.message.replaceAll(id, '<id>') };
    };

    const withTpmBody = (id: string) =>
      rawRequest(
        stack.deviceEndpoint,
        'PUT',
        path(id),
        JSON.stringify({ registrationId: id, tpm: { endorsementKey: foreignEndorsementKey() } }),
        { 'Content-Type': 'application/json' },
      );
    const withCertificate = (id: string) => {
      const cert = certs[id] ?? certs['wire-nobody'];
      if (!cert) throw new Error('no certificate');
      return rawRequest(
        stack.deviceEndpoint,
        'PUT',
        path(id),
        JSON.stringify({ registrationId: id }),
        { 'Content-Type': 'application/json' },
        { cert: cert.pem, key: cert.keyPem },
      );
    };

    it('a TPM endorsement key sent for a symmetric-key or X.509 registration ID', async () => {
      const unknown = seen(await withTpmBody('wire-nobody'), 'wire-nobody');
      expect(unknown.status).toBe(401);
      expect(seen(await withTpmBody('wire-sym'), 'wire-sym')).toEqual(unknown);
      expect(seen(await withTpmBody('wire-x509'), 'wire-x509')).toEqual(unknown);
    });

    it('a client certificate sent for a symmetric-key or TPM registration ID', async () => {
      const unknown = seen(await withCertificate('wire-nobody'), 'wire-nobody');
      expect(unknown.status).toBe(401);
      expect(seen(await withCertificate('wire-sym'), 'wire-sym')).toEqual(unknown);
      expect(seen(await withCertificate('wire-tpm'), 'wire-tpm')).toEqual(unknown);
    });

    it('the enrolled mechanism still works, and a TPM device still polls with its SAS', async () => {
      const res = await rawRequest(
        stack.deviceEndpoint,
        'PUT',
        path('wire-x509'),
        '{}',
        {},
        {
          cert: certs['wire-x509']?.pem ?? '',
          key: certs['wire-x509']?.keyPem ?? '',
        },
      );
      expect(res.status).toBe(202);
      // A SAS on a TPM registration goes to TPM attestation (tpm.test.ts: the official client's polls), which refuses
      // a made-up one exactly as a SAS for an unenrolled ID ('No TPM challenge was issued' is only in the event).
      const tpmPoll = await rawRequest(stack.deviceEndpoint, 'PUT', path('wire-tpm'), '{}', {
        Authorization: token('wire-tpm', randomBytes(32).toString('base64')),
      });
      expectDpsError(tpmPoll, 401, /^Unauthorized$/);
    });
  });
});
