// The mysql driver: accounts, roles and GRANTs on one MariaDB server (10.4 or later: the
// ownership marker lives in mysql.global_priv). Wiring only: each resource kind has its own file,
// dispatched by a table that must name every kind.
//
//  connection.ts  the pool, deadlines, messages     errors.ts     mysql2 errors → BackendError
//  read.ts        what is owned, in one message      catalog.ts    grant-table rows → resources (pure)
//  access.ts      effective access, in one message   effective.ts  grant-table rows → who reaches what (pure)
//  ownership.ts   the marker, checked per change     disconnect.ts ending the sessions of revoked accounts
//  roles.ts, accounts.ts, memberships.ts, grants.ts, pattern-grants.ts, passwords.ts: one resource kind each
import type { Backend, BackendStats, ExecuteResult, ReadOptions } from '../backend.js';
import type { AccessQuery, AccessReading } from '../../model/access.js';
import { DEFAULT_DEADLINES, type Deadlines } from '../deadline.js';
import { BackendError } from '../../core/errors.js';
import type { ActualState, Change } from '../../core/types.js';
import { mysqlChange, type MysqlChangeOf, type MysqlKind } from '../../model/mysql.js';
import { readAccess } from './access.js';
import { executeAccount } from './accounts.js';
import { Connections } from './connection.js';
import type { MysqlContext, MysqlHandlers } from './context.js';
import { errorCode } from './errors.js';
import { executeGrant } from './grants.js';
import { executeMembership } from './memberships.js';
import { Ownership } from './ownership.js';
import { executePassword } from './passwords.js';
import { executePatternGrant } from './pattern-grants.js';
import { readGrantTables } from './read.js';
import { executeRole } from './roles.js';

export interface MysqlBackendOptions {
  name: string;
  /** Connection URL of an account that may create accounts and roles, grant what it hands out, and end sessions. */
  url: string;
  /** Ownership scope written into the marker; read and execute see only objects of the same scope. */
  scope?: string;
  /** Connections in the pool (default 8). */
  poolSize?: number;
  /** This state's installation id, written into the marker; objects of another installation are never touched. */
  installation?: string;
  /** Connect and per-statement deadlines (default: 10 s and 60 s). */
  deadlines?: Deadlines;
}

/** The handler of every resource kind. */
export const mysqlHandlers = {
  role: executeRole,
  account: executeAccount,
  membership: executeMembership,
  grant: executeGrant,
  'pattern-grant': executePatternGrant,
  password: executePassword,
} satisfies MysqlHandlers;

/** `handlers[change.kind]` is the handler of exactly that kind: no cast between them. */
function dispatch<K extends MysqlKind>(handlers: MysqlHandlers, ctx: MysqlContext, change: MysqlChangeOf<K>): Promise<ExecuteResult> {
  return handlers[change.kind](ctx, change);
}

export class MysqlBackend implements Backend {
  readonly type = 'mysql';
  readonly name: string;
  readonly #ctx: MysqlContext;

  constructor(opts: MysqlBackendOptions) {
    this.name = opts.name;
    const conn = new Connections({
      name: opts.name,
      url: opts.url,
      deadlines: opts.deadlines ?? DEFAULT_DEADLINES,
      ...(opts.poolSize !== undefined ? { poolSize: opts.poolSize } : {}),
    });
    const owner = new Ownership({
      name: opts.name,
      ...(opts.scope !== undefined ? { scope: opts.scope } : {}),
      ...(opts.installation !== undefined ? { installation: opts.installation } : {}),
    });
    this.#ctx = { name: opts.name, conn, owner };
  }

  async read(opts: ReadOptions): Promise<ActualState> {
    try {
      return await readGrantTables(this.#ctx, opts);
    } catch (e) {
      // MySQL, and MariaDB before 10.4, keep accounts in mysql.user: there is no place for the marker.
      if (errorCode(e) === 'ER_NO_SUCH_TABLE' && /global_priv/.test((e as Error).message)) {
        throw new BackendError(
          `${this.name}: the server has no mysql.global_priv table: datagrant's mysql backend needs MariaDB 10.4 or later (MySQL servers are not supported yet)`,
          this.name,
          'unsupported-server',
          false,
        );
      }
      throw this.#ctx.conn.error(e);
    }
  }

  async execute(change: Change): Promise<ExecuteResult> {
    // A password the store holds that the read did not find (the plan's "forget it" delete, whose
    // `before` the plan builds in no kind's shape): there is nothing on the server to remove.
    if (change.action === 'delete' && change.kind === 'password' && change.before?.meta?.missing === true) return {};
    try {
      return await dispatch(mysqlHandlers, this.#ctx, mysqlChange(change));
    } catch (e) {
      throw this.#ctx.conn.error(e, change.address);
    }
  }

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

export function createMysqlBackend(opts: MysqlBackendOptions): Backend {
  return new MysqlBackend(opts);
}
