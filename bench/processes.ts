// The benchmark's child processes: each is registered with a graceful stop, and all of them are stopped on a normal
// end, on errors, on Ctrl+C (SIGINT) and on SIGTERM; anything still alive when the driver exits is killed.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

interface Tracked {
  child: ChildProcess;
  stop: () => Promise<void>;
}

const tracked: Tracked[] = [];

/** Registers a child so it is stopped with the others; `stop` must end it (and may escalate to SIGKILL). */
export function track(child: ChildProcess, stop: () => Promise<void>): void {
  tracked.push({ child, stop });
}

const alive = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null;

/** Resolves when the child has exited, or after `ms` (false then). */
export function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (!alive(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGTERM, then SIGKILL if the child is still there after `graceMs`. */
export async function terminate(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (!alive(child)) return;
  child.kill('SIGTERM');
  if (!(await exited(child, graceMs))) {
    child.kill('SIGKILL');
    await exited(child, 1000);
  }
}

/** Stops every tracked child, last started first. Safe to call more than once. */
export async function stopAll(): Promise<void> {
  while (tracked.length > 0) {
    const entry = tracked.pop();
    if (entry && alive(entry.child)) await entry.stop().catch(() => entry.child.kill('SIGKILL'));
  }
}

let installed = false;

/** Ctrl+C / SIGTERM stop the children and exit 130 / 143; a synchronous kill covers any other exit path. */
export function installCleanup(log: (line: string) => void): void {
  if (installed) return;
  installed = true;
  const onSignal = (signal: NodeJS.Signals, code: number) => {
    log(`${signal}: stopping child processes…`);
    const hardStop = setTimeout(() => process.exit(code), 8000);
    hardStop.unref();
    void stopAll().finally(() => process.exit(code));
  };
  process.once('SIGINT', () => onSignal('SIGINT', 130));
  process.once('SIGTERM', () => onSignal('SIGTERM', 143));
  process.once('exit', () => {
    for (const { child } of tracked) if (alive(child)) child.kill('SIGKILL');
  });
}

/** CPU seconds (user + system) a process has used so far, from /proc; undefined where that is not available. */
export function cpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined || process.platform !== 'linux') return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3, utime 14, stime 15 (in clock ticks, 100 per second on Linux).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / 100 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds the whole machine has been busy (all cores, steal included), from /proc/stat; undefined elsewhere. */
export function machineBusySeconds(): number | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice (clock ticks; guest is inside user)
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = [user, nice, system, irq, softirq, steal].reduce<number>((sum, v) => sum + (v ?? 0), 0);
    return Number.isFinite(busy) ? busy / 100 : undefined;
  } catch {
    return undefined;
  }
}
