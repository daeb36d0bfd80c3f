// Connections to one MariaDB server: a pool, each connection with the driver's deadlines, every
// round trip counted. A change sends its statements as one multi-statement message (one round
// trip); MariaDB commits each account statement by itself, so handlers order them to be safe at
// every point in between, and read back what they need in the same message.
import mysql from 'mysql2/promise';
import type { BackendStats } from '../backend.js';
import type { Deadlines } from '../deadline.js';
import type { BackendError } from '../../core/errors.js';
import { isReadTimeout, tagDeadline, toBackendError } from './errors.js';

/** One row of a result, by column name. */
export type Row = Record<string, unknown>;

/** Sends statements as one message on the connection a change holds; one result per statement. */
export type Send = (statements: string[], values?: unknown[]) => Promise<Row[][]>;

export interface ConnectionOptions {
  /** The backend's name, for errors. */
  name: string;
  url: string;
  /** Connections in the pool (default 8). */
  poolSize?: number;
  deadlines: Deadlines;
}

export class Connections {
  readonly stats: BackendStats = { requests: 0, retries: 0 };
  /** The server as the URL names it (host and port of issued credentials). */
  readonly server: { host: string; port: string };
  readonly #opts: ConnectionOptions;
  #pool: mysql.Pool | undefined;

  constructor(opts: ConnectionOptions) {
    this.#opts = opts;
    const u = new URL(opts.url);
    this.server = { host: u.hostname, port: u.port || '3306' };
  }

  /** The driver's error for what a statement or a connection threw. */
  error(e: unknown, address?: string): BackendError {
    return toBackendError(e, this.#opts.name, this.#opts.deadlines, this.#opts.url, address);
  }

  get #poolOf(): mysql.Pool {
    if (!this.#pool) {
      const seconds = Math.max(1, Math.round(this.#opts.deadlines.requestMs / 1000));
      this.#pool = mysql.createPool({
        uri: this.#opts.url,
        connectionLimit: this.#opts.poolSize ?? 8,
        connectTimeout: this.#opts.deadlines.connectMs,
        multipleStatements: true,
        dateStrings: true,
        supportBigNumbers: true,
        bigNumberStrings: true,
        idleTimeout: 10_000,
        enableKeepAlive: true,
      });
      // Sent first on each new connection, before anything else on it: the server ends a statement
      // (or a wait for a lock) that runs past the request deadline itself, rather than leave it
      // running after we gave up; and backslashes in literals are escapes, whatever the server's
      // default sql_mode says (sql.ts quotes that way).
      // (mysql2 hands the event the callback-style connection, whatever its typings say.)
      this.#pool.on('connection', (conn) => {
        const c = conn as unknown as { query(sql: string, cb: (err: unknown) => void): void; destroy(): void };
        // A connection whose SET failed has neither the deadline nor the quoting it assumes: it is
        // destroyed, and whatever was queued behind the SET fails rather than runs without them.
        c.query(
          `SET SESSION max_statement_time = ${seconds}, lock_wait_timeout = ${seconds}, sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')`,
          (err) => {
            if (err) c.destroy();
          },
        );
      });
    }
    return this.#pool;
  }

  /** Runs `fn` on one pooled connection. */
  async on<T>(fn: (send: Send) => Promise<T>): Promise<T> {
    let c: mysql.PoolConnection;
    try {
      c = await this.#poolOf.getConnection();
    } catch (e) {
      this.stats.requests++;
      throw tagDeadline(e, 'connect');
    }
    let broken = false;
    const send: Send = async (statements, values) => {
      this.stats.requests++;
      const [results] = await c.query({ sql: statements.join(';\n'), timeout: this.#opts.deadlines.requestMs }, values);
      // One statement answers with its rows (or an OK packet); several with one entry each.
      const all = statements.length === 1 ? [results] : (results as unknown[]);
      return all.map((r) => (Array.isArray(r) ? (r as Row[]) : []));
    };
    try {
      return await fn(send);
    } catch (e) {
      // A connection whose server stopped answering is closed, never reused.
      if (isReadTimeout(e)) broken = true;
      throw tagDeadline(e, 'request');
    } finally {
      if (broken) c.destroy();
      else c.release();
    }
  }

  /** Sends statements as one message on a connection of the pool. */
  send(statements: string[], values?: unknown[]): Promise<Row[][]> {
    return this.on((send) => send(statements, values));
  }

  /**
   * Logs in as `user` on a connection of its own, within the connect deadline, and runs one
   * statement: whether the server accepts a credential just issued.
   */
  async probe(user: string, password: string): Promise<void> {
    this.stats.requests++;
    const u = new URL(this.#opts.url);
    let c: mysql.Connection | undefined;
    try {
      c = await mysql.createConnection({ host: u.hostname, port: Number(u.port || 3306), user, password, connectTimeout: this.#opts.deadlines.connectMs });
      c.on('error', () => undefined);
      await c.query({ sql: 'SELECT 1', timeout: this.#opts.deadlines.requestMs });
    } catch (e) {
      throw tagDeadline(e, 'connect');
    } finally {
      await c?.end().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    const p = this.#pool;
    this.#pool = undefined;
    await p?.end();
  }
}
