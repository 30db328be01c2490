import { describe, expect, it, vi } from 'vitest';

import type { Attestors } from '../../shared/attestation/attestation';
import { deriveDeviceKey, SymmetricKeyAttestor } from '../../shared/attestation/symmetricKey';
import type { EnrollmentGroup, IndividualEnrollment, InitialTwin } from '../../shared/domain/enrollment';
import type { LinkedHub } from '../../shared/domain/linkedHub';
import type { RegistrationOperationStatus } from '../../shared/domain/registrationState';
import type { ServiceConfiguration } from '../../shared/domain/serviceConfig';
import { conflict } from '../../shared/errors';
import type { JsonResult } from '../../shared/http/response';
import { createSas, parseSas } from '../../shared/http/sas';
import type { HubDeviceIdentity } from '../../shared/hubs/registryClient';
import type { WebhookOutcome, WebhookRequestInput } from '../../shared/allocation/custom';
import { DeviceMissingError, HubError } from '../../shared/hubs/registryClient';
import type { HubClientPool } from '../../shared/registration/assign';
import type { DeviceRequest } from '../../shared/registration/deviceRequest';
import type { RecentAttestation } from '../../shared/registration/service';
import { RegistrationService } from '../../shared/registration/service';
import { RecentMap } from '../../shared/storage/cache';
import type { DevicePartition, StoredRegistration, Versioned } from '../../shared/storage/devices';
import { publicEtag } from '../../shared/storage/etag';
import { dpsErrorOf } from '../support/dpsError';

const SCOPE = '0ne00000A0A';
const START = new Date('2024-01-01T00:00:00Z');
const BUDGET_MS = 25;
/** The hub deadline: also how old an operation's claim must be before a poll takes it over. */
const HUB_DEADLINE_MS = 10_000;
const RETRY_AFTER = 3;
const HUB_HOST = 'hub-a.azure-devices.net';
const HUB: LinkedHub = {
  hostName: HUB_HOST,
  connectionString: `HostName=${HUB_HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA`,
  allocationWeight: 1,
  applyAllocationPolicy: true,
};

const GROUP_PRIMARY = Buffer.alloc(64, 1).toString('base64');
const GROUP_SECONDARY = Buffer.alloc(64, 2).toString('base64');
const TWIN: InitialTwin = { tags: { env: 'test' }, properties: { desired: { interval: 5 } } };
const GROUP: EnrollmentGroup = {
  enrollmentGroupId: 'group-1',
  attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_PRIMARY, secondaryKey: GROUP_SECONDARY } },
  initialTwin: TWIN,
  provisioningStatus: 'enabled',
};
const IND_PRIMARY = Buffer.alloc(32, 3).toString('base64');
const IND_SECONDARY = Buffer.alloc(32, 4).toString('base64');

const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** A promise the test settles: `release()` lets a held hub call continue. */
function gate(): { promise: Promise<void>; release: () => void } {
  let release: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { promise, release };
}

/**
 * The device partition in memory, with the ETag semantics of DeviceRepository.saveRegistration: create (etag
 * undefined) fails with 409203 when the row exists; replace fails with 409203 unless the etag is current.
 */
class FakeDevices {
  readonly enrollments = new Map<string, Versioned<IndividualEnrollment>>();
  readonly registrations = new Map<string, Versioned<StoredRegistration>>();
  /** Errors the next saves throw before writing anything (a crash, a storage outage). */
  readonly saveFailures: (Error | undefined)[] = [];
  saves = 0;
  /** Partition reads (enrollment + registration) and point reads (registration row only). */
  loads = 0;
  pointReads = 0;
  private version = 0;

  load(registrationId: string): Promise<DevicePartition> {
    this.loads++;
    const key = registrationId.toLowerCase();
    const enrollment = this.enrollments.get(key);
    const registration = this.registrations.get(key);
    return Promise.resolve({
      ...(enrollment ? { enrollment: clone(enrollment) } : {}),
      ...(registration ? { registration: clone(registration) } : {}),
    });
  }

  getRegistration(registrationId: string): Promise<Versioned<StoredRegistration> | undefined> {
    this.pointReads++;
    const registration = this.registrations.get(registrationId.toLowerCase());
    return Promise.resolve(registration ? clone(registration) : undefined);
  }

  saveRegistration(
    registrationId: string,
    value: StoredRegistration,
    previous: Versioned<StoredRegistration> | undefined,
  ): Promise<Versioned<StoredRegistration>> {
    const failure = this.saveFailures.shift();
    if (failure) return Promise.reject(failure);
    const key = registrationId.toLowerCase();
    const current = this.registrations.get(key);
    const etag = previous?.etag;
    const stale = etag === undefined ? current !== undefined : current?.etag !== etag;
    if (stale) return Promise.reject(conflict('Precondition failed.'));
    this.saves++;
    const next = `W/"datetime'2024-01-01T00%3A00%3A00.${String(++this.version).padStart(7, '0')}Z'"`;
    // As the Table row: the state is stored without its etag.
    const stored = { value: clone({ ...value, state: { ...value.state, etag: undefined } }), etag: next };
    this.registrations.set(key, stored);
    return Promise.resolve(clone(stored));
  }

  row(registrationId: string): Versioned<StoredRegistration> | undefined {
    return this.registrations.get(registrationId.toLowerCase());
  }
}

type HubCall =
  | { op: 'upsertDevice'; hub: string; identity: HubDeviceIdentity }
  | { op: 'applyTwin'; hub: string; deviceId: string; twin: InitialTwin }
  | { op: 'getTwin'; hub: string; deviceId: string }
  | { op: 'deleteDevice'; hub: string; deviceId: string };

