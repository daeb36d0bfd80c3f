// What each backend can hold exactly. A value outside these limits would be truncated, refused
// after some objects were already made, or read differently by the backend than it was reviewed:
// it is rejected when the spec is validated, before any backend is called. The compilers check
// the same functions again for values that reach them another way (SCIM identities).

/** PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes; we refuse them instead. */
export const PG_IDENTIFIER_MAX_BYTES = 63;

/** Role names PostgreSQL refuses even when quoted. */
const PG_RESERVED_ROLES = new Set(['public', 'none']);

/** Why `value` cannot be a PostgreSQL identifier (database, schema, table, role), or undefined. */
export function pgIdentifierProblem(value: string): string | undefined {
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > PG_IDENTIFIER_MAX_BYTES)
    return `is ${bytes} bytes long; PostgreSQL identifiers hold at most ${PG_IDENTIFIER_MAX_BYTES} bytes (it would silently cut the rest)`;
  if (value.includes('\0')) return 'contains a NUL character, which PostgreSQL identifiers cannot hold';
  return undefined;
}

/** Why `name` cannot be a PostgreSQL role name, or undefined. */
export function pgRoleNameProblem(name: string): string | undefined {
  const identifier = pgIdentifierProblem(name);
  if (identifier) return identifier;
  if (name.startsWith('pg_')) return 'starts with pg_, which PostgreSQL reserves for its own roles';
  if (PG_RESERVED_ROLES.has(name)) return 'is a role name PostgreSQL reserves';
  return undefined;
}

/** MariaDB's limits on database and table names, in characters. */
export const MYSQL_IDENTIFIER_MAX_CHARS = 64;
/** MariaDB 10.11 holds user and role names of up to 128 characters. */
export const MYSQL_ACCOUNT_NAME_MAX_CHARS = 128;
/** The host part of an account (`'name'@'<host>'`). */
export const MYSQL_HOST_MAX_CHARS = 255;

/** Role names MariaDB refuses (`NONE`, and `PUBLIC` from 10.11's successors on), in any case. */
const MYSQL_RESERVED_ROLES = new Set(['none', 'public']);

function mysqlTextProblem(value: string): string | undefined {
  if (value.includes('\0')) return 'contains a NUL character, which MariaDB names cannot hold';
  for (const ch of value) {
    const code = ch.codePointAt(0)!;
    if (code > 0xffff) return `contains ${JSON.stringify(ch)} (U+${code.toString(16).toUpperCase()}), outside what MariaDB's system tables hold (utf8mb3)`;
    if (code < 0x20 || code === 0x7f)
      return `contains the control character U+${code.toString(16).toUpperCase().padStart(4, '0')}, which is invisible in review`;
  }
  return undefined;
}

/**
 * Why `value` cannot be a MariaDB database or table name, or undefined. A backslash is refused in
 * database names: GRANT … ON db.* reads \\ as the escape of its wildcards (_ and %), so the name
 * could not be said exactly.
 */
export function mysqlIdentifierProblem(value: string, what: 'database' | 'table'): string | undefined {
  const chars = [...value].length;
  if (chars > MYSQL_IDENTIFIER_MAX_CHARS) return `is ${chars} characters long; MariaDB ${what} names hold at most ${MYSQL_IDENTIFIER_MAX_CHARS}`;
  if (value.endsWith(' ')) return `ends with a space, which MariaDB ${what} names cannot`;
  if (what === 'database' && value.includes('\\')) return 'contains a backslash, which GRANT reads as an escape in database names';
  return mysqlTextProblem(value);
}

/** Why `name` cannot be a MariaDB user or role name, or undefined. */
export function mysqlAccountNameProblem(name: string): string | undefined {
  const chars = [...name].length;
  if (chars > MYSQL_ACCOUNT_NAME_MAX_CHARS) return `is ${chars} characters long; MariaDB user and role names hold at most ${MYSQL_ACCOUNT_NAME_MAX_CHARS}`;
  if (MYSQL_RESERVED_ROLES.has(name.toLowerCase())) return 'is a role name MariaDB reserves';
  return mysqlTextProblem(name);
}

