// A hub that trickles bytes cannot hold device requests: the PUT answers within its budget, every hub step ends at
// the hub deadline, and of many concurrent polls of an overdue operation exactly one takes it over (one hub call).
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { createSas } from '../../shared/http/sas';
import { deriveKey } from '../support/device';
import { rawRequest } from '../support/rawHttps';
import { startTestStack } from '../support/stack';
import type { TricklingHub } from '../support/tricklingHub';
import { startTricklingHub } from '../support/tricklingHub';

const BUDGET_MS = 300;
const HUB_TIMEOUT_MS = 1500;

describe('a trickling IoT hub', () => {
  let stack: Stack;
  let hub: TricklingHub;
  const groupKey = randomBytes(64).toString('base64');

  beforeAll(async () => {
    hub = await startTricklingHub(100);
    stack = await startTestStack({
      hubs: { count: 0, external: [{ hostName: hub.hostName, connectionString: hub.connectionString }] },
      settings: { DPS_REGISTER_BUDGET_MS: String(BUDGET_MS), DPS_HUB_TIMEOUT_MS: String(HUB_TIMEOUT_MS) },
    });
    await stack.services.groups.save({
      enrollmentGroupId: 'trickle',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey } },
    });
    stack.services.invalidateCaches();
  });

  afterAll(async () => {
    await stack?.stop();
    await hub?.close();
  });

  const headers = (id: string) => ({
    Authorization: createSas(
      `${stack.idScope}/registrations/${id}`,
      deriveKey(groupKey, id),
      Math.floor(Date.now() / 1000) + 3600,
      'r',
    ),
    'Content-Type': 'application/json',
  });
  const put = (id: string) =>
    rawRequest(stack.deviceEndpoint, 'PUT', `/${stack.idScope}/registrations/${id}/register`, '{}', headers(id));
  const poll = (id: string, operationId: string) =>
    rawRequest(
      stack.deviceEndpoint,
      'GET',
      `/${stack.idScope}/registrations/${id}/operations/${operationId}`,
      undefined,
      headers(id),
    );

  it('the PUT answers assigning within its budget; the hub step fails at the hub deadline', async () => {
    const id = 'trickle-put-1';
    const started = Date.now();
    const res = await put(id);
    expect(Date.now() - started).toBeLessThan(BUDGET_MS + 1000);
    expect(res.status).toBe(202);
    const { operationId, status } = res.json as { operationId: string; status: string };
    expect(status).toBe('assigning');

    await expect
      .poll(async () => (await stack.services.devices.getRegistration(id))?.value.operation.status, {
        timeout: HUB_TIMEOUT_MS + 3000,
        interval: 100,
      })
      .toBe('failed');
    expect(Date.now() - started).toBeLessThan(HUB_TIMEOUT_MS + 3000);
    const done = await poll(id, operationId);
    expect(done.status).toBe(200);
    expect(done.json).toMatchObject({ status: 'failed', registrationState: { errorCode: 500001 } });
  });

  it('10 concurrent polls of an overdue operation: one takeover, one hub call, every answer within the budget', async () => {
    const id = 'trickle-poll-1';
    const operationId = `1.${randomBytes(8).toString('hex')}.overdue`;
    const longAgo = new Date(Date.now() - 60_000).toISOString();
    // What an instance that crashed after claiming the row leaves behind.
    await stack.services.devices.saveRegistration(
      id,
      {
        state: { registrationId: id, createdDateTimeUtc: longAgo, status: 'assigning' },
        operation: {
          operationId,
          status: 'assigning',
          startedAtUtc: longAgo,
          claimedAtUtc: longAgo,
          plan: {
            assignedHub: hub.hostName,
            deviceId: id,
            enrollmentGroupId: 'trickle',
            substatus: 'initialAssignment',
            applyInitialTwin: false,
          },
        },
      },
      undefined,
    );
    const callsBefore = hub.requests.length;

    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const res = await poll(id, operationId);
        return { res, ms: Date.now() - started };
      }),
    );
    for (const { res, ms } of answers) {
      expect(res.status).toBe(202);
      expect((res.json as { status: string }).status).toBe('assigning');
      expect(res.headers['retry-after']).toBe('0');
      expect(ms).toBeLessThan(BUDGET_MS + 1500);
    }
    expect(hub.requests.slice(callsBefore)).toEqual([`PUT /devices/${id}`]);

    // The one takeover ends at the hub deadline and commits; nobody called the hub again meanwhile.
    await expect
      .poll(async () => (await stack.services.devices.getRegistration(id))?.value.operation.status, {
        timeout: HUB_TIMEOUT_MS + 3000,
        interval: 100,
      })
      .toBe('failed');
    expect(hub.requests.slice(callsBefore)).toHaveLength(1);
  });
});
