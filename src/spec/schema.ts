// The spec's shape (version 1). zod checks the shape; cross-references and backend limits are
// checked in `validate.ts`, so every problem is reported at once with its position.
import { z } from 'zod';
import {
  IAM_ACCOUNT_QUOTAS,
  MAX_DURATION_HELP,
  MAX_DURATION_SECONDS,
  mysqlHostProblem,
  mysqlIdentifierProblem,
  pgIdentifierProblem,
  S3_PREFIX_RE,
  s3PrefixProblem,
  type AccountQuota,
} from './limits.js';

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9+=,.@_-]*$/;
const NAME_HELP = 'letters, digits and + = , . @ _ - (starting with a letter or digit)';

export const DURATION_RE = /^([1-9][0-9]*)(s|m|h|d)$/;
/** `2027-01-31` or a full ISO 8601 instant with a zone (`2027-01-31T12:00:00Z`). */
export const EXPIRES_RE = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

const name = (what: string, max: number) =>
  z
    .string()
    .min(1, `${what} must not be empty`)
    .max(max, {
      error: (issue) => `${what} is ${typeof issue.input === 'string' ? issue.input.length : 'too many'} characters long; at most ${max} are allowed`,
    })
    .regex(NAME_RE, `${what} may contain only ${NAME_HELP}`);

const duration = z
  .string()
  .regex(DURATION_RE, 'must be a duration such as 90d, 24h, 30m or 3600s')
  .superRefine((value, ctx) => {
    if (DURATION_RE.test(value) && !withinDurationLimit(value)) {
      ctx.addIssue({ code: 'custom', message: `is too long; a duration is ${MAX_DURATION_HELP}` });
    }
  });

/** STS's bounds for a role session, which PostgreSQL's temporary logins follow too. */
export const MIN_SESSION_SECONDS = 900;
export const MAX_SESSION_SECONDS = 43_200;
export const DEFAULT_MAX_SESSION = '1h';

const sessionLength = z
  .string()
  .regex(DURATION_RE, 'must be a duration such as 1h, 30m or 3600s')
  .superRefine((value, ctx) => {
    if (!DURATION_RE.test(value)) return;
    const s = rawSeconds(value);
    if (s < MIN_SESSION_SECONDS || s > MAX_SESSION_SECONDS) {
      ctx.addIssue({
        code: 'custom',
        message: `is ${s < MIN_SESSION_SECONDS ? 'too short' : 'too long'}; a session lasts from 15m to 12h (${MIN_SESSION_SECONDS}s to ${MAX_SESSION_SECONDS}s), the bounds AWS STS allows`,
      });
    }
  });

/**
 * How a principal gets its credentials. `key`: a long-lived AWS access key or PostgreSQL password,
 * stored encrypted and rotated. `temporary`: nothing long-lived; each session is issued on demand
 * (AWS: an STS role session, PostgreSQL: a login role valid until the session ends).
 */
export const credentialsMode = z.enum(['key', 'temporary'], {
  error: (issue) =>
    `credentials ${JSON.stringify(issue.input)} is not allowed; allowed: key (a long-lived access key or password, rotated), temporary (short-lived sessions issued on demand: an AWS role session, a PostgreSQL login valid until the session ends)`,
});

/** A deadline is at most an hour: longer is no deadline at all for a call that should take seconds. */
export const MAX_DEADLINE_SECONDS = 3600;

const deadline = z
  .string()
  .regex(DURATION_RE, 'must be a duration such as 10s, 2m or 1h')
  .superRefine((value, ctx) => {
    if (DURATION_RE.test(value) && rawSeconds(value) > MAX_DEADLINE_SECONDS) {
      ctx.addIssue({ code: 'custom', message: `is too long; a deadline is at most 1h (${MAX_DEADLINE_SECONDS}s)` });
    }
  });

/**
 * How long a backend may take to answer. A server that accepts a connection and then says nothing
 * must not stall plan, apply or serve's reconciles for ever.
 */
const timeoutsSchema = z.strictObject({
  /** Until the connection is ready for requests (TCP, TLS, PostgreSQL's start-up and login). */
  connect: deadline.optional(),
  /** For one request (one AWS API call, one SQL statement) to be answered in full. */
  request: deadline.optional(),
});

