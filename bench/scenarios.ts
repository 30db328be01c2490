// The scenarios, each run once per concurrency level against the running host, and the planned ones (extension
// points, printed as "not available yet" until the feature they measure exists).
import type { AzuriteProcess } from './azuriteProcess';
import type { Device, DeviceClient, PollOutcome, RegisterOutcome, TpmDevice } from './driver';
import type { HostProcess } from './hostControl';
import type { Window } from './measure';
import { measureWindow } from './measure';
import { runPool } from './pool';
import { progress } from './progress';
import type { BenchWebhook } from './webhook';
import type { LatencySummary } from './stats';
import { rate, summarize } from './stats';

export interface ScenarioResult {
  scenario: string;
  unit: Scenario['unit'];
  concurrency: number;
  operations: number;
  failed: number;
  wallMs: number;
  /** Successful operations per second. */
  perSecond: number;
  /** Registrations: the PUT's latency. Polls: the GET's. */
  latencyMs: LatencySummary;
  /** Registrations: from the PUT until a terminal status, polls included. */
  endToEndMs?: LatencySummary;
  pollsPerDevice: number;
  tableRequestsPerOp: number;
  /** Of which to the events outbox (markers: group-committed, off the device's path). */
  outboxRequestsPerOp: number;
  /** Events delivered per second over the run (its own and any still being sent from before); 0 with events off. */
  eventsPerSecond: number;
  /** Whether the host recorded events (DPS_EVENTS); the same scenarios run again with them off for the ratio. */
  events: boolean;
  hostRssPeakMb: number;
  hostCpuMsPerOp: number;
  /** New outgoing connections the host opened during the run (to Azurite and the hub). */
  hostConnectionsOpened: number;
  /** The host's event-loop delay over the run (p99, max), ms. */
  hostLoopDelayMs: { p99: number; max: number };
  /** Share of one core each process used over the window; `other`: the rest of the machine (noise). */
  cpuPercent: { host: number; hub: number; azurite?: number; driver: number; other?: number };
  /** The first few distinct failure messages. */
  errors: string[];
  /**
   * Custom allocation only: the webhook's calls, the time it held each, and its share of the PUT: (this scenario's
   * PUT p50 − the group scenario's at the same level) ÷ this PUT p50 — what calling the webhook adds, host side
   * included (run.ts fills it in).
   */
  webhook?: { calls: number; heldMs: LatencySummary; shareOfPutP50?: number };
}

export interface LevelContext {
  concurrency: number;
  client: DeviceClient;
  host: HostProcess;
  azurite: AzuriteProcess;
  /** Devices with an individual enrollment, not registered before this level. */
  individual: readonly Device[];
  /** Devices of the symmetric-key group, not registered before this level. */
  group: readonly Device[];
  /** TPM devices (software TPMs, bench/softTpm.ts) with an individual enrollment, not registered before. */
  tpm: readonly TpmDevice[];
  /** Devices of the X.509 group (leaf ← intermediate ← root), each with its own TLS client certificate. */
  x509: readonly Device[];
  /** More devices of that group, whose leaf the driver forwards in X-ARR-ClientCert like App Service's front end. */
  x509Forwarded: readonly Device[];
  /** Devices of the custom-allocation group (its webhook: `webhook`), not registered before this level. */
  custom: readonly Device[];
  webhook: BenchWebhook;
  /** Registration ID → the operation ID of its latest registration at this level. */
  operations: Map<string, string>;
}

export interface Scenario {
  name: string;
  /** What one operation is. */
  unit: 'registration' | 'poll';
  run(ctx: LevelContext): Promise<ScenarioResult>;
}

/** Both over a 3-level chain (leaf ← intermediate ← root). See bench/README.md for which one the target refers to. */
export const X509_SCENARIO = 'X.509 group, TLS at dev host';
export const X509_FORWARDED_SCENARIO = 'X.509 group, behind front end';
export const SYMMETRIC_GROUP_SCENARIO = 'symmetric-key group';
export const CUSTOM_SCENARIO = 'custom allocation (local webhook)';

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'symmetric-key individual',
    unit: 'registration',
    run: (ctx) => registrations('symmetric-key individual', ctx.individual, ctx),
  },
  {
    name: 'symmetric-key group',
    unit: 'registration',
    run: (ctx) => registrations('symmetric-key group', ctx.group, ctx),
  },
  {
    // The devices the first scenario just assigned register again (same hub: reprovisionedToInitialAssignment).
    name: 're-registration (assigned)',
    unit: 'registration',
    run: (ctx) => registrations('re-registration (assigned)', ctx.individual, ctx),
  },
  { name: 'poll finished operation', unit: 'poll', run: (ctx) => finishedPolls('poll finished operation', ctx) },
  {
    // Challenge PUT (401 with an activation blob), the device opens it, then the signed PUT and polls: one operation.
    name: 'TPM individual',
    unit: 'registration',
    run: (ctx) => registrations('TPM individual', ctx.tpm, ctx, (d) => ctx.client.registerTpm(d as TpmDevice)),
  },
  {
    // A fresh TLS handshake with a client certificate per device (as real devices), and the chain verified.
    name: X509_SCENARIO,
    unit: 'registration',
    run: (ctx) => registrations(X509_SCENARIO, ctx.x509, ctx),
  },
  {
    // The same registrations as Open DPS's functions see them in Azure: App Service's front end has done the TLS
    // handshake with the device and forwards the leaf in X-ARR-ClientCert over its own pooled connections.
    name: X509_FORWARDED_SCENARIO,
    unit: 'registration',
    run: (ctx) => registrations(X509_FORWARDED_SCENARIO, ctx.x509Forwarded, ctx),
  },
  {
    // A symmetric-key group with allocationPolicy custom: every registration calls the local webhook once.
    name: CUSTOM_SCENARIO,
    unit: 'registration',
    run: async (ctx) => {
      ctx.webhook.take();
      const result = await registrations(CUSTOM_SCENARIO, ctx.custom, ctx);
      return { ...result, webhook: ctx.webhook.take() };
    },
  },
];

