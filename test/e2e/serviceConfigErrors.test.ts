// Client mistakes the service API must answer with a DPS-shaped 400, never a 500: linked-hub input that storage or
// allocation would choke on, and continuation tokens this service did not issue.
import { TableClient } from '@azure/data-tables';
import { createHttpHeaders } from '@azure/core-rest-pipeline';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { DpsError } from '../../shared/errors';
import { firstPage } from '../../shared/storage/tables';
import { expectDpsError } from '../support/rawHttps';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

const token = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64');

describe('service API: configuration and paging errors', () => {
  let stack: Stack;
  const call = serviceCaller(() => stack);
  const connection = (host: string, key = Buffer.alloc(32, 1).toString('base64')) =>
    `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`;

  beforeAll(async () => {
    stack = await startTestStack();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  describe('linked hubs', () => {
    it('a host name that is not a DNS name (even one the connection string agrees with) → 400, at once', async () => {
      for (const [path, host] of [
        ['a%2Fb', 'a/b'],
        ['evil.com%3Fx=1', 'evil.com?x=1'],
        ['my_hub.example.net', 'my_hub.example.net'],
      ] as const) {
        const started = Date.now();
        expectDpsError(
          await call('PUT', `/linkedHubs/${path}`, { connectionString: connection(host) }),
          400,
          /'hostName'/,
        );
        expectDpsError(await call('DELETE', `/linkedHubs/${path}`), 400, /'hostName'/);
        expect(Date.now() - started).toBeLessThan(2000);
      }
    });

    it('a SharedAccessKey that is not base64 of 16-64 bytes → 400, and the hub is not linked', async () => {
      const host = 'badkey.example.net';
      for (const key of ['not base64!!', Buffer.alloc(8).toString('base64')]) {
        const res = await call('PUT', `/linkedHubs/${host}`, { connectionString: connection(host, key) });
        expectDpsError(res, 400, /'connectionString\.SharedAccessKey': must be base64/);
        expect(res.text).not.toContain(key);
      }
      expect((await call('GET', '/linkedHubs')).text).not.toContain(host);
    });

    it('bad location, allocationWeight or applyAllocationPolicy → 400 naming the field', async () => {
      const host = 'fields.example.net';
      const put = (extra: Record<string, unknown>) =>
        call('PUT', `/linkedHubs/${host}`, { connectionString: connection(host), ...extra });
      expectDpsError(await put({ location: 'x'.repeat(65) }), 400, /'location'/);
      expectDpsError(await put({ allocationWeight: -1 }), 400, /'allocationWeight'/);
      expectDpsError(await put({ allocationWeight: 2.5 }), 400, /'allocationWeight'/);
      expectDpsError(await put({ applyAllocationPolicy: 'no' }), 400, /'applyAllocationPolicy'/);
      expectDpsError(await put({ hostName: 'other.example.net' }), 400, /'hostName'/);
      // A valid link with a port, as the dev hub emulator has, still works.
      const ok = await call('PUT', '/linkedHubs/fields.example.net:8444', {
        connectionString: connection('FIELDS.example.net:8444'),
        applyAllocationPolicy: false,
      });
      expect(ok.status).toBe(200);
      expect((await call('DELETE', '/linkedHubs/fields.example.net:8444')).status).toBe(204);
    });
  });

  describe('continuation tokens', () => {
    const query = (continuation: string) =>
      call(
        'POST',
        '/enrollments/query',
        { query: '*' },
        { 'x-ms-max-item-count': '1', 'x-ms-continuation': continuation },
      );

    it('a token from a previous page has the shape we check, and fetches the next page', async () => {
      for (const id of ['ct-1', 'ct-2', 'ct-3']) {
        expect((await call('PUT', `/enrollments/${id}`, { attestation: { type: 'symmetricKey' } })).status).toBe(200);
      }
      const first = await call('POST', '/enrollments/query', { query: '*' }, { 'x-ms-max-item-count': '1' });
      const issued = String(first.headers['x-ms-continuation']);
      // What @azure/data-tables issues: base64 JSON of the next partition and (when there is one) row key.
      const decoded = JSON.parse(Buffer.from(issued, 'base64').toString('utf8')) as Record<string, unknown>;
      expect(Object.keys(decoded)).toEqual(['nextPartitionKey', 'nextRowKey']);
      expect(Object.values(decoded).map((v) => typeof v)).toEqual(['string', 'string']);
      const second = await query(issued);
      expect(second.status).toBe(200);
      expect(second.json).toHaveLength(1);
    });

    it('a token of any other shape → 400', async () => {
      for (const bad of [
        token({ nextPartitionKey: 'zzz', nextRowKey: 5 }),
        token({ nextPartitionKey: 'zzz', nextRowKey: null }),
        token({ nextPartitionKey: 'zzz', nextRowKey: '' }),
        token({ nextPartitionKey: '' }),
        token({ nextRowKey: 'zzz' }),
        token({ nextPartitionKey: 'zzz', extra: 1 }),
        token(['zzz']),
        token('zzz'),
        'garbage',
      ]) {
        const res = await query(bad);
        expectDpsError(res, 400, /^The continuation token is not valid\.$/);
        expect((res.json as { errorCode: number }).errorCode).toBe(400006);
      }
    });

    it('a well-formed token storage refuses → the same 400 (Azurite takes any key, so its refusal is faked)', async () => {
      const refusing = TableClient.fromConnectionString(inject('tablesConnectionString'), 'anyTable', {
        allowInsecureConnection: true,
        additionalPolicies: [
          {
            position: 'perRetry',
            policy: {
              name: 'refuseContinuation',
              sendRequest: (request) =>
                Promise.resolve({
                  request,
                  status: 400,
                  headers: createHttpHeaders({ 'content-type': 'application/json' }),
                  bodyAsText: JSON.stringify({ 'odata.error': { code: 'InvalidInput', message: { value: 'No.' } } }),
                }),
            },
          },
        ],
      });
      const err = await firstPage(refusing, "PartitionKey eq 'x'", 1, token({ nextPartitionKey: 'zzz' })).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DpsError);
      expect(err).toMatchObject({ status: 400, errorCode: 400006, message: 'The continuation token is not valid.' });
      // Without a token, the same refusal is ours to log as a storage failure.
      await expect(firstPage(refusing, "PartitionKey eq 'x'", 1)).rejects.toMatchObject({ statusCode: 400 });
    });
  });
});
