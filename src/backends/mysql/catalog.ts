// What the grant tables hold → the resources the compiler emits. Pure, so the mapping is testable
// without a server: after an apply of the compiled state this yields exactly the compiled
// resources, and anything granted by hand to an owned role or account yields a difference.
//
// The ownership marker is a JSON object under the key `datagrant` in the account's (or role's)
// row of mysql.global_priv, beside MariaDB's own keys (MariaDB ≥ 10.4 keeps keys it does not know
// through ALTER USER, GRANT and FLUSH PRIVILEGES; a driver test holds it to that). DROP USER takes
// it with the account, so a marker never outlives what it marks.
import type { KnownCredential } from '../backend.js';
import type { Level, Resource } from '../../core/types.js';
import { mysqlLevelOf } from '../../model/mysql-levels.js';
import {
  mysqlAccountResource,
  mysqlAddress,
  mysqlGrantResource,
  mysqlMembershipResource,
  mysqlPasswordResource,
  mysqlPatternGrantResource,
  mysqlRoleResource,
  type MysqlTableScope,
} from '../../model/mysql.js';
import { exactDatabase } from './sql.js';

/** What datagrant keeps in the marker: whose the object is, and the current password's id. */
export interface Marker {
  /** Set when several installations (or test runs) share one server: each sees only its own. */
  scope?: string;
  installation?: string;
  credential?: string;
  createdAt?: string;
  /** Fingerprint of the password hash datagrant set, to notice one set by hand. */
  verifier?: string;
}

/** The marker as the server returns it: JSON text, or (mysql2 decodes JSON-typed columns) an object. */
export type MarkerValue = string | object | null | undefined;

function parseMarker(value: MarkerValue): Marker | undefined {
  if (!value) return undefined;
  let v: unknown = value;
  if (typeof value === 'string') {
    try {
      v = JSON.parse(value) as unknown;
    } catch {
      return undefined;
    }
  }
  return v && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
}

/** The marker, if it is this scope's and carries no other installation's id; undefined: not ours. */
export function ourMarker(json: MarkerValue, scope?: string, installation?: string): Marker | undefined {
  const m = parseMarker(json);
  if (!m || (m.scope ?? undefined) !== (scope ?? undefined)) return undefined;
  return installation !== undefined && m.installation !== undefined && m.installation !== installation ? undefined : m;
}

/** The other installation an object of this scope belongs to, if another one's. */
export function otherInstallation(json: MarkerValue, scope?: string, installation?: string): string | undefined {
  const m = parseMarker(json);
  if (!m || (m.scope ?? undefined) !== (scope ?? undefined) || installation === undefined) return undefined;
  return m.installation !== undefined && m.installation !== installation ? m.installation : undefined;
}

/** mysql.global_priv's `access` bits (MariaDB 10.11), in order: the global privileges. */
const GLOBAL_BITS = [
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'CREATE',
  'DROP',
  'RELOAD',
  'SHUTDOWN',
  'PROCESS',
  'FILE',
  'GRANT OPTION',
  'REFERENCES',
  'INDEX',
  'ALTER',
  'SHOW DATABASES',
  'SUPER',
  'CREATE TEMPORARY TABLES',
  'LOCK TABLES',
  'EXECUTE',
  'REPLICATION SLAVE',
  'BINLOG MONITOR',
  'CREATE VIEW',
  'SHOW VIEW',
  'CREATE ROUTINE',
  'ALTER ROUTINE',
  'CREATE USER',
  'EVENT',
  'TRIGGER',
  'CREATE TABLESPACE',
  'DELETE HISTORY',
  'SET USER',
  'FEDERATED ADMIN',
  'CONNECTION ADMIN',
  'READ_ONLY ADMIN',
  'REPLICATION SLAVE ADMIN',
  'REPLICATION MASTER ADMIN',
  'BINLOG ADMIN',
  'BINLOG REPLAY',
  'SLAVE MONITOR',
];

/** The global privileges an `access` value holds (a bit this table does not name is shown by number). */
export function globalPrivileges(access: string | number | null | undefined): string[] {
  let bits = BigInt(access ?? 0);
  const out: string[] = [];
  for (let i = 0; bits > 0n; i++, bits >>= 1n) if (bits & 1n) out.push(GLOBAL_BITS[i] ?? `privilege bit ${i}`);
  return out;
}

