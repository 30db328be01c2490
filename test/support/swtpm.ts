// A real software TPM for tests: swtpm on free local ports with a throw-away state directory, driven by tpm2-tools,
// with the EK (0x81010001) and SRK (0x81000001) persisted where the SDKs look for them (reference/official-clients.md §7).
import type { ChildProcess } from 'node:child_process';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { TpmReader } from '../../shared/attestation/tpm/marshal';

export const EK_HANDLE = '0x81010001';
export const SRK_HANDLE = '0x81000001';
const SRK_ATTRIBUTES = 'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda';

export interface SoftwareTpm {
  /** swtpm's raw TPM command port (its control port is the next one). */
  readonly port: number;
  readonly dir: string;
  /** Runs a tpm2-tools command against this TPM (cwd = its state directory); resolves with stdout. */
  tool(command: string, ...args: string[]): Promise<string>;
  /** Provisions (once) and returns the EK and SRK TPM2B_PUBLIC bytes, as the SDKs send them. */
  provision(): Promise<{ ek: Buffer; srk: Buffer }>;
  /** The device side of DPS's challenge with tpm2-tools: activate, import, load, then HMAC `data` with the key. */
  activateAndHmac(blobBase64: string, data: Buffer): Promise<Buffer>;
  stop(): Promise<void>;
}

export async function startSoftwareTpm(): Promise<SoftwareTpm> {
  const dir = mkdtempSync(join(tmpdir(), 'open-dps-swtpm-'));
  let child: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePortPair();
    child = await spawnSwtpm(dir, port);
  }
  if (!child) throw new Error('swtpm did not start (is it installed? .ci/run installs swtpm swtpm-tools tpm2-tools)');
  const proc = child;
  const env = { ...process.env, TPM2TOOLS_TCTI: `swtpm:host=127.0.0.1,port=${port}` };
  const tool = (command: string, ...args: string[]) =>
    new Promise<string>((resolve, reject) => {
      execFile(command, args, { cwd: dir, env, encoding: 'utf8' }, (error, stdout, stderr) => {
        if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr.trim() || error.message}`));
        else resolve(stdout);
      });
    });
  // Without a resource manager transient objects and sessions outlive the tool that made them: flush between tools.
  const flush = async () => {
    for (const kind of ['-t', '-l', '-s']) await tool('tpm2_flushcontext', kind);
  };
  let provisioned: { ek: Buffer; srk: Buffer } | undefined;
  return {
    port,
    dir,
    tool,
    async provision() {
      if (provisioned) return provisioned;
      await tool('tpm2_createek', '-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub');
      await tool('tpm2_evictcontrol', '-C', 'o', '-c', 'ek.ctx', EK_HANDLE);
      await flush();
      await tool(
        'tpm2_createprimary',
        '-C',
        'o',
        '-g',
        'sha256',
        '-G',
        'rsa2048:aes128cfb',
        '-c',
        'srk.ctx',
        '-a',
        SRK_ATTRIBUTES,
      );
      await tool('tpm2_evictcontrol', '-C', 'o', '-c', 'srk.ctx', SRK_HANDLE);
      await flush();
      await tool('tpm2_readpublic', '-c', EK_HANDLE, '-f', 'tss', '-o', 'ek.tpm2b');
      await tool('tpm2_readpublic', '-c', SRK_HANDLE, '-f', 'tss', '-o', 'srk.tpm2b');
      provisioned = { ek: readFileSync(join(dir, 'ek.tpm2b')), srk: readFileSync(join(dir, 'srk.tpm2b')) };
      return provisioned;
    },
    async activateAndHmac(blobBase64, data) {
      // Split the blob exactly as the SDKs do: six TPM2B fields in a row.
      const bytes = Buffer.from(blobBase64, 'base64');
      const r = new TpmReader(bytes);
      const fields: Buffer[] = [];
      for (let i = 0; i < 6; i++) {
        const start = r.position;
        r.tpm2b();
        fields.push(bytes.subarray(start, r.position));
      }
      if (r.remaining !== 0) throw new Error(`${r.remaining} bytes after the blob's six fields`);
      const [idObject, encSecret, duplicate, seed, idPublic] = fields as [Buffer, Buffer, Buffer, Buffer, Buffer];
      const header = Buffer.from('badcc0de00000001', 'hex'); // tpm2-tools credential file format
      writeFileSync(join(dir, 'cred.out'), Buffer.concat([header, idObject, encSecret]));
      writeFileSync(join(dir, 'dup.bin'), duplicate);
      writeFileSync(join(dir, 'seed.bin'), seed);
      writeFileSync(join(dir, 'idpub.bin'), idPublic);
      writeFileSync(join(dir, 'data.bin'), data);
      try {
        await tool('tpm2_startauthsession', '--policy-session', '-S', 's.ctx');
        await tool('tpm2_policysecret', '-S', 's.ctx', '-c', 'e');
        await tool(
          'tpm2_activatecredential',
          '-c',
          SRK_HANDLE,
          '-C',
          EK_HANDLE,
          '-i',
          'cred.out',
          '-o',
          'E.bin',
          '-P',
          'session:s.ctx',
        );
        await flush();
        await tool(
          'tpm2_import',
          '-C',
          SRK_HANDLE,
          '-G',
          'aes',
          '-k',
          'E.bin',
          '-i',
          'dup.bin',
          '-s',
          'seed.bin',
          '-u',
          'idpub.bin',
          '-r',
          'id.prv',
        );
        await tool('tpm2_load', '-C', SRK_HANDLE, '-u', 'idpub.bin', '-r', 'id.prv', '-c', 'id.ctx');
        const hex = await tool('tpm2_hmac', '-c', 'id.ctx', '-g', 'sha256', '--hex', 'data.bin');
        return Buffer.from(hex.trim(), 'hex');
      } finally {
        await flush();
      }
    },
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill();
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts swtpm on port and port+1; resolves undefined if it exits first (a port taken meanwhile). */
async function spawnSwtpm(dir: string, port: number): Promise<ChildProcess | undefined> {
  const child = spawn(
    'swtpm',
    [
      'socket',
      '--tpm2',
      '--server',
      `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl',
      `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
      '--tpmstate',
      `dir=${dir}`,
      '--flags',
      'not-need-init,startup-clear',
    ],
    { stdio: 'ignore' },
  );
  let exited = false;
  child.once('exit', () => (exited = true));
  child.once('error', () => (exited = true));
  for (let i = 0; i < 100 && !exited; i++) {
    if (await canConnect(port)) return child;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (!exited) child.kill();
  return undefined;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.connect(port, '127.0.0.1');
  });
}

/** Two consecutive free TCP ports (swtpm and the MS simulator protocol both use port and port+1); returns the first. */
export async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await listenOnce(0);
    if (port < 65535 && (await listenOnce(port + 1)) === port + 1) return port;
  }
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(-1));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : -1));
    });
  });
}
