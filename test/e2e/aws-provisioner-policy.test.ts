// Issue 16: datagrant runs on exactly the policy `datagrant iam-policy` prints, and nothing more.
// moto with IAM enforcement, and with each IAM call judged by the ARN AWS authorises it on (path
// included; test/support/moto_iam_resources.py), so the path scoping is tested, not only the list
// of actions. The provisioner is an IAM user outside datagrant's path, given the printed policy as
// a customer managed policy by moto's admin; datagrant then runs with that user's key alone.
import {
  AttachUserPolicyCommand,
  CreateAccessKeyCommand,
  CreatePolicyCommand,
  CreateUserCommand,
  DeleteUserCommand,
  GetUserPolicyCommand,
  ListAttachedUserPoliciesCommand,
  ListGroupsForUserCommand,
  ListUsersCommand,
  PutUserPolicyCommand,
  RemoveUserFromGroupCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { expectAccessDenied, iamAs, MOTO_ACCOUNT, startMoto, type AwsKey, type Moto } from '../support/moto.js';
import type { Workspace } from '../support/cli.js';
import { adminIam, apply, canRead, expectNoChanges, initWorkspace, issuedKey, keyIsDead, keysOf, s3For, useMotoAdmin } from './aws-support.js';

const PROVISIONER = 'datagrant-provisioner';
const PROVISIONER_PATH = '/ops/';
const ADMIN_POLICY = 'arn:aws:iam::aws:policy/AdministratorAccess';

const SPEC = `version: 1
settings: { rotationGrace: 1h }
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/ }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
groups:
  researchers: { grants: [{ dataset: training, access: read }] }
principals:
  alice: { type: person, groups: [researchers] }
  trainer: { type: service, grants: [{ dataset: artifacts, access: read }, { dataset: training, access: read }] }
  carol: { type: person, credentials: temporary, groups: [researchers] }
`;

let moto: Moto;
let admin: IAMClient;
let ws: Workspace | undefined;

beforeAll(async () => {
  moto = await startMoto({ auth: true, iamResources: true });
});
afterAll(async () => moto?.stop());
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  admin = adminIam(moto);
});
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
  admin?.destroy();
});

/** The policy as `datagrant iam-policy` prints it for the workspace's spec. */
async function printedPolicy(w: Workspace): Promise<{ Statement: { Sid: string; Action: string[] }[] }> {
  const r = await w.run('iam-policy', '--account', MOTO_ACCOUNT);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { Statement: { Sid: string; Action: string[] }[] };
}

/** moto's admin makes the provisioner outside datagrant's path with `policy` attached, and returns its key. */
async function provisionerWith(policy: unknown): Promise<AwsKey> {
  await admin.send(new CreateUserCommand({ UserName: PROVISIONER, Path: PROVISIONER_PATH }));
  const created = await admin.send(
    new CreatePolicyCommand({ PolicyName: 'datagrant-provisioner', Path: PROVISIONER_PATH, PolicyDocument: JSON.stringify(policy) }),
  );
  await admin.send(new AttachUserPolicyCommand({ UserName: PROVISIONER, PolicyArn: created.Policy!.Arn! }));
  const key = (await admin.send(new CreateAccessKeyCommand({ UserName: PROVISIONER }))).AccessKey!;
  return { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! };
}

/** From now on the CLI (its AWS SDK reads the standard chain) runs as `key`. */
function runAs(key: AwsKey): void {
  process.env.AWS_ACCESS_KEY_ID = key.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = key.secretAccessKey;
}

