// Requests for access end to end from the CLI, on moto with IAM enforcement: alice asks for read on
// a dataset and cannot approve it herself; bob, its approver, approves; plan shows the grant and
// where it comes from; apply issues alice a key that reads the dataset (bounded by an
// aws:CurrentTime condition at the request's end); after the end (an injected clock) the next apply
// removes it and her key is refused. A denied request grants nothing. Everything is in the audit
// chain, which verifies.
import { GetUserPolicyCommand, type IAMClient } from '@aws-sdk/client-iam';
import { expect, test } from 'vitest';
import type { Workspace } from '../support/cli.js';
import type { Moto } from '../support/moto.js';
import { apply, cannotTouch, cannotWrite, canRead, expectNoChanges, initWorkspace, issuedKey, keyIsDead, motoPerFile, s3For } from './aws-support.js';

let moto: Moto;
let ws: Workspace;
let iam: IAMClient;

motoPerFile(
  { auth: true, managedPolicies: false },
  {
    each: (m, i) => {
      moto = m;
      iam = i;
    },
    after: () => ws?.cleanup(),
  },
);

const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/, approvers: { principals: [bob] } }
principals:
  alice: { type: person, email: alice@example.com }
  bob: { type: person, email: bob@example.com }
  trainer: { type: service, grants: [{ dataset: training, access: read }] }
`;

async function ok(...args: string[]): Promise<string> {
  const r = await ws.run(...args);
  expect(r.code, `${args.join(' ')}:\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

async function refused(...args: string[]): Promise<string> {
  const r = await ws.run(...args);
  expect(r.code, `${args.join(' ')} should fail:\n${r.stdout}`).toBe(1);
  return r.stderr;
}

