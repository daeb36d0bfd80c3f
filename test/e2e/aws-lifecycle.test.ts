// Issue 3 against moto: rotation with grace, expiry with an injected clock, deprovisioning order,
// and every drift case reverted. Proofs use the issued keys; a second plan is empty after each.
import {
  AddUserToGroupCommand,
  AttachUserPolicyCommand,
  CreateAccessKeyCommand,
  CreateGroupCommand,
  CreateLoginProfileCommand,
  CreatePolicyVersionCommand,
  DeleteAccessKeyCommand,
  GetUserCommand,
  GetUserPolicyCommand,
  ListAttachedUserPoliciesCommand,
  ListGroupsForUserCommand,
  ListUserTagsCommand,
  PutUserPolicyCommand,
  UntagUserCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { expectAccessDenied, startMoto, type AwsKey, type Moto } from '../support/moto.js';
import type { Workspace } from '../support/cli.js';
import { adminIam, apply, canRead, expectNoChanges, initWorkspace, issuedKey, keyIsDead, keysOf, s3For, useMotoAdmin } from './aws-support.js';

let moto: Moto;
let ws: Workspace;
let iam: IAMClient;
const HOUR = 3600_000;

beforeAll(async () => {
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
  iam?.destroy();
});

const read = (moto: Moto, key: AwsKey) => canRead(s3For(moto, key), 'ai-model-data', 'training/a.txt');

describe('rotation', () => {
  const SPEC = `version: 1
settings: { rotate: 1d, rotationGrace: 1h }
backends: { aws: { type: aws } }
datasets: { data: { backend: aws, bucket: ai-model-data } }
principals:
  trainer: { type: service, grants: [{ dataset: data, access: read }] }
`;

  test('a due key is replaced; the old one works through its grace, then is deleted; never 3 keys', async () => {
    ws = await initWorkspace(SPEC);
    await apply(ws);
    const k1 = await issuedKey(ws, 'trainer');
    const start = Date.now();

    // 25 hours later the key is due
    ws.now = () => new Date(start + 25 * HOUR);
    const plan = await ws.run('plan');
    expect(plan.stdout).toMatch(/-\/\+ aws:key\/trainer/);
    expect(plan.stdout).toMatch(/rotation due \(older than 1d\)/);
    await apply(ws);
    const k2 = await issuedKey(ws, 'trainer');
    expect(k2.accessKeyId).not.toBe(k1.accessKeyId);
    expect(await keysOf(iam, 'trainer')).toEqual([k1.accessKeyId, k2.accessKeyId].sort());
    await read(moto, k1); // still valid in its grace period
    await read(moto, k2);

    // within the grace period nothing changes
    ws.now = () => new Date(Date.now() + 30 * 60_000);
    await expectNoChanges(ws);

    // after the grace period the old key is deleted
    ws.now = () => new Date(Date.now() + 2 * HOUR);
    const out = await apply(ws);
    expect(out).toMatch(/rotation grace ended/);
    await keyIsDead(moto, k1);
    await read(moto, k2);
    expect(await keysOf(iam, 'trainer')).toEqual([k2.accessKeyId]);
    await expectNoChanges(ws);
  });

  test('credentials rotate forces a new key; rotating again within the grace retires the oldest first', async () => {
    ws = await initWorkspace(SPEC);
    await apply(ws);
    const k1 = await issuedKey(ws, 'trainer');
    expect((await ws.run('credentials', 'rotate', 'trainer')).code).toBe(0);
    const k2 = await issuedKey(ws, 'trainer');
    expect(await keysOf(iam, 'trainer')).toHaveLength(2);
    const r = await ws.run('credentials', 'rotate', 'trainer');
    expect(r.code, r.stderr).toBe(0);
    const k3 = await issuedKey(ws, 'trainer');
    expect(await keysOf(iam, 'trainer')).toEqual([k2.accessKeyId, k3.accessKeyId].sort());
    await keyIsDead(moto, k1);
    await read(moto, k2);
    await read(moto, k3);
    const list = (await ws.run('credentials', 'list')).stdout;
    expect(list).toMatch(/retiring/);
  });
});

describe('expiry', () => {
  test('compiles to an aws:CurrentTime condition, and the first apply after it removes the access', async () => {
    const expires = new Date(Date.now() + 3 * 86400_000);
    expires.setUTCMilliseconds(0);
    const iso = expires.toISOString().replace('.000Z', 'Z');
    ws = await initWorkspace(`version: 1
backends: { aws: { type: aws } }
datasets:
  data: { backend: aws, bucket: ai-model-data }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
principals:
  contractor: { type: person, grants: [{ dataset: data, access: read, expires: ${iso} }] }
  trainer:
    type: service
    grants:
      - { dataset: artifacts, access: read }
      - { dataset: data, access: read, expires: ${iso} }
`);
    const plan = await ws.run('plan');
    expect(plan.stdout).toMatch(/read access to data expires at .* \(in 3 days\)/);
    await apply(ws);
    // AWS itself stops honouring the grant at that instant (moto ignores conditions, so check the document)
    const pol = await iam.send(new GetUserPolicyCommand({ UserName: 'contractor', PolicyName: 'dg-direct-grants' }));
    const doc = JSON.parse(decodeURIComponent(pol.PolicyDocument!)) as { Statement: { Condition?: unknown }[] };
    for (const s of doc.Statement) expect(s.Condition).toMatchObject({ DateLessThan: { 'aws:CurrentTime': [iso] } });
    const contractor = await issuedKey(ws, 'contractor');
    const trainer = await issuedKey(ws, 'trainer');
    await read(moto, contractor);
    await read(moto, trainer);

    // one minute after expiry
    ws.now = () => new Date(expires.getTime() + 60_000);
    const out = await apply(ws);
    expect(out).toContain('- aws:user/contractor');
    await keyIsDead(moto, contractor);
    await expectAccessDenied(s3For(moto, trainer).send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' })));
    await canRead(s3For(moto, trainer), 'ai-model-artifacts', 'model.bin');
    await expectNoChanges(ws);
  });
});

describe('deprovisioning', () => {
  test('a user with keys, groups, attachments, an inline policy and a login profile is removed cleanly, keys first', async () => {
    // The leaver's direct grants are too large for an inline policy: a managed policy it alone holds.
    const many = Array.from({ length: 16 }, (_, i) => `part-${i}`);
    const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  data: { backend: aws, bucket: ai-model-data }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
${many.map((d) => `  ${d}: { backend: aws, bucket: ai-model-artifacts, prefix: ${d}/ }`).join('\n')}
groups:
  readers: { grants: [{ dataset: data, access: read }] }
principals:
  leaver: { type: person, groups: [readers], grants: [{ dataset: artifacts, access: read }, ${many.map((d) => `{ dataset: ${d}, access: write }`).join(', ')}] }
  stayer: { type: person, groups: [readers] }
`;
    ws = await initWorkspace(SPEC);
    await apply(ws);
    const key = await issuedKey(ws, 'leaver');
    // things people attach by hand
    await iam.send(
      new PutUserPolicyCommand({
        UserName: 'leaver',
        PolicyName: 'handmade',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] }),
      }),
    );
    await iam.send(new CreateLoginProfileCommand({ UserName: 'leaver', Password: 'Console-Passw0rd!' }));

    ws.writeSpec(SPEC.replace(/ {2}leaver: .*\n/, ''));
    await apply(ws);
    await expect(iam.send(new GetUserCommand({ UserName: 'leaver' }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });
    await keyIsDead(moto, key);
    await read(moto, await issuedKey(ws, 'stayer'));

    // the audit trail shows the fixed order: keys → policies → inline → memberships → user
    const log = JSON.parse((await ws.run('audit', 'log', '--json')).stdout) as { event: string; address: string | null }[];
    const order = log.filter((e) => e.event === 'change.delete' && e.address?.includes('leaver')).map((e) => e.address!.split(':')[1]!.split('/')[0]);
    const rank = { key: 0, attachment: 1, 'inline-policy': 2, membership: 3, user: 4 } as Record<string, number>;
    const userParts = order.filter((k) => k! in rank);
    const ranks = userParts.map((k) => rank[k!]!);
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    expect(new Set(userParts)).toEqual(new Set(Object.keys(rank)));
    expect(order[0]).toBe('key');
    // the policy only the leaver held goes too, once nothing is attached to it
    const deleted = log.filter((e) => e.event === 'change.delete').map((e) => e.address);
    const shared = deleted
      .find((a) => a?.startsWith('aws:attachment/user/leaver/dg-shared-'))!
      .split('/')
      .pop();
    expect(deleted.indexOf(`aws:policy/${shared}`)).toBeGreaterThan(deleted.indexOf(`aws:attachment/user/leaver/${shared}`));
    // and the secret is erased from the store, the audit log keeps the record
    expect((await ws.run('credentials', 'list')).stdout).not.toContain('leaver');
    expect(log.some((e) => e.event === 'credential.erase' && e.address === 'aws:key/leaver')).toBe(true);
    await expectNoChanges(ws);
  });
});

describe('drift', () => {
  const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets: { data: { backend: aws, bucket: ai-model-data, prefix: training/ } }
groups:
  readers: { grants: [{ dataset: data, access: read }] }
principals:
  alice: { type: person, groups: [readers], grants: [{ dataset: data, access: read }] }
`;
  const ACCOUNT = '123456789012';

  const cases: [string, (iam: IAMClient, ws: Workspace) => Promise<void>, RegExp, (iam: IAMClient) => Promise<void>][] = [
    [
      'an extra statement in a managed policy',
      async (iam) => {
        const arn = `arn:aws:iam::${ACCOUNT}:policy/datagrant/dg-group-readers`;
        await iam.send(
          new CreatePolicyVersionCommand({
            PolicyArn: arn,
            SetAsDefault: true,
            PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:*'], Resource: ['*'] }] }),
          }),
        );
      },
      /~ aws:policy\/dg-group-readers/,
      async () => {
        const s3 = s3For(moto, await issuedKey(ws, 'alice'));
        await expectAccessDenied(s3.send(new GetObjectCommand({ Bucket: 'other-bucket', Key: 'secret.txt' })));
      },
    ],
    [
      'an attached AdministratorAccess',
      (iam) => iam.send(new AttachUserPolicyCommand({ UserName: 'alice', PolicyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' })).then(() => undefined),
      /- aws:attachment\/user\/alice\/.*AdministratorAccess/,
      async (iam) => {
        const att = await iam.send(new ListAttachedUserPoliciesCommand({ UserName: 'alice' }));
        // (alice's own grant is her inline policy)
        expect(att.AttachedPolicies?.map((p) => p.PolicyName)).toEqual([]);
      },
    ],
    [
      'an extra group membership',
      async (iam) => {
        await iam.send(new CreateGroupCommand({ GroupName: 'admins', Path: '/' }));
        await iam.send(new AddUserToGroupCommand({ GroupName: 'admins', UserName: 'alice' }));
      },
      /- aws:membership\/admins\/alice/,
      async (iam) => {
        const g = await iam.send(new ListGroupsForUserCommand({ UserName: 'alice' }));
        expect(g.Groups?.map((x) => x.GroupName)).toEqual(['readers']);
      },
    ],
    [
      'a deleted key',
      async (iam) => {
        for (const id of await keysOf(iam, 'alice')) await iam.send(new DeleteAccessKeyCommand({ UserName: 'alice', AccessKeyId: id }));
      },
      /\+ aws:key\/alice/,
      async () => read(moto, await issuedKey(ws, 'alice')),
    ],
    [
      'an extra key',
      async (iam) => {
        const k = await iam.send(new CreateAccessKeyCommand({ UserName: 'alice' }));
        extraKey = { accessKeyId: k.AccessKey!.AccessKeyId!, secretAccessKey: k.AccessKey!.SecretAccessKey! };
      },
      /- aws:key\/alice~/,
      async (iam) => {
        await keyIsDead(moto, extraKey!);
        expect(await keysOf(iam, 'alice')).toHaveLength(1);
      },
    ],
    [
      'a removed tag',
      (iam) => iam.send(new UntagUserCommand({ UserName: 'alice', TagKeys: ['datagrant:managed'] })).then(() => undefined),
      /~ aws:user\/alice/,
      async (iam) => {
        const t = await iam.send(new ListUserTagsCommand({ UserName: 'alice' }));
        expect(t.Tags).toContainEqual({ Key: 'datagrant:managed', Value: 'true' });
      },
    ],
  ];
  let extraKey: AwsKey | undefined;

  test.each(cases)('%s shows as drift and is reverted', async (_name, tamper, shown, check) => {
    ws = await initWorkspace(SPEC);
    await apply(ws);
    expect((await ws.run('drift')).code).toBe(0);
    await tamper(iam, ws);
    const d = await ws.run('drift');
    expect(d.code, d.stdout + d.stderr).toBe(2);
    expect(d.stdout).toMatch(shown);
    expect(d.stdout).toMatch(/drift/);
    const plan = await ws.run('plan', '--detailed-exitcode', '--exact');
    expect(plan.code).toBe(2);
    await apply(ws);
    await check(iam);
    expect((await ws.run('drift')).code).toBe(0);
    await expectNoChanges(ws);
  });
});
