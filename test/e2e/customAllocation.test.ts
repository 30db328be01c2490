// Custom allocation end to end: the official device SDK registers against enrollments whose webhook is a local HTTP
// server playing the operator's function — a normal one, one that times out, one that answers 500, one that names a
// hub that is not a candidate, one that answers invalid JSON — and a fallback policy. Twins read back with azure-iothub.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { deriveKey, registerDevice } from '../support/device';
import type { RegisteredState } from '../support/device';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

const SECRET = 'fUnCt10nKeY-s3cret==';
const WEBHOOK_TIMEOUT_MS = 400;

type Handler = (body: Record<string, unknown>, res: ServerResponse) => void;

describe('custom allocation webhook', () => {
  let stack: Stack;
  let webhook: Server;
  let base = '';
  const requests: { path: string; body: Record<string, unknown>; query: string }[] = [];
  const call = serviceCaller(() => stack);
  const keys = new Map<string, string>();

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };
  const handlers: Record<string, Handler> = {
    '/ok': (body, res) => {
      const runtime = body.deviceRuntimeContext as { registrationId: string };
      // The last candidate in sorted order: a choice hashing would not be expected to make for every device.
      const hubs = [...(body.linkedHubs as string[])].sort();
      json(res, 200, {
        iotHubHostName: hubs[hubs.length - 1],
        initialTwin: { tags: { placedBy: 'webhook' }, properties: { desired: { rate: 7 } } },
        payload: { greeting: `hello ${runtime.registrationId}` },
      });
    },
    '/slow': () => undefined, // never answers
    '/500': (_body, res) => json(res, 500, `function crashed: NullReferenceException at line 12 (code=${SECRET})`),
    '/wronghub': (_body, res) => json(res, 200, { iotHubHostName: 'elsewhere.azure-devices.net' }),
    '/badjson': (_body, res) => json(res, 200, '{"iotHubHostName": '),
  };

  const enroll = async (id: string, path: string, extra: Record<string, unknown> = {}) => {
    const key = randomBytes(64).toString('base64');
    keys.set(id, key);
    await stack.services.groups.save({
      enrollmentGroupId: id,
      allocationPolicy: 'custom',
      customAllocationDefinition: { webhookUrl: `${base}${path}?code=${SECRET}`, apiVersion: '2021-10-01', ...extra },
      initialTwin: { tags: { placedBy: 'enrollment' } },
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key } },
    });
  };
  const register = (group: string, id: string, payload?: Record<string, unknown>) =>
    registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(keys.get(group) ?? '', id), payload);
  /** The registration state of a device the SDK reports as failed (DeviceRegistrationFailedError.result). */
  const failure = async (group: string, id: string): Promise<RegisteredState & Record<string, unknown>> => {
    const err = (await register(group, id).then(
      () => ({}),
      (e: unknown) => e,
    )) as { result?: { status?: string; registrationState?: RegisteredState } };
    expect(err.result?.status).toBe('failed');
    return (err.result?.registrationState ?? {}) as RegisteredState & Record<string, unknown>;
  };

  beforeAll(async () => {
    webhook = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://hook');
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        requests.push({ path: url.pathname, body, query: url.search });
        handlers[url.pathname]?.(body, res);
      });
    });
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}`;
    stack = await startTestStack({
      hubs: { count: 2 },
      settings: { DPS_WEBHOOK_TIMEOUT_MS: String(WEBHOOK_TIMEOUT_MS) },
    });
    await enroll('hook-ok', '/ok');
    await enroll('hook-slow', '/slow');
    await enroll('hook-500', '/500');
    await enroll('hook-wronghub', '/wronghub');
    await enroll('hook-badjson', '/badjson');
    await enroll('hook-fallback', '/500', { fallbackAllocationPolicy: 'hashed' });
    stack.services.invalidateCaches();
  });

  afterAll(async () => {
    await stack?.stop();
    webhook?.closeAllConnections();
    await new Promise((resolve) => webhook?.close(resolve));
  });

  it("assigns the webhook's hub with its initial twin, and returns its payload to the device", async () => {
    const state = await register('hook-ok', 'custom-ok-1', { modelId: 'dtmi:contoso:thermostat;1', site: 'b7' });
    const chosen = [...stack.hubs].sort((a, b) => (a.hostName < b.hostName ? -1 : 1)).at(-1);
    expect(state).toMatchObject({
      status: 'assigned',
      assignedHub: chosen?.hostName,
      deviceId: 'custom-ok-1',
      substatus: 'initialAssignment',
      payload: { greeting: 'hello custom-ok-1' },
    });
    const twin = (await Registry.fromConnectionString(chosen?.connectionString ?? '').getTwin('custom-ok-1'))
      .responseBody;
    expect(twin.tags).toEqual({ placedBy: 'webhook' }); // the webhook's twin, not the enrollment's
    expect((twin.properties.desired as Record<string, unknown>).rate).toBe(7);

    // The AllocationRequest: the enrollment without secrets, the device's payload (modelId included), candidates.
    const request = requests.find((r) => r.path === '/ok')?.body ?? {};
    expect([...(request.linkedHubs as string[])].sort()).toEqual(stack.hubs.map((h) => h.hostName).sort());
    expect(request.deviceRuntimeContext).toEqual({
      registrationId: 'custom-ok-1',
      symmetricKey: {},
      payload: { modelId: 'dtmi:contoso:thermostat;1', site: 'b7' },
    });
    const group = request.enrollmentGroup as Record<string, unknown>;
    expect(group).toMatchObject({ enrollmentGroupId: 'hook-ok', attestation: { type: 'symmetricKey' } });
    const text = JSON.stringify(request);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(keys.get('hook-ok'));
  });

  it('re-provisioning tells the webhook where the device is, and calls it once per registration', async () => {
    const before = requests.length;
    const state = await register('hook-ok', 'custom-ok-1');
    expect(state).toMatchObject({ status: 'assigned', substatus: 'reprovisionedToInitialAssignment' });
    expect(requests.length - before).toBe(1);
    expect(requests.at(-1)?.body.deviceRuntimeContext).toMatchObject({
      currentIotHubHostName: [...stack.hubs].sort((a, b) => (a.hostName < b.hostName ? -1 : 1)).at(-1)?.hostName,
      currentDeviceId: 'custom-ok-1',
    });
  });

  it('a webhook that does not answer: failed within the timeout, naming the timeout', async () => {
    const started = Date.now();
    const state = await failure('hook-slow', 'custom-slow-1');
    expect(Date.now() - started).toBeLessThan(WEBHOOK_TIMEOUT_MS + 3000);
    expect(state.errorCode).toBe(400208);
    expect(state.errorMessage).toContain(`did not answer within ${WEBHOOK_TIMEOUT_MS} ms`);
    expect(state.errorMessage).toContain('/slow?****');
  });

  it("a webhook that answers 500: failed with the status and a body excerpt, the URL's key never shown", async () => {
    const state = await failure('hook-500', 'custom-500-1');
    expect(state.errorMessage).toContain('answered HTTP 500');
    expect(state.errorMessage).toContain('NullReferenceException');
    expect(JSON.stringify(state)).not.toContain(SECRET);
    expect(stack.hubs.every((h) => h.device('custom-500-1') === undefined)).toBe(true);
  });

  it('a webhook that names a hub that is not a candidate: failed, naming the hub and the candidates', async () => {
    const state = await failure('hook-wronghub', 'custom-wrong-1');
    expect(state.errorMessage).toContain("'elsewhere.azure-devices.net', which is not one of the candidate hubs");
  });

  it('a webhook that answers invalid JSON: failed, saying so', async () => {
    const state = await failure('hook-badjson', 'custom-badjson-1');
    expect(state.errorMessage).toContain('not JSON');
  });

  it('a failing webhook with fallbackAllocationPolicy hashed: the device is assigned by hashing', async () => {
    const state = await register('hook-fallback', 'custom-fallback-1');
    expect(state.status).toBe('assigned');
    expect(stack.hubs.map((h) => h.hostName)).toContain(state.assignedHub);
    expect(state).not.toHaveProperty('payload');
    const hub = stack.hubs.find((h) => h.hostName === state.assignedHub);
    const twin = (await Registry.fromConnectionString(hub?.connectionString ?? '').getTwin('custom-fallback-1'))
      .responseBody;
    expect(twin.tags).toEqual({ placedBy: 'enrollment' });
  });

  it("GET masks the webhook URL's key as DPS does; writing back what GET showed keeps the key", async () => {
    const got = await call('GET', '/enrollmentGroups/hook-ok');
    expect(got.status).toBe(200);
    const group = got.json as { customAllocationDefinition: { webhookUrl: string } } & Record<string, unknown>;
    expect(group.customAllocationDefinition.webhookUrl).toBe(`${base}/ok?****`);
    expect(got.text).not.toContain(SECRET);

    const put = await call('PUT', '/enrollmentGroups/hook-ok', group, { 'If-Match': String(group.etag) });
    expect(put.status).toBe(200);
    stack.services.invalidateCaches();
    await register('hook-ok', 'custom-ok-2');
    expect(requests.at(-1)).toMatchObject({ path: '/ok', query: `?code=${SECRET}` });
  });

  it('validates customAllocationDefinition at enrollment time (400)', async () => {
    const attestation = { type: 'symmetricKey' };
    const cases: [Record<string, unknown>, string][] = [
      [{ allocationPolicy: 'custom' }, 'customAllocationDefinition'],
      [
        {
          allocationPolicy: 'custom',
          customAllocationDefinition: { webhookUrl: 'http://hooks.example/a', apiVersion: 'x' },
        },
        'https',
      ],
      [
        {
          allocationPolicy: 'custom',
          customAllocationDefinition: { webhookUrl: 'https://u:p@hooks.example/a', apiVersion: 'x' },
        },
        'password',
      ],
      [
        {
          allocationPolicy: 'custom',
          customAllocationDefinition: {
            webhookUrl: 'https://h.example/a',
            apiVersion: 'x',
            fallbackAllocationPolicy: 'custom',
          },
        },
        'fallbackAllocationPolicy',
      ],
    ];
    for (const [fields, word] of cases) {
      const res = await call('PUT', '/enrollmentGroups/bad-custom', {
        enrollmentGroupId: 'bad-custom',
        attestation,
        ...fields,
      });
      expect(res.status).toBe(400);
      expect(res.text).toContain(word);
    }
  });
});
