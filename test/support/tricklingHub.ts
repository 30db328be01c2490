// A hostile IoT hub for tests: answers every request with headers at once, then dribbles one body byte at a time, so
// an idle timeout never fires. It counts requests and how long each connection was held open.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';

import { inject } from 'vitest';

export interface TricklingHub {
  hostName: string;
  connectionString: string;
  /** Requests received, by `METHOD path`. */
  requests: string[];
  /** How long each finished request was held before the client went away, ms. */
  heldMs: number[];
  close(): Promise<void>;
}

export async function startTricklingHub(intervalMs = 100): Promise<TricklingHub> {
  const certs = inject('certs');
  const requests: string[] = [];
  const heldMs: number[] = [];
  const server = createServer(
    { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') },
    (req, res) => {
      requests.push(`${req.method ?? ''} ${(req.url ?? '').split('?')[0] ?? ''}`);
      const start = Date.now();
      req.resume();
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000000' });
      res.write('{');
      const timer = setInterval(() => res.write(' '), intervalMs);
      res.on('close', () => {
        clearInterval(timer);
        heldMs.push(Date.now() - start);
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, 'localhost', resolve));
  const { port } = server.address() as AddressInfo;
  const hostName = `localhost:${port}`;
  const key = Buffer.alloc(32, 7).toString('base64');
  return {
    hostName,
    connectionString: `HostName=${hostName};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
    requests,
    heldMs,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
