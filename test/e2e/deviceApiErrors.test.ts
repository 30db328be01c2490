// Bad input at the device API gets a DPS-shaped JSON error through the dev host, never a 500 or a stack trace.
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { createSas } from '../../shared/http/sas';
import { deriveKey } from '../support/device';
import type { RawResponse } from '../support/rawHttps';
import { rawRequest } from '../support/rawHttps';
import { startTestStack } from '../support/stack';

const groupKey = randomBytes(64).toString('base64');

function expectDpsError(res: RawResponse, status: number, errorCode?: number): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  const body = res.json as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(['errorCode', 'message', 'timestampUtc', 'trackingId']);
  expect(typeof body.message).toBe('string');
  expect(body.message).not.toMatch(/\bat .*\.(ts|js):\d+/); // no stack frames
  expect(Math.floor(Number(body.errorCode) / 1000)).toBe(status);
  if (errorCode !== undefined) expect(body.errorCode).toBe(errorCode);
  expect(res.headers['x-ms-error-code']).toBe(String(body.errorCode));
}

describe('device API error handling', () => {
  let stack: Stack;
  const id = 'err-device-1';
  let path: string;
  let token: () => string;

  beforeAll(async () => {
    stack = await startTestStack();
    await stack.services.groups.save({
      enrollmentGroupId: 'errors',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey } },
    });
    stack.services.invalidateCaches();
    path = `/${stack.idScope}/registrations/${id}/register?api-version=2019-03-31`;
    token = () =>
      createSas(
        `${stack.idScope}/registrations/${id}`,
        deriveKey(groupKey, id),
        Math.floor(Date.now() / 1000) + 600,
        'registration',
      );
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const put = (body: string | Buffer, headers: Record<string, string> = {}, p = path) =>
    rawRequest(stack.deviceEndpoint, 'PUT', p, body, { 'Content-Type': 'application/json', ...headers });

  it('malformed JSON → 400', async () => {
    expectDpsError(await put('{"registrationId":', { Authorization: token() }), 400);
  });

  it('a body that is not an object → 400', async () => {
    expectDpsError(await put('[1,2]', { Authorization: token() }), 400);
  });

  it('a body registrationId that differs from the path → 400', async () => {
    expectDpsError(await put(JSON.stringify({ registrationId: 'someone-else' }), { Authorization: token() }), 400);
  });

  it('an oversized body (> 96 KB) → 413', async () => {
    const big = JSON.stringify({ registrationId: id, payload: 'x'.repeat(100 * 1024) });
    expectDpsError(await put(big, { Authorization: token() }), 413);
  });

  it('an invalid registration ID (129 characters) → 400', async () => {
    const long = 'a'.repeat(129);
    expectDpsError(
      await put('{}', { Authorization: token() }, `/${stack.idScope}/registrations/${long}/register`),
      400,
    );
  });

  it('no Authorization header → 401/401002', async () => {
    expectDpsError(await put(JSON.stringify({ registrationId: id })), 401, 401002);
  });

  it('a garbage Authorization header → 401/401002', async () => {
    expectDpsError(await put('{}', { Authorization: 'SharedAccessSignature sr=%E0%A4%A&sig=@@&se=abc' }), 401, 401002);
    expectDpsError(await put('{}', { Authorization: 'Bearer nope' }), 401, 401002);
  });

  it('an expired token → 401/401002', async () => {
    const expired = createSas(
      `${stack.idScope}/registrations/${id}`,
      deriveKey(groupKey, id),
      1_000_000,
      'registration',
    );
    expectDpsError(await put('{}', { Authorization: expired }), 401, 401002);
  });

  it('a token for another registration → 401/401002', async () => {
    const other = createSas(
      `${stack.idScope}/registrations/other`,
      deriveKey(groupKey, 'other'),
      Math.floor(Date.now() / 1000) + 3600,
      'registration',
    );
    expectDpsError(await put('{}', { Authorization: other }), 401, 401002);
  });

  it('an unknown path → 404, a wrong method → 405', async () => {
    expectDpsError(await rawRequest(stack.deviceEndpoint, 'GET', '/nothing/here'), 404);
    expectDpsError(await rawRequest(stack.deviceEndpoint, 'DELETE', path, undefined, { Authorization: token() }), 405);
  });

  it('an unknown operation → 404 after authentication', async () => {
    const res = await rawRequest(
      stack.deviceEndpoint,
      'GET',
      `/${stack.idScope}/registrations/${id}/operations/nope`,
      '{}',
      {
        Authorization: token(),
      },
    );
    expectDpsError(res, 404, 404201);
  });

  it('status lookup: 404 before registering, the state after; paths match case-insensitively', async () => {
    const lookup = `/${stack.idScope}/REGISTRATIONS/${id}?api-version=2019-03-31`;
    expectDpsError(
      await rawRequest(stack.deviceEndpoint, 'POST', lookup, '{}', { Authorization: token() }),
      404,
      404201,
    );
    const registered = await put(JSON.stringify({ registrationId: id }), { Authorization: token() });
    expect(registered.status).toBe(202);
    expect(registered.headers['content-type']).toMatch(/^application\/json/);
    const res = await rawRequest(stack.deviceEndpoint, 'POST', lookup, '{}', { Authorization: token() });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ registrationId: id, status: 'assigned', deviceId: id });
  });
});
