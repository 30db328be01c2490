// The query language of the service API's `POST …/query`: DPS accepts `SELECT *` (all); Open DPS also accepts a
// WHERE clause of equality tests on indexed fields:
//   SELECT * FROM <name> [WHERE <field> (= | !=) '<value>' [AND …]]
//   fields: provisioningStatus, attestation.type, iotHubHostName, allocationPolicy, deviceId
// Keywords are case-insensitive; values are single-quoted ('' for a quote inside). Anything else is a clear 400.
import { badRequest } from '../errors';
import { isPlainObject } from '../http/request';
import type { QueryCondition, QueryField } from '../storage/enrollmentTable';
import { QUERY_COLUMNS } from '../storage/enrollmentTable';

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
    conditions.push({
      field: field as QueryField,
      op: m[2] === '=' ? '=' : '!=',
      value: (m[3] ?? '').replace(/''/g, "'"),
    });
    rest = rest.slice(m[0].length);
  }
  return conditions;
}

function unsupported(text: string) {
  return badRequest(`Unsupported query '${text.slice(0, 200)}'. Supported: ${GRAMMAR}.`, 8);
}