/** IoT hubs in memory: records every call; upserts can be held (gates) or made to fail. */
class FakeHubs implements HubClientPool {
  readonly calls: HubCall[] = [];
  /** hub → deviceId → identity, as the hub registry would hold them. */
  readonly devices = new Map<string, Map<string, HubDeviceIdentity>>();
  readonly twins = new Map<string, InitialTwin>();
  /** The next upserts wait for these promises, one each, before taking effect. */
  readonly upsertGates: Promise<void>[] = [];
  /** Thrown by the next upserts, one each. */
  readonly upsertFailures: Error[] = [];
  /** The abort signal each upsert was given (the hub step's deadline). */
  readonly signals: (AbortSignal | undefined)[] = [];

  for(hub: LinkedHub) {
    const host = hub.hostName;
    const registry = this.devices.get(host) ?? new Map<string, HubDeviceIdentity>();
    this.devices.set(host, registry);
    return {
      upsertDevice: async (
        identity: HubDeviceIdentity,
        _likelyExists?: boolean,
        options?: { signal?: AbortSignal; create?: boolean },
      ): Promise<void> => {
        this.calls.push({ op: 'upsertDevice', hub: host, identity });
        this.signals.push(options?.signal);
        const held = this.upsertGates.shift();
        if (held) await held;
        const failure = this.upsertFailures.shift();
        if (failure) throw failure;
        // The registry client's contract: an update-only upsert never creates a missing identity.
        if (options?.create === false && !registry.has(identity.deviceId)) {
          throw new DeviceMissingError(host, identity.deviceId);
        }
        registry.set(identity.deviceId, identity);
      },
      applyTwin: (deviceId: string, twin: InitialTwin): Promise<void> => {
        this.calls.push({ op: 'applyTwin', hub: host, deviceId, twin });
        this.twins.set(`${host}/${deviceId}`, twin);
        return Promise.resolve();
      },
      getTwin: (deviceId: string): Promise<InitialTwin | undefined> => {
        this.calls.push({ op: 'getTwin', hub: host, deviceId });
        return Promise.resolve(this.twins.get(`${host}/${deviceId}`));
      },
      deleteDevice: (deviceId: string): Promise<boolean> => {
        this.calls.push({ op: 'deleteDevice', hub: host, deviceId });
        this.twins.delete(`${host}/${deviceId}`);
        return Promise.resolve(registry.delete(deviceId));
      },
    };
  }

  upserts(): HubDeviceIdentity[] {
    return this.calls.flatMap((c) => (c.op === 'upsertDevice' ? [c.identity] : []));
  }

  /** Device IDs that exist on the hub now (upserts are idempotent, so this counts identities, not calls). */
  deviceIds(host = HUB_HOST): string[] {
    return [...(this.devices.get(host)?.keys() ?? [])];
  }
}

function setup(groups: EnrollmentGroup[] = [GROUP]) {
  return setupWith({ groups });
}

function setupWith(options: {
  groups?: EnrollmentGroup[];
  hubDeadlineMs?: number;
  budgetMs?: number;
  attestors?: Attestors;
}) {
  const groups = options.groups ?? [GROUP];
  const devices = new FakeDevices();
  const hubs = new FakeHubs();
  const logs: string[] = [];
  const webhookCalls: WebhookRequestInput[] = [];
  let webhookAnswer = (input: WebhookRequestInput): WebhookOutcome => ({
    ok: true,
    iotHubHostName: input.candidates[0] ?? '',
    payload: { answer: webhookCalls.length },
    durationMs: 1,
  });
  let now = START.getTime();
  const recentAttestations = new RecentMap<string, RecentAttestation>(5000, 10_000, () => now);
  const configuration: Pick<ServiceConfiguration, 'linkedHubs' | 'settings'> = {
    linkedHubs: [HUB],
    settings: { defaultAllocationPolicy: 'hashed' },
  };
  const service = new RegistrationService({
    idScope: SCOPE,
    devices,
    groups: { list: () => Promise.resolve(groups) },
    configuration: {
      get: () => Promise.resolve(configuration),
    },
    hubs,
    attestors: options.attestors ?? { symmetricKey: new SymmetricKeyAttestor() },
    recentAttestations,
    clock: () => new Date(now),
    budgetMs: options.budgetMs ?? BUDGET_MS,
    hubDeadlineMs: options.hubDeadlineMs ?? HUB_DEADLINE_MS,
    retryAfterSeconds: RETRY_AFTER,
    allocation: {
      geo: { latencies: new Map() },
      webhookTimeoutMs: 1000,
      callWebhook: (input) => {
        webhookCalls.push(input);
        return Promise.resolve(webhookAnswer(input));
      },
      log: (message) => logs.push(message),
    },
    log: (message) => logs.push(message),
  });
  return {
    service,
    devices,
    hubs,
    logs,
    configuration,
    recentAttestations,
    webhookCalls,
    answerWebhook: (answer: typeof webhookAnswer) => {
      webhookAnswer = answer;
    },
    advance: (ms: number) => {
      now += ms;
    },
  };
}

/** A device request signed like the SDKs sign it: sr = `{idScope}/registrations/{registrationId}`. */
function deviceRequest(
  registrationId: string,
  options: { key?: string; idScope?: string; payload?: unknown } = {},
): DeviceRequest {
  const idScope = options.idScope ?? SCOPE;
  const key = options.key ?? deriveDeviceKey(GROUP_PRIMARY, registrationId);
  const expiry = Math.floor(START.getTime() / 1000) + 3600;
  return {
    idScope,
    registrationId,
    sasToken: parseSas(createSas(`${idScope}/registrations/${registrationId}`, key, expiry, 'registration')),
    forceRegistration: false,
    ...(options.payload !== undefined ? { payload: options.payload } : {}),
  };
}

const bodyOf = (result: JsonResult): RegistrationOperationStatus => result.body as RegistrationOperationStatus;

