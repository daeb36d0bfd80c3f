// password/<name>: an account's password, the credential datagrant issues. 32 random bytes
// generated here, sent only as the mysql_native_password hash (the server never sees the
// password); the marker names its credential id and the hash's fingerprint, so that a password
// datagrant did not set is noticed and one it superseded is left alone.
//
// MariaDB commits ALTER USER by itself: if the run dies between it and the marker, or before the
// store has the secret, the next read finds no password it can vouch for (the marker does not
// name the stored id, or its fingerprint does not match the hash) and the plan sets a new one.
import { randomUUID } from 'node:crypto';
import { BackendError } from '../../core/errors.js';
import { textOf } from '../../core/canonical.js';
import type { ExecuteResult } from '../backend.js';
import type { Handler, MysqlContext } from './context.js';
import { endSessions } from './disconnect.js';
import { markerSql } from './ownership.js';
import { account, creationHash, generatePassword, hashFingerprint, literal, nativePasswordHash } from './sql.js';

export const executePassword: Handler<'password'> = (ctx, change) =>
  change.action === 'delete'
    ? clearPassword(ctx, change.before!.attrs.account, change.before!.attrs.host, textOf(change.before!.meta?.credentialId))
    : setPassword(ctx, change.after!.attrs.account, change.after!.attrs.host, change.address);

async function setPassword(ctx: MysqlContext, name: string, host: string, address: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  const password = generatePassword();
  const hash = nativePasswordHash(password);
  const credentialId = randomUUID();
  const createdAt = new Date().toISOString();
  const database = await conn.on(async (send) => {
    const { live } = await owner.account(send, name, host);
    if (!live) throw owner.missing('account', `'${name}'@'${host}'`, address);
    if (live.foreign) throw owner.foreignObject('account', `'${name}'@'${host}'`, live.foreign, address);
    if (!live.marker) throw owner.notOurs('account', `'${name}'@'${host}'`, address);
    if (live.locked)
      throw new BackendError(`${ctx.name}: account '${name}'@'${host}' is locked; a password would be useless`, ctx.name, 'locked', false, address);
    const results = await send([
      `ALTER USER ${account(name, host)} IDENTIFIED BY PASSWORD ${literal(hash)}`,
      markerSql(name, host, { ...live.marker, ...owner.marker(), credential: credentialId, createdAt, verifier: hashFingerprint(hash) }),
      // The database a credential names: the first one its role, or a role granted to it, holds something in.
      `SELECT Db AS db FROM (
         SELECT Db FROM mysql.db WHERE Host = '' AND User IN (SELECT ${literal(name)} UNION SELECT Role FROM mysql.roles_mapping WHERE Host = '' AND User = ${literal(name)})
         UNION SELECT Db FROM mysql.tables_priv WHERE Host = '' AND User IN (SELECT ${literal(name)} UNION SELECT Role FROM mysql.roles_mapping WHERE Host = '' AND User = ${literal(name)})
       ) d ORDER BY 1 LIMIT 1`,
    ]);
    const db = results.at(-1)![0]?.db;
    return typeof db === 'string' ? db.replace(/\\([_%])/g, '$1') : '';
  });
  return {
    secret: { protocol: 'mysql', username: name, password, host: conn.server.host, port: conn.server.port, database },
    credential: { credentialId, createdAt },
    meta: { credentialId, createdAt },
  };
}

/**
 * Clears the password `credentialId` names, and only that one: a newer password is left alone.
 * MariaDB checks a password only at login, so the sessions it opened live on: they are ended once
 * it is cleared (a revoked password, `credentials rotate --revoke-old`, stops at once). Its
 * successor is set after this change, so no session ended here was opened with a newer one.
 */
async function clearPassword(ctx: MysqlContext, name: string, host: string, credentialId: string): Promise<ExecuteResult> {
  const { conn, owner } = ctx;
  await conn.on(async (send) => {
    const { live } = await owner.account(send, name, host);
    if (!live || !live.marker) return; // gone, or not ours to touch
    if (credentialId && live.marker.credential !== undefined && live.marker.credential !== credentialId) return;
    const { credential: _c, createdAt: _a, verifier: _v, ...rest } = live.marker;
    await send([
      `ALTER USER ${account(name, host)} IDENTIFIED BY PASSWORD ${literal(creationHash(owner.scope, owner.marker().installation, name))}`,
      markerSql(name, host, { ...rest, ...owner.marker() }),
    ]);
    await endSessions(ctx, send, { accounts: [name] });
  });
  return {};
}
