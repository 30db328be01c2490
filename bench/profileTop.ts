// `node dist/bench/profileTop.js <file.cpuprofile> [filter regex] [count]`: the top functions of a V8 CPU profile
// (e.g. from `npm run bench -- --host-cpu-prof <dir>`) by self time, and by inclusive time for those matching the
// filter. Async continuations start new stacks in a profile, so inclusive times undercount async callers.
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const ROOT_PREFIX = /^.*?\/(dist|node_modules)\//;

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(ROOT_PREFIX, '$1/');
  return `${functionName || '(anonymous)'} ${where}${where ? `:${lineNumber + 1}` : ''}`;
}

function main(): void {
  const [file, filterText, countText] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('Usage: node dist/bench/profileTop.js <file.cpuprofile> [filter regex] [count]\n');
    process.exitCode = 2;
    return;
  }
  const filter = new RegExp(filterText ?? 'dist/(shared|functions|dev)/');
  const count = Number(countText ?? '15');
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);

  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!node || node.callFrame.functionName === '(idle)') return;
    busy += dt;
    self.set(label(node), (self.get(label(node)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at);
      if (!frame) break;
      const name = label(frame);
      if (filter.test(name) && !seen.has(name)) {
        seen.add(name);
        inclusive.set(name, (inclusive.get(name) ?? 0) + dt);
      }
    }
  });

  const print = (title: string, rows: Map<string, number>, only?: RegExp) => {
    console.log(`\n${title}`);
    [...rows]
      .filter(([name]) => !only || only.test(name))
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .forEach(([name, us]) => {
        console.log(`${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${name}`);
      });
  };
  console.log(`busy (non-idle) time: ${(busy / 1000).toFixed(0)} ms`);
  print('Self time, everything:', self);
  print(`Self time, matching ${filter}:`, self, filter);
  print(`Inclusive time, matching ${filter}:`, inclusive);
}

main();
