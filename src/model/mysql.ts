// The MariaDB/MySQL resource model, shared by the compiler (which builds the desired resources)
// and the driver's reader (which builds the actual ones in exactly the same shapes).
//
// Resources (all addresses prefixed by the backend's name):
//  role/<name>                          a group's role, or a principal's own role: the one role its
//                                       account has as default role, holding the principal's direct
//                                       grants and its groups' roles (MariaDB activates one default
//                                       role at login, and a role's roles with it)
//  account/<name>                       a principal's account `'name'@'<host>'`, whose only
//                                       privilege is its own role, set as its default role
//  membership/<group>/<principal>       GRANT group TO principal (both roles)
//  grant/<role>/<database>/<level>      the privileges <level> adds to the level below it, on the
//                                       database (`ON db.*`) or on listed tables; "%" and "/" in a
//                                       database name are written %25 and %2F
//  pattern-grant/<role>/<pattern>       privileges on a database *pattern* (`ON \`a%\`.*`), which
//                                       datagrant never grants: only read, so that apply revokes it
//  password/<name>                      the account's password (a credential slot)
//
// `MysqlResource` is the union of these kinds, each with its own attributes. Builders make them
// typed; `mysqlChange` checks a change read from elsewhere (a saved plan file is data) before the
// driver acts on it.
import { z } from 'zod';
import { checkedChange } from './checked-change.js';
import { LEVELS, addressOf, type Change, type Level, type Resource } from '../core/types.js';
import { mysqlLevelIncrement } from './mysql-levels.js';

const names = z.array(z.string());

/** Tables a grant covers: the whole database (now and later), or a sorted list. */
const tableScopeSchema = z.union([z.literal('*'), names]);

const attrsSchemas = {
  role: z.strictObject({
    /** Privileges the role holds on `*.*`: datagrant grants none; read reports any as drift. */
    privileges: names,
  }),
  account: z.strictObject({
    /** The account's host part (`%`: any host). */
    host: z.string().min(1),
    /** ACCOUNT LOCK: nobody logs in. Set only while a mass deprovisioning waits for a person. */
    locked: z.boolean(),
    /** Roles granted to the account: exactly its own. */
    roles: names,
    /** The role active at login: its own. */
    defaultRole: z.string().nullable(),
    /** Privileges held by the account itself (`SELECT ON \`db\`.*`): datagrant grants none. */
    privileges: names,
  }),
  membership: z.strictObject({ group: z.string().min(1), member: z.string().min(1) }),
  grant: z.strictObject({
    role: z.string().min(1),
    database: z.string().min(1),
    level: z.enum(LEVELS as [Level, ...Level[]]),
    tables: tableScopeSchema,
    privileges: z.strictObject({
      /** `ON db.*` (a whole-database grant). */
      database: names,
      /** On each listed table; read marks one not held on all of them `(partial)`, on columns `(columns)`. */
      tables: names,
    }),
  }),
  'pattern-grant': z.strictObject({ role: z.string().min(1), pattern: z.string().min(1), privileges: names }),
  password: z.strictObject({ account: z.string().min(1), host: z.string().min(1) }),
};

export type MysqlTableScope = z.infer<typeof tableScopeSchema>;
export type MysqlRoleAttrs = z.infer<typeof attrsSchemas.role>;
export type MysqlAccountAttrs = z.infer<typeof attrsSchemas.account>;
export type MysqlGrantAttrs = z.infer<typeof attrsSchemas.grant>;
export type MysqlGrantPrivileges = MysqlGrantAttrs['privileges'];

/** Each kind's attributes. */
export type MysqlAttrs = { [K in keyof typeof attrsSchemas]: z.infer<(typeof attrsSchemas)[K]> };
export type MysqlKind = keyof MysqlAttrs;
export const MYSQL_KINDS = Object.keys(attrsSchemas) as MysqlKind[];

/** A resource of kind K: its `kind` and its `attrs` agree. */
export type MysqlResourceOf<K extends MysqlKind> = Omit<Resource, 'kind' | 'attrs'> & { kind: K; attrs: MysqlAttrs[K] };
/** Any MariaDB resource, discriminated by `kind`. */
export type MysqlResource = { [K in MysqlKind]: MysqlResourceOf<K> }[MysqlKind];

/** A change to a resource of kind K. */
export type MysqlChangeOf<K extends MysqlKind> = Omit<Change, 'kind' | 'before' | 'after'> & {
  kind: K;
  before: MysqlResourceOf<K> | null;
  after: MysqlResourceOf<K> | null;
};
/** Any change to a MariaDB resource, discriminated by `kind`. */
export type MysqlChange = { [K in MysqlKind]: MysqlChangeOf<K> }[MysqlKind];

