// Enrollments for the benchmark, written straight into the host's storage with the host's own settings (scope, master
// key, table prefix) through the project's repositories — as the service API would. Done from the driver, so the
// host reads them cold (its secret cache has not seen them), as a device API instance would.
import { createHmac, randomBytes } from 'node:crypto';

import { loadConfig } from '../shared/config';
import { createServices } from '../shared/services';
import { runPool } from './pool';

export interface SeedPlan {
  groupId: string;
  individualIds: readonly string[];
  /** TPM individual enrollments: registration ID → endorsement key (base64 TPM2B_PUBLIC). */
  tpm?: ReadonlyMap<string, string>;
  concurrency: number;
}

export interface Seeded {
  groupKey: string;
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
  return { groupKey, individualKeys };
}

/** Group device key = base64(HMAC-SHA256(base64decode(groupKey), registrationId)), as test/support/device.ts. */
export const deriveKey = (groupKey: string, registrationId: string): string =>
  createHmac('sha256', Buffer.from(groupKey, 'base64')).update(registrationId).digest('base64');
