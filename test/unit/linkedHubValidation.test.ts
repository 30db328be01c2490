// Linked-hub input is checked before it reaches storage or allocation: host names, connection strings, settings.
import { describe, expect, it, vi } from 'vitest';

import type { LinkedHub } from '../../shared/domain/linkedHub';
import { isHubHostName } from '../../shared/domain/linkedHub';
import { DEFAULT_SETTINGS } from '../../shared/domain/serviceConfig';
import type { ServiceAuthorizer } from '../../shared/management/auth';
import { ConfigurationManager } from '../../shared/management/configuration';
import type { ServiceRequest } from '../../shared/management/serviceRequest';
import type { ServiceConfigStore } from '../../shared/storage/serviceConfig';
import { dpsErrorOf } from '../support/dpsError';

const HOST = 'myhub.azure-devices.net';
const keyOf = (bytes: number) => Buffer.alloc(bytes, 0xab).toString('base64');
const connection = (host = HOST, key = keyOf(32)) =>
  `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`;

function setup(linkedHubs: LinkedHub[] = []) {
  const store = {
    load: vi.fn(() => Promise.resolve({ linkedHubs, accessPolicies: [], settings: { ...DEFAULT_SETTINGS } })),
    putLinkedHub: vi.fn(() => Promise.resolve()),
    deleteLinkedHub: vi.fn(() => Promise.resolve(true)),
  };
  const manager = new ConfigurationManager({
    store: store as unknown as ServiceConfigStore,
    auth: { require: () => Promise.resolve() } as unknown as ServiceAuthorizer,
    idScope: '0ne00000001',
    rootPolicyName: 'provisioningserviceowner',
    serviceHostNames: [],
    changed: () => undefined,
    rewrapDataKeys: () => Promise.reject(new Error('not used')),
  });
  const request = (body: unknown): ServiceRequest => ({ authorization: null, host: undefined, pageSize: 100, body });
  return { store, manager, request };
}

/** The 400 a PUT answers; its message names `field`. */
async function rejectedPut(hostName: string, body: Record<string, unknown>, field: string) {
  const { store, manager, request } = setup();
  const err = await dpsErrorOf(manager.putLinkedHub(request(body), hostName));
  expect(err).toMatchObject({ status: 400, errorCode: 400004 });
  expect(err.message).toContain(`'${field}'`);
  expect(store.putLinkedHub).not.toHaveBeenCalled();
  return err;
}

describe('isHubHostName', () => {
  it.each([HOST, 'localhost:8444', 'localhost', '127.0.0.1:65535', 'a', `${'a'.repeat(63)}.net`])('accepts %s', (h) => {
    expect(isHubHostName(h)).toBe(true);
  });

  it('accepts a 253-character host name, with a port too, but not 254', () => {
    const host = (length: number) => `${'a'.repeat(61)}.`.repeat(5).slice(0, length - 1) + 'b';
    expect(host(253)).toHaveLength(253);
    expect(isHubHostName(host(253))).toBe(true);
    expect(isHubHostName(`${host(253)}:8444`)).toBe(true);
    expect(isHubHostName(host(254))).toBe(false);
  });

  it.each([
    'a/b',
    'evil.com?x=1',
    'a#b',
    'a\\b',
    '',
    'my_hub.net',
    '-hub.net',
    'hub-.net',
    'a..b',
    'hub.net.',
    'hub.net:',
    'hub.net:0',
    'hub.net:65536',
    'hub.net:123456',
    'hub.net:80:80',
    `${'a'.repeat(64)}.net`,
    'hub.net ',
    'hüb.net',
  ])('rejects %j', (h) => {
    expect(isHubHostName(h)).toBe(false);
  });
});

