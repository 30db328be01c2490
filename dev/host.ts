// The local HTTPS host: serves exactly the functions registered through `httpFunction` (same routes, same handlers),
// with HttpRequest/InvocationContext built the way the Functions host builds them, and a TLS client certificate
// forwarded as `X-ARR-ClientCert` (base64 DER of the leaf) like App Service does. Not deployed.
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';

import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import type { HttpResponseInit } from '@azure/functions';

import { errorBody } from '../shared/errors';
import type { CompiledRoute, HttpFunctionDefinition } from '../shared/http/httpFunction';
import { byFunctionName, compileRoute, registeredFunctions, unmatchedRoute } from '../shared/http/httpFunction';
import { MAX_SERVICE_BODY_BYTES } from '../shared/management/serviceRequest';

/**
 * Requests larger than this are refused before a handler sees them. Handlers enforce their own limits (96 KB for
 * devices, MAX_SERVICE_BODY_BYTES for bulk service calls); the margin lets them, not the host, answer just above it.
 */
const MAX_REQUEST_BYTES = MAX_SERVICE_BODY_BYTES + 1024 * 1024;

/** Node's answers to a request head it can't parse (see 'clientError' below); anything else is a 400. */
const CLIENT_ERRORS: Record<string, [status: number, message: string]> = {
  HPE_HEADER_OVERFLOW: [431, 'The request URL or headers are too large.'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request was not received in time.'],
};

export interface DevHostOptions {
  tls: { cert: string; key: string };
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Called once per request, e.g. to print an access log line. Never given headers or bodies (secrets). */
  onRequest?: (line: { method: string; path: string; status: number; ms: number }) => void;
  /** The header the TLS client certificate is forwarded in (the service's DPS_CLIENT_CERT_HEADER); x-arr-clientcert. */
  clientCertHeader?: string;
  /**
   * Bench only (bench/hostProcess.ts): serve as the worker behind App Service's front end, which terminates TLS and
   * sets the header itself, so a request without a TLS client certificate keeps the header its client sent (the
   * client plays the front end). Off by default: `npm start`, the tests and Azure never trust a client's header.
   */
  trustClientCertHeader?: boolean;
  /** How long a client may take to send its request head (10 s), and its whole request (60 s): slowloris. */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
}

export interface DevHost {
  port: number;
  /** `localhost:port`: what an SDK is given as its host name. */
  hostName: string;
  close(): Promise<void>;
}

/**
 * Loads every function module from `functions/` beside this file (`dist/functions` when compiled, the TypeScript
 * sources under vitest), so the table is the one the Functions host would index.
 */
export async function loadFunctions(
  dir = join(__dirname, '..', 'functions'),
): Promise<readonly HttpFunctionDefinition[]> {
  // @azure/functions warns once per function that it is "in test mode" when no Functions host is present: expected here.
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (!/"@azure\/functions" package (is in|to) test mode/.test(String(args[0]))) warn(...args);
  };
  try {
    for (const file of readdirSync(dir).sort()) {
      // import(), not require(): under vitest the TypeScript sources must go through its transform.
      if (/\.(js|ts)$/.test(file) && !file.endsWith('.d.ts')) await import(join(dir, file));
    }
  } finally {
    console.warn = warn;
  }
  return registeredFunctions();
}

interface Route extends CompiledRoute {
  definition: HttpFunctionDefinition;
}

/**
 * The route table in the order the Functions host tries it: by function name, ignoring case, first match wins (not by
 * specificity: Azure/azure-functions-nodejs-library#300). Serving in that order here lets the tests see what Azure
 * would route; the catch-all is named to sort last (functions/notFound.ts).
 */
export function compileRoutes(definitions: readonly HttpFunctionDefinition[]): Route[] {
  return [...definitions].sort(byFunctionName).map((definition) => ({ definition, ...compileRoute(definition.route) }));
}

