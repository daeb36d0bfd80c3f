// membership/<group>/<principal>: GRANT group TO principal.
import { BackendError } from '../../core/errors.js';
import type { ExecuteResult } from '../backend.js';
import type pg from 'pg';
import { atomic } from './connection.js';
import type { Handler, PgContext } from './context.js';
import { sqlState } from './errors.js';
import { ident, literal } from './sql.js';

export const executeMembership: Handler<'membership'> = async (ctx, change) => {
  const { group, member } = (change.after ?? change.before)!.attrs;
  if (change.action === 'delete') return revokeMembership(ctx, group, member, change.address);
  if (change.action === 'replace' && change.before) await revokeMembership(ctx, change.before.attrs.group, change.before.attrs.member, change.address);
  return grantMembership(ctx, group, member, change.address);
};

/** Checks that both roles are datagrant's, then grants and reads the grant back in one message. */
async function grantMembership(ctx: PgContext, group: string, member: string, address: string): Promise<ExecuteResult> {
  const { name, conn, owner } = ctx;
  const live = await owner.roles([group, member]);
  const g = live.get(group);
  const m = live.get(member);
  if (!g || !m)
    throw new BackendError(`${name}: cannot add ${member} to ${group}: role ${!g ? group : member} does not exist`, name, 'missing-role', false, address);
  if (!g.comment) throw owner.notOurs(group, address);
  if (!m.comment) throw owner.notOurs(member, address);
  const [, grantors] = await conn.admin((q) => atomic(q, [`GRANT ${ident(group)} TO ${ident(member)}`, grantorsSql(literal(g.oid), literal(m.oid))]), false);
  // Without the right to, PostgreSQL only warns: a GRANT that did nothing is found here.
  if (grantorsOf(grantors!).length === 0) {
    throw new BackendError(
      `${name}: ${address}: GRANT ${ident(group)} TO ${ident(member)} did not take effect; the connecting role needs CREATEROLE or ADMIN OPTION on ${group}`,
      name,
      'not-granted',
      false,
      address,
    );
  }
  return {};
}

/** Revokes and reads back in one message; a role already gone (42704) means the membership is too. */
async function revokeMembership(ctx: PgContext, group: string, member: string, address: string): Promise<ExecuteResult> {
  const { name, conn } = ctx;
  await conn.admin(async (q) => {
    const oidOf = (role: string) => `(SELECT oid FROM pg_roles WHERE rolname = ${literal(role)})`;
    let left: string[];
    try {
      const [, grantors] = await atomic(q, [`REVOKE ${ident(group)} FROM ${ident(member)}`, grantorsSql(oidOf(group), oidOf(member))]);
      left = grantorsOf(grantors!);
    } catch (e) {
      if (sqlState(e) === '42704') return;
      throw e;
    }
    // From PostgreSQL 16 on, a REVOKE removes only the membership its own role granted.
    if (left.length) {
      throw new BackendError(
        `${name}: ${address}: ${member} is still a member of ${group}, granted by ${left.join(', ')}: a REVOKE removes only what the connecting role granted. As ${left.join(' or ')} or a superuser, run: REVOKE ${ident(group)} FROM ${ident(member)}; then apply again.`,
        name,
        'not-revoked',
        false,
        address,
      );
    }
  }, false);
  return {};
}

/** Who granted `member` its membership in `group` (both as SQL yielding an oid). */
const grantorsSql = (group: string, member: string) =>
  `SELECT pg_get_userbyid(grantor) AS grantor FROM pg_auth_members WHERE roleid = ${group}::oid AND member = ${member}::oid`;

const grantorsOf = (r: pg.QueryResult) => [...new Set((r.rows as { grantor: string }[]).map((x) => x.grantor))].sort();
