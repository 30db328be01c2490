// geoLatency end to end: three hub emulators in distinct locations, the instance "serving from" Japan East, devices
// registering with the official device SDK land on the closest candidate (and on the operator's table, when set).
import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { deriveKey, registerDevice } from '../support/device';
import { startTestStack } from '../support/stack';

describe('geoLatency allocation with three hubs', () => {
  let stack: Stack;
  const groupKey = randomBytes(64).toString('base64');
  const hubIn = (location: string) => {
    const hub = stack.hubs[stack.hubLocations.indexOf(location)];
    if (!hub) throw new Error(`no hub in ${location}`);
    return hub;
  };

  beforeAll(async () => {
    stack = await startTestStack({
      hubs: { count: 3 },
      // Europe is declared faster from Japan than the built-in estimate (which ranks the US first).
      settings: { DPS_REGION: 'Japan East', DPS_REGION_LATENCIES: 'japaneast:westeurope=100' },
    });
    expect(stack.hubLocations).toEqual(['westeurope', 'eastus', 'southeastasia']);
    await stack.services.groups.save({
      enrollmentGroupId: 'geo-all',
      allocationPolicy: 'geoLatency',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey } },
    });
    await stack.services.groups.save({
      enrollmentGroupId: 'geo-west',
      allocationPolicy: 'geoLatency',
      iotHubs: [hubIn('westeurope').hostName, hubIn('eastus').hostName],
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: Buffer.alloc(64, 7).toString('base64') } },
    });
    stack.services.invalidateCaches();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('puts every device on the hub closest to the serving region', async () => {
    const asia = hubIn('southeastasia');
    for (const id of ['geo-1', 'geo-2', 'geo-3', 'geo-4', 'geo-5']) {
      const state = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(groupKey, id));
      expect(state).toMatchObject({ status: 'assigned', assignedHub: asia.hostName, deviceId: id });
      expect(asia.device(id)).toBeDefined();
    }
    expect(hubIn('westeurope').deviceCount() + hubIn('eastus').deviceCount()).toBe(0);
  });

  it("chooses among the enrollment's hubs by the operator's latency table", async () => {
    const key = Buffer.alloc(64, 7).toString('base64');
    for (const id of ['geo-west-1', 'geo-west-2', 'geo-west-3']) {
      const state = await registerDevice(stack.deviceEndpoint, stack.idScope, id, deriveKey(key, id));
      expect(state).toMatchObject({ status: 'assigned', assignedHub: hubIn('westeurope').hostName });
    }
    expect(hubIn('eastus').deviceCount()).toBe(0);
  });
});
