// Health-aware allocation end to end: one of three hub emulators fails; devices registering with the official device
// SDK go to the healthy hubs (a first registration falls over to another candidate), GET linkedHubs shows the sick
// hub, and after the (short) cool-down devices come back to it. A hub that refuses the service's credentials fails a
// static registration at once with a clear message, never an endless `assigning`.
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { allocateHashed } from '../../shared/allocation/hashed';
import { deriveKey, registerDevice } from '../support/device';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

const COOL_DOWN_MS = 600;

interface HubView {
  hostName: string;
  health: { healthy: boolean; consecutiveFailures: number; unhealthyUntil?: string; lastFailure?: { kind: string } };
}

describe('health-aware allocation with three hubs', () => {
  let stack: Stack;
  const groupKey = randomBytes(64).toString('base64');
  const call = serviceCaller(() => stack);
  const register = (id: string) => registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
  const sick = () => {
    const hub = stack.hubs[2];
    if (!hub) throw new Error('no third hub');
    return hub;
  };
  /** Device IDs that hashing over all three hubs puts on the sick hub. */
  const hashedToSick = (prefix: string, count: number): string[] => {
    const hubs = stack.hubs.map((h) => ({ hostName: h.hostName, allocationWeight: 1 }));
    const ids: string[] = [];
    for (let i = 0; ids.length < count; i++) {
      if (allocateHashed(`${prefix}-${i}`, hubs)?.hostName === sick().hostName) ids.push(`${prefix}-${i}`);
    }
    return ids;
  };
  const healthOf = async (hostName: string) => {
    const res = await call('GET', '/linkedHubs');
    expect(res.status).toBe(200);
    return (res.json as HubView[]).find((h) => h.hostName === hostName)?.health;
  };

  beforeAll(async () => {
    stack = await startTestStack({
      hubs: { count: 3 },
      settings: { DPS_HUB_COOLDOWN_MS: String(COOL_DOWN_MS), DPS_HUB_FAILURE_THRESHOLD: '2' },
    });
    await stack.services.groups.save({
      enrollmentGroupId: 'health',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey } },
    });
    stack.services.invalidateCaches();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const during = () => hashedToSick('health-a', 4);

  it('while a hub fails, devices hashed to it go to the healthy hubs, and GET linkedHubs shows it sick', async () => {
    expect(await healthOf(sick().hostName)).toEqual({ healthy: true, consecutiveFailures: 0 });
    sick().setFault(503);
    for (const id of during()) {
      const state = await register(id);
      expect(state.status).toBe('assigned');
      expect(state.assignedHub).not.toBe(sick().hostName);
      expect(stack.hubs.some((h) => h.hostName === state.assignedHub && h.device(id) !== undefined)).toBe(true);
    }
    expect(sick().deviceCount()).toBe(0);
    const health = await healthOf(sick().hostName);
    expect(health).toMatchObject({ healthy: false, lastFailure: { kind: 'error' } });
    expect(health?.consecutiveFailures).toBeGreaterThanOrEqual(2);
    expect(Date.parse(health?.unhealthyUntil ?? '')).toBeGreaterThan(Date.now());
    const listed = (await call('GET', '/linkedHubs')).json as HubView[];
    expect(JSON.stringify(listed)).not.toContain('SharedAccessKey');
    // health is read-only: writing back what GET showed is accepted and changes nothing.
    const shown = listed.find((h) => h.hostName === sick().hostName);
    const put = await call('PUT', `/linkedHubs/${encodeURIComponent(sick().hostName)}`, shown);
    expect(put.status).toBe(200);
  });

  it('after the cool-down the recovered hub takes devices again, and re-registering devices come back', async () => {
    sick().setFault(undefined);
    await new Promise((r) => setTimeout(r, COOL_DOWN_MS + 50));
    for (const id of hashedToSick('health-b', 3)) {
      expect(await register(id)).toMatchObject({ status: 'assigned', assignedHub: sick().hostName });
    }
    expect(await healthOf(sick().hostName)).toEqual({ healthy: true, consecutiveFailures: 0 });
    for (const id of during()) {
      expect(await register(id)).toMatchObject({ assignedHub: sick().hostName, substatus: 'deviceDataMigrated' });
      expect(sick().device(id)).toBeDefined();
    }
  });

  it('a hub that refuses the service credentials fails a static registration at once, naming the cause', async () => {
    const hub = stack.hubs[0];
    const staticKey = randomBytes(64).toString('base64');
    await stack.services.groups.save({
      enrollmentGroupId: 'health-static',
      allocationPolicy: 'static',
      iotHubs: [hub?.hostName ?? ''],
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: staticKey } },
    });
    stack.services.invalidateCaches();
    hub?.setFault(401);
    try {
      const id = 'health-static-1';
      const started = Date.now();
      const err = (await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(staticKey, id)).then(
        () => ({}),
        (e: unknown) => e,
      )) as { result?: { status?: string; registrationState?: { errorCode?: number; errorMessage?: string } } };
      expect(Date.now() - started).toBeLessThan(5000);
      expect(err.result?.status).toBe('failed');
      expect(err.result?.registrationState?.errorCode).toBe(500001);
      expect(err.result?.registrationState?.errorMessage).toContain("refused the provisioning service's credentials");
    } finally {
      hub?.setFault(undefined);
    }
  });
});
