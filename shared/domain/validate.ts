// Validation of enrollment JSON from the service API into domain types: every error names its field, unknown fields
// are rejected (a typo must not be silently dropped), read-only fields are accepted and ignored.

import { TpmFormatError } from '../attestation/tpm/marshal';
import {
  CertificateError,
  certificateDer,
  certificateInfo as x509CertificateInfo,
  parseCertificate,
} from '../attestation/x509/certificate';
import { decodeTpmPublicKey } from '../attestation/tpm/publicKey';
import { BASE64 } from '../encoding';
import { badRequest } from '../errors';
import { isPlainObject } from '../http/request';
import type {
  AllocationPolicy,
  AttestationMechanism,
  CustomAllocationDefinition,
  EnrollmentCommon,
  EnrollmentGroup,
  IndividualEnrollment,
  InitialTwin,
  ReprovisionPolicy,
  TwinCollection,
} from './enrollment';
import { isHubHostName } from './linkedHub';
import type { X509CertificateInfo } from './registrationState';
import { assertRegistrationId } from './registrationId';
import { TWIN_LIMITS, TWIN_MAX_DEPTH, twinDepth, twinSize } from './twinSize';

type Json = Record<string, unknown>;

const COMMON_FIELDS = [
  'attestation',
  'capabilities',
  'iotHubHostName',
  'initialTwin',
  'etag',
  'provisioningStatus',
  'reprovisionPolicy',
  'createdDateTimeUtc',
  'lastUpdatedDateTimeUtc',
  'allocationPolicy',
  'iotHubs',
  'customAllocationDefinition',
  'credentialPolicyName',
];
const INDIVIDUAL_FIELDS = new Set([
  ...COMMON_FIELDS,
  'registrationId',
  'deviceId',
  'registrationState',
  'optionalDeviceInformation',
]);
const GROUP_FIELDS = new Set([...COMMON_FIELDS, 'enrollmentGroupId']);
const POLICIES: readonly AllocationPolicy[] = ['hashed', 'geoLatency', 'static', 'custom'];
/** DPS links at most 50 hubs, so an enrollment never needs to name more. */
export const MAX_IOT_HUBS = 50;
const HOST_NAME_RULE =
  'a DNS host name (labels of letters, digits and hyphens, each at most 63 characters; at most 253 in all), with an optional :port';

export const invalid = (field: string, problem: string) => badRequest(`Invalid field '${field}': ${problem}`, 4);

export function parseIndividualEnrollment(body: unknown, pathId: string): IndividualEnrollment {
  const json = object(body, 'body');
  rejectUnknown(json, INDIVIDUAL_FIELDS, '');
  const registrationId = idFrom(json, 'registrationId', pathId);
  const deviceId = optionalString(json, 'deviceId');
  if (deviceId !== undefined && !/^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$/.test(deviceId)) {
    throw invalid('deviceId', "use 1-128 ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '.");
  }
  const optionalDeviceInformation = json.optionalDeviceInformation;
  return {
    registrationId,
    ...(deviceId !== undefined ? { deviceId } : {}),
    ...parseCommon(json, false),
    ...(optionalDeviceInformation !== undefined && optionalDeviceInformation !== null
      ? {
          optionalDeviceInformation: twinCollection(
            optionalDeviceInformation,
            'optionalDeviceInformation',
            TWIN_LIMITS.desired,
          ),
        }
      : {}),
  };
}

export function parseEnrollmentGroup(body: unknown, pathId: string): EnrollmentGroup {
  const json = object(body, 'body');
  rejectUnknown(json, GROUP_FIELDS, '');
  return { enrollmentGroupId: idFrom(json, 'enrollmentGroupId', pathId), ...parseCommon(json, true) };
}

/** The body's ID (the path's when absent): both must name the same enrollment, case-insensitively. */
function idFrom(json: Json, field: 'registrationId' | 'enrollmentGroupId', pathId: string): string {
  const id = optionalString(json, field) ?? pathId;
  if (id.toLowerCase() !== pathId.toLowerCase()) throw invalid(field, `'${id}' does not match the path ('${pathId}').`);
  return assertRegistrationId(id, field);
}

