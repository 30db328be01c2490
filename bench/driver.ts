// The load generator's HTTPS client: raw node:https (keep-alive, our dev CA), requests shaped like the official device
// SDK's (reference/official-clients.md §3a); `send` also serves the service-API scenario. Not the SDK itself: its
// fixed polling interval would be measured instead of the server. A device is a registration ID plus a SAS token.
import { Agent, request } from 'node:https';

import { createSas } from '../shared/http/sas';
import type { SoftTpm } from './softTpm';

/** What the SDKs send; the dev host ignores it, but the requests should look real. */
const API_VERSION = '2019-03-31';
/** The lean client ignores Retry-After (3 s by default) and polls this often, so polls measure the server. */
export const POLL_INTERVAL_MS = 20;
const MAX_POLLS = 500;

export interface Device {
  registrationId: string;
  /** A SAS token; empty for an X.509 device, which presents `tls` instead. */
  authorization: string;
  /** An X.509 device's TLS client certificate (PEM) and key; its connections are its own, as a real device's. */
  tls?: { cert: string; key: string };
  /**
   * An X.509 device behind a front end: its leaf (base64 DER) sent in X-ARR-ClientCert over the pooled connections,
   * as App Service's front end forwards it after its own TLS handshake with the device (bench host only: it trusts it).
   */
  forwardedCert?: string;
}

/** A device with a SAS token valid for a day, signed with its own key (for group devices: the derived key). */
export function device(idScope: string, registrationId: string, keyBase64: string): Device {
  const expiry = Math.floor(Date.now() / 1000) + 86_400;
  return {
    registrationId,
    authorization: createSas(`${idScope}/registrations/${registrationId}`, keyBase64, expiry, 'registration'),
  };
}

/** A TPM device: its software TPM opens the challenge, then it registers with a SAS signed by the imported key. */
export interface TpmDevice extends Device {
  tpm: SoftTpm;
}

export interface HttpResult {
  status: number;
  json: unknown;
  ms: number;
}

export interface RegisterOutcome {
  ok: boolean;
  /** Latency of the PUT alone. */
  putMs: number;
  /** PUT until a terminal status, polls included. */
  totalMs: number;
  polls: number;
  operationId?: string;
  status?: string;
  error?: string;
}

export interface PollOutcome {
  ok: boolean;
  ms: number;
  status?: string;
  error?: string;
}

interface OperationBody {
  operationId?: unknown;
  status?: unknown;
  message?: unknown;
}

export class DeviceClient {
  private readonly agent: Agent;
  private readonly host: string;
  private readonly port: number;

  constructor(
    endpoint: string,
    private readonly idScope: string,
    ca: string,
    /** Open connections at most: one per concurrent device, as that many devices would have. */
    private readonly sockets: number,
  ) {
    const [host = 'localhost', port = '443'] = endpoint.split(':');
    this.host = host;
    this.port = Number(port);
    this.agent = new Agent({ keepAlive: true, maxSockets: sockets, ca });
  }

  /** Opens the pool's connections (TLS handshakes) before measuring, with cheap requests that touch no storage. */
  async warm(): Promise<void> {
    await Promise.all(Array.from({ length: this.sockets }, () => this.send('GET', '/', undefined, {})));
  }

  /** PUT …/register, then GET …/operations/{id} while the status is `assigning`. Success = `assigned`. */
  async register(d: Device): Promise<RegisterOutcome> {
    const started = performance.now();
    const base = `/${this.idScope}/registrations/${encodeURIComponent(d.registrationId)}`;
    const body = JSON.stringify({ registrationId: d.registrationId });
    let put: HttpResult;
    try {
      put = await this.send('PUT', `${base}/register?api-version=${API_VERSION}`, body, d);
    } catch (err) {
      return {
        ok: false,
        putMs: performance.now() - started,
        totalMs: performance.now() - started,
        polls: 0,
        error: String(err),
      };
    }
    const outcome = (polls: number, result: HttpResult, error?: string): RegisterOutcome => {
      const op = result.json as OperationBody | undefined;
      const status = typeof op?.status === 'string' ? op.status : undefined;
      const operationId = typeof op?.operationId === 'string' ? op.operationId : undefined;
      const failure =
        error ??
        (status === 'assigned' ? undefined : `HTTP ${result.status} status ${status ?? '-'} ${messageOf(op)}`.trim());
      return {
        ok: failure === undefined,
        putMs: put.ms,
        totalMs: performance.now() - started,
        polls,
        ...(operationId !== undefined ? { operationId } : {}),
        ...(status !== undefined ? { status } : {}),
        ...(failure !== undefined ? { error: failure } : {}),
      };
    };
    if (put.status !== 202) return outcome(0, put);

    let last = put;
    let polls = 0;
    const operationId = (put.json as OperationBody | undefined)?.operationId;
    while ((last.json as OperationBody | undefined)?.status === 'assigning') {
      if (typeof operationId !== 'string') return outcome(polls, last, 'assigning without an operationId');
      if (polls >= MAX_POLLS) return outcome(polls, last, `still assigning after ${polls} polls`);
      await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
      polls++;
      try {
        last = await this.send(
          'GET',
          `${base}/operations/${encodeURIComponent(operationId)}?api-version=${API_VERSION}`,
          '{}',
          d,
        );
      } catch (err) {
        return outcome(polls, last, String(err));
      }
    }
    return outcome(polls, last);
  }

