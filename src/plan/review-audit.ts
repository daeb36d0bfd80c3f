// A review as the state store holds it, checked against the audit chain. The store's review rows
// carry no MAC: whoever can write the database could flip a decision, rewrite a reason, clear a
// self-review flag or drop rows of the population (and fix up the manifest's hash beside them).
// The chain is MAC'd under the master key, and each review write appended its entry in the same
// transaction, so the entries say what the store must hold: the start entry the hashes of the
// population, the manifest and the e-mails; each decision entry the decision's whole content;
// the close entry who closed it and when. Pure: the review and the entries are passed in.
import { hashJson } from '../core/canonical.js';
import { reviewAddress, type AuditRecord, type IntegrityProblem, type Review, type ReviewDecision, type ReviewIntegrity } from '../model/review.js';

/** The detail of a review's `review.start` entry: what the population, manifest and e-mails hash to, then facts for people. */
export function startDetail(review: Pick<Review, 'population' | 'manifest' | 'emails'>): string {
  const m = review.manifest;
  return (
    `${review.population.length} rows, population sha256 ${hashJson(review.population)}, manifest sha256 ${hashJson(m)}, ` +
    `e-mails sha256 ${hashJson(review.emails)}; spec ${m.specFile} sha256 ${m.specSha256}; audit head #${m.auditHead?.seq ?? 0}; query: ${m.query.command}`
  );
}

const START = /^(\d+) rows, population sha256 ([0-9a-f]{64}), manifest sha256 ([0-9a-f]{64}), e-mails sha256 ([0-9a-f]{64});/;

type DecisionContent = Pick<ReviewDecision, 'rowId' | 'reviewer' | 'selfReview' | 'reason'>;

/**
 * The detail of a `review.decide` entry: the decision's content (the verdict is the entry's
 * outcome, the actor and time its own). Free text is JSON-quoted, so that no reviewer name or
 * reason can pass for another field (a reviewer `carol; self-review` is not a flag).
 */
export function decisionDetail(d: DecisionContent): string {
  return `row ${JSON.stringify(d.rowId)}; reviewer ${JSON.stringify(d.reviewer)}; self-review ${d.selfReview ? 'yes' : 'no'}; reason ${JSON.stringify(d.reason)}`;
}

const QUOTED = String.raw`("(?:[^"\\]|\\[\s\S])*")`;
const DECISION = new RegExp(`^row ${QUOTED}; reviewer ${QUOTED}; self-review (yes|no); reason ${QUOTED}$`);

export function parseDecisionDetail(detail: string | null): DecisionContent | undefined {
  const m = DECISION.exec(detail ?? '');
  if (!m) return undefined;
  return { rowId: JSON.parse(m[1]!) as string, reviewer: JSON.parse(m[2]!) as string, selfReview: m[3] === 'yes', reason: JSON.parse(m[4]!) as string };
}

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

