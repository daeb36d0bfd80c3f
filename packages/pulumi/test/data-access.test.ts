// GIVEN a spec, WHEN the component runs under Pulumi's mock runtime, THEN it registers exactly the
// IAM objects `datagrant apply` would create, byte for byte, all parented to the component.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import { describe, expect, test } from 'vitest';
import { compileAws } from '../../../src/compile/aws/compile.js';
import { parseSpec } from '../../../src/spec/load.js';
import { DataAccess, DataAccessUser } from '../src/index.js';
import { childrenOf, parentOf, registered, settled, value, type Registered } from './mocks.js';

const NOW = new Date('2026-06-01T00:00:00Z');
const repoFile = (p: string) => fileURLToPath(new URL(`../../../${p}`, import.meta.url));

const SPEC = `
version: 1
settings:
  rotationGrace: 24h
backends:
  aws: { type: aws, region: us-east-1, iamPath: /ml/data/ }
  warehouse: { type: postgres, url: postgres://localhost/analytics }
datasets:
  training-data:   { backend: aws, bucket: ai-model-data, prefix: training/ }
  model-artifacts: { backend: aws, bucket: ai-model-artifacts }
  features:        { backend: warehouse, database: analytics, schema: features }
groups:
  ml-researchers:
    grants:
      - { dataset: training-data, access: read }
      - { dataset: features, access: read }
principals:
  alice:
    type: person
    email: alice@example.com
    groups: [ml-researchers]
  bob:
    type: person
    groups: [ml-researchers]
  trainer:
    type: service
    grants:
      - { dataset: model-artifacts, access: write }
      - { dataset: training-data, access: read, expires: 2027-01-31 }
`;

/** What datagrant's own compiler says, computed here independently of the component. */
function coreCompile(text: string, now: Date, backend = 'aws') {
  const { spec } = parseSpec(text, { file: 'spec.yaml', env: {}, now });
  return compileAws(spec, backend, { now }).resources;
}

const mine = (prefix: string) => registered.filter((r) => r.name.startsWith(`${prefix}-`));
const byType = (rs: Registered[], type: string) => rs.filter((r) => r.type === type);
const T = {
  user: 'aws:iam/user:User',
  group: 'aws:iam/group:Group',
  policy: 'aws:iam/policy:Policy',
  userPolicy: 'aws:iam/userPolicy:UserPolicy',
  userAttach: 'aws:iam/userPolicyAttachment:UserPolicyAttachment',
  groupAttach: 'aws:iam/groupPolicyAttachment:GroupPolicyAttachment',
  members: 'aws:iam/groupMembership:GroupMembership',
  key: 'aws:iam/accessKey:AccessKey',
} as const;

async function build(name: string, args: ConstructorParameters<typeof DataAccess>[1]) {
  const c = new DataAccess(name, args);
  await settled([c, ...childrenOf(c)]);
  return { c, rs: mine(name) };
}

