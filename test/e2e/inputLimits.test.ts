// Issue 7, bad input that gave 5xx or was accepted and failed later, and the hardening settings, against the dev
// stack: JSON nesting, initial twins deeper than IoT Hub allows, hub host names, query caps, key strength, SAS lifetime.

import { randomBytes } from 'node:crypto';

import { ProvisioningServiceClient } from 'azure-iot-provisioning-service';
import type { IndividualEnrollment } from 'azure-iot-provisioning-service/dist/interfaces';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { DEFAULT_MAX_SAS_LIFETIME_SECONDS } from '../../shared/config';
import { createSas } from '../../shared/http/sas';
import { registerDevice } from '../support/device';
import { expectDpsError, rawRequest } from '../support/rawHttps';
import type { ServiceCall } from '../support/service';
import { newKey, serviceCaller, symmetric } from '../support/service';
import { startTestStack } from '../support/stack';

/** `{level1: {level2: … {property: 'value'}}}`: `levels` nested objects. Built as text: no recursion anywhere. */
const nestedText = (levels: number): string =>
  `${Array.from({ length: levels }, (_, i) => `{"level${i + 1}":`).join('')}{"property":"value"}${'}'.repeat(levels)}`;
const nested = (levels: number): Record<string, unknown> => JSON.parse(nestedText(levels)) as Record<string, unknown>;

describe('input limits and hardening settings (dev stack)', () => {
  let stack: Stack;
  let dps: ProvisioningServiceClient;
  let call: ServiceCall;
  const hubDevices = () => stack.hubs[0]?.deviceCount() ?? -1;

  beforeAll(async () => {
    stack = await startTestStack();
    dps = ProvisioningServiceClient.fromConnectionString(stack.serviceConnectionString);
    call = serviceCaller(() => stack);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  describe('JSON nested too deep → 400 before any side effect', () => {
    it('a device payload too deep (official device SDK; raw 5,000 levels): 400, and the hub gets no device', async () => {
      const key = newKey();
      await dps.createOrUpdateIndividualEnrollment({
        registrationId: 'deep-payload',
        attestation: symmetric(key, newKey()),
      } as IndividualEnrollment);
      const before = hubDevices();
      await expect(
        registerDevice(stack.deviceEndpoint, stack.idScope, 'deep-payload', key, nested(100)),
      ).rejects.toMatchObject({
        name: 'ArgumentError',
        message: expect.stringContaining('more than 64 levels deep') as unknown,
      });
      // The device SDK itself overflows its stack on 5,000 levels: what a hostile client sends, sent raw.
      const token = createSas(`${stack.idScope}/registrations/deep-payload`, key, Math.floor(Date.now() / 1000) + 600);
      const res = await rawRequest(
        stack.deviceEndpoint,
        'PUT',
        `/${stack.idScope}/registrations/deep-payload/register?api-version=2019-03-31`,
        `{"registrationId":"deep-payload","payload":${nestedText(5000)}}`,
        { Authorization: token, 'Content-Type': 'application/json' },
      );
      expectDpsError(res, 400, /more than 64 levels deep/);
      expect(hubDevices()).toBe(before);
      // The limit is generous: a 60-level payload is fine.
      const ok = await registerDevice(stack.deviceEndpoint, stack.idScope, 'deep-payload', key, nested(60));
      expect(ok.status).toBe('assigned');
    });

    it('an initial twin, optionalDeviceInformation or bulk item 5,000 levels deep: 400 naming the limit', async () => {
      const deep = nestedText(5000);
      const attestation = `{"type":"symmetricKey"}`;
      for (const [path, body] of [
        [
          '/enrollments/deep-twin',
          `{"registrationId":"deep-twin","attestation":${attestation},"initialTwin":{"tags":${deep}}}`,
        ],
        [
          '/enrollments/deep-info',
          `{"registrationId":"deep-info","attestation":${attestation},"optionalDeviceInformation":${deep}}`,
        ],
        [
          '/enrollments',
          `{"mode":"create","enrollments":[{"registrationId":"deep-bulk","attestation":${attestation},"initialTwin":{"properties":{"desired":${deep}}}}]}`,
        ],
        [
          '/enrollmentGroups/deep-group',
          `{"enrollmentGroupId":"deep-group","attestation":${attestation},"initialTwin":{"tags":${deep}}}`,
        ],
      ] as const) {
        const res = await call(path.endsWith('/enrollments') ? 'POST' : 'PUT', path, body);
        expectDpsError(res, 400, /more than 64 levels deep/);
      }
      for (const id of ['deep-twin', 'deep-info', 'deep-bulk'])
        expect((await call('GET', `/enrollments/${id}`)).status).toBe(404);
      expect((await call('GET', '/enrollmentGroups/deep-group')).status).toBe(404);
    });
  });

  describe('initial twin deeper than IoT Hub allows', () => {
    it('11 levels under tags or desired → 400 naming the field; 10 levels reach the hub twin', async () => {
      for (const [field, initialTwin] of [
        ['initialTwin.tags', { tags: nested(11) }],
        ['initialTwin.properties.desired', { properties: { desired: nested(11) } }],
      ] as const) {
        const res = await call('PUT', '/enrollments/twin-11', {
          registrationId: 'twin-11',
          attestation: { type: 'symmetricKey' },
          initialTwin,
        });
        expectDpsError(res, 400, new RegExp(`'${field.replace(/\./g, '\\.')}'.*at most 10`));
      }
      const key = newKey();
      const initialTwin = { tags: nested(10), properties: { desired: nested(10) } };
      await dps.createOrUpdateIndividualEnrollment({
        registrationId: 'twin-10',
        attestation: symmetric(key, newKey()),
        initialTwin,
      } as unknown as IndividualEnrollment);
      const result = await registerDevice(stack.deviceEndpoint, stack.idScope, 'twin-10', key);
      expect(result.status).toBe('assigned');
      expect(stack.hubs[0]?.twin('twin-10')).toMatchObject({ tags: nested(10) });
    });
  });

  describe('hub host names and queries', () => {
    it('refuses a 40,000-character or malformed iotHubHostName, malformed iotHubs entries and too many hubs', async () => {
      const body = (extra: Record<string, unknown>) => ({
        registrationId: 'hub-names',
        attestation: { type: 'symmetricKey' },
        ...extra,
      });
      expectDpsError(
        await call('PUT', '/enrollments/hub-names', body({ iotHubHostName: 'h'.repeat(40_000) })),
        400,
        /'iotHubHostName'.*253/,
      );
      expectDpsError(
        await call('PUT', '/enrollments/hub-names', body({ iotHubs: ['ok.azure-devices.net', 'bad/hub'] })),
        400,
        /'iotHubs\[1\]'/,
      );
      const many = Array.from({ length: 51 }, (_, i) => `hub-${i}.azure-devices.net`);
      expectDpsError(await call('PUT', '/enrollments/hub-names', body({ iotHubs: many })), 400, /at most 50/);
    });

    it('caps queries: text length, number of conditions and value length, stating the limit', async () => {
      const where = Array.from({ length: 2000 }, (_, i) => `deviceId = 'd${i}'`).join(' AND ');
      expectDpsError(
        await call('POST', '/enrollments/query', { query: `SELECT * FROM enrollments WHERE ${where}` }),
        400,
        /at most 4096/,
      );
      const eleven = Array.from({ length: 11 }, (_, i) => `deviceId != 'd${i}'`).join(' AND ');
      expectDpsError(
        await call('POST', '/enrollments/query', { query: `SELECT * WHERE ${eleven}` }),
        400,
        /at most 10 conditions|at most 10 are allowed/,
      );
      expectDpsError(
        await call('POST', '/enrollments/query', { query: `SELECT * WHERE deviceId = '${'v'.repeat(100_000)}'` }),
        400,
        /at most 4096/,
      );
      expectDpsError(
        await call('POST', '/enrollments/query', { query: `SELECT * WHERE deviceId = '${'v'.repeat(600)}'` }),
        400,
        /at most 512/,
      );
    });
  });

  describe('service API bodies of unauthenticated callers', () => {
    it('are not parsed: a forged token with a malformed, too deep or 6 MB body is a 401, never a 400 about the body', async () => {
      // Parsing first let anyone make an instance spend seconds of CPU and ~1 GB of heap per 16 MB body of `[{},…]`.
      const forged = createSas(
        stack.deviceEndpoint,
        newKey(),
        Math.floor(Date.now() / 1000) + 3600,
        'provisioningserviceowner',
      );
      const many = `[${Array.from({ length: 2_000_000 }, () => '{}').join(',')}]`;
      for (const [body, headers] of [
        ['{', { Authorization: forged }],
        [nestedText(5000), { Authorization: forged }],
        [many, { Authorization: forged }],
        [many, {}],
      ] as const) {
        const res = await rawRequest(
          stack.deviceEndpoint,
          'PUT',
          '/enrollments/stranger?api-version=2021-10-01',
          body,
          {
            'Content-Type': 'application/json',
            ...headers,
          },
        );
        expectDpsError(res, 401);
      }
      expectDpsError(await call('PUT', '/enrollments/stranger', '{'), 400, /not valid JSON/);
    });
  });

  describe('hardening settings', () => {
    it('refuses caller-chosen access-policy keys shorter than 32 bytes', async () => {
      const short = randomBytes(16).toString('base64');
      expectDpsError(
        await call('PUT', '/accessPolicies/weak', { rights: 'EnrollmentRead', primaryKey: short }),
        400,
        /'primaryKey'.*32/,
      );
      const strong = randomBytes(32).toString('base64');
      const created = await call('PUT', '/accessPolicies/strong', { rights: 'EnrollmentRead', primaryKey: strong });
      expect(created.status).toBe(200);
    });

    it('refuses service and device tokens valid for longer than DPS_MAX_SAS_LIFETIME_SECONDS with a 401 naming it', async () => {
      const tooLate = Math.floor(Date.now() / 1000) + DEFAULT_MAX_SAS_LIFETIME_SECONDS + 3600;
      const service = createSas(
        stack.deviceEndpoint,
        stack.settings.DPS_SERVICE_OWNER_KEY ?? '',
        tooLate,
        'provisioningserviceowner',
      );
      const res = await rawRequest(
        stack.deviceEndpoint,
        'GET',
        '/enrollments/anything?api-version=2021-10-01',
        undefined,
        { Authorization: service },
      );
      expectDpsError(res, 401, /DPS_MAX_SAS_LIFETIME_SECONDS/);

      const key = newKey();
      await dps.createOrUpdateIndividualEnrollment({
        registrationId: 'long-token',
        attestation: symmetric(key, newKey()),
      } as IndividualEnrollment);
      const device = createSas(`${stack.idScope}/registrations/long-token`, key, tooLate, 'registration');
      const before = hubDevices();
      const put = await rawRequest(
        stack.deviceEndpoint,
        'PUT',
        `/${stack.idScope}/registrations/long-token/register?api-version=2019-03-31`,
        JSON.stringify({ registrationId: 'long-token' }),
        { Authorization: device, 'Content-Type': 'application/json' },
      );
      expectDpsError(put, 401, /at most 31536000 seconds/);
      expect(hubDevices()).toBe(before);
    });
  });
});
