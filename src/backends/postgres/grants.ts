// grant/<role>/<database>.<schema>/<level>: the privileges one level adds, on a schema, its tables
// and sequences, and by default on the tables created in it later.
//
// Default privileges (future tables): PostgreSQL applies `ALTER DEFAULT PRIVILEGES FOR ROLE r`
// only to objects that r creates. The role that creates a schema's tables is normally its owner
// (the migrations role), but a schema can hold tables created by others; so defaults are set FOR
// ROLE the schema owner and every role owning a relation in the schema today. A table created
// later by yet another role shows up as missing privileges on the next plan, and the apply then
// covers that role too. The connecting role must be a superuser or a member of those owners.
import { BackendError } from '../../core/errors.js';
import type { GrantAttrs } from '../../model/postgres.js';
import {
  levelOfSchemaPrivilege,
  levelOfSequencePrivilege,
  levelOfTablePrivilege,
  type SchemaPrivilege,
  type SequencePrivilege,
  type TablePrivilege,
} from '../../model/postgres-levels.js';
import { defaultOwners, isDatagrantRole, type RelationRow } from './catalog.js';
import { atomic, lock } from './connection.js';
import { roleAndDatabase } from './connect.js';
import { confirm, type Handler, type PgContext } from './context.js';
import { sqlState } from './errors.js';
import { ROLES_FROM } from './ownership.js';
import { schemaObjects } from './read.js';
import { ident, literal, qualified } from './sql.js';
import { schemaGrantShortfall, type SchemaAclFact } from './verify.js';

const TABLE_PRIVILEGES: TablePrivilege[] = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'];
const SEQUENCE_PRIVILEGES: SequencePrivilege[] = ['SELECT', 'UPDATE', 'USAGE'];
const SCHEMA_PRIVILEGES: SchemaPrivilege[] = ['USAGE', 'CREATE'];

const sortedUnique = (xs: string[]) => [...new Set(xs)].sort();

export const executeGrant: Handler<'grant'> = async (ctx, change) => {
  if (change.before && change.action !== 'update') await convergeGrant(ctx, change.before.attrs, false, change.address);
  if (change.after) await convergeGrant(ctx, change.after.attrs, true, change.address);
  return {};
};

/**
 * Makes the privileges that `attrs.level` adds equal `attrs` (want) or removes them (!want), in
 * one transaction: revoke the level's privileges everywhere in the schema, then grant the wanted
 * ones. Other sessions never see the intermediate state.
 */
