import { describe, expect, it } from 'vitest';

import type { LinkedHub } from '../../shared/domain/linkedHub';
import { HubHealth, trackHealth } from '../../shared/hubs/health';
import { HubError, HubTimeout } from '../../shared/hubs/registryClient';
import type { HubClientPool } from '../../shared/registration/assign';

const hubs = [{ hostName: 'a.azure-devices.net' }, { hostName: 'b.azure-devices.net' }, { hostName: 'c.net' }];

function tracker(options: { failureThreshold?: number; coolDownMs?: number } = {}) {
  let now = Date.parse('2024-01-01T00:00:00Z');
  const health = new HubHealth({ ...options, clock: () => now });
  return { health, advance: (ms: number) => (now += ms) };
}

describe('HubHealth', () => {
  it('keeps a hub healthy after one failure and cools it down at the threshold', () => {
    const { health } = tracker();
    health.recordFailure('a.azure-devices.net', 'error', 'HTTP 503');
    expect(health.isHealthy('a.azure-devices.net')).toBe(true);
    health.recordFailure('A.Azure-Devices.net', 'timeout', 'no answer within 2000 ms'); // host names ignore case
    expect(health.isHealthy('a.azure-devices.net')).toBe(false);
    expect(health.healthy(hubs).map((h) => h.hostName)).toEqual(['b.azure-devices.net', 'c.net']);
  });

  it('a success resets the count', () => {
    const { health } = tracker();
    health.recordFailure('a.azure-devices.net', 'error');
    health.recordSuccess('a.azure-devices.net');
    health.recordFailure('a.azure-devices.net', 'error');
    expect(health.isHealthy('a.azure-devices.net')).toBe(true);
  });

  it('tries the hub again after the cool-down; a failed retry cools it down at once, a success heals it', () => {
    const { health, advance } = tracker({ failureThreshold: 2, coolDownMs: 10_000 });
    health.recordFailure('b.azure-devices.net', 'error');
    health.recordFailure('b.azure-devices.net', 'error');
    advance(9_999);
    expect(health.isHealthy('b.azure-devices.net')).toBe(false);
    advance(1);
    expect(health.isHealthy('b.azure-devices.net')).toBe(true);
    health.recordFailure('b.azure-devices.net', 'timeout');
    expect(health.isHealthy('b.azure-devices.net')).toBe(false);
    advance(10_000);
    health.recordSuccess('b.azure-devices.net');
    health.recordFailure('b.azure-devices.net', 'error');
    expect(health.isHealthy('b.azure-devices.net')).toBe(true);
  });

  it('never filters down to nothing: when every candidate cools down, all stay eligible', () => {
    const { health } = tracker({ failureThreshold: 1 });
    for (const h of hubs) health.recordFailure(h.hostName, 'error');
    expect(health.healthy(hubs)).toEqual(hubs);
    expect(health.healthy([])).toEqual([]);
  });

  it('snapshots health for the linked-hubs API, with a short message and no state for healthy hubs', () => {
    const { health } = tracker({ failureThreshold: 1, coolDownMs: 30_000 });
    health.recordFailure('c.net', 'timeout', 'x'.repeat(500));
    const [a, c] = health.snapshot(['a.azure-devices.net', 'c.net']);
    expect(a).toEqual({ hostName: 'a.azure-devices.net', healthy: true, consecutiveFailures: 0 });
    expect(c).toEqual({
      hostName: 'c.net',
      healthy: false,
      consecutiveFailures: 1,
      unhealthyUntil: '2024-01-01T00:00:30.000Z',
      lastFailure: { kind: 'timeout', at: '2024-01-01T00:00:00.000Z', message: 'x'.repeat(200) },
    });
  });
});

describe('trackHealth', () => {
  const linked: LinkedHub = {
    hostName: 'a.azure-devices.net',
    connectionString: 'HostName=a.azure-devices.net;SharedAccessKeyName=o;SharedAccessKey=AAAA',
    allocationWeight: 1,
    applyAllocationPolicy: true,
  };
  const failing = (err: Error): HubClientPool => ({
    for: () => ({
      upsertDevice: () => Promise.reject(err),
      applyTwin: () => Promise.resolve(),
      getTwin: () => Promise.resolve(undefined),
      deleteDevice: () => Promise.resolve(true),
    }),
  });

  it.each([
    ['401', new HubError(linked.hostName, 401, 'Unauthorized'), 'error'],
    ['403', new HubError(linked.hostName, 403, 'Forbidden'), 'error'],
    ['429', new HubError(linked.hostName, 429, 'Throttled'), 'error'],
    ['503', new HubError(linked.hostName, 503, 'Unavailable'), 'error'],
    ['a connection error', new Error('ECONNREFUSED'), 'error'],
    ['a timeout', new HubTimeout(linked.hostName, 'did not answer within 10 ms'), 'timeout'],
  ])('%s counts against the hub', async (_name, err, kind) => {
    const { health } = tracker({ failureThreshold: 1 });
    const client = trackHealth(failing(err), health).for(linked);
    await expect(
      client.upsertDevice({ deviceId: 'd', authentication: { type: 'certificateAuthority' }, iotEdge: false }),
    ).rejects.toBe(err);
    expect(health.isHealthy(linked.hostName)).toBe(false);
    expect(health.snapshot([linked.hostName])[0]?.lastFailure?.kind).toBe(kind);
  });

  it('a hub that answers (even 404 or 409) is healthy, and a success clears earlier failures', async () => {
    const { health } = tracker({ failureThreshold: 2 });
    health.recordFailure(linked.hostName, 'error');
    const conflict = new HubError(linked.hostName, 409, 'DeviceAlreadyExists');
    const client = trackHealth(failing(conflict), health).for(linked);
    await expect(
      client.upsertDevice({ deviceId: 'd', authentication: { type: 'certificateAuthority' }, iotEdge: false }),
    ).rejects.toBe(conflict);
    expect(health.snapshot([linked.hostName])[0]).toEqual({
      hostName: linked.hostName,
      healthy: true,
      consecutiveFailures: 0,
    });
    await client.applyTwin('d', {});
    expect(health.isHealthy(linked.hostName)).toBe(true);
  });
});