const thousands = (n: number) => n.toLocaleString('en-US');

/** A whole number of objects from 1 up to what AWS grants at most. */
const accountQuota = (q: AccountQuota) => {
  const message =
    q.max === q.default
      ? `must be a whole number from 1 to ${q.max}: AWS does not raise the quota of ${q.what} above ${thousands(q.max)}`
      : `must be a whole number from 1 to ${q.max}: AWS's quota of ${q.what} is ${thousands(q.default)}, raised on request up to ${thousands(q.max)}`;
  return z.number().multipleOf(1, message).min(1, message).max(q.max, message);
};

/**
 * The account's IAM quotas that datagrant may fill, checked at plan. AWS's defaults unless set:
 * lower them to leave room for what others make in the account, raise them once AWS has.
 */
const quotasSchema = z.strictObject({
  users: accountQuota(IAM_ACCOUNT_QUOTAS.users).optional(),
  groups: accountQuota(IAM_ACCOUNT_QUOTAS.groups).optional(),
  policies: accountQuota(IAM_ACCOUNT_QUOTAS.policies).optional(),
  roles: accountQuota(IAM_ACCOUNT_QUOTAS.roles).optional(),
});

const EXPIRES_HELP = 'a date (2027-01-31) or an ISO 8601 instant with a zone (2027-01-31T12:00:00Z)';

/** True when `expires` names a real calendar date and time (`Date` silently turns 02-30 into 03-02). */
export function isRealInstant(expires: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?)?/.exec(expires);
  if (!m) return false;
  const [y, mo, d, h = '0', mi = '0', sec = '0'] = m.slice(1).map((x: string | undefined) => x ?? '0');
  const probe = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  return (
    probe.getUTCFullYear() === Number(y) &&
    probe.getUTCMonth() === Number(mo) - 1 &&
    probe.getUTCDate() === Number(d) &&
    Number(h) <= 23 &&
    Number(mi) <= 59 &&
    Number(sec) <= 59 &&
    !Number.isNaN(expiresInstant(expires).getTime())
  );
}

// The pattern stays a zod regex so that the published JSON Schema carries it.
const expires = z
  .string()
  .regex(EXPIRES_RE, `must be ${EXPIRES_HELP}`)
  .superRefine((value, ctx) => {
    if (EXPIRES_RE.test(value) && !isRealInstant(value)) {
      ctx.addIssue({ code: 'custom', message: `is not a real date or time; expected ${EXPIRES_HELP}` });
    }
  });

export const levelSchema = z.enum(['read', 'write', 'admin'], {
  error: (issue) => `access ${JSON.stringify(issue.input)} is not a level; allowed: read, write, admin`,
});

export const grantSchema = z.strictObject({
  dataset: z.string().min(1, 'dataset must not be empty'),
  access: levelSchema,
  expires: expires.optional(),
});

/**
 * Who may approve requests for access (`datagrant requests`, serve's /v1/requests): these
 * principals and the members of these groups, up to `access`. On a dataset it covers that
 * dataset; a top-level rule covers its `datasets` (default: every dataset).
 */
const approverFields = {
  principals: z.array(z.string().min(1, 'principal must not be empty')).optional(),
  groups: z.array(z.string().min(1, 'group must not be empty')).optional(),
  /** The highest level these approvers may grant (default read: a request for more needs a rule that says so). */
  access: levelSchema.optional(),
};
const someApprover = (a: { principals?: string[] | undefined; groups?: string[] | undefined }) => (a.principals?.length ?? 0) + (a.groups?.length ?? 0) > 0;
const SOME_APPROVER = 'approvers must name at least one principal (principals: [..]) or group (groups: [..]) who may approve';

export const datasetApproversSchema = z.strictObject(approverFields).refine(someApprover, { message: SOME_APPROVER });

export const approverRuleSchema = z
  .strictObject({
    description: z.string().optional(),
    /** The datasets it covers; default: every dataset. */
    datasets: z
      .array(z.string().min(1, 'dataset must not be empty'))
      .min(1, 'datasets must name at least one dataset, or be left out for every dataset')
      .optional(),
    ...approverFields,
  })
  .refine(someApprover, { message: SOME_APPROVER });

