// The IoT hub registry emulator in a process of its own (forked by the host process): a real hub is a remote
// service, so its TLS and JSON work must neither count as the provisioning host's CPU and memory nor wait for the
// host's event loop. It exits with its parent's IPC channel.
import { readFileSync } from 'node:fs';

import type { HubEmulator } from '../dev/hubEmulator';
import { startHubEmulator } from '../dev/hubEmulator';

export interface HubStart {
  serverCert: string;
  serverKey: string;
}

export type HubReady =
  { type: 'ready'; hostName: string; connectionString: string } | { type: 'failed'; message: string };

let hub: HubEmulator | undefined;

process.once('message', (start: HubStart) => {
  void startHubEmulator({
    tls: { cert: readFileSync(start.serverCert, 'utf8'), key: readFileSync(start.serverKey, 'utf8') },
  })
    .then(
      (started): HubReady => {
        hub = started;
        return { type: 'ready', hostName: started.hostName, connectionString: started.connectionString };
      },
      (err: unknown): HubReady => ({ type: 'failed', message: err instanceof Error ? err.message : String(err) }),
    )
    .then((message) => process.send?.(message));
});

const shutdown = (code: number) => void (hub?.close() ?? Promise.resolve()).finally(() => process.exit(code));
process.on('disconnect', () => shutdown(0));
process.on('SIGTERM', () => shutdown(143));
process.on('SIGINT', () => shutdown(130));
