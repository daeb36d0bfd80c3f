// Access reviews, the pure part: who is reviewing their own access, what the decisions on a row
// add up to, which audit entry removed a revoked row, and the evidence an export writes. The
// review, a fresh access report and the audit entries are passed in.
import type { Level } from '../core/types.js';
import type { AccessReport, AccessReportRow } from '../model/access.js';
import {
  reviewAddress,
  type AuditRecord,
  type RevocationStatus,
  type Review,
  type ReviewDecision,
  type ReviewEvidence,
  type ReviewEvidenceRow,
  type RowOutcome,
} from '../model/review.js';
import { checkReviewAudit } from './review-audit.js';

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

// Tying a revocation to the audit entry that carried it out. Every change apply makes is audited
// as `change.<action>` with the change's address, and a principal's own objects carry its name as
// a whole segment of their address: `aws:user/alice`, `aws:membership/ml/alice` (the group
// membership a revocation patch removes), `aws:inline-policy/user/alice/dg-direct-grants` and
// `aws:attachment/user/alice/…` (its direct grants), `wh:grant/alice/db.schema/read`,
// `wh:membership/ml/alice`, `wh:role/alice`. So the removal of a managed principal's row is the
// first successful delete or update after the review started, on the row's backend, of one of
// those kinds whose address names the principal in that place — while the access is gone from a
// fresh read of the backends; an entry alone proves nothing (an update may have changed something
// else). Matching on the exact segment, never a substring, keeps `al` from matching `alice`. Keys
// and passwords are left out: rotating one removes no access. A temporary AWS principal's access
// lives on an access-set role (`dg-s-<digest>`) whose address does not name it; for those the
// entry is the end of the first successful apply run after the review started (`run`). Unmanaged
// access is never removed by datagrant: gone means someone removed it by hand, and no entry is
// claimed for it.
const REMOVING = new Set(['change.delete', 'change.update']);

function namesPrincipal(address: string, backend: string, principal: string): boolean {
  if (!address.startsWith(`${backend}:`)) return false;
  const [kind, ...segments] = address.slice(backend.length + 1).split('/');
  switch (kind) {
    case 'user':
    case 'role':
      return segments[0] === principal;
    case 'membership':
      return segments[1] === principal;
    case 'inline-policy':
    case 'attachment':
      return segments[0] === 'user' && segments[1] === principal;
    case 'grant':
      return segments[0] === principal;
    default:
      return false;
  }
}

/** The seq of the review's own start entry, or failing that the head it recorded. */
export function reviewStartSeq(review: Review, entries: readonly AuditRecord[]): number {
  const start = entries.find((e) => e.event === 'review.start' && e.address === reviewAddress(review.name));
  return start?.seq ?? review.manifest.auditHead?.seq ?? 0;
}

export { reviewAddress };

export function revocationStatus(row: AccessReportRow, fresh: AccessReport, entries: readonly AuditRecord[], afterSeq: number): RevocationStatus {
  const now = fresh.rows.find((r) => r.id === row.id && r.actual.length > 0);
  const remaining = now ? now.actual.map((p) => p.via) : [];
  const later = entries.filter((e) => e.seq > afterSeq);
  const principal = row.principal;
  const change =
    principal !== undefined && row.managed
      ? later.find((e) => REMOVING.has(e.event) && e.outcome === 'ok' && e.address !== null && namesPrincipal(e.address, row.backend, principal))
      : undefined;
  if (now) {
    return {
      state: 'present',
      remaining,
      ...(change ? { entry: { ...change, match: 'change' as const } } : {}),
      note: change
        ? `still held after ${change.event} ${change.address} (audit #${change.seq}): through ${remaining.join('; ')}`
        : row.managed
          ? `still held: apply the revocations patch (datagrant review revocations), then datagrant apply`
          : `still held: remove it by hand (see datagrant review revocations): ${remaining.join('; ')}`,
    };
  }
  if (change) {
    return { state: 'removed', remaining, entry: { ...change, match: 'change' }, note: `removed by ${change.event} ${change.address}` };
  }
  const run = principal !== undefined && row.managed ? later.find((e) => e.event === 'apply.end' && e.outcome === 'ok') : undefined;
  if (run) {
    return {
      state: 'removed',
      remaining,
      entry: { ...run, match: 'run' },
      note: `removed by the apply run that ended at audit #${run.seq} (no change in it names ${principal})`,
    };
  }
  return {
    state: 'removed',
    remaining,
    note: row.managed
      ? 'gone, but no apply since the review started removed it (it was removed before, or outside datagrant)'
      : 'removed outside datagrant (by hand): no audit entry',
  };
}

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
}

export function reviewEvidence(input: EvidenceInput): ReviewEvidence {
  const { review, fresh, entries } = input;
  const after = reviewStartSeq(review, entries);
  const rows = reviewRows(review).map((r) => (r.outcome.outcome === 'revoke' ? { ...r, revocation: revocationStatus(r.row, fresh, entries, after) } : r));
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
