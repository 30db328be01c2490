import { describe, expect, it } from 'vitest';

import { DpsError } from '../../shared/errors';
import { parseQuery } from '../../shared/management/query';
import type { QueryCondition } from '../../shared/storage/enrollmentTable';

const q = (query: string): QueryCondition[] => parseQuery({ query });

/** The error parseQuery throws for `body` (fails the test if it does not throw a DpsError). */
function rejection(body: unknown): DpsError {
  try {
    parseQuery(body);
  } catch (err) {
    expect(err).toBeInstanceOf(DpsError);
    return err as DpsError;
  }
  throw new Error(`parseQuery accepted ${JSON.stringify(body)}`);
}

/** A 400 whose message spells out the grammar and every supported field. */
function expectGrammarError(query: string): void {
  const err = rejection({ query });
  expect(err.status).toBe(400);
  expect(err.errorCode).toBe(400008);
  expect(err.message).toContain("SELECT * FROM <name> [WHERE <field> (= | !=) '<value>' [AND ...]]");
  for (const field of ['provisioningStatus', 'attestation.type', 'iotHubHostName', 'allocationPolicy', 'deviceId']) {
    expect(err.message).toContain(field);
  }
}

describe('parseQuery: everything', () => {
  it.each([
    ['an absent body', undefined],
    ['a null body', null],
    ['a body without query', {}],
    ['an empty query', { query: '' }],
    ['a blank query', { query: '   ' }],
    ['*', { query: '*' }],
    ['SELECT *', { query: 'SELECT *' }],
    ['select * from enrollments', { query: 'select * from enrollments' }],
    ['SELECT * FROM enrollmentGroups', { query: 'SELECT * FROM enrollmentGroups' }],
    ['mixed-case keywords', { query: 'SeLeCt * FrOm enrollments' }],
    ['surrounding and inner whitespace', { query: '  SELECT   *\n FROM\tenrollments  ' }],
  ])('%s means every enrollment (no conditions)', (_label, body) => {
    expect(parseQuery(body)).toEqual([]);
  });
});

describe('parseQuery: WHERE', () => {
  it.each([
    ['provisioningStatus', 'disabled'],
    ['attestation.type', 'symmetricKey'],
    ['iotHubHostName', 'hub-a.azure-devices.net'],
    ['allocationPolicy', 'static'],
    ['deviceId', 'device-1'],
  ] as const)('one equality test on %s', (field, value) => {
    expect(q(`SELECT * FROM enrollments WHERE ${field} = '${value}'`)).toEqual([{ field, op: '=', value }]);
  });

  it('several conditions joined by AND, in order', () => {
    expect(
      q(
        "SELECT * FROM enrollments WHERE provisioningStatus = 'enabled' AND attestation.type = 'x509' " +
          "AND iotHubHostName = 'hub-a' AND allocationPolicy = 'hashed' AND deviceId = 'd1'",
      ),
    ).toEqual([
      { field: 'provisioningStatus', op: '=', value: 'enabled' },
      { field: 'attestation.type', op: '=', value: 'x509' },
      { field: 'iotHubHostName', op: '=', value: 'hub-a' },
      { field: 'allocationPolicy', op: '=', value: 'hashed' },
      { field: 'deviceId', op: '=', value: 'd1' },
    ]);
  });

  it('WHERE without FROM', () => {
    expect(q("SELECT * WHERE deviceId = 'd1'")).toEqual([{ field: 'deviceId', op: '=', value: 'd1' }]);
  });

  it('!= and <> both mean not-equal', () => {
    expect(q("SELECT * FROM enrollments WHERE provisioningStatus != 'disabled'")).toEqual([
      { field: 'provisioningStatus', op: '!=', value: 'disabled' },
    ]);
    expect(q("SELECT * FROM enrollments WHERE provisioningStatus <> 'disabled'")).toEqual([
      { field: 'provisioningStatus', op: '!=', value: 'disabled' },
    ]);
  });

  it('mixes = and != across AND-ed conditions', () => {
    expect(q("SELECT * WHERE attestation.type = 'symmetricKey' AND allocationPolicy <> 'static'")).toEqual([
      { field: 'attestation.type', op: '=', value: 'symmetricKey' },
      { field: 'allocationPolicy', op: '!=', value: 'static' },
    ]);
  });

  it('keywords are case-insensitive (select/from/where/and)', () => {
    expect(q("select * from enrollments where deviceId = 'a' and provisioningStatus = 'enabled'")).toEqual([
      { field: 'deviceId', op: '=', value: 'a' },
      { field: 'provisioningStatus', op: '=', value: 'enabled' },
    ]);
    expect(q("SELECT * FROM enrollments WhErE deviceId = 'a' AnD deviceId != 'b'")).toHaveLength(2);
  });

  it('operators need no surrounding spaces', () => {
    expect(q("SELECT * WHERE deviceId='a' AND provisioningStatus!='disabled'")).toEqual([
      { field: 'deviceId', op: '=', value: 'a' },
      { field: 'provisioningStatus', op: '!=', value: 'disabled' },
    ]);
  });

  it("'' inside a quoted value is one quote", () => {
    expect(q("SELECT * WHERE deviceId = 'it''s'")).toEqual([{ field: 'deviceId', op: '=', value: "it's" }]);
    expect(q("SELECT * WHERE deviceId = ''''")).toEqual([{ field: 'deviceId', op: '=', value: "'" }]);
    expect(q("SELECT * WHERE deviceId = 'a''' AND provisioningStatus = '''b'")).toEqual([
      { field: 'deviceId', op: '=', value: "a'" },
      { field: 'provisioningStatus', op: '=', value: "'b" },
    ]);
  });

  it('an empty quoted value is the empty string', () => {
    expect(q("SELECT * WHERE iotHubHostName = ''")).toEqual([{ field: 'iotHubHostName', op: '=', value: '' }]);
  });

  it('a value keeps its spaces, keywords and operators verbatim', () => {
    expect(q("SELECT * WHERE deviceId = ' a AND b = c OR d '")).toEqual([
      { field: 'deviceId', op: '=', value: ' a AND b = c OR d ' },
    ]);
  });
});

