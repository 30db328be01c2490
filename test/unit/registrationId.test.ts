import { describe, expect, it } from 'vitest';

import { assertRegistrationId, isValidRegistrationId, registrationKey } from '../../shared/domain/registrationId';
import { DpsError } from '../../shared/errors';

describe('isValidRegistrationId', () => {
  it.each(['a', '7', 'sym-device-1', 'Device.With_All:Chars-9', 'ends-with-dash-', 'UPPER', 'a.b', 'a_b', 'a:b'])(
    'accepts %s',
    (id) => expect(isValidRegistrationId(id)).toBe(true),
  );

  it('accepts 128 characters and rejects 129', () => {
    expect(isValidRegistrationId('a'.repeat(128))).toBe(true);
    expect(isValidRegistrationId(`a${'-'.repeat(126)}b`)).toBe(true);
    expect(isValidRegistrationId('a'.repeat(129))).toBe(false);
  });

  it.each([
    ['empty', ''],
    ['leading -', '-device'],
    ['leading .', '.device'],
    ['leading _', '_device'],
    ['trailing .', 'device.'],
    ['trailing _', 'device_'],
    ['trailing :', 'device:'],
    ['space', 'my device'],
    ['slash', 'a/b'],
    ['hash', 'a#b'],
    ['non-ASCII letter', 'gerät'],
    ['newline at end', 'device\n'],
  ])('rejects %s', (_label, id) => expect(isValidRegistrationId(id)).toBe(false));
});

describe('assertRegistrationId', () => {
  it('returns a valid ID unchanged', () => {
    expect(assertRegistrationId('Sym-Device-1')).toBe('Sym-Device-1');
  });

  it('throws 400 naming the field for an invalid ID', () => {
    let thrown: unknown;
    try {
      assertRegistrationId('bad id.', 'body.registrationId');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DpsError);
    expect(thrown).toMatchObject({ status: 400, errorCode: 400002 });
    expect((thrown as DpsError).message).toContain('body.registrationId');
  });
});

describe('registrationKey', () => {
  it('is the lower-cased registration ID, so IDs differing only in case share a key', () => {
    expect(registrationKey('Sym-Device-1')).toBe('sym-device-1');
    expect(registrationKey('ABC')).toBe(registrationKey('abc'));
  });
});
