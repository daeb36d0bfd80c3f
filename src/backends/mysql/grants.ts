// grant/<role>/<database>/<level>: the privileges one level adds, on a whole database
// (`ON db.*`) or on listed tables (`ON db.t`). A change reads what the role holds in the
// database, revokes what of this level it should not hold (on the database, on tables, on
// columns), grants what is missing, and reads back the result in the same message: a change that
// did not take effect fails instead of reporting success. Taking anything away ends the sessions
// of the accounts that had it (disconnect.ts).
import { BackendError } from '../../core/errors.js';
import type { Level } from '../../core/types.js';
import { mysqlLevelOf } from '../../model/mysql-levels.js';
import type { MysqlGrantAttrs } from '../../model/mysql.js';
import { databasePrivilegeName, tablePrivilegeName } from './catalog.js';
import type { Row, Send } from './connection.js';
import type { Handler, MysqlContext } from './context.js';
import { endSessions } from './disconnect.js';
import { databasePattern, ident, literal, onDatabase, onTable } from './sql.js';

export const executeGrant: Handler<'grant'> = async (ctx, change) => {
  if (change.before && change.action !== 'update') await convergeGrant(ctx, change.before.attrs, false, change.address);
  if (change.after) await convergeGrant(ctx, change.after.attrs, true, change.address);
  return {};
};

/** What a role holds of one level in one database. */
interface Held {
  database: Set<string>;
  tables: Map<string, Set<string>>;
  /** table → privilege → columns */
  columns: Map<string, Map<string, string[]>>;
}

const setOf = (v: unknown) => (typeof v === 'string' && v !== '' ? v.split(',').map(tablePrivilegeName) : []);

/** The three reads of what `role` holds in `database`, as statements of one message. */
function heldSql(role: string, database: string): string[] {
  const r = literal(role);
  return [
    `SELECT * FROM mysql.db WHERE User = ${r} AND Host = '' AND Db = ${literal(databasePattern(database))}`,
    `SELECT Table_name AS tbl, Table_priv AS privs FROM mysql.tables_priv WHERE User = ${r} AND Host = '' AND Db = ${literal(database)}`,
    `SELECT Table_name AS tbl, Column_name AS col, Column_priv AS privs FROM mysql.columns_priv WHERE User = ${r} AND Host = '' AND Db = ${literal(database)}`,
  ];
}

function heldOf(level: Level, [db, tables, columns]: Row[][]): Held {
  const mine = (p: string) => mysqlLevelOf(p) === level;
  const held: Held = { database: new Set(), tables: new Map(), columns: new Map() };
  for (const row of db!)
    for (const c of Object.keys(row)) if (c.endsWith('_priv') && row[c] === 'Y' && mine(databasePrivilegeName(c))) held.database.add(databasePrivilegeName(c));
  for (const row of tables!) {
    const ps = setOf(row.privs).filter(mine);
    if (ps.length) held.tables.set(String(row.tbl), new Set(ps));
  }
  for (const row of columns!) {
    for (const p of setOf(row.privs).filter(mine)) {
      const t = held.columns.get(String(row.tbl)) ?? new Map<string, string[]>();
      t.set(p, [...(t.get(p) ?? []), String(row.col)]);
      held.columns.set(String(row.tbl), t);
    }
  }
  return held;
}

/** What `attrs` wants of its level, as the same shape (nothing when the grant is removed). */
function wanted(attrs: MysqlGrantAttrs, want: boolean): { database: Set<string>; tables: Map<string, Set<string>> } {
  if (!want) return { database: new Set(), tables: new Map() };
  const p = attrs.privileges;
  return {
    database: new Set(p.database),
    tables: new Map(attrs.tables === '*' ? [] : attrs.tables.map((t) => [t, new Set(p.tables)])),
  };
}

const list = (xs: Iterable<string>) => [...xs].sort().join(', ');

