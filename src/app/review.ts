// Access reviews (issue 13): start one from a snapshot of effective access, record reviewers'
// decisions, turn revocations into a spec patch, see which took effect, and put it all together as
// evidence. The report comes in as a function, so this works with any reader of effective access
// (the CLI passes runAccessReport; tests pass hand-built reports). Every write goes through the
// store together with its audit entry.
import { hashJson } from '../core/canonical.js';
import { ReviewError } from '../core/errors.js';
import type { AccessReport, AccessReportRow } from '../model/access.js';
import {
  REVIEW_NAME_RE,
  type Review,
  type ReviewDataset,
  type ReviewDecision,
  type ReviewEvidence,
  type ReviewManifest,
  type ReviewVerdict,
} from '../model/review.js';
import { accessCommandLine, isSelfDecision, matchingRows, reviewAddress, reviewEvidence, reviewRows, selectRows, type RowFilter } from '../plan/review.js';
import { decisionDetail, startDetail } from '../plan/review-audit.js';
import { planRevocations, type RevocationInput, type RevocationPlan } from '../plan/revocations.js';
import type { AuditLog, ReviewStore } from '../store/store.js';

export type ReviewStateStore = ReviewStore & Pick<AuditLog, 'auditHead' | 'auditEntries' | 'verifyAudit'>;

/** A reason is evidence an auditor reads: required, and kept to what a person writes. */
const MAX_REASON = 2000;
const MAX_REVIEWER = 200;
// Control characters would let a reason or a name rewrite what a terminal shows; line breaks are
// kept in a reason, and quoted (JSON) in its audit entry so that it cannot pass for another entry.
const CONTROL = /[^\P{Cc}\n\t]/u;

export function checkReviewName(name: string): string {
  if (!REVIEW_NAME_RE.test(name)) {
    throw new ReviewError(
      `review name ${JSON.stringify(name)} is not allowed: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit (it names the evidence files), such as 2026-Q4`,
    );
  }
  return name;
}

export interface StartReviewOptions {
  name: string;
  /** Reads effective access with the review's filters. */
  readReport: () => Promise<AccessReport>;
  /** Spec principal → e-mail (spec and SCIM), for recognising reviewers who sign with an e-mail. */
  emails: Record<string, string>;
  /** The spec's datasets: where each is, kept with the population for as long as the review. */
  datasets: Record<string, ReviewDataset>;
  actor: string;
  now: Date;
  version: string;
}

export async function startReview(store: ReviewStateStore, o: StartReviewOptions): Promise<Review> {
  checkReviewName(o.name);
  // Refused before the backends are read; the store refuses a taken name again, atomically.
  const taken = await store.review(o.name);
  if (taken) {
    throw new ReviewError(
      `a review named ${JSON.stringify(o.name)} already exists (started ${taken.startedAt} by ${taken.startedBy}); review names are never reused, so that evidence always names one review: choose another name`,
    );
  }
  const report = await o.readReport();
  // Read once the population is: every entry up to it was written before the backends were read
  // to the end. The start entry that follows carries the population's hash.
  const head = await store.auditHead();
  const population = report.rows;
  const manifest: ReviewManifest = {
    extractedAt: report.generatedAt,
    query: { command: accessCommandLine(report.specFile, report.filters), filters: { ...report.filters } },
    specFile: report.specFile,
    specSha256: report.specHash,
    auditHead: head ? { seq: head.seq, hash: head.hash } : null,
    datagrantVersion: o.version,
    populationSha256: hashJson(population),
    limits: report.limits,
    invariants: report.invariants,
    requests: report.requests,
    datasets: Object.fromEntries([...new Set(population.map((r) => r.dataset))].sort().flatMap((d) => (o.datasets[d] ? [[d, o.datasets[d]] as const] : []))),
  };
  const inPopulation = new Set(population.flatMap((r) => (r.principal !== undefined ? [r.principal] : [])));
  const emails = Object.fromEntries(Object.entries(o.emails).filter(([p]) => inPopulation.has(p)));
  const review: Review = {
    name: o.name,
    startedAt: o.now.toISOString(),
    startedBy: o.actor,
    manifest,
    population,
    emails,
    decisions: [],
    closedAt: null,
    closedBy: null,
  };
  await store.startReview(review, {
    actor: o.actor,
    event: 'review.start',
    address: reviewAddress(o.name),
    outcome: 'ok',
    detail: startDetail(review),
  });
  return review;
}

export async function loadReview(store: ReviewStore, name: string): Promise<Review> {
  const review = await store.review(name);
  if (!review) throw new ReviewError(`there is no review named ${JSON.stringify(name)}; \`datagrant review list\` shows them`);
  return review;
}

export interface DecideOptions {
  name: string;
  /** Rows by number (as `review show` prints them) or by id. */
  rows?: string[];
  /** Instead: every row matching these. */
  matching?: RowFilter;
  decision: ReviewVerdict;
  reason: string;
  reviewer: string;
  actor: string;
  now: Date;
}

