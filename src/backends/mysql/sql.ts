// SQL text for MariaDB. Every identifier the driver sends goes through `ident`, every account
// through `account`, every string literal through `literal`; the session runs without
// NO_BACKSLASH_ESCAPES (connection.ts), so a backslash in a literal is always an escape.
import { createHash, randomBytes } from 'node:crypto';

export function ident(name: string): string {
  if (name.length === 0 || name.includes('\0')) throw new Error(`invalid SQL identifier ${JSON.stringify(name)}`);
  return `\`${name.replace(/`/g, '``')}\``;
}

export function literal(value: string): string {
  if (value.includes('\0')) throw new Error('a SQL literal cannot contain NUL');
  // A quote is doubled, which ends no literal in either mode: should a session ever run with
  // NO_BACKSLASH_ESCAPES after all, a backslash reads as itself and cannot escape the closing quote.
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** `'name'@'host'`: an account. A role is named by `ident` alone (MariaDB reads a bare name as the role). */
export const account = (name: string, host: string) => `${literal(name)}@${literal(host)}`;

/**
 * A database in `GRANT … ON db.*`, where MariaDB reads _ and % as wildcards unless escaped: the
 * exact name, as mysql.db stores it. (Table-level grants name the database exactly, unescaped.)
 */
export const databasePattern = (database: string) => database.replace(/[_%]/g, (c) => `\\${c}`);

/** The database a mysql.db pattern names exactly, or undefined when the pattern has a wildcard. */
export function exactDatabase(pattern: string): string | undefined {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && (pattern[i + 1] === '_' || pattern[i + 1] === '%')) {
      out += pattern[++i];
      continue;
    }
    if (c === '_' || c === '%') return undefined;
    out += c;
  }
  return out;
}

/** `db.*` for a whole-database grant. */
export const onDatabase = (database: string) => `${ident(databasePattern(database))}.*`;
/** `db.table` for a table grant. */
export const onTable = (database: string, table: string) => `${ident(database)}.${ident(table)}`;

/** 32 random bytes, base64url: 43 characters that need no quoting anywhere. */
export function generatePassword(): string {
  return randomBytes(32).toString('base64url');
}

const sha1 = (data: Buffer | string) => createHash('sha1').update(data).digest();

/**
 * What mysql_native_password stores for a password: `*` and SHA1(SHA1(password)) in hex. Sent as
 * `IDENTIFIED BY PASSWORD '<hash>'`, the server stores it as is: the clear password never reaches
 * the server or its logs.
 */
export function nativePasswordHash(password: string): string {
  return `*${sha1(sha1(password)).toString('hex').toUpperCase()}`;
}

/**
 * What a new account is created with before its password is set: a valid hash of no password
 * anyone knows (nobody can log in), derived from the scope, installation and name, so that an
 * account left by a run that died before marking it is still recognised as this installation's.
 */
export function creationHash(scope: string | undefined, installation: string | undefined, name: string): string {
  return `*${sha1(`datagrant-account\0${scope ?? ''}\0${installation ?? ''}\0${name}`)
    .toString('hex')
    .toUpperCase()}`;
}

/** A short fingerprint of a stored hash, kept in the marker to notice a password changed by hand. */
export function hashFingerprint(hash: string): string {
  return createHash('sha256').update(hash).digest('hex').slice(0, 16);
}
