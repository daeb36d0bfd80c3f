// A real MariaDB for tests. `DATAGRANT_TEST_MYSQL_URL` names an admin connection (printed by
// scripts/mysql-setup.sh, which starts a private server); each test file creates uniquely named
// databases, accounts and roles and drops them afterwards. There is no skipping: without a server
// the tests fail, loudly.
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';

export function testMysqlUrl(): string {
  const url = process.env.DATAGRANT_TEST_MYSQL_URL;
  if (!url) {
    throw new Error(
      'DATAGRANT_TEST_MYSQL_URL is not set: MariaDB tests need a real server. Run ' +
        '`export "$(sudo bash scripts/mysql-setup.sh | tail -n 1)"` (installs MariaDB, starts a private server on a free ' +
        'port, creates the datagrant_admin account and prints the variable), or use `npm test`, which does that for you.',
    );
  }
  return url;
}

/** The admin URL, or one for `user` on the same server. */
export function mysqlUrlFor(user?: { name: string; password: string }): string {
  const u = new URL(testMysqlUrl());
  if (user) {
    u.username = encodeURIComponent(user.name);
    u.password = encodeURIComponent(user.password);
  }
  return u.toString();
}

export const mysqlServer = () => {
  const u = new URL(testMysqlUrl());
  return { host: u.hostname, port: Number(u.port || 3306) };
};

const ident = (s: string) => `\`${s.replace(/`/g, '``')}\``;
const lit = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;

/** Runs statements (several, `;`-separated) as the admin on one connection, closed afterwards. */
export async function mysqlAdmin<T = unknown>(sql: string, values?: unknown[]): Promise<T> {
  const c = await mysql.createConnection({ uri: testMysqlUrl(), multipleStatements: true, connectTimeout: 10_000 });
  try {
    const [rows] = await c.query(sql, values);
    return rows as T;
  } finally {
    await c.end();
  }
}

/** Connects as `user` (with `database` as the default one, if given); the caller ends it. */
export async function mysqlConnectAs(user: { name: string; password: string }, database?: string): Promise<mysql.Connection> {
  const c = await mysql.createConnection({
    ...mysqlServer(),
    user: user.name,
    password: user.password,
    ...(database ? { database } : {}),
    connectTimeout: 10_000,
  });
  c.on('error', () => undefined);
  return c;
}

/** Runs one statement as `user` on a connection of its own and returns its rows. */
export async function mysqlQueryAs(user: { name: string; password: string }, sql: string): Promise<unknown[]> {
  const c = await mysqlConnectAs(user);
  try {
    const [rows] = await c.query(sql);
    return rows as unknown[];
  } finally {
    await c.end();
  }
}

/** Asserts that `fn` fails with a MariaDB error whose message matches `pattern`; returns the message. */
export async function expectMysqlError(fn: () => Promise<unknown>, pattern: RegExp): Promise<string> {
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

/** The statement is refused for lack of a privilege (table, database or command). */
export const expectDenied = (user: { name: string; password: string }, sql: string) =>
  expectMysqlError(() => mysqlQueryAs(user, sql), /command denied|Access denied for user/);

/**
 * A session the server ended: its next statement fails, however the client words it (the server's
 * KILL notice may or may not arrive before the socket closes).
 */
export const expectSessionEnded = (c: mysql.Connection) =>
  expectMysqlError(() => c.query('SELECT 1'), /closed state|Connection lost|server has gone away|killed|socket has been ended|ECONNRESET/i);

/** The login itself is refused: a dropped or locked account, a wrong or cleared password. */
export const expectLoginRefused = (user: { name: string; password: string }) =>
  expectMysqlError(async () => (await mysqlConnectAs(user)).end(), /Access denied for user|this account is locked/);

/**
 * Unique databases, accounts and roles for one test file. Names start with the run's prefix;
 * `cleanup()` ends their sessions and drops them all, whoever made them (the test or datagrant).
 */
export function mysqlFixture(prefix: string, shared?: string) {
  // `shared`: the run prefix of another fixture (pg's), so that names match across servers.
  const run = shared ?? `${prefix}_${process.pid}_${randomBytes(3).toString('hex')}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return {
    run,
    /** A name unique to this run (an account, a role, a group or principal of a spec). */
    name: (label: string) => `${run}_${label}`,
    async database(label: string): Promise<string> {
      const db = `${run}_${label}`;
      await mysqlAdmin(`CREATE DATABASE ${ident(db)}`);
      return db;
    },
    async cleanup(): Promise<void> {
      const like = `${run.replace(/_/g, '\\_')}\\_%`;
      const accounts = await mysqlAdmin<{ User: string; Host: string; is_role: string | null }[]>(
        `SELECT User, Host, JSON_VALUE(Priv, '$.is_role') AS is_role FROM mysql.global_priv WHERE User LIKE ?`,
        [like],
      );
      const sessions = await mysqlAdmin<{ ID: number }[]>(`SELECT ID FROM information_schema.PROCESSLIST WHERE USER LIKE ?`, [like]);
      for (const { ID } of sessions) await mysqlAdmin(`KILL CONNECTION ${Number(ID)}`).catch(() => undefined);
      for (const a of accounts) {
        await mysqlAdmin(
          a.is_role === 'true' || a.is_role === '1' ? `DROP ROLE IF EXISTS ${ident(a.User)}` : `DROP USER IF EXISTS ${lit(a.User)}@${lit(a.Host)}`,
        );
      }
      const dbs = await mysqlAdmin<{ SCHEMA_NAME: string }[]>(`SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?`, [like]);
      for (const { SCHEMA_NAME } of dbs) await mysqlAdmin(`DROP DATABASE IF EXISTS ${ident(SCHEMA_NAME)}`);
    },
  };
}