/** The longest a request may ask for, unless `settings.requests.maxDuration` says otherwise. */
export const DEFAULT_REQUEST_MAX_DURATION = '30d';
/** How long a request may wait for a decision before it expires, unless `settings.requests.decideWithin` says otherwise. */
export const DEFAULT_REQUEST_DECIDE_WITHIN = '7d';

const requestSettingsSchema = z.strictObject({
  /** The longest access a request may ask for (it ends this long after its approval at most). */
  maxDuration: duration.optional(),
  /** A request nobody approved or denied within this long expires. */
  decideWithin: duration.optional(),
});

const consoleSettingsSchema = z.strictObject({
  /** The `settings.oidc` issuer (its name) people sign in to the console with. */
  oidc: z.string().min(1, 'oidc must name an issuer of settings.oidc'),
  /**
   * The client id the console is registered as at that issuer (its ID tokens carry it as `aud`);
   * default: the issuer's `audience`. A client secret, if the issuer wants one, comes from
   * DATAGRANT_CONSOLE_CLIENT_SECRET, never the file.
   */
  clientId: z.string().min(1, 'clientId must not be empty').optional(),
});

/**
 * Where a grant that is not in the file comes from: an approved request, merged into the spec's
 * principals at run time (plan, apply, serve) exactly as SCIM people are. The file's own grants
 * have none.
 */
export interface GrantOrigin {
  request: number;
  /** The principal who approved it. */
  approvedBy: string;
}

/** An IAM role's ARN: `arn:<partition>:iam::<12-digit account id>:role/<path/><name>`. */
export const ROLE_ARN_RE = /^arn:(aws|aws-[a-z]+(-[a-z]+)*):iam::(\d{12}):role\/([\w+=,.@-]+\/)*[\w+=,.@-]{1,64}$/;

/**
 * A role the backend assumes for its own calls, made with the standard credential chain: the
 * account it manages is the role's, so one spec reaches several accounts, one backend each.
 */
const assumeRoleSchema = z.strictObject({
  roleArn: z
    .string()
    .regex(
      ROLE_ARN_RE,
      'must be an IAM role ARN: arn:<partition>:iam::<12-digit account id>:role/<name>, such as arn:aws:iam::222222222222:role/datagrant (partition aws, aws-cn or aws-us-gov)',
    ),
  /** What the role's trust policy requires in sts:ExternalId, if anything. */
  externalId: z
    .string()
    .regex(/^[\w+=,.@:/-]{2,1224}$/, 'must be 2 to 1224 letters, digits and + = , . @ : / - _ (what AWS STS allows in an external id)')
    .optional(),
  /** The session name CloudTrail shows for datagrant's calls (default: datagrant-<backend name>). */
  sessionName: z
    .string()
    .regex(/^[\w+=,.@-]{2,64}$/, 'must be 2 to 64 letters, digits and + = , . @ - _ (what AWS STS allows in a role session name)')
    .optional(),
});

/** The account id in an IAM role ARN that matched ROLE_ARN_RE. */
export function roleAccount(roleArn: string): string | undefined {
  return ROLE_ARN_RE.exec(roleArn)?.[3];
}

const awsBackend = z.strictObject({
  type: z.literal('aws'),
  region: z.string().min(1).optional(),
  /** IAM path that marks datagrant's objects; everything outside it is invisible. */
  iamPath: z
    .string()
    // At least one segment: the path is datagrant's ownership boundary, and "/" would claim
    // (and plan to delete) every IAM user, group and policy in the account.
    .regex(
      /^\/([!-.0-~]+\/)+$/,
      'must be a path below the root that starts and ends with / (for example /datagrant/); "/" would make datagrant own every IAM user in the account',
    )
    .max(512, 'must be at most 512 characters')
    .optional(),
  /** Endpoint override (a local emulator); normally the standard AWS endpoint is used. */
  endpoint: z
    .string()
    .regex(/^https?:\/\/[^\s/?#]+(\/[^\s]*)?$/, 'must be an http(s) URL such as http://127.0.0.1:5000')
    .optional(),
  timeouts: timeoutsSchema.optional(),
  quotas: quotasSchema.optional(),
  /** A role to assume for every call: the backend manages the role's account. */
  assumeRole: assumeRoleSchema.optional(),
});

const postgresBackend = z.strictObject({
  type: z.literal('postgres'),
  url: z.string().min(1, 'url must not be empty (a postgres:// URL, or ${VAR} to read it from the environment)'),
  /**
   * Marks the roles this installation owns. Two datagrant installations (or test runs) that share
   * one server must use different scopes, or each would plan the other's roles away.
   */
  scope: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,40}$/, 'scope may contain only letters, digits, _ . - (at most 40)')
    .optional(),
  timeouts: timeoutsSchema.optional(),
});

