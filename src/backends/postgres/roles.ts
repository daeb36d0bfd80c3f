// role/<name>: a group role (NOLOGIN) or a principal's login role, with its VALID UNTIL.
import { BackendError } from '../../core/errors.js';
import type { RoleAttrs } from '../../model/postgres.js';
import type { ExecuteResult } from '../backend.js';
import { atomic, lock, type Query } from './connection.js';
import type { Handler, PgContext } from './context.js';
import { sqlState } from './errors.js';
import { ROLE_FLAGS, commentSql, takePrivilegesOf, terminateSql } from './ownership.js';
import { ident, literal } from './sql.js';

export const executeRole: Handler<'role'> = (ctx, change) =>
  change.action === 'delete'
    ? dropRole(ctx, change.before!.name, change.address)
    : ensureRole(ctx, change.after!.name, change.after!.attrs, change.address, change.action === 'create');

const validUntilSql = (v: string | null) => `VALID UNTIL ${literal(v ?? 'infinity')}`;

/**
 * Creates the role, or brings an owned one to `attrs`. A role the plan creates is most likely
 * absent: CREATE ROLE and its marker go in one message, and only when the role exists after all
 * (42710; CREATE touched nothing) is it read, and refused unless it is ours.
 */
async function ensureRole(ctx: PgContext, role: string, attrs: RoleAttrs, address: string, absent: boolean): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  const options = `${attrs.login ? 'LOGIN' : 'NOLOGIN'} ${validUntilSql(attrs.validUntil)}`;
  const create = (q: Query) => atomic(q, [`CREATE ROLE ${ident(role)} WITH ${options}`, commentSql(role, owner.marker())]);
  await conn.admin(async (q) => {
    if (absent) {
      try {
        await create(q);
        return;
      } catch (e) {
        if (sqlState(e) !== '42710') throw e;
      }
    }
    const live = await owner.liveRole(q, role);
    if (!live) {
      // Had someone made it meanwhile, CREATE fails and the retry finds it (and refuses it if unmarked).
      await create(q);
      return;
    }
    // A session login is the broker's: never a principal's or a group's role.
    if (!live.comment || live.comment.kind === 'session') throw owner.notOurs(role, address);
    // Reset only flags that are set: PostgreSQL refuses SUPERUSER-related options from non-superusers.
    const resets = ROLE_FLAGS.filter(([, f]) => live.flags.includes(f)).map(([, , reset]) => reset);
    if (live.flags.includes('NOINHERIT')) resets.push('INHERIT');
    await atomic(q, [
      `ALTER ROLE ${ident(role)} WITH ${options}${resets.length ? ` ${resets.join(' ')}` : ''}`,
      // A role made before installations had ids takes this one's on its first change.
      ...(owner.installation && live.comment.installation === undefined ? [commentSql(role, { ...live.comment, ...owner.marker() })] : []),
    ]);
    // Open sessions keep working after NOLOGIN: a login taken away ends them too.
    if (live.login && !attrs.login) await q(terminateSql, [live.oid]);
  }, false);
  return {};
}

type Dependency = { dbid: string; datname: string | null; classid: string; objid: string; objsubid: number; deptype: string };

/**
 * Deprovision: no new logins, end open sessions, revoke everything, drop. Owned objects stop it:
 * datagrant never drops or reassigns data.
 */
async function dropRole(ctx: PgContext, role: string, address: string): Promise<ExecuteResult> {
  const { name, conn, owner } = ctx;
  const state = await conn.admin(async (q) => {
    const live = await owner.liveRole(q, role);
    if (!live) return undefined;
    if (!live.comment || live.comment.kind === 'session') throw owner.notOurs(role, address);
    const deps = await q(
      `SELECT s.dbid::int8::text AS dbid, d.datname, s.classid::int8::text AS classid, s.objid::int8::text AS objid, s.objsubid, s.deptype
         FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid
        WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1::oid`,
      [live.oid],
    );
    return { live, deps: deps.rows as Dependency[] };
  });
  if (!state) return {};

  // Lock out first, whatever happens next: no new logins, and open sessions (which keep their
  // privileges until they end) are ended.
  await conn.admin((q) => q(`ALTER ROLE ${ident(role)} NOLOGIN`), false);
  await conn.admin((q) => q(terminateSql, [state.live.oid]), false);

  const owned = state.deps.filter((d) => d.deptype === 'o');
  if (owned.length) {
    const names: string[] = [];
    for (const o of owned) {
      const where = o.dbid === '0' ? conn.adminDatabase : o.datname;
      if (!where) continue;
      const d = await conn.on(where, (q) => q('SELECT pg_describe_object($1::oid, $2::oid, $3) AS what', [o.classid, o.objid, o.objsubid]), false);
      names.push(`${(d.rows[0] as { what: string }).what}${o.dbid === '0' ? '' : ` in database ${where}`}`);
    }
    throw new BackendError(
      `${name}: role ${role} owns ${names.sort().join(', ')}; its login is disabled and its sessions ended, but datagrant does not drop or reassign data — move or drop ${owned.length > 1 ? 'them' : 'it'} by hand (REASSIGN OWNED BY ${role} TO …), then apply again`,
      name,
      'owns-objects',
      false,
      address,
    );
  }

  // Nothing is owned, so DROP OWNED only revokes: privileges and default privileges per database.
  const databases = [...new Set(state.deps.filter((d) => d.dbid !== '0' && d.datname).map((d) => d.datname!))].sort();
  // DROP OWNED would also drop anything the role came to own since the check above: check
  // again in the same transaction, just before it.
  const dropOwned = async (q: Query, where: string) => {
    const owns = await q(
      `SELECT count(*)::int AS n FROM pg_shdepend
        WHERE refclassid = 'pg_authid'::regclass AND refobjid = $1::oid AND deptype = 'o'
          AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))`,
      [state.live.oid],
    );
    if ((owns.rows[0] as { n: number }).n > 0) {
      throw new BackendError(
        `${name}: role ${role} came to own objects in database ${where} while being removed; nothing was dropped — apply again for details`,
        name,
        'owns-objects',
        true,
        address,
      );
    }
    await takePrivilegesOf(q, role);
    await q(`DROP OWNED BY ${ident(role)}`);
  };
  for (const database of databases) {
    try {
      await conn.on(database, (q) => dropOwned(q, database));
    } catch (e) {
      if (sqlState(e) !== '3D000') throw e;
    }
  }
  await conn.admin(async (q) => {
    await lock(q, `role:${role}`);
    if (!(await owner.liveRole(q, role))) return;
    await dropOwned(q, conn.adminDatabase); // shared objects: database privileges
    await q(`DROP ROLE ${ident(role)}`);
  });
  return {};
}
