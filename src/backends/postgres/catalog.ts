// Catalog facts → the resources the compiler emits. Pure, so the mapping is testable without a
// server: after an apply of the compiled state, this yields exactly the compiled resources, and
// anything granted by hand to an owned role yields a difference.
import type { KnownCredential } from '../backend.js';
import type { Level, Resource } from '../../core/types.js';
import {
  connectResource,
  grantResource,
  membershipResource,
  passwordResource,
  pgAddress,
  roleResource,
  sessionLoginResource,
  type GrantPrivileges,
  type TableScope,
} from '../../model/postgres.js';
import {
  levelIncrement,
  levelOfSchemaPrivilege,
  levelOfSequencePrivilege,
  levelOfTablePrivilege,
  type SchemaPrivilege,
  type SequencePrivilege,
  type TablePrivilege,
} from '../../model/postgres-levels.js';

export const MARKER = 'managed';

/** What datagrant keeps in `COMMENT ON ROLE`: the ownership marker and the current password's id. */
export interface RoleComment {
  datagrant: typeof MARKER;
  /** Set when several datagrant installations (or test runs) share one server: each sees only its own. */
  scope?: string;
  /** The installation (state) the role belongs to; absent on roles made before installations had ids. */
  installation?: string;
  credential?: string;
  createdAt?: string;
  /** Fingerprint of the verifier datagrant set, to notice a password changed by hand. */
  verifier?: string;
  /** Set on a session login (issue 12): the broker made it for a temporary principal's session. */
  kind?: 'session';
  /** A session login's principal, whose role it is a member of. */
  principal?: string;
  /** When the session login's VALID UNTIL ends it, as set (ISO). */
  validUntil?: string;
}

function parseMarker(comment: string | null): RoleComment | undefined {
  if (!comment) return undefined;
  try {
    const v = JSON.parse(comment) as unknown;
    if (v && typeof v === 'object' && (v as { datagrant?: unknown }).datagrant === MARKER) return v as RoleComment;
  } catch {
    // An unparseable comment is someone else's: the role is not ours.
  }
  return undefined;
}

/**
 * The marker, if the comment carries datagrant's marker for this scope and no other installation's
 * id; undefined: not ours.
 */
export function parseComment(comment: string | null, scope?: string, installation?: string): RoleComment | undefined {
  const c = parseMarker(comment);
  if (!c || (c.scope ?? undefined) !== (scope ?? undefined)) return undefined;
  return installation !== undefined && c.installation !== undefined && c.installation !== installation ? undefined : c;
}

/**
 * The marker, only if it names this installation (when there is one): what effective access counts
 * as datagrant's. A marker without an installation id is an older version's (roles made before
 * installations had ids; roles.ts writes the id on their first change), and parseComment still
 * lets datagrant change such a role — but anyone with CREATEROLE can write that marker on a role
 * of their own, so as access it is not datagrant's until it carries the id.
 */
export function parseOwnComment(comment: string | null, scope?: string, installation?: string): RoleComment | undefined {
  const c = parseComment(comment, scope, installation);
  return c && (installation === undefined || c.installation === installation) ? c : undefined;
}

/** The other installation a role of this scope belongs to, if it belongs to another one. */
export function otherInstallation(comment: string | null, scope?: string, installation?: string): string | undefined {
  const c = parseMarker(comment);
  if (!c || (c.scope ?? undefined) !== (scope ?? undefined) || installation === undefined) return undefined;
  return c.installation !== undefined && c.installation !== installation ? c.installation : undefined;
}

/** Any datagrant installation's role (whatever its scope): never a table owner to set defaults for. */
export const isDatagrantRole = (comment: string | null) => parseMarker(comment) !== undefined;

export interface RoleRow {
  name: string;
  login: boolean;
  validUntil: string | null;
  flags: string[];
  comment: RoleComment;
  /** sha-256 fingerprint of the stored verifier when the catalog could be read (superuser), else undefined. */
  verifierFingerprint?: string | null;
}

export interface RelationRow {
  database: string;
  schema: string;
  name: string;
  kind: 'table' | 'sequence';
  owner: string;
  /** For a sequence: the table whose column owns it (serial / identity). */
  ownedBy: string | null;
}

export interface AclRow {
  database: string;
  schema: string;
  /** Relation name for relation ACLs. */
  relation?: string;
  kind?: 'table' | 'sequence';
  role: string;
  privilege: string;
}

export interface DefaultAclRow {
  database: string;
  schema: string;
  /** The role whose future objects the default applies to (FOR ROLE). */
  owner: string;
  objtype: 'table' | 'sequence';
  role: string;
  privilege: string;
}

export interface CatalogFacts {
  backend: string;
  roles: RoleRow[];
  memberships: { group: string; member: string }[];
  databaseAcl: { database: string; role: string; privilege: string }[];
  /** Schemas of interest: owner and relations. */
  schemas: { database: string; schema: string; owner: string }[];
  relations: RelationRow[];
  schemaAcl: AclRow[];
  relationAcl: AclRow[];
  /** Column privileges (GRANT SELECT (col) ON t): never granted by datagrant, so always drift. */
  columnAcl: AclRow[];
  defaultAcl: DefaultAclRow[];
  credentials: KnownCredential[];
}

