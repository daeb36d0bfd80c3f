// `datagrant review …` end to end on the command line, with the backends' readings given by hand
// (the drivers' own readers are tested against moto and PostgreSQL; test/e2e/aws-review.test.ts
// runs a review on moto). Covers the commands' output, refusals and files.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { hashJson } from '../../src/core/canonical.js';
import type { AccessReading } from '../../src/model/access.js';
import type { ReviewEvidence } from '../../src/model/review.js';
import { REVIEW_CSV_HEADER } from '../../src/render/review.js';
import { reviewExport, reviewStart, reviewStatus } from '../../src/cli/commands/review.js';
import { workspace, type Workspace } from '../support/cli.js';
import { fixtureReadings, SPEC_TEXT } from '../support/review-fixture.js';

let ws: Workspace;
let readings: Record<string, AccessReading>;
/** Each driver's access reader answers with `readings`; nothing else of the driver is used. */
const backendOptions = {
  wrap: (b: Backend): Backend =>
    new Proxy(b, {
      get: (target, p) => {
        if (p === 'readAccess') return async () => structuredClone(readings[target.name]!);
        // The driver's methods use private fields: call them on the driver itself.
        const v = Reflect.get(target, p, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }),
};

beforeEach(async () => {
  ws = workspace();
  ws.writeSpec(SPEC_TEXT);
  expect((await ws.run('init')).code).toBe(0);
  readings = fixtureReadings();
});
afterEach(() => ws.cleanup());

const start = (name = '2026-Q4') => ws.call((io) => reviewStart(io, { name, version: '0.1.0', backendOptions }));
/** The number `review show` gives the row of `who` on `dataset` at `level`. */
async function rowNo(who: string, dataset: string, level = 'read'): Promise<string> {
  const shown = await ws.run('review', 'show', '2026-Q4', '--json');
  const rows = (JSON.parse(shown.stdout) as { rows: { n: number; row: { who: string; dataset: string; level: string } }[] }).rows;
  return String(rows.find((r) => r.row.who === who && r.row.dataset === dataset && r.row.level === level)!.n);
}

describe('datagrant review', () => {
  test('start snapshots the population and says where it came from; a taken name is refused', async () => {
    const r = await start();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Started review 2026-Q4: 12 row\(s\) of effective access, read /);
    expect(r.stdout).toContain('  query:      datagrant --spec datagrant.yaml access --format json');
    expect(r.stdout).toMatch(/spec: {7}datagrant\.yaml \(sha256 [0-9a-f]{64}\)/);
    expect(r.stdout).toContain('    - aws: service control policies are not readable from a member account');
    const again = await ws.run('review', 'start', '2026-Q4');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^Error: a review named "2026-Q4" already exists \(started .* by test@cli\).*choose another name\n$/);
    const list = await ws.run('review', 'list');
    expect(list.stdout).toMatch(/^NAME +STARTED +BY +ROWS +UNDECIDED +CLOSED\n2026-Q4 +\S+ +test@cli +12 +12 +open\n$/);
  });

  test('decide: rows by number, self-review flagged, rows outside the population and missing reasons refused', async () => {
    await start();
    const alice = await rowNo('alice', 'training-data');
    const ok = await ws.run('review', 'decide', '2026-Q4', alice, '--revoke', '--reason', 'left the ML team', '--as', 'carol@example.com');
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toMatch(
      /^Recorded revoke on 1 row\(s\) of review 2026-Q4 as carol@example.com \(audit #\d+\); decision recorded on behalf of carol@example.com by test@cli\.\n$/,
    );
    const self = await ws.run('review', 'decide', '2026-Q4', alice, '--keep', '--reason', 'I still need it', '--as', 'alice@example.com');
    expect(self.code).toBe(0);
    expect(self.stderr).toMatch(
      /Warning: 1 of them is flagged SELF-REVIEW: alice@example.com, or test@cli, who recorded it, is the principal whose access it is/,
    );
    // alice herself, signing as dave: the actor gives her away.
    ws.env.DATAGRANT_ACTOR = 'alice@cli';
    const disguised = await ws.run('review', 'decide', '2026-Q4', await rowNo('alice', 'features'), '--keep', '--reason', 'needed', '--as', 'dave');
    ws.env.DATAGRANT_ACTOR = 'test@cli';
    expect(disguised.stdout).toMatch(/as dave \(audit #\d+\); decision recorded on behalf of dave by alice@cli\.\n$/);
    expect(disguised.stderr).toMatch(/flagged SELF-REVIEW: dave, or alice@cli, who recorded it, is the principal whose access it is/);
    const outside = await ws.run('review', 'decide', '2026-Q4', '13', '--keep', '--reason', 'x', '--as', 'carol');
    expect(outside.code).toBe(1);
    expect(outside.stderr).toMatch(/not in the population of review "2026-Q4": "13"/);
    const noReason = await ws.run('review', 'decide', '2026-Q4', '1', '--keep', '--as', 'carol');
    expect(noReason.code).toBe(1);
    expect(noReason.stderr).toMatch(/required option '--reason <text>' not specified/);
    const both = await ws.run('review', 'decide', '2026-Q4', '1', '--keep', '--revoke', '--reason', 'x', '--as', 'carol');
    expect(both.stderr).toMatch(/say --keep or --revoke \(one of them\)/);
    const filterWithoutAll = await ws.run('review', 'decide', '2026-Q4', '1', '--keep', '--reason', 'x', '--as', 'carol', '--dataset', 'features');
    expect(filterWithoutAll.stderr).toMatch(/choose rows only with --all-matching/);
    const all = await ws.run('review', 'decide', '2026-Q4', '--all-matching', '--unmanaged', '--revoke', '--reason', 'not in the spec', '--as', 'carol');
    expect(all.stdout).toMatch(/^Recorded revoke on 2 row\(s\)/);
    const show = await ws.run('review', 'show', '2026-Q4');
    expect(show.stdout).toMatch(
      /revoke by carol@example.com \(decision recorded on behalf of carol@example.com by test@cli\) at \S+ \(audit #\d+\): left the ML team/,
    );
    expect(show.stdout).toMatch(
      /keep by alice@example.com \(decision recorded on behalf of alice@example.com by test@cli\) \(SELF-REVIEW\) at \S+ \(audit #\d+\): I still need it/,
    );
    expect(show.stdout).toMatch(/keep by dave \(decision recorded on behalf of dave by alice@cli\) \(SELF-REVIEW\) at \S+ \(audit #\d+\): needed/);
    expect(show.stdout).toContain('12 row(s): 1 keep, 3 revoke, 8 undecided; 1 contested (keep and revoke), 1 decided only by self-review.');
  });

  test('revocations: the patch on standard output applies with git apply and validates; --out writes it to a file', async () => {
    await start();
    await ws.run('review', 'decide', '2026-Q4', await rowNo('alice', 'training-data'), '--revoke', '--reason', 'left', '--as', 'carol');
    await ws.run('review', 'decide', '2026-Q4', await rowNo('mallory', 'training-data'), '--revoke', '--reason', 'unknown', '--as', 'carol');
    const onStdout = await ws.run('review', 'revocations', '2026-Q4');
    expect(onStdout.code).toBe(0);
    expect(onStdout.stdout).toMatch(/^={10,}\n--- a\/datagrant\.yaml\n\+\+\+ b\/datagrant\.yaml\n@@ /);
    expect(onStdout.stderr).toMatch(/patch: {3}remove alice from group ml-researchers/);
    expect(onStdout.stderr).toMatch(/BY HAND: on backend aws, remove inline policy s3-read of user mallory/);
    const toFile = await ws.run('review', 'revocations', '2026-Q4', '--out', 'revocations.patch');
    expect(toFile.stdout).toContain('Wrote the spec change to revocations.patch');
    expect(readFileSync(join(ws.dir, 'revocations.patch'), 'utf8')).toBe(onStdout.stdout);
    execFileSync('git', ['init', '-q', ws.dir]);
    execFileSync('git', ['apply', 'revocations.patch'], { cwd: ws.dir });
    expect(readFileSync(join(ws.dir, 'datagrant.yaml'), 'utf8')).toContain('groups: [] }   # team lead');
    const validate = await ws.run('validate');
    expect(validate.code, validate.stderr).toBe(0);
  });

  test('status and export read the backends again: what is gone, what is still held, and the evidence files', async () => {
    await start();
    await ws.run('review', 'decide', '2026-Q4', await rowNo('mallory', 'training-data'), '--revoke', '--reason', 'unknown user', '--as', 'carol');
    await ws.run('review', 'decide', '2026-Q4', await rowNo('PUBLIC', 'features'), '--revoke', '--reason', 'no public access', '--as', 'carol');
    await ws.run('review', 'decide', '2026-Q4', '--all-matching', '--managed', '--keep', '--reason', 'as the spec says', '--as', 'carol');
    readings = fixtureReadings({ without: (a) => a.holder.name === 'mallory' });
    const status = await ws.call((io) => reviewStatus(io, { name: '2026-Q4', detailedExitcode: true, backendOptions }));
    expect(status.code).toBe(2);
    expect(status.stdout).toMatch(/#\d+ STILL HELD {2}read on features \(wh\) for PUBLIC \(pg-public, not datagrant's\)\n {4}still held: remove it by hand/);
    expect(status.stdout).toMatch(/#\d+ removed {2}read on training-data \(aws\) for mallory .*\n {4}removed outside datagrant \(by hand\): no audit entry/);
    expect(status.stdout).toContain('1 of 2 revocation(s) in effect; 1 still held.');

    const exported = await ws.call((io) => reviewExport(io, { name: '2026-Q4', out: 'evidence', backendOptions }));
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(/^Wrote the evidence of review 2026-Q4 to evidence: 2026-Q4\.csv, 2026-Q4\.json, 2026-Q4\.html\./);
    expect(exported.stdout).toMatch(/Audit chain: verified, \d+ entries\./);
    const json = JSON.parse(readFileSync(join(ws.dir, 'evidence', '2026-Q4.json'), 'utf8')) as ReviewEvidence;
    expect(json.summary).toMatchObject({ rows: 12, keep: 10, revoke: 2, undecided: 0, removed: 1, present: 1 });
    expect(json.manifest.query.command).toBe('datagrant --spec datagrant.yaml access --format json');
    // Who recorded each decision stands beside the reviewer it names.
    expect(json.rows.flatMap((r) => r.decisions).map((d) => [d.reviewer, d.actor, d.onBehalf])).toContainEqual(['carol', 'test@cli', true]);
    expect(readFileSync(join(ws.dir, 'evidence', '2026-Q4.csv'), 'utf8').split('\r\n')[0]).toBe(REVIEW_CSV_HEADER.join(','));
    // What the README tells the auditor to recompute: both hashes are in the review's start entry.
    const started = (JSON.parse((await ws.run('audit', 'log', '--json')).stdout) as { event: string; detail: string }[]).find(
      (e) => e.event === 'review.start',
    )!;
    expect(hashJson(json.rows.map((r) => r.row))).toBe(json.manifest.populationSha256);
    expect(started.detail).toContain(`population sha256 ${json.manifest.populationSha256}, manifest sha256 ${hashJson(json.manifest)}`);
    expect(readFileSync(join(ws.dir, 'evidence', '2026-Q4.html'), 'utf8')).toMatch(/^<!doctype html>[\s\S]*Content-Security-Policy/);
  });

  test('a decision edited in the state database: show and status warn, export writes the evidence saying so and exits 1', async () => {
    await start();
    const alice = await rowNo('alice', 'training-data');
    await ws.run('review', 'decide', '2026-Q4', alice, '--revoke', '--reason', 'moved to sales', '--as', 'carol');
    const clean = await ws.call((io) => reviewExport(io, { name: '2026-Q4', out: 'clean', backendOptions }));
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toMatch(/Review against the chain: matches \(review\.start #\d+, 1 standing decision\(s\)\)\./);

    const db = new Database(join(ws.dir, '.datagrant', 'state.db'));
    db.exec(`UPDATE review_decisions SET decision = 'keep', reason = 'approved'`);
    db.close();
    const problem = /decision by carol differs from its audit entry #\d+: verdict: store keep, audit revoke; reason: store "approved", audit "moved to sales"/;

    const show = await ws.run('review', 'show', '2026-Q4');
    expect(show.code).toBe(0);
    expect(show.stderr).toMatch(/^Warning: review 2026-Q4 does NOT match the audit chain/);
    expect(show.stderr).toMatch(problem);
    const status = await ws.call((io) => reviewStatus(io, { name: '2026-Q4', json: true, backendOptions }));
    expect(status.stderr).toMatch(problem);
    expect((JSON.parse(status.stdout) as { integrity: { ok: boolean } }).integrity.ok).toBe(false);

    const exported = await ws.call((io) => reviewExport(io, { name: '2026-Q4', out: 'evidence', backendOptions }));
    expect(exported.code).toBe(1);
    expect(exported.stdout).toMatch(
      /Audit chain: verified, \d+ entries\.\n {2}Review against the chain: DOES NOT MATCH, 1 problem\(s\), written into the evidence\./,
    );
    expect(exported.stderr).toMatch(problem);
    const json = JSON.parse(readFileSync(join(ws.dir, 'evidence', '2026-Q4.json'), 'utf8')) as ReviewEvidence;
    expect(json.integrity.problems.map((p) => p.message)).toEqual([expect.stringMatching(problem)]);
    const csv = readFileSync(join(ws.dir, 'evidence', '2026-Q4.csv'), 'utf8').split('\r\n');
    const col = REVIEW_CSV_HEADER.indexOf('audit_check');
    const check = (l: string) => /,(ok|"?DOES NOT MATCH[^\r]*)$/.exec(l)?.[1];
    expect(csv.filter((l) => l.includes('p:alice') && l.includes('training-data')).map(check)).toEqual([
      expect.stringMatching(/^"?DOES NOT MATCH THE AUDIT CHAIN: row \d+ .* differs/),
    ]);
    expect(
      csv
        .filter((l) => l.includes('p:bob'))
        .map(check)
        .every((c) => c === 'ok'),
    ).toBe(true);
    expect(col).toBe(REVIEW_CSV_HEADER.length - 1);
    const html = readFileSync(join(ws.dir, 'evidence', '2026-Q4.html'), 'utf8');
    expect(html).toContain('This evidence does not match the audit chain (1 problem)');
    expect(html).toContain('<span class="badge b-bad">DOES NOT MATCH</span>');
    expect(html).not.toContain('<span class="badge b-ok">matches</span>');
  });

  test('close: no more decisions, and every step is in a chain that verifies', async () => {
    await start();
    const closed = await ws.run('review', 'close', '2026-Q4');
    expect(closed.stdout).toMatch(/^Closed review 2026-Q4 at \S+: 12 row\(s\), 12 undecided\. It takes no more decisions\.\n$/);
    const late = await ws.run('review', 'decide', '2026-Q4', '1', '--keep', '--reason', 'x', '--as', 'carol');
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/was closed .* a closed review takes no more decisions/);
    const log = await ws.run('audit', 'log');
    expect(log.stdout).toMatch(/review\.start {2}review\/2026-Q4 {2}ok/);
    expect(log.stdout).toMatch(/review\.close {2}review\/2026-Q4 {2}ok/);
    expect((await ws.run('audit', 'verify')).code).toBe(0);
    expect(existsSync(join(ws.dir, 'evidence'))).toBe(false);
  });
});
