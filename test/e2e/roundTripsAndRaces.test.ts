// Issue 7, wire compatibility and races on the service API, with the official SDKs against the dev stack: static
// allocation without iotHubs, X.509 enrollments written back as they were read, and key rotation racing keyless PUTs.

import { ProvisioningServiceClient } from 'azure-iot-provisioning-service';
import type {
  BulkEnrollmentOperation,
  BulkEnrollmentOperationResult,
  EnrollmentGroup,
  IndividualEnrollment,
} from 'azure-iot-provisioning-service/dist/interfaces';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createCa } from '../../dev/certs';
import type { Stack } from '../../dev/stack';
import { deriveKey, registerDevice } from '../support/device';
import type { ServiceCall } from '../support/service';
import { newKey, serviceCaller, symmetric } from '../support/service';
import { startTestStack } from '../support/stack';

describe('service API round trips and races (official SDKs)', () => {
  let stack: Stack;
  let dps: ProvisioningServiceClient;
  let call: ServiceCall;

  // The promise form of runBulkEnrollmentOperation never settles (reference/official-clients.md §0): callback.
  const bulk = (op: BulkEnrollmentOperation) =>
    new Promise<BulkEnrollmentOperationResult>((resolve, reject) => {
      dps.runBulkEnrollmentOperation(op, (err, result) =>
        err ? reject(err) : resolve(result as BulkEnrollmentOperationResult),
      );
    });

  beforeAll(async () => {
    stack = await startTestStack({ hubs: { count: 2 } });
    dps = ProvisioningServiceClient.fromConnectionString(stack.serviceConnectionString);
    call = serviceCaller(() => stack);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  describe("allocationPolicy 'static' without iotHubs", () => {
    it('is accepted for enrollments and groups; one linked hub assigns, two fail with what to set', async () => {
      const individualKey = newKey();
      await dps.createOrUpdateIndividualEnrollment({
        registrationId: 'static-individual',
        attestation: symmetric(individualKey, newKey()),
        allocationPolicy: 'static',
      } as IndividualEnrollment);
      const groupKey = newKey();
      await dps.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: 'static-group',
        attestation: symmetric(groupKey, newKey()),
        allocationPolicy: 'static',
      } as EnrollmentGroup);
      const created = await bulk({
        mode: 'create',
        enrollments: [
          { registrationId: 'static-bulk', attestation: symmetric(newKey(), newKey()), allocationPolicy: 'static' },
        ] as IndividualEnrollment[],
      });
      expect(created).toEqual({ isSuccessful: true, errors: [] });

      // Two linked hubs: ambiguous, so the registration fails and says what to set.
      const failed = await registerDevice(stack.deviceEndpoint, stack.idScope, 'static-individual', individualKey).then(
        () => undefined,
        (err: { result?: { registrationState?: Record<string, unknown> } }) => err.result?.registrationState,
      );
      expect(failed).toMatchObject({ status: 'failed', errorCode: 400208 });
      expect(String(failed?.errorMessage)).toMatch(/'static'.*2 linked IoT hubs.*iotHubs/);
      expect(stack.hubs[0]?.deviceCount()).toBe(0);
      expect(stack.hubs[1]?.deviceCount()).toBe(0);

      // One linked hub: it is the hub.
      const second = stack.hubs[1];
      expect((await call('DELETE', `/linkedHubs/${second?.hostName ?? ''}`)).status).toBe(204);
      try {
        const assigned = await registerDevice(stack.deviceEndpoint, stack.idScope, 'static-individual', individualKey);
        expect(assigned).toMatchObject({ status: 'assigned', assignedHub: stack.hubs[0]?.hostName });
        const grouped = await registerDevice(
          stack.deviceEndpoint,
          stack.idScope,
          'static-group-device',
          deriveKey(groupKey, 'static-group-device'),
        );
        expect(grouped).toMatchObject({ status: 'assigned', assignedHub: stack.hubs[0]?.hostName });
      } finally {
        const relinked = await call('PUT', `/linkedHubs/${second?.hostName ?? ''}`, {
          connectionString: second?.connectionString,
        });
        expect(relinked.status).toBe(200);
      }
    });
  });

  describe('X.509 enrollments read back and written back', () => {
    let certA = '';
    let certB = '';
    beforeAll(async () => {
      certA = (await createCa('round-trip-a')).cert;
      certB = (await createCa('round-trip-b')).cert;
      // caReferences must name uploaded, verified CA certificates (self-attested here, as ARM allows).
      for (const [name, certificate] of [
        ['my-ca', certA],
        ['my-other-ca', certB],
      ] as const) {
        const res = await call('PUT', `/certificates/${name}`, { properties: { certificate, isVerified: true } });
        expect(res.status, res.text).toBe(200);
      }
    });

    it('an individual enrollment: get → modify → update (If-Match) keeps the stored certificate', async () => {
      await dps.createOrUpdateIndividualEnrollment({
        registrationId: 'x509-round-trip',
        attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: certA } } } },
      } as unknown as IndividualEnrollment);
      const fetched = (await dps.getIndividualEnrollment('x509-round-trip')).responseBody;
      const primary = fetched.attestation.x509?.clientCertificates?.primary as unknown as Record<string, unknown>;
      expect(primary.certificate).toBeUndefined();
      expect(primary.info).toMatchObject({ subjectName: 'CN=round-trip-a' });

      // What the SDK's own e2e does: send the fetched object back with a change (its etag becomes If-Match).
      fetched.provisioningStatus = 'disabled';
      fetched.initialTwin = { tags: { site: 'b' } } as unknown as IndividualEnrollment['initialTwin'];
      const updated = (await dps.createOrUpdateIndividualEnrollment(fetched)).responseBody;
      expect(updated).toMatchObject({ provisioningStatus: 'disabled', initialTwin: { tags: { site: 'b' } } });
      expect(updated.etag).not.toBe(fetched.etag);

      const stored = (await dps.getIndividualEnrollmentAttestationMechanism('x509-round-trip')).responseBody;
      expect(stored.x509?.clientCertificates?.primary).toMatchObject({ certificate: certA });

      // The stale ETag (the pre-update one) is refused: the round trip really was conditional.
      await expect(dps.createOrUpdateIndividualEnrollment(fetched)).rejects.toMatchObject({
        response: { statusCode: 412 },
      });
    });

    it('a group with signing certificates and one with a CA reference round-trip alike; a new slot needs its certificate', async () => {
      await dps.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: 'x509-group-round-trip',
        attestation: {
          type: 'x509',
          x509: { signingCertificates: { primary: { certificate: certA }, secondary: { certificate: certB } } },
        },
      } as unknown as EnrollmentGroup);
      const fetched = (await dps.getEnrollmentGroup('x509-group-round-trip')).responseBody;
      fetched.provisioningStatus = 'disabled';
      await dps.createOrUpdateEnrollmentGroup(fetched);
      const stored = (await dps.getEnrollmentGroupAttestationMechanism('x509-group-round-trip')).responseBody;
      expect(stored.x509?.signingCertificates).toMatchObject({
        primary: { certificate: certA },
        secondary: { certificate: certB },
      });

      await dps.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: 'x509-ca-round-trip',
        attestation: { type: 'x509', x509: { caReferences: { primary: 'my-ca', secondary: 'my-other-ca' } } },
      } as unknown as EnrollmentGroup);
      const ca = (await dps.getEnrollmentGroup('x509-ca-round-trip')).responseBody;
      ca.provisioningStatus = 'disabled';
      const caUpdated = (await dps.createOrUpdateEnrollmentGroup(ca)).responseBody;
      expect(caUpdated.attestation.x509?.caReferences).toEqual({ primary: 'my-ca', secondary: 'my-other-ca' });

      // Only info for a slot that has no stored certificate: nothing to keep, a 400 naming the field.
      const res = await call('PUT', '/enrollments/x509-no-such-cert', {
        registrationId: 'x509-no-such-cert',
        attestation: { type: 'x509', x509: { clientCertificates: { primary: { info: { subjectName: 'CN=x' } } } } },
      });
      expect(res.status).toBe(400);
      expect((res.json as { message: string }).message).toContain(
        'attestation.x509.clientCertificates.primary.certificate',
      );
    });

    it('bulk updateIfMatchEtag (as the Node SDK spells it) carries certificates over the same way', async () => {
      const fetched = (await dps.getIndividualEnrollment('x509-round-trip')).responseBody;
      fetched.provisioningStatus = 'enabled';
      expect(await bulk({ mode: 'updateIfMatchEtag', enrollments: [fetched] })).toEqual({
        isSuccessful: true,
        errors: [],
      });
      const stored = (await dps.getIndividualEnrollmentAttestationMechanism('x509-round-trip')).responseBody;
      expect(stored.x509?.clientCertificates?.primary).toMatchObject({ certificate: certA });
    });
  });

  describe('a key rotation racing keyless writes', () => {
    const primaryOf = async (id: string) =>
      (await dps.getIndividualEnrollmentAttestationMechanism(id)).responseBody.symmetricKey?.primaryKey;

    it('the rotated key always survives (PUT and bulk update), and the device then authenticates only with it', async () => {
      const id = 'rotation-race';
      const trials = 20;
      let oldKey = newKey();
      let newPrimary = oldKey;
      for (let trial = 0; trial < trials; trial++) {
        oldKey = newKey();
        await call('PUT', `/enrollments/${id}`, { registrationId: id, attestation: symmetric(oldKey, newKey()) });
        newPrimary = newKey();
        const keyless = (i: number) =>
          trial % 2 === 0
            ? call('PUT', `/enrollments/${id}`, {
                registrationId: id,
                attestation: { type: 'symmetricKey' },
                initialTwin: { tags: { writer: i } },
              })
            : call('POST', '/enrollments', {
                mode: 'update',
                enrollments: [
                  { registrationId: id, attestation: { type: 'symmetricKey' }, initialTwin: { tags: { i } } },
                ],
              });
        const rotate = call('PUT', `/enrollments/${id}`, {
          registrationId: id,
          attestation: symmetric(newPrimary, newKey()),
        });
        const results = await Promise.all([keyless(1), keyless(2), rotate, keyless(3), keyless(4)]);
        for (const res of results) expect(res.status).toBe(200);
        for (const res of results.filter((r) => (r.json as { isSuccessful?: boolean }).isSuccessful !== undefined)) {
          expect(res.json).toMatchObject({ isSuccessful: true });
        }
        expect(await primaryOf(id), `trial ${trial}`).toBe(newPrimary);
      }

      const assigned = await registerDevice(stack.deviceEndpoint, stack.idScope, id, newPrimary);
      expect(assigned.status).toBe('assigned');
      await expect(registerDevice(stack.deviceEndpoint, stack.idScope, id, oldKey)).rejects.toMatchObject({
        name: 'UnauthorizedError',
      });
    });
  });
});
