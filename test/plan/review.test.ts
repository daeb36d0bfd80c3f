// The pure part of access reviews: self-review, outcomes, row selection and evidence (which audit
// entry removed a revoked row: test/plan/review-removals.test.ts).
import { execFileSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import {
  accessCommandLine,
  isSelfDecision,
  isSelfReview,
  matchingRows,
  recordedOnBehalf,
  reviewEvidence,
  rowOutcome,
  selectRows,
  shellWord,
} from '../../src/plan/review.js';
import { EMAILS, fixtureReadings, fixtureReport, fixtureReview } from '../support/review-fixture.js';

const report = fixtureReport();
const rowOf = (who: string, dataset: string, level = 'read') => report.rows.find((r) => r.who === who && r.dataset === dataset && r.level === level)!;

describe('self-review', () => {
  test.each([
    ['alice', 'alice', true],
    ['ALICE', 'alice', true],
    ['alice@example.com', 'alice', true],
    ['Alice@Example.COM', 'alice', true],
    [' alice ', 'alice', true],
    // A plus-address tag reaches the same mailbox: the same person.
    ['alice+review@example.com', 'alice', true],
    ['ALICE+Q4@Example.com', 'alice', true],
    ['alice+review', 'alice', false],
    ['al', 'alice', false],
    ['alice@other.example', 'alice', false],
    ['bob@example.com', 'alice', false],
    // An unmanaged holder is matched on its own name: mallory deciding on mallory's IAM user.
    ['mallory', 'mallory', true],
    ['arn:aws:iam::123456789012:user/mallory', 'mallory', true],
    ['carol', 'mallory', false],
  ])('%s deciding on a row of %s: %s', (reviewer, who, expected) => {
    expect(isSelfReview(reviewer, rowOf(who, 'training-data'), EMAILS)).toBe(expected);
  });

  test.each([
    // alice records a decision on her own row in carol's name: still hers.
    ['carol@example.com', 'alice@cli', 'alice', true],
    ['carol@example.com', 'Alice@cli', 'alice', true],
    // DATAGRANT_ACTOR as an e-mail, with a tag.
    ['carol@example.com', 'alice+ops@example.com', 'alice', true],
    ['carol@example.com', 'alice', 'alice', true],
    ['carol@example.com', 'carol@cli', 'alice', false],
    ['carol@example.com', 'al@cli', 'alice', false],
    ['alice@example.com', 'carol@cli', 'alice', true],
    ['carol', 'mallory@cli', 'mallory', true],
  ])('reviewer %s recorded by %s on a row of %s: self-review %s', (reviewer, actor, who, expected) => {
    expect(isSelfDecision({ reviewer, actor }, rowOf(who, 'training-data'), EMAILS)).toBe(expected);
  });

  test.each([
    ['carol@example.com', 'carol@cli', false],
    ['carol', 'carol@cli', false],
    ['Carol+q4@example.com', 'carol@example.com', false],
    ['carol@example.com', 'test@cli', true],
    ['carol', 'ci', true],
    ['car', 'carol@cli', true],
    ['carol@example.com', 'carol@other.example', true],
  ])('reviewer %s recorded by %s: on behalf %s', (reviewer, actor, expected) => {
    expect(recordedOnBehalf({ reviewer, actor })).toBe(expected);
  });

  test("a SCIM person's e-mail, recorded when the review started, counts", () => {
    expect(isSelfReview('dana@example.com', rowOf('dana', 'training-data'), EMAILS)).toBe(true);
    expect(isSelfReview('dana@example.com', rowOf('dana', 'training-data'), {})).toBe(false);
  });
});

describe('outcome of a row', () => {
  const d = (decision: 'keep' | 'revoke', selfReview = false) => ({
    rowId: 'r',
    decision,
    reason: 'x',
    reviewer: 'r',
    actor: 'r@cli',
    decidedAt: '',
    selfReview,
    auditSeq: 1,
  });
  test.each([
    [[], { outcome: 'undecided', contested: false, selfReviewOnly: false }],
    [[d('keep')], { outcome: 'keep', contested: false, selfReviewOnly: false }],
    [[d('keep', true)], { outcome: 'keep', contested: false, selfReviewOnly: true }],
    [[d('keep'), d('revoke')], { outcome: 'revoke', contested: true, selfReviewOnly: false }],
    [[d('revoke', true), d('keep')], { outcome: 'revoke', contested: true, selfReviewOnly: false }],
  ])('%j → %j', (decisions, expected) => {
    expect(rowOutcome(decisions)).toEqual(expected);
  });
});

describe('choosing rows', () => {
  const review = fixtureReview([['alice', 'training-data', 'read', 'keep', 'carol']]);
  test('by number as `review show` prints them, or by id; what names no row is returned', () => {
    const second = review.population[1]!;
    const { rows, unknown } = selectRows(review, ['1', second.id, '1', '0', String(review.population.length + 1), 'aws|nope|read|p:x']);
    expect(rows).toEqual([review.population[0], second]);
    expect(unknown).toEqual(['0', String(review.population.length + 1), 'aws|nope|read|p:x']);
  });

  test('by filter', () => {
    const ids = (f: Parameters<typeof matchingRows>[1]) => matchingRows(review, f).map((r) => `${r.who} ${r.dataset} ${r.level}`);
    expect(ids({ principal: 'bob', dataset: 'artifacts' })).toEqual(['bob artifacts read', 'bob artifacts write']);
    expect(ids({ unmanaged: true })).toEqual(['PUBLIC features read', 'mallory training-data read']);
    expect(ids({ principal: 'alice', undecided: true })).toEqual(['alice features read']);
    expect(ids({ backend: 'wh', status: 'both', level: 'read' })).toEqual(['alice features read', 'bob features read', 'dana features read']);
  });
});

describe('the manifest query', () => {
  test('reads back through a shell as the same words', () => {
    const words = ['datagrant.yaml', "o'brien", 'a b', '$HOME', '`x`'];
    for (const w of words) expect(execFileSync('sh', ['-c', `printf %s ${shellWord(w)}`]).toString()).toBe(w);
    expect(accessCommandLine('datagrant.yaml', { principal: "o'brien", dataset: 'training-data' })).toBe(
      "datagrant --spec datagrant.yaml access --principal 'o'\\''brien' --dataset training-data --format json",
    );
  });
});

describe('evidence', () => {
  test('counts, and a status for every revoked row only', () => {
    const review = fixtureReview([
      ['alice', 'training-data', 'read', 'revoke', 'carol'],
      ['alice', 'training-data', 'read', 'keep', 'alice'],
      ['mallory', 'training-data', 'read', 'revoke', 'carol'],
      ['bob', 'artifacts', 'read', 'keep', 'bob@example.com'],
      ['trainer', 'artifacts', 'write', 'keep', 'carol'],
    ]);
    const fresh = fixtureReport({ readings: fixtureReadings({ without: (a) => a.holder.name === 'mallory' }) });
    const e = reviewEvidence({ review, fresh, entries: [], verdict: { ok: true, entries: 0 }, exportedBy: 'auditor@cli' });
    expect(e.summary).toEqual({
      rows: review.population.length,
      undecided: review.population.length - 4,
      keep: 2,
      revoke: 2,
      contested: 1,
      selfReviewOnly: 1,
      selfReviews: 2,
      removed: 1,
      present: 1,
    });
    expect(e.rows.filter((r) => r.revocation).map((r) => [r.row.who, r.revocation!.state])).toEqual([
      ['alice', 'present'],
      ['mallory', 'removed'],
    ]);
    expect(e.checkedAt).toBe(fresh.generatedAt);
  });
});
