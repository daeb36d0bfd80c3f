// The aws driver against moto with IAM enforcement: what it creates is read back exactly (the
// second plan is empty), the issued key can do what the spec grants and nothing else, deletes are
// idempotent, objects outside the IAM path are invisible and untouched, and read costs a constant
// number of requests however many users there are.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import {
  AttachUserPolicyCommand,
  CreateAccessKeyCommand,
  CreateGroupCommand,
  CreateRoleCommand,
  CreateLoginProfileCommand,
  CreatePolicyCommand,
  CreateUserCommand,
  GetGroupCommand,
  GetPolicyCommand,
  GetUserCommand,
  ListAccessKeysCommand,
  ListAttachedUserPoliciesCommand,
  ListPolicyVersionsCommand,
  PutUserPolicyCommand,
  TagUserCommand,
  UpdateAccessKeyCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Backend, KnownCredential } from '../../src/backends/backend.js';
import { createAwsBackend, type AwsBackend } from '../../src/backends/aws/driver.js';
import { toBackendError } from '../../src/backends/aws/errors.js';
import { keysFromStore, parseCredentialReport, parsePolicyDocument, resourcesFromDetails } from '../../src/backends/aws/state.js';
import { applyPlan, dependencies } from '../../src/apply/apply.js';
import { withRedaction } from '../../src/backends/redact.js';
import { withRetry } from '../../src/backends/retry.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { compileAws } from '../../src/compile/aws/compile.js';
import { normalizePolicy } from '../../src/model/aws-policy.js';
import { BackendError } from '../../src/core/errors.js';
import type { Change, DesiredState, Plan, Resource } from '../../src/core/types.js';
import { diff } from '../../src/plan/diff.js';
import { specSchema, type SpecInput } from '../../src/spec/schema.js';
import { startProxy } from '../support/http-proxy.js';
import { expectAccessDenied, iamAs, s3As, startMoto, type AwsKey, type Moto } from '../support/moto.js';

const NOW = new Date();
const PATH = '/datagrant/';

