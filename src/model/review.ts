// Access reviews (issue 13): a frozen population of effective access, the manifest an auditor
// tests it against, and the reviewers' decisions. Plain, serialisable data shared by the store,
// the app and the renderers.
import type { AccessReport, AccessReportRow, InvariantViolation } from './access.js';

export type ReviewVerdict = 'keep' | 'revoke';
export const REVIEW_VERDICTS: readonly ReviewVerdict[] = ['keep', 'revoke'];

/** Where a dataset of the population is, as the spec said when the review started. */
export type ReviewDataset =
  | { backend: string; bucket: string; prefix?: string }
  | { backend: string; database: string; schema: string; tables?: string[] }
  /** A MariaDB database: no schema level. */
  | { backend: string; database: string; tables?: string[] };

/** What an auditor checks the population against: where, when and how it was read. */
export interface ReviewManifest {
  /** When the backends were read (the report's generatedAt). */
  extractedAt: string;
  /** The command that reads the same population again, and the filters it was read with. */
  query: { command: string; filters: AccessReport['filters'] };
  specFile: string;
  /** sha256 of the spec file's text the intended side came from. */
  specSha256: string;
  /** The audit chain's last entry when the population was read (its seq and MAC); null: empty chain. */
  auditHead: { seq: number; hash: string } | null;
  datagrantVersion: string;
  /** sha256 of the population as canonical JSON; the review's start entry in the audit chain carries it. */
  populationSha256: string;
  /** What the reader could not see or evaluate: access the population cannot show. */
  limits: string[];
  /** The spec's invariants the access broke when it was read. */
  invariants: InvariantViolation[];
  /** Requests each backend's read took. */
  requests: Record<string, number>;
  /**
   * The population's datasets: what their names meant when it was read, and which of datagrant's
   * objects carry their access (a PostgreSQL grant names its database and schema).
   */
  datasets: Record<string, ReviewDataset>;
}

/** One reviewer's standing decision on one row. */
export interface ReviewDecision {
  rowId: string;
  decision: ReviewVerdict;
  reason: string;
  /** Who the decision is in the name of (`--as`): free text, as the reviewer signs. */
  reviewer: string;
  /**
   * Who recorded it: the actor of its audit entry (DATAGRANT_ACTOR, else the OS user as
   * `user@cli`), whatever `--as` says.
   */
  actor: string;
  decidedAt: string;
  /**
   * The reviewer or the actor is the row's principal (by name or e-mail): a decision about their
   * own access.
   */
  selfReview: boolean;
  /** The audit entry that recorded it. */
  auditSeq: number;
}

/** A decision as evidence shows it. */
export interface EvidenceDecision extends ReviewDecision {
  /** The actor is not the reviewer: someone recorded the decision in another's name. */
  onBehalf: boolean;
}

export interface Review {
  /** Unique in the state; letters, digits, `.`, `_`, `-`. */
  name: string;
  startedAt: string;
  startedBy: string;
  manifest: ReviewManifest;
  population: AccessReportRow[];
  /**
   * The e-mail of every spec principal in the population, as the spec (and SCIM) said at start:
   * how a reviewer who signs with an e-mail is recognised as the row's principal.
   */
  emails: Record<string, string>;
  /** Current decisions, one per row and reviewer (a later one by the same reviewer replaces it). */
  decisions: ReviewDecision[];
  closedAt: string | null;
  closedBy: string | null;
}

export interface ReviewSummary {
  name: string;
  startedAt: string;
  startedBy: string;
  closedAt: string | null;
  rows: number;
  /** Rows with at least one decision. */
  decided: number;
}

/** Review names end up in file names (`review export`): nothing that could leave a directory. */
export const REVIEW_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** The address of a review's entries in the audit chain. */
export const reviewAddress = (name: string) => `review/${name}`;

/** An audit chain entry as reviews cite it (the store's AuditEntry has this shape). */
export interface AuditRecord {
  seq: number;
  at: string;
  actor: string;
  event: string;
  address: string | null;
  outcome: string;
  detail: string | null;
  hash: string;
}

/** What the reviewers decided on a row, all decisions taken together. */
export interface RowOutcome {
  /** `revoke` when any reviewer's standing decision is revoke: removing access needs one voice, keeping it needs none against. */
  outcome: ReviewVerdict | 'undecided';
  /** Reviewers disagree (keep and revoke). */
  contested: boolean;
  /** Every decision on it is a self-review: nobody independent has looked at it. */
  selfReviewOnly: boolean;
}

/** Whether a revocation has taken effect. */
export interface RevocationStatus {
  /** `removed`: the backends no longer hold it; `present`: they still do. */
  state: 'removed' | 'present';
  /** Where it is still held, when present. */
  remaining: string[];
  /**
   * The audit entry of the change that removed it: `change`, a successful change, after the revoke
   * decision, that takes away one of the ways the row's principal held it (the last such change
   * when there were several); `run`, for an AWS access-set role (whose objects do not name the
   * principals it serves), the end of the last successful apply run that changed the role. A row
   * held several ways has an entry only when a change is found for every one of them.
   */
  entry?: AuditRecord & { match: 'change' | 'run' };
  /** When the backends were read and found it so (each export and status reads them again). */
  observedAt: string;
  /** Said in words: how it was removed, or what is left to do. */
  note: string;
}

export interface ReviewEvidenceRow {
  /** 1-based position in the population, as `review show` numbers it. */
  n: number;
  row: AccessReportRow;
  decisions: EvidenceDecision[];
  outcome: RowOutcome;
  /** For rows whose outcome is revoke. */
  revocation?: RevocationStatus;
}

/** A way the stored review differs from what its audit entries recorded. */
export interface IntegrityProblem {
  /** In words, naming the audit entry and both values. */
  message: string;
  /** The population row it concerns, when it concerns one. */
  rowId?: string;
  /** The audit entry it was checked against. */
  auditSeq?: number;
}

/**
 * The review as the store holds it (population, manifest, e-mails, decisions, close), checked
 * against its entries in the MAC'd audit chain: the store's rows carry no MAC of their own.
 */
export interface ReviewIntegrity {
  ok: boolean;
  /** The review's `review.start` entry; null when the chain has none. */
  startSeq: number | null;
  /** Standing decisions the chain records. */
  decisions: number;
  problems: IntegrityProblem[];
}

/** Everything `review export` writes: what an auditor receives. */
export interface ReviewEvidence {
  review: Pick<Review, 'name' | 'startedAt' | 'startedBy' | 'closedAt' | 'closedBy'>;
  manifest: ReviewManifest;
  summary: {
    rows: number;
    undecided: number;
    keep: number;
    revoke: number;
    contested: number;
    selfReviewOnly: number;
    selfReviews: number;
    removed: number;
    present: number;
  };
  rows: ReviewEvidenceRow[];
  /** When the revocations' status was read from the backends and the audit chain. */
  checkedAt: string;
  /** The audit chain's verdict at export (`datagrant audit verify`). */
  auditVerified: { ok: boolean; entries: number; firstBad?: { seq: number; reason: string } };
  /** The review checked against its audit entries: any problem means the store was edited. */
  integrity: ReviewIntegrity;
  exportedBy: string;
}
