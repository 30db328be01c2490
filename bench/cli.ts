// Command-line options of `npm run bench`.
import { parseArgs } from 'node:util';

export interface BenchOptions {
  devices: number;
  concurrency: number[];
  json: boolean;
  smoke: boolean;
  warmup: number;
  coldRuns: number;
  /** Measured runs of the raw-storage ceiling per level (after a warm-up); the median is kept. */
  ceilingRuns: number;
  /** Enrollments in the service-API bulk create (0 skips it). */
  bulk: number;
  /** The host's DPS_REGISTER_BUDGET_MS; undefined keeps the service default. */
  registerBudgetMs: number | undefined;
  /** Write a V8 CPU profile of the host process into this folder. */
  hostCpuProf: string | undefined;
  /** Also run every level with the Key Vault key provider (against a local double) and compare. */
  keyVault: boolean;
  /** Run the registration scenarios a second time per level with DPS_EVENTS=off (the events ratio). */
  eventsOff: boolean;
  /** Slices of the devices in the events comparison per level, run on both hosts in alternating order. */
  eventsChunks: number;
}

export const HELP = `Usage: npm run bench -- [options]
  --devices <n>            devices per scenario and concurrency level (default 1000; --smoke: 20)
  --concurrency <list>     comma-separated concurrency levels (default 1,16,64; --smoke: 1,4)
  --json                   machine-readable result on stdout only (progress stays on stderr)
  --smoke                  a few-second run that exits non-zero if any registration failed
  --warmup <n>             unmeasured group registrations before each level (default 1000; --smoke: 10)
  --cold-runs <n>          fresh processes per cold-import measurement, median kept (default 7; --smoke: 0 = skip)
  --ceiling-runs <n>       measured runs of the raw Table ceiling per level, after a warm-up; the median is the
                           ceiling and the spread is printed (default 3; --smoke: 2)
  --bulk <n>               enrollments in the one service-API bulk create (default 10000, the API's maximum;
                           --smoke: 100; 0 = skip)
  --register-budget-ms <n> the host's DPS_REGISTER_BUDGET_MS (0 = every PUT answers 'assigning' and polls finish it)
  --host-cpu-prof <dir>    write a V8 CPU profile of the host process into <dir>
  --key-vault              run each level again with the Key Vault key provider (a local double of Key Vault):
                           Key Vault calls per registration and registrations/s beside the local provider's
  --skip-events-off        skip the second pass of the registration scenarios with events off (DPS_EVENTS=off)
  --events-chunks <n>      the events ratio: a host with events and one without, both up, run each registration
                           scenario in n slices of the devices, alternating which goes first (on off, off on, …), so
                           that the machine's drift favours neither; the ratio is of the totals (default 4; --smoke: 2)
  --help`;

/** A bad command line: reported as one line and exit code 2, without a stack. */
export class UsageError extends Error {}

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  try {
    return parse(argv);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function parse(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string' },
      concurrency: { type: 'string' },
      json: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      warmup: { type: 'string' },
      'cold-runs': { type: 'string' },
      'ceiling-runs': { type: 'string' },
      bulk: { type: 'string' },
      'register-budget-ms': { type: 'string' },
      'host-cpu-prof': { type: 'string' },
      'key-vault': { type: 'boolean', default: false },
      'skip-events-off': { type: 'boolean', default: false },
      'events-chunks': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return 'help';
  const smoke = values.smoke;
  const concurrency = [
    ...new Set((values.concurrency ?? (smoke ? '1,4' : '1,16,64')).split(',').map((c) => whole('concurrency', c, 1))),
  ];
  return {
    devices: whole('devices', values.devices ?? (smoke ? '20' : '1000'), 1),
    concurrency,
    json: values.json,
    smoke,
    warmup: whole('warmup', values.warmup ?? (smoke ? '10' : '1000'), 0),
    coldRuns: whole('cold-runs', values['cold-runs'] ?? (smoke ? '0' : '7'), 0),
    ceilingRuns: whole('ceiling-runs', values['ceiling-runs'] ?? (smoke ? '2' : '3'), 1),
    bulk: whole('bulk', values.bulk ?? (smoke ? '100' : '10000'), 0),
    registerBudgetMs:
      values['register-budget-ms'] === undefined
        ? undefined
        : whole('register-budget-ms', values['register-budget-ms'], 0),
    hostCpuProf: values['host-cpu-prof'],
    keyVault: values['key-vault'],
    eventsOff: !values['skip-events-off'],
    eventsChunks: whole('events-chunks', values['events-chunks'] ?? (smoke ? '2' : '4'), 1),
  };
}

function whole(name: string, value: string, min: number): number {
  const trimmed = value.trim();
  if (!/^\d+$/.test(trimmed) || Number(trimmed) < min)
    throw new Error(`--${name} must be a whole number ≥ ${min}, not '${value}'`);
  return Number(trimmed);
}
