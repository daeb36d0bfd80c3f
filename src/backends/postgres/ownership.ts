// Ownership at execution: a role is datagrant's only while its `COMMENT ON ROLE` carries this
// installation's marker (catalog.ts parses it). Every change reads the roles it touches, and
// refuses one that is not marked, before it sends anything that would change them; only a role
// the plan creates is sent CREATE ROLE first, which fails, touching nothing, if the role exists.
import { BackendError } from '../../core/errors.js';
import { MARKER, otherInstallation, parseComment, parseOwnComment, type RoleComment } from './catalog.js';
import type { Connections, Query } from './connection.js';
import { ident, literal } from './sql.js';

/** Role attributes datagrant never sets: the catalog column, the option, and the option that resets it. */
export const ROLE_FLAGS: [column: string, flag: string, reset: string][] = [
  ['rolsuper', 'SUPERUSER', 'NOSUPERUSER'],
  ['rolcreatedb', 'CREATEDB', 'NOCREATEDB'],
  ['rolcreaterole', 'CREATEROLE', 'NOCREATEROLE'],
  ['rolreplication', 'REPLICATION', 'NOREPLICATION'],
  ['rolbypassrls', 'BYPASSRLS', 'NOBYPASSRLS'],
];

/**
 * What a change needs to know of a role: its oid, login, flags and comment (joined rather than
 * read through shobj_description(), which the server plans anew on every call).
 */
export const ROLE_COLUMNS = `r.rolname, r.oid::int8::text AS oid, r.rolcanlogin, ${ROLE_FLAGS.map(([c]) => `r.${c}`).join(', ')}, r.rolinherit, d.description AS comment`;
export const ROLES_FROM = `FROM pg_roles r LEFT JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass`;

/** The roles named in $1 (an array): planned once per connection, since every change reads them. */
const ROLES_READ = { name: 'datagrant_roles', text: `SELECT ${ROLE_COLUMNS} ${ROLES_FROM} WHERE r.rolname = ANY($1::text[])` };

/** The flags a pg_roles row (with the ROLE_FLAGS columns and rolinherit) has set. */
export function flagsOf(row: Record<string, unknown>): string[] {
  const flags = ROLE_FLAGS.filter(([c]) => row[c] === true).map(([, f]) => f);
  if (row.rolinherit === false) flags.push('NOINHERIT');
  return flags;
}

/** A role as it is now. */
export interface LiveRole {
  oid: string;
  /** The marker, when the role is this installation's; undefined: not ours. */
  comment: RoleComment | undefined;
  login: boolean;
  flags: string[];
}

export interface OwnershipOptions {
  /** The backend's name, for errors. */
  name: string;
  scope?: string;
  installation?: string;
}

type Waiter = { resolve: (roles: Map<string, LiveRole>) => void; reject: (e: unknown) => void };

export class Ownership {
  readonly #opts: OwnershipOptions;
  readonly #conn: Pick<Connections, 'admin'>;
  /** Roles asked for since the read in flight was sent, and who asked. */
  #next: { roles: Set<string>; waiters: Waiter[] } | undefined;
  #reading = false;

  constructor(opts: OwnershipOptions, conn: Pick<Connections, 'admin'>) {
    this.#opts = opts;
    this.#conn = conn;
  }

  /** The marker this driver writes. */
  marker(): RoleComment {
    return {
      datagrant: MARKER,
      ...(this.#opts.scope ? { scope: this.#opts.scope } : {}),
      ...(this.#opts.installation ? { installation: this.#opts.installation } : {}),
    };
  }

  get installation(): string | undefined {
    return this.#opts.installation;
  }

  /** Whether a comment carries this installation's marker. */
  parse(comment: string | null): RoleComment | undefined {
    return parseComment(comment, this.#opts.scope, this.#opts.installation);
  }

  /** Whether a comment carries this installation's marker with its id (parseOwnComment): effective access's test. */
  parseOwn(comment: string | null): RoleComment | undefined {
    return parseOwnComment(comment, this.#opts.scope, this.#opts.installation);
  }

  /** The other installation a role of this scope belongs to, if it belongs to another one. */
  otherInstallation(comment: string | null): string | undefined {
    return otherInstallation(comment, this.#opts.scope, this.#opts.installation);
  }

  /** A role as it is now, from a row of a query that selects `ROLE_COLUMNS`. */
  live(row: Record<string, unknown>): LiveRole {
    return {
      oid: String(row.oid),
      comment: this.parse(row.comment as string | null),
      login: row.rolcanlogin === true,
      flags: flagsOf(row),
    };
  }

  async liveRoles(q: Query, roles: string[]): Promise<Map<string, LiveRole>> {
    const r = await q(ROLES_READ, [roles]);
    return new Map((r.rows as Record<string, unknown>[]).map((row) => [String(row.rolname), this.live(row)]));
  }

  async liveRole(q: Query, role: string): Promise<LiveRole | undefined> {
    return (await this.liveRoles(q, [role])).get(role);
  }

  /**
   * The roles as they are now, for a change that holds no connection yet: as `liveRoles`, read
   * by a query sent after the call (never an earlier answer), but shared. Calls made while a read
   * is on its way are answered together by the next one, so that changes running at once cost
   * one query between them, not one each.
   */
  roles(roles: string[]): Promise<Map<string, LiveRole>> {
    return new Promise((resolve, reject) => {
      this.#next ??= { roles: new Set(), waiters: [] };
      for (const r of roles) this.#next.roles.add(r);
      this.#next.waiters.push({ resolve, reject });
      if (!this.#reading) void this.#read();
    });
  }

  async #read(): Promise<void> {
    this.#reading = true;
    try {
      while (this.#next) {
        const batch = this.#next;
        this.#next = undefined;
        try {
          const live = await this.#conn.admin((q) => this.liveRoles(q, [...batch.roles]), false);
          for (const w of batch.waiters) w.resolve(live);
        } catch (e) {
          for (const w of batch.waiters) w.reject(e);
        }
      }
    } finally {
      this.#reading = false;
    }
  }

  notOurs(role: string, address: string): BackendError {
    const { name } = this.#opts;
    return new BackendError(
      `${name}: role ${role} exists but is not managed by datagrant (its COMMENT carries no datagrant marker); datagrant does not adopt or change it — rename the principal or group, or drop the role by hand`,
      name,
      'not-owned',
      false,
      address,
    );
  }

  missing(what: 'role' | 'database', object: string, address: string): BackendError {
    const { name } = this.#opts;
    return new BackendError(`${name}: ${what} ${object} does not exist`, name, `missing-${what}`, false, address);
  }
}

export const commentSql = (role: string, c: RoleComment) => `COMMENT ON ROLE ${ident(role)} IS ${literal(JSON.stringify(c))}`;

/** Ends the role's open sessions, which keep their privileges after NOLOGIN or a REVOKE. */
export const terminateSql = `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid = $1::oid AND pid <> pg_backend_pid()`;

/**
 * DROP OWNED and REASSIGN OWNED need the privileges of the role they name. A datagrant that is no
 * superuser (CREATEROLE, as `datagrant pg-setup` makes it) lacks them: on 15 it is no member of the
 * roles it creates, on 16 and later it holds only ADMIN OPTION on them, without INHERIT. Either way
 * it may grant itself the role, so it does, just before; the membership goes with the role it drops.
 */
export async function takePrivilegesOf(q: Query, role: string): Promise<void> {
  const r = await q(`SELECT pg_has_role(current_user, $1, 'USAGE') AS has`, [role]);
  if (!(r.rows[0] as { has: boolean }).has) await q(`GRANT ${ident(role)} TO CURRENT_USER`);
}
