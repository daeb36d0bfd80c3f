// The rgw driver against a real Ceph RADOS gateway: what RGW does that AWS does not, and how the
// driver holds the line — Ceph bug 48761 (any change to a user deletes its inline policies),
// PutUserPolicy's second URL-decoding, a key creation whose answer was lost, the ownership mark,
// and deadlines. Access is proven with the keys the driver issued, on the gateway itself.
import { GetUserPolicyCommand, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend, KnownCredential } from '../../src/backends/backend.js';
import { createRgwBackend } from '../../src/backends/rgw/driver.js';
import { compile } from '../../src/compile/index.js';
import { BackendError, SpecError } from '../../src/core/errors.js';
import type { Change, Plan } from '../../src/core/types.js';
import { inlinePolicyResource, rgwMarker } from '../../src/model/rgw.js';
import { diff } from '../../src/plan/diff.js';
import { parseSpec } from '../../src/spec/load.js';
import { executeInOrder } from '../contract/backend-contract.js';
import { startBlackHole } from '../support/black-hole.js';
import { startProxy } from '../support/http-proxy.js';
import { contentsOf, expectDenied, newKey, readObject, rgwFixture, s3As, type Key } from '../support/rgw.js';

const fx = rgwFixture('driver');
const INSTALLATION = 'inst-driver';
let backend: Backend;
let data: string;
let other: string;

/** What the store would hold: every credential issued, current or retiring. */
const credentials: KnownCredential[] = [];
const secrets = new Map<string, Key>();

const specText = () => `version: 1
backends:
  onprem: { type: rgw, endpoint: "${fx.rgw.endpoint}", accessKeyId: "\${K}", secretAccessKey: "\${S}", userPrefix: ${fx.prefix} }
datasets:
  training: { backend: onprem, bucket: ${data}, prefix: training/ }
  art: { backend: onprem, bucket: ${other} }
groups:
  readers: { grants: [{ dataset: training, access: read }] }
  ml_team: { grants: [{ dataset: art, access: read }] }
principals:
  alice: { type: person, groups: [readers, ml_team], grants: [{ dataset: art, access: write }] }
  bob: { type: service, groups: [readers] }
`;

function planNow(actual: Awaited<ReturnType<Backend['read']>>, opts: { forceRotate?: string[]; now?: Date } = {}): Plan {
  const now = opts.now ?? new Date();
  const { spec } = parseSpec(specText(), { file: 'driver.yaml', env: { K: 'k', S: 's' }, now });
  const desired = { onprem: compile(spec, now, { installation: INSTALLATION }).desired.onprem! };
  return diff(desired, { onprem: actual }, { now, specHash: 'driver', ...(opts.forceRotate ? { forceRotate: opts.forceRotate } : {}) });
}

/** Executes the changes as apply does, keeping `credentials` as the store would. */
async function run(changes: Change[]): Promise<void> {
  await executeInOrder(backend, changes, {
    onResult: (c, r) => {
      if (!r.credential || !r.secret) return;
      if (c.action === 'replace') {
        for (const k of credentials)
          if (k.address === c.address && k.state === 'current')
            Object.assign(k, { state: 'retiring', retireAt: new Date(Date.now() + 3600_000).toISOString() });
      }
      credentials.push({ address: c.address, credentialId: r.credential.credentialId, createdAt: r.credential.createdAt, state: 'current' });
      secrets.set(r.credential.credentialId, { accessKeyId: r.secret.accessKeyId!, secretAccessKey: r.secret.secretAccessKey! });
    },
  });
}

const read = () => backend.read({ credentials });
const current = (principal: string) => secrets.get(credentials.find((c) => c.address === `onprem:key/${principal}` && c.state === 'current')!.credentialId)!;
const changesOf = (p: Plan) => p.changes.map((c) => `${c.action} ${c.address}`);
const uid = (principal: string) => `${fx.prefix}${principal}`;

/** alice reads the training data and writes art, with her key, on the gateway. */
async function aliceWorks(key: Key): Promise<void> {
  const s3 = s3As(fx.rgw, key);
  try {
    expect(await readObject(s3, data, 'training/a.txt')).toBe(contentsOf(data, 'training/a.txt'));
    await s3.send(new PutObjectCommand({ Bucket: other, Key: `by-alice-${Date.now()}`, Body: 'x' }));
  } finally {
    s3.destroy();
  }
}

