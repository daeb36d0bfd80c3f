// Effective access against moto with IAM enforcement (issue 13): after datagrant applies a spec,
// access made by hand — an IAM user with an inline policy, roles with attached policies, a bucket
// policy naming principals — shows as unmanaged, each with the path that gives it; a policy on a
// different prefix of the same bucket shows nowhere; datagrant's own principals show as managed
// with exactly the levels the spec grants. Where moto can prove it, the reported access is real:
// the unmanaged user's and role's credentials read the object, and the other-prefix user's do not.
//
// moto enforces identity policies only, never bucket policies, so the bucket-policy rows are
// proved by the evaluator's unit tests (test/backends/aws-effective.test.ts), not here.
import {
  AttachRolePolicyCommand,
  CreateAccessKeyCommand,
  CreatePolicyCommand,
  CreateRoleCommand,
  CreateUserCommand,
  PutUserPolicyCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { GetObjectCommand, PutBucketPolicyCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { closeBackends, makeBackends } from '../../src/backends/factory.js';
import { intendedAccess } from '../../src/compile/access.js';
import { atLeast, LEVELS, type AccessDataset, type ActualAccess } from '../../src/model/access.js';
import { parseSpec } from '../../src/spec/load.js';
import { isS3Dataset } from '../../src/spec/schema.js';
import { openStore, statePaths } from '../../src/store/open.js';
import type { Workspace } from '../support/cli.js';
import { ADMIN_USER, expectAccessDenied, MOTO_ACCOUNT, startMoto, type AwsKey, type Moto } from '../support/moto.js';
import { adminIam, apply, initWorkspace, s3For, useMotoAdmin } from './aws-support.js';

let moto: Moto;
let ws: Workspace | undefined;
let iam: IAMClient;

beforeAll(async () => {
  // AWS managed policies are loaded: attaching one is a way in like any other.
  moto = await startMoto({ auth: true });
});
afterAll(async () => moto?.stop());
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  iam = adminIam(moto);
});
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
  iam?.destroy();
});

const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/ }
  evals: { backend: aws, bucket: ai-model-data, prefix: eval/ }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
groups:
  ml: { grants: [{ dataset: training, access: read }] }
principals:
  alice: { type: service, groups: [ml], grants: [{ dataset: artifacts, access: write, expires: ${inDays(60)} }] }
  bob: { type: service, grants: [{ dataset: evals, access: admin }] }
  carol: { type: person, credentials: temporary, grants: [{ dataset: evals, access: read }] }
