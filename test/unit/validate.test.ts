import { createHash, X509Certificate } from 'node:crypto';

import { beforeAll, describe, expect, it } from 'vitest';

import { createCa } from '../../dev/certs';
import { makeCert } from '../../dev/testPki';
import { certificateInfo, parseEnrollmentGroup, parseIndividualEnrollment } from '../../shared/domain/validate';
import { DpsError } from '../../shared/errors';
import { CAPTURED_EK, CAPTURED_SRK } from '../support/tpmKeys';

const KEY_32 = Buffer.alloc(32, 7).toString('base64');
const keyOf = (bytes: number): string => Buffer.alloc(bytes, 0xab).toString('base64');

/** `{one: {two: … {property: 'value'}}}` with `levels` nested objects, like the IoT Hub docs' depth example. */
const nested = (levels: number): Record<string, unknown> => {
  let value: Record<string, unknown> = { property: 'value' };
  for (let i = levels; i > 0; i--) value = { [`level${i}`]: value };
  return value;
};
const symmetric = (extra: Record<string, unknown> = {}) => ({
  type: 'symmetricKey',
  symmetricKey: { primaryKey: KEY_32, secondaryKey: KEY_32 },
  ...extra,
});
const individual = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  registrationId: 'device-1',
  attestation: symmetric(),
  ...extra,
});
const group = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  enrollmentGroupId: 'group-1',
  attestation: symmetric(),
  ...extra,
});

/** The captured EK with its type changed to ECC (0x0023). */
function ecc(): string {
  const bytes = Buffer.from(CAPTURED_EK, 'base64');
  bytes.writeUInt16BE(0x0023, 2);
  return bytes.toString('base64');
}

/** The 400 a parse throws; the test fails if it does not throw a DpsError. */
function rejection(parse: () => unknown): DpsError {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(DpsError);
    expect(err).toMatchObject({ status: 400 });
    return err as DpsError;
  }
  throw new Error('the body was accepted');
}

/** Rejected with a 400 whose message names `field` (quoted, as the validator writes it). */
const expectFieldError = (parse: () => unknown, field: string): void => {
  expect(rejection(parse).message).toContain(`'${field}'`);
};
const rejectIndividual = (body: unknown, field: string, pathId = 'device-1'): void =>
  expectFieldError(() => parseIndividualEnrollment(body, pathId), field);
const rejectGroup = (body: unknown, field: string, pathId = 'group-1'): void =>
  expectFieldError(() => parseEnrollmentGroup(body, pathId), field);

let CERT_PEM = '';
let CERT_DER_B64 = '';
beforeAll(async () => {
  CERT_PEM = (await createCa('validate-test-device')).cert;
  CERT_DER_B64 = CERT_PEM.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
});