beforeAll(async () => {
  data = await fx.makeBucket('data', ['training/a.txt', 'private/b.txt']);
  other = await fx.makeBucket('art', ['model.bin']);
  backend = createRgwBackend({ name: 'onprem', endpoint: fx.rgw.endpoint, credentials: fx.rgw.admin, userPrefix: fx.prefix, installation: INSTALLATION });
  await run(planNow(await read()).changes);
});
afterAll(async () => {
  await backend?.close();
  await fx.cleanup();
});

describe('groups flattened into inline policies', () => {
  test('each member holds one policy per group, named for the group, and one for its direct grants', async () => {
    expect(await fx.policyNames(uid('alice'))).toEqual(['dg-boundary', 'dg-direct-grants', 'dg-group-ml:team', 'dg-group-readers']);
    expect(await fx.policyNames(uid('bob'))).toEqual(['dg-boundary', 'dg-group-readers']);
    expect(changesOf(planNow(await read()))).toEqual([]);
    await aliceWorks(current('alice'));
  });
});

describe('Ceph bug 48761: any change to a user deletes its inline policies', () => {
  test('the bug is real on this gateway: a key made by hand leaves the user no policy', async () => {
    // GIVEN bob with his policy; WHEN a key is added by hand, as an operator might
    expect(await fx.policyNames(uid('bob'))).toEqual(['dg-boundary', 'dg-group-readers']);
    const key = newKey();
    await fx.admin.admin(
      'PUT',
      '/admin/user',
      { key: '', uid: uid('bob'), 'access-key': key.accessKeyId, 'secret-key': key.secretAccessKey },
      'test: a key by hand',
    );
    // THEN RGW dropped his policies
    expect(await fx.policyNames(uid('bob'))).toEqual([]);
    // AND the plan repairs it: the policy is put back and the unknown key deleted, never accepted as is
    const plan = planNow(await read());
    expect(changesOf(plan).sort()).toEqual(
      [`create onprem:inline-policy/bob/dg-boundary`, `create onprem:inline-policy/bob/dg-group-readers`, `delete onprem:key/bob~${key.accessKeyId}`].sort(),
    );
    await run(plan.changes);
    expect(await fx.policyNames(uid('bob'))).toEqual(['dg-boundary', 'dg-group-readers']);
    expect((await fx.user(uid('bob')))!.keys).toEqual([current('bob').accessKeyId]);
    expect(changesOf(planNow(await read()))).toEqual([]);
  });

  test('rotating a key leaves every policy in place, and the new key works at once', async () => {
    const before = (await fx.user(uid('alice')))!.policies;
    const old = current('alice');
    // WHEN alice's key is rotated
    const plan = planNow(await read(), { forceRotate: ['onprem:key/alice'] });
    expect(changesOf(plan)).toEqual(['replace onprem:key/alice']);
    await run(plan.changes);
    // THEN her policies are exactly as they were, and both keys work (the old one in its grace)
    const after = await fx.user(uid('alice'));
    expect(after!.policies).toEqual(before);
    expect(after!.keys.sort()).toEqual([old.accessKeyId, current('alice').accessKeyId].sort());
    await aliceWorks(current('alice'));
    await aliceWorks(old);
    expect(changesOf(planNow(await read()))).toEqual([]);
  });

  test('deleting the superseded key once its grace ends leaves the policies too, and the old key is refused', async () => {
    const old = credentials.find((c) => c.address === 'onprem:key/alice' && c.state === 'retiring')!;
    old.retireAt = new Date(Date.now() - 1000).toISOString();
    const before = (await fx.user(uid('alice')))!.policies;
    const plan = planNow(await read());
    expect(changesOf(plan)).toEqual([`delete onprem:key/alice~${old.credentialId}`]);
    await run(plan.changes);
    expect((await fx.user(uid('alice')))!.policies).toEqual(before);
    await expectDenied(readObject(s3As(fx.rgw, secrets.get(old.credentialId)!), data, 'training/a.txt'), 'the deleted key');
    await aliceWorks(current('alice'));
  });

  test('suspending a user (a key deactivated) and reinstating it leave the policies in place', async () => {
    const before = (await fx.user(uid('alice')))!.policies;
    const actual = await read();
    const key = actual.resources.find((r) => r.address === 'onprem:key/alice')!;
    // WHEN the key is deactivated, as mass deprovisioning does while a person confirms
    await run([
      {
        address: key.address,
        backend: 'onprem',
        kind: 'key',
        action: 'update',
        before: key,
        after: { ...key, attrs: { ...key.attrs, status: 'Inactive' } },
        drift: false,
        reason: 'test',
      },
    ]);
    // THEN the key is refused, the policies are still there, and the plan reinstates the key
    await expectDenied(readObject(s3As(fx.rgw, current('alice')), data, 'training/a.txt'), 'the key of a suspended user');
    expect((await fx.user(uid('alice')))!.policies).toEqual(before);
    const plan = planNow(await read());
    expect(changesOf(plan)).toEqual(['update onprem:key/alice']);
    await run(plan.changes);
    expect((await fx.user(uid('alice')))!.policies).toEqual(before);
    await aliceWorks(current('alice'));
  });

  test('settings changed by hand are reverted, and the policies the change deleted are put back', async () => {
    // GIVEN caps, a bucket allowance and the system flag's absence changed by hand (each a user change)
    await fx.admin.admin('PUT', '/admin/user', { caps: '', uid: uid('alice'), 'user-caps': 'users=read' }, 'test: a cap by hand');
    await fx.admin.admin('POST', '/admin/user', { uid: uid('alice'), 'max-buckets': '5' }, 'test: buckets by hand');
    expect(await fx.policyNames(uid('alice'))).toEqual([]);
    // THEN the plan reverts the settings and puts the policies back
    const plan = planNow(await read());
    expect(changesOf(plan).sort()).toEqual(
      [
        'update onprem:user/alice',
        'create onprem:inline-policy/alice/dg-boundary',
        'create onprem:inline-policy/alice/dg-direct-grants',
        'create onprem:inline-policy/alice/dg-group-ml:team',
        'create onprem:inline-policy/alice/dg-group-readers',
      ].sort(),
    );
    expect(plan.changes.find((c) => c.kind === 'user')!.reason).toMatch(/caps, maxBuckets/);
    await run(plan.changes);
    const after = (await fx.user(uid('alice')))!;
    expect([after.caps, after.maxBuckets]).toEqual([[], -1]);
    expect(Object.keys(after.policies!).sort()).toEqual(['dg-boundary', 'dg-direct-grants', 'dg-group-ml:team', 'dg-group-readers']);
    expect(changesOf(planNow(await read()))).toEqual([]);
    await aliceWorks(current('alice'));
  });
});