  /**
   * TPM: the PUT with the EK and SRK and no Authorization must answer 401 with an activation blob; the device opens it
   * and then registers like any SAS device (`register`), its token signed with the imported key. PUT latency is the
   * challenge's plus the signed PUT's.
   */
  async registerTpm(d: TpmDevice): Promise<RegisterOutcome> {
    const started = performance.now();
    const path = `/${this.idScope}/registrations/${encodeURIComponent(d.registrationId)}/register?api-version=${API_VERSION}`;
    const tpm = {
      endorsementKey: d.tpm.ek.tpm2b.toString('base64'),
      storageRootKey: d.tpm.srk.tpm2b.toString('base64'),
    };
    let key: Buffer;
    try {
      const challenge = await this.send('PUT', path, JSON.stringify({ registrationId: d.registrationId, tpm }), {});
      const blob = (challenge.json as { authenticationKey?: unknown } | undefined)?.authenticationKey;
      if (challenge.status !== 401 || typeof blob !== 'string')
        throw new Error(`HTTP ${challenge.status}, no challenge`);
      key = d.tpm.open(blob);
    } catch (err) {
      const ms = performance.now() - started;
      return { ok: false, putMs: ms, totalMs: ms, polls: 0, error: String(err) };
    }
    const challengeMs = performance.now() - started;
    const signed = device(this.idScope, d.registrationId, key.toString('base64'));
    const outcome = await this.register(signed);
    return { ...outcome, putMs: challengeMs + outcome.putMs, totalMs: challengeMs + outcome.totalMs };
  }

  /** One GET of an operation; success = 200 with a terminal status. */
  async operationStatus(d: Device, operationId: string): Promise<PollOutcome> {
    const path = `/${this.idScope}/registrations/${encodeURIComponent(d.registrationId)}/operations/${encodeURIComponent(operationId)}`;
    try {
      const result = await this.send('GET', `${path}?api-version=${API_VERSION}`, '{}', d);
      const op = result.json as OperationBody | undefined;
      const status = typeof op?.status === 'string' ? op.status : undefined;
      const ok = result.status === 200 && status !== undefined && status !== 'assigning';
      return {
        ok,
        ms: result.ms,
        ...(status !== undefined ? { status } : {}),
        ...(ok ? {} : { error: `HTTP ${result.status} status ${status ?? '-'} ${messageOf(op)}`.trim() }),
      };
    } catch (err) {
      return { ok: false, ms: 0, error: String(err) };
    }
  }

  close(): void {
    this.agent.destroy();
  }

  /** One request on the pool; `d.authorization` (a device's or a service token) goes into the Authorization header. */
  send(
    method: string,
    path: string,
    body: string | undefined,
    d: { authorization?: string; tls?: Device['tls']; forwardedCert?: string },
  ): Promise<HttpResult> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.agent,
          // The agent pools connections per client certificate, so an X.509 device reuses only its own.
          ...d.tls,
          headers: {
            Accept: 'application/json',
            'User-Agent': 'open-dps-bench',
            ...(d.authorization ? { Authorization: d.authorization } : {}),
            ...(d.forwardedCert ? { 'X-ARR-ClientCert': d.forwardedCert } : {}),
            ...(body === undefined
              ? {}
              : { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            let json: unknown;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, json, ms: performance.now() - started });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}

function messageOf(body: OperationBody | undefined): string {
  return typeof body?.message === 'string' ? `(${body.message})` : '';
}
