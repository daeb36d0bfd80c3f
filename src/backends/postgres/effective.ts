// Effective access to PostgreSQL datasets, from catalog facts (access.ts reads them). Pure, so every
// way a role reaches a table — a GRANT, PUBLIC, membership (inherited or by SET ROLE), ownership,
// superuser, default privileges, column privileges — is testable without a server.
//
// What counts as access, per dataset and level (PG_LEVELS): read = SELECT, write = any of
// INSERT/UPDATE/DELETE, admin = any of TRUNCATE/REFERENCES/TRIGGER, or ownership. A table
// privilege counts only for a holder that also has USAGE on the schema and CONNECT on the database
// (from wherever: its own grants, a role it inherits from, PUBLIC); one that nobody can use is
// named in `limits`, not shown as access. Rows are per level actually held: a role with INSERT and
// no SELECT has a write row and no read row (datagrant's own grants always include SELECT, so its
// principals' rows are cumulative).
//
// A dataset's rows are also reached through its tables' partitions and inheritance children, in
// its schema or any other: a grant on one of those is partial access. Views elsewhere over its
// tables and SECURITY DEFINER functions that name them are ways in this report does not follow:
// `limits` names them.
//
// The marker decides who is datagrant's, and a role with CREATEROLE can write any marker on a role
// of its own: a session login's principal is therefore only a claim (`sessionOf`), for the report
// to check against the session log, and a path is datagrant's own (`managed`) only through a grant
// to one of its roles or membership in one of its roles.
import type { Level } from '../../core/types.js';
import { LEVELS, type AccessHolder, type AccessPath, type ActualAccess, type CredentialUsage } from '../../model/access.js';
import { PG_LEVELS, levelOfTablePrivilege, type TablePrivilege } from '../../model/postgres-levels.js';
import { SESSION_LOGIN_SEPARATOR, sessionSuffix } from '../../model/postgres.js';
import type { RoleComment } from './catalog.js';

/** One entry of an ACL; `grantee` null is PUBLIC. An ACL left NULL in the catalog is read as its default. */
export interface AclItem {
  grantee: string | null;
  privilege: string;
}

export interface PgRoleFact {
  name: string;
  superuser: boolean;
  /** rolinherit: before PostgreSQL 16, whether the role uses the privileges of the roles it is a member of. */
  inherit: boolean;
  login: boolean;
  createRole: boolean;
  /** VALID UNTIL (ISO); null: none. */
  validUntil: string | null;
  comment: string | null;
}

/** `member` is a member of `role`. PostgreSQL 16 keeps INHERIT and SET per grant; before, null. */
export interface PgMembershipFact {
  role: string;
  member: string;
  inheritOption: boolean | null;
  setOption: boolean | null;
}

export interface PgDatabaseFact {
  name: string;
  owner: string;
  /** datallowconn: false means nobody connects, whatever the ACL. */
  allowConnections: boolean;
  acl: AclItem[];
}

export interface PgSchemaFact {
  database: string;
  name: string;
  owner: string;
  acl: AclItem[];
}

export interface PgRelationFact {
  database: string;
  schema: string;
  name: string;
  /** pg_class.relkind: r table, p partitioned table, v view, m materialized view, f foreign table. */
  relkind: string;
  /** A partition's rows are reached through its parent: it is not a table of a whole-schema dataset by itself. */
  partition: boolean;
  /** The tables it is a partition or an inheritance child of, at any depth, nearest first. */
  ancestors?: { schema: string; name: string }[];
  rowSecurity: boolean;
  owner: string;
  acl: AclItem[];
}

export interface PgColumnFact {
  database: string;
  schema: string;
  relation: string;
  column: string;
  grantee: string | null;
  privilege: string;
}

/** ALTER DEFAULT PRIVILEGES FOR ROLE `creator` [IN SCHEMA `schema`] GRANT … ON TABLES TO `grantee`. */
export interface PgDefaultFact {
  database: string;
  /** null: every schema (no IN SCHEMA). */
  schema: string | null;
  creator: string;
  grantee: string | null;
  privilege: string;
}

/** A view (or materialized view) that reads `on`, directly or through other views. */
export interface PgViewFact {
  database: string;
  schema: string;
  name: string;
  owner: string;
  on: { schema: string; name: string };
}

/** A SECURITY DEFINER function or procedure: it runs with its owner's privileges. */
export interface PgFunctionFact {
  database: string;
  schema: string;
  name: string;
  /** Its argument types, as `pg_get_function_identity_arguments` writes them. */
  args: string;
  owner: string;
  /** Its source, searched for the datasets' table names. */
  body: string;
}

export interface PgAccessFacts {
  backend: string;
  /** server_version_num. */
  version: number;
  roles: PgRoleFact[];
  memberships: PgMembershipFact[];
  /** The datasets' databases that exist. */
  databases: PgDatabaseFact[];
  /** The datasets' schemas that exist, and what is in them. */
  schemas: PgSchemaFact[];
  relations: PgRelationFact[];
  columns: PgColumnFact[];
  defaults: PgDefaultFact[];
  views?: PgViewFact[];
  functions?: PgFunctionFact[];
}

