// The one error type of the service and the one mapper from any thrown value to a DPS-shaped HTTP response.
import { randomUUID } from 'node:crypto';

import type { HttpResponseInit, InvocationContext } from '@azure/functions';

/** A failure the client should see: HTTP status, DPS errorCode (status × 1000 + sub-code) and a message. */
export class DpsError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Fields added to the JSON body (a TPM challenge's `authenticationKey` and `keyName`). */
    readonly extraBody: Record<string, unknown> = {},
    /** What the client is not told (e.g. which attestation check failed): for events and logs, never the response. */
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'DpsError';
  }
}

// Named constructors for the codes the device SDKs and the reference know (see reference/dps-protocol.md §1.6).
export const badRequest = (message: string, subCode = 4): DpsError => new DpsError(400, 400000 + subCode, message);
export const unauthorized = (message = 'Unauthorized', detail?: string): DpsError =>
  new DpsError(401, 401002, message, {}, {}, detail);
export const notFound = (message: string, errorCode = 404201): DpsError => new DpsError(404, errorCode, message);
export const conflict = (message: string, errorCode = 409203): DpsError => new DpsError(409, errorCode, message);
export const preconditionFailed = (message = 'Precondition failed.'): DpsError => new DpsError(412, 412002, message);
export const invalidContinuationToken = (): DpsError => badRequest('The continuation token is not valid.', 6);

export interface DpsErrorBody {
  errorCode: number;
  trackingId: string;
  message: string;
  timestampUtc: string;
}

export function errorBody(errorCode: number, message: string, trackingId: string = randomUUID()): DpsErrorBody {
  return { errorCode, trackingId, message, timestampUtc: new Date().toISOString() };
}

/**
 * Maps anything thrown by a handler to a response. Known errors keep their status and code; everything else is
 * logged with a tracking ID and becomes a bare 500 — the client never sees a stack trace or an internal message.
 */
export function toHttpResponse(err: unknown, context?: InvocationContext): HttpResponseInit {
  const trackingId = randomUUID();
  if (err instanceof DpsError) {
    if (err.status >= 500) context?.error(`[${trackingId}] ${err.message}`);
    return {
      status: err.status,
      headers: { 'Content-Type': 'application/json', 'x-ms-error-code': String(err.errorCode), ...err.headers },
      jsonBody: { ...errorBody(err.errorCode, err.message, trackingId), ...err.extraBody },
    };
  }
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
  if (context) context.error(`[${trackingId}] unhandled error: ${detail}`);
  else console.error(`[${trackingId}] unhandled error: ${detail}`);
  return {
    status: 500,
    headers: { 'Content-Type': 'application/json', 'x-ms-error-code': '500000' },
    jsonBody: errorBody(500000, 'Internal server error.', trackingId),
  };
}
