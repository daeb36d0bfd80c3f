// connect/<role>/<database>: the role's privileges on a database (CONNECT), shared by its schemas.
import type { ExecuteResult } from '../backend.js';
import { atomic, lockSql, type Query } from './connection.js';
import { confirm, type Handler, type PgContext } from './context.js';
import { ROLE_COLUMNS, ROLES_FROM, type LiveRole } from './ownership.js';
import { ident, literal } from './sql.js';
import { shortfall, type Held } from './verify.js';

export const executeConnect: Handler<'connect'> = async (ctx, change) => {
  const { role, database } = (change.after ?? change.before)!.attrs;
  const privileges = change.action === 'delete' ? [] : change.after!.attrs.privileges;
  if (change.action === 'replace' && change.before)
    await setDatabasePrivileges(ctx, change.before.attrs.role, change.before.attrs.database, [], change.address);
  return setDatabasePrivileges(ctx, role, database, privileges, change.address);
};

/** The role as it is now (if it exists), and whether the database does: one query. */
export async function roleAndDatabase(ctx: PgContext, q: Query, role: string, database: string): Promise<{ live: LiveRole | undefined; exists: boolean }> {
  const r = await q(
    `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $2) AS database_exists, x.* FROM (SELECT 1) one LEFT JOIN (SELECT ${ROLE_COLUMNS} ${ROLES_FROM} WHERE r.rolname = $1) x ON true`,
    [role, database],
  );
  const row = r.rows[0] as Record<string, unknown> & { database_exists: boolean; rolname: string | null };
  return { live: row.rolname === null ? undefined : ctx.owner.live(row), exists: row.database_exists };
}

/** Makes the role's privileges on the database exactly `privileges`, and reads them back, in one transaction. */
async function setDatabasePrivileges(ctx: PgContext, role: string, database: string, privileges: string[], address: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  await conn.admin(async (q) => {
    const { live, exists } = await roleAndDatabase(ctx, q, role, database);
    if (privileges.length === 0 && (!live || !exists)) return; // already gone
    if (!live) throw owner.missing('role', role, address);
    if (!live.comment) throw owner.notOurs(role, address);
    if (!exists) throw owner.missing('database', database, address);
    const results = await atomic(q, [
      lockSql(`database:${database}`),
      // One REVOKE per privilege, as for schemas (grants.ts): REVOKE ALL revokes as the grantor
      // holding the grant option for all of them, which is the database's owner once datagrant is
      // its member (pg-setup, for a schema public that pg_database_owner owns), not datagrant, whose
      // own CONNECT grant it would leave.
      ...['CONNECT', 'TEMPORARY', 'CREATE'].map((p) => `REVOKE ${p} ON DATABASE ${ident(database)} FROM ${ident(role)}`),
      ...(privileges.length ? [`GRANT ${privileges.join(', ')} ON DATABASE ${ident(database)} TO ${ident(role)}`] : []),
      `SELECT a.privilege_type AS privilege, pg_get_userbyid(a.grantor) AS grantor
         FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
        WHERE d.datname = ${literal(database)} AND a.grantee = ${literal(live.oid)}::oid`,
    ]);
    const on = { kind: 'DATABASE', object: ident(database), label: `database ${database}` };
    const have = (results.at(-1)!.rows as { privilege: string; grantor: string }[]).map((r): Held => ({ ...on, privilege: r.privilege, grantor: r.grantor }));
    await confirm(
      ctx,
      q,
      address,
      role,
      shortfall(
        privileges.map((privilege): Held => ({ ...on, privilege })),
        have,
      ),
    );
  });
  return {};
}