function parseCommon(json: Json, group: boolean): EnrollmentCommon {
  const result: EnrollmentCommon = { attestation: parseAttestation(json.attestation, group) };
  const capabilities = json.capabilities;
  if (capabilities !== undefined && capabilities !== null) {
    const c = object(capabilities, 'capabilities');
    rejectUnknown(c, new Set(['iotEdge']), 'capabilities.');
    result.capabilities = { iotEdge: optionalBoolean(c, 'iotEdge', 'capabilities.iotEdge') ?? false };
  }
  const hub = optionalString(json, 'iotHubHostName');
  if (hub) result.iotHubHostName = hubHostName(hub, 'iotHubHostName');
  if (json.initialTwin !== undefined && json.initialTwin !== null) result.initialTwin = parseTwin(json.initialTwin);
  const status = optionalString(json, 'provisioningStatus');
  if (status !== undefined) {
    if (status !== 'enabled' && status !== 'disabled')
      throw invalid('provisioningStatus', "must be 'enabled' or 'disabled'.");
    result.provisioningStatus = status;
  } else result.provisioningStatus = 'enabled';
  if (json.reprovisionPolicy !== undefined && json.reprovisionPolicy !== null) {
    result.reprovisionPolicy = parseReprovision(json.reprovisionPolicy);
  }
  const policy = optionalString(json, 'allocationPolicy');
  if (policy !== undefined) {
    if (!POLICIES.includes(policy as AllocationPolicy))
      throw invalid('allocationPolicy', `must be one of ${POLICIES.join(', ')}.`);
    result.allocationPolicy = policy as AllocationPolicy;
  }
  if (json.iotHubs !== undefined && json.iotHubs !== null) {
    if (!Array.isArray(json.iotHubs)) throw invalid('iotHubs', 'must be an array of IoT hub host names.');
    if (json.iotHubs.length > MAX_IOT_HUBS) {
      throw invalid('iotHubs', `may name at most ${MAX_IOT_HUBS} IoT hubs (got ${json.iotHubs.length}).`);
    }
    result.iotHubs = json.iotHubs.map((h: unknown, i) => {
      if (typeof h !== 'string') throw invalid(`iotHubs[${i}]`, 'must be a string.');
      return hubHostName(h, `iotHubs[${i}]`);
    });
  }
  if (json.customAllocationDefinition !== undefined && json.customAllocationDefinition !== null) {
    result.customAllocationDefinition = parseCustomAllocation(json.customAllocationDefinition);
  }
  if (result.allocationPolicy === 'custom' && !result.customAllocationDefinition) {
    throw invalid('customAllocationDefinition', "is required when allocationPolicy is 'custom'.");
  }
  // Static without a named hub is valid (the REST schema makes iotHubs optional, and the official service SDK's tests
  // create such enrollments): registration then uses the one linked hub, if there is exactly one (plan.ts).
  if (result.allocationPolicy === 'static' && (result.iotHubs?.length ?? 0) > 1) {
    throw invalid('iotHubs', "must name at most one IoT hub when allocationPolicy is 'static'.");
  }
  return result;
}

