// `npm run package`: one esbuild bundle of every function file, the artifact `azd deploy` ships (dist/bundle/index.js
// + its source map). A fresh worker then reads one file instead of ~22 modules and node_modules (see the bench's cold
// import). Not deployed itself.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

import { build } from 'esbuild';

/** Where `package.json` `main` points and what `.funcignore` lets through. */
export const BUNDLE_DIR = join('dist', 'bundle');

export interface BundleResult {
  /** The bundle's path. */
  file: string;
  /** The function modules it imports, in the order the dev host imports them. */
  functionFiles: string[];
  bytes: number;
}

/**
 * Bundles `functions/*.ts` from `root` into `outDir/index.js`. The entry imports the function files in the order
 * `loadFunctions` (dev/host.ts) does, so both register the same table in the same order.
 */
export async function buildBundle(root: string, outDir = join(root, BUNDLE_DIR)): Promise<BundleResult> {
  const functionsDir = join(root, 'functions');
  const functionFiles = readdirSync(functionsDir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => join(functionsDir, f));
  const file = join(outDir, 'index.js');
  await build({
    stdin: {
      contents: functionFiles.map((f) => `import ${JSON.stringify(`./${relative(root, f)}`)};`).join('\n'),
      resolveDir: root,
      sourcefile: 'functions/index.ts',
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    outfile: file,
    // Provided by the Functions worker at run time; @azure/functions falls back to test mode without it.
    external: ['@azure/functions-core'],
    // Mappings only (no sources inside): stack traces name the TypeScript file and line.
    sourcemap: true,
    sourcesContent: false,
    // Node applies source maps to stack traces only when asked; ask from the bundle so no app setting is needed.
    banner: { js: 'process.setSourceMapsEnabled(true);' },
    logLevel: 'warning',
  });
  return { file, functionFiles, bytes: statSync(file).size };
}

if (require.main === module) {
  const root = join(__dirname, '..', '..');
  buildBundle(root)
    .then((r) => {
      console.log(
        `${relative(root, r.file)}: ${r.functionFiles.length} function files, ${Math.round(r.bytes / 1024)} KiB`,
      );
    })
    .catch((err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    });
}
