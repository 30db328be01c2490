import { randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { ConfigError, configWarnings, DEFAULT_MAX_SAS_LIFETIME_SECONDS, loadConfig } from '../../shared/config';

const MASTER = randomBytes(32);
const base = (): Record<string, string | undefined> => ({
  DPS_MASTER_KEY: MASTER.toString('base64'),
  DPS_ID_SCOPE: '0ne00000A0A',
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
});

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('loadConfig did not throw');
}

describe('loadConfig', () => {
  it('reads the required settings and applies defaults', () => {
    const cfg = loadConfig(base());
    expect(cfg.idScope).toBe('0ne00000A0A');
    expect(cfg.tablesConnectionString).toBe('UseDevelopmentStorage=true');
    expect(cfg.masterKey?.equals(MASTER)).toBe(true);
    expect(cfg.tablePrefix).toBe('dps');
    expect(cfg.registerBudgetMs).toBe(5000);
    expect(cfg.retryAfterSeconds).toBe(3);
    expect(cfg.cacheTtlMs).toBe(5000);
    expect(cfg.hubCaFile).toBeUndefined();
    expect('hubCaFile' in cfg).toBe(false);
  });

  it('reads the allocation settings: webhook timeout, hub health', () => {
    expect(loadConfig(base())).toMatchObject({ webhookTimeoutMs: 3000, hubFailureThreshold: 2, hubCoolDownMs: 30_000 });
    const cfg = loadConfig({
      ...base(),
      DPS_WEBHOOK_TIMEOUT_MS: '800',
      DPS_HUB_FAILURE_THRESHOLD: '0', // at least one failure
      DPS_HUB_COOLDOWN_MS: '500',
    });
    expect(cfg).toMatchObject({ webhookTimeoutMs: 800, hubFailureThreshold: 1, hubCoolDownMs: 500 });
    expect(configError({ ...base(), DPS_HUB_COOLDOWN_MS: 'soon' }).message).toContain('DPS_HUB_COOLDOWN_MS');
  });

  it('reads the optional settings when set', () => {
    const cfg = loadConfig({
      ...base(),
      DPS_TABLES_CONNECTION_STRING: 'DefaultEndpointsProtocol=https;AccountName=x',
      DPS_TABLE_PREFIX: 'test1',
      DPS_REGISTER_BUDGET_MS: '250',
      DPS_RETRY_AFTER_SECONDS: ' 0 ',
      DPS_CACHE_TTL_MS: '60000',
      DPS_HUB_CA_FILE: '/tmp/ca.pem',
    });
    expect(cfg).toMatchObject({
      tablesConnectionString: 'DefaultEndpointsProtocol=https;AccountName=x',
      tablePrefix: 'test1',
      registerBudgetMs: 250,
      retryAfterSeconds: 0,
      cacheTtlMs: 60000,
      hubCaFile: '/tmp/ca.pem',
    });
  });

  it.each(['DPS_MASTER_KEY', 'DPS_ID_SCOPE', 'AzureWebJobsStorage'])('names %s when it is missing', (key) => {
    const env = base();
    delete env[key];
    expect(configError(env).message).toContain(key);
  });

  it('treats a blank required setting as missing', () => {
    expect(configError({ ...base(), DPS_ID_SCOPE: '   ' }).message).toContain('DPS_ID_SCOPE');
  });

  it('does not need AzureWebJobsStorage when DPS_TABLES_CONNECTION_STRING is set', () => {
    const env: Record<string, string | undefined> = {
      ...base(),
      DPS_TABLES_CONNECTION_STRING: 'UseDevelopmentStorage=true;x',
    };
    delete env.AzureWebJobsStorage;
    expect(loadConfig(env).tablesConnectionString).toBe('UseDevelopmentStorage=true;x');
  });

  it('a blank DPS_TABLES_CONNECTION_STRING falls back to AzureWebJobsStorage', () => {
    // local.settings.json templates commonly carry empty values.
    expect(loadConfig({ ...base(), DPS_TABLES_CONNECTION_STRING: '' }).tablesConnectionString).toBe(
      'UseDevelopmentStorage=true',
    );
  });

  it('a blank DPS_TABLES_CONNECTION_STRING without AzureWebJobsStorage fails naming the setting', () => {
    const env: Record<string, string | undefined> = { ...base(), DPS_TABLES_CONNECTION_STRING: '' };
    delete env.AzureWebJobsStorage;
    expect(configError(env).message).toMatch(/AzureWebJobsStorage|DPS_TABLES_CONNECTION_STRING/);
  });

  it.each(['abc', '12ms', '-5', '1.5', '1e3'])('rejects the non-integer %s naming the setting', (raw) => {
    expect(configError({ ...base(), DPS_REGISTER_BUDGET_MS: raw }).message).toContain('DPS_REGISTER_BUDGET_MS');
    expect(configError({ ...base(), DPS_CACHE_TTL_MS: raw }).message).toContain('DPS_CACHE_TTL_MS');
  });

  it.each([
    ['16 bytes', randomBytes(16).toString('base64')],
    ['33 bytes', randomBytes(33).toString('base64')],
    ['a pass phrase', 'correct horse battery staple'],
  ])('rejects a master key of %s', (_label, value) => {
    expect(configError({ ...base(), DPS_MASTER_KEY: value }).message).toContain('DPS_MASTER_KEY');
  });

  it('rejects a table prefix that Table Storage would not accept', () => {
    expect(configError({ ...base(), DPS_TABLE_PREFIX: '1dps' }).message).toContain('DPS_TABLE_PREFIX');
    expect(configError({ ...base(), DPS_TABLE_PREFIX: 'dps-test' }).message).toContain('DPS_TABLE_PREFIX');
  });
  it('Key Vault settings select the Key Vault provider and make DPS_MASTER_KEY optional', () => {
    const env: Record<string, string | undefined> = {
      ...base(),
      DPS_KEY_VAULT_URL: 'https://contoso.vault.azure.net/',
    };
    delete env.DPS_MASTER_KEY;
    const cfg = loadConfig(env);
    expect(cfg.keyVault).toEqual({ url: 'https://contoso.vault.azure.net', keyName: 'dps-kek' });
    expect(cfg.masterKey).toBeUndefined();
    expect(loadConfig({ ...env, DPS_KEY_VAULT_KEY: 'other-kek' }).keyVault?.keyName).toBe('other-kek');
    expect(configError({ ...env, DPS_KEY_VAULT_URL: 'http://contoso.vault.azure.net' }).message).toContain(
      'DPS_KEY_VAULT_URL',
    );
    expect(configError({ ...env, DPS_KEY_VAULT_KEY: 'bad/name' }).message).toContain('DPS_KEY_VAULT_KEY');
    expect(configError({ ...env, DPS_MASTER_KEY: 'c2hvcnQ=' }).message).toContain('DPS_MASTER_KEY');
  });

  it('DPS_TABLES_ENDPOINT wins over the connection strings; AZURE_CLIENT_ID is read', () => {
    const cfg = loadConfig({
      ...base(),
      DPS_TABLES_ENDPOINT: 'https://acct.table.core.windows.net/',
      AZURE_CLIENT_ID: '11111111-2222-3333-4444-555555555555',
    });
    expect(cfg.tablesEndpoint).toBe('https://acct.table.core.windows.net');
    expect(cfg.tablesConnectionString).toBeUndefined();
    expect(cfg.azureClientId).toBe('11111111-2222-3333-4444-555555555555');
    const env: Record<string, string | undefined> = {
      ...base(),
      DPS_TABLES_ENDPOINT: 'https://acct.table.core.windows.net',
    };
    delete env.AzureWebJobsStorage;
    expect(loadConfig(env).tablesEndpoint).toBe('https://acct.table.core.windows.net');
    expect(configError({ ...base(), DPS_TABLES_ENDPOINT: 'acct' }).message).toContain('DPS_TABLES_ENDPOINT');
  });
});