describe('parseIndividualEnrollment: valid bodies', () => {
  it('minimal symmetric-key enrollment: registration ID from the body, provisioning enabled by default', () => {
    expect(parseIndividualEnrollment(individual(), 'device-1')).toEqual({
      registrationId: 'device-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY_32, secondaryKey: KEY_32 } },
      provisioningStatus: 'enabled',
    });
  });

  it('takes the registration ID from the path when the body has none', () => {
    expect(parseIndividualEnrollment({ attestation: symmetric() }, 'from-path').registrationId).toBe('from-path');
  });

  it('symmetric keys may be left out (the service generates them)', () => {
    const e = parseIndividualEnrollment({ attestation: { type: 'symmetricKey' } }, 'device-1');
    expect(e.attestation).toEqual({ type: 'symmetricKey', symmetricKey: {} });
  });

  it('path/body registration ID mismatch in case only is accepted (IDs are case-insensitive)', () => {
    expect(parseIndividualEnrollment(individual({ registrationId: 'Device-1' }), 'dEVICE-1').registrationId).toBe(
      'Device-1',
    );
  });

  it('keeps every writable field', () => {
    const e = parseIndividualEnrollment(
      individual({
        deviceId: "dev.1_(a):b=c@d$e'f!g*h?i,j%k",
        capabilities: { iotEdge: true },
        iotHubHostName: 'hub-a.azure-devices.net',
        initialTwin: { tags: { env: 'prod' }, properties: { desired: { interval: 5 } } },
        provisioningStatus: 'disabled',
        reprovisionPolicy: { updateHubAssignment: false },
        allocationPolicy: 'hashed',
        iotHubs: ['hub-a.azure-devices.net', 'hub-b.azure-devices.net'],
        optionalDeviceInformation: { model: 'x' },
      }),
      'device-1',
    );
    expect(e).toMatchObject({
      deviceId: "dev.1_(a):b=c@d$e'f!g*h?i,j%k",
      capabilities: { iotEdge: true },
      iotHubHostName: 'hub-a.azure-devices.net',
      initialTwin: { tags: { env: 'prod' }, properties: { desired: { interval: 5 } } },
      provisioningStatus: 'disabled',
      reprovisionPolicy: { updateHubAssignment: false, migrateDeviceData: true },
      allocationPolicy: 'hashed',
      iotHubs: ['hub-a.azure-devices.net', 'hub-b.azure-devices.net'],
      optionalDeviceInformation: { model: 'x' },
    });
  });

  it('reprovisionPolicy defaults both flags to true; capabilities.iotEdge defaults to false', () => {
    const e = parseIndividualEnrollment(individual({ reprovisionPolicy: {}, capabilities: {} }), 'device-1');
    expect(e.reprovisionPolicy).toEqual({ updateHubAssignment: true, migrateDeviceData: true });
    expect(e.capabilities).toEqual({ iotEdge: false });
  });

  it('null optional fields are treated as absent', () => {
    const e = parseIndividualEnrollment(
      individual({
        deviceId: null,
        capabilities: null,
        initialTwin: null,
        provisioningStatus: null,
        reprovisionPolicy: null,
        allocationPolicy: null,
        iotHubs: null,
        customAllocationDefinition: null,
        optionalDeviceInformation: null,
      }),
      'device-1',
    );
    expect(e).toEqual({
      registrationId: 'device-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY_32, secondaryKey: KEY_32 } },
      provisioningStatus: 'enabled',
    });
  });

  it('read-only fields (etag, timestamps, registrationState) are accepted and dropped', () => {
    const e = parseIndividualEnrollment(
      individual({
        etag: '"AAAA"',
        createdDateTimeUtc: '2020-01-01T00:00:00Z',
        lastUpdatedDateTimeUtc: '2020-01-02T00:00:00Z',
        registrationState: { registrationId: 'device-1', status: 'assigned' },
        credentialPolicyName: 'default',
      }),
      'device-1',
    );
    for (const field of ['etag', 'createdDateTimeUtc', 'lastUpdatedDateTimeUtc', 'registrationState']) {
      expect(e).not.toHaveProperty(field);
    }
  });

  it('TPM attestation keeps its endorsement and storage root keys', () => {
    const e = parseIndividualEnrollment(
      individual({ attestation: { type: 'tpm', tpm: { endorsementKey: CAPTURED_EK, storageRootKey: CAPTURED_SRK } } }),
      'device-1',
    );
    expect(e.attestation).toEqual({ type: 'tpm', tpm: { endorsementKey: CAPTURED_EK, storageRootKey: CAPTURED_SRK } });
  });

  it('TPM keys are stored canonically: base64 of the TPM2B_PUBLIC, padded, one line', () => {
    const bare = Buffer.from(CAPTURED_EK, 'base64').subarray(2).toString('base64');
    const wrapped = (CAPTURED_SRK.match(/.{1,64}/g) ?? []).join('\n').replace(/=+$/, '');
    const e = parseIndividualEnrollment(
      individual({ attestation: { type: 'tpm', tpm: { endorsementKey: bare, storageRootKey: wrapped } } }),
      'device-1',
    );
    expect(e.attestation).toEqual({ type: 'tpm', tpm: { endorsementKey: CAPTURED_EK, storageRootKey: CAPTURED_SRK } });
  });

  it.each([
    ['an ECC endorsement key', 'endorsementKey', { endorsementKey: ecc() }, /RSA-2048 TPM2B_PUBLIC \(an ECC key/],
    [
      'a truncated storage root key',
      'storageRootKey',
      { endorsementKey: CAPTURED_EK, storageRootKey: CAPTURED_SRK.slice(0, 100) },
      /does not match/,
    ],
    ['a huge endorsement key', 'endorsementKey', { endorsementKey: 'A'.repeat(1_000_000) }, /too long/],
    ['a symmetric key as EK', 'endorsementKey', { endorsementKey: KEY_32 }, /RSA-2048 TPM2B_PUBLIC/],
  ])('refuses %s with a 400 naming the field and the reason', (_, field, tpm, message) => {
    const err = rejection(() =>
      parseIndividualEnrollment(individual({ attestation: { type: 'tpm', tpm } }), 'device-1'),
    );
    expect(err.status).toBe(400);
    expect(err.message).toContain(`'attestation.tpm.${field}'`);
    expect(err.message).toMatch(message);
  });

  it("attestation type 'none' is accepted", () => {
    expect(parseIndividualEnrollment(individual({ attestation: { type: 'none' } }), 'device-1').attestation).toEqual({
      type: 'none',
    });
  });

  it('static allocation with exactly one hub (iotHubs or iotHubHostName)', () => {
    expect(
      parseIndividualEnrollment(individual({ allocationPolicy: 'static', iotHubs: ['hub-a'] }), 'device-1'),
    ).toMatchObject({ allocationPolicy: 'static', iotHubs: ['hub-a'] });
    expect(
      parseIndividualEnrollment(individual({ allocationPolicy: 'static', iotHubHostName: 'hub-a' }), 'device-1'),
    ).toMatchObject({ allocationPolicy: 'static', iotHubHostName: 'hub-a' });
  });

  it('custom allocation with an http(s) webhook and API version', () => {
    const definition = { webhookUrl: 'https://example.com/allocate?code=x', apiVersion: '2021-10-01' };
    expect(
      parseIndividualEnrollment(
        individual({ allocationPolicy: 'custom', customAllocationDefinition: definition }),
        'device-1',
      ),
    ).toMatchObject({ allocationPolicy: 'custom', customAllocationDefinition: definition });
  });
});

describe('symmetric key length', () => {
  it.each([16, 32, 64])('accepts base64 of %i bytes', (bytes) => {
    const key = keyOf(bytes);
    const body = individual({ attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key } } });
    expect(parseIndividualEnrollment(body, 'device-1').attestation.symmetricKey).toEqual({ primaryKey: key });
    expect(parseEnrollmentGroup(group({ attestation: body.attestation }), 'group-1').attestation.symmetricKey).toEqual({
      primaryKey: key,
    });
  });

  it.each([15, 65, 1])('rejects base64 of %i bytes naming the key and the length', (bytes) => {
    const primary = individual({ attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: keyOf(bytes) } } });
    const err = rejection(() => parseIndividualEnrollment(primary, 'device-1'));
    expect(err.message).toContain("'attestation.symmetricKey.primaryKey'");
    expect(err.message).toContain(`got ${bytes}`);
    const secondary = group({
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY_32, secondaryKey: keyOf(bytes) } },
    });
    rejectGroup(secondary, 'attestation.symmetricKey.secondaryKey');
  });

  it.each(['not base64!', 'AAA', 'AAAAA===', 'AA AA'])('rejects the non-base64 key %j', (key) => {
    rejectIndividual(
      individual({ attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key } } }),
      'attestation.symmetricKey.primaryKey',
    );
  });
});

