// Service configuration API (what real DPS keeps in ARM): linked hubs, shared access policies, default allocation.
// Connection strings and policy keys are write-only, except that a policy's keys are shown once when created or
// regenerated (as ARM's listKeys would).
import { randomBytes } from 'node:crypto';

import type { AllocationPolicy } from '../domain/enrollment';
import type { LinkedHub } from '../domain/linkedHub';
import { isHubHostName, parseHubConnectionString } from '../domain/linkedHub';
import type { AccessPolicy, Right, ServiceSettings } from '../domain/serviceConfig';
import { RIGHTS } from '../domain/serviceConfig';
import { base64Key, invalid, object, optionalString, rejectUnknown } from '../domain/validate';
import { DpsError, notFound } from '../errors';
import {
  accessPolicyChanged,
  accessPolicyDeleted,
  accessPolicyKeyRegenerated,
  linkedHubChanged,
  linkedHubDeleted,
  settingsUpdated,
} from '../events/catalogue';
import type { EventPorts } from '../events/outbox';
import { recorded } from '../events/outbox';
import type { JsonResult } from '../http/response';
import type { RewrapResult } from '../secrets/envelope';
import type { HubHealth } from '../hubs/health';
import type { ServiceConfigStore } from '../storage/serviceConfig';
import type { ServiceAuthorizer } from './auth';
import type { ServiceRequest } from './serviceRequest';

const MIN_POLICY_KEY_BYTES = 32;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HUB_FIELDS = new Set([
  'hostName',
  'connectionString',
  'location',
  'allocationWeight',
  'applyAllocationPolicy',
  'authentication', // read-only (GET shows it), accepted back and ignored
  'health', // read-only (GET shows it), accepted back and ignored
]);
const POLICY_FIELDS = new Set(['name', 'rights', 'primaryKey', 'secondaryKey']);
const SETTINGS_FIELDS = new Set(['defaultAllocationPolicy', 'idScope', 'serviceHostNames', 'rootPolicyName']);

export interface ConfigurationPorts {
  store: ServiceConfigStore;
  auth: ServiceAuthorizer;
  idScope: string;
  rootPolicyName: string;
  serviceHostNames: readonly string[];
  changed: () => void;
  /** This instance's view of each hub's health (hubs/health.ts), shown read-only by GET linkedHubs. */
  health?: Pick<HubHealth, 'snapshot'>;
  /** Every change is recorded with its event (names and rights, never connection strings or keys). */
  events?: EventPorts;
  /** Re-wraps the envelope's data keys with the key provider's newest key (after a Key Vault key rotation). */
  rewrapDataKeys: () => Promise<RewrapResult>;
}

export class ConfigurationManager {
  constructor(private readonly ports: ConfigurationPorts) {}

