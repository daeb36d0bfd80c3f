// password/<role>: a login role's password, the credential datagrant issues. 32 random bytes
// generated here, sent only as a SCRAM-SHA-256 verifier; the role's comment names its credential
// id, so that a password datagrant did not set is noticed and one it superseded is left alone.
import { randomUUID } from 'node:crypto';
import { BackendError } from '../../core/errors.js';
import { textOf } from '../../core/canonical.js';
import type { ExecuteResult } from '../backend.js';
import { atomic } from './connection.js';
import type { Handler, PgContext } from './context.js';
import { commentSql, terminateSql } from './ownership.js';
import { generatePassword, ident, literal, scramVerifier, verifierFingerprint } from './sql.js';

export const executePassword: Handler<'password'> = (ctx, change) =>
  change.action === 'delete'
    ? clearPassword(ctx, change.before!.name, textOf(change.before!.meta?.credentialId))
    : setPassword(ctx, change.after!.name, change.address);

/**
 * The database a credential names: the first one the role (or one of its groups) may connect to.
 * `role` is SQL yielding its oid.
 */
const databaseSql = (role: string) =>
  `SELECT d.datname FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
    WHERE a.privilege_type = 'CONNECT'
      AND (a.grantee = ${role} OR a.grantee IN (SELECT roleid FROM pg_auth_members WHERE member = ${role}))
    ORDER BY 1 LIMIT 1`;

async function setPassword(ctx: PgContext, role: string, address: string): Promise<ExecuteResult> {
  const { name, conn, owner } = ctx;
  const password = generatePassword();
  const verifier = await scramVerifier(password);
  const credentialId = randomUUID();
  const createdAt = new Date().toISOString();
  const live = (await owner.roles([role])).get(role);
  if (!live) throw owner.missing('role', role, address);
  if (!live.comment) throw owner.notOurs(role, address);
  if (!live.login) throw new BackendError(`${name}: role ${role} cannot log in; a password would be useless`, name, 'not-login', false, address);
  // The verifier and the comment naming its credential id change together or not at all.
  const results = await conn.admin(
    (q) =>
      atomic(q, [
        `ALTER ROLE ${ident(role)} PASSWORD ${literal(verifier)}`,
        commentSql(role, { ...live.comment, ...owner.marker(), credential: credentialId, createdAt, verifier: verifierFingerprint(verifier) }),
        databaseSql(`${literal(live.oid)}::oid`),
      ]),
    false,
  );
  const database = (results.at(-1)!.rows[0] as { datname: string } | undefined)?.datname ?? conn.adminDatabase;
  return {
    secret: { username: role, password, host: conn.server.hostname, port: conn.server.port || '5432', database },
    credential: { credentialId, createdAt },
    meta: { credentialId, createdAt },
  };
}

/**
 * Clears the password `credentialId` names, and only that one: a newer password is left alone.
 * PostgreSQL checks a password only at login, so the sessions it opened live on: they are ended
 * once it is cleared (a revoked password, `credentials rotate --revoke-old`, stops at once). Its
 * successor is set after this change, so no session ended here was opened with a newer one.
 */
async function clearPassword(ctx: PgContext, role: string, credentialId: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  const live = (await owner.roles([role])).get(role);
  if (!live || !live.comment) return {}; // gone, or not ours to touch
  if (credentialId && live.comment.credential !== undefined && live.comment.credential !== credentialId) return {};
  await conn.admin(async (q) => {
    await atomic(q, [`ALTER ROLE ${ident(role)} PASSWORD NULL`, commentSql(role, owner.marker())]);
    await q(terminateSql, [live.oid]);
  }, false);
  return {};
}
