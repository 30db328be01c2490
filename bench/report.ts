// The printed result: plain-text tables for people, one JSON document for machines.
import type { BulkCreateResult } from './bulkCreate';
import type { CeilingResult } from './tablesCeiling';
import type { ColdImportResult } from './coldImport';
import type { PlannedScenario, ScenarioResult } from './scenarios';
import { SYMMETRIC_GROUP_SCENARIO, X509_FORWARDED_SCENARIO, X509_SCENARIO } from './scenarios';
import type { X509CpuResult } from './x509Cpu';

export interface BenchReport {
  meta: {
    startedAt: string;
    node: string;
    cpus: string;
    devicesPerScenario: number;
    concurrency: number[];
    warmup: number;
    bulk: number;
    registerBudgetMs: number | undefined;
    totalSeconds: number;
  };
  scenarios: ScenarioResult[];
  ceiling: CeilingResult[];
  /**
   * Per concurrency: each scenario's rate ÷ raw upserts/s (registrations) or ÷ raw gets/s (polls); and X.509 group
   * registrations ÷ symmetric-key group registrations of the same run.
   */
  ratios: { concurrency: number; scenario: string; versus: 'upsert' | 'get' | 'symmetric-key group'; ratio: number }[];
  /** CPU time of one X.509 chain verification in the driver process; null when skipped. */
  x509Verification: X509CpuResult | null;
  /**
   * Per concurrency and registration scenario: registrations/s with events ÷ without, from the events comparison (both
   * hosts up, the devices in slices run in alternating order): of the totals, all registrations ÷ all their time.
   */
  eventsRatios: {
    concurrency: number;
    scenario: string;
    ratio: number;
    /** Slices per side. */
    slices: number;
    /** Each slice's own ratio, in run order. */
    sliceRatios: number[];
    /** Device-path Table requests per registration (outbox excluded), with events and without. */
    tripsOn: number;
    tripsOff: number;
    /** Outbox requests per registration with events (marker writes and deletes, group-committed). */
    outboxOn: number;
  }[];
  /** The service-API bulk create; null when skipped (--bulk 0). */
  bulkCreate: BulkCreateResult | null;
  coldImport: ColdImportResult | null;
  notAvailable: PlannedScenario[];
  failed: number;
}

/** 'cpu other' above this (% of one core) marks a scenario as measured on a busy machine. */
const NOISY_OTHER_CPU_PERCENT = 25;

export function eventsRatios(scenarios: readonly ScenarioResult[]): BenchReport['eventsRatios'] {
  const firsts = scenarios.filter(
    (s, i) =>
      s.events &&
      scenarios.findIndex((x) => x.events && x.scenario === s.scenario && x.concurrency === s.concurrency) === i,
  );
  return firsts.flatMap((first) => {
    const same = (events: boolean) =>
      scenarios.filter(
        (s) => s.events === events && s.scenario === first.scenario && s.concurrency === first.concurrency,
      );
    const on = same(true);
    const off = same(false);
    if (off.length === 0) return [];
    const rate = (runs: ScenarioResult[]) => {
      const seconds = runs.reduce((t, s) => t + (s.perSecond > 0 ? s.operations / s.perSecond : 0), 0);
      return seconds > 0 ? runs.reduce((n, s) => n + s.operations, 0) / seconds : 0;
    };
    const mean = (runs: ScenarioResult[], f: (s: ScenarioResult) => number) =>
      runs.reduce((t, s) => t + f(s), 0) / runs.length;
    const offRate = rate(off);
    const sliceRatios = on.flatMap((s, i) => {
      const o = off[i];
      return o && o.perSecond > 0 ? [s.perSecond / o.perSecond] : [];
    });
    return [
      {
        concurrency: first.concurrency,
        scenario: first.scenario,
        ratio: offRate > 0 ? rate(on) / offRate : 0,
        slices: Math.min(on.length, off.length),
        sliceRatios,
        tripsOn: mean(on, (s) => s.tableRequestsPerOp - s.outboxRequestsPerOp),
        tripsOff: mean(off, (s) => s.tableRequestsPerOp - s.outboxRequestsPerOp),
        outboxOn: mean(on, (s) => s.outboxRequestsPerOp),
      },
    ];
  });
}