export interface PlannedScenario {
  name: string;
  unit: string;
  needs: string;
}

/**
 * EXTENSION POINTS. Scenarios to measure once their features exist; until then they are reported as "not available
 * yet", never faked. To add one: implement a `Scenario` (its `run` gets a fresh LevelContext; seed what it needs in
 * run.ts's seeding step, e.g. an X.509 group with `dev/certs.ts` createCa for root and intermediate, devices as
 * TLS client certificates on a DeviceClient of their own), append it to SCENARIOS and drop its entry here. (The
 * service API bulk create was such an entry; it now runs, once per run, from bench/bulkCreate.ts.)
 */
export const PLANNED: readonly PlannedScenario[] = [];

async function registrations(
  name: string,
  devices: readonly Device[],
  ctx: LevelContext,
  register: (d: Device) => Promise<RegisterOutcome> = (d) => ctx.client.register(d),
): Promise<ScenarioResult> {
  const outcomes: RegisterOutcome[] = [];
  const bar = progress(`${name} c=${ctx.concurrency}`, devices.length);
  const { value: wallMs, window } = await measureWindow(ctx.host, ctx.azurite, () =>
    runPool(devices.length, ctx.concurrency, async (i) => {
      const d = devices[i];
      if (!d) return;
      const outcome = await register(d);
      outcomes.push(outcome);
      if (outcome.operationId) ctx.operations.set(d.registrationId, outcome.operationId);
      bar.tick();
    }),
  );
  const result = summarizeRun(name, 'registration', ctx.concurrency, wallMs, window, outcomes, {
    latency: outcomes.map((o) => o.putMs),
    endToEnd: outcomes.map((o) => o.totalMs),
    polls: outcomes.reduce((sum, o) => sum + o.polls, 0),
  });
  bar.done(`${result.perSecond.toFixed(0)}/s, PUT p50 ${result.latencyMs.p50.toFixed(1)} ms, ${result.failed} failed`);
  return result;
}

async function finishedPolls(name: string, ctx: LevelContext): Promise<ScenarioResult> {
  const outcomes: PollOutcome[] = [];
  const bar = progress(`${name} c=${ctx.concurrency}`, ctx.individual.length);
  const { value: wallMs, window } = await measureWindow(ctx.host, ctx.azurite, () =>
    runPool(ctx.individual.length, ctx.concurrency, async (i) => {
      const d = ctx.individual[i];
      if (!d) return;
      const operationId = ctx.operations.get(d.registrationId);
      outcomes.push(
        operationId === undefined
          ? { ok: false, ms: 0, error: 'no operation to poll (its registration failed)' }
          : await ctx.client.operationStatus(d, operationId),
      );
      bar.tick();
    }),
  );
  const result = summarizeRun(name, 'poll', ctx.concurrency, wallMs, window, outcomes, {
    latency: outcomes.filter((o) => o.ok).map((o) => o.ms),
    polls: outcomes.length,
  });
  bar.done(`${result.perSecond.toFixed(0)}/s, GET p50 ${result.latencyMs.p50.toFixed(1)} ms, ${result.failed} failed`);
  return result;
}

function summarizeRun(
  scenario: string,
  unit: Scenario['unit'],
  concurrency: number,
  wallMs: number,
  window: Window,
  outcomes: readonly { ok: boolean; error?: string }[],
  samples: { latency: number[]; endToEnd?: number[]; polls: number },
): ScenarioResult {
  const operations = outcomes.length;
  const ok = outcomes.filter((o) => o.ok).length;
  const per = (n: number) => (operations > 0 ? n / operations : 0);
  const percentOfCore = (ms: number) => (wallMs > 0 ? (100 * ms) / wallMs : 0);
  return {
    scenario,
    unit,
    concurrency,
    operations,
    failed: operations - ok,
    wallMs,
    perSecond: rate(ok, wallMs),
    latencyMs: summarize(samples.latency),
    ...(samples.endToEnd ? { endToEndMs: summarize(samples.endToEnd) } : {}),
    pollsPerDevice: per(samples.polls),
    tableRequestsPerOp: per(window.tableRequests),
    outboxRequestsPerOp: per(window.outboxRequests),
    eventsPerSecond: rate(window.eventsDelivered, wallMs),
    events: true,
    hostRssPeakMb: window.hostRssPeakMb,
    hostCpuMsPerOp: per(window.hostCpuMs),
    hostConnectionsOpened: window.hostConnectionsOpened,
    hostLoopDelayMs: { p99: window.hostLoopDelayMs.p99, max: window.hostLoopDelayMs.max },
    cpuPercent: {
      host: percentOfCore(window.hostCpuMs),
      hub: percentOfCore(window.hubCpuMs),
      ...(window.azuriteCpuMs !== undefined ? { azurite: percentOfCore(window.azuriteCpuMs) } : {}),
      driver: percentOfCore(window.driverCpuMs),
      ...(window.otherCpuMs !== undefined ? { other: percentOfCore(window.otherCpuMs) } : {}),
    },
    errors: [...new Set(outcomes.flatMap((o) => (o.ok || !o.error ? [] : [o.error])))].slice(0, 5),
  };
}