describe('datagrant on exactly the printed policy', () => {
  test('apply, rotation, drift reverted and teardown all succeed; calls outside the policy are refused', async () => {
    ws = await initWorkspace(SPEC);
    const key = await provisionerWith(await printedPolicy(ws));
    runAs(key);

    // apply: users, a group and its managed policy, inline grants, keys, the access-set role
    await apply(ws);
    await expectNoChanges(ws);
    const trainer = await issuedKey(ws, 'trainer');
    await canRead(s3For(moto, trainer), 'ai-model-artifacts', 'model.bin');

    // a session for the temporary principal: AssumeRole on its access-set role
    const session = await ws.run('credentials', 'export', 'carol', '--format', 'json');
    expect(session.code, session.stderr).toBe(0);
    const s = JSON.parse(session.stdout) as { AccessKeyId: string; SecretAccessKey: string; SessionToken: string };
    await canRead(
      s3For(moto, { accessKeyId: s.AccessKeyId, secretAccessKey: s.SecretAccessKey, sessionToken: s.SessionToken }),
      'ai-model-data',
      'training/a.txt',
    );

    // rotation now: a new key, the old one kept through its grace
    const rotated = await ws.run('credentials', 'rotate', 'trainer');
    expect(rotated.code, rotated.stdout + rotated.stderr).toBe(0);
    const trainer2 = await issuedKey(ws, 'trainer');
    expect(trainer2.accessKeyId).not.toBe(trainer.accessKeyId);
    expect(await keysOf(admin, 'trainer')).toEqual([trainer.accessKeyId, trainer2.accessKeyId].sort());
    // docs/runbook-key-leak.md: a second rotation cuts the first key's grace short, so it is dead now
    const again = await ws.run('credentials', 'rotate', 'trainer');
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const trainer3 = await issuedKey(ws, 'trainer');
    expect(await keysOf(admin, 'trainer')).toEqual([trainer2.accessKeyId, trainer3.accessKeyId].sort());
    await keyIsDead(moto, trainer);
    const audit = (await ws.run('audit', 'log')).stdout;
    expect(audit).toContain(`id ${trainer3.accessKeyId}; previous one retires at`);
    expect(audit).toMatch(new RegExp(`credential\\.erase.*id ${trainer.accessKeyId}`));

    // drift made out of band by the account's admin: AdministratorAccess attached, a rogue inline
    // policy, a membership removed
    await admin.send(new AttachUserPolicyCommand({ UserName: 'alice', PolicyArn: ADMIN_POLICY }));
    await admin.send(
      new PutUserPolicyCommand({
        UserName: 'trainer',
        PolicyName: 'rogue',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] }),
      }),
    );
    await admin.send(new RemoveUserFromGroupCommand({ UserName: 'alice', GroupName: 'researchers' }));
    // reverted by datagrant, as the provisioner
    await apply(ws);
    await expectNoChanges(ws);
    expect((await admin.send(new ListAttachedUserPoliciesCommand({ UserName: 'alice' }))).AttachedPolicies ?? []).toEqual([]);
    await expect(admin.send(new GetUserPolicyCommand({ UserName: 'trainer', PolicyName: 'rogue' }))).rejects.toThrow(/not found|NoSuchEntity/i);
    expect(((await admin.send(new ListGroupsForUserCommand({ UserName: 'alice' }))).Groups ?? []).map((g) => g.GroupName)).toEqual(['researchers']);

    // teardown
    const destroyed = await ws.run('destroy', '--auto-approve');
    expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
    const left = ((await admin.send(new ListUsersCommand({ PathPrefix: '/datagrant/' }))).Users ?? []).map((u) => u.UserName);
    expect(left).toEqual([]);
    await keyIsDead(moto, trainer3);

    // Outside the policy, with datagrant's own identity: refused.
    const own = iamAs(moto, key);
    try {
      // a user outside datagrant's path
      await expectAccessDenied(own.send(new CreateUserCommand({ UserName: 'intruder', Path: '/' })));
      // another identity of the account, and datagrant's own
      await expectAccessDenied(own.send(new DeleteUserCommand({ UserName: 'moto-admin' })));
      await expectAccessDenied(own.send(new AttachUserPolicyCommand({ UserName: PROVISIONER, PolicyArn: ADMIN_POLICY })));
      await expectAccessDenied(
        own.send(
          new PutUserPolicyCommand({
            UserName: PROVISIONER,
            PolicyName: 'escalate',
            PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }),
          }),
        ),
      );
      // and a read the policy does not name
      await expectAccessDenied(own.send(new ListUsersCommand({})));
    } finally {
      own.destroy();
    }
  });
});

describe('moto really enforces it', () => {
  test('a policy without iam:CreateAccessKey makes apply fail, naming the action', async () => {
    ws = await initWorkspace(SPEC);
    const policy = await printedPolicy(ws);
    for (const st of policy.Statement) st.Action = st.Action.filter((a) => a !== 'iam:CreateAccessKey');
    runAs(await provisionerWith(policy));

    const r = await ws.run('apply', '--auto-approve');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/AccessDenied/);
    expect(r.stderr).toContain('iam:CreateAccessKey');
    expect(r.stderr).toContain('datagrant iam-policy');
  });

  test('a policy scoped to another path makes apply fail on the first user', async () => {
    ws = await initWorkspace(SPEC);
    const text = JSON.stringify(await printedPolicy(ws)).replaceAll('/datagrant/', '/elsewhere/');
    runAs(await provisionerWith(JSON.parse(text)));

    const r = await ws.run('apply', '--auto-approve');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/AccessDenied.*iam:Create(User|Group|Policy)/);
  });
});
