// Effective access (issue 13): who can read, write or administer each dataset, as the backends
// hold it (actual) and as the spec says (intended). The shapes every backend's access reader
// returns and every consumer (the report, invariants, reviews) reads. Neutral: no backend's SDK.
import type { Level } from '../core/types.js';

export const LEVELS: readonly Level[] = ['read', 'write', 'admin'];

/** `a` is at least `b` (levels are cumulative: admin includes write includes read). */
export const atLeast = (a: Level, b: Level): boolean => LEVELS.indexOf(a) >= LEVELS.indexOf(b);

/** What kind of holder access belongs to, as the backend names it. */
export type HolderKind =
  | 'aws-user'
  | 'aws-role'
  /** An account root (`arn:aws:iam::123456789012:root`) or a bare account id in a bucket policy. */
  | 'aws-account'
  /** A service principal (`cloudfront.amazonaws.com`) or a federated one. */
  | 'aws-service'
  /** `Principal: "*"` (anyone, within the statement's conditions). */
  | 'aws-anyone'
  | 'pg-role'
  /** PostgreSQL's PUBLIC: every role, present and future. */
  | 'pg-public'
  /** A MariaDB account, `'name'@'host'`. */
  | 'mysql-account'
  | 'mysql-role'
  /** An anonymous MariaDB account (`''@'%'`): anyone who logs in from its host under a name without an account of its own. */
  | 'mysql-anonymous'
  /** MariaDB's PUBLIC (10.11): every account, present and future. */
  | 'mysql-public'
  /** A Ceph RGW user (`uid`), or one of its subusers (`uid:sub`). */
  | 'rgw-user'
  /** RGW's AuthenticatedUsers group in an ACL: every user of the gateway. */
  | 'rgw-authenticated';

/** Who holds access. */
export interface AccessHolder {
  /** Stable identity: an IAM ARN, `*`, a PostgreSQL role name, `PUBLIC`, a MariaDB account `'bob'@'%'` or role name. */
  id: string;
  kind: HolderKind;
  /** For display: `bob`, `role/etl`, `PUBLIC`. */
  name: string;
  /** Inside this installation's ownership boundary (IAM path and tag; the role marker). */
  managed: boolean;
  /**
   * The spec principal this holder is, when datagrant made it for one (an IAM user, a PostgreSQL
   * principal role or one of its session logins). Absent for unmanaged holders, and for managed
   * holders that are not one principal (a group role, an AWS access-set role).
   */
  principal?: string;
  /**
   * A PostgreSQL session login's principal, as its name and marker claim it: a claim, not a fact
   * (a role with CREATEROLE can make a login with any name and comment), for the report to check
   * against the session log datagrant keeps before it counts the access as that principal's.
   */
  sessionOf?: string;
}

/** One way a holder reaches a dataset at a level. */
export interface AccessPath {
  /** In words, precise enough to find and remove it: `inline policy dg-direct-grants of user alice`,
   *  `group ml (managed policy dg-group-ml)`, `bucket policy of ai-model-data, statement Public`,
   *  `GRANT SELECT ON hr.salaries TO PUBLIC`, `member of role analysts`, `owner of hr.salaries`. */
  via: string;
  /** When it stops by itself: an `aws:CurrentTime` bound, a role's VALID UNTIL (ISO instant). */
  expires?: string;
  /**
   * Conditions the reader could not decide without a request (source IP, MFA, tags): the access
   * holds only when they do. Named, so the reader of the report can judge them.
   */
  conditions?: string[];
  /** Reaches only part of the dataset (some of its objects or tables). */
  partial?: boolean;
  /**
   * Entirely through objects datagrant made for this installation, of the kind it makes (AWS: its
   * inline policy dg-direct-grants, attachments of its dg-group-* and dg-shared-* policies and
   * memberships of its groups, on its user or on its access-set role with its own trust;
   * PostgreSQL: a grant to its role, membership in its group roles). Absent: not datagrant's —
   * a hand-added policy or grant, even on datagrant's principal, is someone else's way in.
   */
  managed?: boolean;
}

/** One holder's access to one dataset at one level, as read from a backend. Cumulative: a holder
 *  with write has a read row too. */
export interface ActualAccess {
  backend: string;
  dataset: string;
  level: Level;
  holder: AccessHolder;
  paths: AccessPath[];
}

