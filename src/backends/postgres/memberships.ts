// membership/<group>/<principal>: GRANT group TO principal.
import { BackendError } from '../../core/errors.js';
import type { ExecuteResult } from '../backend.js';
import type { Query } from './connection.js';
import type { Handler, PgContext } from './context.js';
import { ident } from './sql.js';

export const executeMembership: Handler<'membership'> = async (ctx, change) => {
  const { group, member } = (change.after ?? change.before)!.attrs;
  if (change.action === 'delete') return revokeMembership(ctx, group, member, change.address);
  if (change.action === 'replace' && change.before) await revokeMembership(ctx, change.before.attrs.group, change.before.attrs.member, change.address);
  return grantMembership(ctx, group, member, change.address);
};

async function grantMembership(ctx: PgContext, group: string, member: string, address: string): Promise<ExecuteResult> {
  const { name, conn, owner } = ctx;
  await conn.admin(async (q) => {
    const live = await owner.liveRoles(q, [group, member]);
    const g = live.get(group);
    const m = live.get(member);
    if (!g || !m)
      throw new BackendError(`${name}: cannot add ${member} to ${group}: role ${!g ? group : member} does not exist`, name, 'missing-role', false, address);
    if (!g.comment) throw owner.notOurs(group, address);
    if (!m.comment) throw owner.notOurs(member, address);
    await q(`GRANT ${ident(group)} TO ${ident(member)}`);
    if ((await grantorsOf(q, g.oid, m.oid)).length === 0) {
      throw new BackendError(
        `${name}: ${address}: GRANT ${ident(group)} TO ${ident(member)} did not take effect; the connecting role needs CREATEROLE or ADMIN OPTION on ${group}`,
        name,
        'not-granted',
        false,
        address,
      );
    }
  });
  return {};
}

async function revokeMembership(ctx: PgContext, group: string, member: string, address: string): Promise<ExecuteResult> {
  const { name, conn, owner } = ctx;
  await conn.admin(async (q) => {
    const live = await owner.liveRoles(q, [group, member]);
    const g = live.get(group);
    const m = live.get(member);
    if (!g || !m) return; // already gone
    await q(`REVOKE ${ident(group)} FROM ${ident(member)}`);
    // From PostgreSQL 16 on, a REVOKE removes only the membership its own role granted.
    const left = await grantorsOf(q, g.oid, m.oid);
    if (left.length) {
      throw new BackendError(
        `${name}: ${address}: ${member} is still a member of ${group}, granted by ${left.join(', ')}: a REVOKE removes only what the connecting role granted. As ${left.join(' or ')} or a superuser, run: REVOKE ${ident(group)} FROM ${ident(member)}; then apply again.`,
        name,
        'not-revoked',
        false,
        address,
      );
    }
  });
  return {};
}

async function grantorsOf(q: Query, groupOid: string, memberOid: string): Promise<string[]> {
  const r = await q('SELECT pg_get_userbyid(grantor) AS grantor FROM pg_auth_members WHERE roleid = $1::oid AND member = $2::oid', [groupOid, memberOid]);
  return [...new Set((r.rows as { grantor: string }[]).map((x) => x.grantor))].sort();
}