function parseAttestation(value: unknown, group: boolean): AttestationMechanism {
  if (value === undefined || value === null) throw invalid('attestation', 'is required.');
  const a = object(value, 'attestation');
  rejectUnknown(a, new Set(['type', 'tpm', 'x509', 'symmetricKey']), 'attestation.');
  const type = requiredString(a, 'type', 'attestation.type');
  // A block for another type would be dropped silently: say so instead.
  for (const other of ['tpm', 'x509', 'symmetricKey']) {
    if (other !== type && a[other] !== undefined && a[other] !== null) {
      throw invalid(`attestation.${other}`, `does not go with attestation.type '${type}'.`);
    }
  }
  switch (type) {
    case 'symmetricKey': {
      const keys =
        a.symmetricKey === undefined || a.symmetricKey === null
          ? {}
          : object(a.symmetricKey, 'attestation.symmetricKey');
      rejectUnknown(keys, new Set(['primaryKey', 'secondaryKey']), 'attestation.symmetricKey.');
      const primaryKey = symmetricKey(keys, 'primaryKey');
      const secondaryKey = symmetricKey(keys, 'secondaryKey');
      return {
        type,
        symmetricKey: { ...(primaryKey ? { primaryKey } : {}), ...(secondaryKey ? { secondaryKey } : {}) },
      };
    }
    case 'tpm': {
      if (group) throw invalid('attestation.type', 'TPM attestation is only available for individual enrollments.');
      const tpm = object(a.tpm, 'attestation.tpm');
      rejectUnknown(tpm, new Set(['endorsementKey', 'storageRootKey']), 'attestation.tpm.');
      const ek = requiredString(tpm, 'endorsementKey', 'attestation.tpm.endorsementKey');
      const srk = optionalString(tpm, 'storageRootKey', 'attestation.tpm.storageRootKey');
      return {
        type,
        tpm: {
          endorsementKey: tpmKey(ek, 'attestation.tpm.endorsementKey'),
          ...(srk ? { storageRootKey: tpmKey(srk, 'attestation.tpm.storageRootKey') } : {}),
        },
      };
    }
    case 'x509':
      return { type, x509: parseX509(a.x509, group) };
    case 'none':
      return { type };
    default:
      throw invalid('attestation.type', "must be 'symmetricKey', 'x509', 'tpm' or 'none'.");
  }
}

/** DPS symmetric keys are base64 of 16 to 64 bytes (reference/dps-protocol.md §2.2). */
function symmetricKey(keys: Json, name: string): string | undefined {
  const field = `attestation.symmetricKey.${name}`;
  const value = optionalString(keys, name, field);
  if (value === undefined || value === '') return undefined;
  const bytes = base64Bytes(value, field);
  if (bytes.length < 16 || bytes.length > 64)
    throw invalid(field, `must be base64 of 16 to 64 bytes (got ${bytes.length}).`);
  return value;
}

function parseX509(value: unknown, group: boolean): Record<string, unknown> {
  const x = object(value, 'attestation.x509');
  const allowed = group ? ['signingCertificates', 'caReferences'] : ['clientCertificates', 'caReferences'];
  rejectUnknown(x, new Set(allowed), 'attestation.x509.');
  const result: Record<string, unknown> = {};
  for (const name of ['clientCertificates', 'signingCertificates'] as const) {
    if (x[name] === undefined || x[name] === null) continue;
    const pair = object(x[name], `attestation.x509.${name}`);
    rejectUnknown(pair, new Set(['primary', 'secondary']), `attestation.x509.${name}.`);
    const parsed: Record<string, unknown> = {};
    for (const which of ['primary', 'secondary'] as const) {
      if (pair[which] === undefined || pair[which] === null) continue;
      const field = `attestation.x509.${name}.${which}`;
      const entry = object(pair[which], field);
      rejectUnknown(entry, new Set(['certificate', 'info']), `${field}.`);
      const certificate = optionalString(entry, 'certificate', `${field}.certificate`);
      if (certificate) {
        parsed[which] = { certificate, info: certificateInfo(certificate, `${field}.certificate`) };
      } else if (entry.info !== undefined && entry.info !== null) {
        // What GET returns: the certificate's info without it. The stored certificate is kept (enrollments.ts).
        object(entry.info, `${field}.info`);
        parsed[which] = {};
      } else throw invalid(`${field}.certificate`, 'is required.');
    }
    if (!parsed.primary) throw invalid(`attestation.x509.${name}.primary`, 'is required.');
    result[name] = parsed;
  }
  if (x.caReferences !== undefined && x.caReferences !== null) {
    const refs = object(x.caReferences, 'attestation.x509.caReferences');
    rejectUnknown(refs, new Set(['primary', 'secondary']), 'attestation.x509.caReferences.');
    const primary = requiredString(refs, 'primary', 'attestation.x509.caReferences.primary');
    const secondary = optionalString(refs, 'secondary', 'attestation.x509.caReferences.secondary');
    result.caReferences = { primary, ...(secondary ? { secondary } : {}) };
  }
  if (Object.keys(result).length === 0) {
    throw invalid(
      'attestation.x509',
      `needs ${group ? 'signingCertificates or caReferences' : 'clientCertificates or caReferences'}.`,
    );
  }
  return result;
}

