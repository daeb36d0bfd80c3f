// Connections to one PostgreSQL server: a pool per database, each connection with the driver's
// deadlines, and every statement counted.
import pg from 'pg';
import type { BackendStats } from '../backend.js';
import type { Deadlines } from '../deadline.js';
import { isReadTimeout, tagDeadline, toBackendError } from './errors.js';
import { literal } from './sql.js';
import type { BackendError } from '../../core/errors.js';

/**
 * A statement's text, or a named statement, which the server parses and plans once per connection
 * rather than on every call (for the reads every change makes). Named statements need the session
 * to stay on one server connection: no transaction-mode pooler in between, as for `SET` below.
 */
export type Statement = string | { name: string; text: string };

/** One statement on the connection a change holds; several `;`-separated ones only without values. */
export type Query = (statement: Statement, values?: unknown[]) => Promise<pg.QueryResult>;

export interface ConnectionOptions {
  /** The backend's name, for errors. */
  name: string;
  url: string;
  /** Connections per database pool (default: 8 to the URL's database, 4 to each dataset database). */
  poolSize?: number;
  deadlines: Deadlines;
}

export class Connections {
  readonly stats: BackendStats = { requests: 0, retries: 0 };
  /** The database of the URL, where roles and database privileges are managed. */
  readonly adminDatabase: string;
  /** The server as the URL names it (host and port of issued credentials). */
  readonly server: URL;
  readonly #opts: ConnectionOptions;
  readonly #pools = new Map<string, pg.Pool>();
  readonly #Client: new (config?: pg.ClientConfig) => pg.ClientBase;

  constructor(opts: ConnectionOptions) {
    this.#opts = opts;
    this.server = new URL(opts.url);
    this.adminDatabase = decodeURIComponent(this.server.pathname.replace(/^\//, '')) || 'postgres';
    const connectMs = opts.deadlines.connectMs;
    // The connect deadline is the server's, not the wait for a free connection of our own pool
    // (pg.Pool would count that too), so it is set on each client.
    class DeadlineClient extends pg.Client {
      constructor(config: pg.ClientConfig) {
        super({ ...config, connectionTimeoutMillis: connectMs });
      }
    }
    this.#Client = DeadlineClient as unknown as new (config?: pg.ClientConfig) => pg.ClientBase;
  }

  urlOf(database: string): string {
    const u = new URL(this.#opts.url);
    u.pathname = `/${encodeURIComponent(database)}`;
    return u.toString();
  }

  /** The driver's error for what a statement or a connection threw. */
  error(e: unknown, address?: string): BackendError {
    return toBackendError(e, this.#opts.name, this.#opts.deadlines, (db) => this.urlOf(db), address, decodeURIComponent(this.server.username) || undefined);
  }

  #pool(database: string): pg.Pool {
    let p = this.#pools.get(database);
    if (!p) {
      const requestMs = this.#opts.deadlines.requestMs;
      p = new pg.Pool({
        connectionString: this.urlOf(database),
        Client: this.#Client,
        max: this.#opts.poolSize ?? (database === this.adminDatabase ? 8 : 4),
        // Per-dataset databases are left quickly, so that DROP DATABASE elsewhere is not blocked.
        idleTimeoutMillis: database === this.adminDatabase ? 10_000 : 1_000,
        allowExitOnIdle: true,
        // Client side: a server that stops answering. Server side (below): a statement that runs
        // or waits for a lock too long is cancelled there, not left running after we gave up. A
        // SET rather than a start-up parameter, which poolers such as pgbouncer refuse.
        query_timeout: requestMs,
      });
      p.on('error', () => undefined);
      // Queued first on each new connection, so it runs before anything sent on it; if it fails,
      // the connection is broken and the next statement on it reports that.
      p.on('connect', (c) => {
        c.query(`SET statement_timeout = ${Math.round(requestMs)}`).catch(() => undefined);
      });
      this.#pools.set(database, p);
    }
    return p;
  }

  /** Runs `fn` on one connection of `database`, in a transaction unless told otherwise. */
  async on<T>(database: string, fn: (q: Query) => Promise<T>, tx = true): Promise<T> {
    this.stats.requests++;
    let client: pg.PoolClient;
    try {
      client = await this.#pool(database).connect();
    } catch (e) {
      throw tagDeadline(e, database, 'connect');
    }
    const q: Query = (statement, values) => {
      this.stats.requests++;
      return typeof statement === 'string' ? client.query(statement, values) : client.query({ ...statement, values });
    };
    let broken: Error | undefined;
    try {
      if (tx) await client.query('BEGIN');
      const out = await fn(q);
      if (tx) await client.query('COMMIT');
      return out;
    } catch (e) {
      // A connection whose server stopped answering is closed, not reused; closing it also ends
      // the transaction, so there is no ROLLBACK to wait for.
      if (isReadTimeout(e)) broken = e as Error;
      else if (tx) await client.query('ROLLBACK').catch(() => undefined);
      throw tagDeadline(e, database, 'request');
    } finally {
      client.release(broken);
    }
  }

  /**
   * Logs in to `database` as `user` on a connection of its own (outside the pools), within the
   * connect deadline, and runs one statement: whether the server accepts a credential just issued.
   */
  async probe(database: string, user: string, password: string): Promise<void> {
    this.stats.requests++;
    const u = new URL(this.urlOf(database));
    u.username = encodeURIComponent(user);
    u.password = encodeURIComponent(password);
    const client = new this.#Client({ connectionString: u.toString() }) as pg.Client;
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
    } catch (e) {
      throw tagDeadline(e, database, 'connect');
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** `on` the URL's database. */
  admin<T>(fn: (q: Query) => Promise<T>, tx = true): Promise<T> {
    return this.on(this.adminDatabase, fn, tx);
  }

  async close(): Promise<void> {
    const all = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(all.map((p) => p.end()));
  }
}

/**
 * Statements sent as one simple-protocol message, which PostgreSQL runs as one implicit
 * transaction (unless a transaction is open already): all or nothing, in one round trip. Only
 * literals, no bind values: each goes through `literal` or `ident`.
 */
export async function atomic(q: Query, statements: string[]): Promise<pg.QueryResult[]> {
  const r = (await q(statements.join(';\n'))) as pg.QueryResult | pg.QueryResult[];
  // pg answers a message of several statements with one result each, and of one with that one.
  return Array.isArray(r) ? r : [r];
}

/** Serialises catalog updates on one shared row (a database's or a schema's ACL) across sessions. */
export const lockSql = (what: string) => `SELECT pg_advisory_xact_lock(hashtext(${literal(`datagrant:${what}`)}))`;
export const lock = (q: Query, what: string) => q(lockSql(what));
