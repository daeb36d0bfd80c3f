// Issue 2 end to end: spec → plan → apply on moto with IAM enforcement → the issued key reads the
// AI data and nothing else. Access is proven with the issued credentials, not by our own calls.
import {
  AttachUserPolicyCommand,
  CreateGroupCommand,
  CreatePolicyCommand,
  CreateUserCommand,
  GetAccountAuthorizationDetailsCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { startMoto, type Moto } from '../support/moto.js';
import { startProxy, type CountingProxy } from '../support/http-proxy.js';
import type { Workspace } from '../support/cli.js';
import {
  adminIam,
  apply,
  canRead,
  cannotTouch,
  cannotWrite,
  expectNoChanges,
  initWorkspace,
  issuedKey,
  keyIsDead,
  s3For,
  useMotoAdmin,
} from './aws-support.js';

const SEED = `version: 1
backends:
  aws: { type: aws, region: us-east-1 }
datasets:
  ai-model-data: { backend: aws, bucket: ai-model-data }
principals:
  data-scientist:
    type: person
    email: ds@example.com
    grants:
      - { dataset: ai-model-data, access: read }
`;

const TEAM = `version: 1
backends:
  aws: { type: aws }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
groups:
  ml-researchers:
    grants:
      - { dataset: training-data, access: read }
principals:
  alice: { type: person, groups: [ml-researchers] }
  trainer:
    type: service
    grants:
      - { dataset: artifacts, access: write }
`;

let moto: Moto;
let ws: Workspace;
let iam: IAMClient;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
});
afterAll(async () => {
  await moto?.stop();
});
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  iam = adminIam(moto);
});
afterEach(() => {
  ws?.cleanup();
  iam?.destroy();
});

describe('the seed scenario', () => {
  test('the issued key reads ai-model-data and nothing else; a second plan is empty', async () => {
    ws = await initWorkspace(SEED);
    const plan = await ws.run('plan', '--detailed-exitcode');
    expect(plan.code).toBe(2);
    expect(plan.stdout).toContain('+ aws:user/data-scientist');
    // the user, its inline policy (one grant fits one) and its key
    expect(plan.stdout).toContain('+ aws:inline-policy/user/data-scientist/dg-direct-grants');
    expect(plan.stdout).toMatch(/Plan: 3 to add, 0 to change, 0 to destroy\./);

    const applied = await apply(ws);
    // The key is reported issued only once AWS accepts it (IAM is eventually consistent).
    expect(applied).toMatch(/Each was confirmed usable before this report \(the longest wait: \d+\.\d s\)/);
    const s3 = s3For(moto, await issuedKey(ws, 'data-scientist'));
    await canRead(s3, 'ai-model-data', 'training/a.txt');
    await canRead(s3, 'ai-model-data', 'eval/c.txt');
    await cannotWrite(s3, 'ai-model-data', 'training/a.txt');
    await cannotTouch(s3, 'other-bucket', 'secret.txt');
    await cannotTouch(s3, 'ai-model-artifacts', 'model.bin');
    await expectNoChanges(ws);
  });

  test('group grants work through membership; write grants write; removing a principal kills its key', async () => {
    ws = await initWorkspace(TEAM);
    await apply(ws);
    const alice = await issuedKey(ws, 'alice');
    const trainer = await issuedKey(ws, 'trainer');
    const a = s3For(moto, alice);
    await canRead(a, 'ai-model-data', 'training/a.txt', 'training');
    await cannotWrite(a, 'ai-model-data', 'training/a.txt');
    await cannotTouch(a, 'ai-model-artifacts', 'model.bin');
    const t = s3For(moto, trainer);
    await canRead(t, 'ai-model-artifacts', 'model.bin');
    await t.send(new (await import('@aws-sdk/client-s3')).PutObjectCommand({ Bucket: 'ai-model-artifacts', Key: 'new.bin', Body: 'w' }));
    await cannotTouch(t, 'ai-model-data', 'training/a.txt');
    await expectNoChanges(ws);

    // WHEN alice leaves the spec
    ws.writeSpec(TEAM.replace('  alice: { type: person, groups: [ml-researchers] }\n', ''));
    const out = await apply(ws);
    expect(out).toContain('- aws:user/alice');
    // THEN her key no longer works, trainer's still does, and her secret is gone from the store
    await keyIsDead(moto, alice);
    await canRead(t, 'ai-model-artifacts', 'model.bin');
    expect((await ws.run('credentials', 'list')).stdout).not.toContain('alice');
    await expectNoChanges(ws);
  });

  test('apply without a terminal and without --auto-approve refuses and changes nothing', async () => {
    ws = await initWorkspace(SEED);
    const r = await ws.run('apply');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/apply needs confirmation: run it in a terminal, pass --auto-approve, or apply a saved plan file/);
    const d = await iam.send(new GetAccountAuthorizationDetailsCommand({ Filter: ['User'] }));
    expect((d.UserDetailList ?? []).map((u) => u.UserName)).toEqual(['moto-admin']);
  });

  test('a saved plan applies exactly, and is refused once the account moved', async () => {
    ws = await initWorkspace(SEED);
    expect((await ws.run('plan', '--out', 'seed.plan')).code).toBe(0);
    expect((await ws.run('apply', 'seed.plan')).code).toBe(0);
    await expectNoChanges(ws);

    ws.writeSpec(SEED.replace('access: read', 'access: write'));
    expect((await ws.run('plan', '--out', 'write.plan')).code).toBe(0);
    // someone edits the account meanwhile
    await iam.send(new CreateGroupCommand({ GroupName: 'sneaky', Path: '/datagrant/' }));
    const r = await ws.run('apply', 'write.plan');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/changed since the plan write\.plan was made/);
  });
});

