// Bulk results per item, whatever an item's failure is: the caller must learn exactly what was written.
import { describe, expect, it, vi } from 'vitest';

import type { IndividualEnrollment } from '../../shared/domain/enrollment';
import type { ServiceAuthorizer } from '../../shared/management/auth';
import { EnrollmentManager, individualKind } from '../../shared/management/enrollments';
import type { EnrollmentTable } from '../../shared/storage/enrollmentTable';

function manager(failOn: string) {
  const written: string[] = [];
  const table = {
    create: (e: IndividualEnrollment) => {
      if (e.registrationId === failOn) return Promise.reject(new Error('storage said no (secret detail)'));
      written.push(e.registrationId);
      return Promise.resolve('etag');
    },
  } as unknown as EnrollmentTable<IndividualEnrollment>;
  const auth = { require: () => Promise.resolve() } as unknown as ServiceAuthorizer;
  const bulk = new EnrollmentManager(
    individualKind,
    table,
    auth,
    () => new Date(0),
    () => undefined,
  );
  return { bulk, written };
}

describe('EnrollmentManager.bulk', () => {
  it('an unexpected storage failure of one item is that item’s error (500000 with a tracking ID), not a 500', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const { bulk, written } = manager('b');
    const items = ['a', 'b', 'c'].map((registrationId) => ({ registrationId, attestation: { type: 'symmetricKey' } }));
    const result = await bulk.bulk({
      authorization: 'x',
      host: undefined,
      pageSize: 100,
      body: { mode: 'create', enrollments: items },
    });
    expect(result.status).toBe(200);
    expect(written.sort()).toEqual(['a', 'c']);
    const body = result.body as { isSuccessful: boolean; errors: { registrationId: string; errorStatus: string }[] };
    expect(body).toMatchObject({ isSuccessful: false, errors: [{ registrationId: 'b', errorCode: 500000 }] });
    expect(body.errors[0]?.errorStatus).toMatch(/^Internal server error\. Tracking ID: [0-9a-f-]{36}\.$/);
    expect(JSON.stringify(body)).not.toContain('secret detail');
    expect(errors).toHaveBeenCalledOnce();
    errors.mockRestore();
  });
});
