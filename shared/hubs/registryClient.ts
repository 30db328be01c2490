// A lean IoT Hub registry client over REST (devices, twins; api-version 2021-04-12). Lean rather than the official
// azure-iothub SDK: we need four calls, and that SDK brings AMQP and MQTT stacks into every cold start.
import type { ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Agent } from 'node:https';

import type { TokenCredential } from '@azure/core-auth';

import type { HubAuthentication } from '../attestation/attestation';
import type { HubConnection, LinkedHub } from '../domain/linkedHub';
import { parseHubConnectionString } from '../domain/linkedHub';
import type { InitialTwin } from '../domain/enrollment';
import { createSas } from '../http/sas';

const API_VERSION = '2021-04-12';
/** Default wall-clock deadline of one hub call (request sent to response fully read), when the caller sets none. */
export const HUB_CALL_DEADLINE_MS = 10_000;
/** Entra ID scope of IoT Hub's data plane (a hub linked without a connection string). */
export const IOT_HUB_SCOPE = 'https://iothubs.azure.net/.default';

export class HubError extends Error {
  constructor(
    readonly hostName: string,
    readonly status: number,
    message: string,
  ) {
    super(`IoT hub ${hostName} answered ${status}: ${message}`);
    this.name = 'HubError';
  }
}

/** A hub call that ran out of time: its own deadline, or the registration's hub step deadline (abandoned). */
export class HubTimeout extends Error {
  constructor(
    readonly hostName: string,
    message: string,
  ) {
    super(message);
    this.name = 'HubTimeout';
  }
}

export interface HubDeviceIdentity {
  deviceId: string;
  /** How the device authenticates to the hub: the attestation's symmetric keys, X.509 thumbprints, or its CA. */
  authentication: HubAuthentication;
  iotEdge: boolean;
}

/** IoT Hub's device `authentication` object for each kind (REST Device.authentication, api-version 2021-04-12). */
function hubAuthenticationBody(auth: HubAuthentication): Record<string, unknown> {
  switch (auth.type) {
    case 'sas':
      return { type: 'sas', symmetricKey: { primaryKey: auth.primaryKey, secondaryKey: auth.secondaryKey } };
    case 'selfSigned':
      return {
        type: 'selfSigned',
        x509Thumbprint: { primaryThumbprint: auth.primaryThumbprint, secondaryThumbprint: auth.secondaryThumbprint },
      };
    case 'certificateAuthority':
      return { type: 'certificateAuthority' };
  }
}

/** Options of one hub call: `signal` aborts it (e.g. the registration's hub deadline ran out). */
export interface HubCallOptions {
  signal?: AbortSignal;
}

/** Options of an upsert: `create: false` only updates an identity that exists (a missing one is DeviceMissingError). */
export interface UpsertOptions extends HubCallOptions {
  create?: boolean;
}

/** The identity an update-only upsert was meant for is not on the hub (deleted meanwhile). */
export class DeviceMissingError extends HubError {
  constructor(hostName: string, deviceId: string) {
    super(hostName, 404, `device ${deviceId} does not exist`);
    this.name = 'DeviceMissingError';
  }
}

interface HubResponse {
  status: number;
  body: unknown;
}

/** How a hub is called: a connection string's key (SAS), or an Entra ID token from the service's identity. */
export type HubAuth = HubConnection | { hostName: string; credential: TokenCredential };

export class HubRegistryClient {
  private token: { value: string; renewAt: number } | undefined;

  constructor(
    private readonly connection: HubAuth,
    private readonly agent: Agent,
    /** Wall-clock deadline of each call: a hub that trickles bytes cannot hold a request past it. */
    private readonly deadlineMs: number = HUB_CALL_DEADLINE_MS,
  ) {}

  get hostName(): string {
    return this.connection.hostName;
  }