/** Lets pending promise callbacks (a background commit) run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('RegistrationService.register: a group device', () => {
  it('first registration answers 202 assigned with initialAssignment and the committed state', async () => {
    const { service, devices } = setup();
    const result = await service.register(deviceRequest('device-1'));

    expect(result.status).toBe(202);
    const body = bodyOf(result);
    expect(body.operationId).toMatch(/^1\.[0-9a-f]{16}\.[0-9a-f-]{36}$/);
    expect(body.status).toBe('assigned');
    const row = devices.row('device-1');
    expect(row?.value.operation).toMatchObject({ operationId: body.operationId, status: 'assigned' });
    expect(body.registrationState).toEqual({
      registrationId: 'device-1',
      createdDateTimeUtc: START.toISOString(),
      assignedHub: HUB_HOST,
      deviceId: 'device-1',
      status: 'assigned',
      substatus: 'initialAssignment',
      symmetricKey: { enrollmentGroupId: 'group-1' },
      lastUpdatedDateTimeUtc: START.toISOString(),
      etag: publicEtag(row?.etag ?? ''),
    });
    expect(result.headers?.['Retry-After']).toBeUndefined();
  });

  it('a device that registers again with other letter case keeps its first device ID (hub IDs are case-sensitive)', async () => {
    const { service, hubs } = setup();
    await service.register(deviceRequest('device-1'));
    const again = bodyOf(await service.register(deviceRequest('Device-1')));
    expect(again.registrationState).toMatchObject({
      registrationId: 'Device-1',
      deviceId: 'device-1',
      substatus: 'reprovisionedToInitialAssignment',
    });
    expect(hubs.deviceIds()).toEqual(['device-1']);
    expect(hubs.calls.filter((c) => c.op === 'deleteDevice')).toEqual([]);
  });

  it('creates the hub device once with the derived group keys, then applies the group initial twin', async () => {
    const { service, hubs } = setup();
    await service.register(deviceRequest('device-1'));

    expect(hubs.calls).toEqual([
      {
        op: 'upsertDevice',
        hub: HUB_HOST,
        identity: {
          deviceId: 'device-1',
          authentication: {
            type: 'sas',
            primaryKey: deriveDeviceKey(GROUP_PRIMARY, 'device-1'),
            secondaryKey: deriveDeviceKey(GROUP_SECONDARY, 'device-1'),
          },
          iotEdge: false,
        },
      },
      { op: 'applyTwin', hub: HUB_HOST, deviceId: 'device-1', twin: TWIN },
    ]);
  });

  it('a device signing with its derived secondary key is registered too', async () => {
    const { service } = setup();
    const result = await service.register(
      deviceRequest('device-2', { key: deriveDeviceKey(GROUP_SECONDARY, 'device-2') }),
    );
    expect(bodyOf(result).status).toBe('assigned');
  });

  it("never echoes the device's payload (DPS returns only a custom-allocation webhook's)", async () => {
    const { service, webhookCalls } = setup();
    const done = await service.register(deviceRequest('device-1', { payload: { model: 'x1' } }));
    expect(bodyOf(done).status).toBe('assigned');
    expect(bodyOf(done).registrationState).not.toHaveProperty('payload');
    expect((await service.statusLookup(deviceRequest('device-1'))).body).not.toHaveProperty('payload');
    expect(webhookCalls).toHaveLength(0); // not a custom enrollment
  });

  it("custom: the webhook sees the device's payload once; a takeover applies the recorded decision", async () => {
    const custom: EnrollmentGroup = {
      ...GROUP,
      allocationPolicy: 'custom',
      customAllocationDefinition: { webhookUrl: 'https://hook.example/api/a?code=k', apiVersion: '2021-10-01' },
    };
    const { service, devices, hubs, webhookCalls, advance } = setup([custom]);
    const stuck = gate();
    hubs.upsertGates.push(stuck.promise);
    const started = bodyOf(await service.register(deviceRequest('device-1', { payload: { modelId: 'dtmi:x;1' } })));
    expect(started.status).toBe('assigning');
    expect(webhookCalls).toHaveLength(1);
    expect(webhookCalls[0]).toMatchObject({ payload: { modelId: 'dtmi:x;1' }, candidates: [HUB_HOST] });
    expect(devices.row('device-1')?.value.operation.plan).toMatchObject({ webhookPayload: { answer: 1 } });

    advance(HUB_DEADLINE_MS);
    const resumed = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect(bodyOf(resumed)).toMatchObject({ status: 'assigned', registrationState: { payload: { answer: 1 } } });
    expect(webhookCalls).toHaveLength(1); // the takeover did not ask again
    stuck.release();
  });

  it('custom: a failed webhook fails the registration with its message, or falls back when configured', async () => {
    const definition = { webhookUrl: 'https://hook.example/api/a', apiVersion: '2021-10-01' };
    const failing: EnrollmentGroup = { ...GROUP, allocationPolicy: 'custom', customAllocationDefinition: definition };
    const { service, answerWebhook, hubs } = setup([failing]);
    answerWebhook(() => ({
      ok: false,
      reason: 'status',
      httpStatus: 500,
      errorMessage: 'Custom allocation webhook https://hook.example/api/a answered HTTP 500: boom',
      durationMs: 1,
    }));
    const failed = bodyOf(await service.register(deviceRequest('device-1')));
    expect(failed).toMatchObject({ status: 'failed', registrationState: { errorCode: 400208 } });
    expect(failed.registrationState.errorMessage).toContain('HTTP 500: boom');
    expect(hubs.upserts()).toHaveLength(0);

    const withFallback: EnrollmentGroup = {
      ...failing,
      customAllocationDefinition: { ...definition, fallbackAllocationPolicy: 'hashed' },
    };
    const second = setup([withFallback]);
    second.answerWebhook(() => ({ ok: false, reason: 'timeout', errorMessage: 'late', durationMs: 1 }));
    const fallen = bodyOf(await second.service.register(deviceRequest('device-1')));
    expect(fallen).toMatchObject({ status: 'assigned', registrationState: { assignedHub: HUB_HOST } });
    expect(fallen.registrationState).not.toHaveProperty('payload');
  });

  it('a payload a custom-allocation webhook put in the plan is the one returned', async () => {
    const { service, devices, hubs, advance } = setup();
    const slow = gate();
    hubs.upsertGates.push(slow.promise);
    const started = bodyOf(await service.register(deviceRequest('device-1', { payload: { from: 'device' } })));
    // The plan as a webhook-driven allocation would leave it (the webhook itself arrives with the next issue).
    const row = devices.row('device-1');
    const plan = row?.value.operation.plan;
    if (!row || !plan) throw new Error('no pending operation');
    devices.registrations.set('device-1', {
      ...row,
      value: {
        ...row.value,
        operation: { ...row.value.operation, plan: { ...plan, webhookPayload: { from: 'hook' } } },
      },
    });
    advance(HUB_DEADLINE_MS);
    const resumed = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect(bodyOf(resumed).registrationState.payload).toEqual({ from: 'hook' });
    slow.release();
  });

  it('re-registering an assigned device keeps one hub device and its creation time, without re-applying the twin', async () => {
    const { service, hubs, advance } = setup();
    await service.register(deviceRequest('device-1'));
    advance(60_000);
    const again = bodyOf(await service.register(deviceRequest('device-1')));

    expect(again.status).toBe('assigned');
    expect(again.registrationState.substatus).toBe('reprovisionedToInitialAssignment');
    expect(again.registrationState.createdDateTimeUtc).toBe(START.toISOString());
    expect(again.registrationState.lastUpdatedDateTimeUtc).toBe(new Date(START.getTime() + 60_000).toISOString());
    expect(hubs.deviceIds()).toEqual(['device-1']);
    expect(hubs.calls.filter((c) => c.op === 'applyTwin')).toHaveLength(1);
  });

  it('a token signed with another key is 401 and touches neither storage nor the hub', async () => {
    const { service, devices, hubs } = setup();
    const err = await dpsErrorOf(service.register(deviceRequest('device-1', { key: GROUP_PRIMARY })));
    expect(err).toMatchObject({ status: 401, errorCode: 401002 });
    expect(devices.saves).toBe(0);
    expect(hubs.calls).toEqual([]);
  });
});

describe('RegistrationService.register: an individual enrollment', () => {
  it('uses the enrollment deviceId and keys for the hub identity', async () => {
    const { service, devices, hubs } = setup([]);
    devices.enrollments.set('device-9', {
      value: {
        registrationId: 'device-9',
        deviceId: 'custom-device',
        attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: IND_PRIMARY, secondaryKey: IND_SECONDARY } },
        capabilities: { iotEdge: true },
      },
      etag: 'e1',
    });
    const body = bodyOf(await service.register(deviceRequest('device-9', { key: IND_SECONDARY })));

    expect(body.status).toBe('assigned');
    expect(body.registrationState).toMatchObject({ deviceId: 'custom-device', assignedHub: HUB_HOST });
    // As DPS reports the mechanism of an individual enrollment: an empty object (`"x509": {}` is observed).
    expect(body.registrationState.symmetricKey).toEqual({});
    expect(hubs.upserts()).toEqual([
      {
        deviceId: 'custom-device',
        authentication: { type: 'sas', primaryKey: IND_PRIMARY, secondaryKey: IND_SECONDARY },
        iotEdge: true,
      },
    ]);
    // No initial twin on this enrollment: nothing to apply.
    expect(hubs.calls.filter((c) => c.op === 'applyTwin')).toEqual([]);
  });
});

describe('RegistrationService: crash recovery', () => {
  it('a crash after the hub step, then a re-register, converges on one hub device and an assigned state', async () => {
    const { service, devices, hubs } = setup();
    // The claim of the row lands, the commit after the hub step does not.
    devices.saveFailures.push(undefined, new Error('process died before the commit'));
    await expect(service.register(deviceRequest('device-1'))).rejects.toThrow('process died');
    expect(hubs.deviceIds()).toEqual(['device-1']);
    expect(devices.row('device-1')?.value.operation).toMatchObject({
      status: 'assigning',
      plan: { deviceId: 'device-1' },
    });

    const retried = await service.register(deviceRequest('device-1'));
    expect(bodyOf(retried).status).toBe('assigned');
    expect(bodyOf(retried).registrationState.substatus).toBe('initialAssignment');
    expect(hubs.upserts()).toHaveLength(2);
    expect(new Set(hubs.upserts().map((u) => u.deviceId))).toEqual(new Set(['device-1']));
    expect(hubs.deviceIds()).toEqual(['device-1']);
    const lookup = await service.statusLookup(deviceRequest('device-1'));
    expect(lookup.body).toMatchObject({ status: 'assigned', assignedHub: HUB_HOST, deviceId: 'device-1' });
  });

  it('a background commit lost to a crash is finished by a poll after the hub deadline, with one hub device', async () => {
    const { service, devices, hubs, logs, advance } = setup();
    const slow = gate();
    hubs.upsertGates.push(slow.promise);
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    expect(started.status).toBe('assigning');

    devices.saveFailures.push(new Error('process died before the background commit'));
    slow.release();
    await vi.waitFor(() => expect(logs.join('\n')).toContain('skipped'));
    expect(devices.row('device-1')?.value.operation.status).toBe('assigning');

    const early = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect(early.status).toBe(202);
    expect(bodyOf(early).status).toBe('assigning');

    advance(HUB_DEADLINE_MS);
    const resumed = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect(resumed.status).toBe(200);
    expect(bodyOf(resumed).status).toBe('assigned');
    expect(hubs.deviceIds()).toEqual(['device-1']);
    expect(devices.row('device-1')?.value.operation).toMatchObject({
      operationId: started.operationId,
      status: 'assigned',
    });
  });
});

describe('RegistrationService: a slow hub', () => {
  it('over budget: 202 assigning with Retry-After; a poll before the hub deadline waits; the background commit finishes', async () => {
    const { service, devices, hubs, advance } = setup();
    const slow = gate();
    hubs.upsertGates.push(slow.promise);

    const started = await service.register(deviceRequest('device-1'));
    expect(started.status).toBe(202);
    expect(started.headers).toEqual({ 'Retry-After': String(RETRY_AFTER) });
    const body = bodyOf(started);
    expect(body.status).toBe('assigning');
    expect(body.registrationState).toEqual({ registrationId: 'device-1', status: 'assigning' });
    expect(devices.row('device-1')?.value.operation).toMatchObject({
      operationId: body.operationId,
      status: 'assigning',
      startedAtUtc: START.toISOString(),
    });

    advance(HUB_DEADLINE_MS - 1);
    const early = await service.operationStatus(deviceRequest('device-1'), body.operationId);
    expect(early.status).toBe(202);
    expect(early.headers).toEqual({ 'Retry-After': String(RETRY_AFTER) });
    expect(bodyOf(early).status).toBe('assigning');
    expect(hubs.upserts()).toHaveLength(1);

    slow.release();
    await vi.waitFor(() => expect(devices.row('device-1')?.value.operation.status).toBe('assigned'));

    const done = await service.operationStatus(deviceRequest('device-1'), body.operationId);
    expect(done.status).toBe(200);
    expect(bodyOf(done)).toMatchObject({
      operationId: body.operationId,
      status: 'assigned',
      registrationState: {
        registrationId: 'device-1',
        status: 'assigned',
        assignedHub: HUB_HOST,
        deviceId: 'device-1',
        substatus: 'initialAssignment',
        etag: publicEtag(devices.row('device-1')?.etag ?? ''),
      },
    });
    expect(hubs.upserts()).toHaveLength(1);
    expect(hubs.deviceIds()).toEqual(['device-1']);
  });

  it('a stuck operation is resumed and finished by a poll after the hub deadline; the late original commit is dropped', async () => {
    const { service, devices, hubs, logs, advance } = setup();
    const stuck = gate();
    hubs.upsertGates.push(stuck.promise);
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    expect(started.status).toBe('assigning');

    advance(HUB_DEADLINE_MS);
    const resumed = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect(resumed.status).toBe(200);
    expect(bodyOf(resumed)).toMatchObject({
      operationId: started.operationId,
      status: 'assigned',
      registrationState: { status: 'assigned', assignedHub: HUB_HOST, substatus: 'initialAssignment' },
    });
    expect(hubs.upserts()).toHaveLength(2);
    expect(hubs.deviceIds()).toEqual(['device-1']);
    const committed = devices.row('device-1');
    expect(committed?.value.operation.status).toBe('assigned');

    // The original instance wakes up: its commit holds a stale ETag and must not overwrite the result.
    stuck.release();
    await vi.waitFor(() => expect(logs.join('\n')).toContain(`background commit of ${started.operationId} skipped`));
    expect(devices.row('device-1')).toEqual(committed);
  });

  it('of 10 concurrent polls of an overdue operation exactly one takes it over (one hub call); the others wait', async () => {
    const { service, devices, hubs, advance } = setup();
    const lost = gate();
    const takeover = gate();
    hubs.upsertGates.push(lost.promise, takeover.promise);
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    advance(HUB_DEADLINE_MS);

    const polls = await Promise.all(
      Array.from({ length: 10 }, () => service.operationStatus(deviceRequest('device-1'), started.operationId)),
    );
    // Every poll answered within the budget (the takeover's hub step is still held), all of them `assigning`.
    expect(polls.map((p) => [p.status, bodyOf(p).status, p.headers?.['Retry-After']])).toEqual(
      Array.from({ length: 10 }, () => [202, 'assigning', String(RETRY_AFTER)]),
    );
    expect(hubs.upserts()).toHaveLength(2); // the original's, and the one takeover's
    expect(devices.row('device-1')?.value.operation.claimedAtUtc).toBe(
      new Date(START.getTime() + HUB_DEADLINE_MS).toISOString(),
    );

    // A later poll sees a fresh claim: it waits instead of calling the hub again.
    expect(bodyOf(await service.operationStatus(deviceRequest('device-1'), started.operationId)).status).toBe(
      'assigning',
    );
    expect(hubs.upserts()).toHaveLength(2);

    takeover.release();
    await vi.waitFor(() => expect(devices.row('device-1')?.value.operation.status).toBe('assigned'));
    lost.release(); // the original owner's late commit holds a stale ETag: dropped
    const done = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect([done.status, bodyOf(done).status]).toEqual([200, 'assigned']);
    expect(hubs.deviceIds()).toEqual(['device-1']);
  });

  it('a hub step that outlives the hub deadline is abandoned and the operation fails with 500001', async () => {
    const { service, devices, hubs, logs } = setupWith({ hubDeadlineMs: 40 });
    hubs.upsertGates.push(new Promise<void>(() => undefined)); // a hub that never answers
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    expect(started.status).toBe('assigning');
    await vi.waitFor(() => expect(devices.row('device-1')?.value.operation.status).toBe('failed'));
    expect(devices.row('device-1')?.value.state).toMatchObject({ status: 'failed', errorCode: 500001 });
    expect(logs.join('\n')).toContain('did not finish within 40 ms');
    expect(hubs.signals[0]?.aborted).toBe(true);
  });

  it('a resumed operation whose hub was unlinked meanwhile fails with 500001', async () => {
    const { service, hubs, configuration, advance } = setup();
    const stuck = gate();
    hubs.upsertGates.push(stuck.promise);
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    configuration.linkedHubs = [];

    advance(HUB_DEADLINE_MS);
    const resumed = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect(resumed.status).toBe(200);
    expect(bodyOf(resumed)).toMatchObject({ status: 'failed', registrationState: { errorCode: 500001 } });
    expect(bodyOf(resumed).registrationState.errorMessage).toContain(HUB_HOST);
  });

  it('statusLookup during a slow first registration shows assigning', async () => {
    const { service, hubs } = setup();
    const slow = gate();
    hubs.upsertGates.push(slow.promise);
    await service.register(deviceRequest('device-1'));
    const lookup = await service.statusLookup(deviceRequest('device-1'));
    expect(lookup.status).toBe(200);
    expect(lookup.body).toMatchObject({ registrationId: 'device-1', status: 'assigning' });
    slow.release();
    await settle();
  });
});

describe('RegistrationService: racing registrations whose plans differ leave one identity', () => {
  const HUB_B: LinkedHub = {
    ...HUB,
    hostName: 'hub-b.azure-devices.net',
    connectionString: 'HostName=hub-b.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA',
  };
  const identities = (hubs: FakeHubs) =>
    [HUB_HOST, HUB_B.hostName].flatMap((h) => hubs.deviceIds(h).map((id) => `${h}/${id}`));

  it('a registration that finds an operation in flight finishes its plan, though the enrollment now names another hub', async () => {
    const group: EnrollmentGroup = { ...GROUP, iotHubs: [HUB_HOST] };
    const { service, devices, hubs, configuration, logs } = setupWith({ groups: [group] });
    configuration.linkedHubs = [HUB, HUB_B];
    const slow = gate();
    hubs.upsertGates.push(slow.promise);
    const first = bodyOf(await service.register(deviceRequest('device-1')));
    expect(first.status).toBe('assigning');

    // The operator moves the group (or another instance sees other linked hubs) while the first hub step runs.
    group.iotHubs = [HUB_B.hostName];
    const second = bodyOf(await service.register(deviceRequest('Device-1')));
    expect(second.registrationState).toMatchObject({ status: 'assigned', assignedHub: HUB_HOST, deviceId: 'device-1' });
    slow.release();
    await vi.waitFor(() => expect(logs.join('\n')).toContain(`background commit of ${first.operationId} skipped`));
    expect(identities(hubs)).toEqual([`${HUB_HOST}/device-1`]);

    // The next registration moves the device from the committed state: still one identity.
    const moved = bodyOf(await service.register(deviceRequest('device-1')));
    expect(moved.registrationState).toMatchObject({ assignedHub: HUB_B.hostName, substatus: 'deviceDataMigrated' });
    expect(identities(hubs)).toEqual([`${HUB_B.hostName}/device-1`]);
    expect(devices.row('device-1')?.value.state.assignedHub).toBe(HUB_B.hostName);
  });

  it('an unclaimed re-registration never re-creates the identity a racing move deleted', async () => {
    const group: EnrollmentGroup = { ...GROUP, iotHubs: [HUB_HOST] };
    // A budget long enough that R1 waits for its held update instead of claiming the row as a slow PUT does.
    const { service, devices, hubs, configuration } = setupWith({ groups: [group], budgetMs: HUB_DEADLINE_MS });
    configuration.linkedHubs = [HUB, HUB_B];
    await service.register(deviceRequest('device-1'));
    expect(identities(hubs)).toEqual([`${HUB_HOST}/device-1`]);

    // R1: same hub and device ID, so no claim; its update is held in flight.
    const held = gate();
    hubs.upsertGates.push(held.promise);
    const upserts = hubs.upserts().length;
    const r1 = service.register(deviceRequest('device-1'));
    await vi.waitFor(() => expect(hubs.upserts()).toHaveLength(upserts + 1));
    // R2 (the enrollment moved meanwhile) claims, creates the identity on hub B and deletes the one on hub A.
    group.iotHubs = [HUB_B.hostName];
    const r2 = bodyOf(await service.register(deviceRequest('device-1')));
    expect(r2.registrationState).toMatchObject({ status: 'assigned', assignedHub: HUB_B.hostName });
    expect(identities(hubs)).toEqual([`${HUB_B.hostName}/device-1`]);

    // R1's update lands after the delete: it must not bring the old identity back.
    held.release();
    expect(await dpsErrorOf(r1)).toMatchObject({ status: 409, errorCode: 409203 });
    await settle();
    expect(identities(hubs)).toEqual([`${HUB_B.hostName}/device-1`]);
    expect(devices.row('device-1')?.value.state.assignedHub).toBe(HUB_B.hostName);
  });

  it('an identity deleted from its hub (by an operator) is created again, after claiming the row', async () => {
    const { service, devices, hubs } = setup();
    await service.register(deviceRequest('device-1'));
    hubs.devices.get(HUB_HOST)?.delete('device-1');
    const saves = devices.saves;
    const again = bodyOf(await service.register(deviceRequest('device-1')));
    expect(again.registrationState).toMatchObject({ status: 'assigned', assignedHub: HUB_HOST, deviceId: 'device-1' });
    expect(hubs.deviceIds()).toEqual(['device-1']);
    expect(devices.saves - saves).toBe(2); // the claim, then the commit
  });
});

describe('RegistrationService: failures', () => {
  it('a hub failure is status failed with errorCode 500001, naming only the hub host', async () => {
    const { service, hubs, devices, logs } = setup();
    hubs.upsertFailures.push(
      new HubError(HUB_HOST, 403, 'IotHubQuotaExceeded: SharedAccessKeyName=iothubowner tracking 0xdeadbeef'),
    );
    const result = await service.register(deviceRequest('device-1'));

    expect(result.status).toBe(202);
    const body = bodyOf(result);
    expect(body.status).toBe('failed');
    expect(body.registrationState).toMatchObject({ registrationId: 'device-1', status: 'failed', errorCode: 500001 });
    const message = body.registrationState.errorMessage ?? '';
    expect(message).toContain(HUB_HOST);
    for (const detail of ['403', 'IotHubQuotaExceeded', 'SharedAccessKeyName', 'iothubowner', '0xdeadbeef']) {
      expect(message).not.toContain(detail);
    }
    expect(body.registrationState.assignedHub).toBeUndefined();
    expect(devices.row('device-1')?.value.operation.status).toBe('failed');
    // The operator still gets the detail in the log.
    expect(logs.join('\n')).toContain('IotHubQuotaExceeded');

    const poll = await service.operationStatus(deviceRequest('device-1'), body.operationId);
    expect(poll.status).toBe(200);
    expect(bodyOf(poll).status).toBe('failed');
  });

  it('a static enrollment whose hub is not linked fails with 400208 before touching any hub', async () => {
    const { service, hubs } = setup([{ ...GROUP, iotHubs: ['gone.azure-devices.net'], allocationPolicy: 'static' }]);
    const body = bodyOf(await service.register(deviceRequest('device-1')));
    expect(body.status).toBe('failed');
    expect(body.registrationState.errorCode).toBe(400208);
    expect(hubs.calls).toEqual([]);
  });

  it('a disabled enrollment answers status disabled and never touches the hub', async () => {
    const { service, hubs, devices } = setup([{ ...GROUP, provisioningStatus: 'disabled' }]);
    const result = await service.register(deviceRequest('device-1'));

    expect(result.status).toBe(202);
    expect(bodyOf(result).status).toBe('disabled');
    expect(bodyOf(result).registrationState).toMatchObject({ registrationId: 'device-1', status: 'disabled' });
    expect(hubs.calls).toEqual([]);
    expect(devices.row('device-1')?.value.state.status).toBe('disabled');
    expect((await service.statusLookup(deviceRequest('device-1'))).body).toMatchObject({ status: 'disabled' });
  });

  it('a wrong ID scope is 401 on every device endpoint', async () => {
    const { service, devices, hubs } = setup();
    const request = deviceRequest('device-1', { idScope: '0ne99999999' });
    expect(await dpsErrorOf(service.register(request))).toMatchObject({ status: 401, errorCode: 401002 });
    expect(await dpsErrorOf(service.operationStatus(request, 'op'))).toMatchObject({ status: 401 });
    expect(await dpsErrorOf(service.statusLookup(request))).toMatchObject({ status: 401 });
    expect(devices.saves).toBe(0);
    expect(hubs.calls).toEqual([]);
  });

  it('the ID scope is compared case-insensitively', async () => {
    const { service } = setup();
    const body = bodyOf(await service.register(deviceRequest('device-1', { idScope: SCOPE.toLowerCase() })));
    expect(body.status).toBe('assigned');
  });

  it('a request with no credential at all (no SAS, certificate or TPM body) is 401 naming that, before any read', async () => {
    const { service, devices } = setup();
    const request: DeviceRequest = { ...deviceRequest('device-1'), sasToken: null };
    const err = await dpsErrorOf(service.register(request));
    expect(err).toMatchObject({ status: 401, errorCode: 401002 });
    expect(err.message).toMatch(/No credential was presented/);
    expect(devices.loads).toBe(0);
  });
});

describe('RegistrationService: operations and status lookup', () => {
  it('an operation ID that is not the current one is 404', async () => {
    const { service } = setup();
    expect(await dpsErrorOf(service.operationStatus(deviceRequest('device-1'), 'nope'))).toMatchObject({
      status: 404,
    });
    const first = bodyOf(await service.register(deviceRequest('device-1')));
    expect(await dpsErrorOf(service.operationStatus(deviceRequest('device-1'), `${first.operationId}x`))).toMatchObject(
      { status: 404 },
    );
    // A re-register replaces the operation: the old ID is gone.
    const second = bodyOf(await service.register(deviceRequest('device-1')));
    expect(second.operationId).not.toBe(first.operationId);
    expect(await dpsErrorOf(service.operationStatus(deviceRequest('device-1'), first.operationId))).toMatchObject({
      status: 404,
    });
    expect((await service.operationStatus(deviceRequest('device-1'), second.operationId)).status).toBe(200);
  });

  it('a finished operation polls 200 with the committed state and its etag', async () => {
    const { service, devices } = setup();
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    const poll = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect(poll.status).toBe(200);
    expect(bodyOf(poll)).toEqual({
      ...started,
      registrationState: { ...started.registrationState, etag: publicEtag(devices.row('device-1')?.etag ?? '') },
    });
  });

  it('statusLookup is 404 before the first registration and 200 with the state after', async () => {
    const { service, devices } = setup();
    expect(await dpsErrorOf(service.statusLookup(deviceRequest('device-1')))).toMatchObject({ status: 404 });

    await service.register(deviceRequest('device-1'));
    const lookup = await service.statusLookup(deviceRequest('device-1'));
    expect(lookup.status).toBe(200);
    expect(lookup.body).toEqual({
      registrationId: 'device-1',
      createdDateTimeUtc: START.toISOString(),
      assignedHub: HUB_HOST,
      deviceId: 'device-1',
      status: 'assigned',
      substatus: 'initialAssignment',
      symmetricKey: { enrollmentGroupId: 'group-1' },
      lastUpdatedDateTimeUtc: START.toISOString(),
      etag: publicEtag(devices.row('device-1')?.etag ?? ''),
    });
  });

  it('a poll on the instance that just attested the device is one point read, without the enrollment', async () => {
    const { service, devices } = setup();
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    const [loads, pointReads] = [devices.loads, devices.pointReads];
    const poll = await service.operationStatus(deviceRequest('device-1'), started.operationId);
    expect(poll.status).toBe(200);
    expect([devices.loads - loads, devices.pointReads - pointReads]).toEqual([0, 1]);
    expect((await service.statusLookup(deviceRequest('device-1'))).status).toBe(200);
    expect([devices.loads - loads, devices.pointReads - pointReads]).toEqual([0, 2]);
  });

  it('an individual device polls by point read too, and a wrong key still gets 401', async () => {
    const { service, devices } = setup();
    devices.enrollments.set('ind-1', {
      value: {
        registrationId: 'ind-1',
        attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: IND_PRIMARY, secondaryKey: IND_SECONDARY } },
      },
      etag: 'e1',
    });
    const started = bodyOf(await service.register(deviceRequest('ind-1', { key: IND_SECONDARY })));
    const loads = devices.loads;
    expect(
      (await service.operationStatus(deviceRequest('ind-1', { key: IND_PRIMARY }), started.operationId)).status,
    ).toBe(200);
    expect(devices.loads).toBe(loads);
    // Not this enrollment's key: the fast path declines, and the authoritative path answers 401.
    const forged = deviceRequest('ind-1', { key: Buffer.alloc(32, 9).toString('base64') });
    expect(await dpsErrorOf(service.operationStatus(forged, started.operationId))).toMatchObject({ status: 401 });
    expect(devices.loads).toBe(loads + 1);
  });

  it('a failed attestation forgets the remembered keys: the old key no longer polls', async () => {
    const { service, devices } = setup();
    const enrollment = (primaryKey: string): Versioned<IndividualEnrollment> => ({
      value: { registrationId: 'ind-2', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey } } },
      etag: 'e1',
    });
    devices.enrollments.set('ind-2', enrollment(IND_PRIMARY));
    const started = bodyOf(await service.register(deviceRequest('ind-2', { key: IND_PRIMARY })));
    // The keys are rotated (on another instance): the next full check with the old key fails…
    devices.enrollments.set('ind-2', enrollment(IND_SECONDARY));
    expect(await dpsErrorOf(service.register(deviceRequest('ind-2', { key: IND_PRIMARY })))).toMatchObject({
      status: 401,
    });
    // …and from then on a poll with it is checked against the enrollment again, not against what was remembered.
    const old = deviceRequest('ind-2', { key: IND_PRIMARY });
    expect(await dpsErrorOf(service.operationStatus(old, started.operationId))).toMatchObject({ status: 401 });
  });

  it('without a recent attestation (expired, cleared, another instance) a poll reads the partition', async () => {
    const { service, devices, advance, recentAttestations } = setup();
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    advance(5000);
    let loads = devices.loads;
    expect((await service.operationStatus(deviceRequest('device-1'), started.operationId)).status).toBe(200);
    expect(devices.loads).toBe(loads + 1);
    recentAttestations.clear();
    loads = devices.loads;
    expect((await service.statusLookup(deviceRequest('device-1'))).status).toBe(200);
    expect(devices.loads).toBe(loads + 1);
  });

  it('a recent attestation does not hide a deleted registration: the poll is 404', async () => {
    const { service, devices } = setup();
    const started = bodyOf(await service.register(deviceRequest('device-1')));
    devices.registrations.clear();
    expect(await dpsErrorOf(service.operationStatus(deviceRequest('device-1'), started.operationId))).toMatchObject({
      status: 404,
    });
    expect(await dpsErrorOf(service.statusLookup(deviceRequest('device-1')))).toMatchObject({ status: 404 });
  });

  it('statusLookup of another device is still 404 (registrations are per device)', async () => {
    const { service } = setup();
    await service.register(deviceRequest('device-1'));
    expect(await dpsErrorOf(service.statusLookup(deviceRequest('device-2')))).toMatchObject({ status: 404 });
  });
});

describe('RegistrationService: the attestation seam', () => {
  const CERT_INFO = {
    subjectName: 'CN=x509-dev-1',
    sha1Thumbprint: 'AA',
    sha256Thumbprint: 'BB',
    issuerName: 'CN=intermediate',
    notBeforeUtc: '2024-01-01T00:00:00Z',
    notAfterUtc: '2025-01-01T00:00:00Z',
    serialNumber: '01',
    version: 3,
  };
  const CA_GROUP: EnrollmentGroup = { enrollmentGroupId: 'ca-group', attestation: { type: 'x509' } };

  it('any mechanism: the hub device is created from hubAuthentication, the state gets registrationFields', async () => {
    const { service, hubs, devices } = setupWith({
      groups: [CA_GROUP],
      attestors: {
        x509: {
          mechanism: 'x509',
          attest: (_request, candidates) => {
            const group = candidates.groups.find((g) => g.enrollmentGroupId === 'ca-group');
            if (!group) throw new Error('no group');
            return {
              kind: 'group',
              enrollment: group,
              enrollmentGroupId: 'ca-group',
              hubAuthentication: { type: 'certificateAuthority' },
              registrationFields: { x509: { enrollmentGroupId: 'ca-group', certificateInfo: CERT_INFO } },
            };
          },
        },
      },
    });
    const request: DeviceRequest = {
      idScope: SCOPE,
      registrationId: 'x509-dev-1',
      sasToken: null,
      clientCertificate: 'MIIB',
      forceRegistration: false,
    };
    const body = bodyOf(await service.register(request));
    expect(body.registrationState).toMatchObject({
      status: 'assigned',
      deviceId: 'x509-dev-1',
      x509: { enrollmentGroupId: 'ca-group', certificateInfo: CERT_INFO },
    });
    expect(body.registrationState.symmetricKey).toBeUndefined();
    expect(hubs.upserts()).toEqual([
      { deviceId: 'x509-dev-1', authentication: { type: 'certificateAuthority' }, iotEdge: false },
    ]);
    // No `recent` check: the next poll attests again (the partition read), as DPS verifies certificates every time.
    const loads = devices.loads;
    expect((await service.operationStatus(request, body.operationId)).status).toBe(200);
    expect(devices.loads).toBe(loads + 1);
  });
});
