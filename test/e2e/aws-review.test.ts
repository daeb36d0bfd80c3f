// A quarterly access review on moto with IAM enforcement (issue 13), from start to evidence:
// the population is read from the account (datagrant's users and a hand-made one), reviewers
// decide, the revocations patch is applied with git and then with `datagrant apply`, the revoked
// person's own key proves the access is gone, `review status` ties the removal to its audit entry,
// the hand-made access is removed by hand and shows as such, and the exported evidence checks out
// the way an auditor would check it. Both HTML files open cleanly in headless chromium.
import { DeleteUserPolicyCommand, CreateUserCommand, PutUserPolicyCommand, type IAMClient } from '@aws-sdk/client-iam';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { hashJson } from '../../src/core/canonical.js';
import type { ReviewEvidence } from '../../src/model/review.js';
import { REVIEW_CSV_HEADER } from '../../src/render/review.js';
import type { Workspace } from '../support/cli.js';
import { startChromium, testOutputDir } from '../support/chromium.js';
import type { Moto } from '../support/moto.js';
import { apply, canRead, initWorkspace, issuedKey, keyRefused, motoPerFile, s3For } from './aws-support.js';

let moto: Moto;
let ws: Workspace | undefined;
let iam: IAMClient;

motoPerFile(
  { auth: true },
  {
    each: (m, i) => {
      moto = m;
      iam = i;
    },
    after: () => {
      ws?.cleanup();
      ws = undefined;
    },
  },
);

const SPEC = `# Access to the AI data; reviewed every quarter.
version: 1
backends:
  aws: { type: aws }
datasets:
  training:  { backend: aws, bucket: ai-model-data, prefix: training/ }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
groups:
  ml-researchers:
    grants:
      - { dataset: training, access: read }
principals:
  alice:   { type: person, email: alice@example.com, groups: [ml-researchers] }   # moved to sales
  bob:     { type: person, email: bob@example.com, groups: [ml-researchers] }
  trainer:
    type: service
    grants:
      - { dataset: artifacts, access: write }
`;

interface ShownRow {
  n: number;
  row: { id: string; who: string; dataset: string; level: string; status: string; managed: boolean };
}