/**
 * A Ceph RADOS gateway (on-prem S3). Its users are datagrant's when their uid starts with
 * `userPrefix` and their display name carries datagrant's marker; two installations sharing one
 * gateway use different prefixes. The admin user's key is read from the environment (`${VAR}`).
 */
const rgwBackend = z.strictObject({
  type: z.literal('rgw'),
  /** The gateway's S3 endpoint; its admin ops API and IAM API are served there too. */
  endpoint: z.string().regex(/^https?:\/\/[^\s/?#]+\/?$/, 'must be the http(s) URL of the gateway, such as http://rgw.example:7480'),
  /** The region requests are signed for, and that exported credentials name (default us-east-1). */
  region: z.string().min(1).optional(),
  accessKeyId: z.string().min(1, "accessKeyId must not be empty (the admin user's key, ${VAR} to read it from the environment)"),
  secretAccessKey: z.string().min(1, 'secretAccessKey must not be empty (write ${VAR} to read it from the environment)'),
  /** The ownership boundary: the uid prefix of every user datagrant makes (default dg-). */
  userPrefix: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/, 'userPrefix may contain only letters, digits, . _ - (at most 32, starting with a letter or digit)')
    .optional(),
  timeouts: timeoutsSchema.optional(),
});

const mysqlBackend = z.strictObject({
  type: z.literal('mysql'),
  url: z.string().min(1, 'url must not be empty (a mysql:// URL, or ${VAR} to read it from the environment)'),
  /** The host part of every account datagrant makes (`'alice'@'<host>'`); default `%`, any host. */
  host: z
    .string()
    .superRefine((value, ctx) => {
      const problem = mysqlHostProblem(value);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  /** As for postgres: installations (or test runs) sharing one server each see only their own accounts. */
  scope: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,40}$/, 'scope may contain only letters, digits, _ . - (at most 40)')
    .optional(),
  timeouts: timeoutsSchema.optional(),
});

export const backendSchema = z.discriminatedUnion('type', [awsBackend, postgresBackend, rgwBackend, mysqlBackend], {
  error: (issue) => (issue.code === 'invalid_union' ? 'backend type must be one of: aws, postgres, rgw, mysql' : undefined),
});

const s3Dataset = z.strictObject({
  backend: z.string().min(1, 'backend must not be empty'),
  bucket: z
    .string()
    .regex(/^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)'),
  prefix: z
    .string()
    .min(1)
    .max(1024)
    .regex(S3_PREFIX_RE, { error: (issue) => (typeof issue.input === 'string' ? s3PrefixProblem(issue.input) : undefined) })
    .optional(),
  description: z.string().optional(),
  /** Who may approve requests for access to this dataset. */
  approvers: datasetApproversSchema.optional(),
});

/** A database, schema or table name. A dot is allowed: it is part of the name, as in PostgreSQL. */
const pgIdentifier = z
  .string()
  .min(1)
  .superRefine((value, ctx) => {
    const problem = pgIdentifierProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

const pgDataset = z.strictObject({
  backend: z.string().min(1, 'backend must not be empty'),
  database: pgIdentifier,
  schema: pgIdentifier,
  tables: z.array(pgIdentifier).min(1).optional(),
  description: z.string().optional(),
  /** Who may approve requests for access to this dataset. */
  approvers: datasetApproversSchema.optional(),
});

const mysqlName = (what: 'database' | 'table') =>
  z
    .string()
    .min(1)
    .superRefine((value, ctx) => {
      const problem = mysqlIdentifierProblem(value, what);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    });

/** A MariaDB database, all of it or some of its tables: MariaDB has no schemas inside a database. */
const mysqlDataset = z.strictObject({
  backend: z.string().min(1, 'backend must not be empty'),
  database: mysqlName('database'),
  tables: z.array(mysqlName('table')).min(1).optional(),
  description: z.string().optional(),
  approvers: datasetApproversSchema.optional(),
});

export const datasetSchema = z.union([s3Dataset, pgDataset, mysqlDataset], {
  error: () =>
    'a dataset needs `backend` plus either `bucket` (and optional `prefix`) for aws, `database` and `schema` (and optional `tables`) for postgres, or `database` (and optional `tables`) for mysql',
});

export const groupSchema = z.strictObject({
  description: z.string().optional(),
  grants: z.array(grantSchema).default([]),
});

export const principalSchema = z.strictObject({
  type: z.enum(['person', 'service'], {
    error: (issue) => `type ${JSON.stringify(issue.input)} is not allowed; allowed: person, service`,
  }),
  email: z.string().email('is not a valid email address').optional(),
  description: z.string().optional(),
  groups: z.array(z.string().min(1, 'group must not be empty')).default([]),
  grants: z.array(grantSchema).default([]),
  rotate: duration.optional(),
  /** Default: `settings.credentials`, else `key`. */
  credentials: credentialsMode.optional(),
  /** Longest session a temporary principal is issued. Default: `settings.maxSession`, else 1h. */
  maxSession: sessionLength.optional(),
  /** Issuer name (settings.oidc) → the value of that issuer's claim naming this principal. */
  oidc: z.record(z.string().min(1, 'issuer name must not be empty'), z.string().min(1, 'the claim value must not be empty')).optional(),
});

/** What a `require` invariant can ask of a principal. */
export const REQUIRABLE_FIELDS = ['email', 'description'] as const;
export type RequirableField = (typeof REQUIRABLE_FIELDS)[number];

/** The keys that state an invariant's rule; `onlyMembersOf` and `onlyPrincipals` together are one. */
export const INVARIANT_RULES = ['onlyMembersOf', 'onlyPrincipals', 'expiresWithin', 'maxDatasets', 'require'] as const;
const RULES_HELP =
  'onlyMembersOf and/or onlyPrincipals (who may hold the access), expiresWithin (it ends within a duration), maxDatasets (on how many datasets one holder may have it) or require (fields every selected principal has)';

const maxDatasetsMessage = 'must be a whole number, 0 or more (0: no one may hold the access on the selected datasets)';

/**
 * A statement about who holds access that must never become false, checked against the spec
 * (validate, plan, apply, serve's reconciles) and against the backends (`access`). Selectors say
 * which access it looks at; exactly one rule says what must hold of it.
 */
export const invariantSchema = z
  .strictObject({
    description: z.string().optional(),
    /** Selector: the datasets it looks at (default: every dataset). */
    datasets: z
      .array(z.string().min(1, 'dataset must not be empty'))
      .min(1, 'datasets must name at least one dataset, or be left out for every dataset')
      .optional(),
    /** Selector: principals of this type only. A holder datagrant does not manage has no type. */
    type: z
      .enum(['person', 'service'], {
        error: (issue) => `type ${JSON.stringify(issue.input)} is not allowed; allowed: person, service (or leave it out for both)`,
      })
      .optional(),
    /** Selector: the lowest level it looks at, higher levels included (default read: any access). */
    access: levelSchema.optional(),
    /** Rule: no one outside these groups (or onlyPrincipals) holds the access. */
    onlyMembersOf: z
      .array(z.string().min(1, 'group must not be empty'))
      .min(1, 'onlyMembersOf must name at least one group; to let no one hold the access, write maxDatasets: 0')
      .optional(),
    /** Rule: no one but these principals (or members of onlyMembersOf) holds the access. */
    onlyPrincipals: z
      .array(z.string().min(1, 'principal must not be empty'))
      .min(1, 'onlyPrincipals must name at least one principal; to let no one hold the access, write maxDatasets: 0')
      .optional(),
    /** Rule: every such grant ends by itself within this long from now. */
    expiresWithin: duration.optional(),
    /** Rule: no one holds the access on more datasets than this. */
    maxDatasets: z.number().multipleOf(1, maxDatasetsMessage).min(0, maxDatasetsMessage).optional(),
    /** Rule: every selected principal has these fields. */
    require: z
      .array(
        z.enum(REQUIRABLE_FIELDS, {
          error: (issue) => `${JSON.stringify(issue.input)} cannot be required; allowed: ${REQUIRABLE_FIELDS.join(', ')}`,
        }),
      )
      .min(1, `require must name at least one field: ${REQUIRABLE_FIELDS.join(', ')}`)
      .optional(),
  })
  .superRefine((inv, ctx) => {
    const stated = INVARIANT_RULES.filter((r) => inv[r] !== undefined);
    const rules = stated.filter((r) => r !== 'onlyPrincipals' || !stated.includes('onlyMembersOf'));
    if (rules.length === 0) {
      ctx.addIssue({ code: 'custom', message: `an invariant states one rule, and this one states none; write one of: ${RULES_HELP}` });
    } else if (rules.length > 1) {
      // Pointed at the second rule: the first one is the invariant, the rest are the mistake.
      const label = (r: string) => (r === 'onlyMembersOf' && stated.includes('onlyPrincipals') ? 'onlyMembersOf/onlyPrincipals' : r);
      ctx.addIssue({
        code: 'custom',
        path: [rules[1]!],
        message: `an invariant states one rule, and this one states ${rules.length} (${rules.map(label).join(', ')}): write one invariant for each rule`,
      });
    }
  });

/**
 * Signature algorithms an ID token may use. Never `none` (no signature) nor HS256/384/512: those
 * are keyed with the client secret, which every relying party of the client holds, so any of them
 * could mint a token for anyone.
 */
export const OIDC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export const DEFAULT_OIDC_ALGORITHMS: readonly OidcAlgorithm[] = ['RS256', 'ES256', 'PS256', 'EdDSA'];

const oidcIssuerSchema = z.strictObject({
  /** How principals (`oidc: { <name>: … }`) and the audit log (`oidc:<name>:<sub>`) refer to it. */
  name: name('issuer name', 64),
  issuer: z.string().superRefine((value, ctx) => {
    const problem = issuerUrlProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }),
  /** The `aud` a token must carry: the client id datagrant is registered as at the issuer. */
  audience: z.string().min(1, 'audience must not be empty'),
  /** The claim that names a principal; `email` also matches people by their `email`. */
  claim: z.string().min(1, 'claim must not be empty').default('email'),
  algorithms: z
    .array(
      z.enum(OIDC_ALGORITHMS, {
        error: (issue) =>
          `algorithm ${JSON.stringify(issue.input)} is not allowed; allowed: ${OIDC_ALGORITHMS.join(', ')} (never none or HS256/384/512: a token without a signature, or signed with the client secret, proves nothing about who holds it)`,
      }),
    )
    .min(1, 'algorithms must name at least one algorithm (or be left out for the default RS256, ES256, PS256, EdDSA)')
    .optional(),
  /**
   * With `claim: email`, a token names a person by email only when it says `email_verified: true`.
   * Some IdPs (Microsoft Entra ID) send no `email_verified` and let users edit their address; set
   * this only for an IdP whose email claim users cannot change.
   */
  unverifiedEmail: z.enum(['refuse', 'accept']).default('refuse'),
});

/** Loopback hosts (a URL's hostname), where plain http never leaves the machine: local providers, tests. */
export function isLoopbackHost(hostname: string): boolean {
  return /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i.test(hostname);
}

/** Why `url` cannot be an OIDC issuer identifier, or undefined. */
export function issuerUrlProblem(url: string): string | undefined {
  const allowed = 'an https:// URL such as https://login.example.com (http:// only on localhost, 127.0.0.1 or [::1])';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `is not a URL; the issuer must be ${allowed}`;
  }
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname))) {
    return `must be ${allowed}: its keys and discovery document are fetched from it, and only TLS keeps them from being swapped on the way`;
  }
  // OpenID Connect Discovery 1.0 §3: an issuer identifier has no query or fragment.
  if (parsed.search || parsed.hash || url.includes('?') || url.includes('#')) return `must not have a query or fragment; the issuer must be ${allowed}`;
  if (parsed.username || parsed.password) return `must not hold a user name or password; the issuer must be ${allowed}`;
  return undefined;
}

