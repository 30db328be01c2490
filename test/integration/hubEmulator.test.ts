// The hub emulator, driven by the official azure-iothub Registry: if the SDK is happy, our own client will be too.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { HubEmulator, HubEmulatorOptions } from '../../dev/hubEmulator';
import { startHubEmulator } from '../../dev/hubEmulator';
import { parseHubConnectionString } from '../../shared/domain/linkedHub';
import { createSas } from '../../shared/http/sas';
import { HubRegistryClient } from '../../shared/hubs/registryClient';

interface DeviceJson {
  deviceId: string;
  etag: string;
  generationId: string;
  status: string;
  authentication: { type: string; symmetricKey: { primaryKey: string | null; secondaryKey: string | null } };
  capabilities: { iotEdge: boolean };
}

const certs = inject('certs');
const tls: HubEmulatorOptions['tls'] = {
  cert: readFileSync(certs.serverCert, 'utf8'),
  key: readFileSync(certs.serverKey, 'utf8'),
};

/** The error a rejected SDK promise carries, for assertions on its name. */
async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to fail');
}

/** A raw REST call with a valid SAS, for what the SDK cannot send (its update() always sends If-Match "*"). */
function call(
  hub: HubEmulator,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: unknown }> {
  const key = /SharedAccessKey=([^;]+)/.exec(hub.connectionString)?.[1] ?? '';
  const auth = createSas(hub.hostName, key, Math.floor(Date.now() / 1000) + 600, 'iothubowner');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: hub.port,
        servername: 'localhost',
        method,
        path: `${path}?api-version=2021-04-12`,
        headers: { Authorization: auth, 'Content-Type': 'application/json', ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('hub emulator with the official azure-iothub Registry', () => {
  let hub: HubEmulator;
  let registry: Registry;

  beforeAll(async () => {
    hub = await startHubEmulator({ tls });
    registry = Registry.fromConnectionString(hub.connectionString);
  });
  afterAll(() => hub.close());

  it('generates device keys when created with empty keys', async () => {
    const { responseBody } = await registry.create({ deviceId: 'dev-a', status: 'enabled' });
    const device = responseBody as unknown as DeviceJson;
    expect(device.deviceId).toBe('dev-a');
    expect(device.authentication.type).toBe('sas');
    expect(Buffer.from(device.authentication.symmetricKey.primaryKey ?? '', 'base64')).toHaveLength(32);
    expect(device.authentication.symmetricKey.secondaryKey).not.toBe(device.authentication.symmetricKey.primaryKey);
    expect(device.capabilities.iotEdge).toBe(false);
    expect(hub.deviceCount()).toBe(1);
  });

  it('rejects creating a device that already exists', async () => {
    const err = await failure(registry.create({ deviceId: 'dev-a' }));
    expect(err.name).toBe('DeviceAlreadyExistsError');
  });

  it('treats device IDs case-sensitively, as IoT Hub does', async () => {
    const err = await failure(registry.get('DEV-A'));
    expect(err.name).toBe('DeviceNotFoundError');
    expect(hub.device('Dev-A')).toBeUndefined();
    const { responseBody } = await registry.get('dev-a');
    expect((hub.device('dev-a') as DeviceJson).etag).toBe(responseBody.etag);
  });

  it('updates a device with a matching etag and rejects a stale one', async () => {
    const before = (await registry.get('dev-a')).responseBody as unknown as DeviceJson;
    const viaSdk = (await registry.update({ deviceId: 'dev-a', status: 'disabled' }))
      .responseBody as unknown as DeviceJson;
    expect(viaSdk.status).toBe('disabled');
    expect(viaSdk.generationId).toBe(before.generationId);
    expect(viaSdk.etag).not.toBe(before.etag);

    const body = JSON.stringify({ deviceId: 'dev-a', status: 'enabled', capabilities: { iotEdge: true } });
    const stale = await call(hub, 'PUT', '/devices/dev-a', body, { 'If-Match': `"${before.etag}"` });
    expect(stale.status).toBe(412);
    expect((stale.body as { Message: string }).Message).toMatch(/^ErrorCode:PreconditionFailed;/);

    const fresh = await call(hub, 'PUT', '/devices/dev-a', body, { 'If-Match': `"${viaSdk.etag}"` });
    expect(fresh.status).toBe(200);
    expect(fresh.body).toMatchObject({ deviceId: 'dev-a', status: 'enabled', capabilities: { iotEdge: true } });
  });

  it('merges twin patches into tags and desired properties', async () => {
    const twin = (await registry.getTwin('dev-a')).responseBody;
    expect(twin.deviceId).toBe('dev-a');
    expect(twin.properties.desired).toMatchObject({ $version: 1 });

    const first = await registry.updateTwin('dev-a', { tags: { env: 'prod', site: { room: 1 } } }, twin.etag);
    const patch = { tags: { site: { floor: 2 } }, properties: { desired: { fw: '2.0', telemetry: { interval: 5 } } } };
    const { responseBody: merged } = await registry.updateTwin('dev-a', patch, first.responseBody.etag);
    expect(merged.tags).toEqual({ env: 'prod', site: { room: 1, floor: 2 } });
    expect(merged.properties.desired).toMatchObject({ fw: '2.0', telemetry: { interval: 5 }, $version: 2 });

    const removed = await registry.updateTwin('dev-a', { properties: { desired: { fw: null } } }, '*');
    expect(removed.responseBody.properties.desired).not.toHaveProperty('fw');
    expect(removed.responseBody.properties.desired).toMatchObject({ telemetry: { interval: 5 }, $version: 3 });
  });

  it('rejects a twin patch with a stale etag', async () => {
    const twin = (await registry.getTwin('dev-a')).responseBody;
    await registry.updateTwin('dev-a', { tags: { n: 1 } }, twin.etag);
    const err = await failure(registry.updateTwin('dev-a', { tags: { n: 2 } }, twin.etag));
    expect(err.name).toBe('InvalidEtagError');
  });

  it('deletes a device and its twin, after which get fails with DeviceNotFoundError', async () => {
    await registry.delete('dev-a');
    expect(hub.deviceCount()).toBe(0);
    expect((await failure(registry.get('dev-a'))).name).toBe('DeviceNotFoundError');
    expect((await failure(registry.getTwin('dev-a'))).name).toBe('DeviceNotFoundError');
  });

  it('keeps x509 thumbprints and edge capabilities', async () => {
    const primaryThumbprint = 'AB'.repeat(20);
    const { responseBody } = await registry.create({
      deviceId: 'edge-1',
      authentication: { x509Thumbprint: { primaryThumbprint } },
      capabilities: { iotEdge: true },
    });
    expect(responseBody.authentication).toMatchObject({ type: 'selfSigned', x509Thumbprint: { primaryThumbprint } });
    expect(responseBody.capabilities).toEqual({ iotEdge: true });
  });

  it('rejects a Registry signing with the wrong key with UnauthorizedError', async () => {
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    const impostor = Registry.fromConnectionString(
      hub.connectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${wrongKey}`),
    );
    const err = await failure(impostor.get('edge-1'));
    expect(err.name).toBe('UnauthorizedError');
    expect((err as Error & { response?: { statusCode?: number } }).response?.statusCode).toBe(401);
  });

  it('answers bad requests with IoT Hub error bodies and JSON content type', async () => {
    const malformed = await call(hub, 'PUT', '/devices/bad', '{"deviceId":');
    expect(malformed.status).toBe(400);
    expect(malformed.headers['content-type']).toBe('application/json; charset=utf-8');
    expect((malformed.body as { Message: string }).Message).toMatch(/^ErrorCode:ArgumentInvalid;/);

    const tooLarge = await call(
      hub,
      'PUT',
      '/devices/big',
      JSON.stringify({ deviceId: 'big', pad: 'x'.repeat(300_000) }),
    );
    expect(tooLarge.status).toBe(413);
    const deepArray = `{"tags":{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`; // parses, but would not stringify
    expect((await call(hub, 'PATCH', '/twins/edge-1', deepArray)).status).toBe(400);
    expect((await call(hub, 'GET', '/twins/edge-1')).status).toBe(200);
    expect((await call(hub, 'GET', '/configurations/x')).status).toBe(404);
    expect((await call(hub, 'POST', '/devices/edge-1')).status).toBe(405);
    expect((await call(hub, 'PUT', '/devices/edge-1', '{}')).status).toBe(409);
    expect((await call(hub, 'PUT', '/devices/ghost', '{}', { 'If-Match': '*' })).status).toBe(404);
    expect((await call(hub, 'DELETE', '/devices/edge-1', undefined, { 'If-Match': '"stale"' })).status).toBe(412);
  });
});

describe('hub emulator persistence', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-emulator-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds devices created before a restart on the same file', async () => {
    const persistFile = join(dir, 'hub.json');
    const first = await startHubEmulator({ tls, persistFile });
    const created = await Registry.fromConnectionString(first.connectionString).create({ deviceId: 'kept' });
    await first.close();

    const second = await startHubEmulator({ tls, persistFile });
    try {
      expect(second.deviceCount()).toBe(1);
      const { responseBody } = await Registry.fromConnectionString(second.connectionString).get('kept');
      const key = created.responseBody.authentication?.symmetricKey?.primaryKey;
      expect(key).toBeTruthy();
      expect(responseBody.authentication?.symmetricKey?.primaryKey).toBe(key);
      expect(responseBody.etag).toBe(created.responseBody.etag);
    } finally {
      await second.close();
    }
  });
});

describe('hub emulator persistence failures are loud', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-emulator-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the registry folder and saves the key at start, before any device', async () => {
    const persistFile = join(dir, 'nested', 'hubs', 'hub.json');
    const first = await startHubEmulator({ tls, persistFile });
    await first.close();
    const second = await startHubEmulator({ tls, persistFile });
    await second.close();
    const key = (hub: HubEmulator) => /SharedAccessKey=([^;]+)/.exec(hub.connectionString)?.[1];
    expect(key(second)).toBe(key(first));
  });

  it('rejects close() when a save failed, instead of pretending the registry was kept', async () => {
    const folder = join(dir, 'vanishing');
    const hub = await startHubEmulator({ tls, persistFile: join(folder, 'hub.json') });
    rmSync(folder, { recursive: true, force: true });
    const errors: unknown[] = [];
    const error = console.error;
    console.error = (...args: unknown[]) => errors.push(args[0]);
    try {
      await Registry.fromConnectionString(hub.connectionString).create({ deviceId: 'lost' });
      await expect(hub.close()).rejects.toThrow(/could not save its registry/);
    } finally {
      console.error = error;
    }
    expect(String(errors[0])).toMatch(/ERROR hub emulator: could not save/);
  });
});

describe('our lean registry client against the emulator', () => {
  let hub: HubEmulator;
  let registry: Registry;
  let client: HubRegistryClient;

  beforeAll(async () => {
    hub = await startHubEmulator({ tls });
    registry = Registry.fromConnectionString(hub.connectionString);
    const connection = parseHubConnectionString(hub.connectionString);
    if (!connection) throw new Error('the emulator printed a malformed connection string');
    client = new HubRegistryClient(connection, new Agent({ keepAlive: true }));
  });
  afterAll(() => hub.close());

  const identity = (deviceId: string, primaryKey: string) => ({
    deviceId,
    authentication: { type: 'sas' as const, primaryKey, secondaryKey: primaryKey },
    iotEdge: false,
  });
  const keyOf = async (deviceId: string) =>
    (await registry.get(deviceId)).responseBody.authentication?.symmetricKey?.primaryKey;

  it('creates, then replaces the identity of an existing device', async () => {
    await client.upsertDevice(identity('lean-1', Buffer.alloc(32, 1).toString('base64')));
    await client.upsertDevice(identity('lean-1', Buffer.alloc(32, 2).toString('base64')));
    expect(await keyOf('lean-1')).toBe(Buffer.alloc(32, 2).toString('base64'));
  });

  it('creates X.509 identities as the attestation says: selfSigned thumbprints, certificateAuthority', async () => {
    const thumb = (n: number) => Buffer.alloc(20, n).toString('hex').toUpperCase();
    await client.upsertDevice({
      deviceId: 'lean-x509-1',
      authentication: { type: 'selfSigned', primaryThumbprint: thumb(1), secondaryThumbprint: thumb(2) },
      iotEdge: false,
    });
    await client.upsertDevice({
      deviceId: 'lean-x509-2',
      authentication: { type: 'certificateAuthority' },
      iotEdge: false,
    });
    const selfSigned = (await registry.get('lean-x509-1')).responseBody.authentication;
    expect(selfSigned).toMatchObject({
      type: 'selfSigned',
      x509Thumbprint: { primaryThumbprint: thumb(1), secondaryThumbprint: thumb(2) },
    });
    const ca = (await registry.get('lean-x509-2')).responseBody.authentication as { type?: string } | undefined;
    expect(ca?.type).toBe('certificateAuthority');
  });

  it('updates first when the device likely exists, and still creates it when it does not', async () => {
    await client.upsertDevice(identity('lean-2', Buffer.alloc(32, 3).toString('base64')), true);
    expect(await keyOf('lean-2')).toBe(Buffer.alloc(32, 3).toString('base64'));
    await client.upsertDevice(identity('lean-2', Buffer.alloc(32, 4).toString('base64')), true);
    expect(await keyOf('lean-2')).toBe(Buffer.alloc(32, 4).toString('base64'));
  });
});
