// The deployed bundle registers exactly the functions the sources do (names, methods, routes, auth level), as the
// Functions worker sees them: a stand-in for `@azure/functions-core` records what the bundle hands the worker.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildBundle } from '../../dev/bundle';
import type { BundleResult } from '../../dev/bundle';
import { loadFunctions } from '../../dev/host';

const ROOT = join(__dirname, '..', '..');

/** What the worker's core API receives from `app.http` (toCoreFunctionMetadata). */
interface CoreMetadata {
  name: string;
  bindings: Record<string, { type: string; direction: string; methods?: string[]; route?: string; authLevel?: string }>;
}

const CORE_STUB = `
const registered = [];
module.exports = {
  setProgrammingModel() {},
  registerFunction(metadata) { registered.push(metadata); return { dispose() {} }; },
  registerHook() { return { dispose() {} }; },
  log() {},
};
process.on('exit', () => process.stdout.write(JSON.stringify(registered)));
`;

describe('the deployed bundle', () => {
  let dir: string;
  let bundle: BundleResult;
  let registered: CoreMetadata[];

  beforeAll(async () => {
    // Outside the repository: the bundle must need nothing from node_modules but the worker's core API.
    dir = mkdtempSync(join(tmpdir(), 'open-dps-bundle-'));
    bundle = await buildBundle(ROOT, join(dir, 'bundle'));
    const core = join(dir, 'node_modules', '@azure', 'functions-core');
    mkdirSync(core, { recursive: true });
    writeFileSync(join(core, 'index.js'), CORE_STUB);
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', `require(${JSON.stringify(bundle.file)})`], {
      cwd: dir,
      timeout: 20_000,
    });
    registered = JSON.parse(stdout) as CoreMetadata[];
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('registers exactly the functions of the sources, with the same methods, routes and auth', async () => {
    const sources = await loadFunctions();
    expect(sources.length).toBeGreaterThan(10);
    // The one timer function (the events sweep) has no route; every other function is HTTP.
    const timers = registered.filter((m) => Object.values(m.bindings).some((b) => b.type === 'timerTrigger'));
    expect(timers.map((m) => m.name)).toEqual(['eventSweep']);
    const fromBundle = registered
      .filter((m) => !timers.includes(m))
      .map((m) => {
        const triggers = Object.values(m.bindings).filter((b) => b.type === 'httpTrigger');
        expect(triggers, m.name).toHaveLength(1);
        const trigger = triggers[0];
        return { name: m.name, methods: trigger?.methods, route: trigger?.route, authLevel: trigger?.authLevel };
      });
    expect(fromBundle).toEqual(
      sources.map((f) => ({ name: f.name, methods: f.methods, route: f.route, authLevel: 'anonymous' })),
    );
  });

  it('is what package.json main and .funcignore deploy, with its source map', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { main: string };
    expect(pkg.main).toBe('dist/bundle/index.js');
    const code = readFileSync(bundle.file, 'utf8');
    expect(code.startsWith('process.setSourceMapsEnabled(true);')).toBe(true);
    expect(code).toMatch(/\/\/# sourceMappingURL=index\.js\.map\s*$/);
    const map = JSON.parse(readFileSync(`${bundle.file}.map`, 'utf8')) as { sources: string[] };
    expect(map.sources.some((s) => s.endsWith('functions/deviceRegister.ts'))).toBe(true);
  });

  it('loads the Azure identity and Key Vault clients on first use only, not at import (cold start)', () => {
    // shared/identity.ts and the Key Vault provider require() them lazily: esbuild wraps those CommonJS builds in
    // functions called on first use. A static `import` anywhere pulls an eagerly evaluated ESM copy in beside them.
    const code = readFileSync(bundle.file, 'utf8');
    for (const pkg of ['identity', 'keyvault-keys']) {
      expect(code, pkg).not.toMatch(new RegExp(`// node_modules/@azure/${pkg}/dist/esm/`));
    }
    expect(code).toMatch(/\/\/ node_modules\/@azure\/identity\/dist\/commonjs\//);
  });
});
