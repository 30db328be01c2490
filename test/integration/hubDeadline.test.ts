// The hub client's wall-clock deadline against a hub that trickles bytes (an idle timeout would never fire).
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';

import { parseHubConnectionString } from '../../shared/domain/linkedHub';
import { HubRegistryClient } from '../../shared/hubs/registryClient';
import type { TricklingHub } from '../support/tricklingHub';
import { startTricklingHub } from '../support/tricklingHub';

describe('hub call deadline', () => {
  let hub: TricklingHub;
  let agent: Agent;

  beforeAll(async () => {
    hub = await startTricklingHub(50);
    agent = new Agent({ keepAlive: true, ca: readFileSync(inject('certs').caCert, 'utf8') });
  });

  afterAll(async () => {
    agent.destroy();
    await hub.close();
  });

  const client = (deadlineMs: number) => {
    const connection = parseHubConnectionString(hub.connectionString);
    if (!connection) throw new Error('bad connection string');
    return new HubRegistryClient(connection, agent, deadlineMs);
  };

  it('a call to a hub that trickles a byte every 50 ms fails at its overall deadline and drops the connection', async () => {
    const started = Date.now();
    await expect(client(400).getTwin('dev-1')).rejects.toThrow(/did not answer within 400 ms/);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(390);
    expect(elapsed).toBeLessThan(2000);
    await expect.poll(() => hub.heldMs.length).toBe(1);
    expect(hub.heldMs[0]).toBeLessThan(2000);
  });

  it("the caller's signal abandons a call before its own deadline", async () => {
    const started = Date.now();
    const identity = {
      deviceId: 'dev-2',
      authentication: { type: 'certificateAuthority' as const },
      iotEdge: false,
    };
    await expect(client(10_000).upsertDevice(identity, false, { signal: AbortSignal.timeout(200) })).rejects.toThrow(
      /abandoned/,
    );
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