test('alice asks, cannot approve herself, bob approves, apply grants read until the end; after it the next apply removes it', async () => {
  ws = await initWorkspace(SPEC);
  await apply(ws);
  const start = Date.now();
  ws.now = () => new Date(start);

  const created = await ok(
    'requests',
    'create',
    '--as',
    'alice@example.com',
    '--dataset',
    'training',
    '--access',
    'read',
    '--for',
    '2h',
    '--reason',
    'fine-tune the ranker',
  );
  expect(created).toMatch(/^Request #1: alice asks for read on training for 2h \(audit #\d+\)\.\n {2}approvers: bob\n/);

  // Her own approval is refused and changes nothing; the refusal is audited.
  expect(await refused('requests', 'approve', '1', '--as', 'alice', '--reason', 'I need it')).toBe(
    'Error: alice cannot approve their own request #1; another approver must: bob\n',
  );
  expect(await ok('plan')).toContain('No changes.');

  const approvedAt = new Date(start + 60_000);
  ws.now = () => approvedAt;
  const approved = await ok('requests', 'approve', '#1', '--as', 'bob', '--reason', 'for the Q4 model');
  const ends = new Date(Math.floor(approvedAt.getTime() / 1000) * 1000 + 2 * 3600_000);
  expect(approved).toBe(
    `Approved request #1 as bob: alice gets read on training until ${ends.toISOString()} (audit #${/audit #(\d+)/.exec(approved)![1]}).\nRun \`datagrant apply\` to make it so now (a running \`datagrant serve\` applies it at once).\n`,
  );

  // The plan shows the grant and where it comes from, so nobody plans it away.
  const plan = await ok('plan');
  expect(plan).toContain('+ aws:user/alice');
  expect(plan).toContain(`Note: request #1 (read on training for alice until ${ends.toISOString()}, approved by bob): a grant that ends by itself`);
  expect(await ok('requests', 'list', '--as', 'alice')).toMatch(
    new RegExp(`#1 +approved +alice: read on training for 2h, approved by bob .*; ends ${ends.toISOString()}`),
  );

  await apply(ws);
  await expectNoChanges(ws);
  const key = await issuedKey(ws, 'alice');
  const s3 = s3For(moto, key);
  await canRead(s3, 'ai-model-data', 'training/a.txt', 'training');
  await cannotWrite(s3, 'ai-model-data', 'training/a.txt');
  await cannotTouch(s3, 'other-bucket', 'secret.txt');
  s3.destroy();
  // AWS itself stops honouring it at the end (moto ignores conditions: the document says so).
  const policy = await iam.send(new GetUserPolicyCommand({ UserName: 'alice', PolicyName: 'dg-direct-grants' }));
  const doc = JSON.parse(decodeURIComponent(policy.PolicyDocument!)) as { Statement: { Condition?: unknown }[] };
  for (const s of doc.Statement) expect(s.Condition).toMatchObject({ DateLessThan: { 'aws:CurrentTime': [ends.toISOString().replace('.000Z', 'Z')] } });

  // A minute after the end: the next apply records the expiry and removes her access and key.
  ws.now = () => new Date(ends.getTime() + 60_000);
  const out = await apply(ws);
  expect(out).toContain('- aws:user/alice');
  await keyIsDead(moto, key);
  const trainer = s3For(moto, await issuedKey(ws, 'trainer'));
  await canRead(trainer, 'ai-model-data', 'training/a.txt', 'training');
  trainer.destroy();
  await expectNoChanges(ws);
  expect(await ok('requests', 'list')).toMatch(/#1 +expired +alice: read on training for 2h, expired .*: its access ended at /);

  // The chain holds the whole story, in order, and verifies.
  const log = JSON.parse(await ok('audit', 'log', '--json')) as { event: string; address: string | null; actor: string; detail: string | null }[];
  const story = log.filter((e) => e.address === 'request/1' || e.address === 'aws:user/alice').map((e) => `${e.event} ${e.address}`);
  expect(story).toEqual([
    'request.create request/1',
    'request.refused request/1',
    'request.approve request/1',
    'change.create aws:user/alice',
    'request.expire request/1',
    'change.delete aws:user/alice',
  ]);
  expect(log.find((e) => e.event === 'request.approve')).toMatchObject({
    actor: 'test@cli',
    detail: `approved by bob: alice gets read on training until ${ends.toISOString()}; reason: "for the Q4 model"`,
  });
  expect(await ok('audit', 'verify')).toMatch(/^Audit chain intact: \d+ entries verified\.\n$/);
});

test('a denied request grants nothing; a request nobody may approve, or past the limit, is refused', async () => {
  ws = await initWorkspace(SPEC);
  await apply(ws);
  await ok('requests', 'create', '--as', 'alice', '--dataset', 'training', '--for', '1d', '--reason', 'curious');
  expect(await ok('requests', 'list', '--pending', '--as', 'bob')).toMatch(/#1 +pending +alice: read on training for 1d, asked .*; approvers: bob/);
  expect(await ok('requests', 'deny', '1', '--as', 'bob', '--reason', 'use the public sample')).toMatch(
    /^Denied request #1 as bob: alice gets no read on training/,
  );
  expect(await ok('plan')).toContain('No changes.');
  expect(await refused('requests', 'approve', '1', '--as', 'bob', '--reason', 'changed my mind')).toMatch(
    /^Error: request #1 is denied by bob at .*; only a pending request can be approved\n$/,
  );

  expect(await refused('requests', 'create', '--as', 'bob', '--dataset', 'training', '--for', '1d', '--reason', 'x')).toMatch(
    /no one but bob may approve read on dataset training, and no one approves their own request/,
  );
  expect(await refused('requests', 'create', '--as', 'alice', '--dataset', 'training', '--for', '31d', '--reason', 'x')).toMatch(
    /duration 31d is longer than a request may ask for: at most 30d/,
  );
  expect(await refused('requests', 'create', '--as', 'alice', '--dataset', 'training', '--access', 'write', '--for', '1d', '--reason', 'x')).toMatch(
    /write on dataset training cannot be requested: its approvers may approve up to read/,
  );
  expect(await refused('requests', 'create', '--as', 'mallory', '--dataset', 'training', '--for', '1d', '--reason', 'x')).toMatch(/"mallory" is no principal/);
  expect(await refused('requests', 'create', '--as', 'alice', '--dataset', 'nope', '--for', '1d', '--reason', 'x')).toMatch(
    /dataset "nope" is not defined; defined datasets: training/,
  );
  expect(await refused('requests', 'approve', 'x1', '--as', 'bob', '--reason', 'x')).toMatch(/must be a request number/);
});
