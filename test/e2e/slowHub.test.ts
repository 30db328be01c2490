// When the hub step outlasts the PUT's budget, the PUT answers `assigning` and the device's polls finish the work.
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { createSas } from '../../shared/http/sas';
import { deriveKey, registerDevice } from '../support/device';
import { rawRequest } from '../support/rawHttps';
import { startTestStack } from '../support/stack';

describe('registration that outlasts the PUT budget', () => {
  let stack: Stack;
  const groupKey = randomBytes(64).toString('base64');

  beforeAll(async () => {
    // A zero budget makes every PUT answer before the hub step finishes: the polling path, every time.
    stack = await startTestStack({ settings: { DPS_REGISTER_BUDGET_MS: '0' } });
    await stack.services.groups.save({
      enrollmentGroupId: 'slow',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey } },
    });
    stack.services.invalidateCaches();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('PUT answers 202 assigning with an operationId and Retry-After', async () => {
    const id = 'slow-raw-1';
    const token = createSas(
      `${stack.idScope}/registrations/${id}`,
      deriveKey(groupKey, id),
      Math.floor(Date.now() / 1000) + 3600,
      'registration',
    );
    const res = await rawRequest(stack.deviceEndpoint, 'PUT', `/${stack.idScope}/registrations/${id}/register`, '{}', {
      Authorization: token,
      'Content-Type': 'application/json',
    });
    expect(res.status).toBe(202);
    expect(res.headers['retry-after']).toBe('0');
    const body = res.json as {
      operationId: string;
      status: string;
      registrationState: { registrationId: string; status: string };
    };
    expect(body.status).toBe('assigning');
    expect(body.registrationState).toEqual({ registrationId: id, status: 'assigning' });
    expect(body.operationId).toMatch(/^[\w.-]+$/);

    // Polling reaches the terminal state, answered 200, and the hub has the device exactly once.
    let poll = res;
    for (let i = 0; i < 50 && (poll.json as { status: string }).status === 'assigning'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      poll = await rawRequest(
        stack.deviceEndpoint,
        'GET',
        `/${stack.idScope}/registrations/${id}/operations/${body.operationId}`,
        '{}',
        {
          Authorization: token,
        },
      );
    }
    expect(poll.status).toBe(200);
    expect(poll.json).toMatchObject({
      operationId: body.operationId,
      status: 'assigned',
      registrationState: { deviceId: id },
    });
    expect(stack.hubs[0]?.device(id)).toBeDefined();
  });

  it('the official SDK polls until assigned', async () => {
    const id = 'slow-sdk-1';
    const state = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
    expect(state.status).toBe('assigned');
    expect(state.assignedHub).toBe(stack.hubs[0]?.hostName);
  });
});
