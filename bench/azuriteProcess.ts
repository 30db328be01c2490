// Azurite Table as a separate process (the CLI, in memory), so its event loop neither helps nor hurts the host's.
// It is tied to the driver by an IPC channel (see azuriteGuard.ts).
import { spawn } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { tablesConnectionString } from '../dev/azurite';
import { cpuSecondsOf, terminate, track } from './processes';

export interface AzuriteProcess {
  url: string;
  connectionString: string;
  pid: number | undefined;
  /** CPU seconds used so far (Linux), for "where does the time go". */
  cpuSeconds(): number | undefined;
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

export async function startAzuriteProcess(root: string, timeoutMs = 20_000): Promise<AzuriteProcess> {
  const port = await freePort();
  // Even in memory the CLI wants a writable working folder (its location defaults to the cwd, and --location is
  // refused together with --inMemoryPersistence): run it in a throwaway one.
  const location = mkdtempSync(join(tmpdir(), 'open-dps-bench-azurite-'));
  const bin = realpathSync(join(root, 'node_modules', '.bin', 'azurite-table'));
  const args = ['--inMemoryPersistence', '--silent', '--disableTelemetry', '--skipApiVersionCheck'];
  args.push('--tableHost', HOST, '--tablePort', String(port));
  const guard = join(__dirname, 'azuriteGuard.js');
  const child = spawn(process.execPath, ['--require', guard, bin, ...args], {
    cwd: location,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  const stop = async () => {
    await terminate(child);
    rmSync(location, { recursive: true, force: true });
  };
  track(child, stop);

  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(port))) {
    if (child.exitCode !== null) throw new Error(`azurite-table exited with ${child.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`azurite-table did not accept connections on ${HOST}:${port} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const url = `http://${HOST}:${port}`;
  return {
    url,
    connectionString: tablesConnectionString(url),
    pid: child.pid,
    cpuSeconds: () => cpuSecondsOf(child.pid),
    stop,
  };
}

/** A port that was free a moment ago (the OS picks it; Azurite's CLI cannot report a port 0 choice). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