/**
 * Access datagrant does not manage that the spec acknowledges (issue 13): the bootstrap superuser,
 * the account's SSO administrators. `datagrant access` still shows it, marked with the entry's
 * name and reason, but it is no difference from the spec (no exit 2) and breaks no invariant.
 */
const knownAccessSchema = z.strictObject({
  backend: z.string().min(1, 'backend must not be empty'),
  /**
   * Holders by id, as the report's holder_id says (an IAM ARN, a PostgreSQL role name, PUBLIC);
   * `*` stands for any characters within a name, never for a whole one.
   */
  holders: z.array(z.string().min(1, 'a holder must not be empty')).min(1, 'holders must name at least one holder'),
  /** The highest level accepted: access above it is still a difference. */
  access: levelSchema,
  /** The datasets it covers; default: every dataset on the backend. */
  datasets: z.array(z.string().min(1, 'dataset must not be empty')).min(1, 'datasets must name at least one dataset, or be left out for all').optional(),
  reason: z.string().trim().min(1, 'reason must say why this access is accepted (the access report shows it)'),
});

export const specSchema = z.strictObject({
  version: z.literal(1, { error: 'version must be 1' }),
  settings: z
    .strictObject({
      /** Spec-wide default key rotation period. */
      rotate: duration.optional(),
      /** How long a superseded credential stays valid after rotation. */
      rotationGrace: duration.optional(),
      /** How principals get credentials unless they say otherwise: key (default) or temporary. */
      credentials: credentialsMode.optional(),
      /** Longest session for temporary principals unless they say otherwise (default 1h). */
      maxSession: sessionLength.optional(),
      /**
       * Grants of a key principal whose access keys have all gone unused this long expire, and its
       * key is deactivated (AWS, which records each key's last use); plan shows it first.
       */
      expireUnused: duration
        .refine((v) => !DURATION_RE.test(v) || rawSeconds(v) >= 86400, {
          message: 'is too short; expireUnused is at least 1d (a typo such as 90m for 90d would deactivate keys between two ordinary uses)',
        })
        .optional(),
      /** OpenID Connect issuers whose ID tokens `serve` accepts for sessions (POST /v1/credentials/:backend). */
      oidc: z.array(oidcIssuerSchema).optional(),
      /** Requests for access (`approvers:` says who may approve them): how long they may ask for and wait. */
      requests: requestSettingsSchema.optional(),
      /** The web console of `serve` (/ui): which issuer people sign in with. */
      console: consoleSettingsSchema.optional(),
    })
    .optional(),
  backends: z.record(name('backend name', 32), backendSchema),
  datasets: z.record(name('dataset name', 64), datasetSchema).default({}),
  groups: z.record(name('group name', 100), groupSchema).default({}),
  principals: z.record(name('principal name', 64), principalSchema).default({}),
  /** Statements about who holds access that must never become false. */
  invariants: z.record(name('invariant name', 100), invariantSchema).default({}),
  scim: z
    .strictObject({
      /** IdP group display name → datagrant group. */
      groups: z.record(z.string().min(1), z.string().min(1)).default({}),
    })
    .optional(),
  knownAccess: z.record(name('known access name', 64), knownAccessSchema).default({}),
  /** Who may approve requests for access, for several datasets at once (a dataset's own `approvers` adds to these). */
  approvers: z.array(approverRuleSchema).default([]),
});

