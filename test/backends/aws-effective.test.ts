// Effective access from IAM and bucket-policy documents (src/backends/aws/effective.ts): which
// holders reach which dataset at which level, through what, and what it errs towards when it
// cannot decide (reporting access).
import { describe, expect, test } from 'vitest';
import { credentialUsage, effectiveAccess, UNSEEN, type EffectiveInput } from '../../src/backends/aws/effective.js';
import type { AccountDetails, RoleDetail, UserDetail } from '../../src/backends/aws/state.js';
import { grantStatements } from '../../src/compile/aws/compile.js';
import type { ActualAccess } from '../../src/model/access.js';
import type { AnyStatement } from '../../src/model/iam-eval.js';

const ACCOUNT = '123456789012';
const NOW = new Date('2026-12-01T00:00:00Z');
const DATASETS = [
  { name: 'training', bucket: 'data', prefix: 'train/' },
  { name: 'eval', bucket: 'data', prefix: 'eval/' },
  { name: 'artifacts', bucket: 'models' },
];

const doc = (...Statement: AnyStatement[]) => JSON.stringify({ Version: '2012-10-17', Statement });
const allow = (Action: string | string[], Resource: string | string[], extra: Partial<AnyStatement> = {}): AnyStatement => ({
  Effect: 'Allow',
  Action,
  Resource,
  ...extra,
});
const deny = (Action: string | string[], Resource: string | string[], extra: Partial<AnyStatement> = {}): AnyStatement => ({
  Effect: 'Deny',
  Action,
  Resource,
  ...extra,
});
const user = (name: string, policy?: string, extra: Partial<UserDetail> = {}): UserDetail => ({
  UserName: name,
  Path: '/',
  Arn: `arn:aws:iam::${ACCOUNT}:user/${name}`,
  GroupList: [],
  AttachedManagedPolicies: [],
  UserPolicyList: policy ? [{ PolicyName: 'own', PolicyDocument: encodeURIComponent(policy) }] : [],
  ...extra,
});
const TRUST = doc({ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' });
const role = (name: string, extra: Partial<RoleDetail> = {}): RoleDetail => ({
  RoleName: name,
  Path: '/',
  Arn: `arn:aws:iam::${ACCOUNT}:role/${name}`,
  AssumeRolePolicyDocument: encodeURIComponent(TRUST),
  AttachedManagedPolicies: [],
  RolePolicyList: [],
  ...extra,
});
const managedPolicy = (arn: string, document: string) => ({
  Arn: arn,
  Path: '/',
  DefaultVersionId: 'v2',
  PolicyVersionList: [
    { VersionId: 'v1', IsDefaultVersion: false, Document: doc() },
    { VersionId: 'v2', IsDefaultVersion: true, Document: encodeURIComponent(document) },
  ],
});

function read(details: Partial<AccountDetails>, opts: Partial<EffectiveInput> = {}) {
  return effectiveAccess({
    backend: 'aws',
    account: ACCOUNT,
    partition: 'aws',
    details: { users: [], groups: [], roles: [], policies: [], ...details },
    owned: { users: new Set(), roles: new Set() },
    datasets: DATASETS,
    bucketPolicies: new Map(),
    now: NOW,
    ...opts,
  });
}

/** `dataset level holder-name` per row, and the rows themselves by that key. */
const keys = (rows: ActualAccess[]) => rows.map((r) => `${r.dataset} ${r.level} ${r.holder.name}`);
const row = (rows: ActualAccess[], key: string) => {
  const r = rows.find((x) => `${x.dataset} ${x.level} ${x.holder.name}` === key);
  if (!r) throw new Error(`no row ${key} in ${JSON.stringify(keys(rows))}`);
  return r;
};

describe('actions and resources', () => {
  test('wildcard actions and resources: each level from its own action, datasets of the bucket only', () => {
    const { rows } = read({ users: [user('bob', doc(allow('s3:Get*', 'arn:aws:s3:::data/*')))] });
    expect(keys(rows)).toEqual(['eval read bob', 'training read bob']);
    expect(row(rows, 'training read bob').paths).toEqual([{ via: 'inline policy own of user bob' }]);
  });

  test('a level is computed from its own action: put without get is write without read', () => {
    const { rows } = read({ users: [user('w', doc(allow(['s3:PutObject', 's3:DeleteObject'], 'arn:aws:s3:::models/*')))] });
    expect(keys(rows)).toEqual(['artifacts write w', 'artifacts admin w']);
  });

  test('a policy reaching part of the dataset is partial access; a different prefix of the same bucket is none', () => {
    const { rows } = read({
      users: [
        user('sub', doc(allow('s3:GetObject', 'arn:aws:s3:::data/train/sub/*'))),
        user('other', doc(allow('s3:GetObject', 'arn:aws:s3:::data/other/*'))),
        user('longer', doc(allow('s3:GetObject', 'arn:aws:s3:::data/trainer/*'))),
        user('bucket', doc(allow('s3:GetObject', 'arn:aws:s3:::data'))),
        user('any', doc(allow('s3:GetObject', 'arn:aws:s3:::data/t?ain/*'))),
        // wildcards early in the key: the prefix index cannot tell, the patterns themselves do
        user('wild', doc(allow('s3:GetObject', 'arn:aws:s3:::data/?ther/*'))),
        user('deep', doc(allow('s3:GetObject', 'arn:aws:s3:::data/*/sub/*'))),
      ],
    });
    expect(keys(rows)).toEqual(['eval read deep', 'training read any', 'training read deep', 'training read sub']);
    expect(row(rows, 'training read deep').paths[0]!.partial).toBe(true);
    expect(row(rows, 'training read sub').paths[0]!.partial).toBe(true);
    expect(row(rows, 'training read any').paths[0]!.partial).toBeUndefined();
  });

  test('NotAction and NotResource', () => {
    const { rows } = read({
      users: [
        user('na', doc({ Effect: 'Allow', NotAction: 's3:Delete*', Resource: 'arn:aws:s3:::models/*' })),
        user('nr', doc({ Effect: 'Allow', Action: 's3:GetObject', NotResource: 'arn:aws:s3:::data/train/*' })),
        user('nrpart', doc({ Effect: 'Allow', Action: 's3:GetObject', NotResource: 'arn:aws:s3:::data/train/secret/*' })),
      ],
    });
    // not s3:Delete*, but s3:PutObjectAcl: admin all the same, by letting anyone read
    expect(keys(rows).filter((k) => k.endsWith(' na'))).toEqual(['artifacts read na', 'artifacts write na', 'artifacts admin na']);
    expect(row(rows, 'artifacts admin na').paths).toEqual([{ via: 'inline policy own of user na: can rewrite the ACLs of its objects' }]);
    expect(keys(rows).filter((k) => k.endsWith(' nr'))).toEqual(['artifacts read nr', 'eval read nr']);
    expect(row(rows, 'training read nrpart').paths[0]!.partial).toBe(true);
  });

  test('policy variables widen an Allow (named as a condition)', () => {
    const { rows } = read({ users: [user('home', doc(allow('s3:GetObject', 'arn:aws:s3:::data/${aws:username}/*')))] });
    expect(keys(rows)).toEqual(['eval read home', 'training read home']);
    expect(row(rows, 'eval read home').paths[0]!.conditions).toEqual(['a policy variable in resource arn:aws:s3:::data/${aws:username}/*']);
  });
});

describe('Deny', () => {
  const everything = allow('s3:*', '*');
  test('removes access only where it certainly covers the whole dataset', () => {
    const { rows } = read({
      users: [
        user('whole', doc(everything, deny('s3:*', 'arn:aws:s3:::data/train/*'))),
        user('part', doc(everything, deny('s3:GetObject*', 'arn:aws:s3:::data/train/secret/*'))),
        user('maybe', doc(everything, deny('s3:*', 'arn:aws:s3:::data/*', { Condition: { Bool: { 'aws:SecureTransport': 'false' } } }))),
        user('notres', doc(everything, { Effect: 'Deny', Action: 's3:*', NotResource: 'arn:aws:s3:::models/*' })),
      ],
    });
    // no data of train/ for it, but the bucket is still its to control: admin of the dataset
    expect(keys(rows).filter((k) => k.startsWith('training') && k.endsWith(' whole'))).toEqual(['training admin whole']);
    expect(row(rows, 'training admin whole').paths[0]!.via).toMatch(/^inline policy own of user whole: can rewrite the bucket policy of data, /);
    expect(keys(rows).filter((k) => k.endsWith(' whole'))).toContain('eval read whole');
    expect(row(rows, 'training read part').paths[0]!.partial).toBe(true);
    expect(row(rows, 'training write part').paths[0]!.partial).toBeUndefined();
    expect(row(rows, 'training read maybe').paths[0]!.conditions).toEqual(['denied when Bool on aws:SecureTransport (inline policy own of user maybe)']);
    expect(keys(rows).filter((k) => k.endsWith(' notres'))).toEqual(['artifacts read notres', 'artifacts write notres', 'artifacts admin notres']);
  });

  test('a Deny whose resource has a policy variable is read narrowly: it removes nothing', () => {
    const { rows } = read({ users: [user('v', doc(everything, deny('s3:*', 'arn:aws:s3:::data/${aws:username}*')))] });
    expect(keys(rows)).toContain('training read v');
  });
});

describe('a level through any of its actions', () => {
  test('read through s3:GetObjectVersion alone; a Deny of s3:GetObject beside s3:* still leaves read through it', () => {
    const { rows } = read({
      users: [
        user('versions', doc(allow('s3:GetObjectVersion', 'arn:aws:s3:::data/train/*'))),
        user('nearly', doc(allow('s3:*', 'arn:aws:s3:::models/*'), deny('s3:GetObject', 'arn:aws:s3:::models/*'))),
        user('denied', doc(allow('s3:*', 'arn:aws:s3:::models/*'), deny('s3:GetObject*', 'arn:aws:s3:::models/*'))),
      ],
    });
    expect(keys(rows).filter((k) => k.endsWith(' versions'))).toEqual(['training read versions']);
    expect(row(rows, 'artifacts read nearly').paths).toEqual([{ via: 'inline policy own of user nearly' }]);
    expect(keys(rows).filter((k) => k.endsWith(' denied'))).toEqual(['artifacts write denied', 'artifacts admin denied']);
  });

  test('s3:DeleteObjectVersion alone is admin', () => {
    const { rows } = read({ users: [user('purger', doc(allow('s3:DeleteObjectVersion', 'arn:aws:s3:::models/*')))] });
    expect(keys(rows)).toEqual(['artifacts admin purger']);
    expect(row(rows, 'artifacts admin purger').paths).toEqual([{ via: 'inline policy own of user purger' }]);
  });

  test.each<[string, string, string]>([
    ['s3:PutBucketPolicy', 'can rewrite the bucket policy of data', ''],
    ['s3:DeleteBucketPolicy', 'can delete the bucket policy of data', ''],
    ['s3:PutBucketAcl', 'can rewrite the ACL of bucket data', ''],
    ['s3:PutLifecycleConfiguration', 'can set lifecycle rules that delete the objects of data', ''],
  ])('%s on the bucket is admin of every dataset in it, the whole of each, saying why', (action, why) => {
    const { rows } = read({ users: [user('ctl', doc(allow(action, 'arn:aws:s3:::data')))] });
    expect(keys(rows)).toEqual(['eval admin ctl', 'training admin ctl']);
    expect(row(rows, 'training admin ctl').paths).toEqual([{ via: `inline policy own of user ctl: ${why}` }]);
  });

  test('a bucket action on the objects, or on another bucket, is nothing; s3:PutBucketVersioning is no level', () => {
    const { rows } = read({
      users: [
        user('objects', doc(allow('s3:PutBucketPolicy', 'arn:aws:s3:::data/*'))),
        user('other', doc(allow('s3:PutBucketPolicy', 'arn:aws:s3:::data-other'))),
        user('wild', doc(allow('s3:PutBucketPolicy', 'arn:aws:s3:::dat?'))),
        user('versioning', doc(allow('s3:PutBucketVersioning', '*'))),
        user('notres', doc({ Effect: 'Allow', Action: 's3:PutBucketPolicy', NotResource: 'arn:aws:s3:::models' })),
      ],
    });
    expect(keys(rows)).toEqual(['eval admin notres', 'eval admin wild', 'training admin notres', 'training admin wild']);
  });

  test('a Deny of the bucket action removes it; the object actions of the same path stay plain', () => {
    const { rows } = read({
      users: [
        user(
          'kept',
          doc(
            allow('s3:*', 'arn:aws:s3:::data*'),
            deny('s3:PutBucket*', 'arn:aws:s3:::data'),
            deny(['s3:DeleteBucketPolicy', 's3:PutLifecycleConfiguration', 's3:PutObjectAcl'], '*'),
          ),
        ),
      ],
    });
    expect(row(rows, 'training admin kept').paths).toEqual([{ via: 'inline policy own of user kept' }]);
  });

  test('the object-ACL action, on part of a dataset, is partial admin', () => {
    const { rows } = read({ users: [user('acl', doc(allow('s3:PutObjectAcl', 'arn:aws:s3:::data/train/public/*')))] });
    expect(row(rows, 'training admin acl').paths).toEqual([{ via: 'inline policy own of user acl: can rewrite the ACLs of its objects', partial: true }]);
  });
});

describe('IAM: holders that can give themselves any access', () => {
  const iamArn = (what: string) => `arn:aws:iam::${ACCOUNT}:${what}`;
  const ALL_ADMIN = ['artifacts admin', 'eval admin', 'training admin'];
  const adminOf = (rows: ActualAccess[], name: string) => keys(rows.filter((r) => r.holder.name === name)).map((k) => k.replace(` ${name}`, ''));

  test.each<[string, AnyStatement]>([
    ['iam:PutUserPolicy on itself', allow('iam:PutUserPolicy', iamArn('user/esc'))],
    ['iam:AttachUserPolicy on every user', allow('iam:AttachUserPolicy', iamArn('user/*'))],
    ['iam:* on *', allow('iam:*', '*')],
    ['iam:Put* on its own name, by ${aws:username}', allow('iam:Put*', 'arn:aws:iam::*:user/${aws:username}')],
    ['iam:CreateAccessKey on another user', allow('iam:CreateAccessKey', iamArn('user/admin'))],
    ['iam:UpdateAssumeRolePolicy on a role', allow('iam:UpdateAssumeRolePolicy', iamArn('role/deploy'))],
    ['iam:AddUserToGroup on a group it is not in', allow('iam:AddUserToGroup', iamArn('group/admins'))],
  ])('%s: admin on every dataset, saying so', (_, statement) => {
    const { rows } = read({
      users: [user('esc', doc(statement)), user('admin')],
      roles: [role('deploy')],
      groups: [{ GroupName: 'admins', Path: '/', Arn: iamArn('group/admins'), AttachedManagedPolicies: [], GroupPolicyList: [] }],
    });
    expect(adminOf(rows, 'esc')).toEqual(ALL_ADMIN);
    const paths = row(rows, 'training admin esc').paths;
    expect(paths.length).toBeGreaterThan(0);
    for (const p of paths) {
      expect(p).toEqual({
        via: expect.stringMatching(
          /^inline policy own of user esc: can (change IAM policies|act as other IAM principals) \(iam:\w+(, iam:\w+)*\) and so grant itself any access$/,
        ),
      });
    }
    expect(adminOf(rows, 'admin')).toEqual([]);
  });

  test('the changes it can make to itself are named: its policies, its groups, its policies’ versions', () => {
    const policy = managedPolicy(iamArn('policy/team'), doc(allow('s3:ListAllMyBuckets', '*')));
    const { rows } = read({
      policies: [policy],
      groups: [
        { GroupName: 'team', Path: '/', Arn: iamArn('group/team'), AttachedManagedPolicies: [{ PolicyName: 'team', PolicyArn: iamArn('policy/team') }] },
      ],
      users: [
        user('grp', doc(allow('iam:PutGroupPolicy', iamArn('group/team'))), { GroupList: ['team'] }),
        user('ver', doc(allow(['iam:CreatePolicyVersion'], iamArn('policy/team'))), { GroupList: ['team'] }),
      ],
      roles: [role('self', { RolePolicyList: [{ PolicyName: 'p', PolicyDocument: doc(allow('iam:AttachRolePolicy', iamArn('role/self'))) }] })],
    });
    expect(row(rows, 'eval admin grp').paths[0]!.via).toBe(
      'inline policy own of user grp: can change IAM policies (iam:PutGroupPolicy) and so grant itself any access',
    );
    expect(row(rows, 'eval admin ver').paths[0]!.via).toBe(
      'inline policy own of user ver: can change IAM policies (iam:CreatePolicyVersion) and so grant itself any access',
    );
    expect(row(rows, 'eval admin role/self').paths[0]!.via).toBe(
      'inline policy p of role self (assumable by ec2.amazonaws.com): can change IAM policies (iam:AttachRolePolicy) and so grant itself any access',
    );
  });

  test('not an escalation: another user’s policy, its own keys, a self-service policy, PassRole without a way to run code, a group it is in', () => {
    const { rows } = read({
      users: [
        user('other', doc(allow('iam:PutUserPolicy', iamArn('user/someone')))),
        user('ownkeys', doc(allow(['iam:CreateAccessKey', 'iam:UpdateLoginProfile'], 'arn:aws:iam::*:user/${aws:username}'))),
        user('pass', doc(allow('iam:PassRole', '*'))),
        user('member', doc(allow('iam:AddUserToGroup', iamArn('group/team'))), { GroupList: ['team'] }),
        user('someone'),
        user('nokeys', doc(allow('iam:CreateAccessKey', iamArn('user/nobody-by-that-name')))),
      ],
      groups: [{ GroupName: 'team', Path: '/', Arn: iamArn('group/team'), AttachedManagedPolicies: [], GroupPolicyList: [] }],
      roles: [role('deploy')],
    });
    expect(rows).toEqual([]);
  });

  test('iam:PassRole with an action that runs code is admin', () => {
    const { rows } = read({
      users: [user('pass', doc(allow('iam:PassRole', iamArn('role/deploy')), allow('lambda:CreateFunction', '*')))],
      roles: [role('deploy')],
    });
    expect(row(rows, 'eval admin pass').paths).toEqual([
      { via: 'inline policy own of user pass: can act as other IAM principals (iam:PassRole with an action that runs code) and so grant itself any access' },
    ]);
  });

  test('a Deny of the IAM action, a boundary without it, or a bucket policy denying everyone take it away; a condition stays named', () => {
    const boundary = managedPolicy(iamArn('policy/s3-only'), doc(allow('s3:*', '*')));
    const { rows } = read(
      {
        policies: [boundary],
        users: [
          user(
            'denied',
            doc(
              allow('iam:*', '*'),
              deny('iam:Put*', '*'),
              deny('iam:Attach*', '*'),
              deny(['iam:Create*', 'iam:SetDefaultPolicyVersion', 'iam:Update*', 'iam:AddUserToGroup', 'iam:PassRole'], '*'),
            ),
          ),
          user('bounded', doc(allow('iam:*', '*')), { PermissionsBoundary: { PermissionsBoundaryArn: iamArn('policy/s3-only') } }),
          user('mfa', doc(allow('iam:PutUserPolicy', '*', { Condition: { Bool: { 'aws:MultiFactorAuthPresent': 'true' } } }))),
        ],
      },
      { bucketPolicies: new Map([['data', doc({ Effect: 'Deny', Principal: '*', Action: 's3:*', Resource: ['arn:aws:s3:::data', 'arn:aws:s3:::data/*'] })]]) },
    );
    expect(adminOf(rows, 'denied')).toEqual([]);
    expect(adminOf(rows, 'bounded')).toEqual([]);
    expect(adminOf(rows, 'mfa')).toEqual(['artifacts admin']);
    expect(row(rows, 'artifacts admin mfa').paths[0]!.conditions).toEqual(['Bool on aws:MultiFactorAuthPresent']);
  });
});

describe('conditions', () => {
  test('aws:CurrentTime: a future bound expires the path, a past one is no access', () => {
    const until = (t: string) => ({ Condition: { DateLessThan: { 'aws:CurrentTime': t } } });
    const { rows } = read({
      users: [
        user('future', doc(allow('s3:GetObject', 'arn:aws:s3:::models/*', until('2027-01-31T00:00:00Z')))),
        user('past', doc(allow('s3:GetObject', 'arn:aws:s3:::models/*', until('2026-11-01T00:00:00Z')))),
      ],
    });
    expect(keys(rows)).toEqual(['artifacts read future']);
    expect(row(rows, 'artifacts read future').paths).toEqual([{ via: 'inline policy own of user future', expires: '2027-01-31T00:00:00.000Z' }]);
  });

  test('keys that depend on the request keep the row and are named', () => {
    const { rows } = read({
      users: [
        user(
          'office',
          doc(
            allow('s3:GetObject', 'arn:aws:s3:::models/*', {
              Condition: { IpAddress: { 'aws:SourceIp': '10.0.0.0/8' }, Bool: { 'aws:MultiFactorAuthPresent': 'true' } },
            }),
          ),
        ),
      ],
    });
    expect(row(rows, 'artifacts read office').paths[0]!.conditions).toEqual(['IpAddress on aws:SourceIp', 'Bool on aws:MultiFactorAuthPresent']);
  });

  test("datagrant's own compiled grant: read until its expiry, exactly its dataset", () => {
    const statements = grantStatements('data', 'train/', { dataset: 'training', access: 'read', expires: '2027-03-01' });
    const { rows } = read({ users: [user('alice', JSON.stringify({ Version: '2012-10-17', Statement: statements }))] });
    expect(keys(rows)).toEqual(['training read alice']);
    expect(row(rows, 'training read alice').paths[0]!.expires).toMatch(/^2027-03-0[12]T/);
  });
});

describe('groups, managed policies, boundaries', () => {
  const S3_READ_ONLY = 'arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess';
  const policies = [
    managedPolicy(S3_READ_ONLY, doc(allow(['s3:Get*', 's3:List*'], '*'))),
    managedPolicy(`arn:aws:iam::${ACCOUNT}:policy/writers`, doc(allow('s3:PutObject', 'arn:aws:s3:::data/eval/*'))),
    managedPolicy(`arn:aws:iam::${ACCOUNT}:policy/only-get`, doc(allow('s3:GetObject', '*'))),
  ];

  test("a user's effective policy includes its groups' inline and managed policies; an AWS managed policy is read from its default version", () => {
    const { rows } = read({
      policies,
      groups: [
        {
          GroupName: 'ml',
          Path: '/',
          Arn: `arn:aws:iam::${ACCOUNT}:group/ml`,
          AttachedManagedPolicies: [{ PolicyName: 'writers', PolicyArn: `arn:aws:iam::${ACCOUNT}:policy/writers` }],
          GroupPolicyList: [{ PolicyName: 'models', PolicyDocument: doc(allow('s3:GetObject', 'arn:aws:s3:::models/*')) }],
        },
      ],
      users: [user('carol', undefined, { GroupList: ['ml'] })],
      roles: [role('auditor', { AttachedManagedPolicies: [{ PolicyName: 'AmazonS3ReadOnlyAccess', PolicyArn: S3_READ_ONLY }] })],
    });
    expect(row(rows, 'eval write carol').paths).toEqual([{ via: 'group ml (managed policy writers)' }]);
    expect(row(rows, 'artifacts read carol').paths).toEqual([{ via: 'group ml (inline policy models)' }]);
    expect(row(rows, 'training read role/auditor').paths).toEqual([
      { via: 'managed policy AmazonS3ReadOnlyAccess attached to role auditor (assumable by ec2.amazonaws.com)' },
    ]);
    expect(keys(rows).filter((k) => k.endsWith('auditor'))).toEqual(['artifacts read role/auditor', 'eval read role/auditor', 'training read role/auditor']);
  });

  test('a permissions boundary must allow too; a bucket policy naming a user is not limited by it, one naming a role is', () => {
    const boundary = { PermissionsBoundary: { PermissionsBoundaryArn: `arn:aws:iam::${ACCOUNT}:policy/only-get` } };
    const bucketPolicy = doc({
      Sid: 'Put',
      Effect: 'Allow',
      Principal: { AWS: [`arn:aws:iam::${ACCOUNT}:user/bounded`, `arn:aws:iam::${ACCOUNT}:role/bounded-role`] },
      Action: 's3:PutObject',
      Resource: 'arn:aws:s3:::models/*',
    });
    const { rows } = read(
      {
        policies,
        users: [user('bounded', doc(allow('s3:*', '*')), boundary)],
        roles: [role('bounded-role', { ...boundary, RolePolicyList: [{ PolicyName: 'all', PolicyDocument: doc(allow('s3:*', '*')) }] })],
      },
      { bucketPolicies: new Map([['models', bucketPolicy]]) },
    );
    expect(keys(rows).filter((k) => k.endsWith(' bounded'))).toEqual([
      'artifacts read bounded',
      'artifacts write bounded',
      'eval read bounded',
      'training read bounded',
    ]);
    expect(row(rows, 'artifacts write bounded').paths).toEqual([{ via: 'bucket policy of models, statement Put' }]);
    expect(keys(rows).filter((k) => k.endsWith('bounded-role'))).toEqual([
      'artifacts read role/bounded-role',
      'eval read role/bounded-role',
      'training read role/bounded-role',
    ]);
  });

  test('an attached policy whose document was not read is a failure of this reading, not a limit', () => {
    const { rows, limits, failures } = read({
      users: [user('x', undefined, { AttachedManagedPolicies: [{ PolicyName: 'gone', PolicyArn: 'arn:aws:iam::aws:policy/gone' }] })],
    });
    expect(rows).toEqual([]);
    expect(failures).toEqual([
      'managed policy gone (arn:aws:iam::aws:policy/gone) attached to user x: not a readable policy document, not evaluated: access it grants is not reported',
    ]);
    expect(limits).toEqual(UNSEEN);
  });

  test('an unparseable inline policy, bucket policy or boundary is a failure', () => {
    const { failures } = read(
      {
        users: [
          user('y', undefined, {
            UserPolicyList: [{ PolicyName: 'broken', PolicyDocument: '{not json' }],
            PermissionsBoundary: { PermissionsBoundaryArn: 'arn:aws:iam::aws:policy/nope' },
          }),
        ],
      },
      { bucketPolicies: new Map([['data', 'nor this']]) },
    );
    expect(failures).toEqual([
      'inline policy broken of user y: not a readable policy document, not evaluated: access it grants is not reported',
      'permissions boundary arn:aws:iam::aws:policy/nope of user y: not readable, so read as allowing everything',
      'bucket policy of data: not a readable policy document, not evaluated: access it grants is not reported',
    ]);
  });
});

describe('bucket policies', () => {
  const policy = doc(
    { Sid: 'Team', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:user/bob` }, Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/train/*' },
    { Sid: 'Partner', Effect: 'Allow', Principal: { AWS: '111122223333' }, Action: ['s3:GetObject', 's3:PutObject'], Resource: 'arn:aws:s3:::data/*' },
    { Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::111122223333:role/etl' }, Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/eval/*' },
    {
      Sid: 'Public',
      Effect: 'Allow',
      Principal: '*',
      Action: 's3:GetObject',
      Resource: 'arn:aws:s3:::data/eval/*',
      Condition: { StringEquals: { 'aws:PrincipalOrgID': 'o-1' } },
    },
    { Sid: 'Cdn', Effect: 'Allow', Principal: { Service: 'cloudfront.amazonaws.com' }, Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/train/*' },
    { Sid: 'Other', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:user/eve` }, Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/other/*' },
  );

  test('each Allow reaching a dataset gives rows to its principals, each of the kind its ARN says', () => {
    const { rows, limits } = read(
      { users: [user('bob', doc(allow('s3:GetObject', 'arn:aws:s3:::models/*'))), user('eve')] },
      { bucketPolicies: new Map([['data', policy]]) },
    );
    expect(keys(rows)).toEqual([
      'artifacts read bob',
      'eval read anyone',
      'eval read 111122223333:role/etl',
      'eval read account 111122223333',
      'eval write account 111122223333',
      'training read account 111122223333',
      'training read bob',
      'training read cloudfront.amazonaws.com',
      'training write account 111122223333',
    ]);
    const bob = row(rows, 'training read bob');
    expect(bob.holder).toEqual({ id: `arn:aws:iam::${ACCOUNT}:user/bob`, kind: 'aws-user', name: 'bob', managed: false });
    expect(bob.paths).toEqual([{ via: 'bucket policy of data, statement Team' }]);
    expect(row(rows, 'eval read account 111122223333').holder).toMatchObject({ id: 'arn:aws:iam::111122223333:root', kind: 'aws-account', managed: false });
    expect(row(rows, 'eval read 111122223333:role/etl').paths).toEqual([{ via: 'bucket policy of data, statement 2' }]);
    expect(row(rows, 'eval read anyone')).toMatchObject({
      holder: { id: '*', kind: 'aws-anyone' },
      paths: [{ conditions: ['StringEquals on aws:PrincipalOrgID'] }],
    });
    expect(row(rows, 'training read cloudfront.amazonaws.com').holder.kind).toBe('aws-service');
    expect(limits.join('\n')).toMatch(/other accounts named in bucket policies/);
  });

  test('a Deny of the bucket policy removes the access of those it names, identity paths included', () => {
    const denying = doc(
      {
        Sid: 'Partner',
        Effect: 'Allow',
        Principal: { AWS: ['111122223333', `arn:aws:iam::${ACCOUNT}:user/bob`] },
        Action: 's3:GetObject',
        Resource: 'arn:aws:s3:::data/*',
      },
      { Sid: 'NoBob', Effect: 'Deny', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:user/bob` }, Action: 's3:*', Resource: 'arn:aws:s3:::data/train/*' },
      { Sid: 'NoPartner', Effect: 'Deny', Principal: { AWS: 'arn:aws:iam::111122223333:root' }, Action: 's3:*', Resource: 'arn:aws:s3:::data/eval/*' },
    );
    const { rows } = read({ users: [user('bob', doc(allow('s3:GetObject', 'arn:aws:s3:::data/*')))] }, { bucketPolicies: new Map([['data', denying]]) });
    expect(keys(rows)).toEqual(['eval read bob', 'training read account 111122223333']);
  });

  test('a Deny of everyone removes all access; NotPrincipal is named (Allow: everyone but them; Deny: not applied)', () => {
    const all = doc({ Effect: 'Deny', Principal: '*', Action: 's3:*', Resource: 'arn:aws:s3:::data/*' });
    // (on data's objects: on the bucket itself bob still controls its policy, and so its datasets)
    expect(keys(read({ users: [user('bob', doc(allow('s3:*', '*')))] }, { bucketPolicies: new Map([['data', all]]) }).rows)).toEqual([
      'artifacts read bob',
      'artifacts write bob',
      'artifacts admin bob',
      'eval admin bob',
      'training admin bob',
    ]);
    const not = doc(
      {
        Sid: 'AllBut',
        Effect: 'Allow',
        NotPrincipal: { AWS: `arn:aws:iam::${ACCOUNT}:user/bob` },
        Action: 's3:GetObject',
        Resource: 'arn:aws:s3:::models/*',
      } as AnyStatement,
      {
        Sid: 'DenyBut',
        Effect: 'Deny',
        NotPrincipal: { AWS: `arn:aws:iam::${ACCOUNT}:user/bob` },
        Action: 's3:*',
        Resource: 'arn:aws:s3:::models/*',
      } as AnyStatement,
    );
    const { rows, limits } = read({}, { bucketPolicies: new Map([['models', not]]) });
    expect(row(rows, 'artifacts read anyone').paths).toEqual([
      { via: `bucket policy of models, statement AllBut (NotPrincipal: everyone except arn:aws:iam::${ACCOUNT}:user/bob)` },
    ]);
    expect(limits).toContain('bucket policy of models, statement DenyBut: a Deny with NotPrincipal is not evaluated: access it may deny is still reported');
  });
});

describe('holders', () => {
  test("datagrant's users are managed and name their principal; its session roles are managed with no principal", () => {
    const get = doc(allow('s3:GetObject', 'arn:aws:s3:::models/*'));
    const { rows, limits } = read(
      {
        users: [user('alice', get, { Path: '/datagrant/' }), user('intruder', get)],
        roles: [
          role('dg-s-0123456789ab', {
            Path: '/datagrant/',
            RolePolicyList: [{ PolicyName: 'dg-direct-grants', PolicyDocument: get }],
            AssumeRolePolicyDocument: doc({
              Effect: 'Allow',
              Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` },
              Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
            }),
          }),
        ],
      },
      { owned: { users: new Set(['alice']), roles: new Set(['dg-s-0123456789ab']) } },
    );
    expect(row(rows, 'artifacts read alice').holder).toEqual({
      id: `arn:aws:iam::${ACCOUNT}:user/alice`,
      kind: 'aws-user',
      name: 'alice',
      managed: true,
      principal: 'alice',
    });
    expect(row(rows, 'artifacts read intruder').holder.managed).toBe(false);
    const session = row(rows, 'artifacts read role/dg-s-0123456789ab');
    expect(session.holder).toEqual({ id: `arn:aws:iam::${ACCOUNT}:role/dg-s-0123456789ab`, kind: 'aws-role', name: 'role/dg-s-0123456789ab', managed: true });
    expect(session.paths[0]!.via).toBe(`inline policy dg-direct-grants of role dg-s-0123456789ab (assumable by account ${ACCOUNT})`);
    expect(limits.slice(0, UNSEEN.length)).toEqual(UNSEEN);
  });
});

describe("datagrant's own paths", () => {
  const iamArn = (what: string) => `arn:aws:iam::${ACCOUNT}:${what}`;
  const get = (b: string) => doc(allow('s3:GetObject', `arn:aws:s3:::${b}/*`));
  const TRUSTED = {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Principal: { AWS: iamArn('user/datagrant') }, Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'] }],
  };
  const ours = (policy: string, document: string) => ({ ...managedPolicy(iamArn(`policy/datagrant/${policy}`), document), Path: '/datagrant/' });
  const group = (name: string, policy: string) => ({
    GroupName: name,
    Path: '/datagrant/',
    Arn: iamArn(`group/datagrant/${name}`),
    AttachedManagedPolicies: [{ PolicyName: policy, PolicyArn: iamArn(`policy/datagrant/${policy}`) }],
    GroupPolicyList: [],
  });
  const world = () =>
    read(
      {
        policies: [ours('dg-group-ml', get('models')), ours('dg-shared-0123456789ab', get('models')), ours('handmade', get('models'))],
        groups: [group('ml', 'dg-group-ml'), { ...group('theirs', 'dg-group-ml'), Path: '/' }],
        users: [
          user('alice', undefined, {
            Path: '/datagrant/',
            GroupList: ['ml', 'theirs'],
            UserPolicyList: [
              { PolicyName: 'dg-direct-grants', PolicyDocument: get('models') },
              { PolicyName: 'extra', PolicyDocument: get('models') },
            ],
            AttachedManagedPolicies: [
              { PolicyName: 'dg-shared-0123456789ab', PolicyArn: iamArn('policy/datagrant/dg-shared-0123456789ab') },
              { PolicyName: 'handmade', PolicyArn: iamArn('policy/datagrant/handmade') },
            ],
          }),
          // datagrant's policy, on someone else's user
          user('bob', undefined, { GroupList: ['ml'], UserPolicyList: [{ PolicyName: 'dg-direct-grants', PolicyDocument: get('models') }] }),
          // datagrant's own policy, hand-edited to control the bucket
          user('carol', undefined, {
            Path: '/datagrant/',
            UserPolicyList: [{ PolicyName: 'dg-direct-grants', PolicyDocument: doc(allow('s3:PutBucketPolicy', 'arn:aws:s3:::models')) }],
          }),
        ],
        roles: [
          role('dg-s-000000000001', {
            Path: '/datagrant/',
            AssumeRolePolicyDocument: encodeURIComponent(JSON.stringify(TRUSTED)),
            RolePolicyList: [{ PolicyName: 'dg-direct-grants', PolicyDocument: get('models') }],
            AttachedManagedPolicies: [{ PolicyName: 'dg-group-ml', PolicyArn: iamArn('policy/datagrant/dg-group-ml') }],
          }),
          // the same, but its trust edited by hand: assumable by someone else
          role('dg-s-000000000002', {
            Path: '/datagrant/',
            RolePolicyList: [{ PolicyName: 'dg-direct-grants', PolicyDocument: get('models') }],
          }),
        ],
      },
      {
        owned: {
          users: new Set(['alice', 'carol']),
          roles: new Set(['dg-s-000000000001', 'dg-s-000000000002']),
          groups: new Set(['ml']),
          policies: new Set(['dg-group-ml', 'dg-shared-0123456789ab', 'handmade']),
        },
        trust: TRUSTED,
        bucketPolicies: new Map([
          [
            'models',
            doc({
              Sid: 'Alice',
              Effect: 'Allow',
              Principal: { AWS: iamArn('user/datagrant/alice') },
              Action: 's3:GetObject',
              Resource: 'arn:aws:s3:::models/*',
            }),
          ],
        ]),
      },
    );
  const marked = (rows: ActualAccess[], key: string) => Object.fromEntries(row(rows, key).paths.map((p) => [p.via, p.managed === true]));

  test("on datagrant's user: its inline grants, its shared policy and its group's policy are its own; a hand-added policy, another group, a bucket policy are not", () => {
    expect(marked(world().rows, 'artifacts read alice')).toEqual({
      'inline policy dg-direct-grants of user alice': true,
      'managed policy dg-shared-0123456789ab attached to user alice': true,
      'group ml (managed policy dg-group-ml)': true,
      'inline policy extra of user alice': false,
      'managed policy handmade attached to user alice': false,
      'group theirs (managed policy dg-group-ml)': false,
      'bucket policy of models, statement Alice': false,
    });
  });

  test("on anyone else's user nothing is datagrant's, nor is a grant of a kind datagrant never makes", () => {
    const { rows } = world();
    expect(marked(rows, 'artifacts read bob')).toEqual({ 'group ml (managed policy dg-group-ml)': false, 'inline policy dg-direct-grants of user bob': false });
    expect(marked(rows, 'artifacts admin carol')).toEqual({ 'inline policy dg-direct-grants of user carol: can rewrite the bucket policy of models': false });
  });

  test('on an access-set role, only while it trusts datagrant alone', () => {
    const { rows } = world();
    expect(Object.values(marked(rows, 'artifacts read role/dg-s-000000000001'))).toEqual([true, true]);
    expect(Object.values(marked(rows, 'artifacts read role/dg-s-000000000002'))).toEqual([false]);
  });
});

describe('scale', () => {
  test('a thousand users with their own grants over five hundred datasets: each reaches exactly its own', () => {
    const datasets = Array.from({ length: 500 }, (_, i) => ({ name: `ds${i}`, bucket: `b${i % 10}`, prefix: `p${i}/` }));
    const users = Array.from({ length: 1000 }, (_, i) =>
      user(
        `u${i}`,
        doc(allow(['s3:GetObject', 's3:PutObject'], `arn:aws:s3:::b${i % 10}/p${i % 500}/*`), allow('s3:GetObject', `arn:aws:s3:::b${i % 10}/p${i % 500}/x/*`)),
      ),
    );
    const { rows } = read({ users }, { datasets });
    expect(rows).toHaveLength(2000);
    expect(keys(rows.filter((r) => r.holder.name === 'u7'))).toEqual(['ds7 read u7', 'ds7 write u7']);
  });
});

describe('credential usage', () => {
  const header =
    'user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated';
  const line = (name: string, k1: [string, string] | undefined, k2: [string, string] | undefined) =>
    [
      name,
      `arn:aws:iam::${ACCOUNT}:user/${name}`,
      '2026-01-01T00:00:00+00:00',
      'false',
      'N/A',
      'N/A',
      'N/A',
      'false',
      k1 ? 'true' : 'false',
      k1?.[0] ?? 'N/A',
      k1?.[1] ?? 'N/A',
      'N/A',
      'N/A',
      k2 ? 'true' : 'false',
      k2?.[0] ?? 'N/A',
      k2?.[1] ?? 'N/A',
      'N/A',
      'N/A',
      'false',
      'N/A',
      'false',
      'N/A',
    ].join(',');

  test('one entry per key: created, last used or never (null), or why it cannot be known', () => {
    const csv = [
      header,
      line('alice', ['2026-02-01T00:00:00+00:00', '2026-11-30T10:00:00+00:00'], ['2026-10-01T00:00:00+00:00', 'N/A']),
      line('old', ['2014-01-01T00:00:00+00:00', 'no_information'], undefined),
      line('nokeys', undefined, undefined),
    ].join('\n');
    expect(credentialUsage('aws', csv, new Set(['alice']))).toEqual([
      {
        backend: 'aws',
        holder: `arn:aws:iam::${ACCOUNT}:user/alice`,
        principal: 'alice',
        credential: 'access_key_1',
        createdAt: '2026-02-01T00:00:00.000Z',
        lastUsedAt: '2026-11-30T10:00:00.000Z',
      },
      {
        backend: 'aws',
        holder: `arn:aws:iam::${ACCOUNT}:user/alice`,
        principal: 'alice',
        credential: 'access_key_2',
        createdAt: '2026-10-01T00:00:00.000Z',
        lastUsedAt: null,
      },
      {
        backend: 'aws',
        holder: `arn:aws:iam::${ACCOUNT}:user/old`,
        credential: 'access_key_1',
        createdAt: '2014-01-01T00:00:00.000Z',
        unknown: expect.stringMatching(/no_information/),
      },
    ]);
  });
});