describe('PutUserPolicy URL-decodes its parameters twice', () => {
  const resource = () => `arn:aws:s3:::${data}/odd+name%2A%25x/*`;
  const document = () => ({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: [resource()] }] });

  test('sent as is, + becomes a space and %2A the wildcard *: the gateway would hold another grant', async () => {
    await fx.admin.iam.send(new PutUserPolicyCommand({ UserName: uid('bob'), PolicyName: 'raw', PolicyDocument: JSON.stringify(document()) }));
    const held = (await fx.admin.iam.send(new GetUserPolicyCommand({ UserName: uid('bob'), PolicyName: 'raw' }))).PolicyDocument!;
    expect(JSON.parse(held).Statement[0].Resource).toEqual([`arn:aws:s3:::${data}/odd name*%x/*`]);
    // and the plan removes a policy datagrant did not make
    const plan = planNow(await read());
    expect(changesOf(plan)).toEqual(['delete onprem:inline-policy/bob/raw']);
    await run(plan.changes);
  });

  test('through the driver, a document with + and % round-trips exactly', async () => {
    const r = inlinePolicyResource('onprem', 'odd', { user: 'bob', document: document() });
    await run([{ address: r.address, backend: 'onprem', kind: r.kind, action: 'create', before: null, after: r, drift: false, reason: 'test' }]);
    const held = (await fx.admin.iam.send(new GetUserPolicyCommand({ UserName: uid('bob'), PolicyName: 'odd' }))).PolicyDocument!;
    expect(JSON.parse(held)).toEqual(document());
    expect((await read()).resources.find((x) => x.address === r.address)!.attrs.document).toEqual(document());
    await run(planNow(await read()).changes);
  });

  test('the spec refuses a prefix with +, % or : for any S3 backend, rgw included', () => {
    for (const prefix of ['a+b/', 'a%2A/', 'a:b/']) {
      const text = specText().replace('prefix: training/', `prefix: "${prefix}"`);
      expect(() => parseSpec(text, { file: 'driver.yaml', env: { K: 'k', S: 's' }, now: new Date() }), prefix).toThrow(SpecError);
    }
  });
});