export type SpecInput = z.input<typeof specSchema>;
export type Spec = z.output<typeof specSchema>;
/** A grant; one merged in from an approved request carries its origin. */
export type Grant = z.output<typeof grantSchema> & { origin?: GrantOrigin };
export type BackendSpec = z.output<typeof backendSchema>;
export type AwsBackendSpec = Extract<BackendSpec, { type: 'aws' }>;
export type PostgresBackendSpec = Extract<BackendSpec, { type: 'postgres' }>;
export type RgwBackendSpec = Extract<BackendSpec, { type: 'rgw' }>;
export type MysqlBackendSpec = Extract<BackendSpec, { type: 'mysql' }>;
export type TimeoutsSpec = z.output<typeof timeoutsSchema>;
export type QuotasSpec = z.output<typeof quotasSchema>;
export type AssumeRoleSpec = z.output<typeof assumeRoleSchema>;
export type DatasetSpec = z.output<typeof datasetSchema>;
export type S3DatasetSpec = Extract<DatasetSpec, { bucket: string }>;
export type PgDatasetSpec = Extract<DatasetSpec, { schema: string }>;
export type MysqlDatasetSpec = Exclude<DatasetSpec, S3DatasetSpec | PgDatasetSpec>;
export type PrincipalSpec = z.output<typeof principalSchema>;
export type GroupSpec = z.output<typeof groupSchema>;
export type InvariantSpec = z.output<typeof invariantSchema>;
export type OidcIssuerSpec = z.output<typeof oidcIssuerSchema>;
export type ConsoleSettingsSpec = z.output<typeof consoleSettingsSchema>;
export type KnownAccessSpec = z.output<typeof knownAccessSchema>;
export type ApproverRuleSpec = z.output<typeof approverRuleSchema>;
export type DatasetApproversSpec = z.output<typeof datasetApproversSchema>;
export type OidcAlgorithm = (typeof OIDC_ALGORITHMS)[number];