export interface PgAccessDataset {
  name: string;
  database: string;
  schema: string;
  tables?: string[];
}

export const NO_LOGIN_RECORD = 'PostgreSQL keeps no record of logins; enable log_connections to see them in the server log';

/** Predefined roles (PostgreSQL 14+) that hold a level on every table and USAGE on every schema. */
const PREDEFINED: Record<string, Level> = { pg_read_all_data: 'read', pg_write_all_data: 'write' };
/** Its members are the database's owner (PostgreSQL 14+); it owns `public` in a new database from 15. */
const DATABASE_OWNER_ROLE = 'pg_database_owner';
const BUILT_IN = new Set([...Object.keys(PREDEFINED), DATABASE_OWNER_ROLE]);

const TABLE_PRIVILEGES: readonly TablePrivilege[] = PG_LEVELS.admin.tables;
const levelOf = (p: string): Level | undefined => (TABLE_PRIVILEGES.includes(p as TablePrivilege) ? levelOfTablePrivilege(p as TablePrivilege) : undefined);
const byPrivilegeOrder = (a: string, b: string) => TABLE_PRIVILEGES.indexOf(a as TablePrivilege) - TABLE_PRIVILEGES.indexOf(b as TablePrivilege);

/** A name as one would type it in SQL: quoted only when it has to be. */
export const sqlName = (name: string) => (/^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`);
const grantee = (g: string | null) => (g === null ? 'PUBLIC' : sqlName(g));

/** At most this many names in one path; the rest are counted. */
const LIST_MAX = 10;
const list = (names: string[]) => (names.length <= LIST_MAX ? names.join(', ') : `${names.slice(0, LIST_MAX).join(', ')} and ${names.length - LIST_MAX} more`);

/** PUBLIC, as a key of the maps below. */
const PUBLIC = '\0PUBLIC';
const keyOf = (g: string | null) => g ?? PUBLIC;

/** One way a holder reaches the dataset at a level by itself, with the tables it covers. */
interface Source {
  path: AccessPath;
  covers: 'all' | Set<string>;
  /**
   * What else it takes: most privileges need CONNECT and USAGE on the schema; the schema's owner
   * can grant itself USAGE, and dropping a database or being superuser needs neither.
   */
  needs: 'connect+usage' | 'connect' | 'nothing';
  /** Members that inherit the role's privileges hold it too (all but superuser). */
  inherited: boolean;
  /** The schema whose USAGE it needs, when not the dataset's (a partition elsewhere). */
  usage?: string;
}

interface Edge {
  role: string;
  inherit: boolean;
  set: boolean;
}

/** A role a member reaches, and the roles in between (its direct group first). */
type Reach = Map<string, string[]>;

/** Membership in one database: who is a member of what, with INHERIT and SET as the server applies them. */
class Memberships {
  readonly #up = new Map<string, Edge[]>();
  readonly #down = new Map<string, Set<string>>();
  readonly #inherited = new Map<string, Reach>();
  readonly #settable = new Map<string, Reach>();

  constructor(edges: (Edge & { member: string })[]) {
    for (const e of edges) {
      const up = this.#up.get(e.member) ?? [];
      const same = up.find((u) => u.role === e.role);
      // PostgreSQL 16 keeps one grant per grantor: the member has what any of them gives.
      if (same) {
        same.inherit ||= e.inherit;
        same.set ||= e.set;
      } else up.push({ role: e.role, inherit: e.inherit, set: e.set });
      this.#up.set(e.member, up);
      const down = this.#down.get(e.role) ?? new Set<string>();
      this.#down.set(e.role, down.add(e.member));
    }
    for (const up of this.#up.values()) up.sort((a, b) => (a.role < b.role ? -1 : a.role > b.role ? 1 : 0));
  }

  #walk(from: string, follow: (e: Edge) => boolean): Reach {
    const reach: Reach = new Map();
    const queue: string[] = [from];
    const chain = new Map<string, string[]>([[from, []]]);
    while (queue.length) {
      const at = queue.shift()!;
      for (const e of this.#up.get(at) ?? []) {
        if (!follow(e) || chain.has(e.role)) continue;
        const via = at === from ? [] : [...chain.get(at)!, at];
        chain.set(e.role, via);
        reach.set(e.role, via);
        queue.push(e.role);
      }
    }
    return reach;
  }

  /** Roles whose privileges `role` uses without SET ROLE. */
  inherited(role: string): Reach {
    let r = this.#inherited.get(role);
    if (!r) this.#inherited.set(role, (r = this.#walk(role, (e) => e.inherit)));
    return r;
  }

  /** Roles `role` may SET ROLE to. */
  settable(role: string): Reach {
    let r = this.#settable.get(role);
    if (!r) this.#settable.set(role, (r = this.#walk(role, (e) => e.set)));
    return r;
  }

  /** `roles` and every role that is a member of one of them, at any depth, by any grant. */
  membersOf(roles: Iterable<string>): Set<string> {
    const seen = new Set(roles);
    const queue = [...seen];
    for (let i = 0; i < queue.length; i++) {
      for (const m of this.#down.get(queue[i]!) ?? []) {
        if (!seen.has(m)) {
          seen.add(m);
          queue.push(m);
        }
      }
    }
    return seen;
  }

  /** Roles this role is a direct member of, and roles directly members of it. */
  groupsOf = (role: string) => (this.#up.get(role) ?? []).map((e) => e.role);
  directMembers = (role: string) => [...(this.#down.get(role) ?? [])];
}

type Marker = (comment: string | null) => RoleComment | undefined;

/** The principal a session login `<principal>~<suffix>` is named for, else the one its marker names. */
const sessionBase = (name: string, m: RoleComment) => (sessionSuffix(name) ? name.slice(0, name.lastIndexOf(SESSION_LOGIN_SEPARATOR)) : m.principal);

/** Who each role is, as the report names it: managed or not, and the principal it is for. */
function holders(facts: PgAccessFacts, marker: Marker, graph: Memberships) {
  const markers = new Map(facts.roles.map((r) => [r.name, marker(r.comment)]));
  const session = (name: string) => markers.get(name)?.kind === 'session';
  const ambiguous: string[] = [];
  const principalOf = new Map<string, string | undefined>();
  // A session login's name and marker say whose session it is, and both can be forged by a role
  // with CREATEROLE: the report checks the claim against the session log before it believes it.
  const sessionOf = new Map<string, string>();
  for (const r of facts.roles) {
    const m = markers.get(r.name);
    const base = m?.kind === 'session' ? sessionBase(r.name, m) : undefined;
    if (base !== undefined) sessionOf.set(r.name, base);
  }
  for (const r of facts.roles) {
    const m = markers.get(r.name);
    if (!m || m.kind === 'session') continue;
    if (r.login) {
      principalOf.set(r.name, r.name);
      continue;
    }
    // A NOLOGIN role of ours is a spec group or a temporary principal; the marker does not say
    // which. Datagrant makes a principal's role a member of its groups and of nothing else, and a
    // session login `<principal>~<suffix>` a member of its principal's role; a group's members are principals.
    const memberOfOurs = graph.groupsOf(r.name).some((g) => markers.get(g) && !session(g));
    const members = graph.directMembers(r.name).filter((x) => markers.get(x));
    if (memberOfOurs || members.some((x) => session(x) && sessionOf.get(x) === r.name)) principalOf.set(r.name, r.name);
    else {
      principalOf.set(r.name, undefined);
      if (members.length === 0) ambiguous.push(r.name);
    }
  }
  const cache = new Map<string, AccessHolder>();
  const holder = (key: string): AccessHolder => {
    let h = cache.get(key);
    if (h) return h;
    if (key === PUBLIC) h = { id: 'PUBLIC', kind: 'pg-public', name: 'PUBLIC', managed: false };
    else {
      const principal = principalOf.get(key);
      const of = sessionOf.get(key);
      h = {
        id: key,
        kind: 'pg-role',
        name: key,
        managed: markers.get(key) !== undefined,
        ...(principal !== undefined ? { principal } : {}),
        ...(of !== undefined ? { sessionOf: of } : {}),
      };
    }
    cache.set(key, h);
    return h;
  };
  const ours = (role: string) => markers.get(role) !== undefined;
  return { holder, markers, principalOf, ours, ambiguous: ambiguous.sort() };
}

/** Options of a reading. */
export interface EffectiveOptions {
  /**
   * Whether a comment is datagrant's marker of this scope without an installation id (an older
   * version's): such roles are not counted as datagrant's, and `limits` names them.
   */
  legacy?: (comment: string | null) => boolean;
}

/** A relation as the datasets name it, and as a key. */
const qualifiedName = (schema: string, name: string) => `${sqlName(schema)}.${sqlName(name)}`;
const relKey = (schema: string, name: string) => JSON.stringify([schema, name]);

/** Effective access to `datasets`, what was left out (`limits`), what could not be read (`failures`), and the (unknowable) last logins. */
export function effectiveAccess(
  facts: PgAccessFacts,
  datasets: PgAccessDataset[],
  marker: Marker,
  options: EffectiveOptions = {},
): { rows: ActualAccess[]; usage: CredentialUsage[]; limits: string[]; failures: string[] } {
  const b = facts.backend;
  const roles = new Map(facts.roles.map((r) => [r.name, r]));
  const superusers = facts.roles.filter((r) => r.superuser).map((r) => r.name);
  const pg16 = facts.version >= 160000;
  // Before 16, INHERIT is the member's attribute and SET ROLE follows every membership.
  const edges = facts.memberships
    .filter((m) => roles.has(m.member) && roles.has(m.role))
    .map((m) => ({
      role: m.role,
      member: m.member,
      inherit: pg16 ? m.inheritOption === true : roles.get(m.member)!.inherit,
      set: pg16 ? m.setOption === true : true,
    }));
  const clusterGraph = new Memberships(edges);
  const { holder, markers, principalOf, ours, ambiguous } = holders(facts, marker, clusterGraph);
  const graphs = new Map<string, Memberships>();
  const graphOf = (db: PgDatabaseFact) => {
    let g = graphs.get(db.name);
    if (!g) {
      const owner = roles.has(DATABASE_OWNER_ROLE) && roles.has(db.owner) ? [{ role: DATABASE_OWNER_ROLE, member: db.owner, inherit: true, set: true }] : [];
      graphs.set(db.name, (g = owner.length ? new Memberships([...edges, ...owner]) : clusterGraph));
    }
    return g;
  };

  const rows: ActualAccess[] = [];
  const limits: string[] = [];
  const failures: string[] = [];
  const rls = new Set<string>();
  const columnGrants = new Set<string>();
  const databases = new Map(facts.databases.map((d) => [d.name, d]));
  const schemas = new Map(facts.schemas.map((s) => [JSON.stringify([s.database, s.name]), s]));
  const relationsOf = new Map<string, PgRelationFact[]>();
  const relationsIn = new Map<string, PgRelationFact[]>();
  for (const r of facts.relations) {
    for (const [map, k] of [
      [relationsOf, JSON.stringify([r.database, r.schema])],
      [relationsIn, r.database],
    ] as const) {
      const list = map.get(k);
      if (list) list.push(r);
      else map.set(k, [r]);
    }
  }

  for (const ds of datasets) {
    const db = databases.get(ds.database);
    if (!db) {
      failures.push(`dataset ${ds.name}: database ${ds.database} does not exist`);
      continue;
    }
    if (!db.allowConnections) {
      limits.push(`dataset ${ds.name}: database ${ds.database} does not accept connections (datallowconn is false): no one reaches it`);
      continue;
    }
    const schema = schemas.get(JSON.stringify([ds.database, ds.schema]));
    if (!schema) {
      failures.push(`dataset ${ds.name}: schema ${ds.schema} does not exist in database ${ds.database}`);
      continue;
    }
    const inSchema = relationsOf.get(JSON.stringify([ds.database, ds.schema])) ?? [];
    const byName = new Map(inSchema.map((r) => [r.name, r]));
    const missing = (ds.tables ?? []).filter((t) => !byName.has(t));
    if (missing.length) failures.push(`dataset ${ds.name}: ${missing.map((t) => qualifiedName(ds.schema, t)).join(', ')} not found in database ${ds.database}`);
    const tables = ds.tables ? ds.tables.filter((t) => byName.has(t)).map((t) => byName.get(t)!) : inSchema.filter((r) => !r.partition);
    // Partitions and inheritance children of its tables, wherever they are: their rows are the dataset's.
    const own = new Set(tables.map((t) => relKey(t.schema, t.name)));
    const parts: Part[] = [];
    for (const r of relationsIn.get(ds.database) ?? []) {
      if (own.has(relKey(r.schema, r.name))) continue;
      const of = r.ancestors?.find((a) => own.has(relKey(a.schema, a.name)));
      if (of) parts.push({ rel: r, of: `${r.partition ? 'a partition' : 'an inheritance child'} of ${qualifiedName(of.schema, of.name)}` });
    }
    for (const t of [...tables, ...parts.map((p) => p.rel)]) if (t.rowSecurity) rls.add(qualifiedName(t.schema, t.name));
    rows.push(...datasetAccess(b, ds, db, schema, tables, parts, facts, roles, superusers, graphOf(db), holder, ours, limits, columnGrants));
    limits.push(...waysAround(ds, [...tables, ...parts.map((p) => p.rel)], facts));
  }

  if (rls.size)
    limits.push(
      `row-level security is enabled on ${list([...rls].sort())}: its policies narrow the rows a holder reaches, which this report does not evaluate (it shows table privileges)`,
    );
  if (columnGrants.size) limits.push(`column privileges on ${list([...columnGrants].sort())}: shown as partial access through a path that names the columns`);
  const createRole = facts.roles.filter((r) => r.createRole && !r.superuser).map((r) => r.name);
  if (createRole.length)
    limits.push(
      `roles with CREATEROLE can make themselves members of ${pg16 ? 'roles they hold ADMIN OPTION on' : 'any role but a superuser'} and so reach those roles' access, which is not shown as theirs: ${list(createRole.sort())}`,
    );
  if (ambiguous.length)
    limits.push(
      `roles ${list(ambiguous)}: datagrant's NOLOGIN roles without members or memberships — a group, or a temporary principal with no live session and no group; the marker does not say which, so they are shown without a principal`,
    );
  const legacy = options.legacy ? facts.roles.filter((r) => !markers.get(r.name) && options.legacy!(r.comment)).map((r) => r.name) : [];
  if (legacy.length)
    limits.push(
      `roles ${list(legacy.sort())}: datagrant's marker without an installation id (made by a version before installations had ids, or written by hand); not counted as datagrant's until datagrant next changes them and writes its id`,
    );

  const usage: CredentialUsage[] = facts.roles
    .filter((r) => r.login && markers.get(r.name))
    .map((r) => {
      const principal = principalOf.get(r.name);
      const createdAt = markers.get(r.name)!.createdAt;
      return {
        backend: b,
        holder: r.name,
        ...(principal !== undefined ? { principal } : {}),
        credential: r.name,
        ...(createdAt ? { createdAt } : {}),
        unknown: NO_LOGIN_RECORD,
      };
    })
    .sort((x, y) => (x.holder < y.holder ? -1 : 1));

  rows.sort((x, y) => {
    const a = [x.dataset, LEVELS.indexOf(x.level), x.holder.kind === 'pg-public' ? '' : x.holder.id];
    const c = [y.dataset, LEVELS.indexOf(y.level), y.holder.kind === 'pg-public' ? '' : y.holder.id];
    for (let i = 0; i < a.length; i++) if (a[i]! !== c[i]!) return a[i]! < c[i]! ? -1 : 1;
    return 0;
  });
  return { rows, usage, limits, failures };
}

