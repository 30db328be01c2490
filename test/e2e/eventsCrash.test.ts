// The crash test: the host (the dev stack in a child process) is killed with SIGKILL at several points between a
// state commit and its send — after a marker batch, after a registration commit, after a send — with registrations of
// the official device SDK in flight. A new host on the same storage then delivers, through its sweep, every event of
// every committed change: each event in every device's history (read through the service API) and, per
// registration state, its `accepted` and outcome events; repeats only with the same `id` and the same content.
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { HubEmulator } from '../../dev/hubEmulator';
import { startHubEmulator } from '../../dev/hubEmulator';
import type { Stack, StackOptions } from '../../dev/stack';
import { newIdScope } from '../../dev/stack';
import type { CloudEvent } from '../../shared/events/catalogue';
import { deriveKey, registerDevice } from '../support/device';
import { transpileDevStack } from '../support/transpile';
import { serviceCaller } from '../support/service';

const root = join(__dirname, '..', '..');
const DEVICES = 16;

interface Host {
  child: ChildProcess;
  endpoint: string;
  exited: Promise<NodeJS.Signals | number | null>;
}

function startHost(script: string, options: StackOptions, crashAfter?: string): Promise<Host> {
  const child = spawn(process.execPath, [script], {
    env: {
      ...process.env,
      NODE_PATH: join(root, 'node_modules'),
      CRASH_STACK: JSON.stringify(options),
      DPS_TEST_CRASH_AFTER: crashAfter ?? '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code)),
  );
  let out = '';
  return new Promise((resolve, reject) => {
    child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const ready = /READY (\{.*\})/.exec(out)?.[1];
      if (ready) resolve({ child, endpoint: (JSON.parse(ready) as { deviceEndpoint: string }).deviceEndpoint, exited });
    });
    void exited.then((how) => reject(new Error(`the host exited (${String(how)}) before it was ready:\n${out}`)));
  });
}

function readEvents(file: string): CloudEvent[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as CloudEvent);
}

describe('events survive a host killed between commit and send', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dps-crash-'));
  const script = join(dir, 'build', 'test', 'support', 'crashHost.js');
  let hub: HubEmulator;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    await transpileDevStack(join(dir, 'build'), ['test/support/crashHost.ts']);
    const certs = inject('certs');
    hub = await startHubEmulator({
      tls: { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') },
      port: 0,
    });
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(['commit:6', 'marker:4', 'send:3'])('crash after %s', async (crashAfter) => {
    const file = join(dir, `events-${crashAfter.replace(':', '-')}.jsonl`);
    const ownerKey = randomBytes(32).toString('base64');
    const options: StackOptions = {
      certs: inject('certs'),
      tablesConnectionString: inject('tablesConnectionString'),
      hubs: { count: 0, external: [{ hostName: hub.hostName, connectionString: hub.connectionString }] },
      stateDir: dir,
      eventSweepMs: 200,
      settings: {
        DPS_ID_SCOPE: newIdScope(),
        DPS_MASTER_KEY: randomBytes(32).toString('base64'),
        DPS_SERVICE_OWNER_KEY: ownerKey,
        DPS_TABLE_PREFIX: `c${randomBytes(4).toString('hex')}`,
        DPS_EVENTS_FILE: file,
        DPS_EVENTS_CONSOLE: 'false',
        DPS_EVENTS_SWEEP_AFTER_MS: '1000',
        DPS_RETRY_AFTER_SECONDS: '0',
      },
    };
    const idScope = options.settings?.DPS_ID_SCOPE ?? '';
    let endpoint = '';
    const call = serviceCaller(
      () => ({ deviceEndpoint: endpoint, settings: { DPS_SERVICE_OWNER_KEY: ownerKey } }) as unknown as Stack,
    );

    // Host 1, armed: a group, then a burst of first registrations until it kills itself.
    const first = await startHost(script, options, crashAfter);
    children.push(first.child);
    endpoint = first.endpoint;
    const groupKey = randomBytes(32).toString('base64');
    const created = await call('PUT', '/enrollmentGroups/crash', {
      enrollmentGroupId: 'crash',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: groupKey } },
    });
    expect(created.status).toBe(200);
    // Waves of concurrent first registrations until the host dies: how many marker writes a wave takes depends on
    // how many requests share each one (group commit), so the n-th crash point may come in a later wave.
    const ids: string[] = [];
    const outcomes: PromiseSettledResult<unknown>[] = [];
    const alive = () => first.child.exitCode === null && first.child.signalCode === null;
    for (let wave = 0; wave < 20 && alive(); wave++) {
      const batch = Array.from({ length: DEVICES }, (_, i) => `crash-${wave}-${i}`);
      ids.push(...batch);
      outcomes.push(
        ...(await Promise.allSettled(
          batch.map((id) => registerDevice(endpoint, idScope, id, deriveKey(groupKey, id))),
        )),
      );
    }
    expect(await first.exited).toBe('SIGKILL');
    expect(outcomes.some((o) => o.status === 'rejected')).toBe(true); // registrations were in flight

    // Host 2 on the same storage, not armed: its sweep delivers what host 1 left.
    const second = await startHost(script, options);
    children.push(second.child);
    endpoint = second.endpoint;
    const committed = new Map<string, CloudEvent>();
    const states = new Map<string, { status: string; assignedHub?: string; deviceId?: string }>();
    for (const id of ids) {
      const state = await call('GET', `/registrations/${id}`);
      if (state.status === 200) states.set(id, state.json as { status: string });
      const rows = await call('GET', `/registrations/${id}/events`);
      for (const e of rows.json as CloudEvent[]) committed.set(e.id, e);
    }
    expect(states.size).toBeGreaterThan(0);

    const deadline = Date.now() + 20_000;
    let delivered = readEvents(file);
    const missing = () => [...committed.keys()].filter((id) => !delivered.some((e) => e.id === id));
    while (missing().length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      delivered = readEvents(file);
    }
    expect(missing()).toEqual([]);

    // Per registration state: its `accepted`, and its outcome (the state a device or the service API sees).
    for (const [id, state] of states) {
      const mine = delivered.filter((e) => e.subject === id);
      expect(
        mine.some((e) => e.type === 'opendps.registration.accepted'),
        id,
      ).toBe(true);
      if (state.status === 'assigned') {
        expect(
          mine.some(
            (e) =>
              e.type === 'opendps.registration.assigned' &&
              e.data.assignedHub === state.assignedHub &&
              e.data.deviceId === state.deviceId,
          ),
          id,
        ).toBe(true);
      }
    }
    // Duplicates only as the same event: one content per id, and one event per operation and type.
    const byId = new Map<string, string>();
    for (const e of delivered) {
      const text = JSON.stringify(e);
      expect(byId.get(e.id) ?? text).toBe(text);
      byId.set(e.id, text);
    }
    const perOperation = new Map<string, string>();
    for (const e of delivered.filter((d) => d.type.startsWith('opendps.registration.'))) {
      if (e.type.endsWith('attestationFailed')) continue;
      const key = `${String(e.data.operationId)} ${e.type}`;
      expect(perOperation.get(key) ?? e.id, key).toBe(e.id);
      perOperation.set(key, e.id);
    }
    second.child.kill('SIGKILL');
    await second.exited;
  });
});
