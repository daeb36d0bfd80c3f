// Ownership at execution: an account or role is datagrant's only while its row of
// mysql.global_priv carries this installation's marker (catalog.ts parses it). Every change reads
// the objects it touches and refuses one that is not marked before it sends anything that changes
// them; an object the plan creates is sent CREATE first, which fails, touching nothing, if it exists.
//
// MariaDB commits CREATE USER (or ROLE) by itself, before the marker can be written. An object
// left unmarked by a run that died in between is still recognised: an account by the password
// hash it was created with (sql.ts creationHash: this scope's, installation's and name's), a role
// by being empty and granted to nobody but the account datagrant connects as, which MariaDB makes
// its creator. Such an object is marked on the next change, never left orphaned.
import { BackendError } from '../../core/errors.js';
import { ourMarker, otherInstallation, globalPrivileges, type Marker, type MarkerValue } from './catalog.js';
import type { Row, Send } from './connection.js';
import { creationHash, literal } from './sql.js';

/** An account or role as it is now. */
export interface LiveObject {
  user: string;
  host: string;
  isRole: boolean;
  /** The marker, when the object is this installation's; undefined: not ours. */
  marker: Marker | undefined;
  /** Another installation's id, when the object is one's. */
  foreign: string | undefined;
  authenticationString: string | null;
  locked: boolean;
  defaultRole: string | null;
  global: string[];
}

export interface OwnershipOptions {
  /** The backend's name, for errors. */
  name: string;
  scope?: string;
  installation?: string;
}

const truthy = (v: unknown) => v === 1 || v === '1' || v === 'true' || v === true;

/** The columns every read of an object takes from mysql.global_priv. */
export const OBJECT_COLUMNS = `User AS user, Host AS host, JSON_QUERY(Priv, '$.datagrant') AS marker, JSON_VALUE(Priv, '$.is_role') AS is_role,
  JSON_VALUE(Priv, '$.authentication_string') AS auth, JSON_VALUE(Priv, '$.account_locked') AS locked,
  JSON_VALUE(Priv, '$.default_role') AS default_role, JSON_VALUE(Priv, '$.access') AS access`;

export class Ownership {
  readonly #opts: OwnershipOptions;
  #me: { user: string; host: string } | undefined;
  #canEnd: boolean | undefined;

  constructor(opts: OwnershipOptions) {
    this.#opts = opts;
  }

  get scope(): string | undefined {
    return this.#opts.scope;
  }

  get installation(): string | undefined {
    return this.#opts.installation;
  }

