// A slow but correct IoT hub for race tests: the dev hub emulator behind a proxy that holds every device PUT for
// `delayMs` before passing it on (other calls pass at once), so a hub step stays in flight while a racer runs.
import { readFileSync } from 'node:fs';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';

import { inject } from 'vitest';

import type { HubEmulator } from '../../dev/hubEmulator';
import { startHubEmulator } from '../../dev/hubEmulator';

export interface DelayedHub {
  /** The emulator behind the proxy (its registry is what the hub holds). */
  hub: HubEmulator;
  /** The proxy's host name: the one to link. */
  hostName: string;
  connectionString: string;
  /** Device PUTs received so far (held or passed on). */
  puts(): number;
  close(): Promise<void>;
}

export async function startDelayedHub(delayMs: number): Promise<DelayedHub> {
  const certs = inject('certs');
  const tls = { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') };
  const ca = readFileSync(certs.caCert);
  let target = 0;
  let puts = 0;
  const proxy = createServer(tls, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const held = req.method === 'PUT' && (req.url ?? '').startsWith('/devices/');
      if (held) puts++;
      setTimeout(
        () => {
          const upstream = request(
            { host: 'localhost', port: target, method: req.method, path: req.url, headers: req.headers, ca },
            (answer) => {
              res.writeHead(answer.statusCode ?? 502, answer.headers);
              answer.pipe(res);
            },
          );
          upstream.on('error', () => res.destroy());
          upstream.end(Buffer.concat(chunks));
        },
        held ? delayMs : 0,
      );
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, 'localhost', resolve));
  const hostName = `localhost:${(proxy.address() as AddressInfo).port}`;
  // The emulator checks that tokens name its host: it answers as the proxy's host name.
  const hub = await startHubEmulator({ tls, hostName });
  target = hub.port;
  return {
    hub,
    hostName,
    connectionString: hub.connectionString,
    puts: () => puts,
    close: async () => {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await hub.close();
    },
  };
}
