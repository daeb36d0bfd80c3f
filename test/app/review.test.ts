// Access reviews over a real state store, with hand-built access reports: what start records for
// the auditor, what decide accepts and refuses, and that every step is in the audit chain.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { closeReview, decide, evidence, startReview } from '../../src/app/review.js';
import { hashJson } from '../../src/core/canonical.js';
import { ReviewError } from '../../src/core/errors.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { DATASETS, EMAILS, fixtureReadings, fixtureReport, NOW } from '../support/review-fixture.js';

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dg-review-'));
  store = new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()));
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const LATER = new Date('2026-12-02T09:00:00.000Z');
const start = (name = '2026-Q4', report = fixtureReport()) =>
  startReview(store, {
    name,
    readReport: async () => report,
    emails: { ...EMAILS, zed: 'zed@example.com' },
    datasets: DATASETS,
    actor: 'carol@cli',
    now: NOW,
    version: '0.1.0',
  });
const rowNo = (review: Awaited<ReturnType<typeof start>>, who: string, dataset: string, level = 'read') =>
  String(review.population.findIndex((r) => r.who === who && r.dataset === dataset && r.level === level) + 1);

describe('review start', () => {
  test('records the population and a manifest that ties it to the spec and the audit chain', async () => {
    await store.audit({ actor: 'ci@cli', event: 'apply.end', address: null, outcome: 'ok', detail: '3 applied' }, '2026-11-30T00:00:00.000Z');
    const head = (await store.auditEntries()).at(-1)!;
    const report = fixtureReport({ filters: { dataset: 'training-data' } });
    const review = await start('2026-Q4', report);
    expect(review.population).toEqual(report.rows);
    expect(review.manifest).toEqual({
      extractedAt: report.generatedAt,
      query: { command: 'datagrant --spec datagrant.yaml access --dataset training-data --format json', filters: { dataset: 'training-data' } },
      specFile: 'datagrant.yaml',
      specSha256: report.specHash,
      auditHead: { seq: head.seq, hash: head.hash },
      datagrantVersion: '0.1.0',
      populationSha256: hashJson(report.rows),
      limits: ['aws: service control policies are not readable from a member account'],
      invariants: [],
      requests: { aws: 4, wh: 2 },
      datasets: { 'training-data': DATASETS['training-data'] },
    });
    // Only the e-mails of principals in the population are kept.
    expect(review.emails).toEqual({ alice: 'alice@example.com', bob: 'bob@example.com', dana: 'dana@example.com' });
    expect(await store.review('2026-Q4')).toEqual(review);
    const entry = (await store.auditEntries()).at(-1)!;
    expect(entry).toMatchObject({ actor: 'carol@cli', event: 'review.start', address: 'review/2026-Q4', outcome: 'ok', prevHash: head.hash });
    expect(entry.detail).toContain(`population sha256 ${review.manifest.populationSha256}, manifest sha256 ${hashJson(review.manifest)}`);
    expect(entry.detail).toContain(`audit head #${head.seq}`);
  });

  test('a taken name is refused before the backends are read; a name that cannot be a file name is refused', async () => {
    await start();
    const read = vi.fn(async () => fixtureReport());
    await expect(
      startReview(store, { name: '2026-Q4', readReport: read, emails: {}, datasets: {}, actor: 'mallory@cli', now: LATER, version: '0.1.0' }),
    ).rejects.toThrow(/a review named "2026-Q4" already exists \(started 2026-12-01T00:00:00.000Z by carol@cli\)/);
    expect(read).not.toHaveBeenCalled();
    for (const bad of ['../etc', 'a/b', '', '.hidden', 'x'.repeat(101)]) await expect(start(bad)).rejects.toThrow(/review name .* is not allowed/);
  });
});

