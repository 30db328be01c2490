// `npm run bench`: registration throughput and latency of the real functions on the local stack, measured against
// the storage ceiling of the same Azurite in the same run. The driver runs here; Azurite and the host (a fresh one per
// concurrency level, on tables of its own) run in processes of their own.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { createDevCertificates } from '../dev/certs';
import type { CertificateFiles } from '../dev/stack';
import { newIdScope } from '../dev/stack';
import { createSas } from '../shared/http/sas';
import { ROOT_POLICY } from '../shared/services';
import type { AzuriteProcess } from './azuriteProcess';
import { startAzuriteProcess } from './azuriteProcess';
import type { BulkCreateResult } from './bulkCreate';
import { measureBulkCreate } from './bulkCreate';
import type { BenchOptions } from './cli';
import { HELP, UsageError, parseOptions } from './cli';
import type { ColdImportResult } from './coldImport';
import { measureColdImport } from './coldImport';
import type { Device, TpmDevice } from './driver';
import { DeviceClient, device } from './driver';
import type { HostProcess } from './hostControl';
import { startHostProcess } from './hostControl';
import { runPool } from './pool';
import type { KeyVaultBench, KeyVaultLevel } from './keyVault';
import { formatKeyVault, startKeyVaultBench } from './keyVault';
import { installCleanup, stopAll } from './processes';
import { log } from './progress';
import type { BenchReport } from './report';
import { eventsRatios, formatText, ratios } from './report';
import type { LevelContext, ScenarioResult } from './scenarios';
import { PLANNED, SCENARIOS, SYMMETRIC_GROUP_SCENARIO } from './scenarios';

const REGISTRATION_SCENARIOS = SCENARIOS.filter((s) => s.unit === 'registration');
import { deriveKey, seedEnrollments, seedX509Group } from './seed';
import { measureX509Verification } from './x509Cpu';
import type { BenchWebhook } from './webhook';
import { startBenchWebhook } from './webhook';
import type { CeilingResult } from './tablesCeiling';
import { TablesCeiling } from './tablesCeiling';
import { SoftTpm } from './softTpm';
import { formatTpmChallenges, measureTpmChallenges } from './tpmChallenge';

const ROOT = resolve(__dirname, '..', '..');
const GROUP_ID = 'bench-group';
const X509_GROUP_ID = 'bench-x509-group';
const CUSTOM_GROUP_ID = 'bench-custom';

