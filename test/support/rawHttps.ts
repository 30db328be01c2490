// A bare HTTPS client for tests that need to send what no SDK would (malformed bodies, bad tokens, odd paths).
import { readFileSync } from 'node:fs';
import { request } from 'node:https';

import { expect, inject } from 'vitest';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

export function rawRequest(
  hostName: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
  /** A TLS client certificate (PEM chain and key) to present, as an X.509 device does. */
  clientCert?: { cert: string; key: string },
): Promise<RawResponse> {
  const [host = 'localhost', port = '443'] = hostName.split(':');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: Number(port),
        method,
        path,
        headers: body === undefined ? headers : { 'Content-Length': String(Buffer.byteLength(body)), ...headers },
        ca: readFileSync(inject('certs').caCert),
        ...clientCert,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A DPS-shaped error answer: the status, JSON content type, errorCode of that status, a tracking ID. */
export function expectDpsError(res: RawResponse, status: number, message?: RegExp): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  const body = res.json as { errorCode: number; trackingId: string; message: string; timestampUtc: string };
  expect(Math.floor(body.errorCode / 1000)).toBe(status);
  expect(body.trackingId).toMatch(/^[0-9a-f-]{36}$/);
  if (message) expect(body.message).toMatch(message);
}