describe('parseIndividualEnrollment: every error names its field', () => {
  it.each([
    ['a non-object body', 'x', 'body'],
    ['an array body', [], 'body'],
    ['an unknown top-level field', individual({ registrationID: 'device-1' }), 'registrationID'],
    ['an unknown attestation field', individual({ attestation: symmetric({ password: 'x' }) }), 'attestation.password'],
    [
      'an unknown symmetric key field',
      individual({ attestation: { type: 'symmetricKey', symmetricKey: { primary: KEY_32 } } }),
      'attestation.symmetricKey.primary',
    ],
    ['an unknown capabilities field', individual({ capabilities: { edge: true } }), 'capabilities.edge'],
    ['an unknown twin field', individual({ initialTwin: { desired: {} } }), 'initialTwin.desired'],
    [
      'reported properties in the initial twin',
      individual({ initialTwin: { properties: { reported: {} } } }),
      'initialTwin.properties.reported',
    ],
    ['an unknown reprovision field', individual({ reprovisionPolicy: { migrate: true } }), 'reprovisionPolicy.migrate'],
    [
      'an unknown custom allocation field',
      individual({ customAllocationDefinition: { webhookUrl: 'https://x', apiVersion: '1', extra: 1 } }),
      'customAllocationDefinition.extra',
    ],
    [
      'an unknown TPM field',
      individual({ attestation: { type: 'tpm', tpm: { endorsementKey: CAPTURED_EK, ek: 'AAAA' } } }),
      'attestation.tpm.ek',
    ],
    ['a missing attestation', { registrationId: 'device-1' }, 'attestation'],
    ['a non-object attestation', individual({ attestation: 'symmetricKey' }), 'attestation'],
    ['a missing attestation type', individual({ attestation: {} }), 'attestation.type'],
    ['an unknown attestation type', individual({ attestation: { type: 'password' } }), 'attestation.type'],
    ['a numeric registrationId', individual({ registrationId: 5 }), 'registrationId'],
    ['a numeric deviceId', individual({ deviceId: 5 }), 'deviceId'],
    ['a numeric provisioningStatus', individual({ provisioningStatus: 1 }), 'provisioningStatus'],
    ['an unknown provisioningStatus', individual({ provisioningStatus: 'Enabled' }), 'provisioningStatus'],
    ['an unknown allocationPolicy', individual({ allocationPolicy: 'random' }), 'allocationPolicy'],
    ['a non-boolean iotEdge', individual({ capabilities: { iotEdge: 'yes' } }), 'capabilities.iotEdge'],
    [
      'a non-boolean reprovision flag',
      individual({ reprovisionPolicy: { migrateDeviceData: 'false' } }),
      'reprovisionPolicy.migrateDeviceData',
    ],
    ['a string iotHubs', individual({ iotHubs: 'hub-a' }), 'iotHubs'],
    ['an iotHubs entry that is not a string', individual({ iotHubs: ['hub-a', 5] }), 'iotHubs[1]'],
    ['an empty iotHubs entry', individual({ iotHubs: [''] }), 'iotHubs[0]'],
    ['an iotHubs entry with a slash', individual({ iotHubs: ['hub/a'] }), 'iotHubs[0]'],
    ['an iotHubs entry of 40,000 characters', individual({ iotHubs: ['h'.repeat(40_000)] }), 'iotHubs[0]'],
    ['a host name label of 64 characters', individual({ iotHubHostName: `${'a'.repeat(64)}.net` }), 'iotHubHostName'],
    [
      'a host name of 254 characters',
      individual({ iotHubHostName: `${Array.from({ length: 3 }, () => 'a'.repeat(63)).join('.')}.${'b'.repeat(62)}` }),
      'iotHubHostName',
    ],
    ['a host name with a space', individual({ iotHubHostName: 'my hub.azure-devices.net' }), 'iotHubHostName'],
    [
      '51 iotHubs',
      individual({ iotHubs: Array.from({ length: 51 }, (_, i) => `hub-${i}.azure-devices.net`) }),
      'iotHubs',
    ],
    ['tags nested 11 levels', individual({ initialTwin: { tags: nested(11) } }), 'initialTwin.tags'],
    [
      'desired properties nested 11 levels (arrays count)',
      individual({ initialTwin: { properties: { desired: { a: [nested(10)] } } } }),
      'initialTwin.properties.desired',
    ],
    ['a numeric iotHubHostName', individual({ iotHubHostName: 1 }), 'iotHubHostName'],
    ['a non-object initialTwin', individual({ initialTwin: [] }), 'initialTwin'],
    ['non-object tags', individual({ initialTwin: { tags: 'x' } }), 'initialTwin.tags'],
    [
      'non-object desired properties',
      individual({ initialTwin: { properties: { desired: 1 } } }),
      'initialTwin.properties.desired',
    ],
    [
      'a non-object optionalDeviceInformation',
      individual({ optionalDeviceInformation: 'x' }),
      'optionalDeviceInformation',
    ],
    [
      'a non-string symmetric key',
      individual({ attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 1 } } }),
      'attestation.symmetricKey.primaryKey',
    ],
    ['a TPM without its tpm object', individual({ attestation: { type: 'tpm' } }), 'attestation.tpm'],
    [
      'a TPM without an endorsement key',
      individual({ attestation: { type: 'tpm', tpm: {} } }),
      'attestation.tpm.endorsementKey',
    ],
    [
      'a TPM endorsement key that is not base64',
      individual({ attestation: { type: 'tpm', tpm: { endorsementKey: 'not base64' } } }),
      'attestation.tpm.endorsementKey',
    ],
    [
      'a TPM storage root key that is not base64',
      individual({ attestation: { type: 'tpm', tpm: { endorsementKey: CAPTURED_EK, storageRootKey: '%%%%' } } }),
      'attestation.tpm.storageRootKey',
    ],
    [
      'custom allocation without a definition',
      individual({ allocationPolicy: 'custom' }),
      'customAllocationDefinition',
    ],
    [
      'a webhook URL that is not http(s)',
      individual({
        allocationPolicy: 'custom',
        customAllocationDefinition: { webhookUrl: 'ftp://example.com/x', apiVersion: '2021-10-01' },
      }),
      'customAllocationDefinition.webhookUrl',
    ],
    [
      'a webhook URL without a scheme',
      individual({ customAllocationDefinition: { webhookUrl: 'example.com/x', apiVersion: '2021-10-01' } }),
      'customAllocationDefinition.webhookUrl',
    ],
    [
      'a custom definition without apiVersion',
      individual({ customAllocationDefinition: { webhookUrl: 'https://example.com' } }),
      'customAllocationDefinition.apiVersion',
    ],
    [
      'static allocation with two hubs',
      individual({ allocationPolicy: 'static', iotHubs: ['hub-a', 'hub-b'] }),
      'iotHubs',
    ],
  ])('%s', (_label, body, field) => rejectIndividual(body, field));

  it('a registration ID in the body that differs from the path', () => {
    const err = rejection(() => parseIndividualEnrollment(individual({ registrationId: 'device-2' }), 'device-1'));
    expect(err.message).toContain("'registrationId'");
    expect(err.message).toContain('device-2');
  });

  it('an invalid registration ID names registrationId', () => {
    expect(rejection(() => parseIndividualEnrollment({ attestation: symmetric() }, 'bad id!')).message).toContain(
      'registrationId',
    );
  });

  it.each([
    ['a space', 'dev 1'],
    ['a slash', 'dev/1'],
    ['a hash', 'dev#1'],
    ['a non-ASCII letter', 'dév'],
    ['nothing', ''],
    ['129 characters', 'd'.repeat(129)],
  ])('a device ID with %s is rejected naming deviceId', (_label, deviceId) => {
    rejectIndividual(individual({ deviceId }), 'deviceId');
  });

  it('a device ID of 128 characters is accepted', () => {
    expect(parseIndividualEnrollment(individual({ deviceId: 'd'.repeat(128) }), 'device-1').deviceId).toHaveLength(128);
  });

  it('an attestation block for another type than the declared one', () => {
    rejectIndividual(
      individual({ attestation: { type: 'symmetricKey', x509: { caReferences: { primary: 'ca' } } } }),
      'attestation.x509',
    );
    rejectIndividual(individual({ attestation: { type: 'none', symmetricKey: {} } }), 'attestation.symmetricKey');
  });

  it('static allocation without a named hub is accepted, as DPS does (registration picks the one linked hub)', () => {
    expect(parseIndividualEnrollment(individual({ allocationPolicy: 'static' }), 'device-1')).toMatchObject({
      allocationPolicy: 'static',
    });
    expect(parseEnrollmentGroup(group({ allocationPolicy: 'static', iotHubs: [] }), 'group-1')).toMatchObject({
      allocationPolicy: 'static',
    });
  });

  it('limits: 50 iotHubs, 253-character host names, twins nested 10 levels as in the IoT Hub docs', () => {
    const hubs = Array.from({ length: 50 }, (_, i) => `hub-${i}.azure-devices.net:8443`);
    expect(parseIndividualEnrollment(individual({ iotHubs: hubs }), 'device-1').iotHubs).toEqual(hubs);
    const longest = `${Array.from({ length: 3 }, () => 'a'.repeat(63)).join('.')}.${'b'.repeat(61)}`;
    expect(longest).toHaveLength(253);
    expect(parseIndividualEnrollment(individual({ iotHubHostName: longest }), 'device-1').iotHubHostName).toBe(longest);
    const twin = { tags: nested(10), properties: { desired: nested(10) } };
    expect(parseIndividualEnrollment(individual({ initialTwin: twin }), 'device-1').initialTwin).toEqual(twin);
    // optionalDeviceInformation never goes to the hub: only the request's overall depth limit applies.
    expect(parseIndividualEnrollment(individual({ optionalDeviceInformation: nested(20) }), 'device-1')).toHaveProperty(
      'optionalDeviceInformation',
    );
  });

  it("initial twin keys follow IoT Hub's rules: no '.', '$', space or control characters, at most 1 KB", () => {
    // IoT Hub refuses such keys in tags and desired properties, so every registration would fail at the hub.
    const cases: [Record<string, unknown>, string][] = [
      [{ tags: { 'floor.3': 1 } }, 'initialTwin.tags'],
      [{ tags: { site: { 'has space': true } } }, 'initialTwin.tags'],
      [{ properties: { desired: { $interval: 5 } } }, 'initialTwin.properties.desired'],
      [{ properties: { desired: { list: [{ 'a\u0001': 1 }] } } }, 'initialTwin.properties.desired'],
      [{ tags: { ['k'.repeat(1025)]: 1 } }, 'initialTwin.tags'],
    ];
    for (const [initialTwin, field] of cases) {
      expect(() => parseIndividualEnrollment(individual({ initialTwin }), 'device-1')).toThrow(field);
    }
    expect(() => parseEnrollmentGroup(group({ initialTwin: { tags: { 'a.b': 1 } } }), 'group-1')).toThrow(
      /initialTwin\.tags.*'a\.b'/,
    );
    const fine = { tags: { ['k'.repeat(1024)]: 1, 'dash-and_under:score': { ok: 'x.y $z' } } };
    expect(parseIndividualEnrollment(individual({ initialTwin: fine }), 'device-1').initialTwin).toEqual(fine);
  });

  it("an initial twin's $metadata and $version (a twin as DPS and IoT Hub show it) are read-only and dropped", () => {
    const shown = {
      tags: { site: 'lab', $version: 2 },
      properties: { desired: { interval: 30, $metadata: { $lastUpdated: '2024-01-01T00:00:00Z' }, $version: 1 } },
    };
    expect(parseIndividualEnrollment(individual({ initialTwin: shown }), 'device-1').initialTwin).toEqual({
      tags: { site: 'lab' },
      properties: { desired: { interval: 30 } },
    });
  });

  it('static allocation counts the legacy iotHubHostName when iotHubs is empty', () => {
    expect(
      parseIndividualEnrollment(
        individual({ allocationPolicy: 'static', iotHubs: [], iotHubHostName: 'hub-a.example.net' }),
        'device-1',
      ).iotHubHostName,
    ).toBe('hub-a.example.net');
  });

  it('a validation error is 400 with errorCode 400004', () => {
    expect(rejection(() => parseIndividualEnrollment(individual({ bogus: 1 }), 'device-1'))).toMatchObject({
      status: 400,
      errorCode: 400004,
    });
  });
});

