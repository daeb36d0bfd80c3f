// Effective access against moto with IAM enforcement (issue 13): after datagrant applies a spec,
// access made by hand — an IAM user with an inline policy, roles with attached policies, a bucket
// policy naming principals — shows as unmanaged, each with the path that gives it; a policy on a
// different prefix of the same bucket shows nowhere; datagrant's own principals show as managed
// with exactly the levels the spec grants. Where moto can prove it, the reported access is real:
// the unmanaged user's and role's credentials read the object, and the other-prefix user's do not.
//
// Beyond GetObject: a user reading through s3:GetObjectVersion (denied s3:GetObject), one that may
// rewrite a bucket policy, and one that may write its own IAM policy show at the levels those give,
// and each does what it is reported to be able to. Paths say whether they are datagrant's own, and
// a bucket policy that cannot be read is a failure of the reading.
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
  UpdateAssumeRolePolicyCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { GetObjectCommand, PutBucketPolicyCommand, PutBucketVersioningCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { closeBackends, makeBackends } from '../../src/backends/factory.js';
import { intendedAccess } from '../../src/compile/access.js';
import { atLeast, LEVELS, type AccessDataset, type ActualAccess } from '../../src/model/access.js';
import { parseSpec } from '../../src/spec/load.js';
import { isS3Dataset } from '../../src/spec/schema.js';
import { openStore, statePaths } from '../../src/store/open.js';
import type { Workspace } from '../support/cli.js';
import { ADMIN_USER, expectAccessDenied, iamAs, MOTO_ACCOUNT, type AwsKey, type Moto } from '../support/moto.js';
import { apply, initWorkspace, motoPerFile, s3For } from './aws-support.js';

let moto: Moto;
let ws: Workspace | undefined;
let iam: IAMClient;

// AWS managed policies are loaded: attaching one is a way in like any other.
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
      { via: 'inline policy dg-direct-grants of user alice', expires: intended.find((i) => i.dataset === 'artifacts')!.expires, managed: true },
    ]);
    expect(managedUsers.find((r) => key(r) === 'training read alice')!.paths).toEqual([{ via: 'group ml (managed policy dg-group-ml)', managed: true }]);
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

  test('a level through any of its actions, bucket control and IAM escalation are reported, and each is real', async () => {
    // GIVEN the spec applied, then users made by hand that reach the data other than by GetObject
    ws = await initWorkspace(SPEC);
    await apply(ws);
    const s3 = s3For(moto, moto.admin);
    await s3.send(new PutBucketVersioningCommand({ Bucket: 'ai-model-data', VersioningConfiguration: { Status: 'Enabled' } }));
    const put = await s3.send(new PutObjectCommand({ Bucket: 'ai-model-data', Key: 'training/v.txt', Body: 'contents of ai-model-data/training/v.txt\n' }));
    s3.destroy();
    const made = async (name: string, ...Statement: object[]): Promise<AwsKey> => {
      await iam.send(new CreateUserCommand({ UserName: name }));
      await iam.send(new PutUserPolicyCommand({ UserName: name, PolicyName: 'hand-made', PolicyDocument: doc(...Statement) }));
      const k = (await iam.send(new CreateAccessKeyCommand({ UserName: name }))).AccessKey!;
      return { accessKeyId: k.AccessKeyId!, secretAccessKey: k.SecretAccessKey! };
    };
    // everything on training's objects but s3:GetObject: it still reads, by version
    const versions = await made(
      'versions',
      { Effect: 'Allow', Action: 's3:*', Resource: 'arn:aws:s3:::ai-model-data/training/*' },
      { Effect: 'Deny', Action: 's3:GetObject', Resource: 'arn:aws:s3:::ai-model-data/training/*' },
    );
    // may rewrite the artifacts bucket's policy, and nothing else
    const policymaker = await made('policymaker', { Effect: 'Allow', Action: 's3:PutBucketPolicy', Resource: 'arn:aws:s3:::ai-model-artifacts' });
    // may write inline policies (on itself among others: moto checks IAM actions against `*` only), and nothing else
    const climber = await made('climber', { Effect: 'Allow', Action: 'iam:PutUserPolicy', Resource: '*' });

    // WHEN the access is read
    const { rows } = (await readAccess(ws)).reading;

    // THEN read through s3:GetObjectVersion, admin by the bucket policy, admin everywhere by IAM
    expect(rowsOf(rows, 'versions').map(key)).toEqual(['training read versions', 'training write versions', 'training admin versions']);
    expect(rowsOf(rows, 'versions')[0]!.paths).toEqual([{ via: 'inline policy hand-made of user versions' }]);
    expect(rowsOf(rows, 'policymaker')).toEqual([
      expect.objectContaining({
        dataset: 'artifacts',
        level: 'admin',
        paths: [{ via: 'inline policy hand-made of user policymaker: can rewrite the bucket policy of ai-model-artifacts' }],
      }),
    ]);
    expect(rowsOf(rows, 'climber').map(key)).toEqual(['artifacts admin climber', 'evals admin climber', 'training admin climber']);
    expect(rowsOf(rows, 'climber')[0]!.paths).toEqual([
      { via: 'inline policy hand-made of user climber: can change IAM policies (iam:PutUserPolicy) and so grant itself any access' },
    ]);

    // AND each is real (moto enforces identity policies, Denies included)
    const fetchAs = (k: AwsKey, extra: { VersionId?: string } = {}) =>
      s3For(moto, k).send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/v.txt', ...extra }));
    await expectAccessDenied(fetchAs(versions));
    expect(await (await fetchAs(versions, { VersionId: put.VersionId! })).Body?.transformToString()).toContain('contents of ai-model-data/training/v.txt');
    const policy = doc({ Effect: 'Allow', Principal: { AWS: arn('user/policymaker') }, Action: 's3:GetObject', Resource: 'arn:aws:s3:::ai-model-artifacts/*' });
    await s3For(moto, policymaker).send(new PutBucketPolicyCommand({ Bucket: 'ai-model-artifacts', Policy: policy }));
    await expectAccessDenied(fetchAs(climber));
    const self = iamAs(moto, climber);
    await self.send(new PutUserPolicyCommand({ UserName: 'climber', PolicyName: 'mine-now', PolicyDocument: doc(get('arn:aws:s3:::ai-model-data/*')) }));
    self.destroy();
    expect(await (await fetchAs(climber)).Body?.transformToString()).toContain('contents of ai-model-data/training/v.txt');
  });

  test("datagrant's paths are its own; a policy added by hand to its user, or a trust edited on its role, is not", async () => {
    // GIVEN the spec applied
    ws = await initWorkspace(SPEC);
    await apply(ws);
    const before = (await readAccess(ws)).reading.rows;
    const paths = (rows: ActualAccess[], who: string, dataset: string, level: string) =>
      rows.find((r) => (r.holder.principal ?? r.holder.name) === who && r.dataset === dataset && r.level === level)!.paths;
    // THEN every path of datagrant's principals is datagrant's own, and no other path is
    for (const r of before) for (const p of r.paths) expect([r.holder.name, p.via, p.managed === true]).toEqual([r.holder.name, p.via, r.holder.managed]);
    expect(paths(before, 'alice', 'training', 'read')).toEqual([{ via: 'group ml (managed policy dg-group-ml)', managed: true }]);

    // WHEN a policy is added by hand to datagrant's user, and the trust of its role is edited
    await iam.send(new PutUserPolicyCommand({ UserName: 'alice', PolicyName: 'extra', PolicyDocument: doc(get('arn:aws:s3:::ai-model-data/eval/*')) }));
    const role = before.find((r) => r.holder.managed && r.holder.kind === 'aws-role')!.holder.name.replace(/^role\//, '');
    await iam.send(
      new UpdateAssumeRolePolicyCommand({
        RoleName: role,
        PolicyDocument: doc({ Effect: 'Allow', Principal: { AWS: arn('user/intern') }, Action: 'sts:AssumeRole' }),
      }),
    );
    const after = (await readAccess(ws)).reading.rows;

    // THEN those paths are not datagrant's, though the principal and the role still are
    expect(paths(after, 'alice', 'evals', 'read')).toEqual([{ via: 'inline policy extra of user alice' }]);
    expect(paths(after, 'alice', 'training', 'read')).toEqual([{ via: 'group ml (managed policy dg-group-ml)', managed: true }]);
    const roleRow = after.find((r) => r.holder.name === `role/${role}`)!;
    expect(roleRow.holder.managed).toBe(true);
    expect(roleRow.paths.map((p) => p.managed)).toEqual([undefined]);
  });

  test('a bucket policy that cannot be read is a failure of the reading, not a limit', async () => {
    // GIVEN the identity datagrant reads with may not read one bucket's policy
    ws = await initWorkspace(SPEC);
    await apply(ws);
    await iam.send(
      new PutUserPolicyCommand({
        UserName: ADMIN_USER,
        PolicyName: 'no-policy-reading',
        PolicyDocument: doc({ Effect: 'Deny', Action: 's3:GetBucketPolicy', Resource: 'arn:aws:s3:::ai-model-artifacts' }),
      }),
    );

    // WHEN the access is read
    const { reading } = await readAccess(ws);

    // THEN it says so among its failures, and the rest is read
    expect(reading.failures).toEqual([expect.stringMatching(/^bucket ai-model-artifacts: its bucket policy could not be read \(AccessDenied\)/)]);
    expect(reading.limits.join('\n')).not.toMatch(/ai-model-artifacts/);
    expect(reading.rows.some((r) => r.holder.principal === 'alice' && r.dataset === 'artifacts')).toBe(true);
  });
});
