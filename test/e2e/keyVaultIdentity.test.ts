// Key Vault key provider and managed identity, end to end: the official device SDK registers devices against two
// (then three) fresh service instances on the same tables, whose secrets are sealed under data keys wrapped by a local
// double of Key Vault reached through @azure/keyvault-keys. The double counts every Key Vault operation. Also: a hub
// linked without a connection string (Entra ID token), the data-key rewrap after a key rotation, and no secret in
// any log line or event of the whole run (symmetric-key and X.509 registrations, a failed attestation, service calls,
// linked hubs, access policies, events).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ProvisioningDeviceClient } from 'azure-iot-provisioning-device';
import { Http } from 'azure-iot-provisioning-device-http';
import { X509Security } from 'azure-iot-security-x509';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { inject } from 'vitest';

import { DevTokenCredential } from '../../dev/devCredential';
import type { HubEmulator } from '../../dev/hubEmulator';
import { startHubEmulator } from '../../dev/hubEmulator';
import type { KeyVaultDouble } from '../../dev/keyVaultDouble';
import { startKeyVaultDouble } from '../../dev/keyVaultDouble';
import type { Stack } from '../../dev/stack';
import { makeCert } from '../../dev/testPki';
import { deriveKey, registerDevice } from '../support/device';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

const ENROLLMENTS = 24;
const key = () => randomBytes(32).toString('base64');