async function convergeGrant(ctx: MysqlContext, attrs: MysqlGrantAttrs, want: boolean, address: string): Promise<void> {
  const { name, conn, owner } = ctx;
  const { role, database, level } = attrs;
  await conn.on(async (send: Send) => {
    const live = await owner.role(send, role);
    if (!want && !live) return; // already gone with its role
    if (!live) throw owner.missing('role', role, address);
    if (live.foreign) throw owner.foreignObject('role', role, live.foreign, address);
    if (!live.marker) throw owner.notOurs('role', role, address);
    const w = wanted(attrs, want);
    const held = heldOf(level, await send(heldSql(role, database)));
    const r = ident(role);

    const revoke: string[] = [];
    const less = (have: Set<string>, keep: Set<string> | undefined) => [...have].filter((p) => !keep?.has(p));
    const fromDb = less(held.database, w.database);
    if (fromDb.length) revoke.push(`REVOKE ${list(fromDb)} ON ${onDatabase(database)} FROM ${r}`);
    for (const [t, have] of held.tables) {
      const gone = less(have, w.tables.get(t));
      if (gone.length) revoke.push(`REVOKE ${list(gone)} ON ${onTable(database, t)} FROM ${r}`);
    }
    for (const [t, byPrivilege] of held.columns) {
      for (const [p, cols] of byPrivilege) revoke.push(`REVOKE ${p} (${cols.map(ident).join(', ')}) ON ${onTable(database, t)} FROM ${r}`);
    }
    const grant: string[] = [];
    const toDb = [...w.database].filter((p) => !held.database.has(p));
    if (toDb.length) grant.push(`GRANT ${list(toDb)} ON ${onDatabase(database)} TO ${r}`);
    for (const [t, ps] of w.tables) {
      const missing = [...ps].filter((p) => !held.tables.get(t)?.has(p));
      if (missing.length) grant.push(`GRANT ${list(missing)} ON ${onTable(database, t)} TO ${r}`);
    }
    if (revoke.length === 0 && grant.length === 0) return;
    if (revoke.length) await owner.assertCanEndSessions(send, address);
    if (grant.length && want) await assertExists(ctx, send, attrs, address);

    const results = await send([...revoke, ...grant, ...heldSql(role, database)]);
    // Sessions keep a database's privileges once selected: whatever the revoke took away, even if
    // the change then fails its read-back, ends the sessions that held it (the next plan may see no
    // difference left to retry).
    if (revoke.length) await endSessions(ctx, send, { roles: [role] });
    const after = heldOf(level, results.slice(-3));
    const missing = [
      ...[...w.database].filter((p) => !after.database.has(p)).map((p) => `${p} ON ${database}.*`),
      ...[...w.tables].flatMap(([t, ps]) => [...ps].filter((p) => !after.tables.get(t)?.has(p)).map((p) => `${p} ON ${database}.${t}`)),
    ];
    const leftover = [
      ...less(after.database, w.database).map((p) => `${p} ON ${database}.*`),
      ...[...after.tables].flatMap(([t, have]) => less(have, w.tables.get(t)).map((p) => `${p} ON ${database}.${t}`)),
      ...[...after.columns].flatMap(([t, byP]) => [...byP.keys()].map((p) => `${p} (columns) ON ${database}.${t}`)),
    ];
    if (missing.length || leftover.length) {
      throw new BackendError(
        `${name}: ${address}: the change did not take effect on role ${role}: ${[
          ...(missing.length ? [`not granted: ${missing.join(', ')}`] : []),
          ...(leftover.length ? [`still held: ${leftover.join(', ')}`] : []),
        ].join('; ')}`,
        name,
        'not-taken-effect',
        false,
        address,
      );
    }
  });
}

/** A grant on a database or table that does not exist fails with a message that says so. */
async function assertExists(ctx: MysqlContext, send: Send, attrs: MysqlGrantAttrs, address: string): Promise<void> {
  const { name } = ctx;
  const { database, tables } = attrs;
  const [found] = await send([
    `SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${literal(database)}${
      tables === '*' ? ' LIMIT 1' : ` AND TABLE_NAME IN (${tables.map(literal).join(', ')})`
    }`,
  ]);
  if (tables === '*') {
    const [db] = await send([`SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${literal(database)}`]);
    if (Number(db![0]!.n) === 0) throw ctx.owner.missing('database', database, address);
    return;
  }
  const have = new Set(found!.map((r) => String(r.t)));
  const missing = tables.filter((t) => !have.has(t));
  if (missing.length) {
    throw new BackendError(
      `${name}: table${missing.length > 1 ? 's' : ''} ${missing.map((t) => `${database}.${t}`).join(', ')} not found`,
      name,
      'missing-table',
      false,
      address,
    );
  }
}
