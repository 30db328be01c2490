import type { InvocationContext } from '@azure/functions';
import { describe, expect, it, vi } from 'vitest';

import { DpsError, errorBody, notFound, toHttpResponse, unauthorized } from '../../shared/errors';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function fakeContext(): { ctx: InvocationContext; error: ReturnType<typeof vi.fn> } {
  const error = vi.fn();
  return { ctx: { error } as unknown as InvocationContext, error };
}

describe('toHttpResponse', () => {
  it('keeps a DpsError status, errorCode and message', () => {
    const res = toHttpResponse(new DpsError(409, 409203, 'Precondition failed.'));
    expect(res.status).toBe(409);
    expect(res.jsonBody).toMatchObject({ errorCode: 409203, message: 'Precondition failed.' });
  });

  it('sets Content-Type application/json and x-ms-error-code', () => {
    const res = toHttpResponse(unauthorized());
    expect(res.status).toBe(401);
    expect(res.headers).toMatchObject({ 'Content-Type': 'application/json', 'x-ms-error-code': '401002' });
  });

  it('writes the DPS error body {errorCode, trackingId, message, timestampUtc}', () => {
    const before = Date.now();
    const res = toHttpResponse(notFound('No such registration.'));
    const body = res.jsonBody as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['errorCode', 'message', 'timestampUtc', 'trackingId']);
    expect(body.errorCode).toBe(404201);
    expect(body.trackingId).toMatch(UUID);
    expect(typeof body.timestampUtc).toBe('string');
    const ts = Date.parse(body.timestampUtc as string);
    expect(ts).toBeGreaterThanOrEqual(before - 1);
    expect(ts).toBeLessThanOrEqual(Date.now() + 1);
    expect(body.timestampUtc).toMatch(/Z$/);
  });

  it('adds a DpsError’s own headers (e.g. Retry-After)', () => {
    const res = toHttpResponse(new DpsError(429, 429001, 'Slow down.', { 'Retry-After': '3' }));
    expect(res.headers).toMatchObject({ 'Retry-After': '3', 'x-ms-error-code': '429001' });
  });

  it('gives each response a fresh tracking ID', () => {
    const a = toHttpResponse(unauthorized()).jsonBody as { trackingId: string };
    const b = toHttpResponse(unauthorized()).jsonBody as { trackingId: string };
    expect(a.trackingId).not.toBe(b.trackingId);
  });

  it('does not log client errors', () => {
    const { ctx, error } = fakeContext();
    toHttpResponse(unauthorized(), ctx);
    expect(error).not.toHaveBeenCalled();
  });

  it('turns an unknown Error into a 500 without leaking its message or stack, and logs it with the tracking ID', () => {
    const { ctx, error } = fakeContext();
    const secret = new Error('connection string AccountKey=SUPERSECRET failed');
    const res = toHttpResponse(secret, ctx);
    expect(res.status).toBe(500);
    expect(res.headers).toMatchObject({ 'Content-Type': 'application/json', 'x-ms-error-code': '500000' });
    const text = JSON.stringify(res);
    expect(text).not.toContain('SUPERSECRET');
    expect(text).not.toContain('errors.test.ts');
    expect(text).not.toMatch(/\bat\s/);
    const body = res.jsonBody as { errorCode: number; trackingId: string; message: string };
    expect(body.errorCode).toBe(500000);
    expect(body.trackingId).toMatch(UUID);
    expect(error).toHaveBeenCalledTimes(1);
    const logged = String(error.mock.calls[0]?.[0]);
    expect(logged).toContain(body.trackingId);
    expect(logged).toContain('SUPERSECRET');
  });

  it('turns a thrown non-Error value into a 500', () => {
    const { ctx } = fakeContext();
    const res = toHttpResponse('boom: internal detail', ctx);
    expect(res.status).toBe(500);
    expect(JSON.stringify(res.jsonBody)).not.toContain('internal detail');
  });

  it('logs to the console when there is no invocation context', () => {
    const spy = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const res = toHttpResponse(new Error('no context'));
      expect(res.status).toBe(500);
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('errorBody', () => {
  it('uses the given tracking ID', () => {
    expect(errorBody(400004, 'Bad.', 'tid-1')).toMatchObject({
      errorCode: 400004,
      message: 'Bad.',
      trackingId: 'tid-1',
    });
  });
});
