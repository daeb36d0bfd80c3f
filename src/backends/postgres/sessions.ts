// session-login/<principal>/<suffix>: a temporary principal's session (issue 12). The broker asks
// for one; the driver makes a login role `<principal>~<suffix>` that is a member of the
// principal's (NOLOGIN) role, so it holds exactly the principal's privileges, until VALID UNTIL.
// Apply never makes one: it only drops those whose session ended or whose principal lost the
// access, and dropping must not fail where Vault's revocation does: open sessions are ended and
// waited for, and what the login came to own is handed to the principal's role, never dropped.
import { randomBytes } from 'node:crypto';
import { BackendError } from '../../core/errors.js';
import { SESSION_LOGIN_SEPARATOR, pgAddress } from '../../model/postgres.js';
import type { ExecuteResult, IssuedBackendSession, SessionIssueRequest } from '../backend.js';
import { atomic, lock, type Query } from './connection.js';
import type { Handler, PgContext } from './context.js';
import { sqlState } from './errors.js';
import { commentSql, takePrivilegesOf, terminateSql, type LiveRole } from './ownership.js';
import { generatePassword, ident, literal, scramVerifier } from './sql.js';

/** PostgreSQL's identifier limit, in bytes. */
const MAX_NAME_BYTES = 63;
const SUFFIX_LENGTH = 8;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
/** Longest wait for the sessions of a dropped login to end after pg_terminate_backend. */
const TERMINATE_WAIT_MS = 10_000;

/** 8 random base32 characters (40 bits): lower case, so the name needs no case folding to type. */
function suffix(): string {
  const bytes = randomBytes(SUFFIX_LENGTH);
  return [...bytes].map((b) => BASE32[b & 31]).join('');
}

/** `<principal>~<suffix>`, the principal cut (by whole characters) to fit 63 bytes. */
export function sessionLoginName(principal: string, random = suffix()): string {
  const room = MAX_NAME_BYTES - Buffer.byteLength(`${SESSION_LOGIN_SEPARATOR}${random}`, 'utf8');
  let base = principal;
  while (Buffer.byteLength(base, 'utf8') > room) base = [...base].slice(0, -1).join('');
  return `${base}${SESSION_LOGIN_SEPARATOR}${random}`;
}

/**
 * The database a session names: the first one it may connect to through a role granted
 * CONNECT by name (PUBLIC's CONNECT on every database says nothing about the dataset).
 */
const databaseSql = (login: string) =>
  `SELECT d.datname FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
    WHERE a.privilege_type = 'CONNECT' AND a.grantee <> 0 AND d.datallowconn
      AND pg_has_role((SELECT oid FROM pg_roles WHERE rolname = ${literal(login)}), a.grantee, 'USAGE')
    ORDER BY 1 LIMIT 1`;

const refuse = (ctx: PgContext, address: string, message: string, code: string) => new BackendError(`${ctx.name}: ${message}`, ctx.name, code, false, address);

export async function issueSession(ctx: PgContext, req: SessionIssueRequest): Promise<IssuedBackendSession> {
  const { conn } = ctx;
  const role = req.target;
  const address = pgAddress.role(ctx.name, role);
  if (!Number.isInteger(req.durationSeconds) || req.durationSeconds <= 0) {
    throw refuse(ctx, address, `a session lasts a whole number of seconds above 0, not ${String(req.durationSeconds)}`, 'invalid-duration');
  }
  const password = generatePassword();
  const verifier = await scramVerifier(password);

  const { login, validUntil, database } = await createLogin(ctx, req, verifier);
  const started = Date.now();
  try {
    await conn.probe(database, login, password);
  } catch (e) {
    await dropLogin(ctx, login, pgAddress.sessionLogin(ctx.name, role, login)).catch(() => undefined);
    throw new BackendError(
      `${ctx.name}: the session login for ${req.principal} was made but the server refused it (${(e as Error).message}); it was dropped again`,
      ctx.name,
      'session-not-ready',
      true,
      address,
    );
  }
  return {
    secret: { user: login, password, host: conn.server.hostname, port: conn.server.port || '5432', database },
    expiresAt: validUntil,
    target: login,
    readyMs: Date.now() - started,
  };
}

/** Makes the login role, under a fresh name if another role holds the one drawn. */
async function createLogin(ctx: PgContext, req: SessionIssueRequest, verifier: string): Promise<{ login: string; validUntil: string; database: string }> {
  const { conn, owner } = ctx;
  const role = req.target;
  const address = pgAddress.role(ctx.name, role);
  for (let attempt = 0; ; attempt++) {
    const login = sessionLoginName(req.principal);
    let sent = false;
    try {
      return await conn.admin(async (q) => {
        const live = await owner.liveRole(q, role);
        if (!live) {
          throw refuse(ctx, address, `role ${role} does not exist yet: apply the spec that gives ${req.principal} access here, then ask again`, 'missing-role');
        }
        if (!live.comment) throw owner.notOurs(role, address);
        if (live.comment.kind === 'session') throw refuse(ctx, address, `role ${role} is a session login, not a principal's role`, 'not-principal');
        // The server's clock ends the login, so the server's clock says when.
        const until = await q(
          `SELECT to_char(date_trunc('milliseconds', now() + make_interval(secs => $1)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at`,
          [req.durationSeconds],
        );
        const validUntil = (until.rows[0] as { at: string }).at;
        sent = true;
        // INHERIT: the login holds what the principal's role holds, through it alone. The verifier,
        // not the password, reaches the server (and its logs).
        const results = await atomic(q, [
          `CREATE ROLE ${ident(login)} WITH LOGIN INHERIT VALID UNTIL ${literal(validUntil)} PASSWORD ${literal(verifier)} IN ROLE ${ident(role)}`,
          commentSql(login, { ...owner.marker(), kind: 'session', principal: role, validUntil }),
          databaseSql(login),
        ]);
        const database = (results.at(-1)!.rows[0] as { datname: string } | undefined)?.datname ?? conn.adminDatabase;
        return { login, validUntil, database };
      });
    } catch (e) {
      // Another role took the name (the suffix is random): draw again.
      if (sqlState(e) === '42710' && attempt < 3) continue;
      // Unclear whether the login exists (a dropped connection at COMMIT): remove it before the
      // retry decorator asks again, so no login lives on that nobody holds the password of.
      if (sent && sqlState(e) !== '42710') await dropLogin(ctx, login, pgAddress.sessionLogin(ctx.name, role, login)).catch(() => undefined);
      throw e;
    }
  }
}

