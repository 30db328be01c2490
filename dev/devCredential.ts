// A stand-in for Entra ID in dev and tests: a TokenCredential that issues JWTs (HS256 under a secret it shares with
// the local emulators), and the check those emulators use. Azurite's `--oauth basic` reads the same claims (aud,
// iss, nbf, exp) without checking signatures; the hub emulator and the Key Vault double also check the signature.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import type { AccessToken, TokenCredential } from '@azure/core-auth';

const ISSUER = 'https://sts.windows.net/00000000-0000-0000-0000-000000000000/';
const b64url = (value: Buffer | string) => Buffer.from(value).toString('base64url');

export class DevTokenCredential implements TokenCredential {
  /** Scopes asked for, in order: tests assert which services were called with a token. */
  readonly requests: string[] = [];

  constructor(readonly secret: Buffer = randomBytes(32)) {}

  getToken(scopes: string | string[]): Promise<AccessToken> {
    const scope = [scopes].flat()[0] ?? '';
    this.requests.push(scope);
    const now = Math.floor(Date.now() / 1000);
    const expires = now + 3600;
    const claims = { aud: scope.replace(/\/\.default$/, ''), iss: ISSUER, iat: now, nbf: now - 60, exp: expires };
    const unsigned = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
    const signature = createHmac('sha256', this.secret).update(unsigned).digest('base64url');
    return Promise.resolve({ token: `${unsigned}.${signature}`, expiresOnTimestamp: expires * 1000 });
  }
}

/** True for `Bearer <jwt>` signed with `secret`, for `audience`, and within its lifetime. */
export function verifyDevToken(header: string | undefined, secret: Buffer, audience: string): boolean {
  const match = /^Bearer (([\w-]+)\.([\w-]+))\.([\w-]+)$/.exec(header ?? '');
  if (!match?.[1] || !match[3] || !match[4]) return false;
  const expected = createHmac('sha256', secret).update(match[1]).digest();
  const given = Buffer.from(match[4], 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return false;
  try {
    const claims = JSON.parse(Buffer.from(match[3], 'base64url').toString('utf8')) as Record<string, unknown>;
    const now = Date.now() / 1000;
    return (
      claims.aud === audience && typeof claims.exp === 'number' && claims.exp > now && Number(claims.nbf) <= now + 60
    );
  } catch {
    return false;
  }
}
