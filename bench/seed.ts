// Enrollments for the benchmark, written straight into the host's storage with the host's own settings (scope, master
// key, table prefix) through the project's repositories — as the service API would. Done from the driver, so the
// host reads them cold (its secret cache has not seen them), as a device API instance would.
import { createHmac, randomBytes } from 'node:crypto';

import { makeCert, threeLevelChain } from '../dev/testPki';
import { loadConfig } from '../shared/config';
import { createServices } from '../shared/services';
import { CaCertificateStore } from '../shared/storage/caCertificates';
import { createTables } from '../shared/storage/tables';
import { runPool } from './pool';

export interface SeedPlan {
  groupId: string;
  individualIds: readonly string[];
  /** TPM individual enrollments: registration ID → endorsement key (base64 TPM2B_PUBLIC). */
  tpm?: ReadonlyMap<string, string>;
  concurrency: number;
  /** A symmetric-key group with allocationPolicy custom calling this webhook. */
  custom?: { groupId: string; webhookUrl: string };
}

export interface Seeded {
  groupKey: string;
  /** The custom group's key, when `plan.custom` was given. */
  customGroupKey?: string;
  /** Primary key by registration ID. */
  individualKeys: Map<string, string>;
}

export async function seedEnrollments(settings: Record<string, string>, plan: SeedPlan): Promise<Seeded> {
  const built = createServices(loadConfig(settings));
  await built.ready;
  const { enrollments, groups } = built.services;
  const newKey = () => randomBytes(64).toString('base64');

  const groupKey = newKey();
  await groups.save({
    enrollmentGroupId: plan.groupId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: newKey() } },
  });

  let customGroupKey: string | undefined;
  if (plan.custom) {
    customGroupKey = newKey();
    await groups.save({
      enrollmentGroupId: plan.custom.groupId,
      allocationPolicy: 'custom',
      customAllocationDefinition: { webhookUrl: plan.custom.webhookUrl, apiVersion: '2021-10-01' },
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: customGroupKey, secondaryKey: newKey() } },
    });
  }

  const individualKeys = new Map<string, string>();
  await runPool(plan.individualIds.length, plan.concurrency, async (i) => {
    const registrationId = plan.individualIds[i] ?? '';
    const primaryKey = newKey();
    individualKeys.set(registrationId, primaryKey);
    await enrollments.save({
      registrationId,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: newKey() } },
    });
  });
  const tpm = [...(plan.tpm ?? [])];
  await runPool(tpm.length, plan.concurrency, async (i) => {
    const [registrationId = '', endorsementKey = ''] = tpm[i] ?? [];
    await enrollments.save({ registrationId, attestation: { type: 'tpm', tpm: { endorsementKey } } });
  });
  return { groupKey, individualKeys, ...(customGroupKey ? { customGroupKey } : {}) };
}

/** Group device key = base64(HMAC-SHA256(base64decode(groupKey), registrationId)), as test/support/device.ts. */
export const deriveKey = (groupKey: string, registrationId: string): string =>
  createHmac('sha256', Buffer.from(groupKey, 'base64')).update(registrationId).digest('base64');

export interface X509Device {
  registrationId: string;
  tls: { cert: string; key: string };
  /** The leaf as base64 DER: what a front end forwards in X-ARR-ClientCert. */
  der: string;
}

/**
 * An X.509 group over a 3-level chain (device leaf ← intermediate ← root, ECDSA P-256): the root uploaded and
 * verified, the intermediate uploaded for chain building, the group referencing the root; one leaf per device.
 */
export async function seedX509Group(
  settings: Record<string, string>,
  plan: { groupId: string; registrationIds: readonly string[]; concurrency: number },
): Promise<X509Device[]> {
  const cfg = loadConfig(settings);
  const built = createServices(cfg);
  await built.ready;
  const { root, intermediate } = await threeLevelChain(`${plan.groupId}-unused`);
  const store = new CaCertificateStore(
    createTables({ connectionString: cfg.tablesConnectionString, prefix: cfg.tablePrefix }).config,
  );
  const now = new Date().toISOString();
  for (const [name, cert, isVerified] of [
    [`${plan.groupId}-root`, root, true],
    [`${plan.groupId}-intermediate`, intermediate, false],
  ] as const) {
    await store.save({ name, certificate: cert.der, isVerified, created: now, updated: now });
  }
  await built.services.groups.save({
    enrollmentGroupId: plan.groupId,
    attestation: { type: 'x509', x509: { caReferences: { primary: `${plan.groupId}-root` } } },
  });
  const devices: X509Device[] = [];
  await runPool(plan.registrationIds.length, plan.concurrency, async (i) => {
    const registrationId = plan.registrationIds[i] ?? '';
    const leaf = await makeCert({ cn: registrationId, issuer: intermediate });
    devices[i] = { registrationId, tls: { cert: leaf.pem, key: leaf.keyPem }, der: leaf.der };
  });
  return devices;
}