  /** The marker this driver writes (credential fields are added by the password handler). */
  marker(extra: Marker = {}): Marker {
    return {
      ...(this.#opts.scope ? { scope: this.#opts.scope } : {}),
      ...(this.#opts.installation ? { installation: this.#opts.installation } : {}),
      ...extra,
    };
  }

  /** A row selected with OBJECT_COLUMNS, as a live object. */
  live(row: Row): LiveObject {
    const json = row.marker as MarkerValue;
    return {
      user: String(row.user),
      host: String(row.host),
      isRole: truthy(row.is_role),
      marker: ourMarker(json, this.#opts.scope, this.#opts.installation),
      foreign: otherInstallation(json, this.#opts.scope, this.#opts.installation),
      authenticationString: (row.auth as string | null) ?? null,
      locked: truthy(row.locked),
      defaultRole: (row.default_role as string | null) || null,
      global: globalPrivileges(row.access as string | null),
    };
  }

  /** Every account and role of these names (any host), as they are now. */
  async objects(send: Send, names: string[]): Promise<LiveObject[]> {
    if (names.length === 0) return [];
    const [rows] = await send([`SELECT ${OBJECT_COLUMNS} FROM mysql.global_priv WHERE User IN (${names.map(literal).join(', ')})`]);
    return rows!.map((r) => this.live(r));
  }

  /** The role `name`, if it exists. */
  async role(send: Send, name: string): Promise<LiveObject | undefined> {
    return (await this.objects(send, [name])).find((o) => o.isRole);
  }

  /** The account `'name'@'host'`, and any other account of that name (another host). */
  async account(send: Send, name: string, host: string): Promise<{ live: LiveObject | undefined; others: LiveObject[] }> {
    const all = (await this.objects(send, [name])).filter((o) => !o.isRole);
    return { live: all.find((o) => o.host === host), others: all.filter((o) => o.host !== host) };
  }

  /** An account of this name created by this installation whose marker a dead run never wrote. */
  unmarkedOfOurs(o: LiveObject): boolean {
    return (
      !o.isRole &&
      o.marker === undefined &&
      o.foreign === undefined &&
      o.authenticationString === creationHash(this.#opts.scope, this.#opts.installation, o.user)
    );
  }

  /** The account this driver connects as (`CURRENT_USER()`), read once. */
  async me(send: Send): Promise<{ user: string; host: string }> {
    if (!this.#me) {
      const [rows] = await send(['SELECT CURRENT_USER() AS me']);
      const me = String(rows![0]!.me);
      const at = me.lastIndexOf('@');
      this.#me = { user: me.slice(0, at), host: me.slice(at + 1) };
    }
    return this.#me;
  }

  /**
   * Whether an unmarked role is one a dead run of datagrant created: nothing granted to it or from
   * it but its creator's ADMIN OPTION, held by the account this driver connects as.
   */
  async emptyRoleOfMine(send: Send, role: LiveObject): Promise<boolean> {
    if (!role.isRole || role.marker !== undefined || role.foreign !== undefined || role.global.length > 0) return false;
    const me = await this.me(send);
    const r = literal(role.user);
    const [rows] = await send([
      `SELECT (SELECT COUNT(*) FROM mysql.roles_mapping WHERE Role = ${r} AND NOT (User = ${literal(me.user)} AND Host = ${literal(me.host)} AND Admin_option = 'Y'))
            + (SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = ${r} AND Host = '')
            + (SELECT COUNT(*) FROM mysql.db WHERE User = ${r} AND Host = '')
            + (SELECT COUNT(*) FROM mysql.tables_priv WHERE User = ${r} AND Host = '')
            + (SELECT COUNT(*) FROM mysql.columns_priv WHERE User = ${r} AND Host = '')
            + (SELECT COUNT(*) FROM mysql.procs_priv WHERE User = ${r} AND Host = '') AS others,
              (SELECT COUNT(*) FROM mysql.roles_mapping WHERE Role = ${r} AND User = ${literal(me.user)} AND Host = ${literal(me.host)} AND Admin_option = 'Y') AS mine`,
    ]);
    const row = rows![0]!;
    return Number(row.others) === 0 && Number(row.mine) === 1;
  }

  /**
   * Whether this driver's account may see and end other accounts' sessions (PROCESS, and
   * CONNECTION ADMIN or SUPER). Asked before access is taken away: without them the sessions of
   * an account that lost access would silently keep it.
   */
  async assertCanEndSessions(send: Send, address: string): Promise<void> {
    if (this.#canEnd) return;
    const [rows] = await send([
      `SELECT PRIVILEGE_TYPE AS p FROM information_schema.USER_PRIVILEGES
        WHERE GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')`,
    ]);
    const held = new Set(rows!.map((r) => String(r.p)));
    this.#canEnd = held.has('PROCESS') && (held.has('CONNECTION ADMIN') || held.has('SUPER'));
    if (!this.#canEnd) {
      const { name } = this.#opts;
      throw new BackendError(
        `${name}: ${address}: the account datagrant connects as cannot end other accounts' sessions, which keep the privileges they had after a revocation; grant it PROCESS and CONNECTION ADMIN (GRANT PROCESS, CONNECTION ADMIN ON *.* TO …), then apply again. Nothing was changed`,
        name,
        'cannot-end-sessions',
        false,
        address,
      );
    }
  }

  notOurs(what: 'account' | 'role', object: string, address: string): BackendError {
    const { name } = this.#opts;
    return new BackendError(
      `${name}: ${what} ${object} exists but is not managed by datagrant (mysql.global_priv holds no datagrant marker for it); datagrant does not adopt or change it — rename the principal or group, or drop the ${what} by hand`,
      name,
      'not-owned',
      false,
      address,
    );
  }

  foreignObject(what: 'account' | 'role', object: string, installation: string, address: string): BackendError {
    const { name } = this.#opts;
    return new BackendError(
      `${name}: ${what} ${object} belongs to another datagrant installation (${installation}); it is never changed from here`,
      name,
      'not-owned',
      false,
      address,
    );
  }

  missing(what: string, object: string, address: string): BackendError {
    const { name } = this.#opts;
    return new BackendError(`${name}: ${what} ${object} does not exist`, name, `missing-${what}`, false, address);
  }
}

/** Writes the marker into the object's row: `host` is '' for a role. */
export const markerSql = (user: string, host: string, m: Marker) =>
  `UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.datagrant', JSON_QUERY(${literal(JSON.stringify(m))}, '$')) WHERE User = ${literal(user)} AND Host = ${literal(host)}`;
