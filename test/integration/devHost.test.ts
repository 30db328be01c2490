// The dev host: route table semantics of the Functions host, and the App Service client-certificate header.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect } from 'node:tls';

import type { HttpMethod, HttpRequest } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createCa } from '../../dev/certs';
import type { DevHost } from '../../dev/host';
import { startDevHost } from '../../dev/host';
import type { Stack } from '../../dev/stack';
import type { HttpFunctionDefinition } from '../../shared/http/httpFunction';
import { registeredFunctions } from '../../shared/http/httpFunction';
import { MAX_SERVICE_BODY_BYTES } from '../../shared/management/serviceRequest';
import { rawRequest } from '../support/rawHttps';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

const echo = (name: string) => async (req: HttpRequest) =>
  Promise.resolve({
    jsonBody: { name, params: req.params, cert: req.headers.get('x-arr-clientcert'), body: await req.text() },
  });

const definitions: HttpFunctionDefinition[] = [
  { name: 'byParam', methods: ['GET', 'POST'], route: '{scope}/things/{id}', handler: echo('byParam') },
  { name: 'literalFixed', methods: ['GET'], route: 'fixed/things/{id}', handler: echo('literalFixed') },
  { name: 'bulk', methods: ['POST'], route: 'items', handler: echo('bulk') },
  {
    name: 'size',
    methods: ['POST'],
    route: 'size',
    handler: async (req: HttpRequest) => ({ jsonBody: { bytes: (await req.arrayBuffer()).byteLength } }),
  },
];
const allMethods: HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const catchAll: HttpFunctionDefinition = {
  name: 'zzzRest',
  methods: allMethods,
  route: '{*rest}',
  handler: echo('zzzRest'),
};

