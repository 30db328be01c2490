import { describe, expect, it } from 'vitest';

import { publicEtag, rowEtag } from '../../shared/storage/etag';

const ROW = `W/"datetime'2024-01-01T00%3A00%3A00.1234567Z'"`;

describe('etag', () => {
  it('the public ETag is opaque base64 of the row ETag', () => {
    const pub = publicEtag(ROW);
    expect(pub).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(pub).not.toContain('datetime');
    expect(Buffer.from(pub, 'base64').toString('utf8')).toBe(ROW);
  });

  it('an If-Match value round-trips to the row ETag, quoted or not', () => {
    const pub = publicEtag(ROW);
    expect(rowEtag(pub)).toBe(ROW);
    expect(rowEtag(`"${pub}"`)).toBe(ROW);
    expect(rowEtag(`  "${pub}" `)).toBe(ROW);
  });

  it('* stays *, quoted or not', () => {
    expect(rowEtag('*')).toBe('*');
    expect(rowEtag('"*"')).toBe('*');
  });
});
