// Custom allocation: the client of an operator's allocation webhook (reference/dps-protocol.md §4). Builds the DPS
// AllocationRequest (enrollment without secrets), POSTs it within one overall deadline, retries once on a connection
// failure, and validates the answer into a decision or a failure whose message names the cause. Beyond DPS, whose
// webhook failures are opaque: the message carries the HTTP status and a short body excerpt, and never the URL's
// query (Azure Functions keys travel as `?code=`).
import type { AttestationMechanism, EnrollmentGroup, IndividualEnrollment, InitialTwin } from '../domain/enrollment';
import { parseTwin } from '../domain/validate';
import { isPlainObject } from '../http/request';

/** What the device proved, as the webhook sees it (`deviceRuntimeContext`): no key, no private part. */
export type RuntimeAttestation =
  | { type: 'symmetricKey' }
  | { type: 'x509'; x509: Record<string, unknown> }
  | { type: 'tpm'; endorsementKey: string; storageRootKey?: string };

export interface WebhookRequestInput {
  /** `customAllocationDefinition` of the enrollment. */
  webhookUrl: string;
  apiVersion: string;
  enrollment: { kind: 'individual'; value: IndividualEnrollment } | { kind: 'group'; value: EnrollmentGroup };
  registrationId: string;
  /** On re-provisioning: where the device is now. */
  current?: { iotHubHostName: string; deviceId: string };
  attestation: RuntimeAttestation;
  /** The device's payload, when it sent one. */
  payload?: unknown;
  /** Candidate hub host names (`linkedHubs` of the request); the answer must name one of them. */
  candidates: readonly string[];
}

export interface WebhookOptions {
  /** Overall deadline of the call, retry included (connect, send, answer, body), in ms; default 3000. */
  timeoutMs?: number;
  /** Injected for tests; default the global fetch. */
  fetch?: typeof fetch;
}

export type WebhookFailureReason = 'timeout' | 'connection' | 'status' | 'invalidJson' | 'invalidAnswer' | 'url';

export type WebhookOutcome =
  | {
      ok: true;
      /** One of the candidates, spelled as the candidate list spells it. */
      iotHubHostName: string;
      /** Validated against IoT Hub's twin limits; absent when the answer had none (use the enrollment's). */
      initialTwin?: InitialTwin;
      /** Returned to the device in `registrationState.payload`; absent when the answer had none. */
      payload?: unknown;
      durationMs: number;
    }
  | {
      ok: false;
      reason: WebhookFailureReason;
      /** For `registrationState.errorMessage`, events and logs: no secret, status and body excerpt included. */
      errorMessage: string;
      httpStatus?: number;
      durationMs: number;
    };

export const DEFAULT_WEBHOOK_TIMEOUT_MS = 3000;
const MAX_ANSWER_BYTES = 256 * 1024;
const EXCERPT_CHARS = 200;
const MAX_PAYLOAD_DEPTH = 32;
// Failures before any answer, where a second attempt may reach the webhook (a restarting function, a stale socket).
const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EAI_AGAIN', 'UND_ERR_SOCKET']);

/** The URL as it may be shown: no credentials, and the query masked as DPS masks it (`?****`). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}${parsed.search ? '?****' : ''}`;
  } catch {
    return '(an invalid URL)';
  }
}

/** The DPS AllocationRequest body for the webhook. */
export function buildAllocationRequest(input: WebhookRequestInput): Record<string, unknown> {
  const { attestation } = input;
  const runtime: Record<string, unknown> = {
    registrationId: input.registrationId,
    ...(input.current
      ? { currentIotHubHostName: input.current.iotHubHostName, currentDeviceId: input.current.deviceId }
      : {}),
    ...(attestation.type === 'symmetricKey'
      ? { symmetricKey: {} }
      : attestation.type === 'x509'
        ? { x509: attestation.x509 }
        : {
            tpm: {
              endorsementKey: attestation.endorsementKey,
              ...(attestation.storageRootKey !== undefined ? { storageRootKey: attestation.storageRootKey } : {}),
            },
          }),
    ...(input.payload !== undefined ? { payload: input.payload } : {}),
  };
  const { kind, value } = input.enrollment;
  return {
    [kind === 'individual' ? 'individualEnrollment' : 'enrollmentGroup']: withoutSecrets(value),
    deviceRuntimeContext: runtime,
    linkedHubs: [...input.candidates],
  };
}

