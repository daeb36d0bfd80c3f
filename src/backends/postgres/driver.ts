// The postgres driver: roles, memberships and GRANTs on one PostgreSQL server. Wiring only: each
// resource kind has its own file, dispatched by a table that must name every kind.
//
// Ownership: a role is datagrant's only if its `COMMENT ON ROLE` is JSON carrying
// `"datagrant":"managed"` (and this installation's scope and id); read reports nothing else,
// execute refuses to adopt or drop anything else (ownership.ts).
//
//  connection.ts  pools, deadlines, statements     errors.ts     pg errors → BackendError
//  read.ts        what is owned, from the catalog  catalog.ts    catalog rows → resources (pure)
//  ownership.ts   the marker, checked per change   verify.ts     what a change left undone (pure)
//  access.ts      effective access, in bulk        effective.ts  catalog rows → access (pure)
//  roles.ts, memberships.ts, connect.ts, grants.ts, passwords.ts, sessions.ts: one resource kind each
import type { Backend, BackendStats, ExecuteResult, IssuedBackendSession, ReadOptions, SessionIssueRequest } from '../backend.js';
import { DEFAULT_DEADLINES, type Deadlines } from '../deadline.js';
import type { ActualState, Change } from '../../core/types.js';
import type { AccessQuery, AccessReading } from '../../model/access.js';
import { pgChange, type PgChangeOf, type PgKind } from '../../model/postgres.js';
import { readAccess } from './access.js';
import { executeConnect } from './connect.js';
import { Connections } from './connection.js';
import type { PgContext, PgHandlers } from './context.js';
import { executeGrant } from './grants.js';
import { executeMembership } from './memberships.js';
import { Ownership } from './ownership.js';
import { executePassword } from './passwords.js';
import { readCatalog } from './read.js';
import { executeRole } from './roles.js';
import { executeSessionLogin, issueSession } from './sessions.js';

export interface PostgresBackendOptions {
  name: string;
  /** Connection URL of a role with CREATEROLE and grant rights (or a superuser). */
  url: string;
  /**
   * Ownership scope written into the marker; read and execute see only roles of the same scope.
   * Unset in production (one datagrant per server); tests sharing a server each use their own.
   */
  scope?: string;
  /** Connections per database pool (default: 8 to the URL's database, 4 to each dataset database). */
  poolSize?: number;
  /** This state's installation id, written into the marker; roles of another installation are never touched. */
  installation?: string;
  /** Connect and per-statement deadlines (default: 10 s and 60 s). */
  deadlines?: Deadlines;
}

/** The handler of every resource kind. */
export const pgHandlers = {
  role: executeRole,
  membership: executeMembership,
  connect: executeConnect,
  grant: executeGrant,
  password: executePassword,
  'session-login': executeSessionLogin,
} satisfies PgHandlers;

/** `handlers[change.kind]` is the handler of exactly that kind: no cast between them. */
function dispatch<K extends PgKind>(handlers: PgHandlers, ctx: PgContext, change: PgChangeOf<K>): Promise<ExecuteResult> {
  return handlers[change.kind](ctx, change);
}

export class PostgresBackend implements Backend {
  readonly type = 'postgres';
  readonly name: string;
  readonly #ctx: PgContext;

  constructor(opts: PostgresBackendOptions) {
    this.name = opts.name;
    const conn = new Connections({
      name: opts.name,
      url: opts.url,
      deadlines: opts.deadlines ?? DEFAULT_DEADLINES,
      ...(opts.poolSize !== undefined ? { poolSize: opts.poolSize } : {}),
    });
    const owner = new Ownership(
      {
        name: opts.name,
        ...(opts.scope !== undefined ? { scope: opts.scope } : {}),
        ...(opts.installation !== undefined ? { installation: opts.installation } : {}),
      },
      conn,
    );
    this.#ctx = { name: opts.name, conn, owner };
  }

  async read(opts: ReadOptions): Promise<ActualState> {
    try {
      return await readCatalog(this.#ctx, opts);
    } catch (e) {
      throw this.#ctx.conn.error(e);
    }
  }

  async execute(change: Change): Promise<ExecuteResult> {
    try {
      return await dispatch(pgHandlers, this.#ctx, pgChange(change));
    } catch (e) {
      throw this.#ctx.conn.error(e, change.address);
    }
  }

  /** A login role for one session of a temporary principal: see sessions.ts. */
  async issueSession(req: SessionIssueRequest): Promise<IssuedBackendSession> {
    try {
      return await issueSession(this.#ctx, req);
    } catch (e) {
      throw this.#ctx.conn.error(e, `${this.name}:session/${req.principal}`);
    }
  }

  /** Who can reach the query's datasets, datagrant's roles or not: see access.ts and effective.ts. */
  async readAccess(query: AccessQuery): Promise<AccessReading> {
    try {
      return await readAccess(this.#ctx, query);
    } catch (e) {
      throw this.#ctx.conn.error(e);
    }
  }

  stats(): BackendStats {
    return { ...this.#ctx.conn.stats };
  }

  close(): Promise<void> {
    return this.#ctx.conn.close();
  }
}

export function createPostgresBackend(opts: PostgresBackendOptions): Backend {
  return new PostgresBackend(opts);
}