async function cli(...args: string[]) {
  const r = await ws!.run(...args);
  expect(r.code, `datagrant ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

test('a review from start to evidence: one revocation applied, shown with its audit entry', async () => {
  ws = await initWorkspace(SPEC);
  await apply(ws);
  const aliceKey = await issuedKey(ws, 'alice');
  await canRead(s3For(moto, aliceKey), 'ai-model-data', 'training/a.txt');
  // Access nobody reviewed into the spec: an intern's hand-made inline policy on the training data.
  await iam.send(new CreateUserCommand({ UserName: 'intern' }));
  await iam.send(
    new PutUserPolicyCommand({
      UserName: 'intern',
      PolicyName: 'read-training',
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::ai-model-data/training/*' }],
      }),
    }),
  );

  // The quarter's review: a snapshot with its manifest.
  const started = await cli('review', 'start', '2026-Q4');
  expect(started.stdout).toMatch(/^Started review 2026-Q4: \d+ row\(s\) of effective access/);
  const rows = (JSON.parse((await cli('review', 'show', '2026-Q4', '--json')).stdout) as { rows: ShownRow[] }).rows;
  const no = (who: string, dataset: string, level = 'read') => {
    const r = rows.find((x) => x.row.who === who && x.row.dataset === dataset && x.row.level === level);
    expect(r, `${who} ${level} ${dataset} in the population`).toBeDefined();
    return String(r!.n);
  };
  expect(rows.find((r) => r.row.who === 'alice' && r.row.dataset === 'training')?.row).toMatchObject({ status: 'both', managed: true });
  expect(rows.find((r) => r.row.who === 'intern' && r.row.dataset === 'training')?.row).toMatchObject({ status: 'actual', managed: false });

  // Decisions: alice moved to sales; the intern's access was never reviewed; bob vouches for himself.
  await cli('review', 'decide', '2026-Q4', no('alice', 'training'), '--revoke', '--reason', 'moved to sales in October', '--as', 'carol@example.com');
  await cli(
    'review',
    'decide',
    '2026-Q4',
    no('intern', 'training'),
    '--revoke',
    '--reason',
    'not in the spec; nobody asked for it',
    '--as',
    'carol@example.com',
  );
  const self = await cli('review', 'decide', '2026-Q4', no('bob', 'training'), '--keep', '--reason', 'I train the models', '--as', 'bob@example.com');
  expect(self.stderr).toMatch(/SELF-REVIEW/);
  await cli(
    'review',
    'decide',
    '2026-Q4',
    '--all-matching',
    '--principal',
    'trainer',
    '--keep',
    '--reason',
    'the nightly training job',
    '--as',
    'carol@example.com',
  );

  // The revocations become a spec change, reviewed and applied like any other.
  const revs = await cli('review', 'revocations', '2026-Q4', '--out', 'revocations.patch');
  expect(revs.stdout).toMatch(/#\d+ read on training \(aws\) for alice — revoked by carol@example.com\n {4}patch: {3}remove alice from group ml-researchers/);
  expect(revs.stdout).toMatch(/BY HAND: on backend aws, remove inline policy read-training of user intern/);
  execFileSync('git', ['init', '-q', ws.dir]);
  execFileSync('git', ['apply', 'revocations.patch'], { cwd: ws.dir });
  expect(readFileSync(join(ws.dir, 'datagrant.yaml'), 'utf8')).toBe(
    SPEC.replace('groups: [ml-researchers] }   # moved to sales', 'groups: [] }   # moved to sales'),
  );
  const plan = await ws.run('plan');
  expect(plan.stdout).toMatch(/- aws:membership\/ml-researchers\/alice/);
  await apply(ws);
  // Proved with alice's own key: the training data refuses her now.
  await expect.poll(() => keyRefused(moto, aliceKey), { timeout: 20_000 }).toBe(true);

  // Status: alice's revocation is in effect, through the audit entry of the membership's removal.
  const status = await ws.run('review', 'status', '2026-Q4', '--json', '--detailed-exitcode');
  expect(status.code, status.stderr).toBe(2);
  const revocations = (JSON.parse(status.stdout) as { revocations: ReviewEvidence['rows'] }).revocations;
  const alice = revocations.find((r) => r.row.who === 'alice')!;
  const intern = revocations.find((r) => r.row.who === 'intern')!;
  expect(alice.revocation).toMatchObject({
    state: 'removed',
    entry: { event: 'change.delete', address: 'aws:membership/ml-researchers/alice', outcome: 'ok', match: 'change' },
  });
  // The removal was seen by this very read of the backends, after the change.
  expect(Date.parse(alice.revocation!.observedAt)).toBeGreaterThanOrEqual(Date.parse(alice.revocation!.entry!.at));
  expect(intern.revocation).toMatchObject({ state: 'present', remaining: [expect.stringContaining('read-training')] });
  const log = JSON.parse((await cli('audit', 'log', '--json')).stdout) as {
    seq: number;
    hash: string;
    at: string;
    actor: string;
    event: string;
    address: string | null;
  }[];
  const removal = log.find((e) => e.seq === alice.revocation!.entry!.seq)!;
  expect(alice.revocation!.entry).toMatchObject({ hash: removal.hash, at: removal.at, actor: removal.actor });
  expect(removal.seq).toBeGreaterThan(log.find((e) => e.event === 'review.start')!.seq);

  // The intern's access is removed by hand: gone, and no datagrant change claims it.
  await iam.send(new DeleteUserPolicyCommand({ UserName: 'intern', PolicyName: 'read-training' }));
  const after = await ws.run('review', 'status', '2026-Q4', '--detailed-exitcode');
  expect(after.code, after.stdout + after.stderr).toBe(0);
  expect(after.stdout).toMatch(/removed {2}read on training \(aws\) for intern .*\n {4}removed outside datagrant \(by hand\): no audit entry/);
  expect(after.stdout).toMatch(
    /removed {2}read on training \(aws\) for alice\n {4}audit #\d+ \S+ by test@cli: change\.delete aws:membership\/ml-researchers\/alice \(hash [0-9a-f]{64}\)/,
  );

  await cli('review', 'close', '2026-Q4');
  const exported = await cli('review', 'export', '2026-Q4', '--out', 'evidence');
  expect(exported.stdout).toMatch(/Revocations: 2 in effect, 0 still held/);

  // What the auditor checks: the population is the one the chain recorded at the start, the chain
  // verifies, and each removal names an entry of that chain.
  const evidence = JSON.parse(readFileSync(join(ws.dir, 'evidence', '2026-Q4.json'), 'utf8')) as ReviewEvidence;
  expect(hashJson(evidence.rows.map((r) => r.row))).toBe(evidence.manifest.populationSha256);
  const start = log.find((e) => e.event === 'review.start')!;
  expect((start as unknown as { detail: string }).detail).toContain(
    `population sha256 ${evidence.manifest.populationSha256}, manifest sha256 ${hashJson(evidence.manifest)}`,
  );
  expect(evidence.manifest.auditHead!.seq).toBe(start.seq - 1);
  expect(evidence.manifest.query.command).toBe('datagrant --spec datagrant.yaml access --format json');
  expect(evidence.auditVerified.ok).toBe(true);
  // The stored review matches what the chain recorded of it, decision by decision.
  expect(evidence.integrity).toMatchObject({ ok: true, startSeq: start.seq, problems: [] });
  expect(evidence.rows.flatMap((r) => r.decisions).every((d) => d.actor === 'test@cli')).toBe(true);
  expect(evidence.review.closedAt).not.toBeNull();
  expect(evidence.summary).toMatchObject({ revoke: 2, removed: 2, present: 0, selfReviewOnly: 1 });
  expect((await cli('audit', 'verify')).stdout).toMatch(/Audit chain intact/);
  const csv = readFileSync(join(ws.dir, 'evidence', '2026-Q4.csv'), 'utf8').split('\r\n');
  const col = (name: (typeof REVIEW_CSV_HEADER)[number]) => REVIEW_CSV_HEADER.indexOf(name);
  const aliceLine = csv.find((l) => l.split(',')[col('who')] === 'alice' && l.split(',')[col('dataset')] === 'training')!.split(',');
  expect(aliceLine[col('removal_audit_seq')]).toBe(String(removal.seq));
  expect(aliceLine[col('removal_audit_hash')]).toBe(removal.hash);

  // The access report and the evidence open in a browser without errors or fetches.
  await cli('access', '--format', 'html', '--out', 'access.html');
  const out = testOutputDir('aws-review');
  const browser = await startChromium();
  try {
    for (const [file, table, shot] of [
      [join(ws.dir, 'access.html'), 'table.access', 'access.png'],
      [join(ws.dir, 'evidence', '2026-Q4.html'), 'table.review', 'review.png'],
    ] as const) {
      const { page, problems } = await browser.open(file);
      expect(await page.locator(`${table} tbody tr[data-row]`).count()).toBeGreaterThan(0);
      await page.screenshot({ path: join(out, shot), fullPage: true });
      expect(problems).toEqual([]);
    }
    const { page } = await browser.open(join(ws.dir, 'evidence', '2026-Q4.html'));
    expect(await page.locator('table.review tbody tr[data-row]').count()).toBe(evidence.rows.length);
    expect(await page.locator('table.review').innerText()).toContain('change.delete aws:membership/ml-researchers/alice');
  } finally {
    await browser.close();
  }
});
