// A stored review checked against its audit entries: what someone with write access to the state
// database (and not the master key) could change, and that each change shows.
import { describe, expect, test } from 'vitest';
import { hashJson } from '../../src/core/canonical.js';
import type { Review } from '../../src/model/review.js';
import { checkReviewAudit, decisionDetail, parseDecisionDetail } from '../../src/plan/review-audit.js';
import { fixtureReview, reviewEntries } from '../support/review-fixture.js';

const decided = () =>
  fixtureReview([
    ['alice', 'training-data', 'read', 'revoke', 'carol', 'carol@cli'],
    ['alice', 'training-data', 'read', 'keep', 'alice@example.com'],
    ['mallory', 'training-data', 'read', 'revoke', 'carol'],
    ['bob', 'artifacts', 'read', 'keep', 'bob@example.com'],
  ]);

/** The problems after `edit` changes the stored review, checked against the entries of the untouched one. */
function afterEdit(edit: (r: Review) => void, base = decided()) {
  const entries = reviewEntries(base);
  const tampered = structuredClone(base);
  edit(tampered);
  return checkReviewAudit(tampered, entries);
}

const aliceRevoke = (r: Review) => r.decisions.find((d) => d.reviewer === 'carol' && d.rowId.endsWith('p:alice'))!;
const aliceSelf = (r: Review) => r.decisions.find((d) => d.reviewer === 'alice@example.com')!;

