// Response helpers: every body is JSON with an explicit content type (the Node device SDK crashes without it).
import type { HttpResponseInit } from '@azure/functions';

export interface JsonResult {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export function json(status: number, body?: unknown, headers: Record<string, string> = {}): HttpResponseInit {
  if (body === undefined) return { status, headers };
  return { status, jsonBody: body, headers: { 'Content-Type': 'application/json; charset=utf-8', ...headers } };
}

export function respond(result: JsonResult): HttpResponseInit {
  return json(result.status, result.body, result.headers);
}
