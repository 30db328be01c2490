// The custom allocation webhook client against a local HTTP server playing the operator's webhook.
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { WebhookRequestInput } from '../../shared/allocation/custom';
import { buildAllocationRequest, callAllocationWebhook, redactUrl } from '../../shared/allocation/custom';

type Handler = (body: unknown, req: IncomingMessage, res: ServerResponse) => void;

const HUBS = ['hub-a.azure-devices.net', 'hub-b.azure-devices.net'];
const SECRET = 'Sup3rSecretFunctionKey==';
let server: Server;
let base = '';
const handlers = new Map<string, Handler>();
const received: { path: string; body: unknown }[] = [];

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
};

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      received.push({ path, body });
      const handler = handlers.get(path);
      if (handler) handler(body, req, res);
      else json(res, 404, { error: 'no such webhook' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const input = (path: string, extra: Partial<WebhookRequestInput> = {}): WebhookRequestInput => ({
  webhookUrl: `${base}${path}?code=${encodeURIComponent(SECRET)}`,
  apiVersion: '2021-10-01',
  enrollment: {
    kind: 'group',
    value: {
      enrollmentGroupId: 'factory-a',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'cHJpbWFyeUtleQ==', secondaryKey: 'c2Vj' } },
      allocationPolicy: 'custom',
      customAllocationDefinition: { webhookUrl: `${base}${path}?code=${SECRET}`, apiVersion: '2021-10-01' },
      initialTwin: { tags: { site: 'lab' } },
    },
  },
  registrationId: 'dev-1',
  attestation: { type: 'symmetricKey' },
  payload: { modelId: 'dtmi:com:example:Thermostat;1' },
  candidates: HUBS,
  ...extra,
});

describe('the AllocationRequest', () => {
  it('carries the enrollment without secrets, the runtime context and the candidate hubs', () => {
    const request = buildAllocationRequest(
      input('/x', { current: { iotHubHostName: 'hub-a.azure-devices.net', deviceId: 'dev-1' } }),
    );
    expect(request).toEqual({
      enrollmentGroup: {
        enrollmentGroupId: 'factory-a',
        attestation: { type: 'symmetricKey' },
        allocationPolicy: 'custom',
        customAllocationDefinition: { webhookUrl: `${base}/x?****`, apiVersion: '2021-10-01' },
        initialTwin: { tags: { site: 'lab' } },
      },
      deviceRuntimeContext: {
        registrationId: 'dev-1',
        currentIotHubHostName: 'hub-a.azure-devices.net',
        currentDeviceId: 'dev-1',
        symmetricKey: {},
        payload: { modelId: 'dtmi:com:example:Thermostat;1' },
      },
      linkedHubs: HUBS,
    });
    expect(JSON.stringify(request)).not.toContain(SECRET);
    expect(JSON.stringify(request)).not.toContain('cHJpbWFyeUtleQ==');
  });

  it('keeps only certificate info for X.509 and the public endorsement key for TPM; no current hub at first', () => {
    const x509 = buildAllocationRequest(
      input('/x', {
        enrollment: {
          kind: 'individual',
          value: {
            registrationId: 'dev-1',
            attestation: {
              type: 'x509',
              x509: { clientCertificates: { primary: { certificate: 'PEM…', info: { subjectName: 'CN=dev-1' } } } },
            },
          },
        },
        attestation: { type: 'x509', x509: { clientCertificate: { subjectName: 'CN=dev-1' } } },
      }),
    );
    expect(x509.individualEnrollment).toEqual({
      registrationId: 'dev-1',
      attestation: { type: 'x509', x509: { clientCertificates: { primary: { info: { subjectName: 'CN=dev-1' } } } } },
    });
    expect(x509.deviceRuntimeContext).toEqual({
      registrationId: 'dev-1',
      x509: { clientCertificate: { subjectName: 'CN=dev-1' } },
      payload: { modelId: 'dtmi:com:example:Thermostat;1' },
    });
    const tpm = buildAllocationRequest(
      input('/x', {
        enrollment: {
          kind: 'individual',
          value: {
            registrationId: 'dev-1',
            attestation: { type: 'tpm', tpm: { endorsementKey: 'EK', storageRootKey: 'SRK' } },
          },
        },
        attestation: { type: 'tpm', endorsementKey: 'EK' },
        payload: undefined,
      }),
    );
    expect(tpm.individualEnrollment).toEqual({
      registrationId: 'dev-1',
      attestation: { type: 'tpm', tpm: { endorsementKey: 'EK' } },
    });
    expect(tpm.deviceRuntimeContext).toEqual({ registrationId: 'dev-1', tpm: { endorsementKey: 'EK' } });
  });

  it('masks credentials and the query of a URL', () => {
    expect(redactUrl('https://user:pw@fn.azurewebsites.net/api/alloc?code=abc&x=1')).toBe(
      'https://fn.azurewebsites.net/api/alloc?****',
    );
    expect(redactUrl('https://fn.azurewebsites.net/api/alloc')).toBe('https://fn.azurewebsites.net/api/alloc');
    expect(redactUrl('not a url')).toBe('(an invalid URL)');
  });
});

