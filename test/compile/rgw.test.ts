// The rgw compiler and the pure half of the rgw reader: spec → users, keys and one inline policy
// per group and per principal's direct grants; what the gateway answers → the same resources.
import { describe, expect, test } from 'vitest';
import { decodePolicyMap, parseUserMetadata, resourcesFromUsers, type UserRecord } from '../../src/backends/rgw/state.js';
import { compile } from '../../src/compile/index.js';
import { compileRgw, RGW_BOUNDARY_POLICY, rgwGroupPolicyName } from '../../src/compile/rgw/compile.js';
import { BackendError, CompileError } from '../../src/core/errors.js';
import type { Change, Resource } from '../../src/core/types.js';
import { asRgwChange, parseRgwMarker, RGW_POLICY_MAX_CHARS, rgwMarker } from '../../src/model/rgw.js';
import { diff } from '../../src/plan/diff.js';
import { parseSpec } from '../../src/spec/load.js';
import { specSchema, type Spec, type SpecInput } from '../../src/spec/schema.js';

const NOW = new Date('2026-06-01T00:00:00Z');
const BACKEND = { type: 'rgw', endpoint: 'http://rgw.example:7480', accessKeyId: 'AK', secretAccessKey: 'SK' } as const;

function spec(extra: Partial<SpecInput> = {}): Spec {
  return specSchema.parse({
    version: 1,
    backends: { onprem: BACKEND, aws: { type: 'aws' } },
    datasets: {
      training: { backend: 'onprem', bucket: 'ai-data', prefix: 'training/' },
      models: { backend: 'onprem', bucket: 'ai-models' },
      cloud: { backend: 'aws', bucket: 'cloud-data' },
    },
    ...extra,
  });
}

const resources = (s: Spec, now = NOW, installation?: string) => compileRgw(s, 'onprem', { now, ...(installation ? { installation } : {}) }).resources;
const addresses = (rs: Resource[]) => rs.map((r) => r.address).sort();
const byAddress = (rs: Resource[]) => Object.fromEntries(rs.map((r) => [r.address, r]));