/** The service-populated `X509CertificateInfo` of a PEM or bare base64 DER certificate (C# sends the latter). */
export function certificateInfo(certificate: string, field: string): X509CertificateInfo {
  try {
    return x509CertificateInfo(parseCertificate(certificateDer(certificate, 'the value'), 'the value'));
  } catch (err) {
    if (err instanceof CertificateError) throw invalid(field, err.message);
    throw err;
  }
}

const FALLBACK_POLICIES = ['hashed', 'geoLatency', 'static'] as const;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * `customAllocationDefinition`: an https webhook URL (http only to a loopback host, for local testing: a function
 * key in the query must not cross a network in clear), no user:password in it, the `apiVersion` of the request's
 * enrollment schema, and Open DPS's optional `fallbackAllocationPolicy` (used when the webhook fails).
 */
function parseCustomAllocation(value: unknown): CustomAllocationDefinition {
  const field = 'customAllocationDefinition';
  const d = object(value, field);
  rejectUnknown(d, new Set(['webhookUrl', 'apiVersion', 'fallbackAllocationPolicy']), `${field}.`);
  const webhookUrl = requiredString(d, 'webhookUrl', `${field}.webhookUrl`);
  let url: URL | undefined;
  try {
    url = new URL(webhookUrl);
  } catch {
    url = undefined;
  }
  const local = url !== undefined && url.protocol === 'http:' && LOOPBACK.has(url.hostname);
  if (!url || (url.protocol !== 'https:' && !local)) {
    throw invalid(`${field}.webhookUrl`, 'must be an https URL (http only to localhost, for local testing).');
  }
  if (url.username || url.password) {
    throw invalid(`${field}.webhookUrl`, 'must not carry a user name or password (use a key in the query).');
  }
  if (webhookUrl.length > 2048) throw invalid(`${field}.webhookUrl`, 'must be at most 2048 characters.');
  const apiVersion = requiredString(d, 'apiVersion', `${field}.apiVersion`);
  const fallback = optionalString(d, 'fallbackAllocationPolicy', `${field}.fallbackAllocationPolicy`);
  if (fallback !== undefined && !(FALLBACK_POLICIES as readonly string[]).includes(fallback)) {
    throw invalid(`${field}.fallbackAllocationPolicy`, `must be one of ${FALLBACK_POLICIES.join(', ')}.`);
  }
  return {
    webhookUrl,
    apiVersion,
    ...(fallback !== undefined ? { fallbackAllocationPolicy: fallback as (typeof FALLBACK_POLICIES)[number] } : {}),
  };
}

export function parseTwin(value: unknown): InitialTwin {
  const twin = object(value, 'initialTwin');
  rejectUnknown(twin, new Set(['tags', 'properties']), 'initialTwin.');
  const result: InitialTwin = {};
  if (twin.tags !== undefined && twin.tags !== null) {
    result.tags = twinCollection(twin.tags, 'initialTwin.tags', TWIN_LIMITS.tags, true);
  }
  if (twin.properties !== undefined && twin.properties !== null) {
    const props = object(twin.properties, 'initialTwin.properties');
    rejectUnknown(props, new Set(['desired']), 'initialTwin.properties.');
    if (props.desired !== undefined && props.desired !== null) {
      const desired = twinCollection(props.desired, 'initialTwin.properties.desired', TWIN_LIMITS.desired, true);
      result.properties = { desired };
    }
  }
  return result;
}

function parseReprovision(value: unknown): ReprovisionPolicy {
  const p = object(value, 'reprovisionPolicy');
  rejectUnknown(p, new Set(['updateHubAssignment', 'migrateDeviceData']), 'reprovisionPolicy.');
  return {
    updateHubAssignment: optionalBoolean(p, 'updateHubAssignment', 'reprovisionPolicy.updateHubAssignment') ?? true,
    migrateDeviceData: optionalBoolean(p, 'migrateDeviceData', 'reprovisionPolicy.migrateDeviceData') ?? true,
  };
}

