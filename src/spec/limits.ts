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