const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();
const key = (...parts: string[]) => JSON.stringify(parts);

/** The roles whose future tables get default privileges: the schema owner and every owner of a relation in it. */
export function defaultOwners(schemaOwner: string, relationOwners: Iterable<string>, managed: Set<string>): string[] {
  return sorted([schemaOwner, ...relationOwners]).filter((o) => !managed.has(o));
}

const ALL_SEQUENCE_PRIVILEGES: SequencePrivilege[] = ['SELECT', 'UPDATE', 'USAGE'];

export function resourcesFromCatalog(f: CatalogFacts): Resource[] {
  const b = f.backend;
  const out: Resource[] = [];
  const managed = new Set(f.roles.map((r) => r.name));

  const knownIds = new Map(f.credentials.filter((k) => k.state === 'current').map((k) => [k.address, k]));
  // A session login's own membership (in its principal's role) is part of the login, not a resource.
  const sessions = new Set(f.roles.filter((r) => r.comment.kind === 'session').map((r) => r.name));
  for (const r of f.roles) {
    if (sessions.has(r.name)) {
      const principal = r.comment.principal ?? '';
      const memberOf = sorted(f.memberships.filter((m) => m.member === r.name).map((m) => m.group));
      out.push({
        ...sessionLoginResource(b, principal, r.name, { principal, login: r.login, memberOf, flags: sorted(r.flags) }),
        meta: { validUntil: r.validUntil },
      });
      continue;
    }
    out.push(roleResource(b, r.name, { login: r.login, validUntil: r.validUntil, flags: sorted(r.flags) }));
    const c = r.comment;
    const known = knownIds.get(pgAddress.password(b, r.name));
    // The password counts only if the store holds it and nobody set another one by hand;
    // otherwise it is absent and the plan issues a new one.
    const untouched = r.verifierFingerprint === undefined || (c.verifier !== undefined && r.verifierFingerprint === c.verifier);
    if (r.login && c.credential && known && known.credentialId === c.credential && untouched) {
      out.push({ ...passwordResource(b, r.name, []), meta: { credentialId: c.credential, createdAt: c.createdAt ?? known.createdAt } });
    }
  }

  for (const m of f.memberships) {
    if (sessions.has(m.member)) continue;
    if (managed.has(m.group) || managed.has(m.member)) out.push(membershipResource(b, m.group, m.member));
  }

  const connect = new Map<string, { role: string; database: string; privileges: string[] }>();
  for (const a of f.databaseAcl) {
    if (!managed.has(a.role)) continue;
    const k = key(a.role, a.database);
    const e = connect.get(k) ?? { role: a.role, database: a.database, privileges: [] };
    e.privileges.push(a.privilege);
    connect.set(k, e);
  }
  for (const e of connect.values()) out.push(connectResource(b, e.role, e.database, e.privileges));

  // An owner holds every privilege on what it owns, listed in the ACL once it granted any: for a
  // session login, which may create objects where the principal may, that is not a grant.
  const relationOwner = new Map(f.relations.map((r) => [key(r.database, r.schema, r.name), r.owner]));
  const schemaOwners = new Map(f.schemas.map((x) => [key(x.database, x.schema), x.owner]));
  const owns = (a: AclRow) =>
    sessions.has(a.role) &&
    (a.relation !== undefined ? relationOwner.get(key(a.database, a.schema, a.relation)) : schemaOwners.get(key(a.database, a.schema))) === a.role;
  f = {
    ...f,
    schemaAcl: f.schemaAcl.filter((a) => !owns(a)),
    relationAcl: f.relationAcl.filter((a) => !owns(a)),
    columnAcl: f.columnAcl.filter((a) => !owns(a)),
  };

  // Grants: every fact is attributed to the level whose increment holds that privilege.
  type Tier = { database: string; schema: string; role: string; level: Level };
  const tiers = new Map<string, Tier>();
  const tier = (database: string, schema: string, role: string, level: Level) => {
    const k = key(database, schema, role, level);
    if (!tiers.has(k)) tiers.set(k, { database, schema, role, level });
  };
  for (const a of f.schemaAcl) if (managed.has(a.role)) tier(a.database, a.schema, a.role, levelOfSchemaPrivilege(a.privilege as SchemaPrivilege));
  for (const a of f.relationAcl) {
    if (!managed.has(a.role)) continue;
    const level = a.kind === 'sequence' ? levelOfSequencePrivilege(a.privilege as SequencePrivilege) : levelOfTablePrivilege(a.privilege as TablePrivilege);
    tier(a.database, a.schema, a.role, level);
  }
  for (const a of f.columnAcl) if (managed.has(a.role)) tier(a.database, a.schema, a.role, levelOfTablePrivilege(a.privilege as TablePrivilege));
  for (const d of f.defaultAcl) {
    if (!managed.has(d.role)) continue;
    const level = d.objtype === 'sequence' ? levelOfSequencePrivilege(d.privilege as SequencePrivilege) : levelOfTablePrivilege(d.privilege as TablePrivilege);
    tier(d.database, d.schema, d.role, level);
  }

  // Facts indexed by schema and by (schema, role): a thousand roles must not mean a quadratic read.
  const group = <T>(xs: T[], k: (x: T) => string) => {
    const m = new Map<string, T[]>();
    for (const x of xs) {
      const kk = k(x);
      const list = m.get(kk);
      if (list) list.push(x);
      else m.set(kk, [x]);
    }
    return m;
  };
  const relationsBySchema = group(f.relations, (r) => key(r.database, r.schema));
  const ownerBySchema = new Map(f.schemas.map((x) => [key(x.database, x.schema), x.owner]));
  const schemaAclBy = group(f.schemaAcl, (a) => key(a.database, a.schema, a.role));
  const relationAclBy = group(f.relationAcl, (a) => key(a.database, a.schema, a.role));
  const defaultAclBy = group(f.defaultAcl, (a) => key(a.database, a.schema, a.role));
  const columnAclBy = group(f.columnAcl, (a) => key(a.database, a.schema, a.role));

  for (const t of tiers.values()) {
    const schemaKey = key(t.database, t.schema);
    const roleKey = key(t.database, t.schema, t.role);
    const rels = relationsBySchema.get(schemaKey) ?? [];
    const tables = rels.filter((r) => r.kind === 'table').map((r) => r.name);
    const sequences = rels.filter((r) => r.kind === 'sequence');
    const schemaOwner = ownerBySchema.get(schemaKey) ?? '';
    const owners = defaultOwners(
      schemaOwner,
      rels.map((r) => r.owner),
      managed,
    );

    const inc = levelIncrement(t.level);
    const tablePrivs = (['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] as TablePrivilege[]).filter(
      (p) => levelOfTablePrivilege(p) === t.level,
    );
    const seqPrivs = ALL_SEQUENCE_PRIVILEGES.filter((p) => levelOfSequencePrivilege(p) === t.level);

    const held = new Set((relationAclBy.get(roleKey) ?? []).map((a) => key(a.relation ?? '', a.kind ?? '', a.privilege)));
    const has = (rel: string, kind: 'table' | 'sequence', p: string) => held.has(key(rel, kind, p));
    const defaultAcl = defaultAclBy.get(roleKey) ?? [];

    const scope = tables.filter((tb) => tablePrivs.some((p) => has(tb, 'table', p))).sort();
    const coverage = (p: string, objs: string[], kind: 'table' | 'sequence', outside: string[], expected: boolean) => {
      const inCount = objs.filter((o) => has(o, kind, p)).length;
      const outCount = outside.filter((o) => has(o, kind, p)).length;
      let state: 'full' | 'none' | 'partial' =
        objs.length === 0 ? (expected ? 'full' : 'none') : inCount === objs.length ? 'full' : inCount === 0 ? 'none' : 'partial';
      if (outCount > 0) state = 'partial';
      return state === 'full' ? [p] : state === 'partial' ? [`${p} (partial)`] : [];
    };
    const defaults = (objtype: 'table' | 'sequence', privs: string[]) =>
      privs.flatMap((p) => {
        const holders = sorted(defaultAcl.filter((d) => d.objtype === objtype && d.privilege === p).map((d) => d.owner));
        if (holders.length === 0) return [];
        const full = owners.length > 0 && owners.every((o) => holders.includes(o)) && holders.every((h) => owners.includes(h));
        return full ? [p] : [`${p} (partial)`];
      });

    const defaultTables = defaults('table', tablePrivs);
    const defaultSequences = defaults('sequence', seqPrivs);
    const all = defaultTables.some((p) => !p.endsWith('(partial)')) && scope.length === tables.length;
    const tableScope: TableScope = all ? '*' : scope;
    const seqScope = all ? sequences.map((s) => s.name) : sequences.filter((s) => s.ownedBy !== null && scope.includes(s.ownedBy)).map((s) => s.name);
    const seqOutside = sequences.map((s) => s.name).filter((s) => !seqScope.includes(s));

    const privileges: GrantPrivileges = {
      schema: sorted(
        (schemaAclBy.get(roleKey) ?? []).filter((a) => levelOfSchemaPrivilege(a.privilege as SchemaPrivilege) === t.level).map((a) => a.privilege),
      ),
      tables: sorted([
        ...tablePrivs.flatMap((p) => coverage(p, scope, 'table', [], true)),
        ...(columnAclBy.get(roleKey) ?? [])
          .filter((a) => levelOfTablePrivilege(a.privilege as TablePrivilege) === t.level)
          .map((a) => `${a.privilege} (columns)`),
      ]),
      sequences: sorted(seqPrivs.flatMap((p) => coverage(p, seqScope, 'sequence', seqOutside, inc.sequences.includes(p)))),
      defaultTables: sorted(defaultTables),
      defaultSequences: sorted(defaultSequences),
    };
    out.push(grantResource(b, { role: t.role, database: t.database, schema: t.schema, level: t.level, tables: tableScope, privileges }));
  }

  return out.sort((x, y) => (x.address < y.address ? -1 : x.address > y.address ? 1 : 0));
}
