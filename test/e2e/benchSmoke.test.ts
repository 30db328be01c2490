// `npm run bench` must keep working as the code changes: build, then a tiny run of the real benchmark (its own Azurite,
// host and hub processes) with every scenario, the ceiling, the bulk create and the cold import. Figures are not
// asserted (they belong to the benchmark), only that everything ran, succeeded and counted what it should.
import { execFile } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import type { BenchReport } from '../../bench/report';

const run = promisify(execFile);
const root = join(__dirname, '..', '..');

describe('npm run bench, smoke size', () => {
  it('builds, runs every scenario without a failure and reports round trips, ceiling and ratios', async () => {
    // A clean build, as `npm run build` does: a stale function file in dist/ would be served too.
    rmSync(join(root, 'dist'), { recursive: true, force: true });
    await run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
      cwd: root,
    });
    const args = ['--smoke', '--json', '--devices', '12', '--concurrency', '1,3', '--bulk', '40', '--cold-runs', '1'];
    const { stdout } = await run(process.execPath, [join(root, 'dist', 'bench', 'run.js'), ...args], {
      cwd: root,
      maxBuffer: 16 * 1024 * 1024,
    });
    const report = JSON.parse(stdout) as BenchReport;

    expect(report.failed).toBe(0);
    // Each level's registration scenarios run again on a host with DPS_EVENTS=off, for the events ratio.
    const off = report.scenarios.filter((s) => !s.events);
    expect(off.length).toBeGreaterThan(0);
    expect(off.every((s) => s.unit === 'registration' && s.outboxRequestsPerOp === 0 && s.eventsPerSecond === 0)).toBe(
      true,
    );
    expect(report.eventsRatios.map((r) => `${r.scenario}@${r.concurrency}`).sort()).toEqual(
      off.map((s) => `${s.scenario}@${s.concurrency}`).sort(),
    );
    for (const r of report.eventsRatios) {
      expect(r.ratio).toBeGreaterThan(0);
      // --smoke: two slices per side, run in alternating order; the ratio of the totals lies between theirs.
      expect(r.slices).toBe(2);
      expect(r.sliceRatios).toHaveLength(2);
      expect(r.ratio).toBeGreaterThanOrEqual(Math.min(...r.sliceRatios) * 0.999);
      expect(r.ratio).toBeLessThanOrEqual(Math.max(...r.sliceRatios) * 1.001);
      expect(r.tripsOn).toBeCloseTo(r.tripsOff, 0); // events ride in the same writes
      // One marker write and delete per register PUT (TPM: the challenge PUT and the signed one), shared under load.
      expect(r.outboxOn).toBeLessThanOrEqual(r.scenario.startsWith('TPM') ? 4.5 : 2.5);
    }
    expect(report.scenarios.filter((s) => s.events).map((s) => `${s.scenario}@${s.concurrency}`)).toEqual(
      [1, 3].flatMap((c) =>
        [
          'symmetric-key individual',
          'symmetric-key group',
          're-registration (assigned)',
          'poll finished operation',
          'TPM individual',
          'X.509 group, TLS at dev host',
          'X.509 group, behind front end',
          'custom allocation (local webhook)',
        ].map((name) => `${name}@${c}`),
      ),
    );
    for (const s of report.scenarios) {
      const path = Math.round((s.tableRequestsPerOp - s.outboxRequestsPerOp) * 1000) / 1000;
      expect(s.operations).toBe(12);
      expect(s.perSecond).toBeGreaterThan(0);
      // The cost model: one partition query, a claim (first registrations only) and one write per registration, one
      // query per poll (a group-cache refresh may add a read now and then).
      // TPM: the challenge PUT (partition query, challenge write), then the signed PUT (its partition query brings the
      // challenge).
      const writes = s.scenario.startsWith('re-registration') ? 2 : s.scenario.startsWith('TPM') ? 5 : 3;
      if (s.unit === 'registration') expect(path).toBeGreaterThanOrEqual(writes);
      // Background reads a scenario's window may catch: each of the three per-instance caches (groups, configuration,
      // CA certificates) refreshes at most once per 5 s TTL, and the events sweep (every 10 s on the dev host) queries
      // the outbox's 8 pending-index shards. On a loaded machine a 12-device scenario sees one now and then.
      const background = 3 * (Math.floor(s.wallMs / 5000) + 1) + 8 * (Math.floor(s.wallMs / 10_000) + 1);
      if (s.unit === 'registration') {
        expect(path, s.scenario).toBeLessThanOrEqual(writes + background / s.operations);
      }
      if (s.unit === 'poll') expect(path).toBe(1);
      expect(s.hostRssPeakMb).toBeGreaterThan(0);
    }
    for (const s of report.scenarios.filter((x) => x.scenario.startsWith('custom'))) {
      expect(s.webhook?.calls).toBe(12); // one webhook call per registration
      expect(s.webhook?.shareOfPutP50).toBeGreaterThanOrEqual(0);
      expect(s.webhook?.shareOfPutP50).toBeLessThan(1);
    }
    expect(report.ceiling.map((c) => c.concurrency)).toEqual([1, 3]);
    for (const c of report.ceiling) {
      // The ceiling is the median of several measured runs (--smoke: 2), and its spread is reported.
      for (const op of [c.upsert, c.get]) {
        expect(op.runs).toHaveLength(2);
        expect(op.perSecond).toBeGreaterThanOrEqual(Math.min(...op.runs));
        expect(op.perSecond).toBeLessThanOrEqual(Math.max(...op.runs));
        expect(Number.isFinite(op.spread) && op.spread >= 0).toBe(true);
        expect(op.latencyMs.count).toBe(2 * 12);
      }
    }
    expect(report.ratios.every((r) => Number.isFinite(r.ratio) && r.ratio > 0)).toBe(true);
    // Both X.509 scenarios (TLS at the dev host, behind the front end) against symmetric-key group registrations.
    expect(
      report.ratios.filter((r) => r.versus === 'symmetric-key group').map((r) => `${r.scenario}@${r.concurrency}`),
    ).toEqual([1, 3].flatMap((c) => [`X.509 group, TLS at dev host@${c}`, `X.509 group, behind front end@${c}`]));
    expect(report.x509Verification?.perNewDeviceUs).toBeGreaterThan(0);
    expect(report.bulkCreate).toMatchObject({ enrollments: 40, failed: 0 });
    // One write per enrollment, plus its event's outbox marker and the marker's removal, both group-committed.
    expect(report.bulkCreate?.tableRequestsPerEnrollment).toBeLessThanOrEqual(1.5);
    const sources = readdirSync(join(root, 'functions')).filter((f) => f.endsWith('.ts'));
    expect(report.coldImport?.functions.files).toHaveLength(sources.length);
  }, 120_000);
});
