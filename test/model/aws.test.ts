// The AWS model's narrowing is as strict as the model and no stricter: what the compiler and the
// reader build with the model's builders, and every change a plan makes of them (a recorded key
// the read did not find included), narrows to itself; anything else is refused by name.
import { describe, expect, test } from 'vitest';
import { resourcesFromDetails } from '../../src/backends/aws/state.js';
import { compileAws } from '../../src/compile/aws/compile.js';
import { BackendError } from '../../src/core/errors.js';
import type { Resource } from '../../src/core/types.js';
import { asAwsChange, asAwsResource } from '../../src/model/aws.js';
import { diff } from '../../src/plan/diff.js';
import { specSchema } from '../../src/spec/schema.js';

const NOW = new Date('2026-11-28T00:00:00Z');
const PATH = '/datagrant/';

const desired = compileAws(
  specSchema.parse({
    version: 1,
    backends: { aws: { type: 'aws' } },
    datasets: { data: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' }, out: { backend: 'aws', bucket: 'ai-model-artifacts' } },
    groups: { researchers: { grants: [{ dataset: 'data', access: 'read' }] } },
    principals: {
      alice: { type: 'person', email: 'alice@example.com', groups: ['researchers'] },
      trainer: { type: 'service', groups: ['researchers'], grants: [{ dataset: 'out', access: 'write' }], rotate: '90d' },
    },
  }),
  'aws',
  { now: NOW, installation: 'inst-1' },
).resources;

// What IAM might hold: drift of every kind the reader knows (another path's user in our group, an
// inline policy, another's policy attached, a superseded and an unknown key, a changed tag).
const actual = resourcesFromDetails({
  backend: 'aws',
  iamPath: PATH,
  installation: 'inst-1',
  details: {
    users: [
      {
        UserName: 'alice',
        Path: PATH,
        Arn: 'arn:aws:iam::123456789012:user/datagrant/alice',
        GroupList: ['researchers'],
        AttachedManagedPolicies: [{ PolicyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' }],
        UserPolicyList: [{ PolicyName: 'extra', PolicyDocument: '{"Version":"2012-10-17","Statement":[]}' }],
        Tags: [
          { Key: 'datagrant:managed', Value: 'true' },
          { Key: 'datagrant:type', Value: 'robot' },
        ],
      },
      { UserName: 'outsider', Path: '/', GroupList: ['researchers'] },
    ],
    groups: [{ GroupName: 'researchers', Path: PATH, GroupPolicyList: [{ PolicyName: 'hand-made', PolicyDocument: 'not json' }] }],
    policies: [
      {
        Arn: 'arn:aws:iam::123456789012:policy/datagrant/dg-group-researchers',
        Path: PATH,
        Description: 'datagrant installation inst-1',
        PolicyVersionList: [{ Document: '{"Version":"2012-10-17","Statement":[]}', IsDefaultVersion: true }],
      },
    ],
  },
  keys: new Map([
    [
      'alice',
      [
        { accessKeyId: 'AKIA1', status: 'Active', createdAt: '2026-01-01T00:00:00.000Z' },
        { accessKeyId: 'AKIA2', status: 'Inactive', createdAt: '2026-02-01T00:00:00.000Z' },
      ],
    ],
  ]),
  credentials: [{ address: 'aws:key/alice', credentialId: 'AKIA1', createdAt: '2026-01-01T00:00:00.000Z', state: 'current' }],
}).resources;

describe('asAwsResource', () => {
  test('accepts every resource the compiler builds, as it is', () => {
    expect(desired.length).toBeGreaterThan(8);
    for (const r of desired) expect(asAwsResource(r), r.address).toEqual(r);
  });

  test('accepts every resource the reader builds, drift included, as it is', () => {
    expect(new Set(actual.map((r) => r.kind))).toEqual(new Set(['user', 'group', 'policy', 'attachment', 'membership', 'inline-policy', 'key']));
    for (const r of actual) expect(asAwsResource(r), r.address).toEqual(r);
  });

  test.each([
    ['a path that is no IAM path', { path: 'datagrant', tags: {} }, /the user has path "datagrant" \(allowed: an IAM path, \/…\/\)/],
    [
      'no tags, and an unknown attribute',
      { path: PATH, login: true },
      /the user has no tags \(allowed: an object of strings\); attribute login, which no user has/,
    ],
  ])('refuses %s, naming the address', (_, attrs, message) => {
    const r: Resource = { address: 'aws:user/alice', backend: 'aws', kind: 'user', name: 'alice', attrs, deps: [] };
    const err = (() => {
      try {
        return asAwsResource(r);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(BackendError);
    expect(err).toMatchObject({ code: 'MalformedResource', address: 'aws:user/alice', backend: 'aws' });
    expect((err as Error).message).toMatch(/^aws: aws:user\/alice: refused: /);
    expect((err as Error).message).toMatch(message);
  });
});

describe('asAwsChange', () => {
  test('accepts every change of a plan, as it is', () => {
    // GIVEN a plan from what IAM holds to the spec, with a recorded key the read did not find and a
    // rotation
    const plan = diff(
      { aws: { resources: desired, notices: [] } },
      { aws: { backend: 'aws', resources: actual } },
      {
        now: NOW,
        specHash: 't',
        forceRotate: ['aws:key/alice'],
        credentials: [{ address: 'aws:key/trainer', credentialId: 'AKIAGONE', backend: 'aws', principal: 'trainer' }],
      },
    );
    const actions = new Set(plan.changes.map((c) => c.action));
    expect([...actions].sort()).toEqual(['create', 'delete', 'replace', 'update']);
    expect(plan.changes.map((c) => c.address)).toContain('aws:key/trainer~AKIAGONE');
    // THEN each narrows to itself
    for (const c of plan.changes) expect(asAwsChange(c), c.address).toEqual(c);
  });
});
