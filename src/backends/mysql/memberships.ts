// membership/<group>/<principal>: GRANT group TO principal, both roles. Revoking one ends the
// sessions of the accounts that had the group through it.
import { BackendError } from '../../core/errors.js';
import type { ExecuteResult } from '../backend.js';
import type { Handler, MysqlContext } from './context.js';
import { endSessions } from './disconnect.js';
import { errno } from './errors.js';
import { ident, literal } from './sql.js';

/** MariaDB's answer to revoking a role that is not granted, or from a role that is gone. */
const NOT_GRANTED = new Set([1962, 1959]);

export const executeMembership: Handler<'membership'> = async (ctx, change) => {
  const { group, member } = (change.after ?? change.before)!.attrs;
  if (change.action === 'delete') return revokeMembership(ctx, group, member, change.address);
  if (change.action === 'replace' && change.before) await revokeMembership(ctx, change.before.attrs.group, change.before.attrs.member, change.address);
  return grantMembership(ctx, group, member, change.address);
};

async function grantMembership(ctx: MysqlContext, group: string, member: string, address: string): Promise<ExecuteResult> {
  const { name, conn, owner } = ctx;
  await conn.on(async (send) => {
    const live = await owner.objects(send, [group, member]);
    const g = live.find((o) => o.isRole && o.user === group);
    const m = live.find((o) => o.isRole && o.user === member);
    if (!g || !m)
      throw new BackendError(`${name}: cannot add ${member} to ${group}: role ${!g ? group : member} does not exist`, name, 'missing-role', false, address);
    for (const r of [g, m]) if (!r.marker) throw r.foreign ? owner.foreignObject('role', r.user, r.foreign, address) : owner.notOurs('role', r.user, address);
    await send([`GRANT ${ident(group)} TO ${ident(member)}`]);
  });
  return {};
}

async function revokeMembership(ctx: MysqlContext, group: string, member: string, address: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  await conn.on(async (send) => {
    const live = await owner.objects(send, [group, member]);
    // What a role of ours gives, or is given: a grant made by hand between one of ours and a role
    // of someone else's is revoked too (as on PostgreSQL), one between two others never.
    const foreign = live.find((o) => o.isRole && o.foreign);
    if (foreign) throw owner.foreignObject('role', foreign.user, foreign.foreign!, address);
    if (!live.some((o) => o.isRole && o.marker && (o.user === group || o.user === member))) {
      if (live.some((o) => o.isRole && (o.user === group || o.user === member))) throw owner.notOurs('role', group, address);
      return; // both gone
    }
    const [held] = await send([`SELECT COUNT(*) AS n FROM mysql.roles_mapping WHERE User = ${literal(member)} AND Host = '' AND Role = ${literal(group)}`]);
    if (Number(held![0]!.n) === 0) return; // already gone
    await owner.assertCanEndSessions(send, address);
    try {
      await send([`REVOKE ${ident(group)} FROM ${ident(member)}`]);
    } catch (e) {
      if (!NOT_GRANTED.has(errno(e) ?? 0)) throw e;
    }
    await endSessions(ctx, send, { roles: [member] });
  });
  return {};
}