/** Apply never makes a session login, nor changes one: a replace (changed by hand) drops it. */
export const executeSessionLogin: Handler<'session-login'> = (ctx, change) =>
  change.action === 'delete' || change.action === 'replace' ? dropLogin(ctx, change.before!.name, change.address) : Promise.resolve({});

/** Waits until no session of the role is left: a terminated backend takes a moment to exit. */
async function sessionsEnded(ctx: PgContext, login: string, live: LiveRole, address: string): Promise<void> {
  const deadline = Date.now() + TERMINATE_WAIT_MS;
  for (;;) {
    const left = await ctx.conn.admin(async (q) => {
      await q(terminateSql, [live.oid]);
      return (await q(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usesysid = $1::oid AND pid <> pg_backend_pid()`, [live.oid])).rows[0] as {
        n: number;
      };
    }, false);
    if (left.n === 0) return;
    if (Date.now() > deadline) {
      throw new BackendError(
        `${ctx.name}: session login ${login} still has ${left.n} open session(s) ${TERMINATE_WAIT_MS / 1000} s after they were terminated; its login is disabled — apply again`,
        ctx.name,
        'sessions-open',
        true,
        address,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * No new logins, end open sessions (and wait for them), hand what the login owns to the
 * principal's role and revoke what was granted to it in every database it touched, then drop it.
 */
async function dropLogin(ctx: PgContext, login: string, address: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  const live = await conn.admin((q) => owner.liveRole(q, login), false);
  if (!live) return {};
  if (!live.comment || live.comment.kind !== 'session') throw owner.notOurs(login, address);
  const principal = live.comment.principal;

  await conn.admin((q) => q(`ALTER ROLE ${ident(login)} NOLOGIN`), false);
  await sessionsEnded(ctx, login, live, address);

  // Objects a session made stay: they become the principal's. Only then does DROP OWNED, which
  // would drop owned objects, have only privileges left to revoke.
  // A session that touched nothing (the common case) needs neither statement, and they need the
  // privileges of the login, which an admin with only CREATEROLE lacks.
  const release = async (q: Query, where: string) => {
    const deps = await q(
      `SELECT count(*) FILTER (WHERE deptype = 'o')::int AS owns, count(*)::int AS any FROM pg_shdepend
        WHERE refclassid = 'pg_authid'::regclass AND refobjid = $1::oid
          AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))`,
      [live.oid],
    );
    const { owns, any } = deps.rows[0] as { owns: number; any: number };
    if (any === 0) return;
    try {
      await takePrivilegesOf(q, login);
      if (owns > 0) {
        if (!principal) {
          throw new BackendError(
            `${ctx.name}: session login ${login} owns objects in database ${where} and its marker names no principal to hand them to; datagrant does not drop data — REASSIGN OWNED BY it by hand, then apply again`,
            ctx.name,
            'owns-objects',
            false,
            address,
          );
        }
        await q(`REASSIGN OWNED BY ${ident(login)} TO ${ident(principal)}`);
      }
      await q(`DROP OWNED BY ${ident(login)}`);
    } catch (e) {
      if (sqlState(e) !== '42501') throw e;
      const me = decodeURIComponent(conn.server.username) || 'datagrant';
      throw new BackendError(
        `${ctx.name}: session login ${login} ${owns > 0 ? 'owns objects' : 'holds privileges'} in database ${where}, and ${me} may not ${owns > 0 ? 'hand them to its principal' : 'revoke them'} (${(e as Error).message}); its login is disabled and its sessions ended — run datagrant as a superuser, or make ${me} inherit the roles it creates (PostgreSQL 16: createrole_self_grant = 'set, inherit'), then apply again`,
        ctx.name,
        'not-permitted',
        false,
        address,
      );
    }
  };
  const touched = await conn.admin(
    (q) =>
      q(
        `SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
          WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1::oid AND d.datallowconn`,
        [live.oid],
      ),
    false,
  );
  for (const { datname } of touched.rows as { datname: string }[]) {
    if (datname === conn.adminDatabase) continue;
    try {
      await conn.on(datname, (q) => release(q, datname));
    } catch (e) {
      if (sqlState(e) !== '3D000') throw e;
    }
  }
  await conn.admin(async (q) => {
    await lock(q, `role:${login}`);
    if (!(await owner.liveRole(q, login))) return;
    await release(q, conn.adminDatabase);
    await q(`DROP ROLE ${ident(login)}`);
  });
  return {};
}