describe('parseQuery: rejections name the supported grammar', () => {
  it.each([
    ['an unknown field', "SELECT * FROM enrollments WHERE registrationId = 'x'"],
    ['a field in the wrong case', "SELECT * WHERE DeviceId = 'x'"],
    ['an unquoted value', 'SELECT * FROM enrollments WHERE deviceId = x'],
    ['a double-quoted value', 'SELECT * FROM enrollments WHERE deviceId = "x"'],
    ['an unterminated value', "SELECT * FROM enrollments WHERE deviceId = 'x"],
    ['OR', "SELECT * FROM enrollments WHERE deviceId = 'a' OR deviceId = 'b'"],
    ['>', "SELECT * FROM enrollments WHERE deviceId > 'a'"],
    ['LIKE', "SELECT * FROM enrollments WHERE deviceId LIKE 'a%'"],
    ['trailing garbage after FROM', 'SELECT * FROM enrollments garbage'],
    ['trailing garbage after a condition', "SELECT * WHERE deviceId = 'a' garbage"],
    ['a dangling AND', "SELECT * WHERE deviceId = 'a' AND"],
    ['an empty WHERE', 'SELECT * FROM enrollments WHERE'],
    ['a column list', 'SELECT deviceId FROM enrollments'],
    ['another statement', "DELETE FROM enrollments WHERE deviceId = 'a'"],
    ['a bare word', 'enrollments'],
  ])('%s', (_label, query) => expectGrammarError(query));

  // `field in QUERY_COLUMNS` also finds Object.prototype members: the storage layer would then build an OData
  // filter from `QUERY_COLUMNS[field]` (a function) and the client would get a 500 instead of this 400.
  it.each(['constructor', 'toString', 'hasOwnProperty', 'valueOf'])(
    'an inherited Object property (%s) is not a field',
    (field) => expectGrammarError(`SELECT * WHERE ${field} = 'x'`),
  );

  it('quotes (a prefix of) the rejected query', () => {
    expect(rejection({ query: 'SELECT name FROM x' }).message).toContain("'SELECT name FROM x'");
    expect(rejection({ query: `SELECT ${'x'.repeat(500)}` }).message.length).toBeLessThan(600);
  });

  it.each([
    ['a number', 5],
    ['an object', { text: 'SELECT *' }],
    ['null', null],
  ])('a non-string query (%s) is a 400 naming the body shape', (_label, query) => {
    const err = rejection({ query });
    expect(err.status).toBe(400);
    expect(err.message).toContain('{"query": "<text>"}');
  });

  it.each([
    ['a string', 'SELECT *'],
    ['an array', [{ query: 'SELECT *' }]],
    ['a number', 42],
  ])('a non-object body (%s) is a 400 naming the body shape', (_label, body) => {
    const err = rejection(body);
    expect(err.status).toBe(400);
    expect(err.message).toContain('{"query": "<text>"}');
  });
});

describe('parseQuery caps: a 400 that states the limit', () => {
  it('caps the query text', () => {
    const err = rejection({ query: `SELECT * WHERE deviceId = '${'x'.repeat(5000)}'` });
    expect(err).toMatchObject({ status: 400, errorCode: 400008 });
    expect(err.message).toContain('at most 4096');
  });

  it('caps the number of conditions (Table Storage takes 15 comparisons a filter)', () => {
    const where = (n: number) => Array.from({ length: n }, (_, i) => `deviceId != 'd${i}'`).join(' AND ');
    expect(q(`SELECT * WHERE ${where(10)}`)).toHaveLength(10);
    const err = rejection({ query: `SELECT * WHERE ${where(11)}` });
    expect(err).toMatchObject({ status: 400, errorCode: 400008 });
    expect(err.message).toContain('at most 10');
    expect(rejection({ query: `SELECT * WHERE ${where(2000)}` }).message).toContain('at most 4096');
  });

  it('caps the length of a value', () => {
    expect(q(`SELECT * WHERE iotHubHostName = '${'h'.repeat(512)}'`)).toHaveLength(1);
    const err = rejection({ query: `SELECT * WHERE iotHubHostName = '${'h'.repeat(513)}'` });
    expect(err).toMatchObject({ status: 400, errorCode: 400008 });
    expect(err.message).toContain('at most 512');
  });
});