async function convergeGrant(ctx: PgContext, attrs: GrantAttrs, want: boolean, address: string): Promise<void> {
  const { name, conn, owner } = ctx;
  const { role, database, schema, level } = attrs;
  const { live, exists } = await conn.admin((q) => roleAndDatabase(ctx, q, role, database), false);
  if (!want && (!exists || !live)) return; // already gone
  if (!exists) throw owner.missing('database', database, address);
  if (!live) throw owner.missing('role', role, address);
  if (!live.comment) throw owner.notOurs(role, address);
  const oid = live.oid;

  try {
    await conn.on(database, async (q) => {
      await lock(q, `schema:${database}.${schema}`);
      const s = await q('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (s.rowCount === 0) {
        if (!want) return;
        throw new BackendError(`${name}: schema ${schema} does not exist in database ${database}`, name, 'missing-schema', false, address);
      }
      const { owners: schemaOwners, relations } = await schemaObjects(q, database, [schema]);
      const candidates = sortedUnique([schemaOwners[0]!.owner, ...relations.map((r) => r.owner)]);
      const managed = new Set(
        (
          (await q(`SELECT r.rolname, d.description AS comment ${ROLES_FROM} WHERE r.rolname = ANY($1::text[])`, [candidates])).rows as {
            rolname: string;
            comment: string | null;
          }[]
        )
          .filter((r) => isDatagrantRole(r.comment))
          .map((r) => r.rolname),
      );
      const owners = defaultOwners(
        schemaOwners[0]!.owner,
        relations.map((r) => r.owner),
        managed,
      );
      // Defaults someone set for other owners are revoked too.
      const defOwners = (
        (
          await q(
            `SELECT DISTINCT pg_get_userbyid(d.defaclrole) AS owner
               FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace CROSS JOIN LATERAL aclexplode(d.defaclacl) a
              WHERE n.nspname = $1 AND a.grantee = $2::oid`,
            [schema, oid],
          )
        ).rows as { owner: string }[]
      ).map((r) => r.owner);

      const tablePrivs = TABLE_PRIVILEGES.filter((p) => levelOfTablePrivilege(p) === level);
      const seqPrivs = SEQUENCE_PRIVILEGES.filter((p) => levelOfSequencePrivilege(p) === level);
      const schemaPrivs = SCHEMA_PRIVILEGES.filter((p) => levelOfSchemaPrivilege(p) === level);
      const sch = ident(schema);
      const r = ident(role);

      const statements: string[] = [];
      // One REVOKE per privilege: PostgreSQL revokes as one grantor per statement, the first role
      // (datagrant, then the roles whose privileges it has) holding the grant option for every
      // privilege named. Named together with one datagrant holds no grant option for (CREATE on a
      // schema, say), USAGE would be revoked as the schema's owner, leaving datagrant's own grant.
      for (const p of schemaPrivs) statements.push(`REVOKE ${p} ON SCHEMA ${sch} FROM ${r}`);
      // A table-level REVOKE also revokes the same privilege granted on single columns.
      for (const p of tablePrivs) statements.push(`REVOKE ${p} ON ALL TABLES IN SCHEMA ${sch} FROM ${r}`);
      for (const p of seqPrivs) statements.push(`REVOKE ${p} ON ALL SEQUENCES IN SCHEMA ${sch} FROM ${r}`);
      for (const o of sortedUnique([...owners, ...defOwners])) {
        if (tablePrivs.length)
          statements.push(`ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(o)} IN SCHEMA ${sch} REVOKE ${tablePrivs.join(', ')} ON TABLES FROM ${r}`);
        if (seqPrivs.length)
          statements.push(`ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(o)} IN SCHEMA ${sch} REVOKE ${seqPrivs.join(', ')} ON SEQUENCES FROM ${r}`);
      }
      if (want) statements.push(...grantLevel(ctx, attrs, relations, owners, address));
      // What the role holds now in the schema, read back in the same message.
      const n = literal(schema);
      const grantee = `${literal(oid)}::oid`;
      statements.push(
        `SELECT 'SCHEMA' AS kind, NULL::text AS relation, NULL::text AS "column", a.privilege_type AS privilege, pg_get_userbyid(a.grantor) AS grantor
           FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
          WHERE n.nspname = ${n} AND a.grantee = ${grantee}
         UNION ALL
         SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname::text, NULL, a.privilege_type, pg_get_userbyid(a.grantor)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN LATERAL aclexplode(c.relacl) a
          WHERE n.nspname = ${n} AND c.relkind IN ('r','p','v','m','f','S') AND a.grantee = ${grantee}
         UNION ALL
         SELECT 'COLUMN', c.relname::text, att.attname::text, a.privilege_type, pg_get_userbyid(a.grantor)
           FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN LATERAL aclexplode(att.attacl) a
          WHERE n.nspname = ${n} AND att.attacl IS NOT NULL AND a.grantee = ${grantee}`,
      );
      const acl = (await atomic(q, statements)).at(-1)!;
      const found = schemaGrantShortfall({
        schema,
        levelPrivileges: { schema: schemaPrivs, tables: tablePrivs, sequences: seqPrivs },
        privileges: want ? attrs.privileges : undefined,
        scope: attrs.tables,
        relations,
        facts: acl.rows as SchemaAclFact[],
      });
      await confirm(ctx, q, address, role, found);
    });
  } catch (e) {
    if (!want && sqlState(e) === '3D000') return; // database dropped meanwhile
    throw e;
  }
}

/** The GRANTs of one level's privileges on a schema, its tables and sequences, and its defaults. */
function grantLevel(ctx: PgContext, attrs: GrantAttrs, relations: RelationRow[], owners: string[], address: string): string[] {
  const { name } = ctx;
  const { role, database, schema, tables } = attrs;
  const p = attrs.privileges;
  const sch = ident(schema);
  const r = ident(role);
  const out: string[] = [];
  if (p.schema.length) out.push(`GRANT ${p.schema.join(', ')} ON SCHEMA ${sch} TO ${r}`);
  if (tables === '*') {
    if (p.tables.length) out.push(`GRANT ${p.tables.join(', ')} ON ALL TABLES IN SCHEMA ${sch} TO ${r}`);
    if (p.sequences.length) out.push(`GRANT ${p.sequences.join(', ')} ON ALL SEQUENCES IN SCHEMA ${sch} TO ${r}`);
  } else {
    const missing = tables.filter((t) => !relations.some((rel) => rel.kind === 'table' && rel.name === t));
    if (missing.length) {
      throw new BackendError(
        `${name}: table${missing.length > 1 ? 's' : ''} ${missing.map((t) => `${schema}.${t}`).join(', ')} not found in database ${database}`,
        name,
        'missing-table',
        false,
        address,
      );
    }
    if (p.tables.length) out.push(`GRANT ${p.tables.join(', ')} ON TABLE ${tables.map((t) => qualified(schema, t)).join(', ')} TO ${r}`);
    const seqs = relations.filter((rel) => rel.kind === 'sequence' && rel.ownedBy !== null && tables.includes(rel.ownedBy)).map((rel) => rel.name);
    if (p.sequences.length && seqs.length)
      out.push(
        `GRANT ${p.sequences.join(', ')} ON SEQUENCE ${seqs
          .sort()
          .map((sq) => qualified(schema, sq))
          .join(', ')} TO ${r}`,
      );
  }
  for (const o of owners) {
    if (p.defaultTables.length)
      out.push(`ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(o)} IN SCHEMA ${sch} GRANT ${p.defaultTables.join(', ')} ON TABLES TO ${r}`);
    if (p.defaultSequences.length)
      out.push(`ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(o)} IN SCHEMA ${sch} GRANT ${p.defaultSequences.join(', ')} ON SEQUENCES TO ${r}`);
  }
  return out;
}