export function ratios(scenarios: readonly ScenarioResult[], ceiling: readonly CeilingResult[]): BenchReport['ratios'] {
  return scenarios.flatMap((s) => {
    if (!s.events) return [];
    const c = ceiling.find((x) => x.concurrency === s.concurrency);
    if (!c) return [];
    const versus = s.unit === 'poll' ? ('get' as const) : ('upsert' as const);
    const raw = versus === 'get' ? c.get.perSecond : c.upsert.perSecond;
    const result: BenchReport['ratios'] = [
      { concurrency: s.concurrency, scenario: s.scenario, versus, ratio: raw > 0 ? s.perSecond / raw : 0 },
    ];
    const symmetric = scenarios.find(
      (x) => x.events && x.scenario === SYMMETRIC_GROUP_SCENARIO && x.concurrency === s.concurrency,
    );
    const x509 = s.scenario === X509_SCENARIO || s.scenario === X509_FORWARDED_SCENARIO;
    if (x509 && symmetric && symmetric.perSecond > 0) {
      const ratio = s.perSecond / symmetric.perSecond;
      result.push({ concurrency: s.concurrency, scenario: s.scenario, versus: 'symmetric-key group', ratio });
    }
    return result;
  });
}

/** One file by name; several as "N files in <dir>" (the JSON output lists them). */
const filesOf = (files: readonly string[]): string =>
  files.length === 1 ? (files[0] ?? '') : `${files.length} files in ${files[0]?.replace(/\/[^/]*$/, '') ?? ''}`;