describe('a stored review checked against its audit entries', () => {
  test('as written, it matches', () => {
    const review = decided();
    expect(checkReviewAudit(review, reviewEntries(review))).toEqual({ ok: true, startSeq: 10, decisions: 4, problems: [] });
  });

  test.each<[string, (r: Review) => void, RegExp]>([
    [
      'revoke flipped to keep',
      (r) => void (aliceRevoke(r).decision = 'keep'),
      /decision by carol differs from its audit entry #\d+: verdict: store keep, audit revoke$/,
    ],
    [
      'a reason rewritten',
      (r) => void (aliceRevoke(r).reason = 'approved by the CISO'),
      /reason: store "approved by the CISO", audit "revoke: quarterly review"/,
    ],
    ['a self-review flag cleared', (r) => void (aliceSelf(r).selfReview = false), /decision by alice@example.com differs .*: self-review: store no, audit yes/],
    ['the reviewer renamed', (r) => void (aliceSelf(r).reviewer = 'dave'), /reviewer: store "dave", audit "alice@example.com"/],
    ['the actor replaced', (r) => void (aliceRevoke(r).actor = 'dave@cli'), /recorded by: store "dave@cli", audit "carol@cli"/],
    ['the time moved', (r) => void (aliceRevoke(r).decidedAt = '2026-11-01T00:00:00.000Z'), /time: store 2026-11-01T00:00:00.000Z, audit 2026-12-01/],
    [
      'a decision deleted',
      (r) => void (r.decisions = r.decisions.filter((d) => d !== aliceRevoke(r))),
      /audit #\d+ records revoke on row \d+ \(aws\|training-data\|read\|p:alice\) by carol \(recorded by carol@cli\), which the store no longer holds/,
    ],
    [
      'the e-mails self-review is judged by',
      (r) => void (r.emails = { ...r.emails, alice: 'someone@example.com' }),
      /the e-mails self-review is judged by differ from those recorded at the start/,
    ],
    [
      'the start moved',
      (r) => void (r.startedBy = 'dave@cli'),
      /the store says the review was started .* by dave@cli; review.start \(audit #10\) says .* by carol@cli/,
    ],
  ])('%s shows', (_, edit, message) => {
    const i = afterEdit(edit);
    expect(i.ok).toBe(false);
    expect(i.problems.map((p) => p.message)).toContainEqual(expect.stringMatching(message));
  });

  test('a row dropped from the population, the manifest hash fixed up beside it, shows against the start entry', () => {
    const i = afterEdit((r) => {
      r.population = r.population.filter((row) => row.who !== 'mallory');
      r.decisions = r.decisions.filter((d) => !d.rowId.includes('mallory'));
      r.manifest.populationSha256 = hashJson(r.population);
    });
    const messages = i.problems.map((p) => p.message);
    expect(messages).toContainEqual(
      expect.stringMatching(
        /^the population differs from the one the review started with: the store holds \d+ rows with sha256 [0-9a-f]{64}; review.start \(audit #10\) recorded \d+ rows/,
      ),
    );
    expect(messages).toContainEqual(expect.stringMatching(/^the manifest differs from the one the review started with/));
    expect(messages).toContainEqual(
      expect.stringMatching(/records revoke on row "aws\|training-data\|read\|h:arn:aws:iam::123456789012:user\/mallory" \(not in the population\)/),
    );
  });

  test('an earlier decision put back in place of the one that replaced it shows', () => {
    // carol first kept alice's access, then revoked it; the store is made to hold the keep again,
    // citing its own (genuine, superseded) entry.
    const base = decided();
    const revoke = aliceRevoke(base);
    const keep = { ...revoke, decision: 'keep' as const, reason: 'fine for now', auditSeq: 5 };
    const entries = [
      ...reviewEntries(base),
      {
        seq: 5,
        at: keep.decidedAt,
        actor: keep.actor,
        event: 'review.decide',
        address: 'review/2026-Q4',
        outcome: 'keep',
        detail: decisionDetail(keep),
        hash: '5'.repeat(64),
      },
    ].sort((a, b) => a.seq - b.seq);
    // The keep at #5 predates the start in this made-up chain; only the order of the decisions matters here.
    const tampered = structuredClone(base);
    tampered.decisions = tampered.decisions.map((d) => (d.auditSeq === revoke.auditSeq ? keep : d));
    const i = checkReviewAudit(tampered, entries);
    expect(i.problems.map((p) => p.message)).toContainEqual(
      expect.stringMatching(new RegExp(`the store holds the decision of audit #5, but audit #${revoke.auditSeq} \\(revoke\\) replaced it`)),
    );
  });

  test('a closed review reopened, and a close the chain never saw, show', () => {
    const base = decided();
    const closed: Review = { ...base, closedAt: '2026-12-05T00:00:00.000Z', closedBy: 'carol@cli' };
    const close = {
      seq: 30,
      at: closed.closedAt!,
      actor: 'carol@cli',
      event: 'review.close',
      address: 'review/2026-Q4',
      outcome: 'ok',
      detail: '',
      hash: '3'.repeat(64),
    };
    expect(checkReviewAudit(closed, [...reviewEntries(base), close]).ok).toBe(true);
    expect(checkReviewAudit(base, [...reviewEntries(base), close]).problems.map((p) => p.message)).toEqual([
      'review.close (audit #30) closed the review 2026-12-05T00:00:00.000Z by carol@cli; the store says it is open',
    ]);
    expect(checkReviewAudit(closed, reviewEntries(base)).problems.map((p) => p.message)).toEqual([
      'the store says the review was closed 2026-12-05T00:00:00.000Z by carol@cli; the audit chain holds no review.close entry for it',
    ]);
  });

  test('a review the chain never saw started shows, and so does each of its decisions', () => {
    const review = decided();
    const i = checkReviewAudit(review, []);
    expect(i.startSeq).toBeNull();
    expect(i.problems[0]!.message).toBe(
      'the audit chain holds no review.start entry for review/2026-Q4: this review was not started by datagrant, or not in this chain',
    );
    expect(i.problems.filter((p) => /which is not a decision of this review/.test(p.message))).toHaveLength(review.decisions.length);
  });
});

describe("a decision's audit detail", () => {
  test.each([
    ['carol; self-review', 'fine'],
    ['carol', 'fine"; self-review yes; reason "x'],
    ['a\\"b', 'line one\nline two \u2028 and \\ a backslash'],
  ])('reads back as written: reviewer %j, reason %j', (reviewer, reason) => {
    const d = { rowId: 'pg|features|read|h:"><b>', reviewer, selfReview: false, reason };
    expect(parseDecisionDetail(decisionDetail(d))).toEqual(d);
  });

  test('no reviewer name passes for a flag: the detail of a decision without one differs from that of one with', () => {
    const plain = decisionDetail({ rowId: 'r', reviewer: 'alice; self-review', selfReview: false, reason: 'x' });
    const flagged = decisionDetail({ rowId: 'r', reviewer: 'alice', selfReview: true, reason: 'x' });
    expect(plain).not.toBe(flagged);
    expect(parseDecisionDetail('row r; reviewer alice; self-review; reason: "x"')).toBeUndefined();
  });
});
