// A caller without the device's credential cannot tell which registration IDs are enrolled, nor for which mechanism:
// whatever it presents (a SAS, a TPM endorsement key, a client certificate), an unknown ID, a symmetric-key, TPM or
// X.509 individual enrollment get the same answer (README "Device API"; the reason is in the attestationFailed event).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { makeCert } from '../../dev/testPki';
import { createSas } from '../../shared/http/sas';
import { tableRequestCounter } from '../../shared/storage/tables';
import { rawRequest } from '../support/rawHttps';
import { newKey, serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';
import { foreignEndorsementKey } from '../support/tpmKeys';

describe('device API: refusals do not reveal enrollments', () => {
  let stack: Stack;
  const call = serviceCaller(() => stack);
  const ids = ['oracle-unknown', 'oracle-sym', 'oracle-tpm', 'oracle-x509'];

  beforeAll(async () => {
    stack = await startTestStack({ hubs: { count: 1 } });
    const enroll = async (registrationId: string, attestation: unknown) =>
      expect((await call('PUT', `/enrollments/${registrationId}`, { registrationId, attestation })).status).toBe(200);
    await enroll('oracle-sym', { type: 'symmetricKey' });
    await enroll('oracle-tpm', { type: 'tpm', tpm: { endorsementKey: foreignEndorsementKey() } });
    const enrolled = await makeCert({ cn: 'oracle-x509' });
    await enroll('oracle-x509', {
      type: 'x509',
      x509: { clientCertificates: { primary: { certificate: enrolled.pem } } },
    });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  /** What a stranger sees for `id`, with the ID itself blanked out of the message. */
  async function answers(id: string): Promise<string[]> {
    const resource = `${stack.idScope}/registrations/${id}`;
    const sas = createSas(resource, newKey(), Math.floor(Date.now() / 1000) + 3600, 'registration');
    const ek = foreignEndorsementKey();
    const cert = await makeCert({ cn: id });
    const tls = { cert: cert.pem, key: cert.keyPem };
    const register = `/${resource}/register?api-version=2021-06-01`;
    const json = (body: unknown) => JSON.stringify({ registrationId: id, ...(body as object) });
    const attempts = [
      rawRequest(stack.deviceEndpoint, 'PUT', register, json({}), { Authorization: sas }),
      rawRequest(stack.deviceEndpoint, 'PUT', register, json({ tpm: { endorsementKey: ek, storageRootKey: ek } })),
      rawRequest(stack.deviceEndpoint, 'PUT', register, json({ tpm: { endorsementKey: ek } }), { Authorization: sas }),
      rawRequest(stack.deviceEndpoint, 'PUT', register, json({}), {}, tls),
      rawRequest(stack.deviceEndpoint, 'GET', `/${resource}/operations/x?api-version=2021-06-01`, undefined, {
        Authorization: sas,
      }),
      rawRequest(stack.deviceEndpoint, 'POST', `/${resource}?api-version=2021-06-01`, json({}), { Authorization: sas }),
      rawRequest(stack.deviceEndpoint, 'POST', `/${resource}?api-version=2021-06-01`, json({}), {}, tls),
    ];
    return (await Promise.all(attempts)).map((res) => {
      const message = String((res.json as { message?: string } | undefined)?.message).replaceAll(id, '<id>');
      return `${res.status} ${message}`;
    });
  }

  it('a made-up SAS costs the same Table round trips for an unknown ID and a TPM enrollment (no timing oracle)', async () => {
    // The TPM challenge used to be read separately, after the partition: ~3 ms more for TPM enrollments on Azurite.
    const roundTrips = async (id: string) => {
      const resource = `${stack.idScope}/registrations/${id}`;
      const sas = createSas(resource, newKey(), Math.floor(Date.now() / 1000) + 3600, 'registration');
      const before = tableRequestCounter.count - tableRequestCounter.outbox;
      const res = await rawRequest(stack.deviceEndpoint, 'PUT', `/${resource}/register?api-version=2021-06-01`, '{}', {
        Authorization: sas,
        'Content-Type': 'application/json',
      });
      expect(res.status).toBe(401);
      return tableRequestCounter.count - tableRequestCounter.outbox - before;
    };
    await roundTrips('oracle-unknown'); // warm: the group cache
    expect(await roundTrips('oracle-tpm')).toBe(await roundTrips('oracle-unknown'));
  });

  it('an unknown ID and symmetric-key, TPM and X.509 enrollments get the same answers to every credential', async () => {
    const unknown = await answers('oracle-unknown');
    expect(unknown.every((a) => a.startsWith('401 '))).toBe(true);
    for (const id of ids.slice(1)) expect({ id, answers: await answers(id) }).toEqual({ id, answers: unknown });
  });
});
