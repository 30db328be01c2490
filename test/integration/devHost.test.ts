// The dev host: route table semantics of the Functions host, and the App Service client-certificate header.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';

import type { HttpRequest } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createCa } from '../../dev/certs';
import type { DevHost } from '../../dev/host';
import { startDevHost } from '../../dev/host';
import type { HttpFunctionDefinition } from '../../shared/http/httpFunction';

const echo = (name: string) => async (req: HttpRequest) =>
  Promise.resolve({
    jsonBody: { name, params: req.params, cert: req.headers.get('x-arr-clientcert'), body: await req.text() },
  });

const definitions: HttpFunctionDefinition[] = [
  { name: 'byParam', methods: ['GET', 'POST'], route: '{scope}/things/{id}', handler: echo('byParam') },
  { name: 'byLiteral', methods: ['GET'], route: 'fixed/things/{id}', handler: echo('byLiteral') },
  { name: 'bulk', methods: ['POST'], route: 'items', handler: echo('bulk') },
];

function get(
  port: number,
  method: string,
  path: string,
  options: { cert?: string; key?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        ca: readFileSync(inject('certs').caCert),
        servername: 'localhost',
        headers: {
          ...options.headers,
          ...(options.body ? { 'Content-Length': String(Buffer.byteLength(options.body)) } : {}),
        },
        ...(options.cert ? { cert: options.cert, key: options.key } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            json: JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('dev host', () => {
  let host: DevHost;

  beforeAll(async () => {
    const certs = inject('certs');
    host = await startDevHost(definitions, {
      tls: { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') },
    });
  });

  afterAll(async () => {
    await host?.close();
  });

  it('matches routes case-insensitively, with a trailing slash, and decodes parameters', async () => {
    const res = await get(host.port, 'GET', '/Scope1/THINGS/a%3Ab/?api-version=1');
    expect(res.json).toMatchObject({ name: 'byParam', params: { scope: 'Scope1', id: 'a:b' } });
    expect((await get(host.port, 'POST', '/items/')).json).toMatchObject({ name: 'bulk' });
  });

  it('prefers literal segments over parameters, like the Functions host', async () => {
    expect((await get(host.port, 'GET', '/fixed/things/1')).json).toMatchObject({ name: 'byLiteral' });
    expect((await get(host.port, 'POST', '/fixed/things/1')).json).toMatchObject({ name: 'byParam' });
  });

  it('answers 404 and 405 with DPS-shaped errors', async () => {
    const missing = await get(host.port, 'GET', '/nowhere');
    expect(missing.status).toBe(404);
    expect(missing.json).toMatchObject({ errorCode: 404000 });
    const wrong = await get(host.port, 'DELETE', '/items');
    expect(wrong.status).toBe(405);
    expect(wrong.json).toMatchObject({ errorCode: 405000 });
  });

  it('forwards the TLS client certificate as X-ARR-ClientCert (base64 DER of the leaf)', async () => {
    const client = await createCa('device-under-test');
    const res = await get(host.port, 'GET', '/s/things/1', { cert: client.cert, key: client.key });
    const forwarded = new X509Certificate(Buffer.from(String(res.json.cert), 'base64'));
    expect(forwarded.subject).toBe('CN=device-under-test');
    expect(forwarded.raw.equals(new X509Certificate(client.cert).raw)).toBe(true);
  });

  it('drops an X-ARR-ClientCert header sent by the client itself', async () => {
    const res = await get(host.port, 'GET', '/s/things/1', { headers: { 'X-ARR-ClientCert': 'spoofed' } });
    expect(res.json.cert).toBeNull();
  });

  it('passes request bodies to handlers, and drops them on GET like the Functions host', async () => {
    expect((await get(host.port, 'POST', '/s/things/1', { body: '{"a":1}' })).json.body).toBe('{"a":1}');
    expect((await get(host.port, 'GET', '/s/things/1', { body: '{}' })).json.body).toBe('');
  });
});
