// Ending sessions. MariaDB checks some privileges once per session (a database's when it is
// selected, an account's global ones at login), so a session keeps access a REVOKE took away
// until it ends. Every change that takes access away ends the live sessions of datagrant's
// accounts that had it, after the change (a new session gets the new privileges), with
// KILL CONNECTION for each of their sessions in information_schema.PROCESSLIST.
//
// PROCESSLIST names a session's user, not its account's host: a session is ended by user name.
// That is exact because datagrant never makes an account whose user name another account has
// (accounts.ts refuses it).
import type { MysqlContext } from './context.js';
import type { Send } from './connection.js';
import { errno } from './errors.js';
import { OBJECT_COLUMNS } from './ownership.js';

const ER_NO_SUCH_THREAD = 1094;

/** Owned accounts that hold one of `roles` directly or through roles granted to roles; and `accounts`. */
export async function endSessions(ctx: MysqlContext, send: Send, target: { roles?: string[]; accounts?: string[] }): Promise<number> {
  const [mappings, objects, sessions] = await send([
    'SELECT User AS user, Host AS host, Role AS role FROM mysql.roles_mapping',
    `SELECT ${OBJECT_COLUMNS} FROM mysql.global_priv WHERE JSON_EXISTS(Priv, '$.datagrant')`,
    'SELECT ID AS id, USER AS user FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()',
  ]);
  const ours = objects!.map((r) => ctx.owner.live(r)).filter((o) => o.marker !== undefined && !o.isRole);
  const names = new Set(target.accounts ?? []);
  if (target.roles?.length) {
    // Roles granted to roles, upwards: everything that reaches a target role.
    const reaching = new Set(target.roles);
    for (let grew = true; grew;) {
      grew = false;
      for (const m of mappings!) {
        if (m.host === '' && reaching.has(String(m.role)) && !reaching.has(String(m.user))) {
          reaching.add(String(m.user));
          grew = true;
        }
      }
    }
    for (const o of ours) if (mappings!.some((m) => m.user === o.user && m.host === o.host && reaching.has(String(m.role)))) names.add(o.user);
  }
  const owned = new Set(ours.map((o) => o.user));
  let ended = 0;
  for (const s of sessions!) {
    const user = String(s.user);
    if (!names.has(user) || !owned.has(user)) continue;
    try {
      await send([`KILL CONNECTION ${Number(s.id)}`]);
      ended++;
    } catch (e) {
      if (errno(e) !== ER_NO_SUCH_THREAD) throw e; // it ended by itself meanwhile
    }
  }
  return ended;
}