describe('ownership boundary', () => {
  test('users, groups and policies outside the IAM path are byte-identical after apply and destroy', async () => {
    // GIVEN objects made by hand outside /datagrant/, one named like a datagrant policy
    await iam.send(new CreateUserCommand({ UserName: 'ops-admin', Path: '/', Tags: [{ Key: 'team', Value: 'ops' }] }));
    await iam.send(new CreateGroupCommand({ GroupName: 'ml-researchers-legacy', Path: '/' }));
    const pol = await iam.send(
      new CreatePolicyCommand({
        PolicyName: 'dg-group-handmade',
        Path: '/',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] }),
      }),
    );
    await iam.send(new AttachUserPolicyCommand({ UserName: 'ops-admin', PolicyArn: pol.Policy!.Arn! }));
    const snapshot = async () => {
      const d = await iam.send(new GetAccountAuthorizationDetailsCommand({}));
      const outside = (p?: string) => p !== undefined && !p.startsWith('/datagrant/');
      return JSON.stringify({
        users: d.UserDetailList?.filter((u) => outside(u.Path)),
        groups: d.GroupDetailList?.filter((g) => outside(g.Path)),
        policies: d.Policies?.filter((p) => outside(p.Path)).map((p) => ({ ...p, AttachmentCount: p.AttachmentCount })),
      });
    };
    const before = await snapshot();

    ws = await initWorkspace(TEAM);
    const plan = await ws.run('plan');
    expect(plan.stdout).not.toMatch(/ops-admin|legacy|handmade|moto-admin/);
    await apply(ws);
    expect(await snapshot()).toBe(before);
    const destroyed = await ws.run('destroy', '--auto-approve');
    expect(destroyed.code, destroyed.stderr).toBe(0);
    expect(await snapshot()).toBe(before);
    // and nothing of datagrant's is left
    const d = await iam.send(new GetAccountAuthorizationDetailsCommand({}));
    expect([...(d.UserDetailList ?? []), ...(d.GroupDetailList ?? []), ...(d.Policies ?? [])].filter((x) => x.Path?.startsWith('/datagrant/'))).toEqual([]);
  });

  test('a user of the same name outside the path is not taken over', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'data-scientist', Path: '/humans/' }));
    ws = await initWorkspace(SEED);
    const r = await ws.run('apply', '--auto-approve');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/data-scientist/);
    expect(r.stderr).not.toMatch(/\n\s+at .*\.(ts|js):\d+/);
  });
});

describe('bad input', () => {
  let proxy: CountingProxy;
  afterEach(async () => proxy?.close());

  test('every problem is reported with file:line:column, exit 1, no stack trace, and AWS is never called', async () => {
    proxy = await startProxy(moto.endpoint);
    process.env.AWS_ENDPOINT_URL = proxy.endpoint;
    ws = await initWorkspace(`version: 1
backends:
  aws: { type: aws }
datasets:
  data: { backend: aws, bucket: Not_A_Bucket }
groups:
  team:
    grants:
      - { dataset: missing, access: read }
principals:
  "bad name!":
    type: person
  bob:
    type: robot
    groups: [nobody]
    grants:
      - { dataset: data, access: rw, expires: 2027-13-45 }
    colour: blue
`);
    for (const cmd of [['plan'], ['apply', '--auto-approve'], ['validate']]) {
      const r = await ws.run(...cmd);
      expect(r.code).toBe(1);
      const lines = r.stderr.split('\n').filter((l) => /^\s+datagrant\.yaml:\d+:\d+: /.test(l));
      expect(lines.length, r.stderr).toBeGreaterThanOrEqual(7);
      expect(r.stderr).toMatch(/datagrant\.yaml:5:\d+: datasets\.data\.bucket: .*"Not_A_Bucket"/);
      expect(r.stderr).toMatch(/datagrant\.yaml:9:\d+: .*dataset "missing" is not defined/);
      expect(r.stderr).toMatch(/"rw" is not a level; allowed: read, write, admin/);
      expect(r.stderr).toMatch(/colour/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(proxy.count()).toBe(0);
  });
});
