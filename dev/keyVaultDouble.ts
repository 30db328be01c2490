// A local HTTPS double of the Key Vault keys API (get a key, wrapKey, unwrapKey; RSA-OAEP-256) for tests and the
// benchmark, reached through the official @azure/keyvault-keys client. It answers the client's challenge like Key
// Vault (401 + WWW-Authenticate), accepts bearer tokens from DevTokenCredential, and counts every operation.
import {
  constants,
  createPrivateKey,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';

import { verifyDevToken } from './devCredential';
import { sendJson as send } from './jsonReply';

export interface KeyVaultDoubleOptions {
  tls: { cert: string; key: string };
  /** The secret of the DevTokenCredential whose tokens are accepted. */
  tokenSecret: Buffer;
  keyName?: string;
}

export interface KeyVaultCalls {
  getKey: number;
  wrapKey: number;
  unwrapKey: number;
  /** Unauthenticated first requests answered with the challenge (not Key Vault operations). */
  challenges: number;
}

export interface KeyVaultDouble {
  /** The vault URL: `https://localhost:port`. */
  url: string;
  keyName: string;
  readonly calls: KeyVaultCalls;
  /** Authenticated operations so far (get + wrap + unwrap): what Key Vault bills and throttles. */
  operations(): number;
  /** The newest version's key ID. */
  currentKeyId(): string;
  /** Adds a new version of the key (as `az keyvault key rotate`); returns its key ID. */
  rotate(): string;
  /** Disables a version: operations with it answer 403, as Key Vault does. */
  disable(keyId: string): void;
  close(): Promise<void>;
}

const AUDIENCE = 'https://vault.azure.net';

interface Version {
  id: string;
  privateKey: KeyObject;
  jwk: { n: string; e: string };
  enabled: boolean;
  created: number;
}

export async function startKeyVaultDouble(options: KeyVaultDoubleOptions): Promise<KeyVaultDouble> {
  const keyName = options.keyName ?? 'dps-kek';
  const versions: Version[] = [];
  const calls: KeyVaultCalls = { getKey: 0, wrapKey: 0, unwrapKey: 0, challenges: 0 };
  let url = '';

  const addVersion = (): string => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = publicKey.export({ format: 'jwk' });
    const id = `${url}/keys/${keyName}/${randomBytes(16).toString('hex')}`;
    versions.push({
      id,
      privateKey: createPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' })),
      jwk: { n: String(jwk.n), e: String(jwk.e) },
      enabled: true,
      created: Math.floor(Date.now() / 1000),
    });
    return id;
  };

  const keyBundle = (v: Version) => ({
    key: { kid: v.id, kty: 'RSA', key_ops: ['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'], n: v.jwk.n, e: v.jwk.e },
    attributes: { enabled: v.enabled, created: v.created, updated: v.created, recoveryLevel: 'Recoverable' },
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    if (!req.headers.authorization) {
      // Key Vault's clients send their first request unauthenticated and learn the token's resource from this.
      calls.challenges++;
      res.setHeader(
        'WWW-Authenticate',
        `Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="${AUDIENCE}"`,
      );
      return send(res, 401, {
        error: { code: 'Unauthorized', message: 'AKV10000: Request is missing a Bearer token.' },
      });
    }
    if (!verifyDevToken(req.headers.authorization, options.tokenSecret, AUDIENCE)) {
      return send(res, 401, { error: { code: 'Unauthorized', message: 'AKV10032: Invalid issuer or token.' } });
    }
    const path = new URL(req.url ?? '/', 'https://vault').pathname.replace(/\/+$/, '');
    const match = /^\/keys\/([^/]+)(?:\/([0-9a-f]{32}))?(?:\/(wrapkey|unwrapkey))?$/i.exec(path);
    if (!match || match[1] !== keyName) return send(res, 404, notFound(path));
    const [, , version, operation] = match;
    const found = version ? versions.find((v) => v.id.endsWith(`/${version}`)) : versions[versions.length - 1];
    if (!found) return send(res, 404, notFound(path));
    if (!operation && req.method === 'GET') {
      calls.getKey++;
      return send(res, 200, keyBundle(found));
    }
    if (!operation || req.method !== 'POST')
      return send(res, 405, { error: { code: 'BadRequest', message: 'Method not allowed.' } });
    if (!found.enabled)
      return send(res, 403, { error: { code: 'Forbidden', message: 'Operation is not allowed on a disabled key.' } });
    const params = JSON.parse(body || '{}') as { alg?: string; value?: string };
    if (params.alg !== 'RSA-OAEP-256' || typeof params.value !== 'string') {
      return send(res, 400, { error: { code: 'BadParameter', message: 'alg must be RSA-OAEP-256 with a value.' } });
    }
    const value = Buffer.from(params.value, 'base64url');
    const padding = { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' };
    if (operation.toLowerCase() === 'wrapkey') {
      calls.wrapKey++;
      const result = publicEncrypt({ key: found.privateKey, ...padding }, value);
      return send(res, 200, { kid: found.id, value: result.toString('base64url') });
    }
    calls.unwrapKey++;
    try {
      const result = privateDecrypt({ key: found.privateKey, ...padding }, value);
      return send(res, 200, { kid: found.id, value: result.toString('base64url') });
    } catch {
      return send(res, 400, { error: { code: 'BadParameter', message: 'The value could not be unwrapped.' } });
    }
  };

  const server = createServer({ cert: options.tls.cert, key: options.tls.key }, (req, res) => {
    handle(req, res).catch(() => send(res, 500, { error: { code: 'InternalError', message: 'Internal error.' } }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  url = `https://localhost:${(server.address() as AddressInfo).port}`;
  addVersion();

  return {
    url,
    keyName,
    calls,
    operations: () => calls.getKey + calls.wrapKey + calls.unwrapKey,
    currentKeyId: () => versions[versions.length - 1]?.id ?? '',
    rotate: addVersion,
    disable: (keyId) => {
      const found = versions.find((v) => v.id === keyId);
      if (found) found.enabled = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const notFound = (path: string) => ({ error: { code: 'KeyNotFound', message: `No key at ${path}.` } });

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
