// Bulk results per item, whatever an item's failure is: the caller must learn exactly what was written.
import { describe, expect, it, vi } from 'vitest';

import type { EnrollmentGroup, IndividualEnrollment } from '../../shared/domain/enrollment';
import type { ServiceAuthorizer } from '../../shared/management/auth';
import { CertificateManager } from '../../shared/management/certificates';
import { EnrollmentManager, groupKind, individualKind } from '../../shared/management/enrollments';
import type { CaCertificateStore } from '../../shared/storage/caCertificates';
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

describe('EnrollmentManager.bulk of X.509 groups referencing CAs', () => {
  it('reads the CA list once for the whole request, and still refuses each item naming an unverified CA', async () => {
    let lists = 0;
    const store = {
      list: () => {
        lists++;
        return Promise.resolve([
          { value: { name: 'root', certificate: '', isVerified: true }, etag: 'e1' },
          { value: { name: 'pending', certificate: '', isVerified: false }, etag: 'e2' },
        ]);
      },
    } as unknown as CaCertificateStore;
    const auth = { require: () => Promise.resolve() } as unknown as ServiceAuthorizer;
    const certificates = new CertificateManager({ store, auth, clock: () => new Date(0), changed: () => undefined });
    const written: string[] = [];
    const table = {
      create: (g: EnrollmentGroup) => {
        written.push(g.enrollmentGroupId);
        return Promise.resolve('etag');
      },
    } as unknown as EnrollmentTable<EnrollmentGroup>;
    const groups = new EnrollmentManager(
      groupKind,
      table,
      auth,
      () => new Date(0),
      () => undefined,
      undefined,
      () => certificates.caReferenceCheck(),
    );
    const items = Array.from({ length: 40 }, (_, i) => ({
      enrollmentGroupId: `g${i}`,
      attestation: { type: 'x509', x509: { caReferences: { primary: i === 7 ? 'pending' : 'root' } } },
    }));
    const result = await groups.bulk({
      authorization: 'x',
      host: undefined,
      pageSize: 100,
      body: { mode: 'create', enrollmentGroups: items },
    });
    expect(lists).toBe(1);
    expect(written).toHaveLength(39);
    expect(result.body).toMatchObject({
      isSuccessful: false,
      errors: [
        {
          enrollmentGroupId: 'g7',
          errorCode: 400004,
          errorStatus:
            "Invalid field 'attestation.x509.caReferences.primary': the CA certificate 'pending' is not verified: prove possession of its key first.",
        },
      ],
    });
  });
});
