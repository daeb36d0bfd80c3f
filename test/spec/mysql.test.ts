// A mysql backend's part of the spec: its URL, datasets of its own shape (a database, no schema),
// names MariaDB can hold, and what it cannot issue. Each problem names its place in the file, and
// a URL read from the environment is never echoed.
import { describe, expect, test } from 'vitest';
import { SpecError, type SpecProblem } from '../../src/core/errors.js';
import { parseSpec } from '../../src/spec/load.js';

const NOW = new Date('2026-11-28T00:00:00Z');
const ENV = { DB_URL: 'mysql://datagrant:s3cret-pa55@db.example:3306' };

function problemsOf(text: string, env: Record<string, string> = ENV): SpecProblem[] {
  try {
    parseSpec(text, { file: 'datagrant.yaml', env, now: NOW });
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return (e as SpecError).problems;
  }
  throw new Error('spec loaded, but problems were expected');
}

const spec = (backend: string, datasets: string, rest = '') => `version: 1
backends:
  db: ${backend}
datasets:
${datasets}
${rest}`;

describe('a mysql backend', () => {
  test('loads with its url from the environment, the account host, a scope and tables', () => {
    const { spec: s } = parseSpec(
      spec(
        `{ type: mysql, url: "\${DB_URL}", host: "10.0.%", scope: ci, timeouts: { connect: 5s } }`,
        `  features: { backend: db, database: analytics, tables: [f, g] }
  whole: { backend: db, database: my_db }`,
        `groups: { ml: { grants: [{ dataset: whole, access: read }] } }
principals: { alice: { type: person, groups: [ml], grants: [{ dataset: features, access: write }] } }`,
      ),
      { file: 'datagrant.yaml', env: ENV, now: NOW },
    );
    expect(s.backends.db).toEqual({ type: 'mysql', url: ENV.DB_URL, host: '10.0.%', scope: 'ci', timeouts: { connect: '5s' } });
    expect(s.datasets.features).toEqual({ backend: 'db', database: 'analytics', tables: ['f', 'g'] });
  });

  test.each([
    ['a postgres URL', `{ type: mysql, url: "postgres://u:pw@h/db" }`, 'backends.db.url', /must be a mysql:\/\/ URL .*got a URL starting with postgres:\/\//],
    ['a host with a quote', `{ type: mysql, url: "\${DB_URL}", host: "a'b" }`, 'backends.db.host', /may contain only letters, digits and \. % _ : \/ -/],
    [
      'an unknown key',
      `{ type: mysql, url: "\${DB_URL}", schema: x }`,
      'backends.db.schema',
      /unknown key "schema"; allowed: type, url, host, scope, timeouts/,
    ],
  ])('%s is refused at its place', (_label, backend, path, message) => {
    const problems = problemsOf(spec(backend, `  d: { backend: db, database: x }`));
    expect(problems.map((p) => p.path)).toEqual([path]);
    expect(problems[0]!.message).toMatch(message);
    expect(problems[0]!.line).toBe(3);
    expect(JSON.stringify(problems)).not.toContain('s3cret-pa55');
  });

  test('a URL read from the environment is never shown, even when it is wrong', () => {
    const problems = problemsOf(spec(`{ type: mysql, url: "\${DB_URL}" }`, `  d: { backend: db, database: x }`), { DB_URL: 'https://u:s3cret-pa55@h' });
    expect(problems.map((p) => p.message)).toEqual([expect.stringMatching(/got a URL starting with https:\/\//)]);
    expect(JSON.stringify(problems)).not.toContain('s3cret-pa55');
  });

  test.each([
    ['a database of 65 characters', `database: ${'d'.repeat(65)}`, 'datasets.d.database', /is 65 characters long; MariaDB database names hold at most 64/],
    ['a table of 65 characters', `database: x, tables: [${'t'.repeat(65)}]`, 'datasets.d.tables[0]', /MariaDB table names hold at most 64/],
    ['a backslash in a database', `database: "a\\\\b"`, 'datasets.d.database', /backslash, which GRANT reads as an escape/],
    ['a trailing space', `database: "ab "`, 'datasets.d.database', /ends with a space/],
    ['a character beyond utf8mb3', `database: "a😀"`, 'datasets.d.database', /outside what MariaDB's system tables hold/],
  ])('a dataset with %s is refused', (_label, fields, path, message) => {
    const problems = problemsOf(spec(`{ type: mysql, url: "\${DB_URL}" }`, `  d: { backend: db, ${fields} }`));
    expect(problems.map((p) => p.path)).toEqual([path]);
    expect(problems[0]!.message).toMatch(message);
    expect(problems[0]!.line).toBe(5);
  });

  test('a dataset with a schema on a mysql backend, or without one on a postgres backend, says which it needs', () => {
    const problems = problemsOf(`version: 1
backends:
  db: { type: mysql, url: "\${DB_URL}" }
  pg: { type: postgres, url: "postgres://h/x" }
datasets:
  a: { backend: db, database: x, schema: s }
  b: { backend: pg, database: x }
  c: { backend: db, bucket: some-bucket }
`);
    expect(problems.map((p) => `${p.line}:${p.path}`)).toEqual(['6:datasets.a.schema', '7:datasets.b', '8:datasets.c.backend']);
    expect(problems[0]!.message).toMatch(/a MariaDB database has no schemas; remove schema/);
    expect(problems[1]!.message).toMatch(/which is postgres: it needs a schema as well as a database/);
    expect(problems[2]!.message).toMatch(/has a bucket, so it needs an aws backend/);
  });

  test('names MariaDB cannot hold as roles, a principal named like a group, and temporary credentials are refused', () => {
    const problems = problemsOf(
      spec(
        `{ type: mysql, url: "\${DB_URL}" }`,
        `  d: { backend: db, database: x }`,
        `groups:
  none: { grants: [{ dataset: d, access: read }] }
  ml: { grants: [{ dataset: d, access: read }] }
principals:
  ml: { type: person, groups: [ml] }
  eve: { type: person, credentials: temporary, grants: [{ dataset: d, access: read }] }`,
      ),
    );
    expect(problems.map((p) => `${p.line}:${p.path}`)).toEqual(['7:groups.none', '10:principals.ml', '11:principals.eve.credentials']);
    expect(problems[0]!.message).toMatch(/group name "none" is a role name MariaDB reserves; it would be a MariaDB role on backend db/);
    expect(problems[1]!.message).toMatch(/principal "ml" and group "ml" would be one MariaDB role on backend db/);
    expect(problems[2]!.message).toMatch(/issues long-lived passwords only; set credentials: key/);
  });
});
