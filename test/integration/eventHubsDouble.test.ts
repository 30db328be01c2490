// The Event Hubs path through the official producer client against a local AMQP double: CloudEvents arrive, batched
// by partition key; during an outage the outbox backs off and delivers everything once the double is back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { registrationKey } from '../../shared/domain/registrationId';
import type { StoredRegistration } from '../../shared/storage/devices';

import type { CloudEvent } from '../../shared/events/catalogue';
import { registrationAccepted } from '../../shared/events/catalogue';
import { CLOUDEVENTS_CONTENT_TYPE, EventHubsSink } from '../../shared/events/sinks';
import type { EventHubsDouble } from '../support/eventHubsDouble';
import { startEventHubsDouble } from '../support/eventHubsDouble';
import { outboxOf, outboxTables } from '../support/outbox';

const origin = { source: 'https://dps.test', clock: () => new Date() };
const accepted = (registrationId: string): CloudEvent =>
  registrationAccepted(origin, {
    registrationId,
    operationId: `op-${registrationId}`,
    attestationType: 'symmetricKey',
    enrollment: { kind: 'group', id: 'g' },
  });

describe('Event Hubs sink (official EventHubProducerClient) against an AMQP double', () => {
  let double: EventHubsDouble;
  let sink: EventHubsSink;

  beforeAll(async () => {
    double = await startEventHubsDouble();
    sink = new EventHubsSink({ kind: 'connectionString', connectionString: double.connectionString });
  });
  afterAll(async () => {
    await sink.close();
    await double.close();
  });

  it('sends CloudEvents in structured mode, after the $cbs put-token exchange, keyed by subject', async () => {
    const events = [accepted('Dev-A'), accepted('dev-b'), accepted('dev-a')];
    await sink.send(events);
    expect(double.cbsRequests).toBeGreaterThan(0);
    expect(double.received.map((r) => r.body.id).sort()).toEqual(events.map((e) => e.id).sort());
    const first = double.received.find((r) => r.body.id === events[0]?.id);
    expect(first).toMatchObject({
      contentType: CLOUDEVENTS_CONTENT_TYPE,
      messageId: events[0]?.id,
      partitionKey: 'dev-a',
    });
    expect(first?.body).toEqual(JSON.parse(JSON.stringify(events[0])));
  });
});

describe('Outbox → Event Hubs double: an outage during a burst loses nothing', () => {
  it('every committed event arrives once the double is back; repeats carry the same id', async () => {
    const double = await startEventHubsDouble();
    const { tables, devices } = await outboxTables();
    const sink = new EventHubsSink(
      { kind: 'connectionString', connectionString: double.connectionString },
      { retryOptions: { maxRetries: 1, retryDelayInMs: 50, maxRetryDelayInMs: 200, timeoutInMs: 2000 } },
    );
    const outbox = outboxOf(tables, devices, sink);
    try {
      double.setOutage(true);
      const committed: CloudEvent[] = [];
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const events = [accepted(`burst-${i}`), accepted(`burst-${i}`)];
          const ticket = outbox.open(registrationKey(`burst-${i}`));
          await devices.saveRegistration(`burst-${i}`, value(`burst-${i}`), undefined, { ticket, events });
          ticket.release();
          committed.push(...events);
        }),
      );
      await expect.poll(() => outbox.stats.sendFailures, { timeout: 15_000, interval: 50 }).toBeGreaterThan(0);
      double.setOutage(false);
      await outbox.drain();
      await outbox.sweep(); // markers whose delete raced the outage are re-sent: duplicates, same id
      const ids = new Set(double.received.map((r) => String(r.body.id)));
      expect([...ids].sort()).toEqual(committed.map((e) => e.id).sort());
      // The pending index is empty again.
      const left = [];
      for await (const m of tables.outbox.listEntities()) left.push(m);
      expect(left).toEqual([]);
    } finally {
      await outbox.close();
      await double.close();
    }
  });
});

const value = (registrationId: string): StoredRegistration => ({
  state: { registrationId, status: 'assigned' },
  operation: { operationId: `op-${registrationId}`, status: 'assigned', startedAtUtc: new Date().toISOString() },
});
