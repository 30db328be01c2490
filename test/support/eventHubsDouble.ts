// A small local Event Hubs double over plain AMQP (rhea), enough for the official `EventHubProducerClient` with a
// `UseDevelopmentEmulator=true` connection string: SASL ANONYMOUS, the `$cbs` put-token exchange, `$management`
// properties, and a receiver on the hub's address that decodes batches. It can refuse links (an outage).
import type { AddressInfo } from 'node:net';

import type { Connection, EventContext, Message, Receiver, Sender } from 'rhea';
import rhea from 'rhea';

export interface ReceivedEvent {
  /** The parsed CloudEvent (the message body). */
  body: Record<string, unknown>;
  contentType?: string;
  messageId?: string;
  partitionKey?: string;
}

export interface EventHubsDouble {
  connectionString: string;
  received: ReceivedEvent[];
  /** Refuse new links and drop open ones (true), or serve again (false). */
  setOutage(down: boolean): void;
  /** Number of `$cbs` put-token requests answered. */
  cbsRequests: number;
  close(): Promise<void>;
}

const BATCH_FORMAT = 0x80013700;

export async function startEventHubsDouble(hubName = 'events'): Promise<EventHubsDouble> {
  const container = rhea.create_container({ id: 'event-hubs-double' });
  (
    container as unknown as { sasl_server_mechanisms: { enable_anonymous(): void } }
  ).sasl_server_mechanisms.enable_anonymous();
  const received: ReceivedEvent[] = [];
  const connections = new Set<Connection>();
  let down = false;
  const state = { cbsRequests: 0 };

  // The reply goes on the client's receiver link for that node (its source is `$cbs` or `$management`).
  const replyOn = (connection: Connection, node: string, replyTo: string | undefined): Sender | undefined => {
    const links = [...senders].filter((s) => s.connection === connection && remoteAddress(s, 'source') === node);
    return links.find((s) => remoteAddress(s, 'target') === replyTo) ?? links[0];
  };

  const senders = new Set<Sender>();
  container.on('sender_open', (context: EventContext) => {
    if (context.sender) senders.add(context.sender);
  });
  container.on('sender_close', (context: EventContext) => {
    if (context.sender) senders.delete(context.sender);
  });
  container.on('connection_open', (context: EventContext) => {
    if (context.connection) connections.add(context.connection);
  });
  container.on('disconnected', (context: EventContext) => {
    if (context.connection) connections.delete(context.connection);
  });
  container.on('receiver_open', (context: EventContext) => {
    const receiver = context.receiver as Receiver;
    const address = remoteAddress(receiver, 'target');
    if (down && address.toLowerCase() === hubName.toLowerCase()) {
      receiver.close({ condition: 'com.microsoft:server-busy', description: 'The double is in an outage.' });
      return;
    }
    // The producer sizes batches from the link's max message size: 1 MB, as Event Hubs standard.
    (receiver as unknown as { set_max_message_size?: (n: number) => void }).set_max_message_size?.(1024 * 1024);
  });
  container.on('message', (context: EventContext) => {
    const address = remoteAddress(context.receiver as Receiver, 'target');
    const message = context.message as Message;
    const connection = context.connection;
    if (address === '$cbs' || address === '$management') {
      state.cbsRequests += address === '$cbs' ? 1 : 0;
      const props = (message.application_properties ?? {}) as Record<string, unknown>;
      const reply = replyOn(connection, address, message.reply_to);
      const body =
        address === '$management'
          ? {
              name: hubName,
              partition_ids: ['0', '1'],
              created_at: new Date(0),
              partition: props.partition,
            }
          : undefined;
      reply?.send(<Message>{
        correlation_id: message.message_id,
        application_properties: { 'status-code': 200, 'status-description': 'OK', statusCode: 200 },
        ...(body ? { body } : {}),
      });
      return;
    }
    if (down) {
      context.delivery?.reject({ condition: 'com.microsoft:server-busy', description: 'outage' });
      return;
    }
    for (const m of unbatch(context.message as Message | Buffer, context)) received.push(toEvent(m));
    context.delivery?.accept();
  });

  const server = container.listen({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    connectionString:
      `Endpoint=sb://localhost:${port};SharedAccessKeyName=RootManageSharedAccessKey;` +
      `SharedAccessKey=SAS_KEY_VALUE;EntityPath=${hubName};UseDevelopmentEmulator=true`,
    received,
    get cbsRequests() {
      return state.cbsRequests;
    },
    setOutage(value: boolean) {
      down = value;
      if (value) for (const c of connections) c.close({ condition: 'amqp:connection:forced', description: 'outage' });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.close();
        server.close(() => resolve());
      }),
  };
}

function remoteAddress(link: Sender | Receiver, end: 'source' | 'target'): string {
  const attach = (link as unknown as { remote?: { attach?: Record<string, { address?: string } | undefined> } }).remote
    ?.attach;
  return attach?.[end]?.address ?? '';
}

/**
 * A batched transfer (message format 0x80013700) reaches rhea's handler undecoded: its data sections each hold one
 * encoded AMQP message (an event).
 */
function unbatch(message: Message | Buffer, context: EventContext): Message[] {
  const format = (context as unknown as { format?: number }).format;
  if (format !== BATCH_FORMAT || !Buffer.isBuffer(message)) return [message as Message];
  const body = rhea.message.decode(message).body as { content?: unknown; multiple?: boolean } | undefined;
  const sections = body?.multiple === true && Array.isArray(body.content) ? body.content : [body?.content];
  return sections
    .filter((b): b is Buffer => Buffer.isBuffer(b))
    .map((b) => rhea.message.decode(b) as unknown as Message);
}

function toEvent(message: Message): ReceivedEvent {
  let body: unknown = message.body;
  if (typeof body === 'object' && body !== null && 'typecode' in body)
    body = (body as unknown as { content: unknown }).content;
  if (Buffer.isBuffer(body)) body = JSON.parse(body.toString('utf8'));
  const annotations = (message.message_annotations ?? {}) as Record<string, unknown>;
  return {
    body: body as Record<string, unknown>,
    ...(typeof message.content_type === 'string' ? { contentType: message.content_type } : {}),
    ...(message.message_id !== undefined ? { messageId: String(message.message_id) } : {}),
    ...(typeof annotations['x-opt-partition-key'] === 'string'
      ? { partitionKey: annotations['x-opt-partition-key'] }
      : {}),
  };
}