describe('compileRgw', () => {
  test('groups are flattened: each member holds one policy per group, named for it, and one for its direct grants', () => {
    const rs = resources(
      spec({
        groups: { readers: { grants: [{ dataset: 'training', access: 'read' }] }, cloud_team: { grants: [{ dataset: 'cloud', access: 'read' }] } },
        principals: {
          alice: { type: 'person', groups: ['readers', 'cloud_team'], grants: [{ dataset: 'models', access: 'write' }] },
          bob: { type: 'service', groups: ['readers'] },
          carol: { type: 'person', groups: ['cloud_team'] },
        },
      }),
    );
    // a group without grants here (cloud_team) gives no policy; carol has nothing here at all
    expect(addresses(rs)).toEqual([
      'onprem:inline-policy/alice/dg-boundary',
      'onprem:inline-policy/alice/dg-direct-grants',
      'onprem:inline-policy/alice/dg-group-readers',
      'onprem:inline-policy/bob/dg-boundary',
      'onprem:inline-policy/bob/dg-group-readers',
      'onprem:key/alice',
      'onprem:key/bob',
      'onprem:user/alice',
      'onprem:user/bob',
    ]);
    const r = byAddress(rs);
    // the group's document is the same for every member, and holds the aws backend's statements
    expect(r['onprem:inline-policy/alice/dg-group-readers']!.attrs.document).toEqual(r['onprem:inline-policy/bob/dg-group-readers']!.attrs.document);
    expect(r['onprem:inline-policy/bob/dg-group-readers']!.attrs.document).toEqual({
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Action: ['s3:GetBucketLocation'], Resource: ['arn:aws:s3:::ai-data'] },
        { Effect: 'Allow', Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: ['arn:aws:s3:::ai-data/training/*'] },
        { Effect: 'Allow', Action: ['s3:ListBucket'], Resource: ['arn:aws:s3:::ai-data'], Condition: { StringLike: { 's3:prefix': ['training/*'] } } },
      ],
    });
  });

  test('a user is marked, may create no bucket, and its policies wait for its key (issued first, it has none to lose)', () => {
    const rs = byAddress(
      resources(spec({ principals: { alice: { type: 'person', grants: [{ dataset: 'models', access: 'read' }], rotate: '30d' } } }), NOW, 'inst-1'),
    );
    expect(rs['onprem:user/alice']!.attrs).toEqual({ displayName: 'datagrant prefix=dg- installation=inst-1', maxBuckets: -1, caps: [], system: false });
    expect(rs['onprem:key/alice']!.deps).toEqual(['onprem:user/alice']);
    expect(rs['onprem:key/alice']!.lifecycle).toEqual({ rotateAfterSeconds: 30 * 86400, graceSeconds: 86400 });
    expect(rs['onprem:inline-policy/alice/dg-direct-grants']!.deps).toEqual(['onprem:user/alice', 'onprem:key/alice']);
  });

  test('expiry: the condition RGW enforces itself until the instant, then the statements are gone; all gone, the user goes', () => {
    const s = spec({ principals: { alice: { type: 'person', grants: [{ dataset: 'models', access: 'read', expires: '2026-06-02T12:00:00Z' }] } } });
    const doc = byAddress(resources(s))['onprem:inline-policy/alice/dg-direct-grants']!.attrs.document as { Statement: { Condition?: unknown }[] };
    for (const st of doc.Statement) expect(st.Condition).toMatchObject({ DateLessThan: { 'aws:CurrentTime': ['2026-06-02T12:00:00Z'] } });
    expect(resources(s, new Date('2026-06-03T00:00:00Z'))).toEqual([]);
  });

  test("group names RGW cannot hold in a policy name (_ and +) become ':'; two that then clash are refused", () => {
    expect(rgwGroupPolicyName('ml_team')).toBe('dg-group-ml:team');
    expect(rgwGroupPolicyName('a+b', 2)).toBe('dg-group-a:b-2');
    const clash = spec({
      groups: { 'a+b': { grants: [{ dataset: 'models', access: 'read' }] }, a_b: { grants: [{ dataset: 'training', access: 'read' }] } },
      principals: { alice: { type: 'person', groups: ['a+b', 'a_b'] } },
    });
    expect(() => resources(clash)).toThrow(/group a_b: needs a user policy named dg-group-a:b, which group a\+b also needs/);
  });

  test('a group too large for one policy is split into parts, every part held by every member', () => {
    const datasets: Record<string, { backend: string; bucket: string }> = {};
    for (let i = 0; i < 1200; i++) datasets[`d${i}`] = { backend: 'onprem', bucket: `bucket-with-a-long-name-${String(i).padStart(4, '0')}` };
    const s = specSchema.parse({
      version: 1,
      backends: { onprem: BACKEND },
      datasets,
      groups: { big: { grants: Object.keys(datasets).map((d) => ({ dataset: d, access: 'admin' })) } },
      principals: { alice: { type: 'person', groups: ['big'] }, bob: { type: 'person', groups: ['big'] } },
    });
    const rs = resources(s).filter((r) => r.kind === 'inline-policy' && r.name !== RGW_BOUNDARY_POLICY);
    const names = [...new Set(rs.map((r) => r.name))].sort();
    expect(names.length).toBeGreaterThan(1);
    expect(names[0]).toBe('dg-group-big');
    for (const r of rs) expect(JSON.stringify(r.attrs.document).length).toBeLessThanOrEqual(RGW_POLICY_MAX_CHARS);
    expect(
      rs
        .filter((r) => r.attrs.user === 'alice')
        .map((r) => r.name)
        .sort(),
    ).toEqual(names);
  });

  test('temporary credentials cannot be issued by RGW: refused with the principal named', () => {
    const s = spec({ principals: { ana: { type: 'person', credentials: 'temporary', grants: [{ dataset: 'models', access: 'read' }] } } });
    expect(() => resources(s)).toThrow(CompileError);
    expect(() => resources(s)).toThrow(/principal ana: has temporary credentials, which an rgw backend cannot issue/);
  });
});

describe('the spec', () => {
  const text = (datasets: string, backend = '{ type: rgw, endpoint: "http://rgw:7480", accessKeyId: "${K}", secretAccessKey: "${S}" }') =>
    `version: 1\nbackends:\n  onprem: ${backend}\ndatasets:\n${datasets}\nprincipals:\n  p: { type: service, grants: [{ dataset: d, access: read }] }\n`;
  const problems = (t: string) => {
    try {
      parseSpec(t, { file: 'x.yaml', env: { K: 'k', S: 's' }, now: NOW });
      return [];
    } catch (e) {
      return (e as { problems: { message: string }[] }).problems.map((p) => p.message);
    }
  };

  test('an rgw dataset is a bucket with an optional prefix, never a database', () => {
    expect(problems(text('  d: { backend: onprem, bucket: ai-data, prefix: x/ }'))).toEqual([]);
    expect(problems(text('  d: { backend: onprem, database: db, schema: s }'))).toEqual([
      expect.stringContaining('has a database, so it needs a postgres backend, but backend "onprem" is rgw'),
    ]);
  });

  test.each(['a+b/', 'a%2A/', 'a:b/', 'a*/'])('the prefix %j, which RGW would read otherwise, is refused', (prefix) => {
    expect(problems(text(`  d: { backend: onprem, bucket: ai-data, prefix: "${prefix}" }`))).toEqual([expect.stringMatching(/must not contain/)]);
  });

  test('the admin key comes from the environment; a missing variable is named', () => {
    const p = problems(text('  d: { backend: onprem, bucket: ai-data }').replace('${S}', '${NOT_SET}'));
    expect(p).toEqual([expect.stringContaining('environment variable NOT_SET is not set')]);
  });

  test('userPrefix and unknown keys are checked', () => {
    const bad = text(
      '  d: { backend: onprem, bucket: ai-data }',
      '{ type: rgw, endpoint: "http://rgw:7480", accessKeyId: a, secretAccessKey: b, userPrefix: "a$b", iamPath: /x/ }',
    );
    const p = problems(bad);
    expect(p).toContainEqual(expect.stringContaining('userPrefix may contain only'));
    expect(p).toContainEqual(
      expect.stringContaining('unknown key "iamPath"; allowed: type, endpoint, region, accessKeyId, secretAccessKey, userPrefix, timeouts'),
    );
  });
});

