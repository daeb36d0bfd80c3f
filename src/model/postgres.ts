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
//  session-login/<principal>/<suffix>        a temporary principal's session: a login role
//                                            `<principal>~<suffix>`, member of the principal's
//                                            role, made by the session broker (never by apply)
//
// `PgResource` is the union of these kinds, each with its own attributes. Builders make them
// typed; `pgChange` checks a change read from elsewhere (a saved plan file is data) before the
// driver acts on it.
import { z } from 'zod';
import { checkedChange } from './checked-change.js';
import { LEVELS, addressOf, type Change, type Level, type Resource } from '../core/types.js';
import { levelIncrement } from './postgres-levels.js';

const names = z.array(z.string());

/** Tables a grant covers: every table in the schema now and in the future, or a sorted list. */
const tableScopeSchema = z.union([z.literal('*'), names]);

const grantPrivilegesSchema = z.strictObject({
  schema: names,
  tables: names,
  sequences: names,
  /** Default privileges on tables created later in the schema (only with all tables). */
  defaultTables: names,
  defaultSequences: names,
});

const attrsSchemas = {
  role: z.strictObject({
    login: z.boolean(),
    /** ISO instant after which PostgreSQL refuses the login; null: no limit. */
    validUntil: z.string().nullable(),
    /** Role attributes datagrant never sets (SUPERUSER, CREATEROLE, …, NOINHERIT); read reports them as drift. */
    flags: names,
  }),
  membership: z.strictObject({ group: z.string().min(1), member: z.string().min(1) }),
  connect: z.strictObject({ role: z.string().min(1), database: z.string().min(1), privileges: names }),
  grant: z.strictObject({
    role: z.string().min(1),
    database: z.string().min(1),
    schema: z.string().min(1),
    level: z.enum(LEVELS as [Level, ...Level[]]),
    tables: tableScopeSchema,
    privileges: grantPrivilegesSchema,
  }),
  password: z.strictObject({ role: z.string().min(1) }),
  'session-login': z.strictObject({
    /** The principal (and its role) the session runs as. */
    principal: z.string().min(1),
    login: z.boolean(),
    /** The roles it is a member of: exactly the principal's. */
    memberOf: names,
    flags: names,
  }),
};

export type TableScope = z.infer<typeof tableScopeSchema>;
export type GrantPrivileges = z.infer<typeof grantPrivilegesSchema>;
export type RoleAttrs = z.infer<typeof attrsSchemas.role>;
export type MembershipAttrs = z.infer<typeof attrsSchemas.membership>;
export type ConnectAttrs = z.infer<typeof attrsSchemas.connect>;
export type GrantAttrs = z.infer<typeof attrsSchemas.grant>;
export type PasswordAttrs = z.infer<typeof attrsSchemas.password>;
export type SessionLoginAttrs = z.infer<(typeof attrsSchemas)['session-login']>;

/** Each kind's attributes. */
export type PgAttrs = { [K in keyof typeof attrsSchemas]: z.infer<(typeof attrsSchemas)[K]> };
export type PgKind = keyof PgAttrs;
export const PG_KINDS = Object.keys(attrsSchemas) as PgKind[];

/** A resource of kind K: its `kind` and its `attrs` agree. */
export type PgResourceOf<K extends PgKind> = Omit<Resource, 'kind' | 'attrs'> & { kind: K; attrs: PgAttrs[K] };
/** Any PostgreSQL resource, discriminated by `kind`. */
export type PgResource = { [K in PgKind]: PgResourceOf<K> }[PgKind];

/** A change to a resource of kind K. */
export type PgChangeOf<K extends PgKind> = Omit<Change, 'kind' | 'before' | 'after'> & {
  kind: K;
  before: PgResourceOf<K> | null;
  after: PgResourceOf<K> | null;
};
/** Any change to a PostgreSQL resource, discriminated by `kind`. */
export type PgChange = { [K in PgKind]: PgChangeOf<K> }[PgKind];

/**
 * The change as a `PgChange`, or a BackendError naming its address and what is wrong: an unknown
 * kind, a resource of another kind, a missing `before` (delete) or `after` (anything else), or
 * attributes not of the kind's shape. Nothing is sent to the server for such a change.
 */
export function pgChange(change: Change): PgChange {
  return checkedChange<PgChange>(change, attrsSchemas);
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
  /** `login` is a session login's name, `<principal>~<suffix>`. */
  sessionLogin: (b: string, principal: string, login: string) => addressOf(b, 'session-login', principal, sessionSuffix(login) ?? login),
};

/**
 * Separates a session login's principal part from its random suffix. Spec names cannot hold it
 * (NAME_RE), so a session login never shares a name with a principal or a group; it stays out
 * of addresses, where `~` marks a superseded credential.
 */
export const SESSION_LOGIN_SEPARATOR = '~';

/** The random part of a session login's name; undefined when the name is not one's. */
export function sessionSuffix(login: string): string | undefined {
  const at = login.lastIndexOf(SESSION_LOGIN_SEPARATOR);
  const suffix = at > 0 ? login.slice(at + 1) : '';
  return /^[a-z2-7]{8,}$/.test(suffix) ? suffix : undefined;
}

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

export function roleResource(backend: string, name: string, attrs: RoleAttrs): PgResourceOf<'role'> {
  return { address: pgAddress.role(backend, name), backend, kind: 'role', name, attrs, immutable: [], deps: [] };
}

export function membershipResource(backend: string, group: string, member: string): PgResourceOf<'membership'> {
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

export function connectResource(backend: string, role: string, database: string, privileges: string[]): PgResourceOf<'connect'> {
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

export function grantResource(backend: string, attrs: GrantAttrs): PgResourceOf<'grant'> {
  return {
    address: pgAddress.grant(backend, attrs.role, attrs.database, attrs.schema, attrs.level),
    backend,
    kind: 'grant',
    name: attrs.role,
    attrs,
    immutable: ['role', 'database', 'schema', 'level'],
    deps: [pgAddress.role(backend, attrs.role), pgAddress.connect(backend, attrs.role, attrs.database)],
  };
}

export function passwordResource(backend: string, role: string, deps: string[], lifecycle?: Resource['lifecycle']): PgResourceOf<'password'> {
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

/**
 * A session login, present while its session may run. Every attribute is immutable: a login
 * changed by hand is dropped (its holder asks for a new session), since only the broker makes one.
 */
export function sessionLoginResource(backend: string, principal: string, login: string, attrs?: SessionLoginAttrs): PgResourceOf<'session-login'> {
  return {
    address: pgAddress.sessionLogin(backend, principal, login),
    backend,
    kind: 'session-login',
    name: login,
    attrs: attrs ?? { principal, login: true, memberOf: [principal], flags: [] },
    immutable: ['principal', 'login', 'memberOf', 'flags'],
    deps: [pgAddress.role(backend, principal)],
  };
}