describe('parseEnrollmentGroup', () => {
  it('minimal symmetric-key group: enabled by default', () => {
    expect(parseEnrollmentGroup(group(), 'group-1')).toEqual({
      enrollmentGroupId: 'group-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY_32, secondaryKey: KEY_32 } },
      provisioningStatus: 'enabled',
    });
  });

  it('takes the group ID from the path; a case-only mismatch is accepted', () => {
    expect(parseEnrollmentGroup({ attestation: symmetric() }, 'from-path').enrollmentGroupId).toBe('from-path');
    expect(parseEnrollmentGroup(group({ enrollmentGroupId: 'Group-1' }), 'GROUP-1').enrollmentGroupId).toBe('Group-1');
  });

  it('read-only fields (etag, timestamps) are accepted and dropped', () => {
    const g = parseEnrollmentGroup(
      group({ etag: '"x"', createdDateTimeUtc: '2020-01-01T00:00:00Z', lastUpdatedDateTimeUtc: '2020-01-01' }),
      'group-1',
    );
    for (const field of ['etag', 'createdDateTimeUtc', 'lastUpdatedDateTimeUtc']) expect(g).not.toHaveProperty(field);
  });

  it('a group ID in the body that differs from the path names enrollmentGroupId', () => {
    rejectGroup(group({ enrollmentGroupId: 'group-2' }), 'enrollmentGroupId');
  });

  it('an invalid group ID names enrollmentGroupId', () => {
    expect(rejection(() => parseEnrollmentGroup({ attestation: symmetric() }, 'bad id!')).message).toContain(
      'enrollmentGroupId',
    );
  });

  it.each([
    ['registrationId', { registrationId: 'device-1' }],
    ['deviceId', { deviceId: 'device-1' }],
    ['registrationState', { registrationState: {} }],
    ['optionalDeviceInformation', { optionalDeviceInformation: {} }],
  ])('the individual-only field %s is unknown for a group', (field, extra) => {
    rejectGroup(group(extra), field);
  });

  it('TPM attestation is only for individual enrollments (names attestation.type)', () => {
    const err = rejection(() =>
      parseEnrollmentGroup(group({ attestation: { type: 'tpm', tpm: { endorsementKey: CAPTURED_EK } } }), 'group-1'),
    );
    expect(err.message).toContain("'attestation.type'");
    expect(err.message).toContain('TPM');
  });

  it('shares the common rules: custom without definition, static with two hubs, bad enums', () => {
    rejectGroup(group({ allocationPolicy: 'custom' }), 'customAllocationDefinition');
    rejectGroup(group({ allocationPolicy: 'static', iotHubs: ['a', 'b'] }), 'iotHubs');
    rejectGroup(group({ provisioningStatus: 'off' }), 'provisioningStatus');
    rejectGroup(group({ allocationPolicy: 'Hashed' }), 'allocationPolicy');
  });
});

