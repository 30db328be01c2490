// The host process (forked by the driver): runs the real dev stack (the dev host serving the functions) against the
// driver's Azurite and a hub emulator in a child process of its own (hubProcess.ts), and answers the driver's IPC
// requests with its Table round-trip counter, RSS peak, CPU time and event-loop delay, and the hub's CPU time. It
// lives in its own process so the load generator's CPU and memory don't count as the host's.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { subscribe } from 'node:diagnostics_channel';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { tableRequestCounter } from '../shared/storage/tables';
import type { CertificateFiles, ExternalHub, Stack } from '../dev/stack';
import { startStack } from '../dev/stack';
import { DevTokenCredential } from '../dev/devCredential';
import type { HubReady, HubStart } from './hubProcess';
import type { DriverMessage, HostMessage, HostStats } from './hostProtocol';
import { devCaAgent } from './keyVault';
import { cpuSecondsOf } from './processes';

let stack: Stack | undefined;
let hub: ChildProcess | undefined;
let rssPeak = process.memoryUsage.rss();

const sample = () => {
  const rss = process.memoryUsage.rss();
  if (rss > rssPeak) rssPeak = rss;
  return rss;
};
setInterval(sample, 50).unref();
// Outgoing connections this process opens (to Azurite and to the hub): keep-alive should keep them few.
let connectionsOpened = 0;
subscribe('net.client.socket', () => connectionsOpened++);
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

function stats(): HostStats {
  const rssBytes = sample();
  const cpu = process.cpuUsage();
  const ms = (ns: number) => ns / 1e6;
  return {
    tableRequests: tableRequestCounter.count,
    outboxRequests: tableRequestCounter.outbox,
    rssBytes,
    rssPeakBytes: rssPeak,
    cpuMicros: cpu.user + cpu.system,
    hubCpuMicros: (cpuSecondsOf(hub?.pid) ?? 0) * 1e6,
    connectionsOpened,
    eventLoopDelayMs: { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) },
    events: {
      delivered: stack?.services.events.outbox.stats.delivered ?? 0,
      bestEffort: stack?.services.events.outbox.stats.bestEffort ?? 0,
      dropped: stack?.services.events.outbox.stats.dropped ?? 0,
    },
  };
}

function send(message: HostMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    await stack?.stop().catch(() => undefined);
    hub?.kill('SIGTERM');
  }
  // A normal exit, so `--cpu-prof` gets to write its profile.
  process.exit(code);
}

process.on('message', (raw: DriverMessage) => {
  if (raw.type === 'start') {
    const { options } = raw;
    startHub(options.certs)
      .then((external) =>
        startStack({
          tablesConnectionString: options.tablesConnectionString,
          certs: options.certs,
          settings: options.settings,
          stateDir: options.stateDir,
          hubs: { count: 0, external: [external] },
          // The driver plays App Service's front end too: X.509 devices "behind the front end" send their leaf in
          // X-ARR-ClientCert over pooled connections (scenarios.ts). Those with a TLS client certificate still win.
          trustClientCertHeader: true,
          ...(options.devTokenSecret
            ? {
                azure: {
                  credential: new DevTokenCredential(Buffer.from(options.devTokenSecret, 'base64')),
                  disableChallengeResourceVerification: true,
                  agent: devCaAgent(options.certs),
                },
              }
            : {}),
        }),
      )
      .then(
        (started) => {
          stack = started;
          rssPeak = process.memoryUsage.rss();
          void send({ type: 'ready', idScope: started.idScope, deviceEndpoint: started.deviceEndpoint });
        },
        (err: unknown) => {
          void send({ type: 'failed', message: err instanceof Error ? err.message : String(err) }).finally(() =>
            shutdown(1),
          );
        },
      );
    return;
  }
  switch (raw.command) {
    case 'resetWindow':
      rssPeak = process.memoryUsage.rss();
      loopDelay.reset();
      break;
    case 'invalidateCaches':
      stack?.services.invalidateCaches();
      break;
    case 'stop':
      void (stack?.stop() ?? Promise.resolve())
        .finally(() => {
          stack = undefined;
          return send({ type: 'reply', id: raw.id, stats: stats() });
        })
        .finally(() => shutdown(0));
      return;
    case 'stats':
      break;
  }
  void send({ type: 'reply', id: raw.id, stats: stats() });
});

/** Forks the hub emulator; it exits when this process does (its IPC channel closes). */
function startHub(certs: CertificateFiles): Promise<ExternalHub> {
  // Not the host's execArgv: a --cpu-prof of the host must not also profile the hub.
  const child = fork(join(__dirname, 'hubProcess.js'), [], { execArgv: [], stdio: ['ignore', 2, 2, 'ipc'] });
  hub = child;
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the hub emulator process exited (${code}) before it was ready`)));
    child.once('message', (message: HubReady) => {
      if (message.type === 'ready') resolve(message);
      else reject(new Error(`the hub emulator failed to start: ${message.message}`));
    });
    child.send({ serverCert: certs.serverCert, serverKey: certs.serverKey } satisfies HubStart);
  });
}

// The driver is gone (crashed or killed): don't outlive it.
process.on('disconnect', () => void shutdown(1));
process.on('SIGTERM', () => void shutdown(143));
process.on('SIGINT', () => void shutdown(130));