function get(
  port: number,
  method: string,
  path: string,
  options: { cert?: string; key?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, unknown>; json: Record<string, unknown> }> {
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
            headers: res.headers,
            json: JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const tlsTo = (port: number) => ({
  host: '127.0.0.1',
  port,
  ca: readFileSync(inject('certs').caCert),
  servername: 'localhost',
});

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

  it('tries routes in function-name order and takes the first match, like the Functions host (not by specificity)', async () => {
    // 'byParam' sorts before 'literalFixed', so it wins on a path both serve.
    expect((await get(host.port, 'GET', '/fixed/things/1')).json).toMatchObject({ name: 'byParam' });
    expect((await get(host.port, 'GET', '/FIXED/things/1')).json).toMatchObject({ name: 'byParam' });
  });

  it('answers 404 and 405 with DPS-shaped errors when no catch-all is registered', async () => {
    const missing = await get(host.port, 'GET', '/nowhere');
    expect(missing.status).toBe(404);
    expect(missing.headers['content-type']).toMatch(/^application\/json/);
    expect(missing.json).toMatchObject({ errorCode: 404000, message: 'No operation is served at GET /nowhere.' });
    const wrong = await get(host.port, 'DELETE', '/s/things/1');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('GET, POST');
    expect(wrong.json).toMatchObject({ errorCode: 405000, message: 'Method DELETE is not allowed on /s/things/1.' });
  });

  it('never echoes a huge path in full', async () => {
    const res = await get(host.port, 'GET', `/${'x'.repeat(8000)}`);
    expect(res.status).toBe(404);
    expect(String(res.json.message).length).toBeLessThan(300);
  });

  it('takes a ~5 MB body (a 10,000-item bulk), and refuses one over the service limit with a DPS-shaped 413', async () => {
    const bulk = JSON.stringify({ items: Array.from({ length: 10_000 }, (_, i) => ({ id: i, pad: 'x'.repeat(480) })) });
    expect(bulk.length).toBeGreaterThan(5_000_000);
    expect(await get(host.port, 'POST', '/size', { body: bulk })).toMatchObject({
      status: 200,
      json: { bytes: bulk.length },
    });
    const huge = await get(host.port, 'POST', '/size', { body: 'x'.repeat(MAX_SERVICE_BODY_BYTES + 2 * 1024 * 1024) });
    expect(huge).toMatchObject({ status: 413, json: { errorCode: 413001 } });
  });

  it('answers a body declared or sent beyond the limit with a 413 at once, without waiting for the rest', async () => {
    const answer = (headers: Record<string, string>, chunk: Buffer) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request({ ...tlsTo(host.port), method: 'POST', path: '/size', headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        });
        req.on('error', (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
        });
        req.write(chunk); // and never the rest: a client streaming gigabytes must not keep the host reading
      });
    const declared = await answer({ 'Content-Length': String(10 * 1024 ** 3) }, Buffer.alloc(1024));
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body)).toMatchObject({ errorCode: 413001 });
    const streamed = await answer(
      { 'Transfer-Encoding': 'chunked' },
      Buffer.alloc(MAX_SERVICE_BODY_BYTES + 2 * 1024 ** 2),
    );
    expect(streamed.status).toBe(413);
  });

  it('closes connections whose request head or body trickles in (slowloris) with a DPS-shaped 408', async () => {
    const slow = await startDevHost(definitions, {
      tls: {
        cert: readFileSync(inject('certs').serverCert, 'utf8'),
        key: readFileSync(inject('certs').serverKey, 'utf8'),
      },
      headersTimeoutMs: 300,
      requestTimeoutMs: 600,
    });
    try {
      const trickle = (text: string) =>
        new Promise<string>((resolve, reject) => {
          const socket = connect({ ...tlsTo(slow.port) }, () => socket.write(text));
          const chunks: Buffer[] = [];
          socket.on('data', (c: Buffer) => chunks.push(c));
          socket.on('close', () => resolve(Buffer.concat(chunks).toString()));
          socket.on('error', reject);
        });
      const [head, body] = await Promise.all([
        trickle('PUT /items HTTP/1.1\r\nHost: localhost\r\nX-Slow: '),
        trickle('POST /items HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"a'),
      ]);
      for (const answer of [head, body]) {
        expect(answer).toMatch(/^HTTP\/1\.1 408 /);
        expect(answer).toMatch(/"errorCode":408000/);
      }
    } finally {
      await slow.close();
    }
  });

  it("answers a URL over Node's 16 KB header limit with a DPS-shaped 431, not an empty one", async () => {
    const res = await get(host.port, 'GET', `/${'x'.repeat(20_000)}`);
    expect(res.status).toBe(431);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json).toMatchObject({ errorCode: 431000, message: 'The request URL or headers are too large.' });
    expect(Object.keys(res.json).sort()).toEqual(['errorCode', 'message', 'timestampUtc', 'trackingId']);
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

  it('strips a configured client-certificate header the client sent, and forwards the certificate in it', async () => {
    const certs = inject('certs');
    const echoHeader: HttpFunctionDefinition = {
      name: 'header',
      methods: ['GET'],
      route: 'h',
      handler: (req: HttpRequest) => Promise.resolve({ jsonBody: { cert: req.headers.get('x-client-cert') } }),
    };
    const custom = await startDevHost([echoHeader], {
      tls: { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') },
      clientCertHeader: 'X-Client-Cert',
    });
    try {
      expect((await get(custom.port, 'GET', '/h', { headers: { 'X-Client-Cert': 'spoofed' } })).json.cert).toBeNull();
      const client = await createCa('custom-header-device');
      const res = await get(custom.port, 'GET', '/h', { cert: client.cert, key: client.key });
      expect(Buffer.from(String(res.json.cert), 'base64').equals(new X509Certificate(client.cert).raw)).toBe(true);
    } finally {
      await custom.close();
    }
  });

  it('bench-only trusted front-end mode keeps a client-sent header, but a TLS client certificate still wins', async () => {
    const certs = inject('certs');
    const trusting = await startDevHost(definitions, {
      tls: { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') },
      trustClientCertHeader: true,
    });
    try {
      const forwarded = await get(trusting.port, 'GET', '/s/things/1', { headers: { 'X-ARR-ClientCert': 'abc=' } });
      expect(forwarded.json.cert).toBe('abc=');
      const client = await createCa('tls-wins');
      const res = await get(trusting.port, 'GET', '/s/things/1', {
        cert: client.cert,
        key: client.key,
        headers: { 'X-ARR-ClientCert': 'abc=' },
      });
      expect(Buffer.from(String(res.json.cert), 'base64').equals(new X509Certificate(client.cert).raw)).toBe(true);
    } finally {
      await trusting.close();
    }
  });

  it('passes request bodies to handlers, and drops them on GET like the Functions host', async () => {
    expect((await get(host.port, 'POST', '/s/things/1', { body: '{"a":1}' })).json.body).toBe('{"a":1}');
    expect((await get(host.port, 'GET', '/s/things/1', { body: '{}' })).json.body).toBe('');
  });
});

describe('dev host with a catch-all route', () => {
  let host: DevHost;

  beforeAll(async () => {
    const certs = inject('certs');
    // Registered first, to show it is ordered last all the same.
    host = await startDevHost([catchAll, ...definitions], {
      tls: { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') },
    });
  });

  afterAll(async () => {
    await host?.close();
  });

  it('tries the catch-all last (by its name), and it also gets a wrong method', async () => {
    expect((await get(host.port, 'GET', '/s/things/1')).json).toMatchObject({ name: 'byParam' });
    expect((await get(host.port, 'POST', '/items')).json).toMatchObject({ name: 'bulk' });
    expect((await get(host.port, 'POST', '/size')).json).toMatchObject({ bytes: 0 });
    expect((await get(host.port, 'GET', '/a/b%2Fc/d')).json).toMatchObject({
      name: 'zzzRest',
      params: { rest: 'a/b/c/d' },
    });
    expect((await get(host.port, 'DELETE', '/items')).json).toMatchObject({ name: 'zzzRest' });
    expect((await get(host.port, 'GET', '/')).json).toMatchObject({ name: 'zzzRest' });
  });
});

describe('the function table', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startTestStack({ hubs: { count: 0 } });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('ends with the catch-all in function-name order, the order the Functions host tries routes in', () => {
    const names = registeredFunctions().map((f) => f.name);
    const byName = [...names].sort((a, b) => (a.toUpperCase() < b.toUpperCase() ? -1 : 1));
    const catchAllName = registeredFunctions().find((f) => f.route === '{*path}')?.name;
    expect(catchAllName).toBeDefined();
    expect(byName.at(-1)).toBe(catchAllName);
  });

  it('answers an unknown path with a JSON 404 and a wrong method with a JSON 405 and Allow', async () => {
    const missing = await rawRequest(stack.host.hostName, 'POST', '/nothing/here', '{}');
    expect(missing.status).toBe(404);
    expect(missing.headers['content-type']).toMatch(/^application\/json/);
    expect(missing.json).toMatchObject({ errorCode: 404000, message: 'No operation is served at POST /nothing/here.' });
    const wrong = await rawRequest(stack.host.hostName, 'DELETE', '/serviceConfiguration');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('GET, PUT');
    expect(wrong.json).toMatchObject({ errorCode: 405000 });
  });

  it('answers TRACE, CONNECT and a Host header that names no host with DPS-shaped 4xx, never a 500', async () => {
    const send = (head: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect({ ...tlsTo(stack.host.port) }, () => socket.end(`${head}\r\n\r\n`));
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('close', () => resolve(Buffer.concat(chunks).toString()));
        socket.on('error', reject);
      });
    const trace = await send(`TRACE /${stack.idScope}/registrations/x/register HTTP/1.1\r\nHost: localhost`);
    expect(trace).toMatch(/^HTTP\/1\.1 405 [^]*"errorCode":405000/);
    const connectTo = await send('CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443');
    expect(connectTo).toMatch(/^HTTP\/1\.1 4\d\d [^]*"errorCode":4\d{5}/);
    for (const host of ['a b', '[::1', 'x:y:z']) {
      const answer = await send(`GET /enrollments/x HTTP/1.1\r\nHost: ${host}`);
      expect(answer).toMatch(/^HTTP\/1\.1 400 [^]*"errorCode":400000/);
    }
  });

  it('sends service paths that a device route also matches to the service function, in name order', async () => {
    // `{idScope}/registrations/{registrationId}` (POST) matches these too; with the root policy's token, the service
    // functions answer 404 / 200, where the device function would answer 401.
    const call = serviceCaller(() => stack);
    expect((await call('POST', '/enrollments/registrations/attestationmechanism')).json).toMatchObject({
      errorCode: 404202,
    });
    expect((await call('POST', '/enrollmentGroups/registrations/attestationmechanism')).json).toMatchObject({
      errorCode: 404202,
    });
    const query = await call('POST', '/registrations/registrations/query', {});
    expect(query.status).toBe(200);
    expect(query.json).toEqual([]);
  });

  it('still serves the known routes', async () => {
    // No credentials: the real handler's 401, not the catch-all's 404.
    const res = await rawRequest(stack.host.hostName, 'GET', '/serviceConfiguration?api-version=2021-10-01');
    expect(res).toMatchObject({ status: 401, json: { errorCode: 401002 } });
  });
});
