// Issue 12 item 7 against moto with IAM enforcement: one spec, two AWS accounts. Backend `home`
// works in the caller's own account; backend `other` assumes a role in account 222222222222 and
// manages that account. moto keeps one IAM per account id, and a session's account is its role
// ARN's, so listing each account's users proves where each object landed.
import { AssumeRoleCommand, GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { ListAccessKeysCommand, ListAttachedGroupPoliciesCommand, ListGroupsCommand, ListUsersCommand, type IAMClient } from '@aws-sdk/client-iam';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { AwsConnection } from '../../src/backends/aws/connection.js';
import { closeBackends, makeBackends } from '../../src/backends/factory.js';
import { parseSpec } from '../../src/spec/load.js';
import { startBlackHole } from '../support/black-hole.js';
import type { Workspace } from '../support/cli.js';
import { accountRoleArn, iamAs, MOTO_ACCOUNT, startMoto, type AwsKey, type Moto } from '../support/moto.js';
import { adminIam, apply, canRead, cannotTouch, expectNoChanges, initWorkspace, issuedKey, keyIsDead, s3For, useMotoAdmin } from './aws-support.js';

const OTHER = '222222222222';
const EXTERNAL_ID = 'dg-ext-7d1c';

let moto: Moto;
let ws: Workspace | undefined;
let home: IAMClient;
let other: IAMClient;

/** The admin's session in the other account, as a test's own view of it. */
async function otherAccountKey(): Promise<AwsKey & { sessionToken: string }> {
  const sts = new STSClient({ region: moto.region, endpoint: moto.endpoint, credentials: moto.admin, maxAttempts: 1 });
  try {
    const c = (await sts.send(new AssumeRoleCommand({ RoleArn: accountRoleArn(OTHER), RoleSessionName: 'test-view' }))).Credentials!;
    return { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! };
  } finally {
    sts.destroy();
  }
}

const usersIn = async (iam: IAMClient) => ((await iam.send(new ListUsersCommand({ PathPrefix: '/datagrant/' }))).Users ?? []).map((u) => u.UserName).sort();
const accountOf = async (key: AwsKey) => {
  const sts = new STSClient({ region: moto.region, endpoint: moto.endpoint, credentials: key, maxAttempts: 1 });
  try {
    return await sts.send(new GetCallerIdentityCommand({}));
  } finally {
    sts.destroy();
  }
};

const SPEC = (withOther = true) => `version: 1
backends:
  home: { type: aws }
${withOther ? `  other: { type: aws, assumeRole: { roleArn: "${accountRoleArn(OTHER)}", externalId: "\${OTHER_EXTERNAL_ID}" } }\n` : ''}datasets:
  training: { backend: home, bucket: ai-model-data, prefix: training/ }
${withOther ? '  reports: { backend: other, bucket: other-reports }\n' : ''}${withOther ? 'groups:\n  analysts: { grants: [{ dataset: reports, access: read }] }\n' : ''}principals:
  alice: { type: person, grants: [{ dataset: training, access: read }${withOther ? ', { dataset: reports, access: read }' : ''}] }
${withOther ? '  bob: { type: service, groups: [analysts] }\n' : ''}`;

beforeAll(async () => {
  moto = await startMoto({ auth: true, accounts: [OTHER], managedPolicies: false });
});
afterAll(async () => moto?.stop());
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  home = adminIam(moto);
  const key = await otherAccountKey();
  other = iamAs(moto, key);
  // A bucket of the other account's own, for its principals to read.
  const s3 = s3For(moto, key);
  await s3.send(new CreateBucketCommand({ Bucket: 'other-reports' }));
  await s3.send(new PutObjectCommand({ Bucket: 'other-reports', Key: 'q3.csv', Body: 'contents of other-reports/q3.csv\n' }));
  s3.destroy();
});
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
  home?.destroy();
  other?.destroy();
});