const f = (n: number | undefined, digits = 1): string => (n === undefined ? '-' : n.toFixed(digits));

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  // The first column is text (left-aligned); the rest are numbers (right-aligned).
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function formatText(report: BenchReport): string {
  const { meta } = report;
  const out: string[] = [];
  out.push(
    `Open DPS benchmark — ${meta.devicesPerScenario} devices per scenario and level, concurrency ${meta.concurrency.join(',')}, ` +
      `warm-up ${meta.warmup}, register budget ${meta.registerBudgetMs ?? 'default'} ms`,
    `${meta.node}, ${meta.cpus}; ${meta.startedAt}; total ${meta.totalSeconds.toFixed(1)} s`,
    'Processes: driver (this) · host (dev host via startStack; a fresh one with its own tables per level) · its hub',
    'emulator (a child of the host) · Azurite Table CLI (in memory, shared by the whole run).',
    '',
    'Device traffic (latency of the PUT for registrations, of the GET for polls; cpu = % of one core over the run;',
    "'other' = the rest of the machine, other processes and steal: high values mean a noisy run)",
  );
  out.push(
    table(
      [
        'scenario',
        'conc',
        'ops',
        'fail',
        'ops/s',
        'events/s',
        'p50 ms',
        'p95 ms',
        'p99 ms',
        'polls/dev',
        'trips/op',
        'outbox/op',
        'host MB',
        'host ms/op',
        'loop p99/max',
        'host conns',
        'cpu host',
        'cpu hub',
        'cpu azurite',
        'cpu driver',
        'cpu other',
      ],
      report.scenarios.map((s) => [
        s.events ? s.scenario : `${s.scenario} [events off]`,
        String(s.concurrency),
        String(s.operations),
        String(s.failed),
        f(s.perSecond, 0),
        s.events ? f(s.eventsPerSecond, 0) : '-',
        f(s.latencyMs.p50),
        f(s.latencyMs.p95),
        f(s.latencyMs.p99),
        s.unit === 'poll' ? '-' : f(s.pollsPerDevice, 2),
        f(s.tableRequestsPerOp, 2),
        f(s.outboxRequestsPerOp, 2),
        f(s.hostRssPeakMb, 0),
        f(s.hostCpuMsPerOp, 2),
        `${f(s.hostLoopDelayMs.p99, 0)}/${f(s.hostLoopDelayMs.max, 0)}`,
        String(s.hostConnectionsOpened),
        `${f(s.cpuPercent.host, 0)}%`,
        `${f(s.cpuPercent.hub, 0)}%`,
        s.cpuPercent.azurite === undefined ? '-' : `${f(s.cpuPercent.azurite, 0)}%`,
        `${f(s.cpuPercent.driver, 0)}%`,
        s.cpuPercent.other === undefined ? '-' : `${f(s.cpuPercent.other, 0)}%`,
      ]),
    ),
  );

  if (report.eventsRatios.length > 0) {
    out.push(
      '',
      'Events: registrations/s with events ÷ the same scenario on a host with DPS_EVENTS=off (target ≥ 0.85), both hosts',
      'up, the devices in slices run on each in alternating order (on off, off on, …): the ratio of the totals, each',
      "slice's own beside it; Table requests per registration on the device path (outbox excluded) with and without",
      "events, and to the outbox's pending index with events (marker write + delete, group-committed)",
    );
    out.push(
      table(
        ['scenario', 'conc', 'on ÷ off', 'slices', 'path trips on', 'path trips off', 'outbox on'],
        report.eventsRatios.map((r) => [
          r.scenario,
          String(r.concurrency),
          f(r.ratio, 2),
          r.sliceRatios.map((x) => f(x, 2)).join(' '),
          f(r.tripsOn, 2),
          f(r.tripsOff, 2),
          f(r.outboxOn, 2),
        ]),
      ),
    );
  }

  const custom = report.scenarios.filter((s) => s.webhook);
  if (custom.length > 0) {
    out.push(
      '',
      "Custom allocation: the local webhook's calls, the time it held each (p50), and its share of the PUT = (custom PUT",
      'p50 − group PUT p50) ÷ custom PUT p50, host-side call included',
    );
    out.push(
      table(
        ['scenario', 'conc', 'regs/s', 'calls', 'held p50 ms', 'PUT p50 ms', 'webhook share'],
        custom.map((s) => [
          s.scenario,
          String(s.concurrency),
          f(s.perSecond, 0),
          String(s.webhook?.calls ?? 0),
          f(s.webhook?.heldMs.p50, 2),
          f(s.latencyMs.p50),
          s.webhook?.shareOfPutP50 === undefined ? '-' : `${f(100 * s.webhook.shareOfPutP50, 0)}%`,
        ]),
      ),
    );
  }
  out.push(
    '',
    'Storage ceiling, same run and concurrency, raw @azure/data-tables: upsert/get of small entities on a table of its own,',
    'after a warm-up; upserts/s and gets/s are the median of several interleaved runs (runs: each rate; spread:',
    "(max − min) ÷ median). query = a registration's device-partition query on the host's Devices table (Azurite scans it)",
  );
  out.push(
    table(
      [
        'conc',
        'upserts/s',
        'runs',
        'spread',
        'p50 ms',
        'p99 ms',
        'gets/s',
        'runs',
        'spread',
        'p50 ms',
        'p99 ms',
        'queries/s',
        'p50 ms',
        'p99 ms',
        'Devices rows',
      ],
      report.ceiling.map((c) => [
        String(c.concurrency),
        f(c.upsert.perSecond, 0),
        c.upsert.runs.map((r) => f(r, 0)).join('/'),
        `${f(c.upsert.spread * 100, 0)}%`,
        f(c.upsert.latencyMs.p50),
        f(c.upsert.latencyMs.p99),
        f(c.get.perSecond, 0),
        c.get.runs.map((r) => f(r, 0)).join('/'),
        `${f(c.get.spread * 100, 0)}%`,
        f(c.get.latencyMs.p50),
        f(c.get.latencyMs.p99),
        f(c.query.perSecond, 0),
        f(c.query.latencyMs.p50),
        f(c.query.latencyMs.p99),
        String(c.devicesTableRows),
      ]),
    ),
  );

  const names = [...new Set(report.ratios.map((r) => `${r.scenario} ÷ ${r.versus}`))];
  if (names.length > 0) {
    out.push('', 'Ratios: scenario ops/s ÷ raw ops/s (registrations vs upserts, polls vs gets)');
    out.push(
      table(
        ['conc', ...names],
        [...new Set(report.ratios.map((r) => r.concurrency))].map((c) => [
          String(c),
          ...names.map((n) => {
            const r = report.ratios.find((x) => x.concurrency === c && `${x.scenario} ÷ ${x.versus}` === n);
            return r ? f(r.ratio, 2) : '-';
          }),
        ]),
      ),
    );
  }

  out.push('');
  const bulk = report.bulkCreate;
  if (bulk) {
    const c16 = report.ceiling.find((c) => c.concurrency === 16);
    out.push('Service API: one bulk create (POST /enrollments, mode create; the service writes 16 at a time)');
    out.push(
      table(
        [
          'enrollments',
          'fail',
          'KB sent',
          's',
          'enrollments/s',
          'trips/enrollment',
          'host MB',
          'host ms/enr',
          'loop max',
          '÷ upsert c=16',
        ],
        [
          [
            String(bulk.enrollments),
            String(bulk.failed),
            f(bulk.requestBytes / 1024, 0),
            f(bulk.wallMs / 1000, 2),
            f(bulk.enrollmentsPerSecond, 0),
            f(bulk.tableRequestsPerEnrollment, 2),
            f(bulk.hostRssPeakMb, 0),
            f(bulk.hostCpuMsPerEnrollment, 2),
            f(bulk.hostLoopDelayMaxMs, 0),
            c16 && c16.upsert.perSecond > 0 ? f(bulk.enrollmentsPerSecond / c16.upsert.perSecond, 2) : '-',
          ],
        ],
      ),
    );
    for (const e of bulk.errors) out.push(`  bulk create: ${e}`);
  } else {
    out.push('Service API bulk create: skipped (--bulk 0)');
  }

  out.push('');
  const cold = report.coldImport;
  if (cold) {
    out.push(`Cold import (fresh node -e "require(…)" processes, median of ${cold.runs})`);
    out.push(
      table(
        ['what', 'process ms', 'require ms', 'files'],
        [cold.functions, cold.bundle, cold.bare].map((s) => [s.label, f(s.wallMs), f(s.requireMs), filesOf(s.files)]),
      ),
    );
    out.push(`ratio functions ÷ bare: process ${f(cold.ratioWall, 2)}×, require ${f(cold.ratioRequire, 2)}×`);
    out.push(
      `ratio bundle ÷ functions: process ${f(cold.bundleRatioWall, 2)}×, require ${f(cold.bundleRatioRequire, 2)}×`,
    );
  } else {
    out.push('Cold import: skipped (--cold-runs 0)');
  }

  const x509Ratios = report.ratios.filter((r) => r.versus === 'symmetric-key group');
  if (x509Ratios.length > 0) {
    out.push(
      '',
      'X.509 group ÷ symmetric-key group registrations/s (target ≥ 0.75 behind the front end, as in Azure, where App',
      "Service's front end does the device's TLS handshake and Open DPS only sees X-ARR-ClientCert; with TLS at the dev",
      'host, each X.509 device also costs the host a full TLS handshake that symmetric-key devices, on warm pooled',
      'connections, do not):',
    );
    const hostMs = (scenario: string, c: number) =>
      report.scenarios.find((s) => s.scenario === scenario && s.concurrency === c)?.hostCpuMsPerOp;
    for (const c of [...new Set(x509Ratios.map((r) => r.concurrency))]) {
      const ratio = (scenario: string) => x509Ratios.find((r) => r.concurrency === c && r.scenario === scenario)?.ratio;
      out.push(
        `  c=${c}: behind front end ${f(ratio(X509_FORWARDED_SCENARIO), 2)} ` +
          `(host ${f(hostMs(X509_FORWARDED_SCENARIO, c), 2)} ms CPU/registration), ` +
          `TLS at dev host ${f(ratio(X509_SCENARIO), 2)} (host ${f(hostMs(X509_SCENARIO, c), 2)} ms), ` +
          `symmetric-key group host ${f(hostMs(SYMMETRIC_GROUP_SCENARIO, c), 2)} ms`,
      );
    }
  }

  const x509 = report.x509Verification;
  if (x509) {
    out.push(
      '',
      `X.509 verification CPU (3-level chain, ${x509.samples} leaves, driver process): ` +
        `${f(x509.perNewDeviceUs / 1000, 3)} ms per new device (CA certificates cached), ` +
        `${f(x509.coldUs / 1000, 3)} ms cold (fresh instance: every certificate parsed, both signatures checked)`,
    );
  }

  if (report.notAvailable.length > 0) out.push('', 'Not available yet (extension points in bench/scenarios.ts):');
  for (const p of report.notAvailable) out.push(`  ${p.name} (${p.unit}s/s): not available yet — needs ${p.needs}`);

  // Other processes taking CPU while a scenario ran (a build, a test run) skew it, and more so its ratios.
  const noisy = report.scenarios.filter((s) => (s.cpuPercent.other ?? 0) > NOISY_OTHER_CPU_PERCENT);
  if (noisy.length > 0) {
    out.push(
      '',
      `NOISY RUN: in ${noisy.length} scenario(s) the rest of the machine used more than ${NOISY_OTHER_CPU_PERCENT} % of a core ` +
        `('cpu other'); their figures and ratios are not comparable — rerun on a quiet machine:`,
      ...noisy.map(
        (s) =>
          `  ${s.scenario}${s.events ? '' : ' [events off]'} c=${s.concurrency}: ${f(s.cpuPercent.other ?? 0, 0)}%`,
      ),
    );
  }

  const failures = report.scenarios.filter((s) => s.failed > 0);
  out.push('', report.failed === 0 ? 'All operations succeeded.' : `${report.failed} operation(s) FAILED:`);
  for (const s of failures) for (const e of s.errors) out.push(`  ${s.scenario} c=${s.concurrency}: ${e}`);
  return out.join('\n');
}