  async listLinkedHubs(request: ServiceRequest): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    const { linkedHubs } = await this.ports.store.load();
    const health = this.ports.health?.snapshot(linkedHubs.map((h) => h.hostName));
    return {
      status: 200,
      body: linkedHubs.map((hub, i) => {
        const { hostName: _name, ...state } = health?.[i] ?? { hostName: hub.hostName };
        return { ...hubView(hub), ...(health ? { health: state } : {}) };
      }),
    };
  }

  /**
   * Links a hub, or updates one; `connectionString` may be left out on update to keep the stored one. A hub linked
   * without one (or updated with `"connectionString": null`) is called with the service's managed identity.
   */
  async putLinkedHub(request: ServiceRequest, hostName: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    assertHubHostName(hostName);
    const body = object(request.body, 'body');
    rejectUnknown(body, HUB_FIELDS);
    const bodyHostName = optionalString(body, 'hostName');
    if (bodyHostName !== undefined && bodyHostName.toLowerCase() !== hostName.toLowerCase()) {
      throw invalid('hostName', `'${bodyHostName}' does not match the path ('${hostName}').`);
    }
    const existing = (await this.ports.store.load()).linkedHubs.find(
      (h) => h.hostName.toLowerCase() === hostName.toLowerCase(),
    );
    const connectionString =
      body.connectionString === null
        ? undefined
        : (optionalString(body, 'connectionString') ?? existing?.connectionString);
    let linkedHostName = existing?.hostName ?? hostName;
    if (connectionString !== undefined) {
      const parsed = parseHubConnectionString(connectionString);
      if (!parsed) throw invalid('connectionString', 'must be HostName=…;SharedAccessKeyName=…;SharedAccessKey=….');
      if (parsed.hostName.toLowerCase() !== hostName.toLowerCase() || !isHubHostName(parsed.hostName)) {
        throw invalid('connectionString', `names HostName '${parsed.hostName}', not '${hostName}'.`);
      }
      // Checked here, as a key that can't sign would fail every device later allocated to this hub.
      base64Key(parsed.key, 'connectionString.SharedAccessKey');
      linkedHostName = parsed.hostName;
    }
    const weight = body.allocationWeight ?? existing?.allocationWeight ?? 1;
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > 1000) {
      throw invalid('allocationWeight', 'must be a whole number from 1 to 1000.');
    }
    const apply = body.applyAllocationPolicy ?? existing?.applyAllocationPolicy ?? true;
    if (typeof apply !== 'boolean') throw invalid('applyAllocationPolicy', 'must be true or false.');
    const location = optionalString(body, 'location') ?? existing?.location;
    if (location !== undefined && location.length > 64) throw invalid('location', 'must be at most 64 characters.');
    const hub: LinkedHub = {
      hostName: linkedHostName,
      ...(connectionString !== undefined ? { connectionString } : {}),
      ...(location ? { location } : {}),
      allocationWeight: weight,
      applyAllocationPolicy: apply,
    };
    const change = existing ? 'updated' : 'created';
    await recorded(
      this.ports.events,
      (o) => [linkedHubChanged(o, change, hub)],
      () => this.ports.store.putLinkedHub(hub),
    );
    this.ports.changed();
    return { status: 200, body: hubView(hub) };
  }

  async deleteLinkedHub(request: ServiceRequest, hostName: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    assertHubHostName(hostName);
    await recorded(
      this.ports.events,
      (o) => [linkedHubDeleted(o, hostName)],
      async () => {
        if (!(await this.ports.store.deleteLinkedHub(hostName)))
          throw notFound(`Linked hub '${hostName}' was not found.`, 404203);
      },
    );
    this.ports.changed();
    return { status: 204 };
  }

  async listAccessPolicies(request: ServiceRequest): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    const { accessPolicies } = await this.ports.store.load();
    const root = { name: this.ports.rootPolicyName, rights: [...RIGHTS], configuredBy: 'settings' };
    return { status: 200, body: [root, ...accessPolicies.map(({ name, rights }) => ({ name, rights }))] };
  }

  /** Creates or replaces a policy; its keys are generated unless given, and returned in this answer only. */
  async putAccessPolicy(request: ServiceRequest, name: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    this.assertNotRoot(name);
    assertPolicyName(name);
    const body = object(request.body, 'body');
    rejectUnknown(body, POLICY_FIELDS);
    const existing = (await this.ports.store.load()).accessPolicies.find(
      (p) => p.name.toLowerCase() === name.toLowerCase(),
    );
    const policy: AccessPolicy = {
      name,
      rights: parseRights(body.rights),
      primaryKey: policyKey(body, 'primaryKey') ?? existing?.primaryKey ?? newKey(),
      secondaryKey: policyKey(body, 'secondaryKey') ?? existing?.secondaryKey ?? newKey(),
    };
    const change = existing ? 'updated' : 'created';
    await recorded(
      this.ports.events,
      (o) => [accessPolicyChanged(o, change, policy)],
      () => this.ports.store.putAccessPolicy(policy),
    );
    this.ports.changed();
    return { status: 200, body: policy };
  }

  async regenerateAccessPolicyKey(request: ServiceRequest, name: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    this.assertNotRoot(name);
    assertPolicyName(name);
    const keyType = optionalString(object(request.body ?? {}, 'body'), 'keyType') ?? 'primary';
    if (keyType !== 'primary' && keyType !== 'secondary') throw invalid('keyType', "must be 'primary' or 'secondary'.");
    const existing = (await this.ports.store.load()).accessPolicies.find(
      (p) => p.name.toLowerCase() === name.toLowerCase(),
    );
    if (!existing) throw notFound(`Access policy '${name}' was not found.`, 404204);
    const policy = { ...existing, [`${keyType}Key`]: newKey() };
    await recorded(
      this.ports.events,
      (o) => [accessPolicyKeyRegenerated(o, policy, keyType)],
      () => this.ports.store.putAccessPolicy(policy),
    );
    this.ports.changed();
    return { status: 200, body: policy };
  }

  async deleteAccessPolicy(request: ServiceRequest, name: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    this.assertNotRoot(name);
    // Checked before storage: `/ ? #` in a name would break the row key (a 5 s storage failure, then a 500).
    assertPolicyName(name);
    await recorded(
      this.ports.events,
      (o) => [accessPolicyDeleted(o, name)],
      async () => {
        if (!(await this.ports.store.deleteAccessPolicy(name)))
          throw notFound(`Access policy '${name}' was not found.`, 404204);
      },
    );
    this.ports.changed();
    return { status: 204 };
  }

  async getSettings(request: ServiceRequest): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    return { status: 200, body: this.settingsView((await this.ports.store.load()).settings) };
  }

  async putSettings(request: ServiceRequest): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    const body = object(request.body, 'body');
    // The read-only fields of GET are accepted back, so GET → edit → PUT works.
    rejectUnknown(body, SETTINGS_FIELDS);
    const policy = optionalString(body, 'defaultAllocationPolicy') ?? 'hashed';
    if (!(['hashed', 'geoLatency', 'static'] as AllocationPolicy[]).includes(policy as AllocationPolicy)) {
      throw invalid(
        'defaultAllocationPolicy',
        "must be 'hashed', 'geoLatency' or 'static' (DPS does not allow custom).",
      );
    }
    const settings: ServiceSettings = { defaultAllocationPolicy: policy as ServiceSettings['defaultAllocationPolicy'] };
    await recorded(
      this.ports.events,
      (o) => [settingsUpdated(o, settings)],
      () => this.ports.store.putSettings(settings),
    );
    this.ports.changed();
    return { status: 200, body: this.settingsView(settings) };
  }

  /**
   * Beyond DPS: after the Key Vault key was rotated, re-wraps the data keys (a handful) with its newest version, so
   * the old version can be disabled. Sealed values are not touched.
   */
  async rewrapDataKeys(request: ServiceRequest): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    return { status: 200, body: await this.ports.rewrapDataKeys() };
  }

  private settingsView(settings: ServiceSettings): Record<string, unknown> {
    return {
      idScope: this.ports.idScope,
      defaultAllocationPolicy: settings.defaultAllocationPolicy,
      serviceHostNames: this.ports.serviceHostNames,
      rootPolicyName: this.ports.rootPolicyName,
    };
  }

  private assertNotRoot(name: string): void {
    if (name.toLowerCase() === this.ports.rootPolicyName.toLowerCase()) {
      throw new DpsError(409, 409004, `The access policy '${name}' is configured by settings (DPS_SERVICE_OWNER_KEY).`);
    }
  }
}