/**
 * A twin section, within the size IoT Hub allows (twinSize.ts); for what goes to the hub, also its nesting and key
 * rules. A section as IoT Hub and DPS show it carries `$metadata` and `$version` at its top: read-only, dropped.
 */
function twinCollection(value: unknown, field: string, maxBytes: number, forHub = false): TwinCollection {
  let collection = object(value, field);
  if (forHub) collection = Object.fromEntries(Object.entries(collection).filter(([k]) => !TWIN_READ_ONLY.has(k)));
  const size = twinSize(collection);
  if (size > maxBytes)
    throw invalid(field, `is ${size} bytes as IoT Hub counts them; at most ${maxBytes} are allowed.`);
  if (!forHub) return collection;
  const depth = twinDepth(collection);
  if (depth > TWIN_MAX_DEPTH) {
    throw invalid(field, `nests objects ${depth} levels deep; IoT Hub allows at most ${TWIN_MAX_DEPTH}.`);
  }
  const bad = twinKeyProblem(collection);
  if (bad) throw invalid(field, `has the key '${bad.slice(0, 100)}': ${TWIN_KEY_RULE}`);
  return collection;
}

const TWIN_READ_ONLY = new Set(['$metadata', '$version']);
const TWIN_KEY_RULE = "IoT Hub twin keys are at most 1 KB and contain no '.', '$', space or control characters.";
// eslint-disable-next-line no-control-regex -- C0 and C1 control characters are what IoT Hub refuses in keys
const TWIN_KEY_FORBIDDEN = /[.$ \u0000-\u001f\u007f-\u009f]/;

/** The first key (at any depth, arrays included) IoT Hub would refuse; nesting is already bounded (twinDepth). */
function twinKeyProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    for (const item of value) {
      const bad = twinKeyProblem(item);
      if (bad !== undefined) return bad;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    if (TWIN_KEY_FORBIDDEN.test(key) || Buffer.byteLength(key, 'utf8') > 1024) return key;
    const bad = twinKeyProblem(item);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

function hubHostName(value: string, field: string): string {
  if (!isHubHostName(value)) throw invalid(field, `must be ${HOST_NAME_RULE}.`);
  return value;
}

export function object(value: unknown, field: string): Json {
  if (!isPlainObject(value)) throw invalid(field, 'must be a JSON object.');
  return value;
}

export function rejectUnknown(json: Json, known: ReadonlySet<string>, prefix = ''): void {
  for (const key of Object.keys(json)) {
    if (!known.has(key)) throw invalid(`${prefix}${key}`, 'is not a known field.');
  }
}

export function optionalString(json: Json, key: string, field = key): string | undefined {
  const value = json[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(field, 'must be a string.');
  return value;
}

export function requiredString(json: Json, key: string, field = key): string {
  const value = optionalString(json, key, field);
  if (value === undefined || value === '') throw invalid(field, 'is required.');
  return value;
}

function optionalBoolean(json: Json, key: string, field: string): boolean | undefined {
  const value = json[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalid(field, 'must be true or false.');
  return value;
}

function base64Bytes(value: string, field: string): Buffer {
  if (!BASE64.test(value) || value.length % 4 !== 0) throw invalid(field, 'must be base64.');
  return Buffer.from(value, 'base64');
}

/** An EK or SRK: base64 of an RSA-2048 TPM2B_PUBLIC, kept in canonical form (accepted variations: tpm/publicKey.ts). */
function tpmKey(value: string, field: string): string {
  try {
    return decodeTpmPublicKey(value).tpm2b.toString('base64');
  } catch (error) {
    if (error instanceof TpmFormatError) {
      throw invalid(field, `must be base64 of an RSA-2048 TPM2B_PUBLIC (${error.message}).`);
    }
    throw error;
  }
}

/** A shared access key: base64 of 16 to 64 bytes, like the keys DPS and IoT Hub generate. */
export function base64Key(value: string, field: string): string {
  const bytes = base64Bytes(value, field);
  if (bytes.length < 16 || bytes.length > 64)
    throw invalid(field, `must be base64 of 16 to 64 bytes (got ${bytes.length}).`);
  return value;
}
