// SharedAccessSignature tokens: parsing, signing and verification, tolerant of how each official SDK builds them.
import { createHmac, timingSafeEqual } from 'node:crypto';

import { DEFAULT_MAX_SAS_LIFETIME_SECONDS } from '../config';
import { BASE64, safeDecode } from '../encoding';
import { unauthorized } from '../errors';

export interface SasToken {
  /** `sr` exactly as it appears in the token: the signature covers these bytes, not the decoded resource. */
  srLiteral: string;
  /** `sr` URL-decoded, for comparing with the resource the request is about. */
  resource: string;
  /** Signature bytes (from the URL-decoded base64 `sig`). */
  signature: Buffer;
  /** Expiry, seconds since the epoch. */
  expiry: number;
  /** Key name; optional because the Python SDK omits it. */
  keyName?: string;
}

const PREFIX = 'sharedaccesssignature ';

/**
 * Parses `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]`. Fields are read by name because their order differs by
 * SDK (Node symmetric key: sr,sig,skn,se; Node TPM: sr,sig,se,skn). Throws 401 on anything malformed.
 */
export function parseSas(header: string | null | undefined): SasToken {
  if (!header) throw unauthorized('The Authorization header is missing.');
  if (!header.toLowerCase().startsWith(PREFIX))
    throw unauthorized('The Authorization header is not a SharedAccessSignature.');
  const fields = new Map<string, string>();
  for (const part of header.slice(PREFIX.length).trim().split('&')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1));
  }
  const srLiteral = fields.get('sr');
  const sig = fields.get('sig');
  const se = fields.get('se');
  if (!srLiteral || !sig || !se) throw unauthorized('The SharedAccessSignature must contain sr, sig and se.');
  if (!/^\d{1,12}$/.test(se)) throw unauthorized('The SharedAccessSignature expiry (se) is not a number.');
  const resource = safeDecode(srLiteral);
  const sigB64 = safeDecode(sig);
  if (resource === undefined || sigB64 === undefined || !BASE64.test(sigB64)) {
    throw unauthorized('The SharedAccessSignature is malformed.');
  }
  const keyName = fields.get('skn');
  return {
    srLiteral,
    resource,
    signature: Buffer.from(sigB64, 'base64'),
    expiry: Number(se),
    ...(keyName !== undefined ? { keyName: safeDecode(keyName) ?? keyName } : {}),
  };
}

/** base64(HMAC-SHA256(key, sr + "\n" + se)) — the string-to-sign every SDK uses. */
export function sign(key: Buffer, srLiteral: string, expiry: number): Buffer {
  return createHmac('sha256', key).update(`${srLiteral}\n${expiry}`).digest();
}

/** True when `token` was signed with `key` (constant-time). Expiry is checked separately by `assertNotExpired`. */
export function verifySignature(token: SasToken, key: Buffer): boolean {
  const expected = sign(key, token.srLiteral, token.expiry);
  return expected.length === token.signature.length && timingSafeEqual(expected, token.signature);
}

/**
 * The token is valid now, and does not claim to stay valid longer than `maxLifetimeSeconds`
 * (DPS_MAX_SAS_LIFETIME_SECONDS).
 */
export function assertNotExpired(
  token: SasToken,
  now: Date,
  maxLifetimeSeconds = DEFAULT_MAX_SAS_LIFETIME_SECONDS,
): void {
  if (token.expiry * 1000 <= now.getTime()) throw unauthorized('The SharedAccessSignature has expired.');
  if (token.expiry * 1000 > now.getTime() + maxLifetimeSeconds * 1000) {
    throw unauthorized(
      `The SharedAccessSignature expires too far in the future: this service accepts tokens valid for at most ${maxLifetimeSeconds} seconds (DPS_MAX_SAS_LIFETIME_SECONDS).`,
    );
  }
}

/** Builds a token the way the Node SDKs do (raw `sr`), for our own outgoing calls and for tests. */
export function createSas(resource: string, keyBase64: string, expiry: number, keyName?: string): string {
  const sig = sign(Buffer.from(keyBase64, 'base64'), resource, expiry).toString('base64');
  const skn = keyName === undefined ? '' : `&skn=${encodeURIComponent(keyName)}`;
  return `SharedAccessSignature sr=${resource}&sig=${encodeURIComponent(sig)}&se=${expiry}${skn}`;
}
