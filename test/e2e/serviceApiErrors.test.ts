// Service-API authorization, validation and configuration endpoints, over raw HTTPS and the official service SDK.
import { randomBytes } from 'node:crypto';

import { ProvisioningServiceClient } from 'azure-iot-provisioning-service';
import type { IndividualEnrollment } from 'azure-iot-provisioning-service/dist/interfaces';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { createSas } from '../../shared/http/sas';
import { deriveKey, registerDevice } from '../support/device';
import { expectDpsError } from '../support/rawHttps';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

describe('service API: authorization, validation, configuration', () => {
  let stack: Stack;
  let ownerKey: string;
  const call = serviceCaller(() => stack);

  beforeAll(async () => {
    stack = await startTestStack();
    ownerKey = stack.settings.DPS_SERVICE_OWNER_KEY ?? '';
  });

  afterAll(async () => {
    await stack?.stop();
  });

  describe('authorization', () => {
    it('a wrong key → 401', async () => {
      const wrong = ProvisioningServiceClient.fromConnectionString(
        `HostName=${stack.deviceEndpoint};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=${randomBytes(32).toString('base64')}`,
      );
      await expect(wrong.getIndividualEnrollment('x')).rejects.toMatchObject({ name: 'UnauthorizedError' });
    });

    it('an expired token → 401', async () => {
      const expired = createSas(stack.deviceEndpoint, ownerKey, 1_000_000, 'provisioningserviceowner');
      expectDpsError(await call('GET', '/enrollments/x', undefined, { Authorization: expired }), 401, /expired/);
    });

    it('a token for another host, no policy name, or a Bearer token → 401', async () => {
      const other = createSas(
        'elsewhere.azure-devices-provisioning.net',
        ownerKey,
        inAnHour(),
        'provisioningserviceowner',
      );
      expectDpsError(await call('GET', '/enrollments/x', undefined, { Authorization: other }), 401, /host name/);
      const noSkn = createSas(stack.deviceEndpoint, ownerKey, inAnHour());
      expectDpsError(await call('GET', '/enrollments/x', undefined, { Authorization: noSkn }), 401, /skn/);
      expectDpsError(await call('GET', '/enrollments/x', undefined, { Authorization: 'Bearer abc' }), 401, /Entra/);
    });

    it('a policy without the right gets 401 naming the missing right; with it, the call works', async () => {
      const created = await call('PUT', '/accessPolicies/reader', { rights: 'EnrollmentRead' });
      expect(created.status).toBe(200);
      const reader = created.json as { name: string; rights: string[]; primaryKey: string };
      expect(reader.rights).toEqual(['EnrollmentRead']);
      const client = ProvisioningServiceClient.fromConnectionString(
        `HostName=${stack.deviceEndpoint};SharedAccessKeyName=reader;SharedAccessKey=${reader.primaryKey}`,
      );
      const denied = await client
        .createOrUpdateIndividualEnrollment({
          registrationId: 'reader-1',
          attestation: { type: 'symmetricKey' },
        } as IndividualEnrollment)
        .catch((err: { responseBody?: string }) => err);
      expect(String((denied as { responseBody?: string }).responseBody)).toMatch(/'EnrollmentWrite' right/);
      await expect(client.getIndividualEnrollment('nobody')).rejects.toMatchObject({ response: { statusCode: 404 } });

      // Rotating the key invalidates the old one.
      const rotated = await call('POST', '/accessPolicies/reader/regenerateKey', { keyType: 'primary' });
      expect((rotated.json as { primaryKey: string }).primaryKey).not.toBe(reader.primaryKey);
      await expect(client.getIndividualEnrollment('nobody')).rejects.toMatchObject({ name: 'UnauthorizedError' });

      const list = await call('GET', '/accessPolicies');
      expect(list.text).not.toContain(reader.primaryKey);
      expect(list.json).toEqual(
        expect.arrayContaining([expect.objectContaining({ name: 'reader', rights: ['EnrollmentRead'] })]),
      );
      expectDpsError(await call('DELETE', '/accessPolicies/provisioningserviceowner'), 409);
      expect((await call('DELETE', '/accessPolicies/reader')).status).toBe(204);
    });
  });

  describe('validation (400 with the field named)', () => {
    const put = (id: string, body: unknown) => call('PUT', `/enrollments/${encodeURIComponent(id)}`, body);

    it('malformed JSON', async () => {
      expectDpsError(await call('PUT', '/enrollments/v1', '{"registrationId": "v1",'), 400, /not valid JSON/);
    });

    it('a body labelled with a media type other than JSON is 415/415001, nothing written', async () => {
      const body = { registrationId: 'ct-1', attestation: { type: 'symmetricKey' } };
      const res = await call('PUT', '/enrollments/ct-1', body, { 'Content-Type': 'text/plain' });
      expectDpsError(res, 415, /content type/i);
      expect((res.json as { errorCode: number }).errorCode).toBe(415001);
      expect((await call('GET', '/enrollments/ct-1')).status).toBe(404);
      expect(
        (await call('PUT', '/enrollments/ct-1', body, { 'Content-Type': 'Application/JSON; charset=UTF-8' })).status,
      ).toBe(200);
    });

    it('unknown fields, also nested', async () => {
      expectDpsError(
        await put('v1', { registrationId: 'v1', attestation: { type: 'symmetricKey' }, colour: 'red' }),
        400,
        /'colour'/,
      );
      expectDpsError(
        await put('v1', {
          registrationId: 'v1',
          attestation: { type: 'symmetricKey', symmetricKey: { primary: 'x' } },
        }),
        400,
        /attestation\.symmetricKey\.primary/,
      );
    });

    it('invalid registration IDs: too long, bad characters, path/body mismatch', async () => {
      const long = 'a'.repeat(129);
      expectDpsError(await put(long, { attestation: { type: 'symmetricKey' } }), 400, /registrationId/);
      expectDpsError(await put('bad$id', { attestation: { type: 'symmetricKey' } }), 400, /registrationId/);
      expectDpsError(
        await put('v2', { registrationId: 'v3', attestation: { type: 'symmetricKey' } }),
        400,
        /does not match/,
      );
    });

    it('a symmetric key of the wrong length, or not base64', async () => {
      const short = Buffer.alloc(8).toString('base64');
      expectDpsError(
        await put('v4', { attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: short } } }),
        400,
        /primaryKey.*16 to 64 bytes/,
      );
      expectDpsError(
        await put('v4', { attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'not base64!' } } }),
        400,
        /base64/,
      );
    });

    it('missing attestation, wrong enum values, static naming more than one hub', async () => {
      expectDpsError(await put('v5', {}), 400, /attestation/);
      expectDpsError(await put('v5', { attestation: { type: 'magic' } }), 400, /attestation\.type/);
      expectDpsError(
        await put('v5', { attestation: { type: 'symmetricKey' }, provisioningStatus: 'on' }),
        400,
        /provisioningStatus/,
      );
      expectDpsError(
        await put('v5', {
          attestation: { type: 'symmetricKey' },
          allocationPolicy: 'static',
          iotHubs: ['a.azure-devices.net', 'b.azure-devices.net'],
        }),
        400,
        /iotHubs/,
      );
    });

    it("initial twin keys IoT Hub would refuse ('.', '$', space) are a 400 at enrollment, not at every registration", async () => {
      expectDpsError(
        await put('v6', { attestation: { type: 'symmetricKey' }, initialTwin: { tags: { 'site.name': 'lab' } } }),
        400,
        /initialTwin\.tags.*'site\.name'/,
      );
      const ok = await put('v6', {
        attestation: { type: 'symmetricKey' },
        initialTwin: { properties: { desired: { interval: 5, $metadata: {}, $version: 3 } } },
      });
      expect(ok.status).toBe(200);
      expect((ok.json as { initialTwin: unknown }).initialTwin).toEqual({ properties: { desired: { interval: 5 } } });
    });

    it('bad paging headers and continuation tokens', async () => {
      expectDpsError(await call('POST', '/enrollments/query', { query: '*' }, { 'x-ms-max-item-count': 'ten' }), 400);
      expectDpsError(await call('POST', '/enrollments/query', { query: '*' }, { 'x-ms-continuation': 'garbage' }), 400);
    });

    it('a malformed bulk body changes nothing', async () => {
      const res = await call('POST', '/enrollments/', {
        mode: 'create',
        enrollments: [{ registrationId: 'bulk-ok', attestation: { type: 'symmetricKey' } }, { attestation: {} }],
      });
      expectDpsError(res, 400, /registrationId/);
      expectDpsError(await call('GET', '/enrollments/bulk-ok'), 404);
      expectDpsError(await call('POST', '/enrollments', { mode: 'explode', enrollments: [] }), 400, /mode/);
    });
  });

  describe('service configuration', () => {
    it('links a hub without ever returning its connection string, and devices are allocated to it', async () => {
      const hub = stack.hubs[0];
      if (!hub) throw new Error('no hub');
      const linked = await call('PUT', `/linkedHubs/${hub.hostName}`, {
        connectionString: hub.connectionString,
        allocationWeight: 5,
      });
      expect(linked.status).toBe(200);
      expect(linked.json).toEqual({
        hostName: hub.hostName,
        location: stack.hubLocations[0], // kept from the stack's link, as the PUT leaves it out
        allocationWeight: 5,
        applyAllocationPolicy: true,
        authentication: 'connectionString',
      });
      const list = await call('GET', '/linkedHubs');
      expect(list.text).not.toContain(hub.connectionString.split('SharedAccessKey=')[1] ?? '<none>');
      expectDpsError(
        await call('PUT', '/linkedHubs/other.example.net', { connectionString: hub.connectionString }),
        400,
        /HostName/,
      );
      // Without a connection string, a hub is linked to be called with the service's identity.
      const identityHub = await call('PUT', '/linkedHubs/new.example.net', {});
      expect(identityHub.json).toMatchObject({ hostName: 'new.example.net', authentication: 'identity' });
      expect((await call('DELETE', '/linkedHubs/new.example.net')).status).toBe(204);
    });

    it('sets the default allocation policy (custom is refused, as in DPS)', async () => {
      expectDpsError(await call('PUT', '/serviceConfiguration', { defaultAllocationPolicy: 'custom' }), 400);
      const res = await call('PUT', '/serviceConfiguration', { defaultAllocationPolicy: 'hashed' });
      expect(res.json).toMatchObject({ idScope: stack.idScope, defaultAllocationPolicy: 'hashed' });
    });

    it('unlinking the only hub makes registrations fail with 400208', async () => {
      const hub = stack.hubs[0];
      if (!hub) throw new Error('no hub');
      const groupKey = randomBytes(32).toString('base64');
      expect(
        (
          await call('PUT', '/enrollmentGroups/cfg-group', {
            attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey } },
          })
        ).status,
      ).toBe(200);
      expect((await call('DELETE', `/linkedHubs/${hub.hostName}`)).status).toBe(204);
      await expect(
        registerDevice(stack.deviceEndpoint, stack.idScope, 'cfg-dev-1', deriveKey(groupKey, 'cfg-dev-1')),
      ).rejects.toMatchObject({
        result: { registrationState: { errorCode: 400208 } },
      });
      expectDpsError(await call('DELETE', `/linkedHubs/${hub.hostName}`), 404);
    });
  });
});