describe('a key creation whose answer was lost', () => {
  test('leaves no key nobody recorded, and the policies in place; repeating the change issues one key', async () => {
    // GIVEN a gateway that makes the key and then answers 503, as a failing proxy would
    const proxy = await startProxy(fx.rgw.endpoint);
    const flaky = createRgwBackend({ name: 'onprem', endpoint: proxy.endpoint, credentials: fx.rgw.admin, userPrefix: fx.prefix, installation: INSTALLATION });
    proxy.onForwarded = (_n, req) => (req.method === 'PUT' && /^\/admin\/user\?(.*&)?key=/.test(req.url ?? '') ? 503 : false);
    try {
      const before = await fx.user(uid('bob'));
      const key = (await flaky.read({ credentials })).resources.find((r) => r.address === 'onprem:key/bob')!;
      const rotate: Change = { address: key.address, backend: 'onprem', kind: 'key', action: 'replace', before: key, after: key, drift: false, reason: 'test' };
      // WHEN the key is issued
      let failure: unknown;
      await flaky.execute(rotate).catch((e: unknown) => (failure = e));
      // THEN the change fails as one worth repeating, and the gateway holds what it held before
      expect(failure).toBeInstanceOf(BackendError);
      expect((failure as BackendError).retryable).toBe(true);
      const after = await fx.user(uid('bob'));
      expect(after!.keys).toEqual(before!.keys);
      expect(after!.policies).toEqual(before!.policies);
      // AND once the gateway answers again, the change issues exactly one new key
      proxy.onForwarded = undefined;
      const issued = await flaky.execute(rotate);
      expect((await fx.user(uid('bob')))!.keys.sort()).toEqual([...before!.keys, issued.credential!.credentialId].sort());
      expect((await fx.user(uid('bob')))!.policies).toEqual(before!.policies);
      // (the test's own key is removed again)
      await flaky.execute({
        ...rotate,
        address: `${key.address}~${issued.credential!.credentialId}`,
        action: 'delete',
        after: null,
        before: { ...key, meta: { accessKeyId: issued.credential!.credentialId } },
      });
    } finally {
      await flaky.close();
      await proxy.close();
    }
  });
});