describe('hardening settings', () => {
  it('refuses an owner key shorter than 32 bytes', () => {
    expect(configError({ ...base(), DPS_SERVICE_OWNER_KEY: randomBytes(16).toString('base64') }).message).toContain(
      'DPS_SERVICE_OWNER_KEY must be the base64 of at least 32',
    );
    expect(
      loadConfig({ ...base(), DPS_SERVICE_OWNER_KEY: randomBytes(32).toString('base64') }).serviceOwnerKey,
    ).toBeDefined();
  });

  it('reads DPS_MAX_SAS_LIFETIME_SECONDS (default one year), refusing 0', () => {
    expect(loadConfig(base()).maxSasLifetimeSeconds).toBe(DEFAULT_MAX_SAS_LIFETIME_SECONDS);
    expect(DEFAULT_MAX_SAS_LIFETIME_SECONDS).toBe(31_536_000);
    expect(loadConfig({ ...base(), DPS_MAX_SAS_LIFETIME_SECONDS: '86400' }).maxSasLifetimeSeconds).toBe(86400);
    expect(configError({ ...base(), DPS_MAX_SAS_LIFETIME_SECONDS: '0' }).message).toContain(
      'DPS_MAX_SAS_LIFETIME_SECONDS',
    );
  });

  it('an unresolved Key Vault reference in DPS_SERVICE_OWNER_KEY closes the root policy with a warning, not an error', () => {
    const cfg = loadConfig({
      ...base(),
      DPS_SERVICE_HOSTNAMES: 'dps.example.com',
      DPS_SERVICE_OWNER_KEY: '@Microsoft.KeyVault(VaultName=kv-abc;SecretName=dps-service-owner-key)',
    });
    expect(cfg.serviceOwnerKey).toBeUndefined();
    expect(configWarnings(cfg)).toEqual([expect.stringContaining('Key Vault reference the platform did not resolve')]);
    // Any other non-base64 value is still a mistake the operator must hear about at once.
    expect(configError({ ...base(), DPS_SERVICE_OWNER_KEY: 'not a key!' }).message).toContain('DPS_SERVICE_OWNER_KEY');
  });

  it('warns when DPS_SERVICE_HOSTNAMES is unset outside the dev stack', () => {
    expect(configWarnings(loadConfig(base()))).toEqual([expect.stringContaining('DPS_SERVICE_HOSTNAMES is not set')]);
    expect(configWarnings(loadConfig({ ...base(), DPS_SERVICE_HOSTNAMES: 'dps.example.com' }))).toEqual([]);
    expect(configWarnings(loadConfig({ ...base(), DPS_DEV_STACK: '1' }))).toEqual([]);
  });
});
