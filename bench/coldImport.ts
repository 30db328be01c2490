// Cold import: what loading the function files costs a fresh worker, beside the deployed bundle (dev/bundle.ts, one
// file) and a bare @azure/functions app with one function (bench/fixtures/bareApp.ts). Each sample is a fresh `node -e "require(…)"` process; we keep the median of
// the process wall time (Node start included) and of the require time measured inside the child.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { buildBundle } from '../dev/bundle';

import { median } from './stats';

export interface ColdImportSample {
  label: string;
  files: string[];
  /** Median wall time of the whole child process, ms. */
  wallMs: number;
  /** Median time of the `require` calls alone, ms. */
  requireMs: number;
}

export interface ColdImportResult {
  runs: number;
  functions: ColdImportSample;
  /** The deployed bundle (dist/bundle/index.js), built into a temporary folder. */
  bundle: ColdImportSample;
  bare: ColdImportSample;
  /** functions ÷ bare. */
  ratioWall: number;
  ratioRequire: number;
  /** bundle ÷ function files. */
  bundleRatioWall: number;
  bundleRatioRequire: number;
}

export async function measureColdImport(root: string, runs: number): Promise<ColdImportResult> {
  const functionsDir = join(root, 'dist', 'functions');
  const functionFiles = readdirSync(functionsDir)
    .filter((f) => f.endsWith('.js'))
    .sort()
    .map((f) => join(functionsDir, f));
  const bareFiles = [join(__dirname, 'fixtures', 'bareApp.js')];
  // Outside the repository, as deployed: it must load without node_modules.
  const bundleDir = mkdtempSync(join(tmpdir(), 'open-dps-bundle-'));
  const bundleFiles = [(await buildBundle(root, bundleDir)).file];
  const fn = { wall: [] as number[], req: [] as number[] };
  const bundled = { wall: [] as number[], req: [] as number[] };
  const bare = { wall: [] as number[], req: [] as number[] };
  // Interleaved, so drift (other load, disk cache) hits all alike.
  try {
    for (let i = 0; i < runs; i++) {
      for (const [files, into] of [
        [functionFiles, fn],
        [bundleFiles, bundled],
        [bareFiles, bare],
      ] as const) {
        const s = await sample(root, files);
        into.wall.push(s.wallMs);
        into.req.push(s.requireMs);
      }
    }
  } finally {
    rmSync(bundleDir, { recursive: true, force: true });
  }
  const result = (label: string, files: string[], s: { wall: number[]; req: number[] }): ColdImportSample => ({
    label,
    files: files.map((f) => relative(root, f)),
    wallMs: median(s.wall),
    requireMs: median(s.req),
  });
  const functions = result('all function files', functionFiles, fn);
  const bundle = { ...result('the deployed bundle', bundleFiles, bundled), files: ['dist/bundle/index.js'] };
  const bareApp = result('bare app, one function', bareFiles, bare);
  return {
    runs,
    functions,
    bundle,
    bare: bareApp,
    bundleRatioWall: functions.wallMs > 0 ? bundle.wallMs / functions.wallMs : 0,
    bundleRatioRequire: functions.requireMs > 0 ? bundle.requireMs / functions.requireMs : 0,
    ratioWall: bareApp.wallMs > 0 ? functions.wallMs / bareApp.wallMs : 0,
    ratioRequire: bareApp.requireMs > 0 ? functions.requireMs / bareApp.requireMs : 0,
  };
}

function sample(root: string, files: string[]): Promise<{ wallMs: number; requireMs: number }> {
  const code =
    `const t = performance.now(); for (const f of ${JSON.stringify(files)}) require(f);` +
    `process.stdout.write(String(performance.now() - t));`;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    // stderr is dropped: @azure/functions warns that it is "in test mode" outside the Functions host.
    execFile(process.execPath, ['-e', code], { cwd: root, timeout: 30_000 }, (err, stdout) => {
      const wallMs = performance.now() - started;
      if (err) return reject(new Error(`cold import of ${files.join(', ')} failed: ${err.message}`));
      resolve({ wallMs, requireMs: Number(stdout) });
    });
  });
}