describe('the reader maps what the gateway holds into the compiled shapes', () => {
  /** Ceph's encoding of a map<string, string>, as the gateway stores user policies. */
  const encodeMap = (m: Record<string, string>) => {
    const parts: Buffer[] = [];
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n);
      return b;
    };
    parts.push(u32(Object.keys(m).length));
    for (const [k, v] of Object.entries(m)) parts.push(u32(Buffer.byteLength(k)), Buffer.from(k), u32(Buffer.byteLength(v)), Buffer.from(v));
    return Buffer.concat(parts).toString('base64');
  };

  test('the policy map decodes exactly, and anything else is left to the IAM API', () => {
    const m = { 'dg-group-a:b': '{"Version":"2012-10-17"}', 'dg-direct-grants': '{"é":1}' };
    expect(decodePolicyMap(encodeMap(m))).toEqual(m);
    expect(decodePolicyMap(encodeMap(m).slice(0, -4))).toBeUndefined();
    expect(decodePolicyMap(Buffer.from([1, 0, 0, 0, 200, 0, 0, 0]).toString('base64'))).toBeUndefined();
  });

  test('a metadata answer: settings, key ids (never secrets) and policies', () => {
    const body = JSON.stringify({
      key: 'user:dg-alice',
      data: {
        user_id: 'dg-alice',
        display_name: 'datagrant prefix=dg-',
        suspended: 1,
        max_buckets: -1,
        keys: [
          { user: 'dg-alice', access_key: 'AKB', secret_key: 'the-secret' },
          { user: 'dg-alice', access_key: 'AKA', secret_key: 'other' },
        ],
        caps: [{ type: 'users', perm: 'read' }],
        system: 'true',
        attrs: [{ key: 'user.rgw.user-policy', val: encodeMap({ p: '{}' }) }],
      },
    });
    const u = parseUserMetadata(body);
    expect(u).toEqual({
      uid: 'dg-alice',
      displayName: 'datagrant prefix=dg-',
      maxBuckets: -1,
      caps: ['users=read'],
      system: true,
      suspended: true,
      keys: ['AKA', 'AKB'],
      policies: { p: '{}' },
    });
    expect(JSON.stringify(u)).not.toContain('secret');
    expect(() => parseUserMetadata('not json the-secret')).toThrow(/^the user metadata answer is not JSON$/);
  });

  test('what apply made reads back as the desired state: a second plan is empty', () => {
    const s = spec({
      groups: { readers: { grants: [{ dataset: 'training', access: 'read' }] } },
      principals: { alice: { type: 'person', groups: ['readers'], grants: [{ dataset: 'models', access: 'admin' }] } },
    });
    const desired = compile(s, NOW, { installation: 'inst-1' }).desired;
    const user = desired.onprem!.resources.find((r) => r.kind === 'user')!;
    const policies = Object.fromEntries(
      desired.onprem!.resources.filter((r) => r.kind === 'inline-policy').map((r) => [r.name, JSON.stringify(r.attrs.document)]),
    );
    const record: UserRecord = {
      uid: 'dg-alice',
      displayName: String(user.attrs.displayName),
      maxBuckets: -1,
      caps: [],
      system: false,
      suspended: false,
      keys: ['AK1'],
      policies,
    };
    const credentials = [{ address: 'onprem:key/alice', credentialId: 'AK1', createdAt: NOW.toISOString(), state: 'current' as const }];
    const actual = resourcesFromUsers({ backend: 'onprem', prefix: 'dg-', installation: 'inst-1', users: [{ principal: 'alice', record }], credentials });
    expect(
      diff(desired, { onprem: { backend: 'onprem', resources: actual.resources } }, { now: NOW, specHash: 'x' }).changes.filter((c) => c.backend === 'onprem'),
    ).toEqual([]);
    // the same user with its policies gone (a key made by hand): every policy is planned back
    const wiped = resourcesFromUsers({ backend: 'onprem', prefix: 'dg-', users: [{ principal: 'alice', record: { ...record, policies: {} } }], credentials });
    const plan = diff(desired, { onprem: { backend: 'onprem', resources: wiped.resources } }, { now: NOW, specHash: 'x' });
    expect(plan.changes.filter((c) => c.backend === 'onprem').map((c) => `${c.action} ${c.address}`)).toEqual([
      'create onprem:inline-policy/alice/dg-boundary',
      'create onprem:inline-policy/alice/dg-direct-grants',
      'create onprem:inline-policy/alice/dg-group-readers',
    ]);
  });

  test("marks: datagrant's for this prefix and installation, another installation's, or none", () => {
    expect(parseRgwMarker(rgwMarker('dg-', 'i1'))).toEqual({ prefix: 'dg-', installation: 'i1' });
    expect(parseRgwMarker('Alice Smith')).toBeUndefined();
    const users = [
      { principal: 'mine', record: { displayName: rgwMarker('dg-', 'i1') } },
      { principal: 'legacy', record: { displayName: rgwMarker('dg-') } },
      { principal: 'theirs', record: { displayName: rgwMarker('dg-', 'i2') } },
      { principal: 'team-x', record: { displayName: rgwMarker('dg-team-', 'i1') } },
      { principal: 'hand', record: { displayName: 'made by hand' } },
    ].map(({ principal, record }) => ({
      principal,
      record: { uid: `dg-${principal}`, maxBuckets: -1, caps: [], system: false, suspended: false, keys: [], policies: {}, ...record },
    }));
    const m = resourcesFromUsers({ backend: 'onprem', prefix: 'dg-', installation: 'i1', users, credentials: [] });
    expect([...m.owned].sort()).toEqual(['legacy', 'mine']);
    expect([...m.others].sort()).toEqual(['hand', 'team-x', 'theirs']);
    expect(m.foreign).toEqual([{ address: 'onprem:user/theirs', installation: 'i2' }]);
  });
});