/** What every host of the run shares: Azurite, certificates, the scope and keys. */
interface RunEnvironment {
  options: BenchOptions;
  azurite: AzuriteProcess;
  certs: CertificateFiles;
  ca: string;
  settings: Record<string, string>;
  ownerKey: string;
  work: string;
  /** `--key-vault`: the Key Vault double and the settings that select it. */
  keyVault?: KeyVaultBench;
  /** The custom-allocation scenario's webhook, in this process. */
  webhook: BenchWebhook;
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2));
  if (parsed === 'help') {
    process.stderr.write(`${HELP}\n`);
    return 0;
  }
  const options = parsed;
  installCleanup(log);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const work = mkdtempSync(join(tmpdir(), 'open-dps-bench-'));
  let webhook: BenchWebhook | undefined;
  try {
    // First, while the machine is quiet: cold import of the function files vs a bare app.
    let coldImport: ColdImportResult | null = null;
    if (options.coldRuns > 0) {
      log(`cold import: ${options.coldRuns} fresh processes each…`);
      coldImport = await measureColdImport(ROOT, options.coldRuns);
    }

    // Pure CPU, before any process starts: the software side of TPM attestation (bench/tpmChallenge.ts).
    const tpmChallenges = formatTpmChallenges(measureTpmChallenges(options.smoke ? 200 : 2000));
    log(tpmChallenges);

    const certs = (await createDevCertificates(join(work, 'certs'))).files;
    const azurite = await startAzuriteProcess(ROOT);
    log(`Azurite Table (separate process, pid ${azurite.pid}) at ${azurite.url}`);
    const ownerKey = randomBytes(32).toString('base64');
    webhook = await startBenchWebhook();
    const env: RunEnvironment = {
      webhook,
      options,
      azurite,
      certs,
      ca: readFileSync(certs.caCert, 'utf8'),
      ownerKey,
      work,
      settings: {
        DPS_ID_SCOPE: newIdScope(),
        DPS_MASTER_KEY: randomBytes(32).toString('base64'),
        DPS_SERVICE_OWNER_KEY: ownerKey,
        DPS_TABLES_CONNECTION_STRING: azurite.connectionString,
        // Events still go to the local file sink; echoing each one on the host's console (10,000 lines for the bulk
        // create) would flood the report and bill the host for terminal output.
        DPS_EVENTS_CONSOLE: 'false',
        ...(options.registerBudgetMs !== undefined ? { DPS_REGISTER_BUDGET_MS: String(options.registerBudgetMs) } : {}),
      },
    };

    if (options.keyVault) env.keyVault = await startKeyVaultBench(certs);
    const tables = new TablesCeiling(azurite.connectionString);
    const scenarios: ScenarioResult[] = [];
    /** The events comparison's slices, both sides (compareEvents): the events ratio. */
    const eventPasses: ScenarioResult[] = [];
    const ceiling: CeilingResult[] = [];
    const keyVaultLevels: KeyVaultLevel[] = [];
    try {
      for (const concurrency of options.concurrency) {
        const level = await runLevel(env, tables, concurrency, {});
        if (level.ceiling) ceiling.push(level.ceiling);
        scenarios.push(...level.scenarios);
        if (env.keyVault) keyVaultLevels.push(await runKeyVaultLevel(env, env.keyVault, tables, concurrency));
        // The same registrations on a host with DPS_EVENTS=off (the table's rows), and the events ratio measured
        // with both hosts up, slice by slice in alternating order (compareEvents).
        if (options.eventsOff) {
          scenarios.push(...(await runLevel(env, tables, concurrency, { events: false })).scenarios);
          eventPasses.push(...(await compareEvents(env, concurrency, options.eventsChunks)));
        }
      }
    } finally {
      await tables.dispose();
      await env.keyVault?.double.close();
    }
    const bulkCreate = options.bulk > 0 ? await runBulkCreate(env) : null;
    const x509Verification = await measureX509Verification(options.smoke ? 50 : 300);
    await azurite.stop();

    const report: BenchReport = {
      meta: {
        startedAt,
        node: `Node ${process.version}`,
        cpus: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}`,
        devicesPerScenario: options.devices,
        concurrency: options.concurrency,
        warmup: options.warmup,
        bulk: options.bulk,
        registerBudgetMs: options.registerBudgetMs,
        totalSeconds: (performance.now() - started) / 1000,
      },
      scenarios,
      ceiling,
      ratios: ratios(scenarios, ceiling),
      eventsRatios: eventsRatios(eventPasses),
      bulkCreate,
      x509Verification,
      coldImport,
      notAvailable: [...PLANNED],
      failed: scenarios.reduce((sum, s) => sum + s.failed, 0) + (bulkCreate?.failed ?? 0),
    };
    const keyVault = env.keyVault ? { keyVault: keyVaultLevels } : {};
    process.stdout.write(
      options.json
        ? `${JSON.stringify({ ...report, ...keyVault }, null, 2)}\n`
        : `\n${formatText(report)}\n\n${tpmChallenges}\n${env.keyVault ? `\n${formatKeyVault(keyVaultLevels, scenarios)}\n` : ''}`,
    );
    if (options.hostCpuProf) log(`host CPU profiles (one per host process) written to ${resolve(options.hostCpuProf)}`);
    return report.failed > 0 ? 1 : 0;
  } finally {
    await webhook?.close();
    await stopAll();
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A host of its own, on tables of its own (prefix), for one concurrency level or the bulk create: Azurite answers
 * queries by scanning the whole table, so a table that grew across levels would make later levels look slower.
 */
async function startHost(
  env: RunEnvironment,
  prefix: string,
  keyVault?: KeyVaultBench,
  events = true,
): Promise<{ host: HostProcess; settings: Record<string, string> }> {
  const settings = {
    ...env.settings,
    ...keyVault?.settings,
    DPS_TABLE_PREFIX: prefix,
    DPS_EVENTS: events ? 'on' : 'off',
  };
  const host = await startHostProcess({
    tablesConnectionString: env.azurite.connectionString,
    certs: env.certs,
    settings,
    ...(keyVault ? { devTokenSecret: keyVault.devTokenSecret } : {}),
    stateDir: join(env.work, prefix),
    execArgv: env.options.hostCpuProf ? ['--cpu-prof', `--cpu-prof-dir=${resolve(env.options.hostCpuProf)}`] : [],
  });
  log(`host (separate process, pid ${host.pid}, tables ${prefix}*) serving ${host.idScope} at ${host.deviceEndpoint}`);
  return { host, settings };
}

/** The level again, on a host with the Key Vault provider and tables of its own, counting Key Vault calls. */
async function runKeyVaultLevel(
  env: RunEnvironment,
  keyVault: KeyVaultBench,
  tables: TablesCeiling,
  concurrency: number,
): Promise<KeyVaultLevel> {
  const start = keyVault.double.operations();
  let measuredFrom = start;
  const level = await runLevel(env, tables, concurrency, {
    keyVault,
    beforeScenarios: () => (measuredFrom = keyVault.double.operations()),
  });
  const callsMeasured = keyVault.double.operations() - measuredFrom;
  const registrations = level.scenarios.filter((s) => s.unit === 'registration').reduce((n, s) => n + s.operations, 0);
  log(
    `Key Vault c=${concurrency}: ${callsMeasured} calls in ${registrations} registrations, ${measuredFrom - start} at start`,
  );
  return { concurrency, callsAtStart: measuredFrom - start, callsMeasured, registrations, scenarios: level.scenarios };
}

interface LevelOptions {
  keyVault?: KeyVaultBench;
  beforeScenarios?: () => void;
  /** DPS_EVENTS on the host (default on). */
  events?: boolean;
  /** A host of the events comparison (compareEvents): tables of their own. */
  comparison?: boolean;
}

/** A host with its tables seeded for one level, and the devices and client to drive it. */
interface OpenLevel {
  ctx: LevelContext;
  settings: Record<string, string>;
  ids: (kind: string) => string[];
  warmDevice: (id: string) => Device;
  close(): Promise<void>;
}

async function openLevel(env: RunEnvironment, concurrency: number, level: LevelOptions): Promise<OpenLevel> {
  const { options, azurite } = env;
  const { keyVault, events = true, comparison = false } = level;
  log(
    `— concurrency ${concurrency}${keyVault ? ', Key Vault provider' : ''}${events ? '' : ', events off'}` +
      `${comparison ? ', events comparison' : ''} —`,
  );
  const prefix = `benchc${concurrency}${keyVault ? 'kv' : ''}${events ? '' : 'off'}${comparison ? 'cmp' : ''}`;
  const { host, settings } = await startHost(env, prefix, keyVault, events);
  try {
    const ids = (kind: string) =>
      Array.from({ length: options.devices }, (_, i) => `bench-${kind}-c${concurrency}-${i}`);
    const seedStarted = performance.now();
    // A few software TPMs shared by the TPM devices: RSA key generation is slow, and the server keys by registration ID.
    const softTpms = Array.from({ length: 4 }, () => new SoftTpm());
    const tpmDevices = ids('tpm').map((registrationId, i): TpmDevice => {
      const tpm = softTpms[i % softTpms.length] ?? new SoftTpm();
      return { registrationId, authorization: '', tpm };
    });
    const seeded = await seedEnrollments(settings, {
      groupId: GROUP_ID,
      individualIds: ids('ind'),
      tpm: new Map(tpmDevices.map((d) => [d.registrationId, d.tpm.ek.tpm2b.toString('base64')])),
      concurrency: 16,
      custom: { groupId: CUSTOM_GROUP_ID, webhookUrl: env.webhook.url },
    });
    const x509 = await seedX509Group(settings, {
      groupId: X509_GROUP_ID,
      registrationIds: [...ids('x509'), ...ids('x509fe')],
      concurrency: 16,
    });
    await host.invalidateCaches();
    log(
      `seeded 3 groups (symmetric key, X.509, custom), ${options.devices} symmetric-key and ${options.devices} TPM individual ` +
        `enrollments and ${x509.length} device certificates in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s`,
    );

    const warmDevice = (id: string): Device => device(host.idScope, id, deriveKey(seeded.groupKey, id));
    const ctx: LevelContext = {
      concurrency,
      client: new DeviceClient(host.deviceEndpoint, host.idScope, env.ca, concurrency),
      host,
      azurite,
      individual: ids('ind').map((id) => device(host.idScope, id, seeded.individualKeys.get(id) ?? '')),
      tpm: tpmDevices,
      group: ids('grp').map(warmDevice),
      x509: x509
        .slice(0, options.devices)
        .map(({ registrationId, tls }) => ({ registrationId, tls, authorization: '' })),
      x509Forwarded: x509
        .slice(options.devices)
        .map(({ registrationId, der }) => ({ registrationId, forwardedCert: der, authorization: '' })),
      custom: ids('cst').map((id) => device(host.idScope, id, deriveKey(seeded.customGroupKey ?? '', id))),
      webhook: env.webhook,
      operations: new Map<string, string>(),
    };
    return {
      ctx,
      settings,
      ids,
      warmDevice,
      close: async () => {
        ctx.client.close();
        await host.stop();
      },
    };
  } catch (err) {
    await host.stop();
    throw err;
  }
}

async function runLevel(
  env: RunEnvironment,
  tables: TablesCeiling,
  concurrency: number,
  level: LevelOptions,
): Promise<{ scenarios: ScenarioResult[]; ceiling?: CeilingResult }> {
  const { options } = env;
  const { beforeScenarios, events = true } = level;
  const open = await openLevel(env, concurrency, level);
  const { ctx, settings, ids, warmDevice } = open;
  try {
    if (!events) {
      await warmUp(ctx, options.warmup, warmDevice);
      const scenarios: ScenarioResult[] = [];
      for (const scenario of REGISTRATION_SCENARIOS) scenarios.push({ ...(await scenario.run(ctx)), events });
      return { scenarios: withWebhookShare(scenarios) };
    }
    const ceiling = await tables.measure(concurrency, options.devices, settings, ids('ind'), options.ceilingRuns);
    const runs = (op: CeilingResult['upsert']) =>
      `${op.perSecond.toFixed(0)}/s (runs ${op.runs.map((r) => r.toFixed(0)).join('/')}, spread ${(op.spread * 100).toFixed(0)}%)`;
    log(
      `raw tables c=${concurrency}: upsert ${runs(ceiling.upsert)}, get ${runs(ceiling.get)}, ` +
        `partition query ${ceiling.query.perSecond.toFixed(0)}/s`,
    );
    // Warm-up right before the scenarios: idle pooled connections close after ~5 s (Azurite, hub emulator).
    await warmUp(ctx, options.warmup, warmDevice);
    beforeScenarios?.();
    const scenarios: ScenarioResult[] = [];
    for (const scenario of SCENARIOS) scenarios.push(await scenario.run(ctx));
    return { scenarios: withWebhookShare(scenarios), ceiling };
  } finally {
    await open.close();
  }
}

/**
 * The cost of events, measured so that the machine's drift cannot favour a side: a host with events and one without
 * (tables of their own) run each registration scenario in `chunks` slices of the devices, alternating which host goes
 * first (on off, off on, …), seconds apart. Returns each slice's result, both sides, in run order.
 */
async function compareEvents(env: RunEnvironment, concurrency: number, chunks: number): Promise<ScenarioResult[]> {
  const on = await openLevel(env, concurrency, { events: true, comparison: true });
  try {
    const off = await openLevel(env, concurrency, { events: false, comparison: true });
    try {
      await warmUp(on.ctx, env.options.warmup, on.warmDevice);
      await warmUp(off.ctx, env.options.warmup, off.warmDevice);
      const results: ScenarioResult[] = [];
      for (const scenario of REGISTRATION_SCENARIOS) {
        for (let k = 0; k < chunks; k++) {
          for (const side of k % 2 === 0 ? [on, off] : [off, on]) {
            const result = await scenario.run(slice(side.ctx, k, chunks));
            results.push({ ...result, events: side === on });
          }
        }
      }
      return results;
    } finally {
      await off.close();
    }
  } finally {
    await on.close();
  }
}

/** The k-th of n slices of every device list of a level. */
function slice(ctx: LevelContext, k: number, n: number): LevelContext {
  const part = <T>(list: readonly T[]): T[] => {
    const size = Math.ceil(list.length / n);
    return list.slice(k * size, (k + 1) * size);
  };
  return {
    ...ctx,
    individual: part(ctx.individual),
    group: part(ctx.group),
    tpm: part(ctx.tpm),
    x509: part(ctx.x509),
    x509Forwarded: part(ctx.x509Forwarded),
    custom: part(ctx.custom),
  };
}

/**
 * Unmeasured group registrations at the level's concurrency, so that every process's connection pools have grown to
 * it (new TLS connections are costly: see the README) and JIT and caches are warm before the clock starts.
 */
async function warmUp(ctx: LevelContext, count: number, warmDevice: (id: string) => Device): Promise<void> {
  await ctx.client.warm();
  if (count === 0) return;
  const devices = Array.from({ length: count }, (_, i) => warmDevice(`bench-warm-c${ctx.concurrency}-${i}`));
  let failed = 0;
  const ms = await runPool(devices.length, ctx.concurrency, async (i) => {
    const d = devices[i];
    if (d && !(await ctx.client.register(d)).ok) failed++;
  });
  log(`warm-up c=${ctx.concurrency}: ${count} group registrations in ${(ms / 1000).toFixed(1)} s, ${failed} failed`);
}

/**
 * The webhook's share of the custom scenario's PUT: what its PUT p50 adds over the group scenario's (both are first
 * registrations of group devices, the same table round trips), as a fraction of it; 0 when noise makes it negative.
 */
function withWebhookShare(scenarios: ScenarioResult[]): ScenarioResult[] {
  const group = scenarios.find((s) => s.scenario === SYMMETRIC_GROUP_SCENARIO);
  return scenarios.map((s) => {
    if (!s.webhook || !group || s.latencyMs.p50 <= 0) return s;
    const share = Math.max(0, (s.latencyMs.p50 - group.latencyMs.p50) / s.latencyMs.p50);
    return { ...s, webhook: { ...s.webhook, shareOfPutP50: share } };
  });
}

/** The service-API bulk create, on a host and tables of its own. */
async function runBulkCreate(env: RunEnvironment): Promise<BulkCreateResult> {
  const { host } = await startHost(env, 'benchbulk');
  const client = new DeviceClient(host.deviceEndpoint, host.idScope, env.ca, 1);
  try {
    // The service API's sr is its host name as the connection string gives it (host:port here).
    const token = createSas(host.deviceEndpoint, env.ownerKey, Math.floor(Date.now() / 1000) + 3600, ROOT_POLICY);
    return await measureBulkCreate(client, host, env.azurite, token, env.options.bulk);
  } finally {
    client.close();
    await host.stop();
  }
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    if (err instanceof UsageError) {
      log(`${err.message} (see --help)`);
      process.exit(2);
    }
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await stopAll();
    process.exit(1);
  },
);