describe('the ownership boundary', () => {
  test("a user under the prefix without datagrant's mark is invisible, and is never taken over", async () => {
    // GIVEN a driver that last read the gateway before carol was made by hand under the prefix
    const fresh = createRgwBackend({ name: 'onprem', endpoint: fx.rgw.endpoint, credentials: fx.rgw.admin, userPrefix: fx.prefix, installation: INSTALLATION });
    const bob = (await fresh.read({ credentials })).resources.find((r) => r.address === 'onprem:user/bob')!;
    await fx.admin.admin('PUT', '/admin/user', { uid: uid('carol'), 'display-name': 'Carol, by hand', 'generate-key': 'false' }, 'test: carol');
    const carol = { ...bob, address: 'onprem:user/carol', name: 'carol' };
    const create: Change = {
      address: carol.address,
      backend: 'onprem',
      kind: 'user',
      action: 'create',
      before: null,
      after: carol,
      drift: false,
      reason: 'test',
    };
    try {
      // WHEN a plan (or an edited plan file) creates carol: refused inside the change, on what it finds
      await expect(fresh.execute(create)).rejects.toThrow(/refused: an RGW user .*carol exists without datagrant's mark/);
      // AND a read sees nothing of carol, and the next change about her is refused before any request
      expect((await read()).resources.map((r) => r.address).filter((a) => a.includes('carol'))).toEqual([]);
      await expect(backend.execute(create)).rejects.toThrow(/refused: RGW user .*carol is not datagrant's/);
    } finally {
      await fresh.close();
    }
    expect((await fx.user(uid('carol')))!.displayName).toBe('Carol, by hand');
  });

  test("another installation's users under the same prefix are reported, never planned", async () => {
    await fx.admin.admin(
      'PUT',
      '/admin/user',
      { uid: uid('dave'), 'display-name': rgwMarker(fx.prefix, 'someone-else'), 'generate-key': 'false' },
      'test: dave',
    );
    await fx.admin.admin(
      'PUT',
      '/admin/user',
      { uid: `${fx.prefix}team-erin`, 'display-name': rgwMarker(`${fx.prefix}team-`, INSTALLATION), 'generate-key': 'false' },
      'test: erin',
    );
    const actual = await read();
    expect(actual.foreign).toEqual([{ address: 'onprem:user/dave', installation: 'someone-else' }]);
    // a user of a nested prefix is neither ours nor foreign: invisible
    expect(actual.resources.map((r) => r.address).filter((a) => /dave|erin/.test(a))).toEqual([]);
    await fx.admin.admin('DELETE', '/admin/user', { uid: uid('dave') }, 'test: dave goes');
  });
});

describe('deadlines and counting', () => {
  test('a gateway that accepts and never answers fails the read within the request deadline, naming it', async () => {
    const hole = await startBlackHole();
    const stuck = createRgwBackend({
      name: 'onprem',
      endpoint: `http://127.0.0.1:${hole.port}`,
      credentials: fx.rgw.admin,
      userPrefix: fx.prefix,
      deadlines: { connectMs: 2000, requestMs: 300 },
    });
    try {
      const started = Date.now();
      await expect(stuck.read({ credentials: [] })).rejects.toThrow(/no answer from http:\/\/127\.0\.0\.1:\d+ within 0\.3 s \(request timeout\)/);
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await stuck.close();
      await hole.close();
    }
  });

  test('a read costs one list request and one request per user under the prefix', async () => {
    const counted = createRgwBackend({
      name: 'onprem',
      endpoint: fx.rgw.endpoint,
      credentials: fx.rgw.admin,
      userPrefix: fx.prefix,
      installation: INSTALLATION,
    });
    try {
      await counted.read({ credentials });
      const all = JSON.parse(await fx.admin.admin('GET', '/admin/metadata/user', {}, 'test: list')) as string[];
      const mine = all.filter((u) => u.startsWith(fx.prefix)).length;
      // One list request per 1,000 uids of the whole gateway (other tests' users count there).
      expect(counted.stats().requests - mine).toBeGreaterThanOrEqual(1);
      expect(counted.stats().requests - mine).toBeLessThanOrEqual(Math.floor(all.length / 1000) + 2);
    } finally {
      await counted.close();
    }
  });
});

describe('what the issued keys can do', () => {
  test('read allowed, write and other prefixes denied, for a reader through a group', async () => {
    const s3 = s3As(fx.rgw, current('bob'));
    try {
      expect(await readObject(s3, data, 'training/a.txt')).toBe(contentsOf(data, 'training/a.txt'));
      expect((await s3.send(new ListObjectsV2Command({ Bucket: data, Prefix: 'training/' }))).Contents?.map((o) => o.Key)).toEqual(['training/a.txt']);
      await expectDenied(s3.send(new PutObjectCommand({ Bucket: data, Key: 'training/new.txt', Body: 'x' })), 'a write');
      await expectDenied(s3.send(new GetObjectCommand({ Bucket: data, Key: 'private/b.txt' })), 'another prefix');
      await expectDenied(s3.send(new ListObjectsV2Command({ Bucket: data })), 'listing the whole bucket');
      await expectDenied(s3.send(new GetObjectCommand({ Bucket: other, Key: 'model.bin' })), 'another dataset');
    } finally {
      s3.destroy();
    }
  });
});
