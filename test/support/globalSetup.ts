// Starts what the suites share, once: dev certificates (trusted by workers through NODE_EXTRA_CA_CERTS, which Node
// reads only at process start — workers are forked after this runs) and an embedded Azurite Table service.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { TestProject } from 'vitest/node' with { 'resolution-mode': 'import' };

import { startAzuriteTables } from '../../dev/azurite';
import { createDevCertificates } from '../../dev/certs';

declare module 'vitest' {
  export interface ProvidedContext {
    tablesConnectionString: string;
    certs: { caCert: string; serverCert: string; serverKey: string };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'open-dps-test-'));
  const certs = await createDevCertificates(dir);
  process.env.NODE_EXTRA_CA_CERTS = certs.files.caCert;
  const azurite = await startAzuriteTables();
  project.provide('tablesConnectionString', azurite.connectionString);
  project.provide('certs', certs.files);
  return async () => {
    await azurite.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
