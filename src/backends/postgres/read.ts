// Reading what datagrant owns on the server: its roles, their memberships and database privileges
// from the URL's database, then the ACLs of only those databases where an owned role appears in
// pg_shdepend, so unrelated databases are never opened. catalog.ts turns the rows into resources.
import type { ReadOptions } from '../backend.js';
import type { ActualState, ForeignObject } from '../../core/types.js';
import { resourcesFromCatalog, type AclRow, type CatalogFacts, type DefaultAclRow, type RelationRow, type RoleRow } from './catalog.js';
import type { Query } from './connection.js';
import type { PgContext } from './context.js';
import { sqlState } from './errors.js';
import { ROLE_FLAGS, flagsOf } from './ownership.js';
import { verifierFingerprint } from './sql.js';

const sortedUnique = (xs: string[]) => [...new Set(xs)].sort();

export async function readCatalog(ctx: PgContext, ropts: ReadOptions): Promise<ActualState> {
  const { name, conn, owner } = ctx;
  const shared = await conn.admin(async (q) => {
    const roles = await q(
      `SELECT oid::int8::text AS oid, rolname, rolcanlogin, ${ROLE_FLAGS.map(([c]) => c).join(', ')}, rolinherit,
              CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' THEN NULL
                   ELSE (extract(epoch FROM rolvaliduntil) * 1000)::float8 END AS valid_until_ms,
              shobj_description(oid, 'pg_authid') AS comment
         FROM pg_roles
        WHERE shobj_description(oid, 'pg_authid') LIKE '%datagrant%'`,
    );
    const foreign: ForeignObject[] = [];
    for (const row of roles.rows as Record<string, unknown>[]) {
      const other = owner.otherInstallation(row.comment as string | null);
      if (other) foreign.push({ address: `${name}:role/${String(row.rolname)}`, installation: other });
    }
    const owned = (roles.rows as Record<string, unknown>[])
      .map((row) => ({ row, comment: owner.parse(row.comment as string | null) }))
      .filter((x) => x.comment !== undefined);
    const oids = owned.map((x) => String(x.row.oid));
    const members = await q(
      `SELECT g.rolname AS grp, m.rolname AS member
         FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
        WHERE (a.roleid = ANY($1::oid[]) OR a.member = ANY($1::oid[]))
          -- PostgreSQL 16 makes a non-superuser creator a member of each role it creates: not drift.
          AND m.rolname <> current_user`,
      [oids],
    );
    const dbAcl = await q(
      `SELECT d.datname, r.rolname, a.privilege_type
         FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee
        WHERE a.grantee = ANY($1::oid[])`,
      [oids],
    );
    const dbs = await q(
      `SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
        WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = ANY($1::oid[]) AND d.datallowconn`,
      [oids],
    );
    // Only a superuser can read verifiers; without that, a password changed by hand goes unnoticed.
    let fingerprints: Map<string, string | null> | undefined;
    try {
      await q('SAVEPOINT authid');
      const pw = await q('SELECT rolname, rolpassword FROM pg_authid WHERE oid = ANY($1::oid[])', [oids]);
      fingerprints = new Map(
        (pw.rows as { rolname: string; rolpassword: string | null }[]).map((r) => [r.rolname, r.rolpassword ? verifierFingerprint(r.rolpassword) : null]),
      );
    } catch {
      await q('ROLLBACK TO SAVEPOINT authid');
    }
    return {
      owned,
      foreign,
      oids,
      members: members.rows as { grp: string; member: string }[],
      dbAcl: dbAcl.rows as { datname: string; rolname: string; privilege_type: string }[],
      databases: (dbs.rows as { datname: string }[]).map((r) => r.datname),
      fingerprints,
    };
  });

  const roles: RoleRow[] = shared.owned.map(({ row, comment }) => {
    const ms = row.valid_until_ms as number | null;
    const rolname = String(row.rolname);
    return {
      name: rolname,
      login: row.rolcanlogin === true,
      validUntil: ms === null ? null : new Date(Math.round(ms)).toISOString(),
      flags: flagsOf(row),
      comment: comment!,
      ...(shared.fingerprints ? { verifierFingerprint: shared.fingerprints.get(rolname) ?? null } : {}),
    };
  });

  const facts: CatalogFacts = {
    backend: name,
    roles,
    memberships: shared.members.map((m) => ({ group: m.grp, member: m.member })),
    databaseAcl: shared.dbAcl.map((r) => ({ database: r.datname, role: r.rolname, privilege: r.privilege_type })),
    schemas: [],
    relations: [],
    schemaAcl: [],
    relationAcl: [],
    columnAcl: [],
    defaultAcl: [],
    credentials: ropts.credentials,
  };

  for (const database of shared.databases.sort()) {
    try {
      await readDatabase(ctx, database, shared.oids, facts);
    } catch (e) {
      // Dropped between the two queries: nothing of ours is left in it.
      if (sqlState(e) === '3D000') continue;
      throw e;
    }
  }
  return { backend: name, resources: resourcesFromCatalog(facts), ...(shared.foreign.length ? { foreign: shared.foreign } : {}) };
}

