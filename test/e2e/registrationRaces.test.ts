// Races of one device against itself, with real concurrency against the dev stack: however registrations race (case
// variants of one registration ID, individual enrollment or group, an enrollment moved to another hub meanwhile),
// the hubs end up with exactly one identity.
import { randomBytes } from 'node:crypto';

import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import { createSas } from '../../shared/http/sas';
import type { DelayedHub } from '../support/delayedHub';
import { startDelayedHub } from '../support/delayedHub';
import { deriveKey } from '../support/device';
import { rawRequest } from '../support/rawHttps';
import type { ServiceCall } from '../support/service';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

/** `count` distinct letter-case spellings of `id` (bit i of the index upper-cases its i-th letter). */
function caseVariants(id: string, count: number): string[] {
  const letters = [...id].flatMap((c, i) => (/[a-z]/i.test(c) ? [i] : []));
  expect(2 ** letters.length).toBeGreaterThanOrEqual(count);
  return Array.from({ length: count }, (_, n) => {
    const chars = [...id.toLowerCase()];
    letters.forEach((at, bit) => {
      if ((n >> bit) & 1) chars[at] = (chars[at] ?? '').toUpperCase();
    });
    return chars.join('');
  });
}

describe('concurrent registrations of one device', () => {
  let stack: Stack;
  let registry: Registry;
  const groupKey = randomBytes(64).toString('base64');
  const individualKey = randomBytes(32).toString('base64');

  beforeAll(async () => {
    stack = await startTestStack();
    await stack.services.groups.save({
      enrollmentGroupId: 'race-group',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey } },
    });
    await stack.services.enrollments.save({
      registrationId: 'Race-Individual-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: individualKey } },
    });
    stack.services.invalidateCaches();
    registry = Registry.fromConnectionString(stack.hubs[0]?.connectionString ?? '');
  });

  afterAll(async () => {
    await stack?.stop();
  });

  /** 40 PUTs at once, each spelling the ID differently, each signed as that spelling must be. */
  async function race(id: string, keyFor: (spelling: string) => string) {
    const spellings = caseVariants(id, 40);
    const answers = await Promise.all(
      spellings.map((spelling) =>
        rawRequest(stack.deviceEndpoint, 'PUT', `/${stack.idScope}/registrations/${spelling}/register`, '{}', {
          Authorization: createSas(
            `${stack.idScope}/registrations/${spelling}`,
            keyFor(spelling),
            Math.floor(Date.now() / 1000) + 3600,
            'registration',
          ),
          'Content-Type': 'application/json',
        }),
      ),
    );
    return { spellings, answers };
  }

  /** The hub devices whose ID is a spelling of `id`. */
  async function hubDevicesOf(spellings: string[]): Promise<string[]> {
    const found: string[] = [];
    for (const spelling of spellings) {
      try {
        await registry.get(spelling);
        found.push(spelling);
      } catch {
        // not on the hub
      }
    }
    return found;
  }

  for (const kind of ['individual', 'group'] as const) {
    it(`40 case variants of one ${kind} registration racing leave exactly one hub identity`, async () => {
      const id = kind === 'individual' ? 'race-individual-1' : 'race-group-dev-1';
      const before = stack.hubs[0]?.deviceCount() ?? 0;
      const { spellings, answers } = await race(id, (spelling) =>
        kind === 'individual' ? individualKey : deriveKey(groupKey, spelling),
      );

      // Winners (and later re-registrations) are 202; a racer that lost the row is DPS's 409/409203.
      for (const answer of answers) {
        expect([202, 409]).toContain(answer.status);
        if (answer.status === 409) expect((answer.json as { errorCode: number }).errorCode).toBe(409203);
      }
      const accepted = answers.filter((a) => a.status === 202).map((a) => a.json as { status: string });
      expect(accepted.length).toBeGreaterThanOrEqual(1);
      expect(accepted.every((a) => a.status === 'assigned')).toBe(true);

      expect((stack.hubs[0]?.deviceCount() ?? 0) - before).toBe(1);
      const onHub = await hubDevicesOf(spellings);
      expect(onHub).toHaveLength(1);
      // An individual enrollment's device ID is its registration ID as the enrollment spells it.
      if (kind === 'individual') expect(onHub).toEqual(['Race-Individual-1']);
      const committed = await stack.services.devices.getRegistration(id);
      expect(committed?.value.state).toMatchObject({ status: 'assigned', deviceId: onHub[0] });
    });
  }
});

