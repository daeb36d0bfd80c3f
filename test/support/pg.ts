// A real PostgreSQL for tests. `DATAGRANT_TEST_PG_URL` names a superuser connection (printed by
// scripts/pg-setup.sh); each test file creates uniquely named databases and roles and drops them
// afterwards. There is no skipping: without a server the tests fail, loudly.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export function testPgUrl(): string {
  const url = process.env.DATAGRANT_TEST_PG_URL;
  if (!url) {
    throw new Error(
      'DATAGRANT_TEST_PG_URL is not set: PostgreSQL tests need a real server. Run ' +
        '`eval "$(sudo bash scripts/pg-setup.sh | tail -n 1)"` (installs and starts PostgreSQL, creates the ' +
        'datagrant_admin role and prints the variable), or use `npm test`, which does that for you.',
    );
  }
  return url;
}

export function urlFor(database: string, user?: { name: string; password: string }): string {
  const u = new URL(testPgUrl());
  u.pathname = `/${encodeURIComponent(database)}`;
  if (user) {
    u.username = encodeURIComponent(user.name);
    u.password = encodeURIComponent(user.password);
  }
  return u.toString();
}

const q = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** Run statements as the admin on `database`, one connection, closed afterwards. */
export async function adminQuery<T extends pg.QueryResultRow = pg.QueryResultRow>(
  database: string,
  sql: string,
  values?: unknown[],
): Promise<pg.QueryResult<T>> {
  const c = new pg.Client({ connectionString: urlFor(database) });
  await c.connect();
  try {
    return await c.query<T>(sql, values as unknown[]);
  } finally {
    await c.end();
  }
}

/** Connect as `user` (a role with a password) to `database`; the caller ends the client. */
export async function connectAs(database: string, user: { name: string; password: string }): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: urlFor(database, user), connectionTimeoutMillis: 10_000 });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** Run one statement as `user` and return its rows. */
export async function queryAs(database: string, user: { name: string; password: string }, sql: string): Promise<unknown[]> {
  const c = await connectAs(database, user);
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

/** Asserts that `fn` fails with a PostgreSQL error whose message matches `pattern`. */
export async function expectPgError(fn: () => Promise<unknown>, pattern: RegExp): Promise<string> {
  let result: unknown;
  try {
    result = await fn();
  } catch (e) {
    const message = (e as Error).message;
    if (!pattern.test(message)) throw new Error(`expected an error matching ${pattern}, got: ${message}`, { cause: e });
    return message;
  }
  throw new Error(`expected an error matching ${pattern}, but it succeeded: ${JSON.stringify(result)}`);
}

export const expectPermissionDenied = (database: string, user: { name: string; password: string }, sql: string) =>
  expectPgError(() => queryAs(database, user, sql), /permission denied/);

/** Login refused: expired (VALID UNTIL), NOLOGIN, dropped role or wrong password all read the same to a client. */
export const expectLoginRefused = (database: string, user: { name: string; password: string }) =>
  expectPgError(
    async () => (await connectAs(database, user)).end(),
    /password authentication failed|not permitted to log in|permission denied for database|does not exist/,
  );

/**
 * Unique databases and roles for one test file. `database(label)` creates one; `role(name)` records
 * a role made by the test (or by the code under test) to drop at the end; `cleanup()` drops them all
 * (sessions are terminated first).
 */
export function pgFixture(prefix: string) {
  const run = `${prefix}_${process.pid}_${randomBytes(3).toString('hex')}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const databases: string[] = [];
  const roles = new Set<string>();
  return {
    run,
    /** A role name unique to this run. */
    name: (label: string) => `${run}_${label}`,
    async database(label: string): Promise<string> {
      const db = `${run}_${label}`;
      testPgUrl();
      await adminQuery('postgres', `CREATE DATABASE ${q(db)}`);
      databases.push(db);
      return db;
    },
    role(name: string) {
      roles.add(name);
      return name;
    },
    async cleanup(): Promise<void> {
      for (const db of databases.reverse()) await adminQuery('postgres', `DROP DATABASE IF EXISTS ${q(db)} WITH (FORCE)`);
      const left = await adminQuery<{ rolname: string }>('postgres', `SELECT rolname FROM pg_roles WHERE rolname LIKE $1 OR rolname = ANY($2::text[])`, [
        `${run}\\_%`,
        [...roles],
      ]);
      for (const { rolname } of left.rows) {
        await adminQuery('postgres', `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [rolname]);
        await adminQuery('postgres', `DROP OWNED BY ${q(rolname)}`).catch(() => undefined);
        await adminQuery('postgres', `DROP ROLE IF EXISTS ${q(rolname)}`);
      }
    },
  };
}
