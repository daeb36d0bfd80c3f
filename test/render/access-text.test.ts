import { describe, expect, test } from 'vitest';
import { accessDiffers } from '../../src/app/access.js';
import type { AccessReport, AccessReportRow } from '../../src/model/access.js';
import { renderAccessText } from '../../src/render/access.js';
import { printable } from '../../src/render/printable.js';

const row = (over: Partial<AccessReportRow>): AccessReportRow => ({
  id: 'x',
  backend: 'wh',
  dataset: 'hr',
  level: 'read',
  who: 'ana',
  principal: 'ana',
  managed: true,
  status: 'both',
  intended: [{ via: 'direct grant', path: 'principals.ana.grants[0]' }],
  actual: [{ via: 'GRANT SELECT ON hr.t TO ana', managed: true }],
  ...over,
});
const report = (rows: AccessReportRow[], over: Partial<AccessReport> = {}): AccessReport => ({
  generatedAt: '2026-12-01T00:00:00.000Z',
  specHash: 'h',
  specFile: 'datagrant.yaml',
  filters: {},
  rows,
  limits: [],
  incomplete: [],
  invariants: [],
  requests: {},
  ...over,
});

describe('the text report', () => {
  test('a name with terminal controls or a bidi override shows as escapes, never as controls', () => {
    const evil = 'x\u001b[2K\u001b[8m\u202eevil';
    const text = renderAccessText(
      report([row({ who: evil, principal: undefined, managed: false, status: 'actual', intended: [], actual: [{ via: `member of role ${evil}` }] })]),
    );
    expect(text.includes('\u001b') || text.includes('\u202e')).toBe(false);
    expect(text).toContain('x\\u{1b}[2K\\u{1b}[8m\\u{202e}evil');
    expect(printable('tab\there\nnewline')).toBe('tab\\u{9}here\\u{a}newline');
  });

  test('a path datagrant did not make, on one of its principals, is marked and is a difference', () => {
    const drift = row({
      actual: [{ via: 'GRANT SELECT ON hr.t TO ana', managed: true }, { via: 'member of role hand_made' }],
    });
    const text = renderAccessText(report([drift]));
    expect(text).toMatch(/! read\s+ana\s+both/);
    expect(text).toContain('not made by datagrant: member of role hand_made');
    expect(accessDiffers(report([drift]))).toBe(true);
    expect(accessDiffers(report([row({})]))).toBe(false);
  });

  test('an incomplete report says so before its limits', () => {
    const text = renderAccessText(report([row({})], { incomplete: ['aws: bucket hr-data: its policy could not be read (AccessDenied)'] }));
    expect(text).toContain('INCOMPLETE: these could not be read this time');
    expect(text).toContain('✗ aws: bucket hr-data: its policy could not be read (AccessDenied)');
  });

  test("with --principal, another holder's breach of an invariant is shown but does not decide the exit code", () => {
    const v = { invariant: 'hr-in-hr', message: 'invariant hr-in-hr: principal bob …', principal: 'bob', dataset: 'hr', source: 'actual' as const };
    expect(accessDiffers(report([row({})], { invariants: [v] }))).toBe(true);
    expect(accessDiffers(report([row({})], { invariants: [v], filters: { principal: 'ana' } }))).toBe(false);
    expect(accessDiffers(report([row({ who: 'bob', principal: 'bob' })], { invariants: [v], filters: { principal: 'bob' } }))).toBe(true);
  });
});

describe('review text', () => {
  test('review list escapes a review name chosen to hide a line', async () => {
    const { renderReviewList } = await import('../../src/render/review.js');
    const text = renderReviewList([{ name: 'q4\u001b[1A\u001b[2K', startedAt: '2026-12-01T00:00:00Z', startedBy: 'x@cli', rows: 1, decided: 0 }] as never);
    expect(text.includes('\u001b')).toBe(false);
    expect(text).toContain('q4\\u{1b}[1A\\u{1b}[2K');
  });
});
