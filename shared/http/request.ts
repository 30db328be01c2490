// Reading requests safely: size-limited JSON bodies, header access, the client certificate forwarded by the front end.
import type { HttpRequest } from '@azure/functions';

import { BASE64 } from '../encoding';
import { DpsError, badRequest, unauthorized } from '../errors';

/** DPS rejects messages over 96 KB (reference/dps-protocol.md §7). */
export const MAX_BODY_BYTES = 96 * 1024;

/**
 * Parses the JSON body. An empty body is `undefined`; the device SDK sends `{}` even on GET, so callers that expect
 * no body simply ignore it. `jsonContentTypeOnly`: a non-empty body labelled with a media type other than JSON is a
 * 415 (DPS documents 415; every SDK labels its bodies `application/json; charset=utf-8`). An unlabelled one is read.
 */
export async function readJson(
  request: HttpRequest,
  maxBytes = MAX_BODY_BYTES,
  jsonContentTypeOnly = false,
): Promise<unknown> {
  const declared = Number(request.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const bytes = Buffer.from(await request.arrayBuffer());
  if (bytes.length > maxBytes) throw tooLarge(maxBytes);
  const text = bytes.toString('utf8').trim();
  if (text === '') return undefined;
  const contentType = request.headers.get('content-type');
  if (jsonContentTypeOnly && contentType !== null && !isJsonMediaType(contentType)) {
    const shown = contentType.slice(0, 100);
    throw new DpsError(415, 415001, `The content type '${shown}' is not supported: send application/json.`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    throw badRequest('The request body is not valid JSON.', 1);
  }
  if (jsonDepth(json) > MAX_JSON_DEPTH) {
    throw badRequest(`The request body nests JSON objects or arrays more than ${MAX_JSON_DEPTH} levels deep.`, 1);
  }
  return json;
}

/**
 * Far beyond any real payload, twin or bulk item, but shallow enough that every later recursive step (validation,
 * JSON.stringify into storage or to the hub) is safe: JSON.parse takes ~100,000 levels that those would overflow on.
 */
export const MAX_JSON_DEPTH = 64;

/** Nesting depth of parsed JSON (a scalar is 0, `{}` is 1), found without recursion. */
function jsonDepth(root: unknown): number {
  let deepest = 0;
  const pending: [unknown, number][] = [[root, 1]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [value, depth] = next;
    if (typeof value !== 'object' || value === null) continue;
    deepest = Math.max(deepest, depth);
    if (depth > MAX_JSON_DEPTH) break;
    for (const child of Object.values(value)) pending.push([child, depth + 1]);
  }
  return deepest;
}

/** application/json, text/json or application/*+json, parameters (charset) allowed: what a JSON formatter reads. */
function isJsonMediaType(contentType: string): boolean {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type === 'text/json' || /^application\/[\w.+-]+\+json$/.test(type);
}

function tooLarge(maxBytes: number): DpsError {
  return new DpsError(413, 413001, `The request body exceeds the maximum message size of ${maxBytes} bytes.`);
}

/** App Service's header (reference/dps-protocol.md §8); a gateway in front may use another (DPS_CLIENT_CERT_HEADER). */
export const DEFAULT_CLIENT_CERT_HEADER = 'x-arr-clientcert';
/** Base64 of 12 KB of DER: far above a real leaf, so a crafted header costs little to refuse. */
const MAX_CLIENT_CERT_CHARS = 16 * 1024;

/**
 * The one adapter for the device's TLS client certificate: the leaf the front end forwards as base64 DER, if any.
 * Only the leaf arrives (intermediates are not forwarded), and the header is trusted only because the front end sets
 * it and strips a client-supplied one. Content that cannot be a certificate is a 401 naming the header.
 */
export function clientCertificate(
  request: HttpRequest,
  header: string = DEFAULT_CLIENT_CERT_HEADER,
): string | undefined {
  const value = request.headers.get(header)?.trim();
  if (!value) return undefined;
  if (value.length > MAX_CLIENT_CERT_CHARS) {
    throw unauthorized(`The client certificate (${header} header) is larger than ${MAX_CLIENT_CERT_CHARS} characters.`);
  }
  if (!BASE64.test(value) || value.length % 4 !== 0) {
    throw unauthorized(`The client certificate (${header} header) is not base64 DER.`);
  }
  return value;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
