// Lets tss.js (the official Node TPM client's TSS) talk to swtpm: tss.js speaks the Microsoft TPM simulator's TCP
// protocol (handshake and SendCommand frames on port P, PowerOn/NvOn signals on P+1), which swtpm does not implement.
// The adapter answers the handshake and signals itself and relays each command to swtpm over ONE connection, in
// order: swtpm serves one connection at a time and tss.js never closes its own (reference/official-clients.md §7).
import type { Server } from 'node:net';
import { createServer, Socket } from 'node:net';

import { freePortPair } from './swtpm';

const SEND_COMMAND = 8;
const HANDSHAKE = 15;
const SIMULATOR_VERSION = 1;

export interface MssimAdapter {
  /** The data port; the platform port is port + 1 (tss.js: `new Tpm(true, '127.0.0.1', port)`). */
  readonly port: number;
  stop(): Promise<void>;
}

export async function startMssimAdapter(swtpmPort: number): Promise<MssimAdapter> {
  const tpm = new SwtpmLink(swtpmPort);
  await tpm.connect();
  const clients = new Set<Socket>();
  const track = (socket: Socket) => {
    clients.add(socket);
    socket.once('close', () => clients.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const data = createServer((socket) => {
    track(socket);
    let pending = Buffer.alloc(0);
    let busy = false;
    const pump = () => {
      while (!busy && pending.length >= 4) {
        const command = pending.readUInt32BE(0);
        if (command === HANDSHAKE) {
          if (pending.length < 8) return;
          pending = pending.subarray(8);
          socket.write(Buffer.concat([u32(SIMULATOR_VERSION), u32(0), u32(0)]));
        } else if (command === SEND_COMMAND) {
          if (pending.length < 9) return;
          const length = pending.readUInt32BE(5);
          if (pending.length < 9 + length) return;
          const tpmCommand = pending.subarray(9, 9 + length);
          pending = pending.subarray(9 + length);
          busy = true;
          void tpm.send(tpmCommand).then(
            (response) => {
              if (!socket.destroyed) socket.write(Buffer.concat([u32(response.length), response, u32(0)]));
              busy = false;
              pump();
            },
            () => socket.destroy(),
          );
        } else {
          socket.destroy(); // SessionEnd / Stop or anything unknown: the client is done
          return;
        }
      }
    };
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      pump();
    });
  });
  // Platform signals (PowerOn, NvOn, …): swtpm is already powered and started; acknowledge each with UINT32 0.
  const platform = createServer((socket) => {
    track(socket);
    let pending = 0;
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.length;
      for (; pending >= 4; pending -= 4) socket.write(u32(0));
    });
  });
  for (let attempt = 0; ; attempt++) {
    const port = await freePortPair();
    try {
      await listen(data, port);
      await listen(platform, port + 1);
      return {
        port,
        async stop() {
          for (const socket of clients) socket.destroy();
          await Promise.all([close(data), close(platform)]);
          tpm.close();
        },
      };
    } catch (error) {
      if (data.listening) await close(data);
      if (attempt >= 4) throw error;
    }
  }
}

/** One connection to swtpm's raw command port; commands are queued and answered in order. */
class SwtpmLink {
  private readonly socket = new Socket();
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly port: number) {}

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.connect(this.port, '127.0.0.1', () => {
        this.socket.off('error', reject);
        this.socket.on('error', () => undefined);
        resolve();
      });
    });
  }

  send(command: Buffer): Promise<Buffer> {
    const result = this.chain.then(() => this.exchange(command));
    this.chain = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.socket.destroy();
  }

  private exchange(command: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let response = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        response = Buffer.concat([response, chunk]);
        // A TPM response: tag (2), total size (4, including the header), code (4), …
        if (response.length >= 6 && response.length >= response.readUInt32BE(2)) {
          done();
          resolve(response.subarray(0, response.readUInt32BE(2)));
        }
      };
      const onClose = () => {
        done();
        reject(new Error('swtpm closed the connection'));
      };
      const done = () => {
        this.socket.off('data', onData);
        this.socket.off('close', onClose);
      };
      this.socket.on('data', onData);
      this.socket.once('close', onClose);
      this.socket.write(command);
    });
  }
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
