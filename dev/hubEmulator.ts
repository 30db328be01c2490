// A local IoT Hub registry emulator: the device-identity and twin REST API (api-version 2021-04-12) that the official
// `azure-iothub` Registry and our HubRegistryClient speak (reference/official-clients.md §5). It exists so tests and
// the dev stack can link real-looking hubs without an Azure subscription. In memory, optionally persisted to JSON.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';

import { BASE64, safeDecode } from '../shared/encoding';
import { assertNotExpired, parseSas, verifySignature } from '../shared/http/sas';
import { verifyDevToken } from './devCredential';
import { sendJson as send } from './jsonReply';

export interface HubEmulatorOptions {
  tls: { cert: string; key: string };
  host?: string;
  port?: number;
  hostName?: string;
  keyName?: string;
  key?: string;
  persistFile?: string;
  /** Also accept Entra ID-style bearer tokens from a DevTokenCredential with this secret (identity-linked hubs). */
  tokenSecret?: Buffer;
}

export interface HubEmulator {
  hostName: string;
  port: number;
  connectionString: string;
  /** snapshot for tests/inspection */
  device(deviceId: string): unknown; // undefined when absent
  /** snapshot of the twin as GET /twins/{id} returns it; undefined when absent */
  twin(deviceId: string): unknown;
  deviceCount(): number;
  /** Fault injection for tests: every request answers this HTTP status (e.g. 503) until set back to undefined. */
  setFault(status: number | undefined): void;
  close(): Promise<void>;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface Authentication {
  type: 'sas' | 'selfSigned' | 'certificateAuthority';
  symmetricKey: { primaryKey: string | null; secondaryKey: string | null };
  x509Thumbprint: { primaryThumbprint: string | null; secondaryThumbprint: string | null };
}
interface Device {
  deviceId: string;
  generationId: string;
  etag: string;
  connectionState: 'Disconnected';
  status: 'enabled' | 'disabled';
  statusReason: string | null;
  connectionStateUpdatedTime: string;
  statusUpdatedTime: string;
  lastActivityTime: string;
  cloudToDeviceMessageCount: number;
  authentication: Authentication;
  capabilities: { iotEdge: boolean };
}
interface Twin {
  etag: string;
  version: number;
  tags: JsonObject;
  desired: JsonObject;
  desiredVersion: number;
  desiredUpdated: string;
  reportedUpdated: string; // nothing reports here, so this stays the creation time
}
interface Entry {
  device: Device;
  twin: Twin;
}

const MAX_BODY = 256 * 1024;
const NEVER = '0001-01-01T00:00:00Z'; // what IoT Hub reports for times that never happened
const DEVICE_ID = /^[A-Za-z0-9\-:.+%_#*?!(),=@$']{1,128}$/;
const THUMBPRINT = /^(?:[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$/;
const UNAUTHORIZED = { Message: 'ErrorCode:IotHubUnauthorizedAccess;Unauthorized', ExceptionMessage: '' };

class HubFault extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
const invalid = (message: string): HubFault => new HubFault(400, 'ArgumentInvalid', message);
const notFound = (id: string): HubFault => new HubFault(404, 'DeviceNotFound', `Device ${id} not found`);

const newEtag = (): string => randomBytes(12).toString('base64');
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export async function startHubEmulator(options: HubEmulatorOptions): Promise<HubEmulator> {
  const keyName = options.keyName ?? 'iothubowner';
  const file = options.persistFile;
  const saved = file ? load(file) : undefined;
  // A persisted registry keeps its key, so a restarted emulator accepts the connection string linked before.
  const key = options.key ?? saved?.key ?? randomBytes(32).toString('base64');
  const keyBytes = Buffer.from(key, 'base64');
  // Device IDs are case-sensitive in IoT Hub: 'Dev-A' and 'dev-a' are two devices.
  const entries = new Map<string, Entry>((saved?.entries ?? []).map((e) => [e.device.deviceId, e]));
  let hostName = options.hostName ?? '';

  // Persistence: debounced, serialized, atomic (temp file + rename) so a crash never leaves a torn registry. A failed
  // save is loud: logged at once, and close() rejects with it, so a stop never pretends the registry was kept.
  let timer: NodeJS.Timeout | undefined;
  let dirty = false;
  let saveError: Error | undefined;
  let writing = Promise.resolve();
  const flush = (): Promise<void> => {
    if (!file || !dirty) return writing;
    dirty = false;
    writing = writing
      .then(async () => {
        const tmp = `${file}.${process.pid}.tmp`;
        await writeFile(tmp, JSON.stringify({ key, entries: [...entries.values()] }, null, 2), { mode: 0o600 });
        await rename(tmp, file);
        saveError = undefined;
      })
      .catch((err: unknown) => {
        saveError = new Error(`hub emulator: could not save its registry to ${file}: ${(err as Error).message}`);
        console.error(`ERROR ${saveError.message} (changes since the last save will be lost at stop)`);
      });
    return writing;
  };
  if (file) {
    // Created up front and saved once now (with the key), so a new registry keeps its key across restarts even
    // before its first device, and an unwritable folder fails the start instead of every later save.
    mkdirSync(dirname(file), { recursive: true });
    dirty = true;
    await flush();
    if (saveError) throw saveError;
  }
  const changed = (): void => {
    dirty = true;
    if (file && !timer) timer = setTimeout(() => ((timer = undefined), void flush()), 50);
  };

  const authorized = (header: string | undefined): boolean => {
    if (options.tokenSecret && header?.startsWith('Bearer ')) {
      return verifyDevToken(header, options.tokenSecret, 'https://iothubs.azure.net');
    }
    try {
      const token = parseSas(header);
      assertNotExpired(token, new Date());
      const sr = token.resource.toLowerCase();
      const host = hostName.toLowerCase();
      return (
        (sr === host || sr.startsWith(`${host}/`)) && token.keyName === keyName && verifySignature(token, keyBytes)
      );
    } catch {
      return false;
    }
  };

  let fault: number | undefined;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (fault !== undefined) throw new HubFault(fault, 'ServerError', 'Injected fault.');
    if (!authorized(req.headers.authorization)) return send(res, 401, UNAUTHORIZED);
    const url = new URL(req.url ?? '/', 'https://hub');
    const parts = url.pathname.split('/');
    const kind = parts[1];
    const id = parts.length === 3 && parts[2] ? safeDecode(parts[2]) : undefined;
    if ((kind !== 'devices' && kind !== 'twins') || id === undefined) {
      throw new HubFault(404, 'NotFound', `No resource at ${url.pathname}.`);
    }
    const allowed = kind === 'devices' ? ['GET', 'PUT', 'DELETE'] : ['GET', 'PUT', 'PATCH'];
    const method = req.method ?? 'GET';
    if (!allowed.includes(method)) {
      res.setHeader('Allow', allowed.join(', '));
      throw new HubFault(405, 'MethodNotAllowed', `${method} is not supported on /${kind}/{id}.`);
    }
    const body = method === 'PUT' || method === 'PATCH' ? await readJson(req) : undefined;
    const entry = entries.get(id);
    const ifMatch = req.headers['if-match'];

    if (kind === 'devices' && method === 'PUT') {
      if (!DEVICE_ID.test(id)) throw invalid(`'${id}' is not a valid device ID.`);
      const fields = deviceFields(body, id);
      const now = new Date().toISOString();
      if (ifMatch === undefined) {
        if (entry) throw new HubFault(409, 'DeviceAlreadyExists', `A device with ID '${id}' is already registered.`);
        const device: Device = {
          deviceId: id,
          generationId: `${Date.now()}${randomBytes(3).readUIntBE(0, 3)}`,
          etag: newEtag(),
          connectionState: 'Disconnected',
          ...fields,
          connectionStateUpdatedTime: NEVER,
          statusUpdatedTime: NEVER,
          lastActivityTime: NEVER,
          cloudToDeviceMessageCount: 0,
        };
        const twin: Twin = {
          etag: newEtag(),
          version: 1,
          tags: {},
          desired: {},
          desiredVersion: 1,
          desiredUpdated: now,
          reportedUpdated: now,
        };
        entries.set(id, { device, twin });
        changed();
        return send(res, 200, device);
      }
      if (!entry) throw notFound(id);
      checkEtag(ifMatch, entry.device.etag);
      const previous = entry.device;
      entry.device = {
        ...previous,
        ...fields,
        etag: newEtag(),
        statusUpdatedTime: fields.status === previous.status ? previous.statusUpdatedTime : now,
      };
      changed();
      return send(res, 200, entry.device);
    }
    if (!entry) throw notFound(id);
    if (method === 'GET') return send(res, 200, kind === 'devices' ? entry.device : twinJson(entry));
    if (method === 'DELETE') {
      if (ifMatch !== undefined) checkEtag(ifMatch, entry.device.etag);
      entries.delete(id); // the twin lives in the entry, so it goes too
      changed();
      res.writeHead(204).end();
      return;
    }
    // PATCH merges tags and desired properties (JSON merge-patch); PUT replaces them.
    if (ifMatch !== undefined) checkEtag(ifMatch, entry.twin.etag);
    if (!isObject(body)) throw invalid('The twin must be a JSON object.');
    const tags = optionalObject(body.tags, 'tags');
    const props = optionalObject(body.properties, 'properties');
    if (props?.reported !== undefined && method === 'PATCH') throw invalid('Reported properties are read-only here.');
    const desired = optionalObject(props?.desired, 'properties.desired');
    checkDepth(tags, 0);
    checkDepth(desired, 0);
    const twin = entry.twin;
    const replace = method === 'PUT';
    if (tags || replace) twin.tags = mergePatch(replace ? {} : twin.tags, tags ?? {});
    if (desired || replace) {
      twin.desired = mergePatch(replace ? {} : twin.desired, withoutMetadata(desired ?? {}));
      twin.desiredVersion += 1;
      twin.desiredUpdated = new Date().toISOString();
    }
    twin.version += 1;
    twin.etag = newEtag();
    changed();
    return send(res, 200, twinJson(entry));
  };

  const server = createServer({ cert: options.tls.cert, key: options.tls.key }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof HubFault)
        return send(res, err.status, { Message: `ErrorCode:${err.code};${err.message}`, ExceptionMessage: '' });
      console.error(`hub emulator: ${req.method} ${req.url?.split('?')[0]} failed: ${(err as Error).message}`);
      send(res, 500, { Message: 'ErrorCode:ServerError;Internal error.', ExceptionMessage: '' });
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  hostName ||= `localhost:${port}`;

  return {
    hostName,
    port,
    connectionString: `HostName=${hostName};SharedAccessKeyName=${keyName};SharedAccessKey=${key}`,
    device: (deviceId) => clone(entries.get(deviceId)?.device),
    twin: (deviceId) => {
      const entry = entries.get(deviceId);
      return entry && clone(twinJson(entry));
    },
    deviceCount: () => entries.size,
    setFault: (status) => {
      fault = status;
    },
    close: async () => {
      clearTimeout(timer);
      timer = undefined;
      // The SDK keeps connections alive; without closing them, server.close() would wait for their idle timeout.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await flush();
      if (saveError) throw saveError;
    },
  };
}

function load(file: string): { key?: string; entries: Entry[] } | undefined {
  if (!existsSync(file)) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(data) || !Array.isArray(data.entries)) throw new Error(`${file} is not a hub emulator registry.`);
  const entries = data.entries.filter(
    (e): e is Entry => isObject(e) && isObject(e.device) && typeof e.device.deviceId === 'string' && isObject(e.twin),
  );
  return { ...(typeof data.key === 'string' ? { key: data.key } : {}), entries };
}

function deviceFields(
  body: unknown,
  id: string,
): Pick<Device, 'status' | 'statusReason' | 'authentication' | 'capabilities'> {
  if (!isObject(body)) throw invalid('The device must be a JSON object.');
  if (body.deviceId !== undefined && (typeof body.deviceId !== 'string' || body.deviceId !== id)) {
    throw invalid(`The deviceId in the body does not match '${id}'.`);
  }
  const status = body.status ?? 'enabled';
  if (status !== 'enabled' && status !== 'disabled') throw invalid("status must be 'enabled' or 'disabled'.");
  const capabilities = body.capabilities ?? {};
  if (!isObject(capabilities) || (capabilities.iotEdge !== undefined && typeof capabilities.iotEdge !== 'boolean')) {
    throw invalid('capabilities.iotEdge must be a boolean.');
  }
  return {
    status,
    statusReason: typeof body.statusReason === 'string' ? body.statusReason : null,
    authentication: authentication(body.authentication ?? {}),
    capabilities: { iotEdge: capabilities.iotEdge === true },
  };
}

function authentication(auth: unknown): Authentication {
  if (!isObject(auth)) throw invalid('authentication must be an object.');
  const sk = isObject(auth.symmetricKey) ? auth.symmetricKey : {};
  const tp = isObject(auth.x509Thumbprint) ? auth.x509Thumbprint : {};
  const noKeys = { primaryKey: null, secondaryKey: null };
  const noThumbprints = { primaryThumbprint: null, secondaryThumbprint: null };
  const type = auth.type ?? (tp.primaryThumbprint || tp.secondaryThumbprint ? 'selfSigned' : 'sas');
  if (type === 'sas') {
    return {
      type,
      symmetricKey: { primaryKey: symmetricKey(sk.primaryKey), secondaryKey: symmetricKey(sk.secondaryKey) },
      x509Thumbprint: noThumbprints,
    };
  }
  if (type === 'selfSigned') {
    const primaryThumbprint = thumbprint(tp.primaryThumbprint);
    const secondaryThumbprint = thumbprint(tp.secondaryThumbprint);
    if (!primaryThumbprint && !secondaryThumbprint) throw invalid('A selfSigned device needs an x509 thumbprint.');
    return { type, symmetricKey: noKeys, x509Thumbprint: { primaryThumbprint, secondaryThumbprint } };
  }
  if (type === 'certificateAuthority') return { type, symmetricKey: noKeys, x509Thumbprint: noThumbprints };
  throw invalid('authentication.type must be sas, selfSigned or certificateAuthority.');
}

// The official SDK sends empty keys on create and expects the hub to generate them.
function symmetricKey(value: unknown): string {
  if (value === undefined || value === null || value === '') return randomBytes(32).toString('base64');
  const bytes = typeof value === 'string' && BASE64.test(value) ? Buffer.from(value, 'base64').length : 0;
  if (bytes < 16 || bytes > 64) throw invalid('Symmetric keys must be base64 strings of 16 to 64 bytes.');
  return value as string;
}

function thumbprint(value: unknown): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string' || !THUMBPRINT.test(value)) throw invalid('Thumbprints must be 40 or 64 hex digits.');
  return value;
}

/** `*`, `"*"`, or the etag with or without quotes; anything else is a stale or foreign etag. */
function checkEtag(ifMatch: string, etag: string): void {
  const value = ifMatch
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
  if (value !== '*' && value !== etag)
    throw new HubFault(412, 'PreconditionFailed', 'Precondition failed: the etag does not match.');
}

function twinJson({ device, twin }: Entry): Record<string, unknown> {
  return {
    deviceId: device.deviceId,
    etag: twin.etag,
    version: twin.version,
    status: device.status,
    tags: twin.tags,
    properties: {
      desired: { ...twin.desired, $metadata: { $lastUpdated: twin.desiredUpdated }, $version: twin.desiredVersion },
      reported: { $metadata: { $lastUpdated: twin.reportedUpdated }, $version: 1 },
    },
    capabilities: device.capabilities,
  };
}

/** RFC 7396 merge: null deletes, objects merge recursively. Maps keep `__proto__` keys as plain data. */
function mergePatch(target: JsonObject, patch: JsonObject): JsonObject {
  const out = new Map(Object.entries(target));
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) out.delete(k);
    else if (isObject(v)) {
      const current = out.get(k);
      out.set(k, mergePatch(isObject(current) ? current : {}, v));
    } else out.set(k, v);
  }
  return Object.fromEntries(out);
}