/** When a credential was last used, as far as the backend can say. */
export interface CredentialUsage {
  backend: string;
  /** The holder's id (as in ActualAccess) and, when managed for one, the spec principal. */
  holder: string;
  principal?: string;
  /** The access key id; the PostgreSQL role. */
  credential: string;
  createdAt?: string;
  /** ISO instant; null: never used. Absent: cannot be known (then `unknown` says why). */
  lastUsedAt?: string | null;
  unknown?: string;
}

/** A dataset as a backend's access reader needs it (the spec's dataset, named). */
export type AccessDataset =
  | { name: string; bucket: string; prefix?: string }
  | { name: string; database: string; schema: string; tables?: string[] }
  | { name: string; database: string; tables?: string[] };

export interface AccessQuery {
  /** The spec's datasets on this backend. */
  datasets: AccessDataset[];
}

/** What a backend's access reader returns. */
export interface AccessReading {
  rows: ActualAccess[];
  usage: CredentialUsage[];
  /**
   * What the reader could not see or evaluate, in words, once each (`service control policies are
   * not readable from a member account`, `bucket ai-data: no permission to read its policy`).
   */
  limits: string[];
  /**
   * What could not be read this time, and so may hide access (`bucket ai-data: its bucket policy
   * could not be read (AccessDenied)`, an unparseable policy document, a dataset's database that
   * does not exist): unlike `limits`, which no reading of this kind can overcome, a failure is
   * something a rerun with the right permissions or the right spec would see.
   */
  failures?: string[];
  /** Requests the read took (bulk reads, as in plan). */
  requests: number;
}

/** One grant the spec makes, as invariants and the report see it. */
export interface IntendedAccess {
  backend: string;
  dataset: string;
  level: Level;
  principal: string;
  /**
   * `direct grant`, `group <name>` or `request #<id> (approved by <principal>)`; where in the spec
   * (`principals.alice.grants[0]`), or `requests.<id>` for a grant an approved request merged in.
   */
  via: string;
  path: string;
  expires?: string;
  /** The approved request the grant comes from (not written in the file). */
  request?: number;
}

/** A row of the access report: one holder's access to one dataset at one level. */
export interface AccessReportRow {
  /** Stable key: `backend|dataset|level|who`. */
  id: string;
  backend: string;
  dataset: string;
  level: Level;
  /** The spec principal's name, else the holder's display name. */
  who: string;
  principal?: string;
  /** How the backend names the holder; absent for access only the spec has. */
  holder?: AccessHolder;
  /** One of datagrant's principals (every intended-only row is). */
  managed: boolean;
  /** In the spec only, in the backend only, or in both. */
  status: 'intended' | 'actual' | 'both';
  /** The spec's grants that make it (empty for actual-only rows). */
  intended: { via: string; path: string; expires?: string }[];
  /** The backend's paths (empty for intended-only rows). */
  actual: AccessPath[];
  /** The holder's credentials' last use: ISO instant, null for never, absent when not known. */
  lastUsedAt?: string | null;
  /**
   * The spec's `knownAccess` entry that accepts this (unmanaged) access: still shown, but no
   * difference from the spec and no breach of an invariant.
   */
  known?: { name: string; reason: string };
}

/** An invariant the access breaks, with the grant (or actual path) that breaks it. */
export interface InvariantViolation {
  invariant: string;
  /** `principal bob gets read on hr-private through principals.bob.grants[0] (datagrant.yaml:31)`. */
  message: string;
  principal?: string;
  dataset?: string;
  level?: Level;
  /** The spec's grant that breaks it, where one does (`principals.bob.grants[0]`, `groups.ml.grants[1]`). */
  grant?: string;
  /** Checked against the spec (validate, plan) or the backends (access). */
  source: 'intended' | 'actual';
}

export interface AccessReport {
  generatedAt: string;
  /** sha256 of the spec file's text the intended side came from. */
  specHash: string;
  specFile: string;
  /** Filters the rows were selected with, as given. */
  filters: { principal?: string; dataset?: string; unused?: string };
  rows: AccessReportRow[];
  /** What this kind of reader can never see, per backend. */
  limits: string[];
  /** What could not be read this time, per backend: the report may miss access through it. */
  incomplete: string[];
  invariants: InvariantViolation[];
  /** Requests each backend's read took. */
  requests: Record<string, number>;
}