/** A partition or inheritance child of a dataset's table: its rows are the dataset's, reached directly. */
interface Part {
  rel: PgRelationFact;
  /** `a partition of hr.salaries`, `an inheritance child of hr.events`. */
  of: string;
}

/** Whether a function's source names a table: as a word, quoted or not, in any case. */
const names = (body: string, table: string) =>
  new RegExp(`(^|[^A-Za-z0-9_$])"?${table.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"?($|[^A-Za-z0-9_$])`, 'i').test(body);

/**
 * Ways to a dataset's rows that go around its tables' privileges, which this report does not follow:
 * views outside the dataset that read its tables (they run with their owner's privileges), and
 * SECURITY DEFINER functions whose source names them. One line each, only when there are any.
 */
function waysAround(ds: PgAccessDataset, rels: PgRelationFact[], facts: PgAccessFacts): string[] {
  const out: string[] = [];
  const mine = new Set(rels.map((r) => relKey(r.schema, r.name)));
  const views = new Map<string, Set<string>>();
  for (const v of facts.views ?? []) {
    if (v.database !== ds.database || mine.has(relKey(v.schema, v.name)) || !mine.has(relKey(v.on.schema, v.on.name))) continue;
    const k = `${qualifiedName(v.schema, v.name)} (owner ${sqlName(v.owner)}`;
    views.set(k, (views.get(k) ?? new Set()).add(qualifiedName(v.on.schema, v.on.name)));
  }
  if (views.size)
    out.push(
      `dataset ${ds.name}: views outside it read its tables: ${list([...views].map(([v, on]) => `${v}, over ${[...on].sort().join(', ')})`).sort())}; who may read them reaches those rows with their owners' privileges, which this report does not show`,
    );
  const functions: string[] = [];
  for (const f of facts.functions ?? []) {
    if (f.database !== ds.database) continue;
    const named = rels.filter((r) => names(f.body, r.name)).map((r) => qualifiedName(r.schema, r.name));
    if (named.length) functions.push(`${qualifiedName(f.schema, f.name)}(${f.args}) (owner ${sqlName(f.owner)}, names ${named.sort().join(', ')})`);
  }
  if (functions.length)
    out.push(
      `dataset ${ds.name}: SECURITY DEFINER functions name its tables: ${list(functions.sort())}; who may EXECUTE them (by default PUBLIC) runs them with their owners' privileges, which this report does not show`,
    );
  return out;
}

