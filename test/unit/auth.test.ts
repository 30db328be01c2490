import { describe, expect, it } from 'vitest';

import type { AccessPolicy, Right } from '../../shared/domain/serviceConfig';
import { createSas } from '../../shared/http/sas';
import type { AuthorizerPorts } from '../../shared/management/auth';
import { ServiceAuthorizer } from '../../shared/management/auth';
import type { ServiceRequest } from '../../shared/management/serviceRequest';
import { dpsErrorOf } from '../support/dpsError';

const HOST = 'dps.example.com';
const NOW = new Date('2024-01-01T00:00:00Z');
const SE = Math.floor(NOW.getTime() / 1000) + 3600;

const key = (seed: number): string => Buffer.alloc(32, seed).toString('base64');

const ROOT: AccessPolicy = {
  name: 'provisioningserviceowner',
  rights: ['ServiceConfig', 'EnrollmentRead', 'EnrollmentWrite', 'RegistrationStatusRead', 'RegistrationStatusWrite'],
  primaryKey: key(1),
  secondaryKey: key(2),
};
const READER: AccessPolicy = {
  name: 'enrollmentreader',
  rights: ['EnrollmentRead'],
  primaryKey: key(3),
  secondaryKey: key(4),
};

interface Fixture {
  auth: ServiceAuthorizer;
  policyCalls: () => number;
}

function fixture(ports: Partial<AuthorizerPorts> = {}, stored: AccessPolicy[] = [READER]): Fixture {
  let calls = 0;
  const auth = new ServiceAuthorizer({
    root: ROOT,
    hostNames: [HOST],
    clock: () => NOW,
    policies: () => {
      calls++;
      return Promise.resolve(stored);
    },
    ...ports,
  });
  return { auth, policyCalls: () => calls };
}

/** `host: null` stands for a request without a Host header. */
const request = (authorization: string | null, host: string | null = HOST): ServiceRequest => ({
  authorization,
  host: host ?? undefined,
  pageSize: 100,
  body: undefined,
});

const token = (policy: string | undefined, keyBase64: string, sr = HOST, se = SE): string =>
  createSas(sr, keyBase64, se, policy);

/** Rejected with 401/401002; returns the message. */
async function expect401(promise: Promise<void>): Promise<string> {
  const error = await dpsErrorOf(promise);
  expect(error).toMatchObject({ status: 401, errorCode: 401002 });
  return error.message;
}

describe('ServiceAuthorizer: the root policy', () => {
  it('accepts a token signed with the root primary key, for every right the root has', async () => {
    const { auth } = fixture();
    for (const right of ROOT.rights) {
      await expect(auth.require(request(token(ROOT.name, ROOT.primaryKey)), right)).resolves.toBeUndefined();
    }
  });

  it('accepts the root secondary key', async () => {
    const { auth } = fixture();
    await expect(
      auth.require(request(token(ROOT.name, ROOT.secondaryKey)), 'EnrollmentWrite'),
    ).resolves.toBeUndefined();
  });

  it('the policy name (skn) is case-insensitive', async () => {
    const { auth } = fixture();
    await expect(
      auth.require(request(token('ProvisioningServiceOwner', ROOT.primaryKey)), 'EnrollmentRead'),
    ).resolves.toBeUndefined();
  });

  it('does not read the stored policies when the root policy matches', async () => {
    const { auth, policyCalls } = fixture();
    await auth.require(request(token(ROOT.name, ROOT.primaryKey)), 'EnrollmentRead');
    await expect401(auth.require(request(token(ROOT.name, key(9))), 'EnrollmentRead'));
    expect(policyCalls()).toBe(0);
  });

  it('a wrong key for the root policy is not retried against stored policies of the same name', async () => {
    const impostor: AccessPolicy = { ...READER, name: ROOT.name, rights: ['EnrollmentRead'] };
    const { auth } = fixture({}, [impostor]);
    await expect401(auth.require(request(token(ROOT.name, impostor.primaryKey)), 'EnrollmentRead'));
  });

  it('with no root configured, the root name is just an unknown policy', async () => {
    const { auth } = fixture({ root: undefined }, []);
    await expect401(auth.require(request(token(ROOT.name, ROOT.primaryKey)), 'EnrollmentRead'));
  });
});

describe('ServiceAuthorizer: stored policies', () => {
  it('accepts a stored policy with its primary or secondary key, reading the policies', async () => {
    const { auth, policyCalls } = fixture();
    await expect(auth.require(request(token(READER.name, READER.primaryKey)), 'EnrollmentRead')).resolves.toBe(
      undefined,
    );
    await expect(auth.require(request(token(READER.name, READER.secondaryKey)), 'EnrollmentRead')).resolves.toBe(
      undefined,
    );
    expect(policyCalls()).toBe(2);
  });

  it.each<Right>(['EnrollmentWrite', 'ServiceConfig', 'RegistrationStatusRead'])(
    'a policy without the %s right is refused with a 401 naming the right and the policy',
    async (right) => {
      const { auth } = fixture();
      const message = await expect401(auth.require(request(token(READER.name, READER.primaryKey)), right));
      expect(message).toContain(`'${right}'`);
      expect(message).toContain(READER.name);
    },
  );

  it('a key of another policy does not sign for this one', async () => {
    const { auth } = fixture();
    await expect401(auth.require(request(token(READER.name, ROOT.primaryKey)), 'EnrollmentRead'));
  });

  it('an unknown policy name is refused', async () => {
    const { auth } = fixture();
    await expect401(auth.require(request(token('nosuchpolicy', READER.primaryKey)), 'EnrollmentRead'));
  });

  it('an empty secondary key never verifies (a token signed with an empty key is refused)', async () => {
    const { auth } = fixture({}, [{ ...READER, secondaryKey: '' }]);
    await expect401(auth.require(request(token(READER.name, '')), 'EnrollmentRead'));
    await expect(auth.require(request(token(READER.name, READER.primaryKey)), 'EnrollmentRead')).resolves.toBe(
      undefined,
    );
  });
});

