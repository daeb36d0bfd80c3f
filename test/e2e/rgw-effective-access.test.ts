// Issue 13 on a real Ceph RADOS gateway: effective access read through the admin API by the normal
// driver factory. After datagrant applies a spec, its users hold their datasets through its own
// policies; then users made by hand, one kind of path each — a user policy, a bucket policy, a
// bucket's owner, a WRITE grant in a bucket's ACL, a subuser, a suspended user, caps — are each
// reported with the right level and partial flag, and the keys of each prove the access real while
// what is not reported is refused (dg-boundary's Deny included). `datagrant access` sets it beside
// the spec with nothing incomplete.
import { CreateBucketCommand, PutBucketAclCommand, PutBucketPolicyCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { closeBackends, makeBackends } from '../../src/backends/factory.js';
import { NO_KEY_RECORD } from '../../src/backends/rgw/effective.js';
import type { Level } from '../../src/core/types.js';
import type { AccessReading, AccessReport } from '../../src/model/access.js';
import { parseSpec } from '../../src/spec/load.js';
import { openStore, statePaths } from '../../src/store/open.js';
import type { Workspace } from '../support/cli.js';
import { contentsOf, expectDenied, newKey, readObject, rgwFixture, s3As, type Key } from '../support/rgw.js';
import { apply, initWorkspace } from './aws-support.js';

const fx = rgwFixture('rgwacc');
let data: string;
let other: string;
let owned: string;
let ws: Workspace;
let backends: Record<string, Backend>;
let backend: Backend;

const spec = () => `version: 1
backends:
  onprem:
    type: rgw
    endpoint: ${fx.rgw.endpoint}
    accessKeyId: \${RGW_ADMIN_KEY_ID}
    secretAccessKey: \${RGW_ADMIN_SECRET}
    userPrefix: ${fx.prefix}
datasets:
  training: { backend: onprem, bucket: ${data}, prefix: training/ }
  other: { backend: onprem, bucket: ${other} }
  owned: { backend: onprem, bucket: ${owned} }
groups:
  researchers: { grants: [{ dataset: training, access: read }] }
principals:
  alice: { type: person, email: alice@example.com, groups: [researchers] }
  wes: { type: service, grants: [{ dataset: training, access: write }] }
`;

/** A user made by hand under the prefix (so the fixture removes it), with a key of its own. */
async function handUser(name: string): Promise<{ uid: string; key: Key }> {
  const uid = `${fx.prefix}${name}`;
  const key = newKey();
  await fx.admin.admin('PUT', '/admin/user', { uid, 'display-name': 'made by hand' }, 'test: a hand-made user');
  await fx.admin.admin('PUT', '/admin/user', { key: '', uid, 'access-key': key.accessKeyId, 'secret-key': key.secretAccessKey }, 'test: its key');
  return { uid, key };
}
const policy = (statement: object) => JSON.stringify({ Version: '2012-10-17', Statement: [statement] });

async function exported(name: string): Promise<Key> {
  const r = await ws.run('credentials', 'export', name, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const k = JSON.parse(r.stdout) as { AccessKeyId: string; SecretAccessKey: string };
  return { accessKeyId: k.AccessKeyId, secretAccessKey: k.SecretAccessKey };
}

beforeAll(async () => {
  data = await fx.makeBucket('data', ['training/a.txt', 'private/b.txt']);
  other = await fx.makeBucket('other', ['x.txt', 'pub/y.txt']);
  owned = fx.bucket('owned');
  ws = await initWorkspace(spec());
  ws.env.RGW_ADMIN_KEY_ID = fx.rgw.admin.accessKeyId;
  ws.env.RGW_ADMIN_SECRET = fx.rgw.admin.secretAccessKey;
  // the bucket a hand-made user makes (its owner) must exist before the reading
  const own = await handUser('own');
  await s3As(fx.rgw, own.key).send(new CreateBucketCommand({ Bucket: owned }));
  await s3As(fx.rgw, own.key).send(new PutObjectCommand({ Bucket: owned, Key: 'o.txt', Body: contentsOf(owned, 'o.txt') }));
  ownKey = own.key;
  ownUid = own.uid;
  await apply(ws);
  const store = await openStore(statePaths(join(ws.dir, '.datagrant')), ws.env);
  const installation = await store.installation();
  await store.close();
  const { spec: parsed } = parseSpec(spec(), { file: 'datagrant.yaml', env: ws.env, now: new Date() });
  backends = makeBackends(parsed, { installation });
  backend = backends.onprem!;
}, 120_000);
afterAll(async () => {
  await closeBackends(backends ?? {});
  ws?.cleanup();
  await fx.cleanup();
});
let ownKey: Key;
let ownUid: string;

const DATASETS = () => [
  { name: 'training', bucket: data, prefix: 'training/' },
  { name: 'other', bucket: other },
  { name: 'owned', bucket: owned },
];
const read = () => backend.readAccess!({ datasets: DATASETS() });
const row = (r: AccessReading, dataset: string, level: Level, holder: string) =>
  r.rows.find((x) => x.dataset === dataset && x.level === level && x.holder.id === holder);
const vias = (r: AccessReading, dataset: string, level: Level, holder: string) =>
  row(r, dataset, level, holder)?.paths.map((p) => `${p.via}${p.partial ? ' [partial]' : ''}${p.managed ? ' [managed]' : ''}`);
const levels = (r: AccessReading, dataset: string, holder: string) => r.rows.filter((x) => x.dataset === dataset && x.holder.id === holder).map((x) => x.level);

describe('effective access on RGW', () => {
  test("right after apply: datagrant's users hold the spec's levels through its own policies", async () => {
    const r = await read();
    expect(r.failures).toEqual([]);
    const alice = `${fx.prefix}alice`;
    const wes = `${fx.prefix}wes`;
    expect(levels(r, 'training', alice)).toEqual(['read']);
    expect(vias(r, 'training', 'read', alice)).toEqual([`inline policy dg-group-researchers of user ${alice} [managed]`]);
    expect(row(r, 'training', 'read', alice)!.holder).toEqual({ id: alice, kind: 'rgw-user', name: alice, managed: true, principal: 'alice' });
    expect(levels(r, 'training', wes)).toEqual(['read', 'write']);
    expect(vias(r, 'training', 'write', wes)).toEqual([`inline policy dg-direct-grants of user ${wes} [managed]`]);
    expect(levels(r, 'other', alice)).toEqual([]);
    for (const u of [alice, wes]) expect(r.usage).toContainEqual(expect.objectContaining({ holder: u, unknown: NO_KEY_RECORD }));
    // the bucket's owner, by hand: every level, through ownership
    expect(levels(r, 'owned', ownUid)).toEqual(['read', 'write', 'admin']);
    expect(vias(r, 'owned', 'read', ownUid)).toEqual([`owner of bucket ${owned} (full control; may rewrite its policy and ACL)`]);
    expect(await readObject(s3As(fx.rgw, ownKey), owned, 'o.txt')).toBe(contentsOf(owned, 'o.txt'));
  });

  test('access made by hand is reported with its path, level and partial flag, and is real', async () => {
    const pol = await handUser('pol');
    // (before its policy: every change to an RGW user deletes its policies, Ceph bug 48761)
    const sub = newKey();
    await fx.admin.admin(
      'PUT',
      '/admin/user',
      { subuser: `${pol.uid}:ro`, uid: pol.uid, 'key-type': 's3', access: 'read', 'access-key': sub.accessKeyId, 'secret-key': sub.secretAccessKey },
      'test: a subuser',
    );
    await fx.admin.putUserPolicy('pol', 'hand', policy({ Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${data}/training/*`] }));
    const bp = await handUser('bp');
    await fx.s3.send(
      new PutBucketPolicyCommand({
        Bucket: other,
        Policy: JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            {
              Sid: 'ForBp',
              Effect: 'Allow',
              Principal: { AWS: [`arn:aws:iam:::user/${bp.uid}`] },
              Action: ['s3:GetObject'],
              Resource: [`arn:aws:s3:::${other}/*`],
            },
            { Sid: 'Public', Effect: 'Allow', Principal: '*', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${other}/pub/*`] },
          ],
        }),
      }),
    );
    const aclw = await handUser('aclw');
    await s3As(fx.rgw, ownKey).send(new PutBucketAclCommand({ Bucket: owned, GrantFullControl: `id=${ownUid}`, GrantWrite: `id=${aclw.uid}` }));
    const susp = await handUser('susp');
    await fx.admin.admin('POST', '/admin/user', { uid: susp.uid, suspended: 'true' }, 'test: suspending a user');
    await fx.admin.putUserPolicy('susp', 'hand', policy({ Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${data}/training/*`] }));
    const capu = await handUser('capu');
    await fx.admin.admin('PUT', '/admin/user', { caps: '', uid: capu.uid, 'user-caps': 'users=*' }, 'test: a cap');
    const none = await handUser('none');
    await fx.admin.putUserPolicy('none', 'hand', policy({ Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${data}/private/*`] }));
    // and on datagrant's alice, a policy by hand that dg-boundary's Deny cancels
    await fx.admin.putUserPolicy('alice', 'hand', policy({ Effect: 'Allow', Action: ['s3:PutObject', 's3:GetObject'], Resource: [`arn:aws:s3:::${other}/*`] }));

    const r = await read();
    expect(r.failures).toEqual([]);

    // a user policy: read on the prefix, nothing more
    expect(levels(r, 'training', pol.uid)).toEqual(['read']);
    expect(vias(r, 'training', 'read', pol.uid)).toEqual([`inline policy hand of user ${pol.uid}`]);
    expect(await readObject(s3As(fx.rgw, pol.key), data, 'training/a.txt')).toBe(contentsOf(data, 'training/a.txt'));
    await expectDenied(s3As(fx.rgw, pol.key).send(new PutObjectCommand({ Bucket: data, Key: 'training/z.txt', Body: 'z' })));

    // its subuser: the user's access up to its permissions (read)
    expect(levels(r, 'training', `${pol.uid}:ro`)).toEqual(['read']);
    expect(vias(r, 'training', 'read', `${pol.uid}:ro`)).toEqual([`subuser of ${pol.uid} (permissions read), with its user's access`]);
    expect(await readObject(s3As(fx.rgw, sub), data, 'training/a.txt')).toBe(contentsOf(data, 'training/a.txt'));

    // a bucket policy naming the user; and anyone, on part of the bucket
    expect(vias(r, 'other', 'read', bp.uid)).toEqual([`bucket policy of ${other}, statement ForBp`]);
    expect(await readObject(s3As(fx.rgw, bp.key), other, 'x.txt')).toBe(contentsOf(other, 'x.txt'));
    expect(vias(r, 'other', 'read', '*')).toEqual([`bucket policy of ${other}, statement Public [partial]`]);

    // a WRITE grant in the bucket's ACL: write (and delete) its objects
    expect(levels(r, 'owned', aclw.uid)).toEqual(['write', 'admin']);
    expect(vias(r, 'owned', 'write', aclw.uid)).toEqual([`ACL of bucket ${owned}: WRITE (may write and delete its objects)`]);
    await s3As(fx.rgw, aclw.key).send(new PutObjectCommand({ Bucket: owned, Key: 'by-aclw.txt', Body: 'w' }));

    // a suspended user: its access holds once it is enabled, and says so; its key is refused now
    expect(row(r, 'training', 'read', susp.uid)!.paths[0]!.conditions).toEqual(['the user is suspended: its keys are refused until it is enabled']);
    await expectDenied(readObject(s3As(fx.rgw, susp.key), data, 'training/a.txt'));

    // caps that let a user become any user: admin everywhere
    expect(vias(r, 'other', 'admin', capu.uid)).toEqual(['caps users=*: may make keys for any user and act as it']);

    // a user whose policy reaches another prefix only is not reported, and is refused
    expect(r.rows.filter((x) => x.holder.id === none.uid)).toEqual([]);
    await expectDenied(readObject(s3As(fx.rgw, none.key), data, 'training/a.txt'));

    // dg-boundary denies alice everything outside her datasets: the hand-added policy gives nothing
    expect(levels(r, 'other', `${fx.prefix}alice`)).toEqual([]);
    const alice = await exported('alice');
    await expectDenied(readObject(s3As(fx.rgw, alice), other, 'x.txt'));
    expect(await readObject(s3As(fx.rgw, alice), data, 'training/a.txt')).toBe(contentsOf(data, 'training/a.txt'));
  });
});

describe('datagrant access with an RGW backend', () => {
  test('rows both and actual only, and nothing incomplete', async () => {
    const r = await ws.run('access', '--format', 'json', '--dataset', 'training');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as AccessReport;
    expect(report.incomplete).toEqual([]);
    const line = (who: string, level: Level) => report.rows.find((x) => x.who === who && x.level === level);
    expect(line('alice', 'read')).toMatchObject({ status: 'both', managed: true });
    expect(line('wes', 'write')).toMatchObject({ status: 'both', managed: true });
    expect(line(`${fx.prefix}pol`, 'read')).toMatchObject({ status: 'actual', managed: false });
    const text = await ws.run('access');
    expect(text.stdout).not.toMatch(/INCOMPLETE|cannot report effective access/);
  });
});
