// Issue 12 against moto with IAM enforcement: a temporary principal gets no key, its sessions run as
// its access-set role, and they grant exactly its access; deprovisioning refuses the live session.
//
// What moto 5.2 enforces for assumed-role credentials (moto/iam/access_control.py): the role's own
// inline and attached policies, and the role's trust policy on AssumeRole (the caller's ARN must be
// its Principal). It ignores SourceIdentity, session expiry and every condition but StringEquals on
// sts:ExternalId, so the `dg-revoked` deny acts on every session of the role here, not only on the
// revoked principal's older ones; the exact semantics are proved by the IAM evaluator over the
// compiled documents (test/compile/aws-sessions.test.ts).
import {
  CreateAccessKeyCommand,
  CreateRoleCommand,
  CreateUserCommand,
  ListRolesCommand,
  PutRolePolicyCommand,
  PutUserPolicyCommand,
  UpdateAssumeRolePolicyCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { AwsConnection } from '../../src/backends/aws/connection.js';
import { createAwsBackend, type AwsBackend } from '../../src/backends/aws/driver.js';
import { trustedPrincipal } from '../../src/backends/aws/trust.js';
import { sessionTarget } from '../../src/compile/index.js';
import { specSchema } from '../../src/spec/schema.js';
import { openStore, statePaths } from '../../src/store/open.js';
import { startMoto, type Moto } from '../support/moto.js';
import type { Workspace } from '../support/cli.js';
import { adminIam, apply, canRead, cannotTouch, cannotWrite, expectNoChanges, initWorkspace, s3For, sessionRefused, useMotoAdmin } from './aws-support.js';

let moto: Moto;
let iam: IAMClient;
let backend: AwsBackend;
const spaces: Workspace[] = [];

beforeAll(async () => {
  moto = await startMoto({ auth: true });
});
afterAll(async () => moto?.stop());
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  iam = adminIam(moto);
  backend = createAwsBackend({ name: 'aws', endpoint: moto.endpoint, region: moto.region, iamPath: '/datagrant/', credentials: moto.admin });
});
afterEach(async () => {
  for (const w of spaces.splice(0)) w.cleanup();
  iam?.destroy();
  await backend?.close();
});

const temporary = (extra: object = {}) => ({
  type: 'person',
  credentials: 'temporary',
  groups: ['researchers', 'reviewers'],
  grants: [{ dataset: 'artifacts', access: 'read' }],
  ...extra,
});
const specOf = (principals: Record<string, object>) => ({
  version: 1,
  backends: { aws: { type: 'aws', region: 'us-east-1' } },
  datasets: {
    training: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' },
    evals: { backend: 'aws', bucket: 'ai-model-data', prefix: 'eval/' },
    artifacts: { backend: 'aws', bucket: 'ai-model-artifacts' },
  },
  groups: {
    researchers: { grants: [{ dataset: 'training', access: 'read' }] },
    reviewers: { grants: [{ dataset: 'evals', access: 'read' }] },
  },
  principals,
});

async function ws(spec: object): Promise<Workspace> {
  // YAML reads JSON as it is.
  const w = await initWorkspace(JSON.stringify(spec));
  spaces.push(w);
  return w;
}

const s3With = (c: Record<string, string>) => s3For(moto, { accessKeyId: c.accessKeyId!, secretAccessKey: c.secretAccessKey!, sessionToken: c.sessionToken! });

async function refused(s3: S3Client): Promise<boolean> {
  try {
    await (await s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' }))).Body?.transformToString();
    return false;
  } catch (e) {
    if (/AccessDenied|Forbidden|InvalidAccessKeyId|InvalidClientTokenId/.test(String((e as Error).name))) return true;
    throw e;
  }
}

describe('the identity the trust policy names', () => {
  test('datagrant running as an assumed role is trusted by its role ARN, path included, not the session ARN', async () => {
    await iam.send(
      new CreateRoleCommand({
        RoleName: 'runner',
        Path: '/ops/',
        AssumeRolePolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::123456789012:user/moto-admin' }, Action: 'sts:AssumeRole' }],
        }),
      }),
    );
    await iam.send(
      new PutRolePolicyCommand({
        RoleName: 'runner',
        PolicyName: 'all',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }),
      }),
    );
    const sts = new STSClient({ region: moto.region, endpoint: moto.endpoint, maxAttempts: 1, credentials: moto.admin });
    const c = (await sts.send(new AssumeRoleCommand({ RoleArn: 'arn:aws:iam::123456789012:role/ops/runner', RoleSessionName: 'ci' }))).Credentials!;
    sts.destroy();
    const aws = new AwsConnection({
      name: 'aws',
      endpoint: moto.endpoint,
      region: moto.region,
      iamPath: '/datagrant/',
      credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! },
    });
    expect((await aws.caller()).arn).toMatch(/^arn:aws:sts::123456789012:assumed-role\/runner\/ci$/);
    expect(await trustedPrincipal(aws)).toBe('arn:aws:iam::123456789012:role/ops/runner');
    aws.close();
  });
});