export function isS3Dataset(d: DatasetSpec): d is S3DatasetSpec {
  return 'bucket' in d;
}

/** A database schema: a PostgreSQL dataset. */
export function isPgDataset(d: DatasetSpec): d is PgDatasetSpec {
  return 'schema' in d && !isS3Dataset(d);
}

/** A database without a schema: a MariaDB/MySQL dataset. */
export function isMysqlDataset(d: DatasetSpec): d is MysqlDatasetSpec {
  return !isS3Dataset(d) && !('schema' in d);
}

function rawSeconds(d: string): number {
  const m = DURATION_RE.exec(d);
  if (!m) throw new Error(`invalid duration ${d}`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

function withinDurationLimit(d: string): boolean {
  return rawSeconds(d) <= MAX_DURATION_SECONDS;
}

/**
 * Seconds in a duration string validated by the schema. Throws on one past the limit, so that a
 * spec that skipped validation fails while compiling, before any side effect, and never after a
 * key was created (when the grace period's end is computed).
 */
export function durationSeconds(d: string): number {
  const seconds = rawSeconds(d);
  if (seconds > MAX_DURATION_SECONDS) throw new RangeError(`duration ${d} is too long; a duration is ${MAX_DURATION_HELP}`);
  return seconds;
}

/** `expires` as an instant. A bare date means access ends at 00:00 UTC on that date. */
export function expiresInstant(expires: string): Date {
  return new Date(expires.length === 10 ? `${expires}T00:00:00Z` : expires);
}

/** How this principal gets credentials: its own choice, else the spec's default, else `key`. */
export function credentialsOf(spec: Pick<Spec, 'settings'>, p: Pick<PrincipalSpec, 'credentials'>): 'key' | 'temporary' {
  return p.credentials ?? spec.settings?.credentials ?? 'key';
}

/** The longest session, in seconds, a temporary principal may be issued. */
export function maxSessionSeconds(spec: Pick<Spec, 'settings'>, p: Pick<PrincipalSpec, 'maxSession'>): number {
  return rawSeconds(p.maxSession ?? spec.settings?.maxSession ?? DEFAULT_MAX_SESSION);
}

/**
 * The AWS account an aws backend reaches, as far as the spec tells: its endpoint, and the account
 * of the role it assumes, or the standard credential chain's (one account, unknown until asked).
 * Backends with the same identity share one account's quotas.
 */
export function awsAccountOf(b: Pick<AwsBackendSpec, 'endpoint' | 'assumeRole'>): { endpoint: string; account: string } {
  return { endpoint: b.endpoint ?? '', account: (b.assumeRole && roleAccount(b.assumeRole.roleArn)) ?? '' };
}