`;

const arn = (what: string) => `arn:aws:iam::${MOTO_ACCOUNT}:${what}`;
const doc = (...Statement: object[]) => JSON.stringify({ Version: '2012-10-17', Statement });
const get = (Resource: string) => ({ Effect: 'Allow', Action: 's3:GetObject', Resource });

/** Access made by hand, outside datagrant, as the account's administrator would. Returns the keys made. */
async function handMade(): Promise<{ intern: AwsKey; elsewhere: AwsKey; contractor: AwsKey }> {
  const key = async (user: string) => {
    const k = (await iam.send(new CreateAccessKeyCommand({ UserName: user }))).AccessKey!;
    return { accessKeyId: k.AccessKeyId!, secretAccessKey: k.SecretAccessKey! };
  };
  // an unmanaged user with an inline policy on the dataset's bucket and prefix
  await iam.send(new CreateUserCommand({ UserName: 'intern' }));
  await iam.send(
    new PutUserPolicyCommand({ UserName: 'intern', PolicyName: 'read-training', PolicyDocument: doc(get('arn:aws:s3:::ai-model-data/training/*')) }),
  );
  // an unmanaged user with a policy on a different prefix of the same bucket
  await iam.send(new CreateUserCommand({ UserName: 'elsewhere' }));
  await iam.send(new PutUserPolicyCommand({ UserName: 'elsewhere', PolicyName: 'read-other', PolicyDocument: doc(get('arn:aws:s3:::ai-model-data/other/*')) }));
  // an unmanaged role with an attached customer managed policy, assumable by the administrator
  const policy = await iam.send(
    new CreatePolicyCommand({
      PolicyName: 'etl-training',
      PolicyDocument: doc({ Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: 'arn:aws:s3:::ai-model-data/training/*' }),
    }),
  );
  await iam.send(
    new CreateRoleCommand({
      RoleName: 'etl',
      AssumeRolePolicyDocument: doc({ Effect: 'Allow', Principal: { AWS: arn(`user/${ADMIN_USER}`) }, Action: 'sts:AssumeRole' }),
    }),
  );
  await iam.send(new AttachRolePolicyCommand({ RoleName: 'etl', PolicyArn: policy.Policy!.Arn! }));
  // and one with an AWS managed policy
  await iam.send(
    new CreateRoleCommand({
      RoleName: 'auditor',
      AssumeRolePolicyDocument: doc({ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }),
    }),
  );
  await iam.send(new AttachRolePolicyCommand({ RoleName: 'auditor', PolicyArn: 'arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess' }));
  // a bucket policy granting a user of the account (with no identity policy) and another account
  await iam.send(new CreateUserCommand({ UserName: 'contractor' }));
  const s3 = s3For(moto, moto.admin);
  await s3.send(
    new PutBucketPolicyCommand({
      Bucket: 'ai-model-data',
      Policy: doc(
        {
          Sid: 'Contractor',
          Effect: 'Allow',
          Principal: { AWS: arn('user/contractor') },
          Action: 's3:GetObject',
          Resource: 'arn:aws:s3:::ai-model-data/training/*',
        },
        {
          Sid: 'Partner',
          Effect: 'Allow',
          Principal: { AWS: 'arn:aws:iam::111122223333:root' },
          Action: 's3:GetObject',
          Resource: 'arn:aws:s3:::ai-model-data/*',
        },
      ),
    }),
  );
  await s3.send(new PutObjectCommand({ Bucket: 'ai-model-data', Key: 'other/x.txt', Body: 'contents of ai-model-data/other/x.txt\n' }));
  s3.destroy();
  return { intern: await key('intern'), elsewhere: await key('elsewhere'), contractor: await key('contractor') };
}

/** readAccess as a user of datagrant gets it: the spec's backends made by the factory, with the state's installation. */
async function readAccess(w: Workspace) {
  const { spec } = parseSpec(SPEC, { file: 'datagrant.yaml', env: w.env, now: new Date() });
  const store = await openStore(statePaths(join(w.dir, '.datagrant')), w.env);
  const installation = await store.installation();
  await store.close();
  const backends = makeBackends(spec, { installation });
  try {
    const datasets: AccessDataset[] = Object.entries(spec.datasets).flatMap(([name, d]) =>
      isS3Dataset(d) ? [{ name, bucket: d.bucket, ...(d.prefix ? { prefix: d.prefix } : {}) }] : [],
    );
    return { spec, reading: await backends.aws!.readAccess!({ datasets }) };
  } finally {
    await closeBackends(backends);
  }
}

const key = (r: ActualAccess) => `${r.dataset} ${r.level} ${r.holder.principal ?? r.holder.name}`;
const rowsOf = (rows: ActualAccess[], name: string) => rows.filter((r) => r.holder.name === name);

async function canGet(k: AwsKey & { sessionToken?: string }, object: string): Promise<void> {
  const s3 = s3For(moto, k);
  try {
    const got = await s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: object }));
    expect(await got.Body?.transformToString()).toContain(`contents of ai-model-data/${object}`);
  } finally {
    s3.destroy();
  }
}

describe('effective access read from the account', () => {
  test('unmanaged users, roles and bucket-policy grants appear with their paths; another prefix does not; datagrant’s principals exactly as the spec', async () => {
    // GIVEN the spec applied, then access made by hand beside it
    ws = await initWorkspace(SPEC);
    await apply(ws);
    const keys = await handMade();

    // WHEN the access is read
    const { spec, reading } = await readAccess(ws);
    const { rows } = reading;

    // THEN each unmanaged path appears, unmanaged, named by what gives it
    expect(rowsOf(rows, 'intern').map(key)).toEqual(['training read intern']);
    expect(rowsOf(rows, 'intern')[0]!).toMatchObject({
      holder: { id: arn('user/intern'), kind: 'aws-user', managed: false },
      paths: [{ via: 'inline policy read-training of user intern' }],
    });
    expect(rowsOf(rows, 'role/etl').map(key)).toEqual(['training read role/etl', 'training write role/etl']);
    expect(rowsOf(rows, 'role/etl')[0]!).toMatchObject({
      holder: { id: arn('role/etl'), kind: 'aws-role', managed: false },
      paths: [{ via: `managed policy etl-training attached to role etl (assumable by ${arn(`user/${ADMIN_USER}`)})` }],
    });
    expect(rowsOf(rows, 'role/auditor').map(key).sort()).toEqual(['artifacts read role/auditor', 'evals read role/auditor', 'training read role/auditor']);
    expect(rowsOf(rows, 'role/auditor')[0]!.paths).toEqual([
      { via: 'managed policy AmazonS3ReadOnlyAccess attached to role auditor (assumable by ec2.amazonaws.com)' },
    ]);
    expect(rowsOf(rows, 'contractor')).toEqual([
      {
        backend: 'aws',
        dataset: 'training',
        level: 'read',
        holder: { id: arn('user/contractor'), kind: 'aws-user', name: 'contractor', managed: false },
        paths: [{ via: 'bucket policy of ai-model-data, statement Contractor' }],
      },
    ]);
    expect(rowsOf(rows, 'account 111122223333').map(key).sort()).toEqual(['evals read account 111122223333', 'training read account 111122223333']);
    expect(rowsOf(rows, 'account 111122223333')[0]!.holder).toMatchObject({ id: 'arn:aws:iam::111122223333:root', kind: 'aws-account', managed: false });
    // the administrator that made all this holds everything, unmanaged
    expect(
      rowsOf(rows, ADMIN_USER)
        .filter((r) => r.level === 'admin')
        .map((r) => r.dataset)
        .sort(),
    ).toEqual(['artifacts', 'evals', 'training']);
    // a grant on another prefix of the same bucket reaches none of the datasets
    expect(rows.filter((r) => r.holder.name === 'elsewhere')).toEqual([]);
    expect(reading.limits.join('\n')).toMatch(/service control policies/);
    expect(reading.limits.join('\n')).toMatch(/other accounts named in bucket policies/);

    // and datagrant's principals appear managed, with exactly the levels the spec grants
    const intended = intendedAccess(spec, new Date());
    const expected = new Set<string>();
    for (const g of intended.filter((i) => i.principal !== 'carol'))
      for (const level of LEVELS.filter((l) => atLeast(g.level, l))) expected.add(`${g.dataset} ${level} ${g.principal}`);
    const managedUsers = rows.filter((r) => r.holder.managed && r.holder.kind === 'aws-user');
    expect(managedUsers.map(key).sort()).toEqual([...expected].sort());
    for (const r of managedUsers) expect(r.holder.principal).toBe(r.holder.name);
    const artifacts = managedUsers.find((r) => key(r) === 'artifacts write alice')!;
    expect(artifacts.paths).toEqual([
      { via: 'inline policy dg-direct-grants of user alice', expires: intended.find((i) => i.dataset === 'artifacts')!.expires },
    ]);
    expect(managedUsers.find((r) => key(r) === 'training read alice')!.paths).toEqual([{ via: 'group ml (managed policy dg-group-ml)' }]);
    // carol's sessions run as an access-set role: managed, one principal's or several's, so none named
    const roles = rows.filter((r) => r.holder.managed && r.holder.kind === 'aws-role');
    expect(roles.map((r) => `${r.dataset} ${r.level}`)).toEqual(['evals read']);
    expect(roles[0]!.holder.name).toMatch(/^role\/dg-s-[0-9a-f]{12}$/);
    expect(roles[0]!.holder.principal).toBeUndefined();
    expect(reading.requests).toBeGreaterThan(0);

    // AND the unmanaged access reported is real (moto enforces identity policies)
    await canGet(keys.intern, 'training/a.txt');
    await expectAccessDenied(s3For(moto, keys.intern).send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'eval/c.txt' })));
    const sts = new STSClient({ region: moto.region, endpoint: moto.endpoint, credentials: moto.admin });
    const session = (await sts.send(new AssumeRoleCommand({ RoleArn: arn('role/etl'), RoleSessionName: 'proof' }))).Credentials!;
    sts.destroy();
    await canGet({ accessKeyId: session.AccessKeyId!, secretAccessKey: session.SecretAccessKey!, sessionToken: session.SessionToken! }, 'training/a.txt');
    // and what is not reported is not there: the other-prefix user reads its prefix, not the dataset
    await canGet(keys.elsewhere, 'other/x.txt');
    await expectAccessDenied(s3For(moto, keys.elsewhere).send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' })));
  });

  test('when each access key was last used: moto records use of a key by any request it signs', async () => {
    // GIVEN the spec applied and two hand-made keys, one used once, one never
    ws = await initWorkspace(SPEC);
    await apply(ws);
    const keys = await handMade();
    await canGet(keys.intern, 'training/a.txt');

    // WHEN the access is read
    const { reading } = await readAccess(ws);

    // THEN every key has an entry: the used one a time, the unused one null; datagrant's name their principal
    const of = (user: string) => reading.usage.filter((u) => u.holder === arn(`user/${user}`));
    expect(of('intern')).toEqual([
      { backend: 'aws', holder: arn('user/intern'), credential: 'access_key_1', createdAt: expect.any(String), lastUsedAt: expect.any(String) },
    ]);
    expect(of('contractor')).toEqual([
      { backend: 'aws', holder: arn('user/contractor'), credential: 'access_key_1', createdAt: expect.any(String), lastUsedAt: null },
    ]);
    const alice = reading.usage.filter((u) => u.principal === 'alice');
    expect(alice).toEqual([expect.objectContaining({ holder: arn('user/datagrant/alice'), credential: 'access_key_1' })]);
    expect(reading.usage.filter((u) => u.principal === 'carol')).toEqual([]);
  });
});