describe('sessions of a temporary principal in two groups with a direct grant', () => {
  test('no user or key; the session reads its datasets only; a second plan is empty', async () => {
    const spec = specOf({ alice: temporary({ email: 'alice@example.com', maxSession: '2h' }) });
    const w = await ws(spec);
    await apply(w);
    await expectNoChanges(w);

    const target = sessionTarget(specSchema.parse(spec), 'aws', 'alice', new Date());
    if (!('target' in target)) throw new Error(target.message);
    const roles = (await iam.send(new ListRolesCommand({ PathPrefix: '/datagrant/' }))).Roles ?? [];
    expect(roles.map((r) => [r.RoleName, r.MaxSessionDuration])).toEqual([[target.target, 7200]]);
    expect(JSON.stringify(roles)).not.toContain('alice');

    const asked = Date.now();
    const issued = await backend.issueSession({ principal: 'alice', target: target.target, durationSeconds: 1800 });
    expect(issued.target).toBe(target.target);
    expect(Math.abs(Date.parse(issued.expiresAt) - asked - 1800_000)).toBeLessThan(60_000);
    // STS issues nothing shorter than 15 minutes.
    const short = await backend.issueSession({ principal: 'alice', target: target.target, durationSeconds: 60 });
    expect(Math.abs(Date.parse(short.expiresAt) - asked - 900_000)).toBeLessThan(60_000);
    expect(issued.readyMs).toBeGreaterThanOrEqual(0);
    expect(Object.keys(issued.secret).sort()).toEqual(['accessKeyId', 'secretAccessKey', 'sessionToken']);
    const s3 = s3With(issued.secret);
    await canRead(s3, 'ai-model-data', 'training/a.txt');
    await canRead(s3, 'ai-model-data', 'eval/c.txt');
    await canRead(s3, 'ai-model-artifacts', 'model.bin');
    await cannotWrite(s3, 'ai-model-data', 'training/a.txt');
    await cannotWrite(s3, 'ai-model-artifacts', 'model.bin');
    await cannotTouch(s3, 'other-bucket', 'secret.txt');
    s3.destroy();
  });

  test('only datagrant may assume the role, and only its access-set roles are issued', async () => {
    const spec = specOf({ alice: temporary() });
    const w = await ws(spec);
    await apply(w);
    const target = sessionTarget(specSchema.parse(spec), 'aws', 'alice', new Date()) as { target: string };
    // Another identity allowed sts:AssumeRole on everything is still refused by the role's trust.
    await iam.send(new CreateUserCommand({ UserName: 'mallory' }));
    await iam.send(
      new PutUserPolicyCommand({
        UserName: 'mallory',
        PolicyName: 'all',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }),
      }),
    );
    const key = (await iam.send(new CreateAccessKeyCommand({ UserName: 'mallory' }))).AccessKey!;
    const sts = new STSClient({
      region: moto.region,
      endpoint: moto.endpoint,
      maxAttempts: 1,
      credentials: { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! },
    });
    const RoleArn = `arn:aws:iam::123456789012:role/datagrant/${target.target}`;
    const assume = () => sts.send(new AssumeRoleCommand({ RoleArn, RoleSessionName: 'x', SourceIdentity: 'alice' }));
    await expect(assume()).rejects.toMatchObject({ name: 'AccessDenied' });
    // Trust widened by hand: drift, which apply puts back.
    const trust = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::123456789012:user/mallory' }, Action: 'sts:AssumeRole' }],
    };
    await iam.send(new UpdateAssumeRolePolicyCommand({ RoleName: target.target, PolicyDocument: JSON.stringify(trust) }));
    await expect(assume()).resolves.toBeDefined();
    const plan = await w.run('plan');
    expect(plan.stdout).toContain(`role/${target.target}`);
    await apply(w);
    await expectNoChanges(w);
    await expect(assume()).rejects.toMatchObject({ name: 'AccessDenied' });
    sts.destroy();
    await expect(backend.issueSession({ principal: 'alice', target: 'admin', durationSeconds: 900 })).rejects.toMatchObject({ code: 'NotOwned' });
  });

  test('deprovisioned: the live session is refused once the plan, fed the session log, is applied', async () => {
    const both = specOf({ alice: temporary(), bob: temporary() });
    const w = await ws(both);
    await apply(w);
    const target = (sessionTarget(specSchema.parse(both), 'aws', 'alice', new Date()) as { target: string }).target;
    expect((sessionTarget(specSchema.parse(both), 'aws', 'bob', new Date()) as { target: string }).target).toBe(target);

    const issued = await backend.issueSession({ principal: 'alice', target, durationSeconds: 900 });
    // What the broker records for every session it hands out.
    const store = await openStore(statePaths(join(w.dir, '.datagrant')), w.env);
    await store.recordSession({ backend: 'aws', principal: 'alice', target, lastIssuedAt: new Date().toISOString(), expiresAt: issued.expiresAt });
    await store.close();
    const s3 = s3With(issued.secret);
    expect(await refused(s3)).toBe(false);

    // alice leaves; bob keeps the role, so it stays and denies alice's sessions.
    w.writeSpec(JSON.stringify(specOf({ bob: temporary() })));
    const plan = await w.run('plan');
    expect(plan.stdout).toContain(`inline-policy/role/${target}/dg-revoked`);
    await apply(w);
    expect(await refused(s3)).toBe(true);
    await expectNoChanges(w);

    // Everyone gone: the role is deleted, which ends every session of it.
    w.writeSpec(JSON.stringify(specOf({})));
    await apply(w);
    expect((await iam.send(new ListRolesCommand({ PathPrefix: '/datagrant/' }))).Roles ?? []).toEqual([]);
    const after = await sessionRefused(moto, {
      accessKeyId: issued.secret.accessKeyId!,
      secretAccessKey: issued.secret.secretAccessKey!,
      sessionToken: issued.secret.sessionToken!,
    });
    expect(after.refused, `status ${after.status}`).toBe(true);
    s3.destroy();
  });
});
