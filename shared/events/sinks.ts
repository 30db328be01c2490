// Where events end up: Event Hubs (the official producer client, identity or connection string), or the local sink
// (a compact log line each and a JSON-lines file) when no Event Hubs is configured.
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

import type { TokenCredential } from '@azure/core-auth';
import type { EventData, EventHubClientOptions } from '@azure/event-hubs';
import { EventHubProducerClient } from '@azure/event-hubs';

import type { CloudEvent } from './catalogue';
import { partitionKeyOf } from './catalogue';

export interface EventSink {
  /** Resolves once every event was accepted; rejects if any may not have been (the caller retries them all). */
  send(events: readonly CloudEvent[]): Promise<void>;
  /** Where events go, for the log: never a secret. */
  readonly description: string;
  close(): Promise<void>;
}

export type EventHubsTarget =
  | { kind: 'identity'; namespace: string; hubName: string }
  | { kind: 'connectionString'; connectionString: string; hubName?: string };

/** CloudEvents structured mode over AMQP: the body is the whole event, with this content type. */
export const CLOUDEVENTS_CONTENT_TYPE = 'application/cloudevents+json; charset=utf-8';

export class EventHubsSink implements EventSink {
  readonly description: string;
  private readonly producer: EventHubProducerClient;

  /**
   * `options`: the client's own (retries); the defaults suit Azure. `credential`: for an `identity` target, the
   * process's Azure credential (shared/identity.ts: the user-assigned identity, @azure/identity loaded lazily).
   */
  constructor(target: EventHubsTarget, options: EventHubClientOptions = {}, credential?: () => TokenCredential) {
    if (target.kind === 'identity') {
      if (!credential) throw new Error('An Event Hubs namespace reached with identity needs a credential.');
      this.producer = new EventHubProducerClient(target.namespace, target.hubName, credential(), options);
      this.description = `Event Hubs ${target.namespace}/${target.hubName} (identity)`;
    } else {
      this.producer = target.hubName
        ? new EventHubProducerClient(target.connectionString, target.hubName, options)
        : new EventHubProducerClient(target.connectionString, options);
      this.description = `Event Hubs ${this.producer.fullyQualifiedNamespace}/${this.producer.eventHubName}`;
    }
  }

  /**
   * One batch per partition key (the subject: per-device order), filled with `tryAdd` up to the link's maximum
   * message size (1 MB on Event Hubs standard), sent when full.
   */
  async send(events: readonly CloudEvent[]): Promise<void> {
    const byKey = new Map<string, CloudEvent[]>();
    for (const e of events) {
      const key = partitionKeyOf(e);
      const list = byKey.get(key) ?? [];
      list.push(e);
      byKey.set(key, list);
    }
    // A few keys at a time: the client multiplexes them over one connection.
    const groups = [...byKey.entries()];
    for (let i = 0; i < groups.length; i += 8) {
      await Promise.all(groups.slice(i, i + 8).map(([key, list]) => this.sendKey(key, list)));
    }
  }

  private async sendKey(partitionKey: string, events: readonly CloudEvent[]): Promise<void> {
    let batch = await this.producer.createBatch({ partitionKey });
    for (const e of events) {
      const data: EventData = { body: e, contentType: CLOUDEVENTS_CONTENT_TYPE, messageId: e.id };
      if (batch.tryAdd(data)) continue;
      if (batch.count === 0) throw new Error(`Event ${e.id} (${e.type}) is larger than an Event Hubs batch.`);
      await this.producer.sendBatch(batch);
      batch = await this.producer.createBatch({ partitionKey });
      if (!batch.tryAdd(data)) throw new Error(`Event ${e.id} (${e.type}) is larger than an Event Hubs batch.`);
    }
    if (batch.count > 0) await this.producer.sendBatch(batch);
  }

  close(): Promise<void> {
    return this.producer.close();
  }
}

/** One compact line: time, type, subject and the fields that say what happened. */
export function compactLine(e: CloudEvent): string {
  const d = e.data;
  const shown = ['assignedHub', 'deviceId', 'substatus', 'errorCode', 'step', 'reason', 'etag', 'rights']
    .filter((k) => d[k] !== undefined)
    .map((k) => `${k}=${Array.isArray(d[k]) ? (d[k] as unknown[]).join(',') : JSON.stringify(d[k])}`);
  return `${e.time} event ${e.type.replace(/^opendps\./, '')} ${e.subject} ${shown.join(' ')}`.trimEnd();
}

/**
 * The local default: a line each in the log, and the events as JSON lines in a file when one is configured. The file
 * stays open in append mode (an open and a close per batch cost the host more than the write); each write reaches the
 * kernel before `send` resolves, so a crash after it loses nothing.
 */
export class LocalSink implements EventSink {
  readonly description: string;
  private handle: Promise<FileHandle> | undefined;

  constructor(private readonly options: { file?: string; log?: (line: string) => void }) {
    this.description = `the local event log${options.file ? ` (${options.file})` : ''}`;
  }

  async send(events: readonly CloudEvent[]): Promise<void> {
    if (this.options.log) for (const e of events) this.options.log(compactLine(e));
    const file = this.options.file;
    if (!file) return;
    const opening = (this.handle ??= mkdir(dirname(file), { recursive: true }).then(() => open(file, 'a')));
    // A failed open is retried on the next send, not remembered.
    const handle = await opening.catch((err: unknown) => {
      if (this.handle === opening) this.handle = undefined;
      throw err;
    });
    let text = '';
    for (const e of events) text += `${JSON.stringify(e)}\n`;
    await handle.appendFile(text);
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await (await handle?.catch(() => undefined))?.close();
  }
}