describe('ConfigurationManager: linked hubs', () => {
  it('links a valid hub', async () => {
    const { store, manager, request } = setup();
    const res = await manager.putLinkedHub(
      request({ connectionString: connection('localhost:8444'), location: 'westeurope', allocationWeight: 3 }),
      'LOCALHOST:8444',
    );
    expect(res).toEqual({
      status: 200,
      body: {
        hostName: 'localhost:8444',
        location: 'westeurope',
        allocationWeight: 3,
        applyAllocationPolicy: true,
        authentication: 'connectionString',
      },
    });
    expect(store.putLinkedHub).toHaveBeenCalledOnce();
  });

  it('links a hub without a connection string: reached with the service identity', async () => {
    const { store, manager, request } = setup();
    const res = await manager.putLinkedHub(request({ location: 'westeurope', allocationWeight: 2 }), HOST);
    expect(res.body).toEqual({
      hostName: HOST,
      location: 'westeurope',
      allocationWeight: 2,
      applyAllocationPolicy: true,
      authentication: 'identity',
    });
    expect(store.putLinkedHub).toHaveBeenCalledWith({
      hostName: HOST,
      location: 'westeurope',
      allocationWeight: 2,
      applyAllocationPolicy: true,
    });
  });

  it('"connectionString": null switches a hub to the identity; leaving it out keeps the stored one', async () => {
    const linked = { hostName: HOST, connectionString: connection(), allocationWeight: 1, applyAllocationPolicy: true };
    const kept = setup([linked]);
    expect((await kept.manager.putLinkedHub(kept.request({ allocationWeight: 5 }), HOST)).body).toMatchObject({
      allocationWeight: 5,
      authentication: 'connectionString',
    });
    const switched = setup([linked]);
    const res = await switched.manager.putLinkedHub(switched.request({ connectionString: null }), HOST);
    expect(res.body).toMatchObject({ authentication: 'identity' });
    expect(switched.store.putLinkedHub.mock.calls[0]).toEqual([
      { hostName: HOST, allocationWeight: 1, applyAllocationPolicy: true },
    ]);
  });

  it.each(['a/b', 'evil.com?x=1', 'x'.repeat(254)])('refuses the host name %j before touching storage', async (h) => {
    const { store } = setup();
    await rejectedPut(h, { connectionString: connection(h) }, 'hostName');
    expect(store.load).not.toHaveBeenCalled();
  });

  it('refuses to unlink an invalid host name before touching storage', async () => {
    const { store, manager, request } = setup();
    const err = await dpsErrorOf(manager.deleteLinkedHub(request(undefined), 'a/b'));
    expect(err).toMatchObject({ status: 400, errorCode: 400004 });
    expect(err.message).toContain("'hostName'");
    expect(store.deleteLinkedHub).not.toHaveBeenCalled();
  });

  it('refuses a body hostName other than the path', async () => {
    await rejectedPut(HOST, { hostName: 'other.azure-devices.net', connectionString: connection() }, 'hostName');
  });

  it('refuses a connection string that is missing a part or names another hub', async () => {
    await rejectedPut(HOST, { connectionString: `HostName=${HOST};SharedAccessKey=${keyOf(32)}` }, 'connectionString');
    await rejectedPut(HOST, { connectionString: connection('other.azure-devices.net') }, 'connectionString');
    // U+212A (Kelvin) lower-cases to 'k': equal case-insensitively, yet not a DNS name.
    await rejectedPut('k.net', { connectionString: connection('\u212a.net') }, 'connectionString');
  });

  it.each([
    ['not base64', 'not base64!!'],
    ['bad padding', 'abc'],
    ['too short', keyOf(15)],
    ['too long', keyOf(65)],
  ])('refuses a SharedAccessKey that is %s, without echoing it', async (_, key) => {
    const err = await rejectedPut(
      HOST,
      { connectionString: connection(HOST, key) },
      'connectionString.SharedAccessKey',
    );
    expect(err.message).not.toContain(key);
  });

  it('accepts SharedAccessKeys of 16 and 64 bytes', async () => {
    const { manager, request } = setup();
    for (const key of [keyOf(16), keyOf(64)]) {
      const res = await manager.putLinkedHub(request({ connectionString: connection(HOST, key) }), HOST);
      expect(res.status).toBe(200);
    }
  });

  it('re-checks a stored connection string an update keeps', async () => {
    const stored = { hostName: HOST, connectionString: connection(HOST, 'bad!'), allocationWeight: 1 };
    const { manager, request } = setup([{ ...stored, applyAllocationPolicy: true }]);
    const err = await dpsErrorOf(manager.putLinkedHub(request({ allocationWeight: 2 }), HOST));
    expect(err.message).toContain("'connectionString.SharedAccessKey'");
  });

  it.each([
    ['location', 'x'.repeat(65)],
    ['location', 42],
    ['allocationWeight', 0],
    ['allocationWeight', 1001],
    ['allocationWeight', 1.5],
    ['allocationWeight', '5'],
    ['applyAllocationPolicy', 'yes'],
  ])('refuses %s = %j', async (field, value) => {
    await rejectedPut(HOST, { connectionString: connection(), [field]: value }, field);
  });
});