/** Every way the stored review differs from what its audit entries recorded. */
export function checkReviewAudit(review: Review, entries: readonly AuditRecord[]): ReviewIntegrity {
  const address = reviewAddress(review.name);
  const mine = entries.filter((e) => e.address === address);
  const problems: IntegrityProblem[] = [];
  const rowNo = new Map(review.population.map((r, i) => [r.id, i + 1]));
  const rowWords = (rowId: string) => {
    const n = rowNo.get(rowId);
    return n === undefined ? `row ${JSON.stringify(rowId)} (not in the population)` : `row ${n} (${rowId})`;
  };

  const start = mine.find((e) => e.event === 'review.start');
  if (!start) {
    problems.push({ message: `the audit chain holds no review.start entry for ${address}: this review was not started by datagrant, or not in this chain` });
  } else {
    const at = `review.start (audit #${start.seq})`;
    if (start.at !== review.startedAt || start.actor !== review.startedBy) {
      problems.push({
        auditSeq: start.seq,
        message: `the store says the review was started ${review.startedAt} by ${review.startedBy}; ${at} says ${start.at} by ${start.actor}`,
      });
    }
    const m = START.exec(start.detail ?? '');
    if (!m) {
      problems.push({
        auditSeq: start.seq,
        message: `${at} does not record the hashes of the population, manifest and e-mails, so the review cannot be checked against it`,
      });
    } else {
      const population = hashJson(review.population);
      if (Number(m[1]) !== review.population.length || m[2] !== population) {
        problems.push({
          auditSeq: start.seq,
          message: `the population differs from the one the review started with: the store holds ${review.population.length} rows with sha256 ${population}; ${at} recorded ${m[1]} rows with sha256 ${m[2]}`,
        });
      }
      if (review.manifest.populationSha256 !== population) {
        problems.push({
          auditSeq: start.seq,
          message: `the manifest's population sha256 ${review.manifest.populationSha256} is not that of the population the store holds (${population})`,
        });
      }
      const manifest = hashJson(review.manifest);
      if (m[3] !== manifest) {
        problems.push({
          auditSeq: start.seq,
          message: `the manifest differs from the one the review started with: sha256 ${manifest}; ${at} recorded ${m[3]}`,
        });
      }
      const emails = hashJson(review.emails);
      if (m[4] !== emails) {
        problems.push({
          auditSeq: start.seq,
          message: `the e-mails self-review is judged by differ from those recorded at the start: sha256 ${emails}; ${at} recorded ${m[4]}`,
        });
      }
    }
  }

  const close = mine.find((e) => e.event === 'review.close');
  if (close && (review.closedAt !== close.at || review.closedBy !== close.actor)) {
    problems.push({
      auditSeq: close.seq,
      message: `review.close (audit #${close.seq}) closed the review ${close.at} by ${close.actor}; the store says ${review.closedAt ? `closed ${review.closedAt} by ${review.closedBy}` : 'it is open'}`,
    });
  } else if (!close && review.closedAt) {
    problems.push({
      message: `the store says the review was closed ${review.closedAt} by ${review.closedBy}; the audit chain holds no review.close entry for it`,
    });
  }

  // The latest entry per row and reviewer is the decision that stands (a later one replaces an
  // earlier one); the store must hold exactly those, each citing its own entry.
  const standing = new Map<string, AuditRecord & { content: DecisionContent }>();
  const key = (rowId: string, reviewer: string) => JSON.stringify([rowId, reviewer]);
  for (const e of mine.filter((x) => x.event === 'review.decide')) {
    const content = parseDecisionDetail(e.detail);
    if (!content) {
      problems.push({
        auditSeq: e.seq,
        message: `review.decide (audit #${e.seq}) is not in the form datagrant writes, so the decisions cannot be checked against it`,
      });
      continue;
    }
    if (close && e.seq > close.seq) {
      problems.push({
        rowId: content.rowId,
        auditSeq: e.seq,
        message: `audit #${e.seq} records a decision on ${rowWords(content.rowId)} after the review was closed (audit #${close.seq})`,
      });
    }
    standing.set(key(content.rowId, content.reviewer), { ...e, content });
  }
  const bySeq = new Map(entries.map((e) => [e.seq, e]));
  const held = new Set<string>();
  for (const d of review.decisions) {
    held.add(key(d.rowId, d.reviewer));
    const what = `${rowWords(d.rowId)}, decision by ${d.reviewer}`;
    const e = bySeq.get(d.auditSeq);
    const content = e && e.event === 'review.decide' && e.address === address ? parseDecisionDetail(e.detail) : undefined;
    if (!e || !content) {
      problems.push({ rowId: d.rowId, auditSeq: d.auditSeq, message: `${what}: it cites audit #${d.auditSeq}, which is not a decision of this review` });
      continue;
    }
    const differ = [
      content.rowId !== d.rowId ? `row: store ${JSON.stringify(d.rowId)}, audit ${JSON.stringify(content.rowId)}` : '',
      content.reviewer !== d.reviewer ? `reviewer: store ${JSON.stringify(d.reviewer)}, audit ${JSON.stringify(content.reviewer)}` : '',
      e.outcome !== d.decision ? `verdict: store ${d.decision}, audit ${e.outcome}` : '',
      e.actor !== d.actor ? `recorded by: store ${JSON.stringify(d.actor)}, audit ${JSON.stringify(e.actor)}` : '',
      e.at !== d.decidedAt ? `time: store ${d.decidedAt}, audit ${e.at}` : '',
      content.selfReview !== d.selfReview ? `self-review: store ${yesNo(d.selfReview)}, audit ${yesNo(content.selfReview)}` : '',
      content.reason !== d.reason ? `reason: store ${JSON.stringify(d.reason)}, audit ${JSON.stringify(content.reason)}` : '',
    ].filter(Boolean);
    if (differ.length) problems.push({ rowId: d.rowId, auditSeq: e.seq, message: `${what} differs from its audit entry #${e.seq}: ${differ.join('; ')}` });
    const latest = standing.get(key(d.rowId, d.reviewer));
    if (latest && latest.seq !== d.auditSeq) {
      problems.push({
        rowId: d.rowId,
        auditSeq: latest.seq,
        message: `${what}: the store holds the decision of audit #${d.auditSeq}, but audit #${latest.seq} (${latest.outcome}) replaced it`,
      });
    }
  }
  for (const [k, e] of standing) {
    if (held.has(k)) continue;
    problems.push({
      rowId: e.content.rowId,
      auditSeq: e.seq,
      message: `audit #${e.seq} records ${e.outcome} on ${rowWords(e.content.rowId)} by ${e.content.reviewer} (recorded by ${e.actor}), which the store no longer holds`,
    });
  }
  return { ok: problems.length === 0, startSeq: start?.seq ?? null, decisions: standing.size, problems };
}
