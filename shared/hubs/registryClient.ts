// A lean IoT Hub registry client over REST (devices, twins; api-version 2021-04-12). Lean rather than the official
// azure-iothub SDK: we need four calls, and that SDK brings AMQP and MQTT stacks into every cold start.
import { request as httpsRequest } from 'node:https';
import type { Agent } from 'node:https';

import type { HubConnection, LinkedHub } from '../domain/linkedHub';
import { parseHubConnectionString } from '../domain/linkedHub';
import type { InitialTwin } from '../domain/enrollment';
import { createSas } from '../http/sas';

const API_VERSION = '2021-04-12';
const TIMEOUT_MS = 10_000;

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

export interface HubDeviceIdentity {
  deviceId: string;
  primaryKey: string;
  secondaryKey: string;
  iotEdge: boolean;
}

interface HubResponse {
  status: number;
  body: unknown;
}

export class HubRegistryClient {
  private token: { value: string; renewAt: number } | undefined;

  constructor(
    private readonly connection: HubConnection,
    private readonly agent: Agent,
  ) {}

  get hostName(): string {
    return this.connection.hostName;
  }

  /**
   * Creates the device, or replaces its identity if it exists (re-registration must not fail or duplicate). The
   * device authenticates to the hub with the same symmetric keys it used with DPS. `likelyExists` (a re-registration
   * on the same hub) tries the update first, so the common case costs one hub call instead of two.
   */
  async upsertDevice(identity: HubDeviceIdentity, likelyExists = false): Promise<void> {
    const path = `/devices/${encodeURIComponent(identity.deviceId)}`;
    const body = {
      deviceId: identity.deviceId,
      status: 'enabled',
      authentication: {
        type: 'sas',
        symmetricKey: { primaryKey: identity.primaryKey, secondaryKey: identity.secondaryKey },
      },
      capabilities: { iotEdge: identity.iotEdge },
    };
    if (likelyExists) {
      const updated = await this.send('PUT', path, body, { 'If-Match': '"*"' });
      if (updated.status !== 404) {
        this.expectOk(updated);
        return;
      }
    }
    const created = await this.send('PUT', path, body);
    if (created.status === 409) {
      // IoT Hub answers 409 DeviceAlreadyExists to a PUT without If-Match: update unconditionally instead.
      this.expectOk(await this.send('PUT', path, body, { 'If-Match': '"*"' }));
      return;
    }
    this.expectOk(created);
  }

  /** Applies an initial twin (tags and desired properties) to the device's twin. */
  async applyTwin(deviceId: string, twin: InitialTwin): Promise<void> {
    const patch: InitialTwin = {};
    if (twin.tags && Object.keys(twin.tags).length > 0) patch.tags = twin.tags;
    if (twin.properties?.desired && Object.keys(twin.properties.desired).length > 0) {
      patch.properties = { desired: twin.properties.desired };
    }
    if (!patch.tags && !patch.properties) return;
    this.expectOk(await this.send('PATCH', `/twins/${encodeURIComponent(deviceId)}`, patch, { 'If-Match': '"*"' }));
  }

  async getDevice(deviceId: string): Promise<Record<string, unknown> | undefined> {
    const response = await this.send('GET', `/devices/${encodeURIComponent(deviceId)}`);
    if (response.status === 404) return undefined;
    return this.expectOk(response) as Record<string, unknown>;
  }

  async getTwin(deviceId: string): Promise<InitialTwin | undefined> {
    const response = await this.send('GET', `/twins/${encodeURIComponent(deviceId)}`);
    if (response.status === 404) return undefined;
    return this.expectOk(response) as InitialTwin;
  }

  /** Deletes the device; true if it existed. */
  async deleteDevice(deviceId: string): Promise<boolean> {
    const response = await this.send('DELETE', `/devices/${encodeURIComponent(deviceId)}`, undefined, {
      'If-Match': '"*"',
    });
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

  private authorization(): string {
    const now = Date.now();
    if (!this.token || now >= this.token.renewAt) {
      const expiry = Math.floor(now / 1000) + 3600;
      this.token = {
        value: createSas(this.connection.hostName, this.connection.key, expiry, this.connection.keyName),
        renewAt: now + 3000 * 1000,
      };
    }
    return this.token.value;
  }

  private send(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<HubResponse> {
    const [host, port] = splitHostPort(this.connection.hostName);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host,
          port,
          method,
          path: `${path}?api-version=${API_VERSION}`,
          agent: this.agent,
          timeout: TIMEOUT_MS,
          headers: {
            Authorization: this.authorization(),
            Accept: 'application/json',
            ...(payload === undefined
              ? {}
              : { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(payload) }),
            ...headers,
          },
        },
        (res) => {
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
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(new Error(`IoT hub ${this.hostName} did not answer within ${TIMEOUT_MS} ms`)),
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
}

function splitHostPort(hostName: string): [string, number] {
  const match = /^(.*):(\d+)$/.exec(hostName);
  return match?.[1] && match[2] ? [match[1], Number(match[2])] : [hostName, 443];
}

/** One client per hub connection string, reused across requests (keep-alive connections, cached SAS). */
export class HubClients {
  private readonly clients = new Map<string, HubRegistryClient>();

  constructor(private readonly agent: Agent) {}

  for(hub: LinkedHub): HubRegistryClient {
    let client = this.clients.get(hub.connectionString);
    if (!client) {
      const connection = parseHubConnectionString(hub.connectionString);
      if (!connection) throw new Error(`The connection string of linked hub ${hub.hostName} is malformed.`);
      client = new HubRegistryClient(connection, this.agent);
      this.clients.set(hub.connectionString, client);
    }
    return client;
  }
}