describe('callAllocationWebhook', () => {
  it('returns the hub, initial twin and payload the webhook answered, and the webhook saw the request', async () => {
    handlers.set('/normal', (body, _req, res) =>
      json(res, 200, {
        iotHubHostName: 'HUB-B.azure-devices.net',
        initialTwin: { tags: { tenant: 'contoso' }, properties: { desired: { rate: 5 } } },
        payload: {
          welcome: (body as { deviceRuntimeContext: { registrationId: string } }).deviceRuntimeContext.registrationId,
        },
      }),
    );
    const outcome = await callAllocationWebhook(input('/normal'));
    expect(outcome).toMatchObject({
      ok: true,
      iotHubHostName: 'hub-b.azure-devices.net',
      initialTwin: { tags: { tenant: 'contoso' }, properties: { desired: { rate: 5 } } },
      payload: { welcome: 'dev-1' },
    });
    expect(received.find((r) => r.path === '/normal')?.body).toMatchObject({ linkedHubs: HUBS });
  });

  it('an answer with only a hub has no twin and no payload', async () => {
    handlers.set('/minimal', (_b, _req, res) =>
      json(res, 200, { iotHubHostName: 'hub-a.azure-devices.net', payload: null }),
    );
    const outcome = await callAllocationWebhook(input('/minimal'));
    expect(outcome.ok && Object.keys(outcome).sort()).toEqual(['durationMs', 'iotHubHostName', 'ok']);
    expect(outcome).toMatchObject({ ok: true, iotHubHostName: 'hub-a.azure-devices.net' });
  });

  it('gives up at the deadline when the webhook does not answer', async () => {
    handlers.set('/slow', () => undefined); // never answers
    const started = performance.now();
    const outcome = await callAllocationWebhook(input('/slow'), { timeoutMs: 300 });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(outcome).toMatchObject({ ok: false, reason: 'timeout' });
    if (!outcome.ok) expect(outcome.errorMessage).toMatch(/did not answer within 300 ms/);
    expect(received.filter((r) => r.path === '/slow')).toHaveLength(1); // no retry on a timeout
  });

  it('gives up at the deadline when the answer trickles', async () => {
    handlers.set('/trickle', (_b, _req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const timer = setInterval(() => res.write(' '), 50);
      res.on('close', () => clearInterval(timer));
    });
    const outcome = await callAllocationWebhook(input('/trickle'), { timeoutMs: 300 });
    expect(outcome).toMatchObject({ ok: false, reason: 'timeout' });
  });

  it('reports an HTTP error with its status and a short body excerpt, without the key, and does not retry', async () => {
    handlers.set('/broken', (_b, req, res) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`Exception: tenant lookup failed (key ${SECRET}) for ${req.url ?? ''}\n${'at frame\n'.repeat(200)}`);
    });
    const outcome = await callAllocationWebhook(input('/broken'));
    expect(outcome).toMatchObject({ ok: false, reason: 'status', httpStatus: 500 });
    if (outcome.ok) return;
    expect(outcome.errorMessage).toMatch(
      /^Custom allocation webhook http:\/\/127\.0\.0\.1:\d+\/broken\?\*\*\*\* answered HTTP 500: Exception: tenant lookup failed/,
    );
    expect(outcome.errorMessage.length).toBeLessThan(400);
    expect(outcome.errorMessage).not.toContain(SECRET);
    expect(outcome.errorMessage).not.toContain(encodeURIComponent(SECRET));
    expect(received.filter((r) => r.path === '/broken')).toHaveLength(1);
  });

  it('refuses a hub that is not a candidate, naming it and the candidates', async () => {
    handlers.set('/elsewhere', (_b, _req, res) => json(res, 200, { iotHubHostName: 'rogue.azure-devices.net' }));
    const outcome = await callAllocationWebhook(input('/elsewhere'));
    expect(outcome).toMatchObject({ ok: false, reason: 'invalidAnswer', httpStatus: 200 });
    if (!outcome.ok) {
      expect(outcome.errorMessage).toContain("'rogue.azure-devices.net', which is not one of the candidate hubs");
      expect(outcome.errorMessage).toContain(HUBS.join(', '));
    }
  });

  it('refuses invalid JSON, quoting the start of the body', async () => {
    handlers.set('/garbled', (_b, _req, res) => res.writeHead(200).end('<html>Function host is not running.</html>'));
    const outcome = await callAllocationWebhook(input('/garbled'));
    expect(outcome).toMatchObject({ ok: false, reason: 'invalidJson', httpStatus: 200 });
    if (!outcome.ok) expect(outcome.errorMessage).toContain('not JSON: <html>Function host is not running.</html>');
  });

  it('refuses an initial twin IoT Hub would refuse, and an answer without a hub', async () => {
    handlers.set('/bigtwin', (_b, _req, res) =>
      json(res, 200, { iotHubHostName: HUBS[0], initialTwin: { tags: { blob: 'x'.repeat(9000) } } }),
    );
    const big = await callAllocationWebhook(input('/bigtwin'));
    expect(big).toMatchObject({ ok: false, reason: 'invalidAnswer' });
    if (!big.ok) expect(big.errorMessage).toMatch(/initialTwin.*initialTwin\.tags/);
    handlers.set('/nohub', (_b, _req, res) => json(res, 200, { payload: {} }));
    const none = await callAllocationWebhook(input('/nohub'));
    expect(none).toMatchObject({ ok: false, reason: 'invalidAnswer' });
    if (!none.ok) expect(none.errorMessage).toContain('without an iotHubHostName');
  });

  it('retries a refused connection once, and says so when the retry fails too', async () => {
    // A port nothing listens on: both attempts are refused.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const outcome = await callAllocationWebhook({
      ...input('/x'),
      webhookUrl: `http://127.0.0.1:${port}/api?code=${SECRET}`,
    });
    expect(outcome).toMatchObject({ ok: false, reason: 'connection' });
    if (!outcome.ok) {
      expect(outcome.errorMessage).toContain('could not be reached (ECONNREFUSED, also on a retry)');
      expect(outcome.errorMessage).not.toContain(SECRET);
    }
  });

  it('succeeds when the retry after a refused connection gets through', async () => {
    let calls = 0;
    const flaky: typeof fetch = (url, init) => {
      calls++;
      if (calls === 1) return Promise.reject(new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }));
      return fetch(url, init);
    };
    handlers.set('/flaky', (_b, _req, res) => json(res, 200, { iotHubHostName: HUBS[1] }));
    const outcome = await callAllocationWebhook(input('/flaky'), { fetch: flaky });
    expect(calls).toBe(2);
    expect(outcome).toMatchObject({ ok: true, iotHubHostName: HUBS[1] });
  });

  it('refuses a URL that is not http(s)', async () => {
    const outcome = await callAllocationWebhook({ ...input('/x'), webhookUrl: 'ftp://example.com/alloc?code=abc' });
    expect(outcome).toMatchObject({ ok: false, reason: 'url' });
  });
});