export async function decide(store: ReviewStore, o: DecideOptions): Promise<ReviewDecision[]> {
  const reason = o.reason.replace(/\r\n?/g, '\n').trim();
  if (!reason) throw new ReviewError('a decision needs a reason (--reason TEXT): it is what the auditor reads');
  if (reason.length > MAX_REASON) throw new ReviewError(`the reason is ${reason.length} characters long; at most ${MAX_REASON} are kept`);
  if (CONTROL.test(reason)) throw new ReviewError('the reason holds control characters; write it as plain text (line breaks are fine)');
  const reviewer = o.reviewer.trim();
  if (!reviewer || reviewer.length > MAX_REVIEWER || /\p{Cc}/u.test(reviewer)) {
    throw new ReviewError(`the reviewer (--as) must be a name or e-mail of 1 to ${MAX_REVIEWER} characters on one line`);
  }
  if ((o.rows?.length ?? 0) > 0 === (o.matching !== undefined))
    throw new ReviewError('name the rows to decide (numbers or ids) or pass --all-matching, not both');
  const review = await loadReview(store, o.name);
  if (review.closedAt)
    throw new ReviewError(`the review ${JSON.stringify(o.name)} was closed ${review.closedAt} by ${review.closedBy}; a closed review takes no more decisions`);
  let rows: AccessReportRow[];
  if (o.matching) {
    rows = matchingRows(review, o.matching);
    if (!rows.length) throw new ReviewError(`no row of review ${JSON.stringify(o.name)} matches; \`datagrant review show ${o.name}\` lists them`);
  } else {
    const picked = selectRows(review, o.rows ?? []);
    if (picked.unknown.length) {
      throw new ReviewError(
        `not in the population of review ${JSON.stringify(o.name)}: ${picked.unknown.map((u) => JSON.stringify(u)).join(', ')}. A review decides only on the access it snapshotted: its ${review.population.length} rows are numbered 1 to ${review.population.length} by \`datagrant review show ${o.name}\`, or named by their id`,
      );
    }
    rows = picked.rows;
  }
  const at = o.now.toISOString();
  const decisions = rows.map((row) => ({
    rowId: row.id,
    decision: o.decision,
    reason,
    reviewer,
    actor: o.actor,
    decidedAt: at,
    selfReview: isSelfDecision({ reviewer, actor: o.actor }, row, review.emails),
  }));
  return store.recordDecisions(
    o.name,
    decisions,
    decisions.map((d) => ({
      actor: o.actor,
      event: 'review.decide',
      address: reviewAddress(o.name),
      outcome: d.decision,
      detail: decisionDetail(d),
    })),
  );
}

export async function closeReview(store: ReviewStore, o: { name: string; actor: string; now: Date }): Promise<Review> {
  const review = await loadReview(store, o.name);
  const rows = reviewRows(review);
  const count = (v: string) => rows.filter((r) => r.outcome.outcome === v).length;
  await store.closeReview(o.name, o.now.toISOString(), o.actor, {
    actor: o.actor,
    event: 'review.close',
    address: reviewAddress(o.name),
    outcome: 'ok',
    detail: `${rows.length} rows: ${count('keep')} keep, ${count('revoke')} revoke, ${count('undecided')} undecided`,
  });
  return loadReview(store, o.name);
}

export async function revocations(store: ReviewStore, o: Omit<RevocationInput, 'review'> & { name: string }): Promise<RevocationPlan> {
  const review = await loadReview(store, o.name);
  return planRevocations({ ...o, review });
}

/** The filters to read the population again with (what the review snapshotted, never --unused). */
export const refreshFilters = (review: Review) => {
  const f = review.manifest.query.filters;
  return { ...(f.principal !== undefined ? { principal: f.principal } : {}), ...(f.dataset !== undefined ? { dataset: f.dataset } : {}) };
};

/** The review with each revocation's status, from a fresh read of the backends and the audit chain. */
export async function evidence(
  store: ReviewStateStore,
  o: {
    name: string;
    readReport: (filters: ReturnType<typeof refreshFilters>) => Promise<AccessReport>;
    exportedBy: string;
    /** Principals SCIM gives now (not the spec file): their access goes without a spec change. */
    fromIdentityProvider?: readonly string[];
  },
): Promise<ReviewEvidence> {
  const review = await loadReview(store, o.name);
  const fresh = await o.readReport(refreshFilters(review));
  const [entries, verdict] = await Promise.all([store.auditEntries(), store.verifyAudit()]);
  return reviewEvidence({
    review,
    fresh,
    entries,
    verdict,
    exportedBy: o.exportedBy,
    ...(o.fromIdentityProvider ? { fromIdentityProvider: o.fromIdentityProvider } : {}),
  });
}
