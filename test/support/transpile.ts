// Transpiles the sources a dev stack in a child process needs (not bundled), so the child runs exactly this code.
import { copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { build } from 'esbuild';

const root = join(__dirname, '..', '..');

const sources = (dir: string): string[] =>
  readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name));

/** dev/, shared/ and functions/ (plus `extra` entry points) as CommonJS under `out`, laid out as in the repo. */
export async function transpileDevStack(out: string, extra: readonly string[] = []): Promise<void> {
  await build({
    entryPoints: [...sources('dev'), ...sources('shared'), ...sources('functions'), ...extra.map((e) => join(root, e))],
    outdir: out,
    outbase: root,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'error',
  });
  copyFileSync(join(root, 'dev', 'hostPortShim.cjs'), join(out, 'dev', 'hostPortShim.cjs'));
}