/** POSTs the AllocationRequest and validates the answer; never throws, never outlasts `timeoutMs` (by much). */
export async function callAllocationWebhook(
  input: WebhookRequestInput,
  options: WebhookOptions = {},
): Promise<WebhookOutcome> {
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS;
  const doFetch = options.fetch ?? fetch;
  const shown = redactUrl(input.webhookUrl);
  const fail = (reason: WebhookFailureReason, message: string, httpStatus?: number): WebhookOutcome => ({
    ok: false,
    reason,
    errorMessage: scrub(`Custom allocation webhook ${shown} ${message}`, input.webhookUrl),
    ...(httpStatus !== undefined ? { httpStatus } : {}),
    durationMs: performance.now() - started,
  });

  let url: URL;
  try {
    url = new URL(input.webhookUrl);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('not http(s)');
  } catch {
    return fail('url', 'is not an http(s) URL.');
  }
  const body = JSON.stringify(buildAllocationRequest(input));
  const signal = AbortSignal.timeout(timeoutMs);

  let status = 0;
  let text = '';
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await doFetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'User-Agent': 'open-dps' },
        body,
        signal,
        redirect: 'error', // a redirect could carry the request (and its key) elsewhere
      });
      status = res.status;
      text = await readCapped(res);
      break;
    } catch (err) {
      if (signal.aborted) return fail('timeout', `did not answer within ${timeoutMs} ms.`);
      if (err instanceof AnswerTooLarge) {
        return fail('invalidAnswer', `answered HTTP ${status} with more than ${MAX_ANSWER_BYTES} bytes.`, status);
      }
      const code = errorCode(err);
      if (attempt === 1 && status === 0 && RETRYABLE.has(code)) continue;
      const tried = attempt > 1 ? ', also on a retry' : '';
      return fail('connection', `could not be reached (${code || describe(err)}${tried}).`);
    }
  }

  const excerpt = excerptOf(text);
  if (status < 200 || status > 299) {
    return fail('status', `answered HTTP ${status}${excerpt ? `: ${excerpt}` : ' with an empty body.'}`, status);
  }
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    return fail('invalidJson', `answered HTTP ${status} with a body that is not JSON: ${excerpt || '(empty)'}`, status);
  }
  if (!isPlainObject(answer)) {
    return fail('invalidAnswer', `answered HTTP ${status} with JSON that is not an object: ${excerpt}`, status);
  }
  const hub = answer.iotHubHostName;
  if (typeof hub !== 'string' || hub === '') {
    return fail('invalidAnswer', `answered HTTP ${status} without an iotHubHostName: ${excerpt}`, status);
  }
  const chosen = input.candidates.find((c) => c.toLowerCase() === hub.toLowerCase());
  if (!chosen) {
    const list = input.candidates.join(', ') || 'none';
    return fail(
      'invalidAnswer',
      `chose the IoT hub '${excerptOf(hub)}', which is not one of the candidate hubs (${list}).`,
      status,
    );
  }
  let initialTwin: InitialTwin | undefined;
  if (answer.initialTwin !== undefined && answer.initialTwin !== null) {
    try {
      initialTwin = parseTwin(answer.initialTwin);
    } catch (err) {
      return fail('invalidAnswer', `answered an initialTwin IoT Hub would refuse: ${describe(err)}`, status);
    }
  }
  const payload = answer.payload ?? undefined;
  if (payload !== undefined && !depthWithin(payload, MAX_PAYLOAD_DEPTH)) {
    return fail('invalidAnswer', `answered a payload nested deeper than ${MAX_PAYLOAD_DEPTH} levels.`, status);
  }
  return {
    ok: true,
    iotHubHostName: chosen,
    ...(initialTwin ? { initialTwin } : {}),
    ...(payload !== undefined ? { payload } : {}),
    durationMs: performance.now() - started,
  };
}

/**
 * The enrollment as the webhook may see it: attestation reduced to its type (and public certificate info, the TPM's
 * public endorsement key), the webhook URL itself masked.
 */
function withoutSecrets(enrollment: IndividualEnrollment | EnrollmentGroup): Record<string, unknown> {
  const { attestation, customAllocationDefinition, ...rest } = enrollment;
  return {
    ...rest,
    attestation: publicAttestation(attestation),
    ...(customAllocationDefinition
      ? {
          customAllocationDefinition: {
            webhookUrl: redactUrl(customAllocationDefinition.webhookUrl),
            apiVersion: customAllocationDefinition.apiVersion,
          },
        }
      : {}),
  };
}

function publicAttestation(attestation: AttestationMechanism): Record<string, unknown> {
  if (attestation.type === 'tpm' && attestation.tpm) {
    return { type: 'tpm', tpm: { endorsementKey: attestation.tpm.endorsementKey } };
  }
  if (attestation.type === 'x509' && attestation.x509) {
    // Certificates as GET shows them: `info` only (the PEM is public, but is not what DPS echoes).
    const x509: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(attestation.x509)) {
      if (name === 'caReferences') x509[name] = value;
      else if (isPlainObject(value)) {
        const certs: Record<string, unknown> = {};
        for (const slot of ['primary', 'secondary']) {
          const cert = value[slot];
          if (isPlainObject(cert) && isPlainObject(cert.info)) certs[slot] = { info: cert.info };
        }
        x509[name] = certs;
      }
    }
    return { type: 'x509', x509 };
  }
  return { type: attestation.type };
}

class AnswerTooLarge extends Error {}

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > MAX_ANSWER_BYTES) throw new AnswerTooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The first 200 characters on one line, control characters blanked. */
function excerptOf(text: string): string {
  // eslint-disable-next-line no-control-regex -- exactly the characters to blank
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return line.length > EXCERPT_CHARS ? `${line.slice(0, EXCERPT_CHARS)}…` : line;
}

/** Removes the URL's query wherever it appears (a webhook may echo its own URL in an error page). */
function scrub(message: string, url: string): string {
  let search = '';
  try {
    search = new URL(url).search.slice(1);
  } catch {
    return message;
  }
  let out = message;
  const values = search.split('&').map((p) => p.slice(p.indexOf('=') + 1));
  const decoded = values.map((v) => {
    try {
      return decodeURIComponent(v.replace(/\+/g, ' '));
    } catch {
      return v;
    }
  });
  for (const secret of [search, ...values, ...decoded]) {
    if (secret.length >= 4) out = out.split(secret).join('****');
  }
  return out;
}

function errorCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } }).cause;
  const code = cause?.code ?? (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : '';
}

const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function depthWithin(value: unknown, max: number): boolean {
  let level: unknown[] = [value];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth > max) return false;
    level = level.flatMap((v): unknown[] => (typeof v === 'object' && v !== null ? Object.values(v) : []));
  }
  return true;
}
