// The driver's handle on the host process: fork it, start the stack in it, and ask it for its counters over IPC.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';

import type { DriverMessage, HostMessage, HostStartOptions, HostStats } from './hostProtocol';
import { exited, terminate, track } from './processes';

export interface HostProcess {
  idScope: string;
  deviceEndpoint: string;
  pid: number | undefined;
  stats(): Promise<HostStats>;
  /** Starts a new measurement window: RSS peak and event-loop delay start over. */
  resetWindow(): Promise<HostStats>;
  invalidateCaches(): Promise<HostStats>;
  /** Stops the stack and lets the process exit normally (so a CPU profile is written). */
  stop(): Promise<void>;
}

export interface HostProcessOptions extends HostStartOptions {
  /** Extra Node flags for the host, e.g. ['--cpu-prof', '--cpu-prof-dir=…']. */
  execArgv?: string[];
  timeoutMs?: number;
}

export async function startHostProcess(options: HostProcessOptions): Promise<HostProcess> {
  const { execArgv = [], timeoutMs = 30_000, ...start } = options;
  // The host's stdout goes to our stderr: with --json, stdout carries the result only.
  const child = fork(join(__dirname, 'hostProcess.js'), [], { execArgv, stdio: ['ignore', 2, 2, 'ipc'] });
  const stopGracefully = async () => {
    if (child.connected) {
      await Promise.race([request(child, 'stop').catch(() => undefined), exited(child, 10_000)]);
      await exited(child, 5_000);
    }
    await terminate(child);
  };
  track(child, stopGracefully);

  const ready = await new Promise<{ idScope: string; deviceEndpoint: string }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the host process did not start within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onMessage = (message: HostMessage) => {
      if (message.type === 'ready' || message.type === 'failed') {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (message.type === 'ready') resolve(message);
        else reject(new Error(`the host process failed to start: ${message.message}`));
      }
    };
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`the host process exited (${code}) before it was ready`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ type: 'start', options: start } satisfies DriverMessage);
  }).catch(async (err: unknown) => {
    await terminate(child);
    throw err;
  });

  return {
    ...ready,
    pid: child.pid,
    stats: () => request(child, 'stats'),
    resetWindow: () => request(child, 'resetWindow'),
    invalidateCaches: () => request(child, 'invalidateCaches'),
    stop: stopGracefully,
  };
}

let nextId = 1;

function request(
  child: ChildProcess,
  command: Extract<DriverMessage, { type: 'request' }>['command'],
): Promise<HostStats> {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const onMessage = (message: HostMessage) => {
      if (message.type !== 'reply' || message.id !== id) return;
      cleanup();
      resolve(message.stats);
    };
    const onExit = () => {
      cleanup();
      reject(new Error(`the host process exited while answering '${command}'`));
    };
    const cleanup = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ type: 'request', id, command } satisfies DriverMessage, (err) => {
      if (err) {
        cleanup();
        reject(err);
      }
    });
  });
}