describe('one spec, two accounts', () => {
  test('each backend applies into its own account, keys work there, and a removed backend is torn down in its account', async () => {
    // GIVEN a spec whose second backend assumes a role in another account, its external id from the environment
    ws = await initWorkspace(SPEC());
    ws.env.OTHER_EXTERNAL_ID = EXTERNAL_ID;

    // WHEN it is applied
    await apply(ws);

    // THEN each account holds exactly its backend's users, and nothing more is to be done
    expect(await usersIn(home)).toEqual(['alice']);
    expect(await usersIn(other)).toEqual(['alice', 'bob']);
    await expectNoChanges(ws);

    // AND each issued key is a user of its own account and reads its own account's data
    const aliceHome = await issuedKey(ws, 'alice', 'home');
    const aliceOther = await issuedKey(ws, 'alice', 'other');
    const bob = await issuedKey(ws, 'bob', 'other');
    expect((await accountOf(aliceHome)).Arn).toBe(`arn:aws:iam::${MOTO_ACCOUNT}:user/datagrant/alice`);
    expect((await accountOf(aliceOther)).Arn).toBe(`arn:aws:iam::${OTHER}:user/datagrant/alice`);
    expect((await accountOf(bob)).Account).toBe(OTHER);
    await canRead(s3For(moto, aliceHome), 'ai-model-data', 'training/a.txt', 'training');
    // bob reads through the group's managed policy, attached by an ARN in the other account
    expect(((await other.send(new ListAttachedGroupPoliciesCommand({ GroupName: 'analysts' }))).AttachedPolicies ?? []).map((p) => p.PolicyArn)).toEqual([
      `arn:aws:iam::${OTHER}:policy/datagrant/dg-group-analysts`,
    ]);
    await canRead(s3For(moto, bob), 'other-reports', 'q3.csv');
    await cannotTouch(s3For(moto, bob), 'other-bucket', 'secret.txt');
    // … and a key is listed only in the account that issued it
    const keysIn = async (iam: IAMClient) =>
      ((await iam.send(new ListAccessKeysCommand({ UserName: 'alice' }))).AccessKeyMetadata ?? []).map((k) => k.AccessKeyId);
    expect(await keysIn(home)).toEqual([aliceHome.accessKeyId]);
    expect(await keysIn(other)).toEqual([aliceOther.accessKeyId]);

    // WHEN the other account's backend leaves the spec (the variable its external id came from still set)
    ws.writeSpec(SPEC(false));
    await apply(ws);

    // THEN its objects are gone from the other account, the home account keeps alice, and the state forgets the backend
    expect(await usersIn(other)).toEqual([]);
    expect((await other.send(new ListGroupsCommand({ PathPrefix: '/datagrant/' }))).Groups).toEqual([]);
    expect(await usersIn(home)).toEqual(['alice']);
    await keyIsDead(moto, bob);
    await canRead(s3For(moto, aliceHome), 'ai-model-data', 'training/a.txt', 'training');
    await expectNoChanges(ws);
  });

  test('a removed backend whose external id variable is gone is named with the variable, and nothing is changed', async () => {
    ws = await initWorkspace(SPEC());
    ws.env.OTHER_EXTERNAL_ID = EXTERNAL_ID;
    await apply(ws);

    delete ws.env.OTHER_EXTERNAL_ID;
    ws.writeSpec(SPEC(false));
    const r = await ws.run('apply', '--auto-approve');

    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/backend other is no longer in the spec.*Set OTHER_EXTERNAL_ID as when it was applied/s);
    expect(r.stderr + r.stdout).not.toContain(EXTERNAL_ID);
    expect(await usersIn(other)).toEqual(['alice', 'bob']);
  });
});

