// TEST-ONLY crash injection for the crash test (test/e2e/eventsCrash.test.ts): with DPS_TEST_CRASH_AFTER=<point>:<n>
// the process kills itself with SIGKILL the n-th time it passes <point> — `marker` (a marker batch is durable),
// `commit` (a registration write with events committed, nothing sent) or `send` (the sink accepted events, their
// markers not deleted yet). Never set it outside that test; unset, each call is one comparison.
export type CrashPoint = 'marker' | 'commit' | 'send';

let armed: { point: string; left: number } | null | undefined;

export function crashPoint(point: CrashPoint): void {
  if (armed === undefined) armed = parse(process.env.DPS_TEST_CRASH_AFTER); // once: null means unarmed
  if (armed?.point !== point) return;
  if (--armed.left <= 0) process.kill(process.pid, 'SIGKILL');
}

function parse(setting: string | undefined): { point: string; left: number } | null {
  const [point = '', n = '1'] = (setting ?? '').trim().split(':');
  return point === '' ? null : { point, left: Math.max(1, Number.parseInt(n, 10) || 1) };
}