/** A SET column of tables_priv / columns_priv (`Select,Insert`) as privileges GRANT names. */
export const privilegeSetOf = (v: unknown): string[] => (typeof v === 'string' && v !== '' ? v.split(',').map(tablePrivilegeName) : []);

/** A mysql.db row as its account, database pattern and the privileges its `*_priv = 'Y'` columns give. */
export function databaseGrantOf(r: Record<string, unknown>): { user: string; host: string; db: string; privileges: string[] } {
  return {
    user: String(r.User),
    host: String(r.Host),
    db: String(r.Db),
    privileges: Object.keys(r)
      .filter((c) => c.endsWith('_priv') && r[c] === 'Y')
      .map(databasePrivilegeName),
  };
}

/** mysql.db's columns (`Select_priv`, …) → privileges as GRANT names them. */
export function databasePrivilegeName(column: string): string {
  const special: Record<string, string> = {
    Grant_priv: 'GRANT OPTION',
    Create_tmp_table_priv: 'CREATE TEMPORARY TABLES',
    Lock_tables_priv: 'LOCK TABLES',
    Show_view_priv: 'SHOW VIEW',
    Create_view_priv: 'CREATE VIEW',
  };
  return (
    special[column] ??
    column
      .replace(/_priv$/, '')
      .replace(/_/g, ' ')
      .toUpperCase()
  );
}

/** mysql.tables_priv's and columns_priv's set values (`Show view`, …) → privileges as GRANT names them. */
export function tablePrivilegeName(value: string): string {
  const special: Record<string, string> = { Grant: 'GRANT OPTION', 'Delete versioning rows': 'DELETE HISTORY' };
  return special[value] ?? value.toUpperCase();
}

/** An account or role with a datagrant marker, as read from mysql.global_priv. */
export interface PrincipalRow {
  user: string;
  /** '' for a role. */
  host: string;
  isRole: boolean;
  marker: Marker;
  locked: boolean;
  defaultRole: string | null;
  /** Global privileges, as GRANT names them. */
  global: string[];
  /** Fingerprint of the stored password hash, when it has one. */
  hashFingerprint: string | null;
}

/** A role granted to an account (host set) or to a role (host ''). */
export interface MappingRow {
  user: string;
  host: string;
  role: string;
}

/** Privileges on a database pattern (mysql.db), on a table (tables_priv), or on a table's columns. */
export interface PrivilegeRow {
  user: string;
  host: string;
  /** mysql.db: the pattern as stored; tables_priv, columns_priv: the database's name. */
  db: string;
  table?: string;
  column?: string;
  privileges: string[];
}

export interface CatalogFacts {
  backend: string;
  /** This installation's accounts and roles only. */
  principals: PrincipalRow[];
  mappings: MappingRow[];
  databaseRows: PrivilegeRow[];
  tableRows: PrivilegeRow[];
  columnRows: PrivilegeRow[];
  credentials: KnownCredential[];
}

const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();
const key = (...parts: string[]) => JSON.stringify(parts);
const ident = (s: string) => `\`${s.replace(/`/g, '``')}\``;

