// The IPC messages between the driver and the host process (bench/hostProcess.ts).
import type { CertificateFiles } from '../dev/stack';

export interface HostStartOptions {
  tablesConnectionString: string;
  certs: CertificateFiles;
  /** DPS_* settings for the functions (scope, master key, table prefix, budgets). */
  settings: Record<string, string>;
  stateDir: string;
  /** base64 secret of a DevTokenCredential: the host uses it (Key Vault double) instead of DefaultAzureCredential. */
  devTokenSecret?: string;
}

export interface HostStats {
  /** The host's `tableRequestCounter.count`: every Table Storage round trip, retries included. */
  tableRequests: number;
  /** Of which to the events outbox's pending index (marker writes and deletes, group-committed). */
  outboxRequests: number;
  rssBytes: number;
  /** Highest RSS sampled (every 50 ms) since the last `resetWindow`. */
  rssPeakBytes: number;
  /** process.cpuUsage() user + system, microseconds since the host started. */
  cpuMicros: number;
  /** CPU (user + system, microseconds) of the hub emulator's process, a child of the host; 0 where /proc is absent. */
  hubCpuMicros: number;
  /** Outgoing TCP connections opened since the host started (Table Storage and hub), via diagnostics_channel. */
  connectionsOpened: number;
  /** Event-loop delay since the last `resetWindow`, ms: how long ready work waited for the host's single thread. */
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  /** The outbox's counters (shared/events/outbox.ts): events the sink accepted, best-effort ones published/dropped. */
  events: { delivered: number; bestEffort: number; dropped: number };
}

export type DriverMessage =
  | { type: 'start'; options: HostStartOptions }
  | { type: 'request'; id: number; command: 'stats' | 'resetWindow' | 'invalidateCaches' | 'stop' };

export type HostMessage =
  | { type: 'ready'; idScope: string; deviceEndpoint: string }
  | { type: 'failed'; message: string }
  | { type: 'reply'; id: number; stats: HostStats };
