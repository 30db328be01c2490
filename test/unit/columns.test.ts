import { describe, expect, it } from 'vitest';

import { joinColumn, splitColumn } from '../../shared/storage/columns';

describe('splitColumn / joinColumn', () => {
  it('keeps short text in one column', () => {
    expect(splitColumn('doc', '{"a":1}')).toEqual({ doc: '{"a":1}' });
    expect(splitColumn('doc', '')).toEqual({ doc: '' });
  });

  it('splits long text into columns of at most 32,000 code units and joins it back', () => {
    const text = 'x'.repeat(70_001);
    const columns = splitColumn('state', text);
    expect(Object.keys(columns)).toEqual(['state', 'state1', 'state2']);
    expect(Object.values(columns).every((c) => c.length <= 32_000)).toBe(true);
    expect(joinColumn(columns, 'state')).toBe(text);
  });

  it('never splits a surrogate pair', () => {
    const text = `${'x'.repeat(31_999)}😀${'y'.repeat(10)}`;
    const columns = splitColumn('doc', text);
    expect(columns.doc?.endsWith('x')).toBe(true);
    expect(columns.doc1?.startsWith('😀')).toBe(true);
    expect(joinColumn(columns, 'doc')).toBe(text);
  });

  it('reads a row with other columns around it', () => {
    expect(joinColumn({ doc: 'ab', doc1: 'cd', docs: 'no', other: 1 }, 'doc')).toBe('abcd');
  });
});