describe('review decide', () => {
  test('records a decision per row, flags self-review, and a later decision of the same reviewer replaces theirs', async () => {
    const review = await start();
    const alice = rowNo(review, 'alice', 'training-data');
    const base = { name: '2026-Q4', decision: 'keep' as const, reason: 'still on the team', actor: 'carol@cli', now: LATER };
    const [self] = await decide(store, { ...base, rows: [alice], reviewer: 'Alice@Example.com' });
    expect(self).toMatchObject({ selfReview: true, reviewer: 'Alice@Example.com' });
    await decide(store, { ...base, rows: [alice], reviewer: 'dave' });
    await decide(store, { ...base, rows: [alice], reviewer: 'dave', decision: 'revoke', reason: '  left the project\r\nin November  ' });
    const decisions = (await store.review('2026-Q4'))!.decisions;
    expect(decisions.map((d) => [d.reviewer, d.decision, d.reason, d.selfReview])).toEqual([
      ['Alice@Example.com', 'keep', 'still on the team', true],
      ['dave', 'revoke', 'left the project\nin November', false],
    ]);
    const entries = (await store.auditEntries()).filter((e) => e.event === 'review.decide');
    // The decision's whole content, free text quoted, so that evidence can be checked against it.
    const id = JSON.stringify(review.population[Number(alice) - 1]!.id);
    expect(entries.map((e) => `${e.outcome}: ${e.detail}`)).toEqual([
      `keep: row ${id}; reviewer "Alice@Example.com"; self-review yes; reason "still on the team"`,
      `keep: row ${id}; reviewer "dave"; self-review no; reason "still on the team"`,
      `revoke: row ${id}; reviewer "dave"; self-review no; reason "left the project\\nin November"`,
    ]);
    expect(entries.every((e) => e.actor === 'carol@cli' && e.address === 'review/2026-Q4')).toBe(true);
  });

  test('alice deciding on her own row in carol’s name is a self-review, recorded with alice as the actor', async () => {
    const review = await start();
    const alice = rowNo(review, 'alice', 'training-data');
    const bob = rowNo(review, 'bob', 'training-data');
    const base = { name: '2026-Q4', decision: 'keep' as const, reason: 'fine', reviewer: 'carol@example.com', now: LATER };
    const [own] = await decide(store, { ...base, rows: [alice], actor: 'alice@cli' });
    const [other] = await decide(store, { ...base, rows: [bob], actor: 'alice@cli' });
    expect(own).toMatchObject({ reviewer: 'carol@example.com', actor: 'alice@cli', selfReview: true });
    expect(other).toMatchObject({ reviewer: 'carol@example.com', actor: 'alice@cli', selfReview: false });
    // DATAGRANT_ACTOR set to her e-mail, tagged, is still alice.
    const [tagged] = await decide(store, { ...base, reviewer: 'dave', rows: [alice], actor: 'Alice+ops@example.com' });
    expect(tagged).toMatchObject({ actor: 'Alice+ops@example.com', selfReview: true });
    const stored = (await store.review('2026-Q4'))!.decisions;
    expect(stored.map((d) => [d.rowId === review.population[Number(alice) - 1]!.id ? 'alice' : 'bob', d.reviewer, d.actor, d.selfReview])).toEqual([
      ['alice', 'carol@example.com', 'alice@cli', true],
      ['alice', 'dave', 'Alice+ops@example.com', true],
      ['bob', 'carol@example.com', 'alice@cli', false],
    ]);
  });

  test('--all-matching decides every matching row at once', async () => {
    await start();
    const recorded = await decide(store, {
      name: '2026-Q4',
      matching: { unmanaged: true },
      decision: 'revoke',
      reason: 'not reviewed into the spec',
      reviewer: 'dave',
      actor: 'carol@cli',
      now: LATER,
    });
    expect(recorded.map((d) => d.rowId.split('|').slice(1).join('|'))).toEqual([
      'features|read|h:PUBLIC',
      'training-data|read|h:arn:aws:iam::123456789012:user/mallory',
    ]);
  });

  test.each([
    [
      { rows: ['999'] },
      /not in the population of review "2026-Q4": "999"\. A review decides only on the access it snapshotted: its \d+ rows are numbered 1 to \d+/,
    ],
    [{ rows: ['aws|training-data|read|p:zed'] }, /not in the population of review "2026-Q4": "aws\|training-data\|read\|p:zed"/],
    [{ rows: ['1'], reason: '   ' }, /a decision needs a reason \(--reason TEXT\)/],
    [{ rows: ['1'], reason: 'fine \u001b[2Jnot' }, /control characters/],
    [{ rows: ['1'], reviewer: ' ' }, /the reviewer \(--as\) must be a name or e-mail/],
    [{ rows: ['1'], reviewer: 'a\nb' }, /the reviewer \(--as\) must be a name or e-mail/],
    [{ matching: { principal: 'nobody' } }, /no row of review "2026-Q4" matches/],
    [{ rows: ['1'], matching: { principal: 'alice' } }, /not both/],
    [{ rows: ['1'], name: 'nope' }, /there is no review named "nope"/],
  ])('refused, nothing recorded: %j', async (change, message) => {
    await start();
    const before = (await store.auditEntries()).length;
    const o = { name: '2026-Q4', decision: 'keep' as const, reason: 'ok', reviewer: 'dave', actor: 'carol@cli', now: LATER, ...change };
    const err = await decide(store, o).catch((e: Error) => e);
    expect(err).toBeInstanceOf(ReviewError);
    expect(String(err)).toMatch(message);
    expect((await store.review('2026-Q4'))!.decisions).toEqual([]);
    expect(await store.auditEntries()).toHaveLength(before);
  });

  test('a closed review takes no more decisions; the close is audited with the counts', async () => {
    const review = await start();
    await decide(store, { name: '2026-Q4', rows: ['1', '2'], decision: 'keep', reason: 'ok', reviewer: 'dave', actor: 'carol@cli', now: LATER });
    const closed = await closeReview(store, { name: '2026-Q4', actor: 'carol@cli', now: LATER });
    expect(closed).toMatchObject({ closedAt: LATER.toISOString(), closedBy: 'carol@cli' });
    expect((await store.auditEntries()).at(-1)).toMatchObject({
      event: 'review.close',
      detail: `${review.population.length} rows: 2 keep, 0 revoke, ${review.population.length - 2} undecided`,
    });
    await expect(
      decide(store, { name: '2026-Q4', rows: ['3'], decision: 'keep', reason: 'ok', reviewer: 'dave', actor: 'carol@cli', now: LATER }),
    ).rejects.toThrow(/was closed 2026-12-02T09:00:00.000Z by carol@cli; a closed review takes no more decisions/);
    await expect(closeReview(store, { name: '2026-Q4', actor: 'carol@cli', now: LATER })).rejects.toThrow(/was closed/);
    expect(await store.verifyAudit()).toMatchObject({ ok: true });
  });
});

