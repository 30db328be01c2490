// The service-API request context: authorization, conditional and paging headers, and the JSON body.
import type { HttpRequest } from '@azure/functions';

import type { AccessPolicy } from '../domain/serviceConfig';
import { badRequest, invalidContinuationToken } from '../errors';
import { isPlainObject, readJson } from '../http/request';

/** The service API carries bulk operations far larger than a device message (DPS caps bulk at 10 items; we don't). */
export const MAX_SERVICE_BODY_BYTES = 16 * 1024 * 1024;
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export interface ServiceRequest {
  authorization: string | null;
  /** The Host header: the service host name a token's `sr` must name when none is configured. */
  host: string | undefined;
  /** The access policy whose key signed the token, when it was checked before the body was read. */
  policy?: AccessPolicy;
  ifMatch?: string;
  pageSize: number;
  continuationToken?: string;
  body: unknown;
}

/**
 * `authenticate` runs before the body is read: a body of up to 16 MB of JSON costs seconds of CPU and about a gigabyte
 * of heap to parse, which only a caller holding an access policy's key may make an instance spend.
 */
export async function serviceRequest(
  request: HttpRequest,
  authenticate: (head: Pick<ServiceRequest, 'authorization' | 'host'>) => Promise<AccessPolicy>,
): Promise<ServiceRequest> {
  const head = { authorization: request.headers.get('authorization'), host: request.headers.get('host') ?? undefined };
  const policy = await authenticate(head);
  const ifMatch = request.headers.get('if-match')?.trim();
  const continuation = request.headers.get('x-ms-continuation')?.trim();
  return {
    ...head,
    policy,
    ...(ifMatch ? { ifMatch } : {}),
    pageSize: pageSize(request.headers.get('x-ms-max-item-count')),
    ...(continuation ? { continuationToken: continuationToken(continuation) } : {}),
    body: await readJson(request, MAX_SERVICE_BODY_BYTES, true),
  };
}

function pageSize(header: string | null): number {
  if (header === null || header.trim() === '') return DEFAULT_PAGE_SIZE;
  const value = Number(header);
  if (!Number.isInteger(value) || value < 1)
    throw badRequest('x-ms-max-item-count must be a positive whole number.', 5);
  return Math.min(value, MAX_PAGE_SIZE);
}

/**
 * Tokens are ours: what @azure/data-tables makes of the next Table keys, base64 JSON of a non-empty
 * `nextPartitionKey` and an optional non-empty `nextRowKey`, both strings. Anything else (a number, say, which the SDK
 * throws on) is a client error, not a storage failure.
 */
function continuationToken(token: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const { nextPartitionKey, nextRowKey, ...rest } = isPlainObject(parsed) ? parsed : {};
  const key = (value: unknown) => typeof value === 'string' && value !== '';
  if (key(nextPartitionKey) && (nextRowKey === undefined || key(nextRowKey)) && Object.keys(rest).length === 0) {
    return token;
  }
  throw invalidContinuationToken();
}
