// Revoke decisions become a patch of the spec file that applies with git and patch, validates,
// removes exactly the access behind the revoked rows (and says what else goes with it), and
// names every step no spec change can take. No decision is dropped.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { intendedAccess } from '../../src/compile/access.js';
import { planRevocations } from '../../src/plan/revocations.js';
import { parseSpec } from '../../src/spec/load.js';
import { fixtureReport, fixtureReview, loadFixtureSpec, NOW, SPEC_FILE, SPEC_TEXT } from '../support/review-fixture.js';
import type { ReviewVerdict } from '../../src/model/review.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function plan(decisions: [string, string, string, ReviewVerdict, string][], text = SPEC_TEXT) {
  const review = fixtureReview(decisions);
  const { fileSpec, spec } = loadFixtureSpec(text);
  return planRevocations({ review, specText: text, specFile: SPEC_FILE, fileSpec, spec, env: {}, now: NOW });
}

/** Applies the patch in a fresh directory with the given tool; returns the spec's text after. */
function applyWith(tool: 'git' | 'patch', patch: string, text = SPEC_TEXT): string {
  const dir = mkdtempSync(join(tmpdir(), 'dg-revoke-'));
  dirs.push(dir);
  writeFileSync(join(dir, SPEC_FILE), text);
  writeFileSync(join(dir, 'revocations.patch'), patch);
  if (tool === 'git') {
    execFileSync('git', ['init', '-q', dir]);
    execFileSync('git', ['apply', 'revocations.patch'], { cwd: dir });
  } else {
    execFileSync('patch', ['-p1', '-i', 'revocations.patch'], { cwd: dir, stdio: 'pipe' });
  }
  return readFileSync(join(dir, SPEC_FILE), 'utf8');
}

const changedLines = (patch: string) => patch.split('\n').filter((l) => /^[-+](?![-+]{2} )/.test(l));