async function readDatabase(ctx: PgContext, database: string, oids: string[], facts: CatalogFacts): Promise<void> {
  await ctx.conn.on(
    database,
    async (q) => {
      const nsp = await q(
        `SELECT n.nspname, r.rolname, a.privilege_type
           FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE a.grantee = ANY($1::oid[])`,
        [oids],
      );
      const rel = await q(
        `SELECT n.nspname, c.relname, c.relkind = 'S' AS is_seq, r.rolname, a.privilege_type
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE c.relkind IN ('r','p','v','m','f','S') AND a.grantee = ANY($1::oid[])`,
        [oids],
      );
      const col = await q(
        `SELECT DISTINCT n.nspname, c.relname, r.rolname, a.privilege_type
           FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN LATERAL aclexplode(att.attacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE att.attacl IS NOT NULL AND c.relkind IN ('r','p','v','m','f') AND a.grantee = ANY($1::oid[])`,
        [oids],
      );
      // Defaults not tied to a schema (IN SCHEMA omitted) are outside the model and not read.
      const def = await q(
        `SELECT n.nspname, pg_get_userbyid(d.defaclrole) AS owner, d.defaclobjtype, r.rolname, a.privilege_type
           FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
           CROSS JOIN LATERAL aclexplode(d.defaclacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE d.defaclobjtype IN ('r','S') AND a.grantee = ANY($1::oid[])`,
        [oids],
      );
      type Acl = { nspname: string; relname: string; is_seq: boolean; rolname: string; privilege_type: string };
      const nspRows = nsp.rows as Acl[];
      const relRows = rel.rows as Acl[];
      const colRows = col.rows as Acl[];
      const defRows = def.rows as (Acl & { owner: string; defaclobjtype: string })[];
      const schemas = sortedUnique([...nspRows, ...relRows, ...defRows, ...colRows].map((r) => r.nspname));
      const { owners, relations } = await schemaObjects(q, database, schemas);
      facts.schemas.push(...owners);
      facts.relations.push(...relations);
      facts.schemaAcl.push(...nspRows.map((r): AclRow => ({ database, schema: r.nspname, role: r.rolname, privilege: r.privilege_type })));
      facts.relationAcl.push(
        ...relRows.map((r): AclRow => ({
          database,
          schema: r.nspname,
          relation: r.relname,
          kind: r.is_seq ? 'sequence' : 'table',
          role: r.rolname,
          privilege: r.privilege_type,
        })),
      );
      facts.columnAcl.push(
        ...colRows.map((r): AclRow => ({ database, schema: r.nspname, relation: r.relname, kind: 'table', role: r.rolname, privilege: r.privilege_type })),
      );
      facts.defaultAcl.push(
        ...defRows.map((r): DefaultAclRow => ({
          database,
          schema: r.nspname,
          owner: r.owner,
          objtype: r.defaclobjtype === 'S' ? 'sequence' : 'table',
          role: r.rolname,
          privilege: r.privilege_type,
        })),
      );
    },
    false,
  );
}

/** The owners of `schemas` and the relations in them (with the table owning each sequence). */
export async function schemaObjects(q: Query, database: string, schemas: string[]) {
  const own = await q(`SELECT nspname, pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = ANY($1::text[])`, [schemas]);
  const rels = await q(
    `SELECT n.nspname, c.relname, c.relkind = 'S' AS is_seq, pg_get_userbyid(c.relowner) AS owner, t.relname AS owned_by
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_depend dep ON c.relkind = 'S' AND dep.classid = 'pg_class'::regclass AND dep.objid = c.oid
                              AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a','i')
       LEFT JOIN pg_class t ON t.oid = dep.refobjid
      WHERE c.relkind IN ('r','p','v','m','f','S') AND n.nspname = ANY($1::text[])`,
    [schemas],
  );
  return {
    owners: (own.rows as { nspname: string; owner: string }[]).map((r) => ({ database, schema: r.nspname, owner: r.owner })),
    relations: (rels.rows as { nspname: string; relname: string; is_seq: boolean; owner: string; owned_by: string | null }[]).map((r): RelationRow => ({
      database,
      schema: r.nspname,
      name: r.relname,
      kind: r.is_seq ? 'sequence' : 'table',
      owner: r.owner,
      ownedBy: r.owned_by,
    })),
  };
}