describe('Key Vault key provider and identity, across fresh instances', () => {
  const credential = new DevTokenCredential();
  const prefix = `kv${randomBytes(4).toString('hex')}`;
  const individualKeys = new Map(Array.from({ length: ENROLLMENTS }, (_, i) => [`kv-dev-${i}`, key()]));
  const groupKey = key();
  const logs: string[] = [];
  const secrets: string[] = [groupKey, ...individualKeys.values()];
  let vault: KeyVaultDouble;
  let hub: HubEmulator;
  let identityHub: HubEmulator;
  let stack: Stack | undefined;
  // The local event sink writes every event here (and a line each to the console): both are grepped at the end.
  const eventsDir = mkdtempSync(join(tmpdir(), 'open-dps-kv-events-'));
  const eventsFile = join(eventsDir, 'events.jsonl');
  const call = serviceCaller(() => {
    if (!stack) throw new Error('no stack');
    return stack;
  });

  const startInstance = async () => {
    await stack?.stop();
    stack = await startTestStack({
      hubs: { count: 0, external: [{ hostName: hub.hostName, connectionString: hub.connectionString }] },
      settings: {
        DPS_TABLE_PREFIX: prefix,
        DPS_KEY_VAULT_URL: vault.url,
        DPS_KEY_VAULT_KEY: vault.keyName,
        DPS_MASTER_KEY: '', // Key Vault only
        DPS_EVENTS_CONSOLE: 'true',
        DPS_EVENTS_FILE: eventsFile,
      },
      azure: { credential, disableChallengeResourceVerification: true },
      // The access log `npm start` prints, so the log grep below sees every request of the run.
      onRequest: ({ method, path, status, ms }) => logs.push(`${method} ${path} ${status} ${ms.toFixed(0)} ms`),
    });
    secrets.push(stack.settings.DPS_SERVICE_OWNER_KEY ?? '<unset>');
    return stack;
  };

  /** Registers devices with the official SDK, 8 at a time; returns the Key Vault operations they caused. */
  const registerAll = async (devices: [string, string][]) => {
    const before = vault.operations();
    for (let i = 0; i < devices.length; i += 8) {
      await Promise.all(
        devices.slice(i, i + 8).map(async ([id, deviceKey]) => {
          const s = stack;
          if (!s) throw new Error('no stack');
          const state = await registerDevice(s.deviceEndpoint, s.idScope, id, deviceKey);
          expect(state.status).toBe('assigned');
        }),
      );
    }
    return vault.operations() - before;
  };

  beforeAll(async () => {
    // Everything written to the console or the process streams during the run, to grep for secrets at the end.
    const record =
      (write: (...args: never[]) => unknown) =>
      (...args: unknown[]) => {
        logs.push(
          args
            .map((a) => (typeof a === 'string' ? a : a instanceof Error ? `${a.stack}` : JSON.stringify(a)))
            .join(' '),
        );
        return (write as (...a: unknown[]) => unknown)(...args);
      };
    for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      const original = console[method].bind(console);
      vi.spyOn(console, method).mockImplementation(record(original));
    }
    const stdout = process.stdout.write.bind(process.stdout);
    const stderr = process.stderr.write.bind(process.stderr);
    vi.spyOn(process.stdout, 'write').mockImplementation(record(stdout) as never);
    vi.spyOn(process.stderr, 'write').mockImplementation(record(stderr) as never);

    const certs = inject('certs');
    const tls = { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') };
    vault = await startKeyVaultDouble({ tls, tokenSecret: credential.secret });
    hub = await startHubEmulator({ tls });
    identityHub = await startHubEmulator({ tls, tokenSecret: credential.secret });
    secrets.push(hub.connectionString.split('SharedAccessKey=')[1] ?? '<none>', hub.connectionString);
  });

  afterAll(async () => {
    await stack?.stop();
    await Promise.all([vault?.close(), hub?.close(), identityHub?.close()]);
    vi.restoreAllMocks();
    rmSync(eventsDir, { recursive: true, force: true });
  });

  it('instance 1 wraps one data key (2 Key Vault calls) and makes none for enrollments or registrations', async () => {
    await startInstance();
    expect(vault.calls).toMatchObject({ getKey: 1, wrapKey: 1, unwrapKey: 0 });
    const bulk = await call('POST', '/enrollments', {
      mode: 'create',
      enrollments: [...individualKeys].map(([registrationId, primaryKey]) => ({
        registrationId,
        attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: key() } },
      })),
    });
    expect(bulk.json).toMatchObject({ isSuccessful: true });
    const group = await call('PUT', '/enrollmentGroups/kv-group', {
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: key() } },
    });
    expect(group.status).toBe(200);
    expect(vault.operations()).toBe(2);
    expect(await registerAll([...individualKeys])).toBe(0);
  });

  it('a fresh instance 2 makes a constant 2 calls (get the key version, unwrap the data key), then none', async () => {
    const before = { ...vault.calls };
    await startInstance();
    const groupDevices = Array.from({ length: 8 }, (_, i): [string, string] => {
      const id = `kv-group-dev-${i}`;
      return [id, deriveKey(groupKey, id)];
    });
    secrets.push(...groupDevices.map(([, derived]) => derived));
    const reRegistrations = await registerAll([...individualKeys, ...groupDevices]);
    // New enrollments sealed by this instance join the current data-key epoch: no wrap.
    const more = await call('PUT', '/enrollments/kv-dev-new', {
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: key() } },
    });
    expect(more.status).toBe(200);
    expect(await registerAll([['kv-dev-new', groupKey]])).toBe(0);
    const instance2 = {
      getKey: vault.calls.getKey - before.getKey,
      wrapKey: vault.calls.wrapKey - before.wrapKey,
      unwrapKey: vault.calls.unwrapKey - before.unwrapKey,
    };
    expect(instance2).toEqual({ getKey: 1, wrapKey: 0, unwrapKey: 1 });
    // All of them at the instance's start (re-linking the hub opened the data key), none per registration.
    expect(reRegistrations).toBe(0);
  });

  it('links a hub without a connection string and registers a device through it with an Entra ID token', async () => {
    const linked = await call('PUT', `/linkedHubs/${identityHub.hostName}`, { location: 'local' });
    expect(linked.json).toEqual({
      hostName: identityHub.hostName,
      location: 'local',
      allocationWeight: 1,
      applyAllocationPolicy: true,
      authentication: 'identity',
    });
    const enrollment = await call('PUT', '/enrollments/kv-identity-dev', {
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: key() } },
      iotHubs: [identityHub.hostName],
    });
    expect(enrollment.status).toBe(200);
    const s = stack;
    if (!s) throw new Error('no stack');
    const state = await registerDevice(s.deviceEndpoint, s.idScope, 'kv-identity-dev', groupKey);
    expect(state.assignedHub).toBe(identityHub.hostName);
    expect(identityHub.device(state.deviceId)).toMatchObject({ deviceId: 'kv-identity-dev' });
    expect(credential.requests).toContain('https://iothubs.azure.net/.default');
  });

  it('after a Key Vault key rotation, rewrap re-wraps the data keys; the old version can be disabled', async () => {
    const oldKeyId = vault.currentKeyId();
    const newKeyId = vault.rotate();
    const rewrap = await call('POST', '/dataKeys/rewrap');
    expect(rewrap.status).toBe(200);
    expect(rewrap.json).toEqual({ dataKeys: 1, rewrapped: 1, keyId: newKeyId });
    // Idempotent: nothing left to re-wrap.
    expect((await call('POST', '/dataKeys/rewrap')).json).toEqual({ dataKeys: 1, rewrapped: 0, keyId: newKeyId });
    vault.disable(oldKeyId);
    // A fresh instance 3 opens every secret with the new version only: again 2 calls, then none.
    const before = vault.operations();
    await startInstance();
    expect(await registerAll([...individualKeys].slice(0, 8))).toBe(0);
    expect(vault.operations() - before).toBe(2);
  });

  it('an X.509 device, a refused device key and an access policy add their own log lines and events', async () => {
    const s = stack;
    if (!s) throw new Error('no stack');
    const leaf = await makeCert({ cn: 'kv-x509-dev' });
    secrets.push(leaf.keyPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''));
    const enrolled = await call('PUT', '/enrollments/kv-x509-dev', {
      attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: leaf.pem } } } },
    });
    expect(enrolled.status, enrolled.text).toBe(200);
    const transport = new Http();
    transport.setTransportOptions({ pollingInterval: 50 });
    const security = new X509Security('kv-x509-dev', { cert: leaf.pem, key: leaf.keyPem });
    const client = ProvisioningDeviceClient.create(s.deviceEndpoint, s.idScope, transport, security);
    expect(await client.register()).toMatchObject({ status: 'assigned', deviceId: 'kv-x509-dev' });

    const wrongKey = key();
    secrets.push(wrongKey);
    await expect(registerDevice(s.deviceEndpoint, s.idScope, 'kv-dev-0', wrongKey)).rejects.toBeDefined();

    const policy = await call('PUT', '/accessPolicies/kv-reader', { rights: 'EnrollmentRead' });
    expect(policy.status).toBe(200);
    const rotated = await call('POST', '/accessPolicies/kv-reader/regenerateKey', { keyType: 'primary' });
    expect(rotated.status).toBe(200);
    for (const body of [policy.json, rotated.json] as { primaryKey: string; secondaryKey: string }[]) {
      secrets.push(body.primaryKey, body.secondaryKey);
    }
  });

  it('no secret appears in any log line or event of the run (keys, owner key, hub key, tokens)', async () => {
    // Stopping drains the outbox: every event of the run is then in the log and the events file.
    await stack?.stop();
    stack = undefined;
    expect(existsSync(eventsFile)).toBe(true);
    const events = readFileSync(eventsFile, 'utf8');
    const text = `${logs.join('\n')}\n${events}`;
    expect(logs.filter((l) => l.includes('/register')).length).toBeGreaterThan(ENROLLMENTS);
    // The run did produce the events whose payloads could carry secrets, in the log and in the file (registration
    // events too, once the registration service records them: every type in the file is checked in the log).
    const types = new Set([...events.matchAll(/"type":"opendps\.([\w.]+)"/g)].map((m) => m[1] ?? ''));
    for (const type of [
      ...types,
      'enrollment.created',
      'enrollmentGroup.created',
      'linkedHub.created',
      'accessPolicy.created',
      'accessPolicy.keyRegenerated',
    ]) {
      expect(
        logs.some((l) => l.includes(` event ${type} `)),
        type,
      ).toBe(true);
      expect(events, type).toContain(`"opendps.${type}"`);
    }
    const tokens = await Promise.all(
      ['https://iothubs.azure.net/.default', 'https://vault.azure.net/.default'].map(
        async (scope) => (await credential.getToken(scope)).token.split('.')[2] ?? '<none>',
      ),
    );
    for (const secret of [...secrets, ...tokens, credential.secret.toString('base64')]) {
      expect(secret.length).toBeGreaterThan(10);
      // As is, URL-encoded (a key in a query or a form) and as the hex of its bytes.
      for (const form of [secret, encodeURIComponent(secret), Buffer.from(secret, 'base64').toString('hex')]) {
        expect(text).not.toContain(form);
      }
    }
  });
});