  /**
   * Creates the device, or replaces its identity if it exists (re-registration must not fail or duplicate). The
   * device authenticates to the hub as its attestation says (the same symmetric keys it used with DPS, or X.509).
   * `likelyExists` (a re-registration on the same hub) tries the update first, so the common case costs one hub call
   * instead of two; with `create: false` there is no second call: a missing device is a DeviceMissingError.
   */
  async upsertDevice(identity: HubDeviceIdentity, likelyExists = false, options: UpsertOptions = {}): Promise<void> {
    const path = `/devices/${encodeURIComponent(identity.deviceId)}`;
    const body = {
      deviceId: identity.deviceId,
      status: 'enabled',
      authentication: hubAuthenticationBody(identity.authentication),
      capabilities: { iotEdge: identity.iotEdge },
    };
    if (likelyExists || options.create === false) {
      const updated = await this.send('PUT', path, body, { 'If-Match': '"*"' }, options.signal);
      if (updated.status !== 404) {
        this.expectOk(updated);
        return;
      }
      if (options.create === false) throw new DeviceMissingError(this.hostName, identity.deviceId);
    }
    const created = await this.send('PUT', path, body, {}, options.signal);
    if (created.status === 409) {
      // IoT Hub answers 409 DeviceAlreadyExists to a PUT without If-Match: update unconditionally instead.
      this.expectOk(await this.send('PUT', path, body, { 'If-Match': '"*"' }, options.signal));
      return;
    }
    this.expectOk(created);
  }

  /** Applies an initial twin (tags and desired properties) to the device's twin. */
  async applyTwin(deviceId: string, twin: InitialTwin, options: HubCallOptions = {}): Promise<void> {
    const patch: InitialTwin = {};
    if (twin.tags && Object.keys(twin.tags).length > 0) patch.tags = twin.tags;
    if (twin.properties?.desired && Object.keys(twin.properties.desired).length > 0) {
      patch.properties = { desired: twin.properties.desired };
    }
    if (!patch.tags && !patch.properties) return;
    const path = `/twins/${encodeURIComponent(deviceId)}`;
    this.expectOk(await this.send('PATCH', path, patch, { 'If-Match': '"*"' }, options.signal));
  }

  async getDevice(deviceId: string): Promise<Record<string, unknown> | undefined> {
    const response = await this.send('GET', `/devices/${encodeURIComponent(deviceId)}`);
    if (response.status === 404) return undefined;
    return this.expectOk(response) as Record<string, unknown>;
  }

  async getTwin(deviceId: string, options: HubCallOptions = {}): Promise<InitialTwin | undefined> {
    const response = await this.send('GET', `/twins/${encodeURIComponent(deviceId)}`, undefined, {}, options.signal);
    if (response.status === 404) return undefined;
    return this.expectOk(response) as InitialTwin;
  }

  /** Deletes the device; true if it existed. */
  async deleteDevice(deviceId: string, options: HubCallOptions = {}): Promise<boolean> {
    const path = `/devices/${encodeURIComponent(deviceId)}`;
    const response = await this.send('DELETE', path, undefined, { 'If-Match': '"*"' }, options.signal);
    if (response.status === 404) return false;
    this.expectOk(response);
    return true;
  }

  private expectOk(response: HubResponse): unknown {
    if (response.status >= 200 && response.status < 300) return response.body;
    const message =
      typeof response.body === 'object' && response.body !== null && 'Message' in response.body
        ? String(response.body.Message)
        : JSON.stringify(response.body);
    throw new HubError(this.hostName, response.status, message);
  }

  private async authorization(): Promise<string> {
    const now = Date.now();
    if (!this.token || now >= this.token.renewAt) {
      const connection = this.connection;
      if ('credential' in connection) {
        const token = await connection.credential.getToken(IOT_HUB_SCOPE);
        if (!token) throw new HubError(this.hostName, 401, 'the service identity got no token for IoT Hub');
        // Renewed five minutes before it expires (tokens last about an hour).
        this.token = { value: `Bearer ${token.token}`, renewAt: token.expiresOnTimestamp - 300_000 };
      } else {
        const expiry = Math.floor(now / 1000) + 3600;
        this.token = {
          value: createSas(connection.hostName, connection.key, expiry, connection.keyName),
          renewAt: now + 3000 * 1000,
        };
      }
    }
    return this.token.value;
  }