/**
 * Why `host` cannot be the host part of datagrant's accounts, or undefined: a host name, an IP
 * address, or a pattern of them with % and _ (`%`, `10.0.%`, `%.example.com`), or a netmask.
 */
export function mysqlHostProblem(host: string): string | undefined {
  if (host.length === 0) return 'must not be empty; write % for any host';
  if (host.length > MYSQL_HOST_MAX_CHARS) return `is ${host.length} characters long; MariaDB holds at most ${MYSQL_HOST_MAX_CHARS}`;
  if (!/^[A-Za-z0-9.%_:/-]+$/.test(host))
    return 'may contain only letters, digits and . % _ : / - (a host name, an address, a pattern such as 10.0.% or a netmask)';
  return undefined;
}

/**
 * Rotation periods and grace periods are at most 10 years: every instant computed from them
 * (at plan, and at apply right after a new key exists) stays a real date.
 */
export const MAX_DURATION_SECONDS = 3650 * 86400;
export const MAX_DURATION_HELP = 'at most 10 years (3650d, 87600h)';

/**
 * An S3 prefix lands in an IAM policy twice, as `arn:aws:s3:::bucket/<prefix>*` and as the
 * `s3:prefix` condition `<prefix>*`, and must mean there exactly what it says. Allowed: printable
 * characters of U+0020-U+00FF (all that IAM accepts in a policy document) except those below.
 * Reviewed together with the pattern in `S3_PREFIX_RE`.
 */
export function s3PrefixProblem(prefix: string): string | undefined {
  if (prefix.startsWith('/')) return 'must not start with / (a prefix is relative to the bucket: write training/, not /training/)';
  if (prefix.includes('${')) {
    return 'must not contain "${": IAM reads ${...} in a policy as a variable (such as ${aws:username}) and substitutes it on every request, so the grant would not be the reviewed text';
  }
  const wildcard = /[*?]/.exec(prefix);
  if (wildcard) return `must not contain the wildcard ${wildcard[0]}: in an IAM resource it matches any characters and would widen the grant`;
  if (prefix.includes(':')) return 'must not contain ":": S3-compatible servers split policy ARNs at ":" or refuse them';
  const decoded = /[+%]/.exec(prefix);
  if (decoded) {
    return `must not contain "${decoded[0]}": some S3-compatible servers URL-decode policy resources (again), turning "+" into a space and "%2A" into the wildcard *`;
  }
  for (const ch of prefix) {
    const code = ch.codePointAt(0)!;
    const hex = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
    if (code < 0x20 || (code >= 0x7f && code < 0xa0)) return `must not contain the control character ${hex}: it is invisible in review`;
    if (code > 0xff) return `must not contain ${JSON.stringify(ch)} (${hex}): IAM policy documents hold only characters up to U+00FF`;
  }
  return undefined;
}

/** The same rule as `s3PrefixProblem`, as a pattern for the published JSON Schema. */
export const S3_PREFIX_RE = /^(?!\/)(?!.*\$\{)[\x20-\x24\x26-\x29\x2c-\x39\x3b-\x3e\x40-\x7e\xa0-\xff]+$/;

/** One IAM quota of an AWS account: AWS's default, and how far AWS raises it on request. */
export interface AccountQuota {
  /** What is counted, as a message names it. */
  what: string;
  default: number;
  /** The most AWS grants; equal to `default` when AWS does not raise the quota. */
  max: number;
}

/**
 * IAM's per-account quotas that a spec can exhaust (AWS's defaults). Every aws backend may set its
 * own, lower to leave room for objects datagrant does not make, higher once AWS raised them.
 */
export const IAM_ACCOUNT_QUOTAS = {
  users: { what: 'IAM users', default: 5000, max: 5000 },
  groups: { what: 'IAM groups', default: 300, max: 500 },
  policies: { what: 'customer managed policies', default: 1500, max: 5000 },
  roles: { what: 'IAM roles', default: 1000, max: 5000 },
} as const satisfies Record<string, AccountQuota>;

export type AccountQuotaName = keyof typeof IAM_ACCOUNT_QUOTAS;