describe('ServiceAuthorizer: the token itself', () => {
  it('refuses a wrong key', async () => {
    const { auth } = fixture();
    await expect401(auth.require(request(token(ROOT.name, key(42))), 'EnrollmentRead'));
  });

  it('refuses an expired token (se at or before now) and accepts one a second later', async () => {
    const { auth } = fixture();
    const now = Math.floor(NOW.getTime() / 1000);
    expect(
      await expect401(auth.require(request(token(ROOT.name, ROOT.primaryKey, HOST, now)), 'EnrollmentRead')),
    ).toMatch(/expired/i);
    await expect401(auth.require(request(token(ROOT.name, ROOT.primaryKey, HOST, now - 60)), 'EnrollmentRead'));
    await expect(
      auth.require(request(token(ROOT.name, ROOT.primaryKey, HOST, now + 1)), 'EnrollmentRead'),
    ).resolves.toBeUndefined();
  });

  it('refuses a token without skn, saying the policy must be named', async () => {
    const { auth } = fixture();
    expect(await expect401(auth.require(request(token(undefined, ROOT.primaryKey)), 'EnrollmentRead'))).toContain(
      'skn',
    );
  });

  it('refuses a Bearer (Entra) token', async () => {
    const { auth } = fixture();
    expect(await expect401(auth.require(request('Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig'), 'EnrollmentRead'))).toMatch(
      /Entra/,
    );
    await expect401(auth.require(request('bearer abc'), 'EnrollmentRead'));
  });

  it('refuses a missing or non-SAS Authorization header', async () => {
    const { auth } = fixture();
    await expect401(auth.require(request(null), 'EnrollmentRead'));
    await expect401(auth.require(request('Basic dXNlcjpwYXNz'), 'EnrollmentRead'));
  });
});

describe('ServiceAuthorizer: the resource (sr)', () => {
  it('sr must equal a configured host name, case-insensitively', async () => {
    const { auth } = fixture({ hostNames: ['other.example.com', HOST] });
    await expect(
      auth.require(request(token(ROOT.name, ROOT.primaryKey, 'DPS.Example.COM')), 'EnrollmentRead'),
    ).resolves.toBeUndefined();
    await expect(
      auth.require(request(token(ROOT.name, ROOT.primaryKey, 'other.example.com')), 'EnrollmentRead'),
    ).resolves.toBeUndefined();
  });

  it('a configured list wins over the request Host header', async () => {
    const { auth } = fixture({ hostNames: [HOST] });
    const message = await expect401(
      auth.require(
        request(token(ROOT.name, ROOT.primaryKey, 'evil.example.com'), 'evil.example.com'),
        'EnrollmentRead',
      ),
    );
    expect(message).toContain('evil.example.com');
  });

  it('refuses an sr naming another host, or a registration path', async () => {
    const { auth } = fixture();
    await expect401(auth.require(request(token(ROOT.name, ROOT.primaryKey, 'other.example.com')), 'EnrollmentRead'));
    await expect401(
      auth.require(request(token(ROOT.name, ROOT.primaryKey, `${HOST}/registrations/x`)), 'EnrollmentRead'),
    );
  });

  it('with no host names configured, sr must equal the request Host (port included, case-insensitive)', async () => {
    const { auth } = fixture({ hostNames: [] });
    await expect(
      auth.require(request(token(ROOT.name, ROOT.primaryKey, 'localhost:8443'), 'LOCALHOST:8443'), 'EnrollmentRead'),
    ).resolves.toBeUndefined();
    await expect401(
      auth.require(request(token(ROOT.name, ROOT.primaryKey, 'localhost'), 'localhost:8443'), 'EnrollmentRead'),
    );
  });

  it('an sr URL-encoded by the SDK (localhost%3A8443) matches the decoded Host', async () => {
    const { auth } = fixture({ hostNames: [] });
    await expect(
      auth.require(request(token(ROOT.name, ROOT.primaryKey, 'localhost%3A8443'), 'localhost:8443'), 'EnrollmentRead'),
    ).resolves.toBeUndefined();
  });

  it('with no host names configured and no Host header, every token is refused', async () => {
    const { auth } = fixture({ hostNames: [] });
    await expect401(auth.require(request(token(ROOT.name, ROOT.primaryKey), null), 'EnrollmentRead'));
  });
});