describe('the revocations patch', () => {
  const decisions: [string, string, string, ReviewVerdict, string][] = [
    // Through a group: alice leaves ml-researchers, which also carries her features access.
    ['alice', 'training-data', 'read', 'revoke', 'carol'],
    // A direct grant that expires anyway: removed now.
    ['bob', 'artifacts', 'read', 'revoke', 'carol'],
    ['bob', 'training-data', 'read', 'keep', 'carol'],
    ['trainer', 'artifacts', 'write', 'keep', 'carol'],
  ];

  test.each(['git', 'patch'] as const)('applies with %s, validates, and removes exactly what was revoked', (tool) => {
    const p = plan(decisions);
    const after = applyWith(tool, p.patch);
    expect(after).toBe(p.text);
    const spec = parseSpec(after, { file: SPEC_FILE, env: {}, now: NOW }).spec;
    const grants = intendedAccess(spec, NOW).map((g) => `${g.principal} ${g.level} ${g.dataset}`);
    expect(grants).not.toContain('alice read training-data');
    expect(grants).not.toContain('alice read features');
    expect(grants.filter((g) => g.startsWith('bob'))).toEqual(['bob read training-data', 'bob read features']);
    expect(grants).toContain('trainer write artifacts');
  });

  test('changes only the lines it must, keeping comments and alignment everywhere else', () => {
    const p = plan(decisions);
    expect(changedLines(p.patch)).toEqual([
      '-  alice:   { type: person, email: alice@example.com, groups: [ml-researchers] }   # team lead',
      '+  alice:   { type: person, email: alice@example.com, groups: [] }   # team lead',
      '-    grants:',
      '-      - { dataset: artifacts, access: write, expires: 2027-01-31 }   # eval project',
      '+    grants: []',
    ]);
    expect(p.patch).toContain(`--- a/${SPEC_FILE}`);
    expect(p.patch).toContain(`+++ b/${SPEC_FILE}`);
  });

  test('says what each revoked row takes, what goes with it, and warns about a kept row it removes', () => {
    const p = plan([...decisions, ['alice', 'features', 'read', 'keep', 'dave']]);
    const alice = p.items.find((i) => i.row.who === 'alice')!;
    expect(alice.edits).toEqual([
      'remove alice from group ml-researchers (principals.alice.groups, which grants read on training-data through groups.ml-researchers.grants[0]); alice also loses what ml-researchers grants: read on features',
    ]);
    const bob = p.items.find((i) => i.row.who === 'bob')!;
    expect(bob.edits).toEqual([
      'remove principals.bob.grants[0] (write on artifacts, expires 2027-01-31T00:00:00.000Z) (the grant expires 2027-01-31T00:00:00.000Z; it is removed now all the same)',
    ]);
    expect(p.alsoRemoved.map((a) => `${a.row.who} ${a.row.level} ${a.row.dataset} ${a.outcome.outcome}`).sort()).toEqual([
      'alice read features keep',
      'bob write artifacts undecided',
    ]);
    expect(p.warnings).toEqual([
      expect.stringMatching(
        /^row \d+ \(read on features \(wh\) for alice\) was decided keep by dave, but the patch removes it too: remove alice from group ml-researchers/,
      ),
    ]);
  });

  test('a person from SCIM, an unmanaged IAM user and PUBLIC get steps by hand, each naming what to remove', () => {
    const p = plan([
      ['dana', 'training-data', 'read', 'revoke', 'carol'],
      ['mallory', 'training-data', 'read', 'revoke', 'carol'],
      ['PUBLIC', 'features', 'read', 'revoke', 'carol'],
    ]);
    expect(p.patch).toBe('');
    expect(p.text).toBe(SPEC_TEXT);
    const manual = Object.fromEntries(p.items.map((i) => [i.row.who, i.manual]));
    expect(manual.dana).toEqual([
      `remove dana@example.com from the identity provider's group "ML Research" (scim.groups maps it to ml-researchers, which grants read on training-data); datagrant serve then removes the access`,
    ]);
    expect(manual.mallory).toEqual([
      'on backend aws, remove inline policy s3-read of user mallory (holder aws-user arn:aws:iam::123456789012:user/mallory; not managed by datagrant)',
    ]);
    expect(manual.PUBLIC).toEqual(['on backend wh, remove GRANT SELECT ON features.embeddings TO PUBLIC (holder pg-public PUBLIC; not managed by datagrant)']);
  });

  test("access the spec's knownAccess accepts: removed by hand, and the entry named for narrowing", () => {
    const text = `${SPEC_TEXT}knownAccess:\n  public-features: { backend: wh, holders: [PUBLIC], access: read, reason: legacy dashboards }\n`;
    const review = fixtureReview([['PUBLIC', 'features', 'read', 'revoke', 'carol']], fixtureReport({ text }));
    const { fileSpec, spec } = loadFixtureSpec(text);
    const p = planRevocations({ review, specText: text, specFile: SPEC_FILE, fileSpec, spec, env: {}, now: NOW });
    expect(p.patch).toBe('');
    expect(p.items[0]!.manual).toEqual([
      'on backend wh, remove GRANT SELECT ON features.embeddings TO PUBLIC (holder pg-public PUBLIC; not managed by datagrant)',
      "the spec's knownAccess.public-features accepts this access (legacy dashboards): once it is removed, narrow or remove that entry",
    ]);
  });

  test('every revoked row comes out with an edit, a step or a note', () => {
    const report = fixtureReport();
    const all = report.rows.map((r) => [r.who, r.dataset, r.level, 'revoke', 'carol'] as [string, string, string, ReviewVerdict, string]);
    const p = plan(all);
    expect(p.items).toHaveLength(report.rows.length);
    for (const item of p.items) expect(item.edits.length + item.manual.length + item.notes.length, item.row.id).toBeGreaterThan(0);
    const spec = parseSpec(applyWith('git', p.patch), { file: SPEC_FILE, env: {}, now: NOW }).spec;
    expect(intendedAccess(spec, NOW)).toEqual([]);
  });

  test('edits follow the spec as it is now, with a warning, when it changed since the review started', () => {
    // bob's grants were reordered after the review: grants[0] is now another grant.
    const text = SPEC_TEXT.replace(
      '    grants:\n      - { dataset: artifacts, access: write, expires: 2027-01-31 }   # eval project\n',
      '    grants:\n      - { dataset: training-data, access: read }\n      - { dataset: artifacts, access: write, expires: 2027-01-31 }   # eval project\n',
    );
    const p = plan([['bob', 'artifacts', 'write', 'revoke', 'carol']], text);
    expect(changedLines(p.patch)).toEqual(['-      - { dataset: artifacts, access: write, expires: 2027-01-31 }   # eval project']);
    expect(p.warnings).toEqual([expect.stringMatching(/datagrant\.yaml has changed since the review started \(its sha256 was [0-9a-f]{64}\)/)]);
    expect(applyWith('patch', p.patch, text)).toBe(p.text);
  });

  test('a membership the patch cannot cut cleanly (an anchor other principals share) becomes a step by hand', () => {
    const text = SPEC_TEXT.replace('groups: [ml-researchers] }   # team lead', 'groups: &ml [ml-researchers] }   # team lead');
    const p = plan([['alice', 'training-data', 'read', 'revoke', 'carol']], text);
    expect(p.patch).toBe('');
    expect(p.items[0]!.edits).toEqual([]);
    expect(p.items[0]!.manual).toEqual([
      expect.stringMatching(/^edit the spec by hand \(principals\.alice\.groups carries the anchor &ml\): remove alice from group ml-researchers/),
    ]);
  });

  test('no revoke decision: no patch', () => {
    const p = plan([['alice', 'training-data', 'read', 'keep', 'carol']]);
    expect(p).toMatchObject({ items: [], patch: '', text: SPEC_TEXT, alsoRemoved: [], warnings: [] });
  });
});
