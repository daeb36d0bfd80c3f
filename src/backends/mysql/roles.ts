// role/<name>: a group's role or a principal's own role, with the ownership marker.
import type { ExecuteResult } from '../backend.js';
import type { Handler, MysqlContext } from './context.js';
import type { Send } from './connection.js';
import { endSessions } from './disconnect.js';
import { errno } from './errors.js';
import { markerSql } from './ownership.js';
import { ident } from './sql.js';

const ER_CANNOT_USER = 1396;

export const executeRole: Handler<'role'> = (ctx, change) =>
  change.action === 'delete'
    ? dropRole(ctx, change.before!.name, change.address)
    : ensureRole(ctx, change.after!.name, change.address, change.action === 'create');

/**
 * Creates the role and marks it, or brings an owned one back to holding nothing on `*.*`. A role
 * the plan creates is most likely absent: CREATE ROLE goes first, and only when the role exists
 * after all (1396; CREATE touched nothing) is it read, and refused unless it is ours.
 */
async function ensureRole(ctx: MysqlContext, role: string, address: string, absent: boolean): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  await conn.on(async (send) => {
    if (absent) {
      try {
        await send([`CREATE ROLE ${ident(role)}`, markerSql(role, '', owner.marker())]);
        return;
      } catch (e) {
        if (errno(e) !== ER_CANNOT_USER) throw e;
      }
    }
    const live = await owner.role(send, role);
    if (!live) {
      await send([`CREATE ROLE ${ident(role)}`, markerSql(role, '', owner.marker())]);
      return;
    }
    if (live.foreign) throw owner.foreignObject('role', role, live.foreign, address);
    if (!live.marker) {
      if (!(await owner.emptyRoleOfMine(send, live))) throw owner.notOurs('role', role, address);
      await send([markerSql(role, '', owner.marker())]);
    }
    if (live.global.length) {
      await owner.assertCanEndSessions(send, address);
      await send([`REVOKE ALL PRIVILEGES ON *.* FROM ${ident(role)}`, `REVOKE GRANT OPTION ON *.* FROM ${ident(role)}`]);
      await endSessions(ctx, send, { roles: [role] });
    }
  });
  return {};
}

/** Drops an owned role (MariaDB revokes it from everyone that held it), then ends their sessions. */
async function dropRole(ctx: MysqlContext, role: string, address: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  await conn.on(async (send: Send) => {
    const live = await owner.role(send, role);
    if (!live) return;
    if (live.foreign) throw owner.foreignObject('role', role, live.foreign, address);
    if (!live.marker) throw owner.notOurs('role', role, address);
    await owner.assertCanEndSessions(send, address);
    // Who holds it is read before the drop, which takes that knowledge with it.
    const holders = await accountsHolding(ctx, send, role);
    await send([`DROP ROLE ${ident(role)}`]);
    if (holders.length) await endSessions(ctx, send, { accounts: holders });
  });
  return {};
}

/** datagrant's accounts that reach `role`, directly or through roles granted to roles. */
async function accountsHolding(ctx: MysqlContext, send: Send, role: string): Promise<string[]> {
  const [mappings] = await send(['SELECT User AS user, Host AS host, Role AS role FROM mysql.roles_mapping']);
  const reaching = new Set([role]);
  for (let grew = true; grew;) {
    grew = false;
    for (const m of mappings!) {
      if (m.host === '' && reaching.has(String(m.role)) && !reaching.has(String(m.user))) {
        reaching.add(String(m.user));
        grew = true;
      }
    }
  }
  return [...new Set(mappings!.filter((m) => m.host !== '' && reaching.has(String(m.role))).map((m) => String(m.user)))];
}
