// The hub client's wall-clock deadline against a hub that trickles bytes (an idle timeout would never fire).
import { readFileSync } from 'node:fs';
import { Agent, createServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

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

describe('hub call on a pooled connection the hub has just closed', () => {
  it('is sent once more on a new connection instead of failing the registration', async () => {
    const certs = inject('certs');
    // A hub (or a load balancer in front of it) that closes each connection when a second request arrives on it:
    // what a client sees when it reuses a keep-alive socket the other side closed a moment before.
    const served = new WeakMap<Socket, number>();
    let connections = 0;
    let answered = 0;
    const server = createServer(
      { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') },
      (req, res) => {
        const n = (served.get(req.socket) ?? 0) + 1;
        served.set(req.socket, n);
        if (n > 1) {
          req.socket.destroy();
          return;
        }
        answered++;
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"tags":{"n":1}}');
      },
    );
    server.on('secureConnection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, 'localhost', resolve));
    const agent = new Agent({ keepAlive: true, ca: readFileSync(certs.caCert, 'utf8') });
    try {
      const { port } = server.address() as AddressInfo;
      const key = Buffer.alloc(32, 7).toString('base64');
      const connection = parseHubConnectionString(
        `HostName=localhost:${port};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
      );
      if (!connection) throw new Error('bad connection string');
      const client = new HubRegistryClient(connection, agent, 5000);
      expect(await client.getTwin('dev-1')).toEqual({ tags: { n: 1 } });
      expect(await client.getTwin('dev-1')).toEqual({ tags: { n: 1 } }); // the pooled socket: reset, sent again
      expect(answered).toBe(2);
      expect(connections).toBe(2);
    } finally {
      agent.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