const SPEC: SpecInput = {
  version: 1,
  backends: { aws: { type: 'aws', region: 'us-east-1' } },
  datasets: {
    'training-data': { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' },
    'model-artifacts': { backend: 'aws', bucket: 'ai-model-artifacts' },
  },
  groups: { 'ml-researchers': { grants: [{ dataset: 'training-data', access: 'read' }] } },
  principals: {
    alice: { type: 'person', email: 'alice@example.com', groups: ['ml-researchers'] },
    trainer: {
      type: 'service',
      grants: [
        { dataset: 'model-artifacts', access: 'write' },
        { dataset: 'training-data', access: 'read', expires: '2099-01-31' },
      ],
      rotate: '90d',
    },
  },
};

const desiredOf = (input: SpecInput): Record<string, DesiredState> => ({ aws: compileAws(specSchema.parse(input), 'aws', { now: NOW }) });
const EMPTY: Record<string, DesiredState> = { aws: { resources: [], notices: [] } };

let moto: Moto;
let iam: IAMClient;

beforeAll(async () => {
  moto = await startMoto();
});
afterAll(async () => {
  iam?.destroy();
  await moto?.stop();
});

const makeDriver = (): AwsBackend => createAwsBackend({ name: 'aws', region: 'us-east-1', endpoint: moto.endpoint, iamPath: PATH, credentials: moto.admin });

/** What the store would hold: credentials and their secrets, kept the way apply keeps them. */
class MiniStore {
  credentials: KnownCredential[] = [];
  secrets = new Map<string, AwsKey>();
  record(c: Change, res: Awaited<ReturnType<Backend['execute']>>, graceMs = 3_600_000) {
    const slot = c.address.split('~')[0]!;
    if (res.credential && res.secret) {
      // An active key is handed out only once AWS accepts it (issue 12 item 8), and says how long that took.
      if (c.after?.attrs.status !== 'Inactive') expect(res.readyMs).toBeGreaterThanOrEqual(0);
      const previous = this.credentials.filter((k) => k.address === slot && k.state === 'current');
      if (c.action === 'replace') {
        for (const p of previous) Object.assign(p, { state: 'retiring', retireAt: new Date(Date.now() + graceMs).toISOString() });
      } else {
        this.credentials = this.credentials.filter((k) => !previous.includes(k));
      }
      this.credentials.push({ address: slot, credentialId: res.credential.credentialId, createdAt: res.credential.createdAt, state: 'current' });
      this.secrets.set(slot, { accessKeyId: res.secret.accessKeyId!, secretAccessKey: res.secret.secretAccessKey! });
    }
    if (c.action === 'delete' && c.kind === 'key') {
      this.credentials = this.credentials.filter((k) => k.credentialId !== c.before?.meta?.accessKeyId);
    }
  }
}

/** A tiny apply: one change at a time, in the order apply's dependency rules give. */
async function applyInOrder(driver: Backend, plan: Plan, store: MiniStore): Promise<string[]> {
  const waits = dependencies(plan.changes);
  const pending = new Map(plan.changes.map((c) => [c.address, c]));
  const done = new Set<string>();
  const order: string[] = [];
  while (pending.size) {
    const next = [...pending.values()].find((c) => [...waits.get(c.address)!].every((d) => done.has(d)));
    if (!next) throw new Error(`dependency cycle among ${[...pending.keys()].join(', ')}`);
    pending.delete(next.address);
    store.record(next, await driver.execute(next));
    done.add(next.address);
    order.push(`${next.action} ${next.address}`);
  }
  return order;
}

const planFor = (desired: Record<string, DesiredState>, actual: Awaited<ReturnType<Backend['read']>>) =>
  diff(desired, { aws: actual }, { now: NOW, specHash: 'test' });

async function converge(driver: Backend, desired: Record<string, DesiredState>, store: MiniStore) {
  const plan = planFor(desired, await driver.read({ credentials: store.credentials }));
  const order = await applyInOrder(driver, plan, store);
  return { plan, order };
}

/** GetObject with its body read: an unread body keeps a socket that errors when moto stops. */
const getObject = async (s3: S3Client, Bucket: string, Key: string) => (await s3.send(new GetObjectCommand({ Bucket, Key }))).Body!.transformToString();

const render = (plan: Plan) => plan.changes.map((c) => `${c.action} ${c.address}`);

describe('aws driver against moto with IAM enforcement', () => {
  beforeEach(async () => {
    await moto.reset();
    iam?.destroy();
    iam = iamAs(moto, moto.admin);
  });

  test('the harness enforces IAM: a key allowed only GetObject on ai-model-data can do nothing else', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'probe', Path: '/probe/' }));
    await iam.send(
      new PutUserPolicyCommand({
        UserName: 'probe',
        PolicyName: 'get-only',
        PolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::ai-model-data/*' }],
        }),
      }),
    );
    const k = (await iam.send(new CreateAccessKeyCommand({ UserName: 'probe' }))).AccessKey!;
    const s3 = s3As(moto, { accessKeyId: k.AccessKeyId!, secretAccessKey: k.SecretAccessKey! });
    expect(await getObject(s3, 'ai-model-data', 'eval/c.txt')).toContain('eval/c.txt');
    await expectAccessDenied(s3.send(new PutObjectCommand({ Bucket: 'ai-model-data', Key: 'x.txt', Body: 'x' })));
    await expectAccessDenied(s3.send(new GetObjectCommand({ Bucket: 'other-bucket', Key: 'secret.txt' })));
    await expectAccessDenied(s3.send(new ListObjectsV2Command({ Bucket: 'ai-model-data' })));
    // and an unknown key is refused outright: there are no root credentials
    const stranger = s3As(moto, { accessKeyId: 'AKIAUNKNOWNUNKNOWN00', secretAccessKey: 'x'.repeat(40) });
    await expect(stranger.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'eval/c.txt' }))).rejects.toThrow();
    s3.destroy();
    stranger.destroy();
  });

  test('a compiled spec applied through the driver reads back identical: the second plan is empty', async () => {
    // GIVEN
    const driver = makeDriver();
    const store = new MiniStore();
    const desired = desiredOf(SPEC);
    // WHEN
    const { plan } = await converge(driver, desired, store);
    // THEN
    expect(plan.changes.every((c) => c.action === 'create')).toBe(true);
    const actual = await driver.read({ credentials: store.credentials });
    expect(render(planFor(desired, actual))).toEqual([]);
    // exact read (one ListAccessKeys per user) agrees with the report-based one
    const exact = await driver.read({ credentials: store.credentials, exact: true });
    expect(exact.resources).toEqual(actual.resources);
    // creating what already exists in the desired shape succeeds (a rerun after a crash)
    for (const c of plan.changes.filter((x) => x.kind !== 'key')) await expect(driver.execute(c)).resolves.toBeDefined();
    expect(render(planFor(desired, await driver.read({ credentials: store.credentials })))).toEqual([]);
    // compiled documents are already in the normal form the driver reads back
    for (const r of desired.aws!.resources.filter((x) => x.kind === 'policy')) expect(normalizePolicy(r.attrs.document)).toEqual(r.attrs.document);
    await driver.close();
  });

  test('issued keys can do what the spec grants and nothing else', async () => {
    const driver = makeDriver();
    const store = new MiniStore();
    await converge(driver, desiredOf(SPEC), store);
    const alice = s3As(moto, store.secrets.get('aws:key/alice')!);
    const trainer = s3As(moto, store.secrets.get('aws:key/trainer')!);

    // alice (read on ai-model-data/training/ through her group)
    const body = await getObject(alice, 'ai-model-data', 'training/a.txt');
    expect(body).toContain('ai-model-data/training/a.txt');
    // (moto miscomputes the signature of a Prefix containing `/`, so the prefix has none)
    expect((await alice.send(new ListObjectsV2Command({ Bucket: 'ai-model-data', Prefix: 'training' }))).Contents?.length).toBeGreaterThan(0);
    await expectAccessDenied(alice.send(new PutObjectCommand({ Bucket: 'ai-model-data', Key: 'training/x.txt', Body: 'x' })));
    await expectAccessDenied(alice.send(new DeleteObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' })));
    await expectAccessDenied(alice.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'eval/c.txt' })));
    await expectAccessDenied(alice.send(new GetObjectCommand({ Bucket: 'other-bucket', Key: 'secret.txt' })));
    await expectAccessDenied(alice.send(new ListObjectsV2Command({ Bucket: 'other-bucket' })));
    await expectAccessDenied(alice.send(new GetObjectCommand({ Bucket: 'ai-model-artifacts', Key: 'model.bin' })));

    // trainer (write on ai-model-artifacts, read on training/)
    await trainer.send(new PutObjectCommand({ Bucket: 'ai-model-artifacts', Key: 'model-2.bin', Body: 'weights' }));
    await getObject(trainer, 'ai-model-artifacts', 'model.bin');
    await getObject(trainer, 'ai-model-data', 'training/b.txt');
    await expectAccessDenied(trainer.send(new DeleteObjectCommand({ Bucket: 'ai-model-artifacts', Key: 'model.bin' })));
    await expectAccessDenied(trainer.send(new PutObjectCommand({ Bucket: 'ai-model-data', Key: 'training/x.txt', Body: 'x' })));
    await expectAccessDenied(trainer.send(new GetObjectCommand({ Bucket: 'other-bucket', Key: 'secret.txt' })));

    // and the issued keys are not IAM admins
    const aliceIam = iamAs(moto, store.secrets.get('aws:key/alice')!);
    await expectAccessDenied(aliceIam.send(new CreateUserCommand({ UserName: 'mallory' })));
    for (const c of [alice, trainer, aliceIam]) c.destroy();
    await driver.close();
  });

  test('teardown runs keys → policies → memberships → user, and deleting again succeeds', async () => {
    const driver = makeDriver();
    const store = new MiniStore();
    await converge(driver, desiredOf(SPEC), store);
    const aliceKey = store.secrets.get('aws:key/alice')!;
    // a console password set by hand does not block the user's removal
    await iam.send(new CreateLoginProfileCommand({ UserName: 'trainer', Password: 'Hand-made-passw0rd!' }));

    const { plan, order } = await converge(driver, EMPTY, store);
    expect(plan.changes.every((c) => c.action === 'delete')).toBe(true);
    const pos = (a: string) => order.indexOf(`delete ${a}`);
    expect(pos('aws:key/trainer')).toBeLessThan(pos('aws:inline-policy/user/trainer/dg-direct-grants'));
    expect(pos('aws:inline-policy/user/trainer/dg-direct-grants')).toBeLessThan(pos('aws:user/trainer'));
    expect(pos('aws:attachment/group/ml-researchers/dg-group-ml-researchers')).toBeLessThan(pos('aws:policy/dg-group-ml-researchers'));
    expect(pos('aws:key/alice')).toBeLessThan(pos('aws:membership/ml-researchers/alice'));
    expect(pos('aws:membership/ml-researchers/alice')).toBeLessThan(pos('aws:user/alice'));
    expect(pos('aws:membership/ml-researchers/alice')).toBeLessThan(pos('aws:group/ml-researchers'));

    expect((await driver.read({ credentials: store.credentials })).resources).toEqual([]);
    // the revoked key no longer opens anything
    const s3 = s3As(moto, aliceKey);
    await expect(s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' }))).rejects.toThrow();
    s3.destroy();

    // idempotent: the same deletes again, everything already gone
    for (const c of plan.changes) await expect(driver.execute(c)).resolves.toEqual({});
    await driver.close();
  });

  test('objects outside the IAM path are invisible, untouched, and never taken over', async () => {
    // GIVEN a hand-made user `alice` at path / with a key and AdministratorAccess
    await iam.send(new CreateUserCommand({ UserName: 'alice', Path: '/' }));
    await iam.send(new AttachUserPolicyCommand({ UserName: 'alice', PolicyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' }));
    await iam.send(new CreateAccessKeyCommand({ UserName: 'alice' }));
    await iam.send(
      new CreatePolicyCommand({
        PolicyName: 'dg-user-trainer',
        Path: '/team/',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] }),
      }),
    );
    await iam.send(new CreateGroupCommand({ GroupName: 'ml-researchers', Path: '/team/' }));
    const driver = makeDriver();
    const store = new MiniStore();

    // WHEN read: nothing of it is visible (moto-admin, the seeded admin at /, neither)
    expect((await driver.read({ credentials: [] })).resources).toEqual([]);

    // THEN creating the desired `alice` and `dg-user-trainer` refuses to adopt the foreign objects
    const plan = planFor(desiredOf(SPEC), await driver.read({ credentials: [] }));
    const userChange = plan.changes.find((c) => c.address === 'aws:user/alice')!;
    const err = await driver.execute(userChange).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).code).toBe('NotOwned');
    expect((err as BackendError).message).toMatch(
      /user named alice already exists at path \/, outside datagrant's path \/datagrant\/; datagrant will not take over/,
    );
    const groupChange = plan.changes.find((c) => c.address === 'aws:group/ml-researchers')!;
    await expect(driver.execute(groupChange)).rejects.toThrow(
      /group named ml-researchers already exists at path \/team\/.*will not take over an object it does not own/,
    );
    // (AWS refuses a second policy of the same name at another path, which the driver reports like
    // the user above; moto allows it, so here the foreign policy must merely survive untouched)

    // and a teardown of everything datagrant owns leaves them as they were
    await converge(driver, EMPTY, store);
    const u = (await iam.send(new GetUserCommand({ UserName: 'alice' }))).User!;
    expect(u.Path).toBe('/');
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'alice' }))).AccessKeyMetadata).toHaveLength(1);
    expect((await iam.send(new ListAttachedUserPoliciesCommand({ UserName: 'alice' }))).AttachedPolicies?.map((p) => p.PolicyName)).toEqual([
      'AdministratorAccess',
    ]);
    const foreign = await iam.send(new GetPolicyCommand({ PolicyArn: 'arn:aws:iam::123456789012:policy/team/dg-user-trainer' }));
    expect(foreign.Policy?.Path).toBe('/team/');
    expect((await iam.send(new GetGroupCommand({ GroupName: 'ml-researchers' }))).Group?.Path).toBe('/team/');
    await driver.close();
  });

  test('execute re-checks ownership: no key, attachment, membership or inline policy for what datagrant does not own', async () => {
    // GIVEN datagrant's alice and group, and a hand-made user outside the path
    const driver = makeDriver();
    const store = new MiniStore();
    await converge(driver, desiredOf(SPEC), store);
    await iam.send(new CreateUserCommand({ UserName: 'outsider', Path: '/' }));
    await iam.send(new CreateGroupCommand({ GroupName: 'admins', Path: '/' }));
    await iam.send(
      new CreateRoleCommand({
        RoleName: 'ops',
        Path: '/',
        AssumeRolePolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Principal: { AWS: '*' }, Action: 'sts:AssumeRole' }],
        }),
      }),
    );
    await driver.read({ credentials: store.credentials });
    const res = (kind: string, name: string, attrs: Resource['attrs']): Resource => ({
      address: `aws:${kind}/${name}`,
      backend: 'aws',
      kind,
      name,
      attrs,
      deps: [],
    });
    const create = (r: Resource): Change => ({
      address: r.address,
      backend: 'aws',
      kind: r.kind,
      action: 'create',
      before: null,
      after: r,
      drift: false,
      reason: 'edited plan',
    });
    // WHEN changes a plan file could be edited to contain are executed, THEN each is refused before any request
    const refused = [
      create(res('key', 'outsider', { user: 'outsider', status: 'Active' })),
      create(res('attachment', 'x', { entity: 'user', entityName: 'alice', policy: 'arn:aws:iam::aws:policy/AdministratorAccess' })),
      create(res('attachment', 'y', { entity: 'user', entityName: 'outsider', policy: 'dg-group-ml-researchers' })),
      create(res('membership', 'z', { group: 'ml-researchers', user: 'outsider' })),
      create(res('membership', 'w', { group: 'admins', user: 'alice' })),
      create(res('inline-policy', 'v', { entity: 'user', entityName: 'outsider', document: { Version: '2012-10-17', Statement: [] } })),
      // Roles: only datagrant's own get its policies, and a session is never a way into another's.
      create(res('attachment', 'r', { entity: 'role', entityName: 'ops', policy: 'dg-group-ml-researchers' })),
      create(res('inline-policy', 'q', { entity: 'role', entityName: 'ops', document: { Version: '2012-10-17', Statement: [] } })),
    ];
    for (const c of refused) {
      const before = driver.stats().requests;
      const err = await driver.execute(c).catch((e: unknown) => e);
      expect(err, c.address).toBeInstanceOf(BackendError);
      expect((err as BackendError).code, c.address).toBe('NotOwned');
      expect(driver.stats().requests, c.address).toBe(before);
    }
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'outsider' }))).AccessKeyMetadata).toEqual([]);
    await expect(driver.issueSession({ principal: 'alice', target: 'ops', durationSeconds: 900 })).rejects.toMatchObject({ code: 'NotOwned' });
    expect((await iam.send(new ListAttachedUserPoliciesCommand({ UserName: 'alice' }))).AttachedPolicies?.map((p) => p.PolicyName)).not.toContain(
      'AdministratorAccess',
    );
    await driver.close();
  });

  test('drift on owned users is read: foreign attachment, inline policy, hand-made and deactivated keys; apply reverts it', async () => {
    const driver = makeDriver();
    const store = new MiniStore();
    const desired = desiredOf(SPEC);
    await converge(driver, desired, store);
    // GIVEN changes by hand
    await iam.send(new AttachUserPolicyCommand({ UserName: 'alice', PolicyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' }));
    await iam.send(
      new PutUserPolicyCommand({
        UserName: 'alice',
        PolicyName: 'backdoor',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] }),
      }),
    );
    const extra = (await iam.send(new CreateAccessKeyCommand({ UserName: 'trainer' }))).AccessKey!;
    await iam.send(
      new UpdateAccessKeyCommand({
        UserName: 'alice',
        AccessKeyId: store.credentials.find((c) => c.address === 'aws:key/alice')!.credentialId,
        Status: 'Inactive',
      }),
    );

    // WHEN
    const actual = await driver.read({ credentials: store.credentials });
    const byAddress = new Map(actual.resources.map((r) => [r.address, r]));
    // THEN
    const admin = byAddress.get('aws:attachment/user/alice/arn:aws:iam::aws:policy/AdministratorAccess');
    expect(admin?.attrs).toEqual({ entity: 'user', entityName: 'alice', policy: 'arn:aws:iam::aws:policy/AdministratorAccess' });
    expect(byAddress.get('aws:inline-policy/user/alice/backdoor')?.attrs).toEqual({
      entity: 'user',
      entityName: 'alice',
      document: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:*'], Resource: ['*'] }] },
    });
    expect(byAddress.get(`aws:key/trainer~${extra.AccessKeyId}`)?.meta).toEqual({ accessKeyId: extra.AccessKeyId, createdAt: extra.CreateDate!.toISOString() });
    expect(byAddress.get('aws:key/alice')?.attrs).toEqual({ user: 'alice', status: 'Inactive' });

    const plan = planFor(desired, actual);
    expect(render(plan).sort()).toEqual(
      [
        'delete aws:attachment/user/alice/arn:aws:iam::aws:policy/AdministratorAccess',
        'delete aws:inline-policy/user/alice/backdoor',
        `delete aws:key/trainer~${extra.AccessKeyId}`,
        'update aws:key/alice',
      ].sort(),
    );
    await applyInOrder(driver, plan, store);
    expect(render(planFor(desired, await driver.read({ credentials: store.credentials })))).toEqual([]);
    // the issued key works again, the admin rights are gone
    const alice = s3As(moto, store.secrets.get('aws:key/alice')!);
    await expectAccessDenied(alice.send(new GetObjectCommand({ Bucket: 'other-bucket', Key: 'secret.txt' })));
    alice.destroy();
    await driver.close();
  });

  test('rotation issues a second key and keeps the old one until its grace ends; a third is refused by name', async () => {
    const driver = makeDriver();
    const store = new MiniStore();
    const desired = desiredOf(SPEC);
    await converge(driver, desired, store);
    const oldId = store.credentials.find((c) => c.address === 'aws:key/trainer')!.credentialId;
    const plan = diff(desired, { aws: await driver.read({ credentials: store.credentials }) }, { now: NOW, specHash: 't', forceRotate: ['aws:key/trainer'] });
    expect(render(plan)).toEqual(['replace aws:key/trainer']);
    await applyInOrder(driver, plan, store);
    const newKey = store.secrets.get('aws:key/trainer')!;
    expect(newKey.accessKeyId).not.toBe(oldId);

    const actual = await driver.read({ credentials: store.credentials });
    const old = actual.resources.find((r) => r.address === `aws:key/trainer~${oldId}`)!;
    expect(old.lifecycle?.retireAt).toBeDefined();
    expect(actual.resources.find((r) => r.address === 'aws:key/trainer')?.meta?.accessKeyId).toBe(newKey.accessKeyId);
    expect(render(planFor(desired, actual))).toEqual([]); // the old key is within its grace period

    // a third key cannot exist: the error names both keys
    const again = plan.changes[0]!;
    const err = (await driver
      .execute({ ...again, before: actual.resources.find((r) => r.address === 'aws:key/trainer')! })
      .catch((e: unknown) => e)) as BackendError;
    expect(err.code).toBe('LimitExceeded');
    expect(err.message).toContain(oldId);
    expect(err.message).toContain(newKey.accessKeyId);

    // grace over: the old key is deleted, the new one still reads
    const later = diff(desired, { aws: actual }, { now: new Date(Date.now() + 2 * 3_600_000), specHash: 't' });
    expect(render(later)).toEqual([`delete aws:key/trainer~${oldId}`]);
    await applyInOrder(driver, later, store);
    const s3 = s3As(moto, newKey);
    await getObject(s3, 'ai-model-artifacts', 'model.bin');
    s3.destroy();
    await driver.close();
  });

  test('updates: policy documents past the five-version limit, tags changed by hand; every request is counted', async () => {
    // GIVEN the driver behind a counting proxy
    const proxy = await startProxy(moto.endpoint);
    const driver = createAwsBackend({ name: 'aws', endpoint: proxy.endpoint, iamPath: PATH, credentials: moto.admin });
    const store = new MiniStore();
    const desired = desiredOf(SPEC);
    await converge(driver, desired, store);

    // WHEN the spec changes a policy six times (IAM keeps at most five versions)
    for (const bucket of ['b-1', 'b-2', 'b-3', 'b-4', 'b-5', 'b-6']) {
      const spec = structuredClone(SPEC);
      spec.datasets!.elsewhere = { backend: 'aws', bucket };
      spec.groups!['ml-researchers'] = { grants: [{ dataset: 'elsewhere', access: 'read' }] };
      const plan = planFor(desiredOf(spec), await driver.read({ credentials: store.credentials }));
      expect(render(plan)).toEqual(['update aws:policy/dg-group-ml-researchers']);
      await applyInOrder(driver, plan, store);
    }
    const versions = await iam.send(new ListPolicyVersionsCommand({ PolicyArn: 'arn:aws:iam::123456789012:policy/datagrant/dg-group-ml-researchers' }));
    expect(versions.Versions?.length).toBeLessThanOrEqual(5);
    const back = planFor(desired, await driver.read({ credentials: store.credentials }));
    expect(render(back)).toEqual(['update aws:policy/dg-group-ml-researchers']);
    await applyInOrder(driver, back, store);

    // and a tag is changed and another added by hand
    await iam.send(
      new TagUserCommand({
        UserName: 'alice',
        Tags: [
          { Key: 'datagrant:email', Value: 'eve@example.com' },
          { Key: 'owner', Value: 'eve' },
        ],
      }),
    );
    const drift = planFor(desired, await driver.read({ credentials: store.credentials }));
    expect(render(drift)).toEqual(['update aws:user/alice']);
    await applyInOrder(driver, drift, store);
    expect(render(planFor(desired, await driver.read({ credentials: store.credentials })))).toEqual([]);

    // THEN the driver counted exactly the requests that reached the wire
    expect(driver.stats().requests).toBe(proxy.count());
    await driver.close();
    await proxy.close();
  });

  test('an operator without credential-report rights still reads every key, one ListAccessKeys per user', async () => {
    // GIVEN an operator allowed IAM and STS, but denied the credential report
    await iam.send(new CreateUserCommand({ UserName: 'operator', Path: '/ops/' }));
    await iam.send(
      new PutUserPolicyCommand({
        UserName: 'operator',
        PolicyName: 'iam-without-report',
        PolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            { Effect: 'Allow', Action: ['iam:*', 'sts:*'], Resource: '*' },
            { Effect: 'Deny', Action: ['iam:GenerateCredentialReport', 'iam:GetCredentialReport'], Resource: '*' },
          ],
        }),
      }),
    );
    const k = (await iam.send(new CreateAccessKeyCommand({ UserName: 'operator' }))).AccessKey!;
    const driver = createAwsBackend({
      name: 'aws',
      endpoint: moto.endpoint,
      iamPath: PATH,
      credentials: { accessKeyId: k.AccessKeyId!, secretAccessKey: k.SecretAccessKey! },
    });
    const store = new MiniStore();
    const desired = desiredOf(SPEC);
    await converge(driver, desired, store);
    // WHEN
    const before = driver.stats().requests;
    const actual = await driver.read({ credentials: store.credentials });
    // THEN: GetAccountAuthorizationDetails, GenerateCredentialReport (denied), ListAccessKeys × 2
    expect(driver.stats().requests - before).toBe(4);
    expect(render(planFor(desired, actual))).toEqual([]);
    await driver.close();
  });

  test('through apply (8 at a time) behind retry and redaction: 25 principals converge, then tear down', async () => {
    // GIVEN a store, and the driver wrapped the way the CLI wraps it
    const dir = mkdtempSync(join(tmpdir(), 'dg-aws-'));
    const store = new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()));
    const driver = makeDriver();
    const backend = withRedaction(withRetry(driver, { maxAttempts: 4, baseMs: 50, maxMs: 500 }));
    const spec = structuredClone(SPEC);
    for (let i = 0; i < 25; i++)
      spec.principals![`p${i}`] = {
        type: 'service',
        groups: i % 2 ? ['ml-researchers'] : [],
        grants: i % 2 ? [] : [{ dataset: 'model-artifacts', access: 'read' }],
      };
    const desired = desiredOf(spec);
    const read = async () => ({ aws: await backend.read({ credentials: (await store.credentials()).filter((c) => c.backend === 'aws') }) });
    const plan = async (want: Record<string, DesiredState>) => diff(want, await read(), { now: new Date(), specHash: 't', applied: await store.applied() });
    try {
      // WHEN
      const first = await plan(desired);
      const result = await applyPlan(first, { backends: { aws: backend }, store, concurrency: 8, actor: 'test' });
      // THEN
      expect(result.applied).toBe(first.changes.length);
      expect(render(await plan(desired))).toEqual([]);
      const p3 = await store.revealCredential('aws:key/p3');
      const s3 = s3As(moto, { accessKeyId: p3!.secret.accessKeyId!, secretAccessKey: p3!.secret.secretAccessKey! });
      await getObject(s3, 'ai-model-data', 'training/a.txt');
      await expectAccessDenied(s3.send(new GetObjectCommand({ Bucket: 'ai-model-artifacts', Key: 'model.bin' })));
      s3.destroy();

      const teardown = await plan(EMPTY);
      await applyPlan(teardown, { backends: { aws: backend }, store, concurrency: 8, actor: 'test' });
      expect((await read()).aws.resources).toEqual([]);
      expect(await store.credentials()).toEqual([]);
    } finally {
      await backend.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('read costs the same number of requests for 50 and for 200 users', async () => {
    const driver = makeDriver();
    const store = new MiniStore();
    const addUsers = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const name = `u${String(i).padStart(4, '0')}`;
        const user: Resource = {
          address: `aws:user/${name}`,
          backend: 'aws',
          kind: 'user',
          name,
          attrs: { path: PATH, tags: { 'datagrant:managed': 'true' } },
          deps: [],
        };
        const key: Resource = { address: `aws:key/${name}`, backend: 'aws', kind: 'key', name, attrs: { user: name, status: 'Active' }, deps: [user.address] };
        for (const r of [user, key]) {
          const c: Change = { address: r.address, backend: 'aws', kind: r.kind, action: 'create', before: null, after: r, drift: false, reason: 'test' };
          store.record(c, await driver.execute(c));
        }
      }
    };
    const countRead = async (exact = false) => {
      const before = driver.stats().requests;
      const state = await driver.read({ credentials: store.credentials, exact });
      return { requests: driver.stats().requests - before, resources: state.resources.length };
    };

    await addUsers(0, 50);
    await countRead(); // the account id is cached from here on
    const fifty = await countRead();
    await addUsers(50, 200);
    const twoHundred = await countRead();
    const exact = await countRead(true);

    expect(fifty.resources).toBe(100);
    expect(twoHundred.resources).toBe(400);
    expect(twoHundred.requests).toBe(fifty.requests);
    expect(fifty.requests).toBeLessThanOrEqual(4);
    expect(exact.requests).toBe(1 + 200); // GetAccountAuthorizationDetails + one ListAccessKeys per user
    console.log(`read requests: 50 users ${fifty.requests}, 200 users ${twoHundred.requests}, 200 users exact ${exact.requests}`);
    await driver.close();
  });
});

describe('aws driver, pure parts', () => {
  const HEADER =
    'user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated';
  const row = (user: string, k1: string, k2: string, quote = false) => {
    const u = quote ? `"${user}"` : user;
    const arn = quote ? `"arn:aws:iam::123456789012:user/datagrant/${user}"` : `arn:aws:iam::123456789012:user/datagrant/${user}`;
    return `${u},${arn},2026-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,${k1},N/A,N/A,N/A,${k2},N/A,N/A,N/A,false,N/A,false,N/A`;
  };
  const REPORT = [
    HEADER,
    row('alice', 'true,2026-03-01T10:00:05+00:00', 'false,N/A'),
    row('bob', 'true,2026-03-01T10:00:05+00:00', 'false,2026-02-01T09:00:00+00:00'),
    row('carol', 'false,N/A', 'false,N/A'),
    row('x,y', 'true,2026-03-01T10:00:05+00:00', 'false,N/A'),
    row('q,r', 'true,2026-03-02T10:00:05+00:00', 'false,N/A', true),
  ].join('\n');

  test('the credential report gives keys per user, even for names with commas', () => {
    const report = parseCredentialReport(REPORT);
    const t = Date.parse('2026-03-01T10:00:05Z') / 1000;
    // Every key of this report is unused ("N/A"): null, never unknown.
    expect(report.get('alice')).toEqual([{ active: true, createdSec: t, lastUsedAt: null }]);
    expect(report.get('bob')).toEqual([
      { active: true, createdSec: t, lastUsedAt: null },
      { active: false, createdSec: Date.parse('2026-02-01T09:00:00Z') / 1000, lastUsedAt: null },
    ]);
    expect(report.get('carol')).toEqual([]);
    expect(report.get('x,y')).toEqual([{ active: true, createdSec: t, lastUsedAt: null }]);
    expect(report.get('q,r')).toEqual([{ active: true, createdSec: t + 86400, lastUsedAt: null }]);
    const used = parseCredentialReport(
      [
        HEADER,
        'dan,arn:aws:iam::123456789012:user/datagrant/dan,2026-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2026-03-01T10:00:05+00:00,2026-04-02T08:30:00+00:00,us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A',
      ].join('\n'),
    );
    expect(used.get('dan')).toEqual([{ active: true, createdSec: t, lastUsedAt: '2026-04-02T08:30:00.000Z' }]);
  });

  const cred = (credentialId: string, createdAt: string, address = 'aws:key/alice'): KnownCredential => ({
    address,
    credentialId,
    createdAt,
    state: 'current',
  });
  test.each([
    ['agrees (milliseconds ignored)', 'alice', [cred('AKIA1', '2026-03-01T10:00:05.713Z')], ['AKIA1']],
    ['the SDK rounded x.9995 s up a second', 'alice', [cred('AKIA1', '2026-03-01T10:00:06.000Z')], ['AKIA1']],
    ['creation time two seconds off', 'alice', [cred('AKIA1', '2026-03-01T10:00:07.000Z')], undefined],
    ['creation time a day off', 'alice', [cred('AKIA1', '2026-03-02T10:00:05.000Z')], undefined],
    ['the store knows fewer keys', 'bob', [cred('AKIA1', '2026-03-01T10:00:05.000Z', 'aws:key/bob')], undefined],
    [
      'a key is inactive',
      'bob',
      [cred('AKIA1', '2026-03-01T10:00:05.000Z', 'aws:key/bob'), cred('AKIA2', '2026-02-01T09:00:00.000Z', 'aws:key/bob')],
      undefined,
    ],
    ['the store knows a key that is gone', 'carol', [cred('AKIA3', '2026-03-01T10:00:05.000Z', 'aws:key/carol')], undefined],
    ['no keys on either side', 'carol', [], []],
    ['user not in the report (newer than it)', 'dave', [], undefined],
  ] as const)('report vs store: %s', (_what, user, creds, ids) => {
    const got = keysFromStore(user, `aws:key/${user}`, parseCredentialReport(REPORT), [...creds]);
    expect(got?.map((k) => k.accessKeyId)).toEqual(ids === undefined ? undefined : [...ids]);
  });

  test('policy documents read URL-encoded (AWS) or plain (moto) normalise alike; junk stays visible', () => {
    const doc = { Version: '2012-10-17', Statement: { Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/*' } };
    const want = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: ['arn:aws:s3:::b/*'] }] };
    expect(parsePolicyDocument(JSON.stringify(doc))).toEqual(want);
    expect(parsePolicyDocument(encodeURIComponent(JSON.stringify(doc)))).toEqual(want);
    expect(parsePolicyDocument('100% not json')).toBe('100% not json');
  });

  test('mapping: ownership by path, foreign attachments by ARN, teardown order as deps', () => {
    const { resources } = resourcesFromDetails({
      backend: 'aws',
      iamPath: PATH,
      details: {
        users: [
          {
            UserName: 'alice',
            Path: PATH,
            GroupList: ['admins', 'ml'],
            AttachedManagedPolicies: [
              { PolicyArn: 'arn:aws:iam::123456789012:policy/datagrant/dg-user-alice' },
              { PolicyName: 'AdministratorAccess', PolicyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' },
            ],
            UserPolicyList: [{ PolicyName: 'extra', PolicyDocument: '{"Version":"2012-10-17","Statement":[]}' }],
            Tags: [{ Key: 'datagrant:managed', Value: 'true' }],
          },
          { UserName: 'root-ish', Path: '/', AttachedManagedPolicies: [{ PolicyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' }] },
        ],
        groups: [
          { GroupName: 'ml', Path: PATH },
          { GroupName: 'admins', Path: '/' },
        ],
        policies: [
          {
            Arn: 'arn:aws:iam::123456789012:policy/datagrant/dg-user-alice',
            Path: PATH,
            PolicyVersionList: [{ Document: '{"Version":"2012-10-17","Statement":[]}', IsDefaultVersion: true }],
          },
          { Arn: 'arn:aws:iam::123456789012:policy/dg-user-alice-lookalike', Path: '/' },
        ],
      },
      keys: new Map([
        [
          'alice',
          [
            { accessKeyId: 'AKIA1', status: 'Active', createdAt: '2026-01-01T00:00:00.000Z' },
            { accessKeyId: 'AKIA2', status: 'Active', createdAt: '2026-02-01T00:00:00.000Z' },
          ],
        ],
      ]),
      credentials: [{ address: 'aws:key/alice', credentialId: 'AKIA2', createdAt: '2026-02-01T00:00:00.000Z', state: 'current' }],
    });
    const by = new Map(resources.map((r) => [r.address, r]));
    expect([...by.keys()]).toEqual([
      'aws:attachment/user/alice/arn:aws:iam::aws:policy/AdministratorAccess',
      'aws:attachment/user/alice/dg-user-alice',
      'aws:group/ml',
      'aws:inline-policy/user/alice/extra',
      'aws:key/alice',
      'aws:key/alice~AKIA1',
      'aws:membership/admins/alice',
      'aws:membership/ml/alice',
      'aws:policy/dg-user-alice',
      'aws:user/alice',
    ]);
    const memberships = ['aws:membership/admins/alice', 'aws:membership/ml/alice'];
    expect(by.get('aws:key/alice')!.deps).toEqual(
      expect.arrayContaining(['aws:user/alice', ...memberships, 'aws:attachment/user/alice/dg-user-alice', 'aws:inline-policy/user/alice/extra']),
    );
    expect(by.get('aws:attachment/user/alice/dg-user-alice')!.deps).toEqual([
      'aws:user/alice',
      'aws:policy/dg-user-alice',
      'aws:inline-policy/user/alice/extra',
      ...memberships,
    ]);
    expect(by.get('aws:inline-policy/user/alice/extra')!.deps).toEqual(['aws:user/alice', ...memberships]);
    expect(by.get('aws:key/alice~AKIA1')!.meta).toEqual({ accessKeyId: 'AKIA1', createdAt: '2026-01-01T00:00:00.000Z' });

    // teardown order under apply's rules
    const plan = diff(EMPTY, { aws: { backend: 'aws', resources } }, { now: NOW, specHash: 't' });
    const waits = dependencies(plan.changes);
    const mustWait = (later: string, earlier: string) => expect(waits.get(later)?.has(earlier), `${later} waits for ${earlier}`).toBe(true);
    mustWait('aws:attachment/user/alice/dg-user-alice', 'aws:key/alice');
    mustWait('aws:inline-policy/user/alice/extra', 'aws:attachment/user/alice/arn:aws:iam::aws:policy/AdministratorAccess');
    mustWait('aws:membership/ml/alice', 'aws:inline-policy/user/alice/extra');
    mustWait('aws:user/alice', 'aws:membership/ml/alice');
    mustWait('aws:policy/dg-user-alice', 'aws:attachment/user/alice/dg-user-alice');
  });

  test.each([
    ['Throttling', true, { name: 'ThrottlingException', message: 'Rate exceeded', $metadata: { httpStatusCode: 400 } }],
    ['NoSuchEntity', false, { name: 'NoSuchEntityException', message: 'gone', $metadata: { httpStatusCode: 404 } }],
    ['ServiceFailure', true, { name: 'ServiceFailureException', message: 'oops', $metadata: { httpStatusCode: 500 } }],
    ['Unknown', true, { name: 'Unknown', message: 'bad gateway', $metadata: { httpStatusCode: 502 } }],
    ['ECONNRESET', true, Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })],
    ['AccessDenied', false, { name: 'AccessDenied', message: 'no', $metadata: { httpStatusCode: 403 } }],
  ])('SDK error → BackendError code %s, retryable %s', (code, retryable, sdk) => {
    const e = toBackendError(sdk, 'aws', 'aws:user/alice');
    expect([e.code, e.retryable, e.address, e.backend]).toEqual([code, retryable, 'aws:user/alice', 'aws']);
    expect(e.message).toMatch(/^aws: aws:user\/alice: /);
  });
});
