// Spec → desired PostgreSQL state for one postgres backend. Pure.
//
// Resources (all addresses prefixed by the backend's name):
//  role/<name>                               group roles (NOLOGIN) and principals' login roles
//  membership/<group>/<principal>            GRANT group TO principal
//  connect/<role>/<database>                 CONNECT on a database (shared by its schemas)
//  grant/<role>/<database>.<schema>/<level>  the privileges <level> adds to the level below it,
//                                            so a write grant is the read and write resources;
//                                            "%", "." and "/" inside a name are written %25, %2E,
//                                            %2F, so that distinct schemas never share an address
//  password/<role>                           the login role's password (a credential slot)
import { CompileError } from '../../core/errors.js';
import { addressOf, type Json, type Level, type Notice, type Resource } from '../../core/types.js';
import {
  durationSeconds,
  expiresInstant,
  isS3Dataset,
  type Grant,
  type PgDatasetSpec,
  type Spec,
} from '../../spec/schema.js';
import { pgIdentifierProblem, pgRoleNameProblem } from '../../spec/limits.js';
import { levelIncrement, levelsUpTo } from './levels.js';

/** Tables a grant covers: every table in the schema now and in the future, or a sorted list. */
export type TableScope = '*' | string[];

export interface GrantPrivileges {
  schema: string[];
  tables: string[];
  sequences: string[];
  /** Default privileges on tables created later in the schema (only with all tables). */
  defaultTables: string[];
  defaultSequences: string[];
}

export interface GrantAttrs {
  role: string;
  database: string;
  schema: string;
  level: Level;
  tables: TableScope;
  privileges: GrantPrivileges;
}

export interface RoleAttrs {
  login: boolean;
  /** ISO instant after which PostgreSQL refuses the login; null: no limit. */
  validUntil: string | null;
  /** Role attributes datagrant never sets (SUPERUSER, CREATEROLE, …, NOINHERIT); read reports them as drift. */
  flags: string[];
}

/**
 * One name inside a `database.schema` segment. Both names may contain dots (and "/"), so
 * `x.y` + `s` and `x` + `y.s` would otherwise both be `x.y.s`. Escaping "%" too keeps the mapping
 * one-to-one; names without these characters (nearly all) read as written.
 */