export function resourcesFromCatalog(f: CatalogFacts): Resource[] {
  const b = f.backend;
  const out: Resource[] = [];
  const roles = new Set(f.principals.filter((p) => p.isRole).map((p) => p.user));
  const accounts = new Set(f.principals.filter((p) => !p.isRole).map((p) => key(p.user, p.host)));
  const known = new Map(f.credentials.filter((k) => k.state === 'current').map((k) => [k.address, k]));

  // What an owned account holds by itself (datagrant gives it nothing but its role), in words.
  const direct = new Map<string, string[]>();
  const hold = (user: string, host: string, what: string) => {
    const k = key(user, host);
    if (!accounts.has(k)) return;
    direct.set(k, [...(direct.get(k) ?? []), what]);
  };
  for (const r of f.databaseRows) for (const p of r.privileges) hold(r.user, r.host, `${p} ON ${ident(r.db)}.*`);
  for (const r of f.tableRows) for (const p of r.privileges) hold(r.user, r.host, `${p} ON ${ident(r.db)}.${ident(r.table!)}`);
  for (const r of f.columnRows) for (const p of r.privileges) hold(r.user, r.host, `${p} (${r.column}) ON ${ident(r.db)}.${ident(r.table!)}`);

  for (const p of f.principals) {
    if (p.isRole) {
      out.push(mysqlRoleResource(b, p.user, { privileges: sorted(p.global) }));
      continue;
    }
    const privileges = sorted([...p.global.map((g) => `${g} ON *.*`), ...(direct.get(key(p.user, p.host)) ?? [])]);
    const granted = sorted(f.mappings.filter((m) => m.user === p.user && m.host === p.host).map((m) => m.role));
    out.push(mysqlAccountResource(b, p.user, { host: p.host, locked: p.locked, roles: granted, defaultRole: p.defaultRole, privileges }));
    // The password counts only if the store holds it and nobody set another one by hand;
    // otherwise it is absent and the plan issues a new one.
    const k = known.get(mysqlAddress.password(b, p.user));
    const m = p.marker;
    if (m.credential && k && k.credentialId === m.credential && m.verifier !== undefined && p.hashFingerprint === m.verifier) {
      out.push({ ...mysqlPasswordResource(b, p.user, p.host, []), meta: { credentialId: m.credential, createdAt: m.createdAt ?? k.createdAt } });
    }
  }

  // Roles granted to roles, where either is ours: datagrant's memberships, or drift on them.
  for (const m of f.mappings) {
    if (m.host !== '' || !(roles.has(m.role) || roles.has(m.user))) continue;
    out.push(mysqlMembershipResource(b, m.role, m.user));
  }

  // Grants: every privilege of an owned role is attributed to the level whose increment holds it.
  type Tier = { role: string; database: string; level: Level; database_: Set<string>; tables: Map<string, Set<string>>; columns: Set<string> };
  const tiers = new Map<string, Tier>();
  const tier = (role: string, database: string, level: Level): Tier => {
    const k = key(role, database, level);
    let t = tiers.get(k);
    if (!t) tiers.set(k, (t = { role, database, level, database_: new Set(), tables: new Map(), columns: new Set() }));
    return t;
  };
  const patterns = new Map<string, { role: string; pattern: string; privileges: string[] }>();
  for (const r of f.databaseRows) {
    if (r.host !== '' || !roles.has(r.user)) continue;
    const database = exactDatabase(r.db);
    if (database === undefined) {
      const k = key(r.user, r.db);
      const e = patterns.get(k) ?? { role: r.user, pattern: r.db, privileges: [] };
      e.privileges.push(...r.privileges);
      patterns.set(k, e);
      continue;
    }
    for (const p of r.privileges) tier(r.user, database, mysqlLevelOf(p)).database_.add(p);
  }
  for (const r of f.tableRows) {
    if (r.host !== '' || !roles.has(r.user)) continue;
    for (const p of r.privileges) {
      const t = tier(r.user, r.db, mysqlLevelOf(p));
      const held = t.tables.get(r.table!) ?? new Set<string>();
      held.add(p);
      t.tables.set(r.table!, held);
    }
  }
  for (const r of f.columnRows) {
    if (r.host !== '' || !roles.has(r.user)) continue;
    for (const p of r.privileges) tier(r.user, r.db, mysqlLevelOf(p)).columns.add(p);
  }
  for (const t of tiers.values()) {
    const tables = sorted(t.tables.keys());
    const scope: MysqlTableScope = tables.length ? tables : '*';
    const onTables = sorted([...t.tables.values()].flatMap((s) => [...s]));
    const tablePrivileges = onTables.map((p) => (tables.every((tb) => t.tables.get(tb)!.has(p)) ? p : `${p} (partial)`));
    out.push(
      mysqlGrantResource(b, {
        role: t.role,
        database: t.database,
        level: t.level,
        tables: scope,
        privileges: { database: sorted(t.database_), tables: sorted([...tablePrivileges, ...[...t.columns].map((p) => `${p} (columns)`)]) },
      }),
    );
  }
  for (const p of patterns.values()) out.push(mysqlPatternGrantResource(b, p.role, p.pattern, p.privileges));

  return out.sort((x, y) => (x.address < y.address ? -1 : x.address > y.address ? 1 : 0));
}