function hubView(hub: LinkedHub): Record<string, unknown> {
  const { connectionString, ...view } = hub;
  return { ...view, authentication: connectionString ? 'connectionString' : 'identity' };
}

function parseRights(value: unknown): Right[] {
  const list = typeof value === 'string' ? value.split(',') : Array.isArray(value) ? value : undefined;
  if (!list || list.length === 0) throw invalid('rights', `must list rights from ${RIGHTS.join(', ')}.`);
  const rights = list.map((r) => (typeof r === 'string' ? r.trim() : ''));
  const unknown = rights.find((r) => !RIGHTS.includes(r as Right));
  if (unknown !== undefined) throw invalid('rights', `'${unknown}' is not one of ${RIGHTS.join(', ')}.`);
  return [...new Set(rights as Right[])];
}

/** A caller-chosen policy key: at least 32 bytes, as the ones generated here (a policy key can carry every right). */
function policyKey(body: Record<string, unknown>, field: string): string | undefined {
  const value = optionalString(body, field);
  if (value === undefined) return undefined;
  const bytes = Buffer.from(base64Key(value, field), 'base64').length;
  if (bytes < MIN_POLICY_KEY_BYTES) {
    throw invalid(field, `must be base64 of ${MIN_POLICY_KEY_BYTES} to 64 random bytes (got ${bytes}).`);
  }
  return value;
}

function assertPolicyName(name: string): void {
  if (!NAME.test(name)) throw invalid('name', 'use 1-64 letters, digits, ., _ or -, starting with a letter or digit.');
}

/** The path's host name, checked before it reaches storage (where `/ ? #` break the row key). */
function assertHubHostName(hostName: string): void {
  if (!isHubHostName(hostName)) {
    throw invalid('hostName', 'must be a DNS host name of at most 253 characters, with an optional :port.');
  }
}

const newKey = () => randomBytes(32).toString('base64');