const segmentName = (name: string) => name.replace(/[%./]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export const pgAddress = {
  role: (b: string, role: string) => addressOf(b, 'role', role),
  membership: (b: string, group: string, member: string) => addressOf(b, 'membership', group, member),
  connect: (b: string, role: string, database: string) => addressOf(b, 'connect', role, database),
  grant: (b: string, role: string, database: string, schema: string, level: Level) =>
    addressOf(b, 'grant', role, `${segmentName(database)}.${segmentName(schema)}`, level),
  password: (b: string, role: string) => addressOf(b, 'password', role),
};

const sorted = <T extends string>(xs: Iterable<T>): T[] => [...new Set(xs)].sort();

/** The privileges one level's grant resource holds, for a table scope. */
export function grantPrivileges(level: Level, tables: TableScope): GrantPrivileges {
  const inc = levelIncrement(level);
  const all = tables === '*';
  return {
    schema: sorted(inc.schema),
    tables: sorted(inc.tables),
    sequences: sorted(inc.sequences),
    defaultTables: all ? sorted(inc.tables) : [],
    defaultSequences: all ? sorted(inc.sequences) : [],
  };
}

export function roleResource(backend: string, name: string, attrs: RoleAttrs): Resource {
  return { address: pgAddress.role(backend, name), backend, kind: 'role', name, attrs: attrs as unknown as { [k: string]: Json }, immutable: [], deps: [] };
}

export function membershipResource(backend: string, group: string, member: string): Resource {
  return {
    address: pgAddress.membership(backend, group, member),
    backend,
    kind: 'membership',
    name: member,
    attrs: { group, member },
    immutable: ['group', 'member'],
    deps: [pgAddress.role(backend, member), pgAddress.role(backend, group)],
  };
}

export function connectResource(backend: string, role: string, database: string, privileges: string[]): Resource {
  return {
    address: pgAddress.connect(backend, role, database),
    backend,
    kind: 'connect',
    name: role,
    attrs: { role, database, privileges: sorted(privileges) },
    immutable: ['role', 'database'],
    deps: [pgAddress.role(backend, role)],
  };
}

export function grantResource(backend: string, attrs: GrantAttrs): Resource {
  return {
    address: pgAddress.grant(backend, attrs.role, attrs.database, attrs.schema, attrs.level),
    backend,
    kind: 'grant',
    name: attrs.role,
    attrs: attrs as unknown as { [k: string]: Json },
    immutable: ['role', 'database', 'schema', 'level'],
    deps: [pgAddress.role(backend, attrs.role), pgAddress.connect(backend, attrs.role, attrs.database)],
  };
}

export function passwordResource(backend: string, role: string, deps: string[], lifecycle?: Resource['lifecycle']): Resource {
  return {
    address: pgAddress.password(backend, role),
    backend,
    kind: 'password',
    name: role,
    attrs: { role },
    immutable: ['role'],
    deps: sorted([pgAddress.role(backend, role), ...deps]),
    ...(lifecycle ? { lifecycle } : {}),
  };
}

export interface CompileContext {
  now: Date;
}

const isLive = (g: Grant, now: Date) => !g.expires || expiresInstant(g.expires).getTime() > now.getTime();

export function compilePostgres(spec: Spec, backendName: string, ctx: CompileContext): { resources: Resource[]; notices: Notice[] } {
  const problems: string[] = [];
  const notices: Notice[] = [];
  const resources: Resource[] = [];

  const pgDataset = (g: Grant): PgDatasetSpec | undefined => {
    const ds = spec.datasets[g.dataset];
    return ds && ds.backend === backendName && !isS3Dataset(ds) ? ds : undefined;
  };
  const onBackend = (grants: Grant[]) => grants.filter((g) => pgDataset(g) !== undefined);
  const live = (grants: Grant[]) => onBackend(grants).filter((g) => isLive(g, ctx.now));

  // Validation rejects these with their position; this holds for a spec built another way.
  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (ds.backend !== backendName || isS3Dataset(ds)) continue;
    for (const [what, v] of [['database', ds.database], ['schema', ds.schema], ...(ds.tables ?? []).map((t) => ['table', t] as const)] as const) {
      const problem = pgIdentifierProblem(v);
      if (problem) problems.push(`dataset ${name}: ${what} ${JSON.stringify(v)} ${problem}`);
    }
  }

  const roleOwner = new Map<string, string>();
  // Validation rejects spec names PostgreSQL cannot hold; SCIM people reach here without it.
  const claimRole = (role: string, owner: string) => {
    const problem = pgRoleNameProblem(role);
    if (problem) problems.push(`${owner}: role name ${JSON.stringify(role)} ${problem}`);
    const other = roleOwner.get(role);
    if (other) problems.push(`${owner}: role name ${JSON.stringify(role)} is also used by ${other}; groups and principals share one role namespace in PostgreSQL`);
    else roleOwner.set(role, owner);
  };

  /** Grant resources (one per level up to the granted one) plus CONNECT per database, for one role. */
  const grantsFor = (role: string, grants: Grant[]): string[] => {
    // (database, schema) → level → table scope, merged over datasets on the same schema.
    const scopes = new Map<string, { database: string; schema: string; levels: Map<Level, TableScope> }>();
    for (const g of grants) {
      const ds = pgDataset(g)!;
      const key = JSON.stringify([ds.database, ds.schema]);
      const entry = scopes.get(key) ?? { database: ds.database, schema: ds.schema, levels: new Map() };
      scopes.set(key, entry);
      for (const level of levelsUpTo(g.access)) {
        const had = entry.levels.get(level);
        const add: TableScope = ds.tables ? sorted(ds.tables) : '*';
        entry.levels.set(level, had === '*' || add === '*' ? '*' : sorted([...(had ?? []), ...add]));
      }
    }
    const databases = new Set<string>();
    const addresses: string[] = [];
    for (const { database, schema, levels } of scopes.values()) {
      databases.add(database);
      for (const [level, tables] of levels) {
        const r = grantResource(backendName, { role, database, schema, level, tables, privileges: grantPrivileges(level, tables) });
        resources.push(r);
        addresses.push(r.address);
      }
    }
    for (const database of databases) {
      const r = connectResource(backendName, role, database, [...levelIncrement('read').database]);
      resources.push(r);
      addresses.push(r.address);
    }
    return addresses;
  };

  // Groups that ever grant something on this backend become NOLOGIN roles (kept while their grants
  // are expired, so memberships survive a renewal).
  const groupRoles = new Set<string>();
  const groupGrants = new Map<string, string[]>();
  for (const [name, group] of Object.entries(spec.groups)) {
    if (onBackend(group.grants).length === 0) continue;
    groupRoles.add(name);
    claimRole(name, `group ${name}`);
    resources.push(roleResource(backendName, name, { login: false, validUntil: null, flags: [] }));
    groupGrants.set(name, grantsFor(name, live(group.grants)));
  }

  const rotateDefault = spec.settings?.rotate;

  for (const [name, p] of Object.entries(spec.principals)) {
    const groups = p.groups.filter((g) => groupRoles.has(g)).sort();
    const direct = live(p.grants);
    const viaGroups = groups.flatMap((g) => live(spec.groups[g]!.grants));
    const effective = [...direct, ...viaGroups];
    // No live grant here (never had one, or all expired): no role, so no login.
    if (effective.length === 0) continue;
    claimRole(name, `principal ${name}`);

    // The login ends when the last grant does; one grant without expiry keeps it open.
    const validUntil = effective.some((g) => !g.expires)
      ? null
      : new Date(Math.max(...effective.map((g) => expiresInstant(g.expires!).getTime()))).toISOString();
    resources.push(roleResource(backendName, name, { login: true, validUntil, flags: [] }));

    const memberships = groups.map((g) => {
      const r = membershipResource(backendName, g, name);
      resources.push(r);
      return r.address;
    });
    const grantAddresses = grantsFor(name, direct);

    const rotate = p.rotate ?? rotateDefault;
    // The password is set last (after the group roles' grants too), so that it works the moment
    // it is handed out. It has no rotation grace: a role holds one password, so the old one stops
    // the moment a new one is set, and must not be kept (or listed) as if it still worked.
    resources.push(
      passwordResource(backendName, name, [...memberships, ...grantAddresses, ...groups.flatMap((g) => groupGrants.get(g) ?? [])], rotate ? { rotateAfterSeconds: durationSeconds(rotate) } : undefined),
    );
  }

  if (problems.length) throw new CompileError(problems.map((m) => `backend ${backendName}: ${m}`));
  resources.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { resources, notices };
}