/**
 * The change as a `MysqlChange`, or a BackendError naming its address and what is wrong: an
 * unknown kind, a resource of another kind, a missing `before` (delete) or `after` (anything
 * else), or attributes not of the kind's shape. Nothing is sent to the server for such a change.
 */
export function mysqlChange(change: Change): MysqlChange {
  return checkedChange<MysqlChange>(change, attrsSchemas);
}

/** A database name (or pattern) as one address segment: distinct names never share an address. */
const segmentName = (name: string) => name.replace(/[%/]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export const mysqlAddress = {
  role: (b: string, role: string) => addressOf(b, 'role', role),
  account: (b: string, name: string) => addressOf(b, 'account', name),
  membership: (b: string, group: string, member: string) => addressOf(b, 'membership', group, member),
  grant: (b: string, role: string, database: string, level: Level) => addressOf(b, 'grant', role, segmentName(database), level),
  patternGrant: (b: string, role: string, pattern: string) => addressOf(b, 'pattern-grant', role, segmentName(pattern)),
  password: (b: string, name: string) => addressOf(b, 'password', name),
};

const sorted = <T extends string>(xs: Iterable<T>): T[] => [...new Set(xs)].sort();

/** The privileges one level's grant resource holds, for a table scope. */
export function mysqlGrantPrivileges(level: Level, tables: MysqlTableScope): MysqlGrantPrivileges {
  const inc = sorted(mysqlLevelIncrement(level));
  return tables === '*' ? { database: inc, tables: [] } : { database: [], tables: inc };
}

export function mysqlRoleResource(backend: string, name: string, attrs: MysqlRoleAttrs = { privileges: [] }): MysqlResourceOf<'role'> {
  return { address: mysqlAddress.role(backend, name), backend, kind: 'role', name, attrs, immutable: [], deps: [] };
}

/** A principal's account; its own role (of the same name) must exist first. */
export function mysqlAccountResource(backend: string, name: string, attrs: MysqlAccountAttrs): MysqlResourceOf<'account'> {
  return {
    address: mysqlAddress.account(backend, name),
    backend,
    kind: 'account',
    name,
    attrs,
    immutable: ['host'],
    deps: [mysqlAddress.role(backend, name)],
  };
}

/** What a principal's account is: nothing of its own but its role, active at login. */
export const desiredAccount = (name: string, host: string): MysqlAccountAttrs => ({ host, locked: false, roles: [name], defaultRole: name, privileges: [] });

export function mysqlMembershipResource(backend: string, group: string, member: string): MysqlResourceOf<'membership'> {
  return {
    address: mysqlAddress.membership(backend, group, member),
    backend,
    kind: 'membership',
    name: member,
    attrs: { group, member },
    immutable: ['group', 'member'],
    deps: [mysqlAddress.role(backend, member), mysqlAddress.role(backend, group)],
  };
}

export function mysqlGrantResource(backend: string, attrs: MysqlGrantAttrs): MysqlResourceOf<'grant'> {
  return {
    address: mysqlAddress.grant(backend, attrs.role, attrs.database, attrs.level),
    backend,
    kind: 'grant',
    name: attrs.role,
    attrs,
    immutable: ['role', 'database', 'level'],
    deps: [mysqlAddress.role(backend, attrs.role)],
  };
}

export function mysqlPatternGrantResource(backend: string, role: string, pattern: string, privileges: string[]): MysqlResourceOf<'pattern-grant'> {
  return {
    address: mysqlAddress.patternGrant(backend, role, pattern),
    backend,
    kind: 'pattern-grant',
    name: role,
    attrs: { role, pattern, privileges: sorted(privileges) },
    immutable: ['role', 'pattern'],
    deps: [mysqlAddress.role(backend, role)],
  };
}

export function mysqlPasswordResource(
  backend: string,
  name: string,
  host: string,
  deps: string[],
  lifecycle?: Resource['lifecycle'],
): MysqlResourceOf<'password'> {
  return {
    address: mysqlAddress.password(backend, name),
    backend,
    kind: 'password',
    name,
    attrs: { account: name, host },
    immutable: ['account', 'host'],
    deps: sorted([mysqlAddress.account(backend, name), ...deps]),
    ...(lifecycle ? { lifecycle } : {}),
  };
}