describe('X.509 attestation', () => {
  const x509Individual = (x509: unknown) => individual({ attestation: { type: 'x509', x509 } });
  const x509Group = (x509: unknown) => group({ attestation: { type: 'x509', x509 } });

  it('an individual enrollment with a client certificate gets its certificate info', () => {
    const e = parseIndividualEnrollment(
      x509Individual({ clientCertificates: { primary: { certificate: CERT_PEM } } }),
      'device-1',
    );
    const primary = (e.attestation.x509?.clientCertificates as { primary: { certificate: string; info: unknown } })
      .primary;
    expect(primary.certificate).toBe(CERT_PEM);
    expect(primary.info).toEqual(certificateInfo(CERT_PEM, 'x'));
  });

  it('certificate info sent by the client is replaced by the computed one', () => {
    const e = parseIndividualEnrollment(
      x509Individual({ clientCertificates: { primary: { certificate: CERT_PEM, info: { sha1Thumbprint: 'FAKE' } } } }),
      'device-1',
    );
    const info = (e.attestation.x509?.clientCertificates as { primary: { info: Record<string, unknown> } }).primary
      .info;
    expect(info.sha1Thumbprint).not.toBe('FAKE');
    expect(info.sha1Thumbprint).toBe(new X509Certificate(CERT_PEM).fingerprint.replace(/:/g, ''));
  });

  it('a group with signing certificates (primary and secondary) and CA references', () => {
    const g = parseEnrollmentGroup(
      x509Group({
        signingCertificates: { primary: { certificate: CERT_PEM }, secondary: { certificate: CERT_DER_B64 } },
        caReferences: { primary: 'ca-1', secondary: 'ca-2' },
      }),
      'group-1',
    );
    expect(g.attestation.x509).toMatchObject({
      signingCertificates: { primary: { certificate: CERT_PEM }, secondary: { certificate: CERT_DER_B64 } },
      caReferences: { primary: 'ca-1', secondary: 'ca-2' },
    });
  });

  it('CA references alone are enough, for individuals and groups', () => {
    expect(parseIndividualEnrollment(x509Individual({ caReferences: { primary: 'ca' } }), 'device-1')).toMatchObject({
      attestation: { type: 'x509', x509: { caReferences: { primary: 'ca' } } },
    });
    expect(parseEnrollmentGroup(x509Group({ caReferences: { primary: 'ca' } }), 'group-1')).toMatchObject({
      attestation: { type: 'x509', x509: { caReferences: { primary: 'ca' } } },
    });
  });

  it('an entry with only info (as GET shows it) parses to a slot whose certificate the manager keeps', () => {
    const e = parseIndividualEnrollment(
      x509Individual({ clientCertificates: { primary: { info: { sha1Thumbprint: 'AB' } } } }),
      'device-1',
    );
    expect(e.attestation.x509).toEqual({ clientCertificates: { primary: {} } });
  });

  it('client certificates are only for individual enrollments', () => {
    rejectGroup(
      x509Group({ clientCertificates: { primary: { certificate: CERT_PEM } } }),
      'attestation.x509.clientCertificates',
    );
  });

  it('signing certificates are only for groups', () => {
    rejectIndividual(
      x509Individual({ signingCertificates: { primary: { certificate: CERT_PEM } } }),
      'attestation.x509.signingCertificates',
    );
  });

  // Functions: the certificate is generated in beforeAll, after the table is built.
  it.each<[string, () => unknown, string]>([
    ['no x509 object', () => undefined, 'attestation.x509'],
    ['an empty x509 object', () => ({}), 'attestation.x509'],
    [
      'a secondary without a primary',
      () => ({ clientCertificates: { secondary: { certificate: CERT_PEM } } }),
      'attestation.x509.clientCertificates.primary',
    ],
    [
      'a certificate entry without certificate',
      () => ({ clientCertificates: { primary: {} } }),
      'attestation.x509.clientCertificates.primary.certificate',
    ],
    [
      'a certificate entry whose info is not an object',
      () => ({ clientCertificates: { primary: { info: 'x' } } }),
      'attestation.x509.clientCertificates.primary.info',
    ],
    [
      'an unknown certificate pair field',
      () => ({ clientCertificates: { tertiary: {} } }),
      'attestation.x509.clientCertificates.tertiary',
    ],
    [
      'an unknown certificate entry field',
      () => ({ clientCertificates: { primary: { certificate: CERT_PEM, pem: 'x' } } }),
      'attestation.x509.clientCertificates.primary.pem',
    ],
    [
      'garbage as the certificate',
      () => ({ clientCertificates: { primary: { certificate: 'not a certificate' } } }),
      'attestation.x509.clientCertificates.primary.certificate',
    ],
    [
      'a CA reference without primary',
      () => ({ caReferences: { secondary: 'ca' } }),
      'attestation.x509.caReferences.primary',
    ],
    [
      'an unknown CA reference field',
      () => ({ caReferences: { primary: 'ca', other: 'x' } }),
      'attestation.x509.caReferences.other',
    ],
  ])('rejects %s naming the field', (_label, x509, field) => {
    rejectIndividual(x509Individual(x509()), field);
  });

  it('a garbage signing certificate names its field', () => {
    rejectGroup(
      x509Group({ signingCertificates: { primary: { certificate: CERT_PEM }, secondary: { certificate: 'AAAA' } } }),
      'attestation.x509.signingCertificates.secondary.certificate',
    );
  });
});

