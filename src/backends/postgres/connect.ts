// connect/<role>/<database>: the role's privileges on a database (CONNECT), shared by its schemas.
import type { ExecuteResult } from '../backend.js';
import { atomic, lockSql, type Query } from './connection.js';
import { confirm, type Handler, type PgContext } from './context.js';
import { ident } from './sql.js';
import { shortfall, type Held } from './verify.js';

export const executeConnect: Handler<'connect'> = async (ctx, change) => {
  const { role, database } = (change.after ?? change.before)!.attrs;
  const privileges = change.action === 'delete' ? [] : change.after!.attrs.privileges;
  if (change.action === 'replace' && change.before)
    await setDatabasePrivileges(ctx, change.before.attrs.role, change.before.attrs.database, [], change.address);
  return setDatabasePrivileges(ctx, role, database, privileges, change.address);
};

export async function databaseExists(q: Query, database: string): Promise<boolean> {
  return (await q('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 1;
}

async function setDatabasePrivileges(ctx: PgContext, role: string, database: string, privileges: string[], address: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  await conn.admin(async (q) => {
    const live = await owner.liveRole(q, role);
    const exists = await databaseExists(q, database);
    if (privileges.length === 0 && (!live || !exists)) return; // already gone
    if (!live) throw owner.missing('role', role, address);
    if (!live.comment) throw owner.notOurs(role, address);
    if (!exists) throw owner.missing('database', database, address);
    await atomic(q, [
      lockSql(`database:${database}`),
      `REVOKE ALL ON DATABASE ${ident(database)} FROM ${ident(role)}`,
      ...(privileges.length ? [`GRANT ${privileges.join(', ')} ON DATABASE ${ident(database)} TO ${ident(role)}`] : []),
    ]);
    const acl = await q(
      `SELECT a.privilege_type AS privilege, pg_get_userbyid(a.grantor) AS grantor
         FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
        WHERE d.datname = $1 AND a.grantee = $2::oid`,
      [database, live.oid],
    );
    const on = { kind: 'DATABASE', object: ident(database), label: `database ${database}` };
    const have = (acl.rows as { privilege: string; grantor: string }[]).map((r): Held => ({ ...on, privilege: r.privilege, grantor: r.grantor }));
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
