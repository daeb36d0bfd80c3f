// The PostgreSQL resource model, shared by the compiler (which builds the desired resources) and
// the driver's catalog reader (which builds the actual ones in exactly the same shapes).
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
import { addressOf, type Json, type Level, type Resource } from '../core/types.js';
import { levelIncrement } from './postgres-levels.js';

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