describe('certificateInfo', () => {
  it('thumbprints are the SHA-1 and SHA-256 of the DER, upper-case hex without colons', () => {
    const info = certificateInfo(CERT_PEM, 'cert');
    const der = Buffer.from(CERT_DER_B64, 'base64');
    const node = new X509Certificate(CERT_PEM);
    expect(info.sha1Thumbprint).toBe(createHash('sha1').update(der).digest('hex').toUpperCase());
    expect(info.sha256Thumbprint).toBe(createHash('sha256').update(der).digest('hex').toUpperCase());
    expect(info.sha1Thumbprint).toBe(node.fingerprint.replace(/:/g, ''));
    expect(info.sha256Thumbprint).toBe(node.fingerprint256.replace(/:/g, ''));
  });

  it('subject and issuer contain the CN; validity, serial number and version come from the certificate', () => {
    const info = certificateInfo(CERT_PEM, 'cert');
    const node = new X509Certificate(CERT_PEM);
    expect(info.subjectName).toContain('CN=validate-test-device');
    expect(info.issuerName).toContain('CN=validate-test-device');
    // Whole seconds, as DPS shows them ("2017-11-14T12:34:18Z" in the SDKs' examples).
    expect(info.notBeforeUtc).toBe(new Date(node.validFrom).toISOString().replace('.000Z', 'Z'));
    expect(info.notAfterUtc).toBe(new Date(node.validTo).toISOString().replace('.000Z', 'Z'));
    expect(Date.parse(String(info.notAfterUtc))).toBeGreaterThan(Date.parse(String(info.notBeforeUtc)));
    expect(info.serialNumber).toBe(node.serialNumber);
    expect(info.version).toBe(3);
  });

  it("names are most specific first, as DPS (.NET) prints them; the version is the certificate's", async () => {
    const cert = await makeCert({ cn: 'ordered-dev', subjectPrefix: 'C=US, O=Contoso' });
    const info = certificateInfo(cert.pem, 'cert');
    expect(info.subjectName).toBe('CN=ordered-dev, O=Contoso, C=US');
    expect(info.issuerName).toBe('CN=ordered-dev, O=Contoso, C=US');
    expect(info.version).toBe(3);
  });

  it('several PEM certificates in one field are a 400, not the first one silently', () => {
    expect(rejection(() => certificateInfo(`${CERT_PEM}\n${CERT_PEM}`, 'f')).message).toBe(
      "Invalid field 'f': the value holds 2 certificates: give one (each CA certificate under its own name).",
    );
  });

  it('a certificate with trailing data or over the size bound is a 400 naming the field', () => {
    const der = Buffer.from(CERT_DER_B64, 'base64');
    const trailing = Buffer.concat([der, Buffer.from([0, 0])]).toString('base64');
    expect(rejection(() => certificateInfo(trailing, 'f')).message).toBe(
      "Invalid field 'f': the value is not a valid DER X.509 certificate (trailing data).",
    );
    const huge = Buffer.alloc(13 * 1024, 0x30).toString('base64');
    expect(rejection(() => certificateInfo(huge, 'f')).message).toMatch(/^Invalid field 'f': the value is larger than/);
  });

  it('PEM and bare base64 DER (as the C# SDK sends) give the same info', () => {
    expect(certificateInfo(CERT_DER_B64, 'cert')).toEqual(certificateInfo(CERT_PEM, 'cert'));
  });

  it.each<[string, () => string]>([
    ['text', () => 'not a certificate'],
    ['random base64', () => Buffer.alloc(100, 1).toString('base64')],
    ['a truncated certificate', () => CERT_DER_B64.slice(0, 100)],
    ['an empty string', () => ''],
    ['a PEM header around garbage', () => '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'],
  ])('rejects %s with a 400 naming the field', (_label, value) => {
    const err = rejection(() => certificateInfo(value(), 'attestation.x509.clientCertificates.primary.certificate'));
    expect(err.message).toContain("'attestation.x509.clientCertificates.primary.certificate'");
  });
});