function datasetAccess(
  backend: string,
  ds: PgAccessDataset,
  db: PgDatabaseFact,
  schema: PgSchemaFact,
  tables: PgRelationFact[],
  parts: Part[],
  facts: PgAccessFacts,
  roles: Map<string, PgRoleFact>,
  superusers: string[],
  graph: Memberships,
  holder: (key: string) => AccessHolder,
  ours: (role: string) => boolean,
  limits: string[],
  columnGrants: Set<string>,
): ActualAccess[] {
  const whole = ds.tables === undefined;
  const names = tables.map((t) => t.name);
  const qualified = (t: string) => qualifiedName(ds.schema, t);
  // A grant to one of datagrant's roles is datagrant's kind of path; to PUBLIC or anyone else, not.
  const mark = (key: string): Pick<AccessPath, 'managed'> => (key !== PUBLIC && ours(key) ? { managed: true } : {});

  // What each holder (a role, or PUBLIC) holds by itself, per level.
  const own = new Map<string, Map<Level, Source[]>>();
  const add = (
    key: string,
    level: Level,
    path: AccessPath,
    covers: Source['covers'],
    needs: Source['needs'] = 'connect+usage',
    inherited = true,
    usage = ds.schema,
  ) => {
    const levels = own.get(key) ?? new Map<Level, Source[]>();
    own.set(key, levels);
    const list = levels.get(level);
    const source: Source = { path, covers, needs, inherited, ...(usage !== ds.schema ? { usage } : {}) };
    if (list) list.push(source);
    else levels.set(level, [source]);
  };
  const partial = (covers: Source['covers']): Pick<AccessPath, 'partial'> => (covers !== 'all' && names.some((n) => !covers.has(n)) ? { partial: true } : {});

  for (const r of superusers) for (const l of LEVELS) add(r, l, { via: 'superuser' }, 'all', 'nothing', false);
  for (const [name, level] of Object.entries(PREDEFINED))
    if (roles.has(name)) add(name, level, { via: `predefined role ${name}: ${level === 'read' ? 'reads' : 'writes'} every table` }, 'all');

  const owned = new Map<string, string[]>();
  for (const t of tables) {
    const ts = owned.get(t.owner);
    if (ts) ts.push(t.name);
    else owned.set(t.owner, [t.name]);
  }
  for (const [owner, ts] of owned) {
    const covers = new Set(ts);
    const all = whole && names.every((n) => covers.has(n));
    const what = all ? `every table in schema ${sqlName(ds.schema)}` : list(ts.map(qualified));
    for (const l of LEVELS) add(owner, l, { via: `owner of ${what}`, ...partial(covers) }, covers);
  }
  add(schema.owner, 'admin', { via: `owner of schema ${sqlName(ds.schema)} (may drop its tables)` }, 'all', 'connect');
  add(db.owner, 'admin', { via: `owner of database ${sqlName(db.name)} (may drop it)` }, 'all', 'nothing');

  // GRANTs on the tables: per grantee and level, the tables grouped by the privileges they hold.
  const granted = new Map<string, Map<Level, Map<string, Set<string>>>>();
  for (const t of tables) {
    for (const a of t.acl) {
      const level = levelOf(a.privilege);
      // The owner's own entries are its ownership, shown as such.
      if (!level || a.grantee === t.owner) continue;
      const byLevel = granted.get(keyOf(a.grantee)) ?? new Map<Level, Map<string, Set<string>>>();
      granted.set(keyOf(a.grantee), byLevel);
      const byTable = byLevel.get(level) ?? new Map<string, Set<string>>();
      byLevel.set(level, byTable);
      byTable.set(t.name, (byTable.get(t.name) ?? new Set()).add(a.privilege));
    }
  }
  for (const [key, byLevel] of granted) {
    const to = key === PUBLIC ? 'PUBLIC' : sqlName(key);
    for (const [level, byTable] of byLevel) {
      const groups = new Map<string, string[]>();
      for (const [t, privs] of byTable) {
        const k = [...privs].sort(byPrivilegeOrder).join(', ');
        const ts = groups.get(k);
        if (ts) ts.push(t);
        else groups.set(k, [t]);
      }
      for (const [privs, ts] of groups) {
        const covers = new Set(ts);
        const all = whole && names.every((n) => covers.has(n));
        const on = all ? `ALL TABLES IN SCHEMA ${sqlName(ds.schema)}` : list(ts.map(qualified));
        add(key, level, { via: `GRANT ${privs} ON ${on} TO ${to}`, ...partial(covers), ...mark(key) }, covers);
      }
    }
  }

  // Partitions and inheritance children: their owners and grantees reach their rows, directly
  // (a query on a partition checks the partition's privileges, not its parent's), with USAGE on
  // their own schema. Part of the dataset, never all of it.
  const partGrants = new Map<string, { key: string; level: Level; privs: string; of: string; schema: string; rels: string[] }>();
  const partOwners = new Map<string, { owner: string; of: string; schema: string; rels: string[] }>();
  for (const { rel, of } of parts) {
    const name = qualifiedName(rel.schema, rel.name);
    const o = JSON.stringify([rel.owner, of, rel.schema]);
    const e = partOwners.get(o) ?? { owner: rel.owner, of, schema: rel.schema, rels: [] };
    e.rels.push(name);
    partOwners.set(o, e);
    const byGrantee = new Map<string, Map<Level, string[]>>();
    for (const a of rel.acl) {
      const level = levelOf(a.privilege);
      if (!level || a.grantee === rel.owner) continue;
      const byLevel = byGrantee.get(keyOf(a.grantee)) ?? new Map<Level, string[]>();
      byGrantee.set(keyOf(a.grantee), byLevel);
      byLevel.set(level, [...(byLevel.get(level) ?? []), a.privilege]);
    }
    for (const [key, byLevel] of byGrantee) {
      for (const [level, privileges] of byLevel) {
        const privs = [...new Set(privileges)].sort(byPrivilegeOrder).join(', ');
        const k = JSON.stringify([key, level, privs, of, rel.schema]);
        const g = partGrants.get(k) ?? { key, level, privs, of, schema: rel.schema, rels: [] };
        g.rels.push(name);
        partGrants.set(k, g);
      }
    }
  }
  for (const { owner, of, schema: in_, rels } of partOwners.values())
    for (const l of LEVELS) add(owner, l, { via: `owner of ${list(rels)} (${of})`, partial: true }, new Set(), 'connect+usage', true, in_);
  for (const g of partGrants.values()) {
    const to = g.key === PUBLIC ? 'PUBLIC' : sqlName(g.key);
    add(
      g.key,
      g.level,
      { via: `GRANT ${g.privs} ON ${list(g.rels)} TO ${to} (${g.of})`, partial: true, ...mark(g.key) },
      new Set(),
      'connect+usage',
      true,
      g.schema,
    );
  }

  // Column privileges, where the table-level one is not held as well.
  const tableNames = new Set(names);
  const partOf = new Map(parts.map((p) => [relKey(p.rel.schema, p.rel.name), p]));
  const columns = new Map<string, { grantee: string | null; level: Level; table: string; schema: string; of?: string; privilege: string; columns: string[] }>();
  for (const c of facts.columns) {
    if (c.database !== ds.database) continue;
    const part = partOf.get(relKey(c.schema, c.relation));
    if (!part && (c.schema !== ds.schema || !tableNames.has(c.relation))) continue;
    const level = levelOf(c.privilege);
    if (!level) continue;
    if (
      part
        ? part.rel.acl.some((a) => keyOf(a.grantee) === keyOf(c.grantee) && a.privilege === c.privilege)
        : granted.get(keyOf(c.grantee))?.get(level)?.get(c.relation)?.has(c.privilege)
    )
      continue;
    const k = JSON.stringify([keyOf(c.grantee), c.schema, c.relation, c.privilege]);
    const e = columns.get(k) ?? {
      grantee: c.grantee,
      level,
      table: c.relation,
      schema: c.schema,
      ...(part ? { of: part.of } : {}),
      privilege: c.privilege,
      columns: [],
    };
    e.columns.push(sqlName(c.column));
    columns.set(k, e);
    columnGrants.add(qualifiedName(c.schema, c.relation));
  }
  for (const c of columns.values())
    add(
      keyOf(c.grantee),
      c.level,
      {
        via: `GRANT ${c.privilege} (${c.columns.sort().join(', ')}) ON ${qualifiedName(c.schema, c.table)} TO ${grantee(c.grantee)}${c.of ? ` (${c.of})` : ''}`,
        partial: true,
      },
      new Set(),
      'connect+usage',
      true,
      c.schema,
    );

  // Default privileges reach tables created later: part of a whole schema, never of a table list.
  if (whole) {
    const seen = new Set<string>();
    for (const d of facts.defaults) {
      if (d.database !== ds.database || (d.schema !== null && d.schema !== ds.schema) || d.grantee === d.creator) continue;
      const level = levelOf(d.privilege);
      if (!level) continue;
      const k = JSON.stringify([keyOf(d.grantee), level, d.creator, d.schema]);
      if (seen.has(k)) continue;
      seen.add(k);
      const where = d.schema === null ? 'any schema' : sqlName(d.schema);
      // datagrant sets defaults IN SCHEMA for its roles, never for every schema.
      const managed = d.schema !== null ? mark(keyOf(d.grantee)) : {};
      add(
        keyOf(d.grantee),
        level,
        { via: `default privileges: future tables created by ${sqlName(d.creator)} in ${where}`, partial: true, ...managed },
        new Set(),
      );
    }
  }

  // The preconditions: CONNECT on the database and USAGE on the schema, held by any of `within`.
  const connectors = new Set(db.acl.filter((a) => a.privilege === 'CONNECT').map((a) => keyOf(a.grantee)));
  const usersOf = (name: string) => {
    const s = name === ds.schema ? schema : facts.schemas.find((x) => x.database === ds.database && x.name === name);
    const held = new Set((s?.acl ?? []).filter((a) => a.privilege === 'USAGE').map((a) => keyOf(a.grantee)));
    for (const p of Object.keys(PREDEFINED)) held.add(p);
    return held;
  };
  const users = usersOf(ds.schema);
  const holds = (held: Set<string>) => {
    const memo = new Map<string | undefined, boolean>();
    return (role: string | undefined): boolean => {
      let v = memo.get(role);
      if (v === undefined) {
        const within = role === undefined ? [PUBLIC] : [role, ...graph.inherited(role).keys(), PUBLIC];
        v = (role !== undefined && roles.get(role)?.superuser === true) || within.some((k) => held.has(k));
        memo.set(role, v);
      }
      return v;
    };
  };
  const canConnect = holds(connectors);
  const usageIn = new Map<string, (role: string | undefined) => boolean>([[ds.schema, holds(users)]]);
  const canUse = (role: string | undefined, in_: string) => {
    let f = usageIn.get(in_);
    if (!f) usageIn.set(in_, (f = holds(usersOf(in_))));
    return f(role);
  };
  const fullyCovers = (sources: Source[]) => {
    if (sources.some((s) => s.covers === 'all')) return true;
    const covered = new Set(sources.flatMap((s) => (s.covers === 'all' ? [] : [...s.covers])));
    return sources.length > 0 && names.every((n) => covered.has(n));
  };

  // Sources whose access someone uses; the others are named in limits.
  const used = new Set<Source>();
  /** The sources of `key` at `level` that a session as `role` (PUBLIC: undefined) can use, inherited or not. */
  const usable = (key: string, level: Level, role: string | undefined, connected: boolean, inherited?: boolean): Source[] => {
    const sources = (own.get(key)?.get(level) ?? []).filter(
      (s) =>
        (inherited === undefined || s.inherited === inherited) &&
        (s.needs === 'nothing' || (connected && (s.needs === 'connect' || canUse(role, s.usage ?? ds.schema)))),
    );
    for (const s of sources) used.add(s);
    return sources;
  };
  const paths = (sources: Source[]) => sources.map((s) => s.path);
  // Membership is datagrant's kind of path when the member, the role and every role between are its own.
  const chainOurs = (role: string, target: string, chain: string[]) => ours(role) && ours(target) && chain.every(ours);

  const publicRow = new Map<Level, AccessPath[]>();
  for (const l of LEVELS) {
    const mine = usable(PUBLIC, l, undefined, canConnect(undefined));
    if (mine.length) publicRow.set(l, paths(mine));
  }

  /** What `role` holds at `level` without SET ROLE, on a connection that `connected` says was allowed. */
  const direct = (role: string, level: Level, connected: boolean): AccessPath[] => {
    const out = paths(usable(role, level, role, connected));
    for (const [via, chain] of graph.inherited(role)) {
      const theirs = usable(via, level, role, connected, true);
      if (theirs.length === 0) continue;
      out.push({
        via: `member of role ${sqlName(via)}${chain.length ? ` (through ${chain.map(sqlName).join(', ')})` : ''}`,
        ...(fullyCovers(theirs) ? {} : { partial: true }),
        ...(chainOurs(role, via, chain) ? { managed: true } : {}),
      });
    }
    // PUBLIC's privileges are its own row, unless PUBLIC lacks CONNECT or USAGE and this role does not.
    if (!publicRow.has(level)) out.push(...paths(usable(PUBLIC, level, role, connected)));
    return out;
  };

  const out: ActualAccess[] = [];
  const row = (key: string, level: Level, paths: AccessPath[], expires?: string | null) => {
    if (paths.length === 0) return;
    const sorted = [...paths].sort((x, y) => (x.via < y.via ? -1 : x.via > y.via ? 1 : 0));
    out.push({ backend, dataset: ds.name, level, holder: holder(key), paths: expires ? sorted.map((p) => ({ ...p, expires })) : sorted });
  };
  for (const [l, ps] of publicRow) row(PUBLIC, l, ps);

  // Holders: whoever holds something, and every member of those (PUBLIC's grants reach anyone with
  // USAGE and CONNECT when PUBLIC lacks them, so those roles' members too).
  const seeds = [...own.keys()].filter((k) => k !== PUBLIC);
  if (own.has(PUBLIC)) for (const k of [...connectors, ...users]) if (k !== PUBLIC) seeds.push(k);
  // PostgreSQL's own roles hold access only for their members, who are shown.
  const candidates = [...graph.membersOf(seeds.filter((k) => roles.has(k)))].filter((r) => !BUILT_IN.has(r)).sort();
  for (const role of candidates) {
    const connected = canConnect(role);
    const inherits = graph.inherited(role);
    for (const level of LEVELS) {
      const found = direct(role, level, connected);
      for (const [target, chain] of graph.settable(role)) {
        // A role it inherits from adds by SET ROLE only what members do not inherit (superuser).
        const through = inherits.has(target) ? paths(usable(target, level, target, connected, false)) : direct(target, level, connected);
        if (through.length)
          found.push({
            via: `can SET ROLE ${sqlName(target)}`,
            ...(through.every((p) => p.partial) ? { partial: true } : {}),
            ...(chainOurs(role, target, chain) && through.every((p) => p.managed) ? { managed: true } : {}),
          });
      }
      row(role, level, found, roles.get(role)!.validUntil);
    }
  }

  const unusable = [...own]
    .filter(([k, byLevel]) => !BUILT_IN.has(k) && (k === PUBLIC || roles.has(k)) && [...byLevel.values()].some((ss) => ss.some((x) => !used.has(x))))
    .map(([k]) => k)
    .map((k) => (k === PUBLIC ? 'PUBLIC' : sqlName(k)));
  if (unusable.length)
    limits.push(
      `dataset ${ds.name}: privileges held by ${list(unusable.sort())} reach no one: without USAGE on schema ${sqlName(ds.schema)}${parts.some((p) => p.rel.schema !== ds.schema) ? ' (or on the schema of a partition or child of its tables)' : ''} or CONNECT on database ${sqlName(db.name)} they cannot be used, and are not shown`,
    );
  return out;
}