export function startDevHost(
  definitions: readonly HttpFunctionDefinition[],
  options: DevHostOptions,
): Promise<DevHost> {
  const routes = compileRoutes(definitions);
  const certForwarding = {
    header: (options.clientCertHeader ?? 'x-arr-clientcert').toLowerCase(),
    trustClient: options.trustClientCertHeader === true,
  };
  const server = createServer(
    // Ask for a client certificate but let the handler decide: X.509 devices need one, SAS devices have none.
    {
      cert: options.tls.cert,
      key: options.tls.key,
      requestCert: true,
      rejectUnauthorized: false,
      // Node's defaults (60 s for the head, 300 s for the request, checked every 30 s) let a client that trickles
      // bytes hold a connection for minutes; these answer it with a 408 (see 'clientError') much sooner.
      headersTimeout: options.headersTimeoutMs ?? 10_000,
      requestTimeout: options.requestTimeoutMs ?? 60_000,
      connectionsCheckingInterval: Math.min(1000, options.headersTimeoutMs ?? 1000),
    },
    (req, res) => {
      const started = performance.now();
      serve(routes, req, res, certForwarding)
        .catch((err: unknown) => {
          // The client went away mid-request (or was timed out): nobody to answer, nothing went wrong here.
          if (req.destroyed && (err as NodeJS.ErrnoException).code === 'ECONNRESET') return void res.destroy();
          const trackingId = randomUUID();
          console.error(
            `[dev host] [${trackingId}] ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
          );
          if (!res.headersSent) writeJson(res, 500, errorBody(500000, 'Internal server error.', trackingId));
          else res.destroy();
        })
        .finally(() => {
          options.onRequest?.({
            method: req.method ?? '',
            path: (req.url ?? '').split('?')[0] ?? '',
            status: res.statusCode,
            ms: performance.now() - started,
          });
        });
    },
  );
  // A request head Node can't take (a URL or headers over `maxHeaderSize`, 16 KB; malformed HTTP) never reaches
  // `serve`: Node would answer it with an empty 431/400. DPS clients expect JSON, so answer on the raw socket.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const [status, message] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'The request is not valid HTTP.'];
    answerRaw(socket, status, message);
  });
  // Node hands CONNECT to this event, not to the request handler (and drops the connection if nobody listens).
  server.on('connect', (_req: IncomingMessage, socket: Duplex) =>
    answerRaw(socket, 405, 'Method CONNECT is not allowed.'),
  );
  server.keepAliveTimeout = 30_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      resolve({
        port,
        hostName: `localhost:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** A DPS-shaped error written on the raw socket, which is then closed. */
function answerRaw(socket: Duplex, status: number, message: string): void {
  const text = JSON.stringify(errorBody(status * 1000, message));
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(text)}\r\nx-ms-error-code: ${status * 1000}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/** Methods undici's Request (inside HttpRequest) refuses to build: answered as the catch-all answers them. */
const UNREQUESTABLE = new Set(['CONNECT', 'TRACE', 'TRACK']);

async function serve(
  routes: Route[],
  req: IncomingMessage,
  res: ServerResponse,
  certForwarding: { header: string; trustClient: boolean },
): Promise<void> {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', `https://${req.headers.host ?? 'localhost'}`);
  } catch {
    req.resume();
    res.setHeader('Connection', 'close');
    return writeJson(res, 400, errorBody(400000, 'The request URL or Host header is not valid.'));
  }
  const method = (req.method ?? 'GET').toUpperCase();
  // The first route that serves the method and the path, as the Functions host does: methods are route constraints,
  // so a wrong method falls through to the catch-all.
  let hit: { route: Route; params: Record<string, string> } | undefined;
  for (const route of routes) {
    const params = route.definition.methods.includes(method as never) ? route.match(url.pathname) : undefined;
    if (params) {
      hit = { route, params };
      break;
    }
  }
  if (!hit || UNREQUESTABLE.has(method)) {
    // No catch-all registered: the same 404/405 it would give.
    req.resume();
    const definitions = routes.map((r) => r.definition);
    return writeResponse(res, unmatchedRoute(method, url.toString(), definitions));
  }

  const body = Number(req.headers['content-length'] ?? 0) > MAX_REQUEST_BYTES ? undefined : await readBody(req);
  if (body === undefined) {
    // At once, and the connection closed: the rest of the body (it may never end) is not read.
    res.setHeader('Connection', 'close');
    return writeJson(res, 413, errorBody(413001, 'The request body is too large.'));
  }

  const { params } = hit;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  // Like App Service: the client can't supply this header itself; it reflects the TLS client certificate only.
  // getX509Certificate, not getPeerCertificate: the latter builds a JS object of every field on each request.
  const peer = (req.socket as TLSSocket).getPeerX509Certificate?.();
  if (peer) headers[certForwarding.header] = peer.raw.toString('base64');
  else if (!certForwarding.trustClient) delete headers[certForwarding.header];

  const request = new HttpRequest({
    method,
    url: url.toString(),
    headers,
    params,
    query: Object.fromEntries(url.searchParams),
    // The Functions host drops GET/HEAD bodies too (the device SDK sends `{}` on its polls).
    ...(method === 'GET' || method === 'HEAD' ? {} : { body: { bytes: body } }),
  });
  const context = new InvocationContext({ invocationId: randomUUID(), functionName: hit.route.definition.name });
  const init = (await hit.route.definition.handler(request, context)) ?? { status: 204 };
  await writeResponse(res, init);
}

async function writeResponse(res: ServerResponse, init: HttpResponseInit | HttpResponse): Promise<void> {
  const response = init instanceof HttpResponse ? init : new HttpResponse(init);
  const bytes = Buffer.from(await response.arrayBuffer());
  response.headers.forEach((value, name) => res.setHeader(name, value));
  res.statusCode = response.status;
  res.setHeader('Content-Length', bytes.length);
  res.end(bytes);
}

function writeJson(res: ServerResponse, status: number, body: ReturnType<typeof errorBody>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'x-ms-error-code': String(body.errorCode),
  });
  res.end(text);
}

/** The body, or undefined as soon as it exceeds MAX_REQUEST_BYTES (the rest is left unread). */
function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) return void chunks.push(chunk);
      req.off('data', onData);
      req.pause();
      resolve(undefined);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