describe('a change read back from a plan file is narrowed before any request', () => {
  const user = byAddress(resources(spec({ principals: { alice: { type: 'person', grants: [{ dataset: 'models', access: 'read' }] } } })))['onprem:user/alice']!;
  const change = (over: Partial<Change>): Change => ({
    address: user.address,
    backend: 'onprem',
    kind: 'user',
    action: 'create',
    before: null,
    after: user,
    drift: false,
    reason: 'x',
    ...over,
  });

  test.each<[string, Partial<Change>, RegExp]>([
    ['an unknown kind', { kind: 'group' }, /unknown kind "group" \(an rgw backend has: user, inline-policy, key\)/],
    ['a create without after', { after: null }, /a create needs "after"/],
    ['a delete with after', { action: 'delete', before: user }, /a delete takes no "after"/],
    ['a side of another kind', { after: { ...user, kind: 'key' } }, /its "after" of kind key/],
    ['malformed attributes', { after: { ...user, attrs: { ...user.attrs, maxBuckets: 'many' } } }, /after\.attrs\.maxBuckets/],
    ['an attribute no user has', { after: { ...user, attrs: { ...user.attrs, admin: true } } }, /the user in "after" is malformed/],
  ])('%s is refused, naming the address', (_, over, message) => {
    let e: unknown;
    try {
      asRgwChange(change(over));
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(BackendError);
    expect((e as Error).message).toMatch(/^onprem: onprem:user\/alice: refused: /);
    expect((e as Error).message).toMatch(message);
  });

  test('a well-formed change passes as it is', () => {
    expect(asRgwChange(change({}))).toEqual(change({}));
  });
});

describe('every user has a boundary', () => {
  test('no ACL or bucket-policy changes, nothing outside its live grants, and a grant that ends by itself is denied from its end', () => {
    const rs = resources(
      spec({
        principals: {
          alice: {
            type: 'person',
            grants: [
              { dataset: 'models', access: 'write' },
              { dataset: 'training', access: 'read', expires: '2027-01-31' },
            ],
          },
        },
      }),
    );
    const boundary = byAddress(rs)['onprem:inline-policy/alice/dg-boundary']!.attrs.document as { Statement: Record<string, unknown>[] };
    const text = JSON.stringify(boundary);
    expect(text).toContain('"s3:PutObjectAcl"');
    expect(text).toContain('"s3:PutBucketPolicy"');
    const outside = boundary.Statement.find((s) => 'NotResource' in s)!;
    expect(outside).toMatchObject({ Effect: 'Deny', Action: ['s3:*'], Resource: [] });
    expect((outside.NotResource as string[]).length).toBe(4);
    const timed = boundary.Statement.filter((s) => s.Condition !== undefined);
    expect(timed).toHaveLength(1);
    expect(JSON.stringify(timed[0])).toContain('2027-01-31T00:00:00Z');
  });
});
