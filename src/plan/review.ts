// Access reviews, the pure part: who is reviewing their own access, what the decisions on a row
// add up to, which audit entry removed a revoked row, and the evidence an export writes. The
// review, a fresh access report and the audit entries are passed in.
import type { Level } from '../core/types.js';
import type { AccessReport, AccessReportRow } from '../model/access.js';
import {
  reviewAddress,
  type AuditRecord,
  type Review,
  type ReviewDecision,
  type ReviewEvidence,
  type ReviewEvidenceRow,
  type RowOutcome,
} from '../model/review.js';
import { checkReviewAudit } from './review-audit.js';
import { auditRuns, revocationStatus } from './review-removals.js';

/**
 * How people are compared by name or e-mail: ignoring case, as IAM compares user names and mail
 * systems compare addresses, and an e-mail without its plus-address tag (`alice+review@` is
 * `alice@`), which reaches the same mailbox and so the same person.
 */
export function normalIdentity(s: string): string {
  const t = s.trim().toLowerCase();
  const at = t.lastIndexOf('@');
  if (at <= 0) return t;
  const local = t.slice(0, at);
  const plus = local.indexOf('+');
  return `${plus > 0 ? local.slice(0, plus) : local}${t.slice(at)}`;
}

/** The OS user of a CLI actor (`alice@cli`), as datagrant names actors without DATAGRANT_ACTOR. */
const osUserOf = (actor: string) => /^(.+)@cli$/.exec(actor.trim())?.[1];

/**
 * `who` names the row's holder: its principal by name or by e-mail (the spec's, or SCIM's, as
 * recorded when the review started); a row of an unmanaged holder (no principal) by the holder's
 * name or id (an IAM user `bob`).
 */
function namesHolder(who: string, row: AccessReportRow, emails: Readonly<Record<string, string>>): boolean {
  const w = normalIdentity(who);
  if (row.principal !== undefined) {
    const email = emails[row.principal];
    return w === row.principal.toLowerCase() || (email !== undefined && w === normalIdentity(email));
  }
  return row.holder !== undefined && (w === row.holder.name.toLowerCase() || w === row.holder.id.toLowerCase());
}

/** A reviewer (`--as`) deciding on their own access. */
export function isSelfReview(reviewer: string, row: AccessReportRow, emails: Readonly<Record<string, string>>): boolean {
  return namesHolder(reviewer, row, emails);
}

/**
 * A decision about the decider's own access: by the reviewer it names, or by the actor who
 * recorded it — `--as` is free text, so alice deciding on her own rows `--as carol` is still
 * alice's self-review. The actor counts as itself (DATAGRANT_ACTOR may be a name or an e-mail)
 * and, for `user@cli`, as the OS user.
 */
export function isSelfDecision(d: { reviewer: string; actor: string }, row: AccessReportRow, emails: Readonly<Record<string, string>>): boolean {
  const user = osUserOf(d.actor);
  return namesHolder(d.reviewer, row, emails) || namesHolder(d.actor, row, emails) || (user !== undefined && namesHolder(user, row, emails));
}

/**
 * The actor is someone other than the reviewer the decision names. The same person: equal as
 * names or e-mails, or a CLI actor `carol@cli` signing as `carol` or as an e-mail whose local
 * part is `carol`.
 */
export function recordedOnBehalf(d: { reviewer: string; actor: string }): boolean {
  const reviewer = normalIdentity(d.reviewer);
  if (reviewer === normalIdentity(d.actor)) return false;
  const user = osUserOf(d.actor)?.toLowerCase();
  const at = reviewer.lastIndexOf('@');
  return user === undefined || (reviewer !== user && (at <= 0 || reviewer.slice(0, at) !== user));
}

export function rowOutcome(decisions: readonly ReviewDecision[]): RowOutcome {
  const revoke = decisions.some((d) => d.decision === 'revoke');
  const keep = decisions.some((d) => d.decision === 'keep');
  return {
    outcome: revoke ? 'revoke' : keep ? 'keep' : 'undecided',
    contested: revoke && keep,
    selfReviewOnly: decisions.length > 0 && decisions.every((d) => d.selfReview),
  };
}

/** The population numbered as `review show` numbers it, with each row's decisions and outcome. */
export function reviewRows(review: Review): ReviewEvidenceRow[] {
  const byRow = new Map<string, ReviewDecision[]>();
  for (const d of review.decisions) byRow.set(d.rowId, [...(byRow.get(d.rowId) ?? []), d]);
  return review.population.map((row, i) => {
    const decisions = (byRow.get(row.id) ?? []).map((d) => ({ ...d, onBehalf: recordedOnBehalf(d) }));
    return { n: i + 1, row, decisions, outcome: rowOutcome(decisions) };
  });
}

