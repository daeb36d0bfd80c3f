// Which audit entry removed a revoked row: only a change that takes away one of the ways the row's
// access was held, after the revoke decision, in a run of a changed spec when the spec granted it.
// When none does exactly, the evidence says so instead of citing a wrong entry.
import { describe, expect, test } from 'vitest';
import { applyStartDetail } from '../../src/model/audit.js';
import type { AccessReportRow } from '../../src/model/access.js';
import type { AuditRecord } from '../../src/model/review.js';
import { auditRuns, revocationStatus, type RemovalContext } from '../../src/plan/review-removals.js';
import { DATASETS, fixtureReport } from '../support/review-fixture.js';

const report = fixtureReport();
const REVIEWED = report.specHash;
const PATCHED = 'b'.repeat(64);
const rowOf = (who: string, dataset: string, level = 'read') => report.rows.find((r) => r.who === who && r.dataset === dataset && r.level === level)!;
const gone = (...rows: AccessReportRow[]) => ({
  ...report,
  rows: report.rows.filter((r) => !rows.some((x) => x.id === r.id)),
  generatedAt: '2026-12-09T00:00:00.000Z',
});

/** An audit chain, built entry by entry: the review's start and decision first. */
function chain() {
  const entries: AuditRecord[] = [];
  const add = (event: string, address: string | null, outcome = 'ok', detail: string | null = null) => {
    const seq = entries.length + 1;
    const e = {
      seq,
      at: `2026-12-0${Math.min(9, 1 + Math.floor(seq / 5))}T00:00:00.000Z`,
      actor: 'ci@cli',
      event,
      address,
      outcome,
      detail,
      hash: `${seq}`.padStart(64, '0'),
    };
    entries.push(e);
    return e;
  };
  add('review.start', 'review/2026-Q4');
  const decided = add('review.decide', 'review/2026-Q4', 'revoke');
  /** One apply run of `spec` (undefined: a run recorded before runs named their spec) making these changes. */
  const run = (spec: string | undefined, ...changes: [event: string, address: string, outcome?: string][]) => {
    add('apply.start', null, 'started', spec === undefined ? '3 changes, run 0b0e' : applyStartDetail(changes.length, 'run-id', spec));
    const made = changes.map(([event, address, outcome]) => add(event, address, outcome));
    const end = add('apply.end', null, made.some((c) => c.outcome !== 'ok') ? 'failed' : 'ok');
    return { changes: made, end };
  };
  const status = (row: AccessReportRow, fresh = gone(row), extra: Partial<RemovalContext> = {}) =>
    revocationStatus(row, {
      fresh,
      runs: auditRuns(entries),
      decidedSeq: decided.seq,
      specSha256: REVIEWED,
      dataset: DATASETS[row.dataset],
      fromIdentityProvider: false,
      ...extra,
    });
  return { entries, add, run, status };
}

const alice = rowOf('alice', 'training-data'); // aws, through group ml-researchers
const bobWrite = rowOf('bob', 'artifacts', 'write'); // aws, inline policy dg-direct-grants of user bob
const bobFeatures = rowOf('bob', 'features'); // wh, member of role ml-researchers
/** A PostgreSQL row of alice's own grant on the features schema. */
const grantRow = (level: 'read' | 'write') => ({
  ...rowOf('alice', 'features'),
  id: `wh|features|${level}|p:alice`,
  level,
  actual: [{ via: `GRANT ${level === 'read' ? 'SELECT' : 'INSERT, UPDATE, DELETE'} ON ALL TABLES IN SCHEMA features TO alice` }],
});