// Racers whose plans differ: the enrollment moves to another hub while a registration's hub step is in flight (as
// when two instances see different linked hubs). Still one identity, whichever racer commits.
describe('registrations racing while the enrollment moves to another hub', () => {
  let stack: Stack;
  let slow: DelayedHub;
  let call: ServiceCall;
  const key = randomBytes(32).toString('base64');

  beforeAll(async () => {
    slow = await startDelayedHub(1500);
    stack = await startTestStack({
      hubs: { count: 1, external: [{ hostName: slow.hostName, connectionString: slow.connectionString }] },
      // Longer than the slow hub's delay: each PUT waits for its own hub step.
      settings: { DPS_REGISTER_BUDGET_MS: '5000', DPS_HUB_TIMEOUT_MS: '10000' },
    });
    call = serviceCaller(() => stack);
  });

  afterAll(async () => {
    await stack?.stop();
    await slow?.close();
  });

  const enrollOn = async (id: string, hub: string) => {
    const body = { registrationId: id, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key } } };
    expect((await call('PUT', `/enrollments/${id}`, { ...body, iotHubs: [hub] })).status).toBe(200);
  };
  const put = (spelling: string) =>
    rawRequest(stack.deviceEndpoint, 'PUT', `/${stack.idScope}/registrations/${spelling}/register`, '{}', {
      Authorization: createSas(
        `${stack.idScope}/registrations/${spelling}`,
        key,
        Math.floor(Date.now() / 1000) + 3600,
        'registration',
      ),
      'Content-Type': 'application/json',
    });
  const identities = (id: string) =>
    [slow.hub, stack.hubs[0]].filter((hub) => hub?.device(id) !== undefined).map((hub) => hub?.hostName);

  it('a first registration in flight: a racer finishes its plan instead of creating the device on the new hub', async () => {
    const id = 'mover-1';
    await enrollOn(id, slow.hostName);
    const puts = slow.puts();
    const first = put(id);
    await expect.poll(() => slow.puts(), { timeout: 5000, interval: 20 }).toBe(puts + 1);

    await enrollOn(id, stack.hubs[0]?.hostName ?? '');
    const second = await put('MOVER-1');
    expect(second.status).toBe(202);
    expect(second.json).toMatchObject({ status: 'assigned', registrationState: { assignedHub: slow.hostName } });
    // The first PUT lost the row to the second (409203), or committed first; either way one identity.
    expect([202, 409]).toContain((await first).status);
    expect(identities(id)).toEqual([slow.hostName]);
  });

  it('a re-registration in flight without a claim never brings back the identity a racing move deleted', async () => {
    const id = 'mover-2';
    await enrollOn(id, slow.hostName);
    expect((await put(id)).json).toMatchObject({ status: 'assigned' });
    expect(identities(id)).toEqual([slow.hostName]);

    const puts = slow.puts();
    const again = put(id); // same hub and device ID: an update, held by the slow hub
    await expect.poll(() => slow.puts(), { timeout: 5000, interval: 20 }).toBe(puts + 1);
    await enrollOn(id, stack.hubs[0]?.hostName ?? '');
    const moved = await put(id); // claims, creates on the other hub, deletes the old identity
    expect(moved.json).toMatchObject({ status: 'assigned', registrationState: { substatus: 'deviceDataMigrated' } });

    const late = await again; // its update reaches the hub after the delete
    expect(late.status).toBe(409);
    expect(identities(id)).toEqual([stack.hubs[0]?.hostName]);
  });
});
