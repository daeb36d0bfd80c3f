// pattern-grant/<role>/<pattern>: privileges an owned role holds on a database *pattern* (a `_` or
// `%` left unescaped in `GRANT … ON db.*`, which matches every database it fits). datagrant never
// grants one; read reports it, and apply revokes it.
import { BackendError } from '../../core/errors.js';
import { databasePrivilegeName } from './catalog.js';
import type { Handler } from './context.js';
import { endSessions } from './disconnect.js';
import { ident, literal } from './sql.js';

export const executePatternGrant: Handler<'pattern-grant'> = async (ctx, change) => {
  const { name, conn, owner } = ctx;
  if (change.action !== 'delete') {
    throw new BackendError(
      `${name}: ${change.address}: datagrant grants on exact databases only, never on a pattern; make a new plan`,
      name,
      'malformed-change',
      false,
      change.address,
    );
  }
  const { role, pattern } = change.before!.attrs;
  await conn.on(async (send) => {
    const live = await owner.role(send, role);
    if (!live) return;
    if (live.foreign) throw owner.foreignObject('role', role, live.foreign, change.address);
    if (!live.marker) throw owner.notOurs('role', role, change.address);
    const [rows] = await send([`SELECT * FROM mysql.db WHERE User = ${literal(role)} AND Host = '' AND Db = ${literal(pattern)}`]);
    const held = (rows ?? []).flatMap((r) =>
      Object.keys(r)
        .filter((c) => c.endsWith('_priv') && r[c] === 'Y')
        .map(databasePrivilegeName),
    );
    if (held.length === 0) return;
    await owner.assertCanEndSessions(send, change.address);
    // The pattern is sent as stored: its wildcards are what is revoked.
    await send([`REVOKE ${[...new Set(held)].sort().join(', ')} ON ${ident(pattern)}.* FROM ${ident(role)}`]);
    await endSessions(ctx, send, { roles: [role] });
  });
  return {};
};
