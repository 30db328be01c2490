// The query language of the service API's `POST …/query`: DPS accepts `SELECT *` (all); Open DPS also accepts a
// WHERE clause of equality tests on indexed fields:
//   SELECT * FROM <name> [WHERE <field> (= | !=) '<value>' [AND …]]
//   fields: provisioningStatus, attestation.type, iotHubHostName, allocationPolicy, deviceId
// Keywords are case-insensitive; values are single-quoted ('' for a quote inside). Anything else is a clear 400.
import { badRequest } from '../errors';
import { isPlainObject } from '../http/request';
import type { QueryCondition, QueryField } from '../storage/enrollmentTable';
import { QUERY_COLUMNS } from '../storage/enrollmentTable';

// Caps that keep a query's OData filter well inside what Table Storage accepts (a filter has at most 15 comparisons
// and a URL a few KB), far beyond what the indexed fields need (a host name is at most 253 characters).
export const MAX_QUERY_CHARS = 4096;
export const MAX_QUERY_CONDITIONS = 10;
export const MAX_QUERY_VALUE_CHARS = 512;

const GRAMMAR =
  "SELECT * FROM <name> [WHERE <field> (= | !=) '<value>' [AND ...]] with fields " +
  Object.keys(QUERY_COLUMNS).join(', ');

/** Parses the `{"query": "…"}` body. A missing body or `*` means everything. */
export function parseQuery(body: unknown): QueryCondition[] {
  if (body === undefined || body === null) return [];
  if (!isPlainObject(body) || (body.query !== undefined && typeof body.query !== 'string')) {
    throw badRequest('The query body must be {"query": "<text>"}.', 7);
  }
  const text = (typeof body.query === 'string' ? body.query : '').trim();
  if (text.length > MAX_QUERY_CHARS) {
    throw badRequest(`The query is ${text.length} characters long; at most ${MAX_QUERY_CHARS} are allowed.`, 8);
  }
  if (text === '' || text === '*') return [];
  const match = /^select\s+\*(?:\s+from\s+[A-Za-z][\w]*)?(?:\s+where\s+(.+))?$/is.exec(text);
  if (!match) throw unsupported(text);
  const where = match[1];
  if (where === undefined) return [];
  const conditions: QueryCondition[] = [];
  const condition = /^\s*([A-Za-z][\w.]*)\s*(=|!=|<>)\s*'((?:[^']|'')*)'\s*(?:and\s+|$)/i;
  let rest = where;
  while (rest.trim() !== '') {
    const m = condition.exec(rest);
    const field = m?.[1];
    if (!m || field === undefined || !Object.hasOwn(QUERY_COLUMNS, field)) throw unsupported(text);
    if (conditions.length === MAX_QUERY_CONDITIONS) {
      throw badRequest(
        `The query has more than ${MAX_QUERY_CONDITIONS} conditions; at most ${MAX_QUERY_CONDITIONS} are allowed.`,
        8,
      );
    }
    const value = (m[3] ?? '').replace(/''/g, "'");
    if (value.length > MAX_QUERY_VALUE_CHARS) {
      throw badRequest(
        `The value compared with ${field} is ${value.length} characters long; at most ${MAX_QUERY_VALUE_CHARS} are allowed.`,
        8,
      );
    }
    conditions.push({ field: field as QueryField, op: m[2] === '=' ? '=' : '!=', value });
    rest = rest.slice(m[0].length);
  }
  return conditions;
}

function unsupported(text: string) {
  return badRequest(`Unsupported query '${text.slice(0, 200)}'. Supported: ${GRAMMAR}.`, 8);
}
