// The token-credential path to Table Storage (DPS_TABLES_ENDPOINT): Azurite over HTTPS with `--oauth basic` checks
// the bearer token's audience, issuer and lifetime, as Table Storage does before it checks the role.
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';

import type { AzuriteTables } from '../../dev/azurite';
import { AZURITE_ACCOUNT, startAzuriteTables } from '../../dev/azurite';
import { DevTokenCredential } from '../../dev/devCredential';
import { DataKeyTable } from '../../shared/storage/dataKeys';
import { createTables } from '../../shared/storage/tables';
import { registerDevice } from '../support/device';
import { startTestStack } from '../support/stack';

describe('Table Storage with a token credential (Azurite --oauth basic over HTTPS)', () => {
  let azurite: AzuriteTables;
  const endpoint = () => `${azurite.url}/${AZURITE_ACCOUNT}`;

  beforeAll(async () => {
    const certs = inject('certs');
    azurite = await startAzuriteTables({
      tls: { certFile: certs.serverCert, keyFile: certs.serverKey },
      oauth: 'basic',
    });
  });
  afterAll(() => azurite.stop());

  it('creates tables, writes and reads with a storage-audience bearer token', async () => {
    expect(azurite.url).toMatch(/^https:/);
    const credential = new DevTokenCredential();
    const tables = createTables({ endpoint: endpoint(), credential, prefix: `o${randomBytes(4).toString('hex')}` });
    await tables.ensure();
    const keys = new DataKeyTable(tables.config);
    const record = { id: 'k1', keyId: 'local:test', wrapped: 'AAAA', created: new Date().toISOString() };
    await keys.create(record);
    await expect(keys.get('k1')).resolves.toEqual(record);
    await expect(keys.current()).resolves.toEqual(record);
    expect(new Set(credential.requests)).toEqual(new Set(['https://storage.azure.com/.default']));
  });

  it('Azurite refuses a token for another audience, so the test above is not anonymous access', async () => {
    const wrongAudience = new DevTokenCredential();
    const credential = {
      getToken: () => wrongAudience.getToken('https://vault.azure.net/.default'),
    };
    const tables = createTables({ endpoint: endpoint(), credential, prefix: `o${randomBytes(4).toString('hex')}` });
    await expect(tables.ensure()).rejects.toMatchObject({
      statusCode: 403,
      message: expect.stringMatching(/audience/i) as unknown,
    });
  });

  it('the whole service runs on the token path: DPS_TABLES_ENDPOINT + the identity, a device registers', async () => {
    const credential = new DevTokenCredential();
    const stack = await startTestStack({ settings: { DPS_TABLES_ENDPOINT: endpoint() }, azure: { credential } });
    try {
      const primaryKey = randomBytes(32).toString('base64');
      await stack.services.enrollments.save({
        registrationId: 'token-path-dev',
        attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: primaryKey } },
      });
      const state = await registerDevice(stack.deviceEndpoint, stack.idScope, 'token-path-dev', primaryKey);
      expect(state.status).toBe('assigned');
      expect(credential.requests).toContain('https://storage.azure.com/.default');
    } finally {
      await stack.stop();
    }
  });
});
