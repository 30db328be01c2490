import { describe, expect, it } from 'vitest';

import { twinSize } from '../../shared/domain/twinSize';

describe('twinSize (IoT Hub twin accounting)', () => {
  it('counts keys and string values in UTF-8, numbers as 8 and booleans as 4', () => {
    expect(twinSize({ a: 'xyz' })).toBe(4);
    expect(twinSize({ é: 'é' })).toBe(4);
    expect(twinSize({ n: 1.5, b: true })).toBe(1 + 8 + 1 + 4);
    expect(twinSize({ nested: { k: [1, 'ab'] } })).toBe(6 + 1 + 8 + 2);
    expect(twinSize({ nothing: null })).toBe(7);
  });

  it('leaves out Unicode control characters, as IoT Hub does', () => {
    expect(twinSize({ 'a\n': 'b\u0000\u0085c' })).toBe(3);
  });
});