  /**
   * One HTTPS call with a wall-clock deadline on the whole exchange (connect, request, response fully read): an idle
   * timeout alone lets a hub that trickles a byte a second hold the call for ever. `signal` aborts it earlier.
   * A pooled connection the hub (or a load balancer) closed just as it was reused fails with a reset before any
   * answer: that call is sent once more on a new connection (Node's documented keep-alive race; every hub call here
   * is idempotent or tolerates a repeat: a create that did land answers 409 and is updated instead).
   */
  private async send(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<HubResponse> {
    const [host, port] = splitHostPort(this.connection.hostName);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const authorization = await this.authorization();
    return new Promise((resolve, reject) => {
      let settled = false;
      let req: ClientRequest | undefined;
      const finish = (err: Error | undefined, response?: HubResponse) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) {
          req?.destroy(err);
          reject(err);
        } else if (response) resolve(response);
      };
      const timer = setTimeout(
        () =>
          finish(new HubTimeout(this.hostName, `IoT hub ${this.hostName} did not answer within ${this.deadlineMs} ms`)),
        this.deadlineMs,
      );
      const onAbort = () =>
        finish(
          new HubTimeout(this.hostName, `The call to IoT hub ${this.hostName} was abandoned: its deadline passed`),
        );
      const start = (retry: boolean) => {
        let answered = false;
        const current = httpsRequest(
          {
            host,
            port,
            method,
            path: `${path}?api-version=${API_VERSION}`,
            agent: this.agent,
            headers: {
              Authorization: authorization,
              Accept: 'application/json',
              ...(payload === undefined
                ? {}
                : { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(payload) }),
              ...headers,
            },
          },
          (res) => {
            answered = true;
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let parsed: unknown = text;
              try {
                parsed = text === '' ? undefined : JSON.parse(text);
              } catch {
                // keep the raw text for the error message
              }
              finish(undefined, { status: res.statusCode ?? 0, body: parsed });
            });
            res.on('error', (err) => finish(err));
          },
        );
        req = current;
        current.on('error', (err: NodeJS.ErrnoException) => {
          const stale = current.reusedSocket && !answered && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
          if (stale && !retry && !settled) start(true);
          else finish(err);
        });
        current.end(payload);
      };
      start(false);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function splitHostPort(hostName: string): [string, number] {
  const match = /^(.*):(\d+)$/.exec(hostName);
  return match?.[1] && match[2] ? [match[1], Number(match[2])] : [hostName, 443];
}

/** One client per hub connection string (or identity-linked hub), reused across requests (keep-alive, cached token). */
export class HubClients {
  private readonly clients = new Map<string, HubRegistryClient>();

  constructor(
    private readonly agent: Agent,
    private readonly deadlineMs: number = HUB_CALL_DEADLINE_MS,
    /** The service's identity, for hubs linked without a connection string. */
    private readonly credential?: () => TokenCredential,
  ) {}

  for(hub: LinkedHub): HubRegistryClient {
    const cacheKey = hub.connectionString ?? `identity:${hub.hostName.toLowerCase()}`;
    let client = this.clients.get(cacheKey);
    if (!client) {
      client = new HubRegistryClient(this.auth(hub), this.agent, this.deadlineMs);
      this.clients.set(cacheKey, client);
    }
    return client;
  }

  private auth(hub: LinkedHub): HubAuth {
    if (hub.connectionString === undefined) {
      if (!this.credential) throw new Error(`Linked hub ${hub.hostName} has no connection string and no identity.`);
      return { hostName: hub.hostName, credential: this.credential() };
    }
    const connection = parseHubConnectionString(hub.connectionString);
    if (!connection) throw new Error(`The connection string of linked hub ${hub.hostName} is malformed.`);
    return connection;
  }
}