/** A JSON object (from a parsed body), or undefined when absent or null. */
function optionalObject(value: unknown, name: string): JsonObject | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw invalid(`${name} must be an object.`);
  return value as JsonObject;
}

// A client that sends back a whole twin must not overwrite the metadata we compute.
const withoutMetadata = (desired: JsonObject): JsonObject =>
  Object.fromEntries(Object.entries(desired).filter(([k]) => !k.startsWith('$')));

// IoT Hub caps twin nesting at 10 levels below tags/desired (its docs: `one` … `ten` under `tags` is valid; the
// section itself is level 0). Arrays count too: JSON.parse accepts 100k-deep arrays that JSON.stringify
// then overflows on, which would poison every later read and save.
function checkDepth(value: unknown, depth: number): void {
  if (typeof value !== 'object' || value === null) return;
  if (depth > 10) throw invalid('Twin objects may be nested at most 10 levels deep.');
  for (const v of Object.values(value)) checkDepth(v, depth + 1);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk); // past the cap keep draining, so the 413 reaches the client
    });
    req.on('end', () => {
      if (size > MAX_BODY)
        return reject(new HubFault(413, 'RequestEntityTooLarge', `The body exceeds ${MAX_BODY} bytes.`));
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(invalid('The body is not valid JSON.'));
      }
    });
    req.on('error', reject);
  });
}

const clone = <T>(value: T): T => (value === undefined ? value : structuredClone(value));