describe('reads and counts stay per account', () => {
  test("each backend reads its own account's users and credential report, and counts its own requests", async () => {
    ws = await initWorkspace(SPEC());
    ws.env.OTHER_EXTERNAL_ID = EXTERNAL_ID;
    await apply(ws);
    const aliceOther = await issuedKey(ws, 'alice', 'other');
    const { spec } = parseSpec(SPEC(), { file: 'datagrant.yaml', env: ws.env, now: new Date() });
    const backends = makeBackends(spec);
    try {
      const before = { home: backends.home!.stats().requests, other: backends.other!.stats().requests };
      const read = await backends.other!.read({ credentials: [], exact: false });
      const afterOther = { home: backends.home!.stats().requests, other: backends.other!.stats().requests };
      // Only the reading backend's counter moves; the read holds the other account's users and keys.
      expect(afterOther.home).toBe(before.home);
      expect(afterOther.other).toBeGreaterThan(before.other);
      const addresses = read.resources.map((r) => r.address).sort();
      expect(addresses).toContain('other:user/bob');
      // The keys come from the account's credential report: alice's key in the other account is found there, and only there.
      const keyIds = (resources: { kind: string; meta?: { accessKeyId?: unknown } }[]) =>
        resources.filter((r) => r.kind === 'key').map((r) => r.meta?.accessKeyId);
      expect(keyIds(read.resources)).toContain(aliceOther.accessKeyId);
      const homeRead = await backends.home!.read({ credentials: [], exact: false });
      expect(homeRead.resources.map((r) => r.address)).not.toContain('home:user/bob');
      expect(keyIds(homeRead.resources)).not.toContain(aliceOther.accessKeyId);
      expect(keyIds(homeRead.resources)).toHaveLength(1);
      expect(backends.other!.stats().requests).toBe(afterOther.other);
    } finally {
      await closeBackends(backends);
    }
  });
});

describe('the assumed session', () => {
  afterEach(() => vi.useRealTimers());

  test('is reused until five minutes before it expires, then renewed', async () => {
    const aws = new AwsConnection({ name: 'other', iamPath: '/datagrant/', assumeRole: { roleArn: accountRoleArn(OTHER), externalId: EXTERNAL_ID } });
    try {
      const session = () => (aws.iam.config.credentials as () => Promise<AwsKey>)();
      expect(await aws.caller()).toMatchObject({ account: OTHER, partition: 'aws' });
      const first = (await session()).accessKeyId;
      // moto's sessions last the hour asked for, from now.
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.now() + 54 * 60_000);
      expect((await session()).accessKeyId).toBe(first);
      vi.setSystemTime(Date.now() + 2 * 60_000);
      expect((await session()).accessKeyId).not.toBe(first);
    } finally {
      aws.close();
    }
  });

  test("asking for it has the backend's deadline, and a missed one names the backend, the role and the endpoint", async () => {
    const hole = await startBlackHole();
    const endpoint = `http://127.0.0.1:${hole.port}`;
    const aws = new AwsConnection({
      name: 'other',
      iamPath: '/datagrant/',
      endpoint,
      deadlines: { connectMs: 500, requestMs: 500 },
      assumeRole: { roleArn: accountRoleArn(OTHER) },
    });
    try {
      const started = Date.now();
      await expect(aws.caller()).rejects.toThrow(
        new RegExp(`^other: cannot assume role ${accountRoleArn(OTHER)}: no answer from ${endpoint} within 0\\.5 s \\(request timeout\\)`),
      );
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(hole.accepted).toBeGreaterThan(0);
    } finally {
      aws.close();
      await hole.close();
    }
  });

  test('a role that cannot be assumed fails with the backend, the role and the reason', async () => {
    process.env.AWS_SECRET_ACCESS_KEY = 'wrong-secret';
    const aws = new AwsConnection({ name: 'other', iamPath: '/datagrant/', assumeRole: { roleArn: accountRoleArn(OTHER) } });
    try {
      await expect(aws.caller()).rejects.toThrow(new RegExp(`^other: cannot assume role ${accountRoleArn(OTHER)}: `));
    } finally {
      aws.close();
    }
  });
});
