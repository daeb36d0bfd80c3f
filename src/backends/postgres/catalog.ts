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
  type GrantPrivileges,
  type TableScope,
} from '../../compile/postgres/compile.js';
import {
  levelIncrement,
  levelOfSchemaPrivilege,
  levelOfSequencePrivilege,
  levelOfTablePrivilege,
  type SchemaPrivilege,
  type SequencePrivilege,
  type TablePrivilege,
} from '../../compile/postgres/levels.js';

export const MARKER = 'managed';

/** What datagrant keeps in `COMMENT ON ROLE`: the ownership marker and the current password's id. */
export interface RoleComment {
  datagrant: typeof MARKER;
  credential?: string;
  createdAt?: string;
  /** Fingerprint of the verifier datagrant set, to notice a password changed by hand. */
  verifier?: string;
}

export function parseComment(comment: string | null): RoleComment | undefined {
  if (!comment) return undefined;
  try {
    const v = JSON.parse(comment) as unknown;
    if (v && typeof v === 'object' && (v as { datagrant?: unknown }).datagrant === MARKER) return v as RoleComment;
  } catch {
    // An unparseable comment is someone else's: the role is not ours.
  }
  return undefined;
}

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

  for (const r of f.roles) {
    out.push(roleResource(b, r.name, { login: r.login, validUntil: r.validUntil, flags: sorted(r.flags) }));
    const c = r.comment;
    const known = f.credentials.find(
      (k) => k.address === pgAddress.password(b, r.name) && k.state === 'current' && k.credentialId === c.credential,
    );
    // The password counts only if the store holds it and nobody set another one by hand;
    // otherwise it is absent and the plan issues a new one.
    const untouched = r.verifierFingerprint === undefined || (c.verifier !== undefined && r.verifierFingerprint === c.verifier);
    if (r.login && c.credential && known && untouched) {
      out.push({ ...passwordResource(b, r.name, []), meta: { credentialId: c.credential, createdAt: c.createdAt ?? known.createdAt } });
    }
  }

  for (const m of f.memberships) {
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
  for (const d of f.defaultAcl) {
    if (!managed.has(d.role)) continue;
    const level = d.objtype === 'sequence' ? levelOfSequencePrivilege(d.privilege as SequencePrivilege) : levelOfTablePrivilege(d.privilege as TablePrivilege);
    tier(d.database, d.schema, d.role, level);
  }

  for (const t of tiers.values()) {
    const inSchema = (x: { database: string; schema: string }) => x.database === t.database && x.schema === t.schema;
    const rels = f.relations.filter(inSchema);
    const tables = rels.filter((r) => r.kind === 'table').map((r) => r.name);
    const sequences = rels.filter((r) => r.kind === 'sequence');
    const schemaOwner = f.schemas.find(inSchema)?.owner ?? '';
    const owners = defaultOwners(schemaOwner, rels.map((r) => r.owner), managed);

    const inc = levelIncrement(t.level);
    const tablePrivs = (['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] as TablePrivilege[]).filter((p) => levelOfTablePrivilege(p) === t.level);
    const seqPrivs = ALL_SEQUENCE_PRIVILEGES.filter((p) => levelOfSequencePrivilege(p) === t.level);

    const relAcl = f.relationAcl.filter((a) => inSchema(a) && a.role === t.role);
    const has = (rel: string, kind: 'table' | 'sequence', p: string) => relAcl.some((a) => a.relation === rel && a.kind === kind && a.privilege === p);

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
        const holders = sorted(f.defaultAcl.filter((d) => inSchema(d) && d.role === t.role && d.objtype === objtype && d.privilege === p).map((d) => d.owner));
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
      schema: sorted(f.schemaAcl.filter((a) => inSchema(a) && a.role === t.role && levelOfSchemaPrivilege(a.privilege as SchemaPrivilege) === t.level).map((a) => a.privilege)),
      tables: sorted(tablePrivs.flatMap((p) => coverage(p, scope, 'table', [], true))),
      sequences: sorted(seqPrivs.flatMap((p) => coverage(p, seqScope, 'sequence', seqOutside, inc.sequences.includes(p)))),
      defaultTables: sorted(defaultTables),
      defaultSequences: sorted(defaultSequences),
    };
    out.push(grantResource(b, { role: t.role, database: t.database, schema: t.schema, level: t.level, tables: tableScope, privileges }));
  }

  return out.sort((x, y) => (x.address < y.address ? -1 : x.address > y.address ? 1 : 0));
}