const SAFE_WORD = /^[A-Za-z0-9_./:@%+=,-]+$/;
/** A word a POSIX shell reads back as it is. */
export const shellWord = (s: string) => (SAFE_WORD.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The command that reads the same population again, for the manifest. */
export function accessCommandLine(specFile: string, filters: AccessReport['filters']): string {
  const words = ['datagrant', '--spec', specFile, 'access'];
  if (filters.principal !== undefined) words.push('--principal', filters.principal);
  if (filters.dataset !== undefined) words.push('--dataset', filters.dataset);
  if (filters.unused !== undefined) words.push('--unused', filters.unused);
  words.push('--format', 'json');
  return words.map(shellWord).join(' ');
}

/** Rows named by number (as `review show` prints them) or by id; the selectors that name none. */
export function selectRows(review: Review, selectors: readonly string[]): { rows: AccessReportRow[]; unknown: string[] } {
  const byId = new Map(review.population.map((r) => [r.id, r]));
  const rows: AccessReportRow[] = [];
  const unknown: string[] = [];
  for (const s of selectors) {
    const row = /^[1-9][0-9]*$/.test(s) ? review.population[Number(s) - 1] : byId.get(s);
    if (row) {
      if (!rows.includes(row)) rows.push(row);
    } else unknown.push(s);
  }
  return { rows, unknown };
}

export interface RowFilter {
  /** A principal, or an unmanaged holder's name or id. */
  principal?: string;
  dataset?: string;
  backend?: string;
  level?: Level;
  status?: AccessReportRow['status'];
  /** Only rows of holders datagrant does not manage (true) or does (false). */
  unmanaged?: boolean;
  /** Only rows nobody has decided yet. */
  undecided?: boolean;
}

export function matchingRows(review: Review, f: RowFilter): AccessReportRow[] {
  const decided = new Set(review.decisions.map((d) => d.rowId));
  return review.population.filter(
    (r) =>
      (f.principal === undefined || r.principal === f.principal || r.who === f.principal || r.holder?.name === f.principal || r.holder?.id === f.principal) &&
      (f.dataset === undefined || r.dataset === f.dataset) &&
      (f.backend === undefined || r.backend === f.backend) &&
      (f.level === undefined || r.level === f.level) &&
      (f.status === undefined || r.status === f.status) &&
      (f.unmanaged === undefined || r.managed !== f.unmanaged) &&
      (f.undecided === undefined || decided.has(r.id) !== f.undecided),
  );
}

export { reviewAddress };

/** The counts of a review's rows; `removed` and `present` count the rows given a revocation status. */
export function summarize(rows: readonly ReviewEvidenceRow[]): ReviewEvidence['summary'] {
  const count = (p: (r: ReviewEvidenceRow) => boolean) => rows.filter(p).length;
  return {
    rows: rows.length,
    undecided: count((r) => r.outcome.outcome === 'undecided'),
    keep: count((r) => r.outcome.outcome === 'keep'),
    revoke: count((r) => r.outcome.outcome === 'revoke'),
    contested: count((r) => r.outcome.contested),
    selfReviewOnly: count((r) => r.outcome.selfReviewOnly),
    selfReviews: rows.reduce((n, r) => n + r.decisions.filter((d) => d.selfReview).length, 0),
    removed: count((r) => r.revocation?.state === 'removed'),
    present: count((r) => r.revocation?.state === 'present'),
  };
}

export interface EvidenceInput {
  review: Review;
  /** A fresh report read with the review's filters. */
  fresh: AccessReport;
  entries: readonly AuditRecord[];
  verdict: ReviewEvidence['auditVerified'];
  exportedBy: string;
  /** Principals the identity provider (SCIM) gives, not the spec file: their access goes without a spec change. */
  fromIdentityProvider?: readonly string[];
}

export function reviewEvidence(input: EvidenceInput): ReviewEvidence {
  const { review, fresh, entries } = input;
  const idp = new Set(input.fromIdentityProvider ?? []);
  const runs = auditRuns(entries);
  const rows = reviewRows(review).map((r) => {
    if (r.outcome.outcome !== 'revoke') return r;
    const revocation = revocationStatus(r.row, {
      fresh,
      runs,
      decidedSeq: Math.min(...r.decisions.filter((d) => d.decision === 'revoke').map((d) => d.auditSeq)),
      specSha256: review.manifest.specSha256,
      dataset: review.manifest.datasets[r.row.dataset],
      fromIdentityProvider: r.row.principal !== undefined && idp.has(r.row.principal),
    });
    return { ...r, revocation };
  });
  return {
    review: { name: review.name, startedAt: review.startedAt, startedBy: review.startedBy, closedAt: review.closedAt, closedBy: review.closedBy },
    manifest: review.manifest,
    summary: summarize(rows),
    rows,
    checkedAt: fresh.generatedAt,
    auditVerified: input.verdict,
    integrity: checkReviewAudit(review, entries),
    exportedBy: input.exportedBy,
  };
}

/** How a row reads in one line: `read on training-data (aws) for alice, both`. */
export function describeRow(row: AccessReportRow): string {
  const who = row.managed ? row.who : `${row.who} (${row.holder?.kind ?? 'unmanaged'}, not datagrant's)`;
  return `${row.level} on ${row.dataset} (${row.backend}) for ${who}`;
}
