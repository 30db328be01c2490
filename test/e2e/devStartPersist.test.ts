// `npm start -- --persist --hubs 2` as a user runs it (the real dev/start.ts in a child process, in a temp folder):
// the banner names every hub with its own connection string and location, and after a clean stop and a new start the
// hubs still hold the devices Open DPS assigned, with the same keys (read back with the official azure-iothub SDK).
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { deriveKey, registerDevice } from '../support/device';
import { transpileDevStack } from '../support/transpile';

const root = join(__dirname, '..', '..');

interface Banner {
  deviceEndpoint: string;
  idScope: string;
  serviceConnectionString: string;
  hubs: { hostName: string; location: string; connectionString: string }[];
  deviceKey: string;
}

/** Two consecutive free ports (the hubs listen on --hub-port and the next one). */
async function freePorts(count: number): Promise<number> {
  const listen = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await listen(base + i);
    if (ok) return base;
  }
  throw new Error('no free ports');
}

function startDev(script: string, cwd: string, args: string[]): { child: ChildProcess; banner: Promise<Banner> } {
  const child = spawn(process.execPath, [script, ...args], {
    cwd,
    env: { ...process.env, NODE_PATH: join(root, 'node_modules') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const banner = new Promise<Banner>((resolve, reject) => {
    child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (!out.includes('Press Ctrl+C to stop.')) return;
      const field = (name: string) => new RegExp(`${name}\\s+(\\S+)`).exec(out)?.[1] ?? '';
      const hubs = [...out.matchAll(/^\s+(\S+)\s+location (\S+)\n\s+(HostName=\S+)$/gm)].map((m) => ({
        hostName: m[1] ?? '',
        location: m[2] ?? '',
        connectionString: m[3] ?? '',
      }));
      resolve({
        deviceEndpoint: field('Global device endpoint'),
        idScope: field('ID scope'),
        serviceConnectionString: field('Service connection'),
        hubs,
        deviceKey: /--device-key (\S+)/.exec(out)?.[1] ?? '',
      });
    });
    child.once('exit', (code) => reject(new Error(`npm start exited with ${code}:\n${out}`)));
  });
  return { child, banner };
}

function stopDev(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill('SIGINT'); // Ctrl+C: the clean stop that saves Azurite and the hub registries
  });
}

describe('npm start -- --persist --hubs 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'open-dps-start-'));
  const work = join(dir, 'work');
  const script = join(dir, 'build', 'dev', 'start.js');
  let args: string[] = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    await transpileDevStack(join(dir, 'build'));
    // The suite's dev CA, which this worker trusts; start.ts keeps certificates it finds in .dev/certs.
    const certs = inject('certs');
    mkdirSync(join(work, '.dev', 'certs'), { recursive: true });
    copyFileSync(certs.caCert, join(work, '.dev', 'certs', 'ca.pem'));
    copyFileSync(certs.serverCert, join(work, '.dev', 'certs', 'server.pem'));
    copyFileSync(certs.serverKey, join(work, '.dev', 'certs', 'server.key'));
    const [port, azurite, hubs] = [await freePorts(1), await freePorts(1), await freePorts(2)];
    args = ['--persist', '--quiet', '--hubs', '2', '--port', `${port}`, '--azurite-port', `${azurite}`];
    args.push('--hub-port', `${hubs}`);
  });

  afterAll(async () => {
    for (const child of children) await stopDev(child);
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints every hub, keeps the registries and keys across a clean restart', async () => {
    const first = startDev(script, work, args);
    children.push(first.child);
    const before = await first.banner;
    expect(before.hubs).toHaveLength(2);
    expect(before.hubs.map((h) => h.location)).toEqual(['westeurope', 'eastus']);
    expect(new Set(before.hubs.map((h) => h.connectionString)).size).toBe(2);
    expect(existsSync(join(work, '.dev', 'hubs', 'hub-1.json'))).toBe(true);
    expect(existsSync(join(work, '.dev', 'hubs', 'hub-2.json'))).toBe(true);

    // The demo group's device (the banner's own command), registered with the official device SDK.
    const ids = ['persist-a', 'persist-b', 'persist-c', 'persist-d'];
    const assigned = new Map<string, string>();
    for (const id of ['demo-device-1', ...ids]) {
      const key = id === 'demo-device-1' ? before.deviceKey : deriveKey(await demoGroupKey(before), id);
      const state = await registerDevice(before.deviceEndpoint, before.idScope, id, key);
      expect(state.status).toBe('assigned');
      assigned.set(id, state.assignedHub ?? '');
    }
    expect(await stopDev(first.child)).toBe(0);

    const second = startDev(script, work, args);
    children.push(second.child);
    const after = await second.banner;
    expect(after.idScope).toBe(before.idScope);
    expect(after.hubs).toEqual(before.hubs); // same host names, locations and keys

    for (const [id, hubName] of assigned) {
      const hub = after.hubs.find((h) => h.hostName === hubName);
      if (!hub) throw new Error(`${id} was assigned to ${hubName}, which is not a linked hub`);
      const { responseBody } = await Registry.fromConnectionString(hub.connectionString).get(id);
      expect(responseBody.deviceId).toBe(id);
    }
    // Open DPS's own state survived too: the device registers again onto the hub it was on.
    const again = await registerDevice(after.deviceEndpoint, after.idScope, 'demo-device-1', before.deviceKey);
    expect(again).toMatchObject({ status: 'assigned', assignedHub: assigned.get('demo-device-1') });
    expect(await stopDev(second.child)).toBe(0);
  }, 90_000);

  it('refuses to start when the hub registry folder cannot be created', async () => {
    const bad = join(dir, `bad-${randomBytes(3).toString('hex')}`);
    mkdirSync(join(bad, '.dev', 'certs'), { recursive: true });
    for (const f of ['ca.pem', 'server.pem', 'server.key']) {
      copyFileSync(join(work, '.dev', 'certs', f), join(bad, '.dev', 'certs', f));
    }
    // A file where the folder should be.
    copyFileSync(join(work, '.dev', 'certs', 'ca.pem'), join(bad, '.dev', 'hubs'));
    const run = startDev(script, bad, args);
    children.push(run.child);
    await expect(run.banner).rejects.toThrow(/npm start failed: .*\.dev\/hubs/);
  }, 60_000);
});

/** The demo group's primary key, through the service API the banner's connection string opens. */
async function demoGroupKey(banner: Banner): Promise<string> {
  const { ProvisioningServiceClient } = await import('azure-iot-provisioning-service');
  const client = ProvisioningServiceClient.fromConnectionString(banner.serviceConnectionString);
  const result = await client.getEnrollmentGroupAttestationMechanism('demo-group');
  const key = (result.responseBody as { symmetricKey?: { primaryKey?: string } }).symmetricKey?.primaryKey;
  if (!key) throw new Error('demo-group has no symmetric key');
  return key;
}
