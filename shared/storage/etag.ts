// ETags as clients see them: opaque strings derived from the Table row ETag (which looks like W/"datetime'…'").

/** The row ETag as a client-facing opaque token (base64, like DPS's own registration ETags). */
export const publicEtag = (rowEtag: string): string => Buffer.from(rowEtag, 'utf8').toString('base64');

const ROW_ETAG = /^W\/"datetime'[^']+'"$/;
/** Well-formed but never current: storage answers 412, as for any other stale ETag. */
const NEVER_CURRENT = `W/"datetime'1970-01-01T00%3A00%3A00.0000000Z'"`;

/**
 * Back from a client's If-Match value (quoted or not; `*` stays `*`) to a row ETag. A value we never issued maps to
 * an ETag that cannot match, so it fails as a precondition (412) instead of as malformed storage input.
 */
export function rowEtag(ifMatch: string): string {
  const value = ifMatch.trim().replace(/^"(.*)"$/, '$1');
  if (value === '*') return '*';
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  return ROW_ETAG.test(decoded) ? decoded : NEVER_CURRENT;
}
