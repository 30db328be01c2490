// Every registered function, called as the Functions host calls it (HttpRequest + InvocationContext), with bad input:
// no credentials, malformed or wrongly shaped JSON, odd path parameters and headers. The answer is always a 4xx with
// a DPS-shaped JSON body, never a 5xx: bad input must not look like a server failure, nor crash the instance.
import { randomUUID } from 'node:crypto';

import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { createSas } from '../../shared/http/sas';
import type { HttpFunctionDefinition } from '../../shared/http/httpFunction';
import { registeredFunctions } from '../../shared/http/httpFunction';
import { startTestStack } from '../support/stack';

const PARAMS = ['%', "o'brien", 'x'.repeat(300), '..', 'ü-ñ', 'registrations', 'a/b', 'evil.com?x=1'];
const BODIES = [
  '{',
  '[]',
  'null',
  '"text"',
  '{"mode":"create","enrollments":[{"registrationId":5}]}',
  '{"a":{"b":[1,{}]}}',
];

/** A well-formed body for the function's resource, so odd path parameters get past validation of the body. */
function plausibleBody(route: string, param: string): string {
  const key = Buffer.alloc(32, 7).toString('base64');
  if (/^linkedHubs/i.test(route)) {
    return JSON.stringify({
      connectionString: `HostName=${param};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
    });
  }
  if (/^accessPolicies/i.test(route)) return JSON.stringify({ rights: 'EnrollmentRead' });
  if (/^serviceConfiguration/i.test(route)) return JSON.stringify({ defaultAllocationPolicy: 'hashed' });
  return JSON.stringify({ attestation: { type: 'symmetricKey' }, mode: 'create', enrollments: [], query: '*' });
}

interface Answer {
  status: number;
  contentType: string | null;
  json: unknown;
}

async function call(
  host: string,
  definition: HttpFunctionDefinition,
  method: string,
  params: Record<string, string>,
  headers: Record<string, string>,
  body: string,
): Promise<Answer> {
  const path = Object.values(params)
    .map((v) => encodeURIComponent(v))
    .join('/');
  const request = new HttpRequest({
    method,
    url: `https://${host}/${path}?api-version=2021-10-01`,
    // The Host header is the service host name a root-policy token names (sr) when none is configured.
    headers: { host, 'content-type': 'application/json', ...headers },
    params,
    ...(method === 'GET' || method === 'HEAD' ? {} : { body: { string: body } }),
  });
  const context = new InvocationContext({ invocationId: randomUUID(), functionName: definition.name });
  const init = (await definition.handler(request, context)) ?? { status: 204 };
  const response = init instanceof HttpResponse ? init : new HttpResponse(init);
  const text = await response.text();
  return { status: response.status, contentType: response.headers.get('content-type'), json: text && JSON.parse(text) };
}

describe('every function, bad input', () => {
  let stack: Stack;
  let owner: string;

  beforeAll(async () => {
    stack = await startTestStack({ hubs: { count: 0 } });
    const expiry = Math.floor(Date.now() / 1000) + 3600;
    owner = createSas(
      stack.deviceEndpoint,
      stack.settings.DPS_SERVICE_OWNER_KEY ?? '',
      expiry,
      'provisioningserviceowner',
    );
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('answers 4xx with a DPS-shaped JSON error, never 5xx', async () => {
    const functions = registeredFunctions();
    expect(functions.length).toBeGreaterThan(20);
    const failures: string[] = [];
    let calls = 0;
    /** Calls with the root policy's token that got past authorization: the test must reach the handlers' logic. */
    let authorized = 0;
    for (const definition of functions) {
      const names = [...definition.route.matchAll(/\{\*?(\w+)\??\}/g)].map((m) => m[1] ?? '');
      // undici's Request (inside HttpRequest) cannot carry TRACE or CONNECT.
      for (const method of definition.methods.filter((m) => m !== 'TRACE' && m !== 'CONNECT')) {
        for (const value of PARAMS) {
          const params = Object.fromEntries(names.map((n) => [n, value]));
          const headerSets: Record<string, string>[] = [
            {},
            { authorization: owner },
            { authorization: owner, 'if-match': '"not-an-etag', 'x-ms-max-item-count': '-5', 'x-ms-continuation': '%' },
            { authorization: `SharedAccessSignature sr=${value}&sig=%%&se=x`, 'x-ms-continuation': 'e30=' },
          ];
          const bodies = [...BODIES, plausibleBody(definition.route, value)];
          for (const [body, headers] of bodies.flatMap((b) => headerSets.map((h) => [b, h] as const))) {
            const answer = await call(stack.deviceEndpoint, definition, method, params, headers, body);
            calls++;
            if (headers.authorization === owner && answer.status !== 401) authorized++;
            const where = `${definition.name} ${method} ${JSON.stringify(params).slice(0, 60)} ${body.slice(0, 80)} ${Object.keys(headers).join(',')}`;
            const error = answer.json as Record<string, unknown>;
            if (answer.status >= 500) failures.push(`${where} → ${answer.status} ${JSON.stringify(error)}`);
            else if (answer.status >= 400) {
              if (!/^application\/json/.test(answer.contentType ?? '')) failures.push(`${where} → no JSON type`);
              for (const field of ['errorCode', 'trackingId', 'message', 'timestampUtc']) {
                if (!(field in error)) failures.push(`${where} → no ${field}`);
              }
            }
          }
        }
      }
    }
    expect(calls).toBeGreaterThan(500);
    expect(authorized).toBeGreaterThan(500);
    expect(failures).toEqual([]);
  }, 60_000);
});