describe('review evidence', () => {
  test('a review edited in the database, not through datagrant, is reported against the audit chain, which still verifies', async () => {
    const review = await start();
    const alice = rowNo(review, 'alice', 'training-data');
    const mallory = rowNo(review, 'mallory', 'training-data');
    const at = { name: '2026-Q4', now: LATER, actor: 'carol@cli' };
    await decide(store, { ...at, rows: [alice], decision: 'revoke', reason: 'moved to sales', reviewer: 'carol@example.com' });
    await decide(store, { ...at, rows: [alice], decision: 'keep', reason: 'I need it', reviewer: 'alice@example.com' });
    await decide(store, { ...at, rows: [mallory], decision: 'revoke', reason: 'unknown user', reviewer: 'carol@example.com' });
    const read = async (filters: object) => fixtureReport({ filters });
    expect((await evidence(store, { name: '2026-Q4', readReport: read, exportedBy: 'auditor@cli' })).integrity).toMatchObject({ ok: true, decisions: 3 });

    // Someone with write access to the state database: alice's revoke becomes a keep with a
    // better reason, her self-review is no longer one, and mallory's row and decision vanish
    // from the population, whose hash in the manifest is fixed up to match.
    const population = review.population.filter((r) => r.who !== 'mallory');
    const manifest = { ...review.manifest, populationSha256: hashJson(population) };
    store.db.exec(`UPDATE review_decisions SET decision = 'keep', reason = 'approved' WHERE reviewer = 'carol@example.com' AND row_id LIKE '%p:alice'`);
    store.db.exec(`UPDATE review_decisions SET self_review = 0 WHERE reviewer = 'alice@example.com'`);
    store.db.exec(`DELETE FROM review_decisions WHERE row_id LIKE '%mallory'`);
    store.db
      .prepare('UPDATE reviews SET population = ?, manifest = ?, population_rows = ?')
      .run(JSON.stringify(population), JSON.stringify(manifest), population.length);

    const e = await evidence(store, { name: '2026-Q4', readReport: read, exportedBy: 'auditor@cli' });
    expect(e.auditVerified.ok).toBe(true);
    expect(e.integrity.ok).toBe(false);
    const messages = e.integrity.problems.map((p) => p.message);
    expect(messages).toContainEqual(expect.stringMatching(/^the population differs from the one the review started with/));
    expect(messages).toContainEqual(expect.stringMatching(/^the manifest differs from the one the review started with/));
    expect(messages).toContainEqual(
      expect.stringMatching(
        /decision by carol@example.com differs from its audit entry #\d+: verdict: store keep, audit revoke; reason: store "approved", audit "moved to sales"$/,
      ),
    );
    expect(messages).toContainEqual(
      expect.stringMatching(/decision by alice@example.com differs from its audit entry #\d+: self-review: store no, audit yes$/),
    );
    expect(messages).toContainEqual(
      expect.stringMatching(/records revoke on row .*mallory.* by carol@example.com \(recorded by carol@cli\), which the store no longer holds/),
    );
  });

  test('reads the population again with the review’s filters and checks the chain', async () => {
    await start('2026-Q4', fixtureReport({ filters: { principal: 'mallory' } }));
    await decide(store, { name: '2026-Q4', rows: ['1'], decision: 'revoke', reason: 'unknown user', reviewer: 'dave', actor: 'carol@cli', now: LATER });
    const read = vi.fn(async (filters: object) => fixtureReport({ filters, readings: fixtureReadings({ without: (a) => a.holder.name === 'mallory' }) }));
    const e = await evidence(store, { name: '2026-Q4', readReport: read, exportedBy: 'auditor@cli' });
    expect(read).toHaveBeenCalledWith({ principal: 'mallory' });
    expect(e.rows.map((r) => [r.row.who, r.revocation?.state])).toEqual([['mallory', 'removed']]);
    expect(e.auditVerified).toEqual({ ok: true, entries: 2 });
    expect(e.exportedBy).toBe('auditor@cli');
  });
});