describe('DataAccess', () => {
  test('creates every IAM object of the spec, with the names apply uses, and nothing else', async () => {
    const { rs } = await build('acc', { spec: SPEC, now: NOW });
    const summary = rs.map((r) => [r.type, r.name, r.inputs.name ?? null]).sort();
    expect(summary).toEqual(
      [
        [T.group, 'acc-group-ml-researchers', 'ml-researchers'],
        [T.user, 'acc-user-alice', 'alice'],
        [T.user, 'acc-user-bob', 'bob'],
        [T.user, 'acc-user-trainer', 'trainer'],
        [T.policy, 'acc-policy-dg-group-ml-researchers', 'dg-group-ml-researchers'],
        [T.userPolicy, 'acc-inline-trainer-dg-direct-grants', 'dg-direct-grants'],
        [T.groupAttach, 'acc-attach-group-ml-researchers-dg-group-ml-researchers', null],
        [T.members, 'acc-members-ml-researchers', 'dg-members-ml-researchers'],
        [T.key, 'acc-key-alice', null],
        [T.key, 'acc-key-bob', null],
        [T.key, 'acc-key-trainer', null],
      ].sort(),
    );
  });

  test('every resource is a child of the component', async () => {
    const { c, rs } = await build('par', { spec: SPEC, now: NOW });
    const children = childrenOf(c);
    expect(children).toHaveLength(rs.length);
    for (const child of children) expect(parentOf(child)).toBe(c);
    for (const r of Object.values(c.resources)) expect(children).toContain(r);
    // The engine sees the parent too: a child's URN carries the component's type.
    for (const child of children) expect(await value(child.urn)).toMatch(/::datagrant:index:DataAccess\$aws:iam\//);
  });

  test('every policy document is byte for byte the core compiler’s', async () => {
    const { c, rs } = await build('pol', { spec: SPEC, now: NOW });
    const core = coreCompile(SPEC, NOW).filter((r) => r.kind === 'policy');
    const policies = byType(rs, T.policy);
    expect(policies.map((p) => p.inputs.name).sort()).toEqual(core.map((r) => r.name).sort());
    for (const r of core) {
      const p = policies.find((x) => x.inputs.name === r.name)!;
      expect(p.inputs.policy).toBe(JSON.stringify(r.attrs.document));
      expect(p.inputs.path).toBe('/ml/data/');
      expect(await value(c.policies[r.name]!.policy)).toBe(JSON.stringify(r.attrs.document));
    }
    // and the inline ones, on their users
    const inline = coreCompile(SPEC, NOW).filter((r) => r.kind === 'inline-policy');
    expect(byType(rs, T.userPolicy).map((p) => [p.inputs.user, p.inputs.name, p.inputs.policy])).toEqual(
      inline.map((r) => [r.attrs.entityName, r.name, JSON.stringify(r.attrs.document)]),
    );
    expect(await value(c.inlinePolicies.trainer!.policy)).toBe(JSON.stringify(inline[0]!.attrs.document));
  });

  test('users carry the tags and paths apply sets; groups the path', async () => {
    const { rs } = await build('tag', { spec: SPEC, now: NOW });
    const core = coreCompile(SPEC, NOW);
    for (const r of core.filter((x) => x.kind === 'user' || x.kind === 'group')) {
      const got = rs.find((x) => x.type === (r.kind === 'user' ? T.user : T.group) && x.inputs.name === r.name)!;
      expect(got.inputs.path).toBe(r.attrs.path);
      if (r.kind === 'user') expect(got.inputs.tags).toEqual(r.attrs.tags);
    }
    const alice = rs.find((x) => x.type === T.user && x.inputs.name === 'alice')!;
    expect(alice.inputs.tags).toEqual({ 'datagrant:managed': 'true', 'datagrant:type': 'person', 'datagrant:email': 'alice@example.com' });
  });

  test('attachments, memberships and keys point at the right IAM objects', async () => {
    const { c, rs } = await build('ref', { spec: SPEC, now: NOW });
    const members = byType(rs, T.members)[0]!;
    expect(members.inputs.group).toBe('ml-researchers');
    expect(members.inputs.users).toEqual(['alice', 'bob']);
    expect(byType(rs, T.userAttach)).toEqual([]);
    expect(byType(rs, T.userPolicy)[0]!.inputs).toMatchObject({ user: 'trainer', name: 'dg-direct-grants' });
    const ga = byType(rs, T.groupAttach)[0]!;
    expect(ga.inputs).toMatchObject({ group: 'ml-researchers', policyArn: 'arn:aws:iam::123456789012:policy/ml/data/dg-group-ml-researchers' });
    for (const k of byType(rs, T.key)) expect(k.inputs).toMatchObject({ user: k.name.replace('ref-key-', ''), status: 'Active' });
    expect(Object.keys(c.principals).sort()).toEqual(['alice', 'bob', 'trainer']);
  });

  test('the secret key is a Pulumi secret; the user name and key id are not', async () => {
    const { c } = await build('sec', { spec: SPEC, now: NOW });
    const alice = c.principals.alice!;
    expect(await pulumi.isSecret(alice.secretAccessKey)).toBe(true);
    expect(await value(alice.secretAccessKey)).toBe('secret-of-sec-key-alice');
    expect(await pulumi.isSecret(alice.accessKeyId)).toBe(false);
    expect(await value(alice.accessKeyId)).toBe('AKIA-sec-key-alice');
    expect(await value(alice.userName)).toBe('alice');
  });

  test('`now` is the clock for expiry, as for apply: an expired grant is gone from the policy', async () => {
    const later = new Date('2027-02-01T00:00:00Z');
    const { rs } = await build('exp', { spec: SPEC, now: later });
    const trainer = byType(rs, T.userPolicy).find((p) => p.inputs.user === 'trainer')!;
    const address = 'aws:inline-policy/user/trainer/dg-direct-grants';
    const core = coreCompile(SPEC, later).find((r) => r.address === address)!;
    expect(trainer.inputs.policy).toBe(JSON.stringify(core.attrs.document));
    expect(trainer.inputs.policy).not.toContain('ai-model-data');
    const before = coreCompile(SPEC, NOW).find((r) => r.address === address)!;
    expect(JSON.stringify(before.attrs.document)).toContain('ai-model-data');
  });

  test('a policy the compiler splits in parts becomes one Policy and one attachment per part', async () => {
    const buckets = Array.from({ length: 120 }, (_, i) => `bucket-number-${String(i).padStart(4, '0')}-of-the-lake`);
    const spec = {
      version: 1 as const,
      backends: { aws: { type: 'aws' as const } },
      datasets: Object.fromEntries(buckets.map((b) => [b, { backend: 'aws', bucket: b }])),
      principals: { big: { type: 'service' as const, grants: buckets.map((b) => ({ dataset: b, access: 'read' as const })) } },
    };
    const { rs } = await build('big', { spec, now: NOW });
    const core = coreCompile(JSON.stringify(spec), NOW).filter((r) => r.kind === 'policy');
    expect(core.length).toBeGreaterThan(1);
    const policies = byType(rs, T.policy);
    expect(policies).toHaveLength(core.length);
    for (const r of core) expect(policies.find((p) => p.inputs.name === r.name)!.inputs.policy).toBe(JSON.stringify(r.attrs.document));
    expect(byType(rs, T.userAttach)).toHaveLength(core.length);
  });

  test('specFile reads the file and gives the same resources as the same text', async () => {
    const file = repoFile('examples/datagrant.yaml');
    const { rs: fromFile } = await build('file', { specFile: file, now: NOW });
    const { rs: fromText } = await build('text', { spec: readFileSync(file, 'utf8'), now: NOW });
    const strip = (rs: Registered[], p: string) => rs.map((r) => ({ ...r, name: r.name.slice(p.length) }));
    expect(strip(fromFile, 'file')).toEqual(strip(fromText, 'text'));
    expect(fromFile.length).toBeGreaterThan(0);
  });

  test.each([
    [
      'bad1',
      'a spec error, with its position',
      { spec: SPEC.replace('access: write', 'access: writ') },
      /<spec of DataAccess bad1>:\d+:\d+: .*access "writ" is not a level/,
    ],
    ['bad2', 'both spec and specFile', { spec: SPEC, specFile: 'x.yaml' }, /exactly one of `spec` and `specFile`/],
    ['bad3', 'a postgres backend', { spec: SPEC, backend: 'warehouse' }, /postgres backend; the Pulumi component provisions aws backends only/],
    ['bad4', 'an unknown backend', { spec: SPEC, backend: 'nope' }, /backend "nope" is not defined; aws backends: aws/],
    ['bad5', 'a missing file', { specFile: '/nonexistent/datagrant.yaml' }, /cannot read the spec: no such file/],
    [
      'bad6',
      'a spec that breaks one of its invariants',
      { spec: `${SPEC}invariants:\n  people-have-email: { type: person, require: [email] }\n` },
      /^invariant people-have-email: principal bob \(<spec of DataAccess bad6>:\d+:\d+\) has no email$/,
    ],
  ])('%s: refuses %s', (name, _what, args, message) => {
    expect(() => new DataAccess(name, { now: NOW, ...args })).toThrow(message);
  });
});

describe('DataAccessUser (the seed program)', () => {
  test('creates the seed’s user, key and inline read policy on ai-model-data, as apply would for examples/seed.yaml', async () => {
    const c = new DataAccessUser('seed', { userName: 'data-scientist', email: 'data-scientist@example.com', bucket: 'ai-model-data', now: NOW });
    await settled([c, ...childrenOf(c)]);
    const rs = mine('seed');
    expect(rs.map((r) => [r.type, r.name]).sort()).toEqual(
      [
        [T.user, 'seed-user-data-scientist'],
        [T.key, 'seed-key-data-scientist'],
        [T.userPolicy, 'seed-inline-data-scientist-dg-direct-grants'],
      ].sort(),
    );
    // The seed's policy: s3:GetObject and s3:ListBucket on ai-model-data, as datagrant's read level.
    const policy = byType(rs, T.userPolicy)[0]!;
    expect(policy.inputs.policy).toBe(
      '{"Version":"2012-10-17","Statement":[' +
        '{"Effect":"Allow","Action":["s3:GetBucketLocation","s3:ListBucket"],"Resource":["arn:aws:s3:::ai-model-data"]},' +
        '{"Effect":"Allow","Action":["s3:GetObject","s3:GetObjectVersion"],"Resource":["arn:aws:s3:::ai-model-data/*"]}]}',
    );
    // Same objects as the CLI makes from the seed spec in the repository.
    const core = coreCompile(readFileSync(repoFile('examples/seed.yaml'), 'utf8'), NOW);
    expect(c.desired).toEqual(core);
    expect(policy.inputs.policy).toBe(JSON.stringify(core.find((r) => r.kind === 'inline-policy')!.attrs.document));
    expect(c.policy).toBe(c.inlinePolicies['data-scientist']);
    const user = byType(rs, T.user)[0]!;
    expect(user.inputs).toMatchObject({ name: 'data-scientist', path: '/datagrant/', tags: core.find((r) => r.kind === 'user')!.attrs.tags as object });

    for (const child of childrenOf(c)) expect(await value(child.urn)).toMatch(/::datagrant:index:DataAccessUser\$aws:iam\//);
    expect(await pulumi.isSecret(c.secretAccessKey)).toBe(true);
    expect(await value(c.secretAccessKey)).toBe('secret-of-seed-key-data-scientist');
    expect(await value(c.userName)).toBe('data-scientist');
    expect(c.accessKey).toBe(c.accessKeys['data-scientist']);
  });

  test('a prefix limits objects and listing to it', async () => {
    const c = new DataAccessUser('pre', { userName: 'reader', bucket: 'ai-model-data', prefix: 'training/', type: 'service', now: NOW });
    await settled([c, ...childrenOf(c)]);
    const doc = JSON.parse(byType(mine('pre'), T.userPolicy)[0]!.inputs.policy as string) as { Statement: { Resource: string[]; Condition?: unknown }[] };
    expect(doc.Statement.flatMap((s) => s.Resource)).toContain('arn:aws:s3:::ai-model-data/training/*');
    expect(doc.Statement.some((s) => JSON.stringify(s.Condition ?? {}).includes('"s3:prefix":["training/*"]'))).toBe(true);
  });
});