describe('the removal a revoked row is credited to', () => {
  test('the deletion of the membership behind it, in the run that applied the patch, when the read no longer finds it', () => {
    const c = chain();
    const { changes } = c.run(PATCHED, ['change.delete', 'aws:membership/ml-researchers/alice'], ['change.delete', 'aws:key/alice']);
    const s = c.status(alice);
    expect(s).toEqual({
      state: 'removed',
      remaining: [],
      entry: { ...changes[0], match: 'change' },
      observedAt: '2026-12-09T00:00:00.000Z',
      note: `removed by change.delete aws:membership/ml-researchers/alice (audit #${changes[0]!.seq})`,
    });
  });

  test.each<[string, [string, string, string?][], AccessReportRow]>([
    ['a tag update on the user', [['change.update', 'aws:user/alice']], alice],
    ['the user itself', [['change.delete', 'aws:user/alice']], alice],
    ['a membership of another group', [['change.delete', 'aws:membership/ml-admins/alice']], alice],
    ['a principal named like a prefix', [['change.delete', 'aws:membership/ml-researchers/al']], alice],
    ['the same membership on another backend', [['change.delete', 'wh:membership/ml-researchers/alice']], alice],
    ['another inline policy of the user updated', [['change.update', 'aws:inline-policy/user/bob/notes']], bobWrite],
    ['a VALID UNTIL change on the role', [['change.update', 'wh:role/alice']], grantRow('read')],
    ['a grant on another database', [['change.delete', 'wh:grant/alice/otherdb.features/read']], grantRow('read')],
    ['a grant on another schema', [['change.delete', 'wh:grant/alice/analytics.staging/read']], grantRow('read')],
    ['the grant of a level above only (it holds what that level adds)', [['change.delete', 'wh:grant/alice/analytics.features/write']], grantRow('read')],
    ['a failed deletion', [['change.delete', 'aws:membership/ml-researchers/alice', 'failed']], alice],
  ])('not %s', (_, changes, row) => {
    const c = chain();
    c.run(PATCHED, ...changes);
    const s = c.status(row);
    expect(s.state).toBe('removed');
    expect(s.entry).toBeUndefined();
    expect(s.note).toMatch(/^removed; no single audit entry identified \(no change of datagrant's under a changed spec after the decision took away: /);
  });

  test.each([
    ['read', 'wh:grant/alice/analytics.features/read'],
    ['write', 'wh:grant/alice/analytics.features/write'],
    // The read grant holds USAGE on the schema: without it, no level is usable.
    ['write', 'wh:grant/alice/analytics.features/read'],
    ['read', 'wh:connect/alice/analytics'],
  ] as const)('a PostgreSQL %s row of the principal’s own grant: %s', (level, address) => {
    const c = chain();
    const { changes } = c.run(PATCHED, ['change.delete', address]);
    expect(c.status(grantRow(level)).entry).toEqual({ ...changes[0], match: 'change' });
  });

  test('a PostgreSQL membership and a direct AWS grant, by deletion or by update of the direct-grants policy', () => {
    const c = chain();
    const pg = c.run(PATCHED, ['change.delete', 'wh:membership/ml-researchers/bob']);
    const aws = c.run(PATCHED, ['change.update', 'aws:inline-policy/user/bob/dg-direct-grants']);
    expect(c.status(bobFeatures).entry?.seq).toBe(pg.changes[0]!.seq);
    expect(c.status(bobWrite).entry?.seq).toBe(aws.changes[0]!.seq);
  });

  test('only after the decision, and only in a run of a spec other than the one reviewed', () => {
    const c = chain();
    // Removed before the decision (recorded later, say): not the revocation's doing.
    const before = chain();
    const beforeDecision = before.entries.length;
    before.run(PATCHED, ['change.delete', 'aws:membership/ml-researchers/alice']);
    expect(before.status(alice, gone(alice), { decidedSeq: beforeDecision + 3 }).entry).toBeUndefined();
    // A run of the reviewed spec did not apply the patch; one whose start names no spec cannot be told.
    c.run(REVIEWED, ['change.delete', 'aws:membership/ml-researchers/alice']);
    c.run(undefined, ['change.delete', 'aws:membership/ml-researchers/alice']);
    expect(c.status(alice).entry).toBeUndefined();
    const applied = c.run(PATCHED, ['change.delete', 'aws:membership/ml-researchers/alice']);
    expect(c.status(alice).entry?.seq).toBe(applied.changes[0]!.seq);
  });

  test('a successful apply that changed nothing of the row is not credited (no run fallback for a user)', () => {
    const c = chain();
    c.run(PATCHED, ['change.update', 'aws:policy/dg-group-other']);
    const s = c.status(alice);
    expect(s.entry).toBeUndefined();
    expect(s.note).toBe(
      "removed; no single audit entry identified (no change of datagrant's under a changed spec after the decision took away: group ml-researchers (managed policy dg-group-ml-researchers))",
    );
  });

  test('access the identity provider gave, or drift, goes with the spec unchanged: a run of the reviewed spec counts', () => {
    const c = chain();
    const scim = c.run(REVIEWED, ['change.delete', 'aws:membership/ml-researchers/alice']);
    expect(c.status(alice).entry).toBeUndefined();
    expect(c.status(alice, gone(alice), { fromIdentityProvider: true }).entry?.seq).toBe(scim.changes[0]!.seq);
    const drift: AccessReportRow = {
      ...alice,
      id: 'aws|artifacts|read|p:alice',
      dataset: 'artifacts',
      status: 'actual',
      intended: [],
      actual: [{ via: 'inline policy extra of user alice' }],
    };
    const reverted = c.run(REVIEWED, ['change.delete', 'aws:inline-policy/user/alice/extra']);
    expect(c.status(drift).entry?.seq).toBe(reverted.changes[0]!.seq);
  });

  test('held two ways, taken away one way by datagrant: no single entry, and both facts said', () => {
    const c = chain();
    const two: AccessReportRow = { ...alice, actual: [...alice.actual, { via: 'bucket policy of ai-model-data, statement Team' }] };
    const { changes } = c.run(PATCHED, ['change.delete', 'aws:membership/ml-researchers/alice']);
    const s = c.status(two);
    expect(s.entry).toBeUndefined();
    expect(s.note).toBe(
      `removed; no single audit entry identified (changes that took away part of it: change.delete aws:membership/ml-researchers/alice (audit #${changes[0]!.seq}); no change of datagrant's under a changed spec after the decision took away: bucket policy of ai-model-data, statement Team)`,
    );
  });

  test('removed, given back, removed again: the last removal is the one in effect', () => {
    const c = chain();
    c.run(PATCHED, ['change.delete', 'aws:membership/ml-researchers/alice']);
    c.run('c'.repeat(64), ['change.create', 'aws:membership/ml-researchers/alice']);
    const last = c.run('d'.repeat(64), ['change.delete', 'aws:membership/ml-researchers/alice']);
    expect(c.status(alice).entry?.seq).toBe(last.changes[0]!.seq);
  });

  test('an AWS access-set role: the end of the last successful run that changed that role', () => {
    const c = chain();
    const role = 'dg-s-0123abcd';
    const carol: AccessReportRow = {
      ...alice,
      id: 'aws|training-data|read|p:carol',
      who: 'carol',
      principal: 'carol',
      holder: { id: `arn:aws:iam::123456789012:role/datagrant/${role}`, kind: 'aws-role', name: `role/${role}`, managed: true, principal: 'carol' },
      actual: [{ via: `sessions of role role/${role}: group ml-researchers (managed policy dg-group-ml-researchers)` }],
    };
    c.run(PATCHED, ['change.update', 'aws:role/dg-s-ffffffff']);
    expect(c.status(carol).note).toMatch(
      /^removed; no single audit entry identified \(no successful apply of a changed spec after the decision changed the access-set role dg-s-0123abcd\)$/,
    );
    const { end } = c.run(PATCHED, ['change.create', `aws:inline-policy/role/${role}/dg-revoked`]);
    c.run(PATCHED, ['change.update', 'aws:role/dg-s-ffffffff']);
    expect(c.status(carol)).toMatchObject({
      state: 'removed',
      entry: { ...end, match: 'run' },
      note: `removed by the apply run that ended at audit #${end.seq}, which changed the access-set role ${role}`,
    });
  });

  test('still held: where, and the changes it survived', () => {
    const c = chain();
    const { changes } = c.run(PATCHED, ['change.delete', 'aws:membership/ml-researchers/alice']);
    const s = c.status(alice, report);
    expect(s).toMatchObject({
      state: 'present',
      remaining: ['group ml-researchers (managed policy dg-group-ml-researchers)'],
      entry: { seq: changes[0]!.seq },
      observedAt: report.generatedAt,
    });
    expect(s.note).toMatch(/^still held after change.delete aws:membership\/ml-researchers\/alice \(audit #\d+\): through group ml-researchers/);
  });

  test('unmanaged access removed by hand is claimed by no entry', () => {
    const c = chain();
    const mallory = rowOf('mallory', 'training-data');
    c.run(PATCHED, ['change.delete', 'aws:membership/ml-researchers/alice']);
    expect(c.status(mallory)).toEqual({
      state: 'removed',
      remaining: [],
      observedAt: '2026-12-09T00:00:00.000Z',
      note: 'removed outside datagrant (by hand): no audit entry',
    });
  });
});
