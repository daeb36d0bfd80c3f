// account/<name>: a principal's account 'name'@'<host>', holding only its own role, set as its
// default role. Created with a password hash nobody knows (sql.ts creationHash), so nobody logs in
// until password/<name> sets the real one.
import { BackendError } from '../../core/errors.js';
import type { MysqlAccountAttrs } from '../../model/mysql.js';
import type { ExecuteResult } from '../backend.js';
import type { Send } from './connection.js';
import type { Handler, MysqlContext } from './context.js';
import { endSessions } from './disconnect.js';
import { errno } from './errors.js';
import { markerSql, type LiveObject } from './ownership.js';
import { account, creationHash, ident, literal } from './sql.js';

const ER_CANNOT_USER = 1396;

export const executeAccount: Handler<'account'> = async (ctx, change) => {
  if (change.action === 'delete') return dropAccount(ctx, change.before!.name, change.before!.attrs.host, change.address);
  // A new host is a new account: the old one goes first (its sessions with it).
  if (change.action === 'replace' && change.before) await dropAccount(ctx, change.before.name, change.before.attrs.host, change.address);
  return ensureAccount(ctx, change.after!.name, change.after!.attrs, change.address, change.action !== 'update');
};

/** The statements that give an account exactly `attrs`'s role and lock state. */
function shapeSql(name: string, attrs: MysqlAccountAttrs): string[] {
  const a = account(name, attrs.host);
  return [
    ...attrs.roles.map((r) => `GRANT ${ident(r)} TO ${a}`),
    attrs.defaultRole === null ? `SET DEFAULT ROLE NONE FOR ${a}` : `SET DEFAULT ROLE ${ident(attrs.defaultRole)} FOR ${a}`,
    `ALTER USER ${a} ACCOUNT ${attrs.locked ? 'LOCK' : 'UNLOCK'}`,
  ];
}

async function ensureAccount(ctx: MysqlContext, name: string, attrs: MysqlAccountAttrs, address: string, absent: boolean): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  await conn.on(async (send) => {
    const { live, others } = await owner.account(send, name, attrs.host);
    // Sessions are ended by user name, and a client's login picks the most specific host: another
    // account of the same name would blur both.
    if (others.length) {
      throw new BackendError(
        `${ctx.name}: ${address}: another account named ${name} exists (${others.map((o) => `'${o.user}'@'${o.host}'`).join(', ')}); datagrant makes an account only when its user name is its own — drop or rename the other one, or rename the principal`,
        ctx.name,
        'not-owned',
        false,
        address,
      );
    }
    if (!live) {
      if (!absent) throw owner.missing('account', `'${name}'@'${attrs.host}'`, address);
      await create(ctx, send, name, attrs, address);
      return;
    }
    await converge(ctx, send, live, attrs, address);
  });
  return {};
}

async function create(ctx: MysqlContext, send: Send, name: string, attrs: MysqlAccountAttrs, address: string): Promise<void> {
  const { owner } = ctx;
  try {
    // Committed by itself: the hash marks the account as this installation's until the marker is written.
    await send([`CREATE USER ${account(name, attrs.host)} IDENTIFIED BY PASSWORD ${literal(creationHash(owner.scope, ownerInstallation(ctx), name))}`]);
  } catch (e) {
    if (errno(e) !== ER_CANNOT_USER) throw e;
    // Made meanwhile by someone else: converge refuses it unless it is ours.
    const { live } = await owner.account(send, name, attrs.host);
    if (!live) throw e;
    return converge(ctx, send, live, attrs, address);
  }
  await send([markerSql(name, attrs.host, owner.marker()), ...shapeSql(name, attrs)]);
}

const ownerInstallation = (ctx: MysqlContext) => ctx.owner.marker().installation;

/** Brings an existing account to `attrs`, if it is ours; ends its sessions when it loses anything. */
async function converge(ctx: MysqlContext, send: Send, live: LiveObject, attrs: MysqlAccountAttrs, address: string): Promise<void> {
  const { owner } = ctx;
  const label = `'${live.user}'@'${live.host}'`;
  if (live.foreign) throw owner.foreignObject('account', label, live.foreign, address);
  if (!live.marker && !owner.unmarkedOfOurs(live)) throw owner.notOurs('account', label, address);
  const [held] = await send([`SELECT Role AS role FROM mysql.roles_mapping WHERE User = ${literal(live.user)} AND Host = ${literal(live.host)}`]);
  const roles = held!.map((r) => String(r.role)).sort();
  const [counts] = await send([
    `SELECT (SELECT COUNT(*) FROM mysql.db WHERE User = ${literal(live.user)} AND Host = ${literal(live.host)})
          + (SELECT COUNT(*) FROM mysql.tables_priv WHERE User = ${literal(live.user)} AND Host = ${literal(live.host)})
          + (SELECT COUNT(*) FROM mysql.columns_priv WHERE User = ${literal(live.user)} AND Host = ${literal(live.host)})
          + (SELECT COUNT(*) FROM mysql.procs_priv WHERE User = ${literal(live.user)} AND Host = ${literal(live.host)}) AS n`,
  ]);
  const extra = live.global.length > 0 || Number(counts![0]!.n) > 0 || roles.some((r) => !attrs.roles.includes(r));
  const statements: string[] = [];
  if (!live.marker) statements.push(markerSql(live.user, live.host, owner.marker()));
  // Anything held beyond its role goes: REVOKE ALL takes the role too, so it is granted again.
  if (extra) statements.push(`REVOKE ALL PRIVILEGES, GRANT OPTION FROM ${account(live.user, live.host)}`);
  statements.push(...shapeSql(live.user, attrs));
  if (extra || (attrs.locked && !live.locked)) await owner.assertCanEndSessions(send, address);
  await send(statements);
  if (extra || (attrs.locked && !live.locked)) await endSessions(ctx, send, { accounts: [live.user] });
}

/** Deprovision: lock first (no new logins), end its sessions, drop. */
async function dropAccount(ctx: MysqlContext, name: string, host: string, address: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  await conn.on(async (send) => {
    const { live } = await owner.account(send, name, host);
    if (!live) return;
    const label = `'${name}'@'${host}'`;
    if (live.foreign) throw owner.foreignObject('account', label, live.foreign, address);
    if (!live.marker && !owner.unmarkedOfOurs(live)) throw owner.notOurs('account', label, address);
    await owner.assertCanEndSessions(send, address);
    await send([`ALTER USER ${account(name, host)} ACCOUNT LOCK`]);
    await endSessions(ctx, send, { accounts: [name] });
    await send([`DROP USER ${account(name, host)}`]);
  });
  return {};
}
