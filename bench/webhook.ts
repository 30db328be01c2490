// A local custom-allocation webhook for the benchmark, in the driver process: answers at once with the first
// candidate hub and a small payload, and times how long it held each call (its share of a registration's PUT).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { summarize } from './stats';
import type { LatencySummary } from './stats';

export interface BenchWebhook {
  url: string;
  /** Calls answered and the time the webhook held each (first byte in → answer sent), since the last reset. */
  take(): { calls: number; heldMs: LatencySummary };
  close(): Promise<void>;
}

export async function startBenchWebhook(): Promise<BenchWebhook> {
  let held: number[] = [];
  const server = createServer((req, res) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { linkedHubs?: string[] };
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ iotHubHostName: body.linkedHubs?.[0] ?? '', payload: { bench: true } }));
      held.push(performance.now() - started);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/allocate?code=bench`,
    take: () => {
      const taken = held;
      held = [];
      return { calls: taken.length, heldMs: summarize(taken) };
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
