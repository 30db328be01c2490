// The reprovisioning matrix end to end (reference/dps-protocol.md §5): the official device SDK registers, the operator
// edits the twin on the hub (azure-iothub), the enrollment changes (hub, reprovisionPolicy), the device registers again;
// substatus, where the device is, and its twin are read back from two hub emulators with azure-iothub.
import { randomBytes } from 'node:crypto';

import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import type { IndividualEnrollment, ReprovisionPolicy } from '../../shared/domain/enrollment';
import { registerDevice } from '../support/device';
import { startTestStack } from '../support/stack';

const INITIAL_TWIN = { tags: { stage: 'initial' }, properties: { desired: { rate: 1 } } };

describe('reprovisioning across two hubs', () => {
  let stack: Stack;
  const key = randomBytes(64).toString('base64');
  const hub = (i: number) => {
    const h = stack.hubs[i];
    if (!h) throw new Error(`no hub ${i}`);
    return h;
  };
  const registry = (i: number) => Registry.fromConnectionString(hub(i).connectionString);
  const twinOf = async (i: number, id: string) => (await registry(i).getTwin(id)).responseBody;

  const enroll = (id: string, hubIndex: number, reprovisionPolicy?: ReprovisionPolicy, extra = {}) => {
    const enrollment: IndividualEnrollment = {
      registrationId: id,
      allocationPolicy: 'static',
      iotHubs: [hub(hubIndex).hostName],
      initialTwin: INITIAL_TWIN,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: key } },
      ...(reprovisionPolicy ? { reprovisionPolicy } : {}),
      ...extra,
    };
    return stack.services.enrollments.save(enrollment);
  };
  const register = (id: string) => registerDevice(stack.deviceEndpoint, stack.idScope, id, key);

  /** First registration on hub 0, then the operator changes the twin there (a tag, a desired property). */
  const provisionAndEdit = async (id: string, policy: ReprovisionPolicy) => {
    await enroll(id, 0, policy);
    const first = await register(id);
    expect(first).toMatchObject({ status: 'assigned', assignedHub: hub(0).hostName, substatus: 'initialAssignment' });
    const initial = await twinOf(0, id);
    expect(initial.tags).toEqual(INITIAL_TWIN.tags);
    expect((initial.properties.desired as Record<string, unknown>).rate).toBe(1);
    await registry(0).updateTwin(
      id,
      { tags: { stage: 'edited', owner: 'ops' }, properties: { desired: { rate: 9 } } },
      '*',
    );
  };
  const expectEdited = async (i: number, id: string) => {
    const twin = await twinOf(i, id);
    expect(twin.tags).toEqual({ stage: 'edited', owner: 'ops' });
    expect((twin.properties.desired as Record<string, unknown>).rate).toBe(9);
  };
  const expectInitial = async (i: number, id: string) => {
    const twin = await twinOf(i, id);
    expect(twin.tags).toEqual(INITIAL_TWIN.tags);
    expect((twin.properties.desired as Record<string, unknown>).rate).toBe(1);
  };

  beforeAll(async () => {
    stack = await startTestStack({ hubs: { count: 2 } });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('update + migrate, new hub: deviceDataMigrated, the twin moved, the old identity removed', async () => {
    const id = 'repro-migrate-move';
    await provisionAndEdit(id, { updateHubAssignment: true, migrateDeviceData: true });
    await enroll(id, 1, { updateHubAssignment: true, migrateDeviceData: true });
    const state = await register(id);
    expect(state).toMatchObject({ status: 'assigned', assignedHub: hub(1).hostName, substatus: 'deviceDataMigrated' });
    await expectEdited(1, id);
    expect(hub(0).device(id)).toBeUndefined();
  });

  it('update + migrate, same hub: reprovisionedToInitialAssignment, the twin left alone', async () => {
    const id = 'repro-migrate-stay';
    await provisionAndEdit(id, { updateHubAssignment: true, migrateDeviceData: true });
    const state = await register(id);
    expect(state).toMatchObject({ assignedHub: hub(0).hostName, substatus: 'reprovisionedToInitialAssignment' });
    await expectEdited(0, id);
  });

  it('update, no migrate, new hub: deviceDataReset, the initial twin on the new hub, the old identity removed', async () => {
    const id = 'repro-reset-move';
    await provisionAndEdit(id, { updateHubAssignment: true, migrateDeviceData: false });
    await enroll(id, 1, { updateHubAssignment: true, migrateDeviceData: false });
    const state = await register(id);
    expect(state).toMatchObject({ assignedHub: hub(1).hostName, substatus: 'deviceDataReset' });
    await expectInitial(1, id);
    expect(hub(0).device(id)).toBeUndefined();
  });

  it('update, no migrate, same hub: deviceDataReset, the twin reset to the initial twin', async () => {
    const id = 'repro-reset-stay';
    await provisionAndEdit(id, { updateHubAssignment: true, migrateDeviceData: false });
    const state = await register(id);
    expect(state).toMatchObject({ assignedHub: hub(0).hostName, substatus: 'deviceDataReset' });
    await expectInitial(0, id);
  });

  it('no update (never reprovision): the device stays, reprovisionedToInitialAssignment, the twin left alone', async () => {
    const id = 'repro-never';
    await provisionAndEdit(id, { updateHubAssignment: false, migrateDeviceData: true });
    await enroll(id, 1, { updateHubAssignment: false, migrateDeviceData: true });
    const state = await register(id);
    expect(state).toMatchObject({ assignedHub: hub(0).hostName, substatus: 'reprovisionedToInitialAssignment' });
    await expectEdited(0, id);
    expect(hub(1).device(id)).toBeUndefined();
  });

  it('a new device ID moves the identity on the same hub (migrated), the old ID removed', async () => {
    const id = 'repro-rename';
    await provisionAndEdit(id, { updateHubAssignment: true, migrateDeviceData: true });
    await enroll(id, 0, { updateHubAssignment: true, migrateDeviceData: true }, { deviceId: 'repro-renamed' });
    const state = await register(id);
    expect(state).toMatchObject({ deviceId: 'repro-renamed', substatus: 'deviceDataMigrated' });
    await expectEdited(0, 'repro-renamed');
    expect(hub(0).device(id)).toBeUndefined();
  });

  it('linking a hub affects future registrations only: assigned devices stay until they register again', async () => {
    const id = 'repro-link';
    await enroll(id, 0, undefined, { allocationPolicy: 'hashed', iotHubs: undefined });
    const first = await register(id);
    const extra = hub(0).hostName === first.assignedHub ? 1 : 0;
    // Weight the other hub so heavily that hashing now picks it: nothing moves until the device registers.
    await stack.services.configuration.putLinkedHub({
      hostName: hub(extra).hostName,
      connectionString: hub(extra).connectionString,
      location: stack.hubLocations[extra] ?? 'local',
      allocationWeight: 1000,
      applyAllocationPolicy: true,
    });
    await stack.services.configuration.putLinkedHub({
      hostName: hub(1 - extra).hostName,
      connectionString: hub(1 - extra).connectionString,
      location: stack.hubLocations[1 - extra] ?? 'local',
      allocationWeight: 1,
      applyAllocationPolicy: false,
    });
    stack.services.invalidateCaches();
    expect(hub(1 - extra).device(id)).toBeDefined();
    const again = await register(id);
    expect(again).toMatchObject({ assignedHub: hub(extra).hostName, substatus: 'deviceDataMigrated' });
    expect(hub(1 - extra).device(id)).toBeUndefined();
  });
});
