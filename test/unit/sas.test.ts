import { createHmac } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { DEFAULT_MAX_SAS_LIFETIME_SECONDS } from '../../shared/config';
import { assertNotExpired, createSas, parseSas, verifySignature } from '../../shared/http/sas';
import { expect401 } from '../support/dpsError';

const RAW_SR = '0ne00000A0A/registrations/sym-device-1';
const UPPER_SR = '0ne00000A0A%2Fregistrations%2Fsym-device-1';
const LOWER_SR = '0ne00000A0A%2fregistrations%2fsym-device-1';
const KEY_TEXT = 'device-primary-key-32-bytes-long';
const KEY_B64 = Buffer.from(KEY_TEXT, 'utf8').toString('base64');
const KEY = Buffer.from(KEY_B64, 'base64');
const SE = 1_700_000_000;

/** base64(HMAC-SHA256(key, stringToSign)), independent of the module under test. */
const hmac = (key: Buffer, text: string): string => createHmac('sha256', key).update(text, 'utf8').digest('base64');

const header = (fields: Record<string, string>): string =>
  `SharedAccessSignature ${Object.entries(fields)
    .map(([k, v]) => `${k}=${v}`)
    .join('&')}`;

describe('known vectors (computed with openssl, not with sign())', () => {
  it('the Node symmetric-key token over a raw sr verifies with the literal vector', () => {
    expect(KEY_B64).toBe('ZGV2aWNlLXByaW1hcnkta2V5LTMyLWJ5dGVzLWxvbmc=');
    const sig = 'gkZtThzzo0go/f/+inXdI0a2YgdzqLgQr7cKx9x01Xw=';
    expect(hmac(KEY, `${RAW_SR}\n${SE}`)).toBe(sig);
    const token = parseSas(header({ sr: RAW_SR, sig: encodeURIComponent(sig), skn: 'registration', se: String(SE) }));
    expect(verifySignature(token, KEY)).toBe(true);
  });

  it('an upper-case %2F token verifies with the vector computed over the encoded sr', () => {
    const sig = '75rv9twfZqIBw5o9uiH+/hTq2W6MzHsazenFzTS2Np4=';
    expect(hmac(KEY, `${UPPER_SR}\n${SE}`)).toBe(sig);
    const token = parseSas(header({ sr: UPPER_SR, sig: encodeURIComponent(sig), se: String(SE), skn: 'registration' }));
    expect(verifySignature(token, KEY)).toBe(true);
  });

  it('a C-SDK lower-case %2f token verifies with the vector computed over the encoded sr', () => {
    const sig = 'wnFaUU+EeKbgrZKKwwcE9dXk8CBLUCYqFHZA1RK7NOY=';
    expect(hmac(KEY, `${LOWER_SR}\n${SE}`)).toBe(sig);
    // The C SDK also URL-encodes sig with lower-case hex.
    const cEncodedSig = sig.replace(/\+/g, '%2b').replace(/\//g, '%2f').replace(/=/g, '%3d');
    const token = parseSas(header({ sr: LOWER_SR, sig: cEncodedSig, se: String(SE), skn: 'registration' }));
    expect(verifySignature(token, KEY)).toBe(true);
  });
});

describe('parseSas', () => {
  it('parses a raw sr: literal and resource are the same string', () => {
    const token = parseSas(
      header({ sr: RAW_SR, sig: encodeURIComponent(hmac(KEY, `${RAW_SR}\n${SE}`)), se: String(SE) }),
    );
    expect(token.srLiteral).toBe(RAW_SR);
    expect(token.resource).toBe(RAW_SR);
    expect(token.expiry).toBe(SE);
  });

  it('keeps the upper-case %2F sr literal and decodes the resource', () => {
    const token = parseSas(header({ sr: UPPER_SR, sig: 'AAAA', se: String(SE) }));
    expect(token.srLiteral).toBe(UPPER_SR);
    expect(token.resource).toBe(RAW_SR);
  });

  it('keeps the lower-case %2f sr literal and decodes the resource', () => {
    const token = parseSas(header({ sr: LOWER_SR, sig: 'AAAA', se: String(SE) }));
    expect(token.srLiteral).toBe(LOWER_SR);
    expect(token.resource).toBe(RAW_SR);
  });

  it('URL-decodes sig before base64-decoding it', () => {
    const sig = hmac(KEY, `${RAW_SR}\n${SE}`);
    const token = parseSas(header({ sr: RAW_SR, sig: encodeURIComponent(sig), se: String(SE) }));
    expect(token.signature.equals(Buffer.from(sig, 'base64'))).toBe(true);
    expect(token.signature.length).toBe(32);
  });

  it('reads fields by name in any order (sr,sig,skn,se / sr,sig,se,skn / se,skn,sig,sr)', () => {
    const sig = encodeURIComponent(hmac(KEY, `${RAW_SR}\n${SE}`));
    const orders = [
      `sr=${RAW_SR}&sig=${sig}&skn=registration&se=${SE}`,
      `sr=${RAW_SR}&sig=${sig}&se=${SE}&skn=registration`,
      `se=${SE}&skn=registration&sig=${sig}&sr=${RAW_SR}`,
    ];
    for (const fields of orders) {
      const token = parseSas(`SharedAccessSignature ${fields}`);
      expect(token).toMatchObject({ srLiteral: RAW_SR, resource: RAW_SR, expiry: SE, keyName: 'registration' });
      expect(verifySignature(token, KEY)).toBe(true);
    }
  });

  it('accepts a token without skn (Python SDK) and leaves keyName unset', () => {
    const token = parseSas(
      header({ sr: UPPER_SR, sig: encodeURIComponent(hmac(KEY, `${UPPER_SR}\n${SE}`)), se: String(SE) }),
    );
    expect(token.keyName).toBeUndefined();
    expect('keyName' in token).toBe(false);
    expect(verifySignature(token, KEY)).toBe(true);
  });

  it('accepts the scheme name case-insensitively', () => {
    const token = parseSas(`sharedaccesssignature sr=${RAW_SR}&sig=AAAA&se=${SE}`);
    expect(token.resource).toBe(RAW_SR);
  });

  it('rejects a missing or non-SAS Authorization header with 401/401002', () => {
    expect401(() => parseSas(undefined));
    expect401(() => parseSas(null));
    expect401(() => parseSas(''));
    expect401(() => parseSas(`Bearer sr=${RAW_SR}&sig=AAAA&se=${SE}`));
  });

  it('rejects a token missing sr, sig or se with 401/401002', () => {
    expect401(() => parseSas(header({ sig: 'AAAA', se: String(SE), skn: 'registration' })));
    expect401(() => parseSas(header({ sr: RAW_SR, se: String(SE), skn: 'registration' })));
    expect401(() => parseSas(header({ sr: RAW_SR, sig: 'AAAA', skn: 'registration' })));
    expect401(() => parseSas(header({ sr: '', sig: 'AAAA', se: String(SE) })));
  });

  it('rejects a non-numeric se with 401/401002', () => {
    for (const se of ['soon', '17e8', '-1', '1.5', '0x10']) {
      expect401(() => parseSas(header({ sr: RAW_SR, sig: 'AAAA', se })));
    }
  });

  it('rejects a sig that is not base64, and a sr that is not valid URL encoding', () => {
    expect401(() => parseSas(header({ sr: RAW_SR, sig: 'not*base64', se: String(SE) })));
    expect401(() => parseSas(header({ sr: '0ne00000A0A%2Xregistrations', sig: 'AAAA', se: String(SE) })));
  });
});

describe('verifySignature over the literal sr', () => {
  it('a token whose sr is encoded does not verify with an HMAC computed over the decoded sr', () => {
    const overDecoded = encodeURIComponent(hmac(KEY, `${RAW_SR}\n${SE}`));
    expect(verifySignature(parseSas(header({ sr: UPPER_SR, sig: overDecoded, se: String(SE) })), KEY)).toBe(false);
    expect(verifySignature(parseSas(header({ sr: LOWER_SR, sig: overDecoded, se: String(SE) })), KEY)).toBe(false);
  });

  it('the hex case of the encoding is part of the signed bytes (%2F-signed, %2f-presented fails)', () => {
    const overUpper = encodeURIComponent(hmac(KEY, `${UPPER_SR}\n${SE}`));
    expect(verifySignature(parseSas(header({ sr: LOWER_SR, sig: overUpper, se: String(SE) })), KEY)).toBe(false);
    expect(verifySignature(parseSas(header({ sr: UPPER_SR, sig: overUpper, se: String(SE) })), KEY)).toBe(true);
  });

  it('rejects a token signed with another key', () => {
    const other = Buffer.from('another-key-that-is-32-bytes-lon', 'utf8');
    const token = parseSas(
      header({ sr: RAW_SR, sig: encodeURIComponent(hmac(other, `${RAW_SR}\n${SE}`)), se: String(SE) }),
    );
    expect(verifySignature(token, KEY)).toBe(false);
    expect(verifySignature(token, other)).toBe(true);
  });

  it('rejects a token whose se was changed after signing', () => {
    const sig = encodeURIComponent(hmac(KEY, `${RAW_SR}\n${SE}`));
    expect(verifySignature(parseSas(header({ sr: RAW_SR, sig, se: String(SE + 3600) })), KEY)).toBe(false);
  });

  it('rejects a truncated signature without throwing', () => {
    const sig = hmac(KEY, `${RAW_SR}\n${SE}`);
    const short = Buffer.from(sig, 'base64').subarray(0, 16).toString('base64');
    expect(verifySignature(parseSas(header({ sr: RAW_SR, sig: encodeURIComponent(short), se: String(SE) })), KEY)).toBe(
      false,
    );
  });
});

describe('assertNotExpired', () => {
  const token = parseSas(header({ sr: RAW_SR, sig: 'AAAA', se: String(SE) }));

  it('accepts a token before its expiry', () => {
    expect(() => assertNotExpired(token, new Date((SE - 1) * 1000))).not.toThrow();
  });

  it('rejects an expired token with 401/401002 (including exactly at se)', () => {
    expect401(() => assertNotExpired(token, new Date((SE + 1) * 1000)));
    expect401(() => assertNotExpired(token, new Date(SE * 1000)));
  });
});

describe('assertNotExpired: the maximum lifetime (DPS_MAX_SAS_LIFETIME_SECONDS)', () => {
  const token = parseSas(header({ sr: RAW_SR, sig: 'AAAA', se: String(SE) }));

  it('accepts the one hour the SDKs sign, and up to a year by default', () => {
    expect(() => assertNotExpired(token, new Date((SE - 3600) * 1000))).not.toThrow();
    expect(() => assertNotExpired(token, new Date((SE - DEFAULT_MAX_SAS_LIFETIME_SECONDS) * 1000))).not.toThrow();
  });

  it('refuses a token valid for longer with a 401 naming the limit', () => {
    const err = (() => {
      try {
        assertNotExpired(token, new Date((SE - DEFAULT_MAX_SAS_LIFETIME_SECONDS - 1) * 1000));
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err).toMatchObject({ status: 401, errorCode: 401002 });
    expect(err?.message).toContain(`at most ${DEFAULT_MAX_SAS_LIFETIME_SECONDS} seconds`);
  });

  it('follows the configured limit', () => {
    expect(() => assertNotExpired(token, new Date((SE - 60) * 1000), 60)).not.toThrow();
    expect401(() => assertNotExpired(token, new Date((SE - 61) * 1000), 60));
  });
});

describe('createSas', () => {
  it('builds a Node-style token (raw sr, URL-encoded sig) matching the independent HMAC', () => {
    const text = createSas(RAW_SR, KEY_B64, SE, 'registration');
    const sig = hmac(KEY, `${RAW_SR}\n${SE}`);
    expect(text).toBe(`SharedAccessSignature sr=${RAW_SR}&sig=${encodeURIComponent(sig)}&se=${SE}&skn=registration`);
  });

  it('omits skn when no key name is given', () => {
    expect(createSas(RAW_SR, KEY_B64, SE)).not.toContain('skn=');
  });
});
