// Access-set roles as the reader maps them: exactly the compiler's shapes when nothing drifted (so a
// second plan is empty), a hand-edited trust policy as its document (drift, rewritten by apply),
// another installation's role as foreign, and every kind narrows to itself.
import { describe, expect, test } from 'vitest';
import { resourcesFromDetails, type RoleDetail } from '../../src/backends/aws/state.js';
import { trustDocument } from '../../src/backends/aws/trust.js';
import { compileAws } from '../../src/compile/aws/compile.js';
import { asAwsResource } from '../../src/model/aws.js';
import { diff } from '../../src/plan/diff.js';
import { specSchema } from '../../src/spec/schema.js';

const NOW = new Date('2026-11-28T00:00:00Z');
const PATH = '/datagrant/';
const CALLER = 'arn:aws:iam::123456789012:user/datagrant-admin';

const desired = compileAws(
  specSchema.parse({
    version: 1,
    backends: { aws: { type: 'aws' } },
    datasets: { data: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' }, out: { backend: 'aws', bucket: 'ai-model-artifacts' } },
    groups: { researchers: { grants: [{ dataset: 'data', access: 'read' }] } },
    principals: {
      alice: { type: 'person', credentials: 'temporary', groups: ['researchers'], grants: [{ dataset: 'out', access: 'read' }], maxSession: '2h' },
    },
  }),
  'aws',
  { now: NOW, installation: 'inst-1' },
).resources;
const role = desired.find((r) => r.kind === 'role')!;
const inline = desired.find((r) => r.kind === 'inline-policy')!;
const group = desired.find((r) => r.kind === 'group')!;
const policy = desired.find((r) => r.kind === 'policy')!;

/** IAM as apply leaves it, with `edit` applied to the role. */
function read(edit: Partial<RoleDetail> = {}, installation = 'inst-1') {
  return resourcesFromDetails({
    backend: 'aws',
    iamPath: PATH,
    installation,
    trust: trustDocument(CALLER),
    details: {
      users: [],
      groups: [
        {
          GroupName: group.name,
          Path: PATH,
          AttachedManagedPolicies: [{ PolicyArn: `arn:aws:iam::123456789012:policy/datagrant/${policy.name}` }],
        },
      ],
      policies: [
        {
          Arn: `arn:aws:iam::123456789012:policy/datagrant/${policy.name}`,
          Path: PATH,
          Description: 'datagrant installation inst-1',
          PolicyVersionList: [{ Document: JSON.stringify(policy.attrs.document), IsDefaultVersion: true }],
        },
      ],
      roles: [
        {
          RoleName: role.name,
          Path: PATH,
          // As AWS returns it: URL-encoded, the single action list as it was written.
          AssumeRolePolicyDocument: encodeURIComponent(
            JSON.stringify({
              Version: '2012-10-17',
              Statement: [
                {
                  Effect: 'Allow',
                  Principal: { AWS: CALLER },
                  Action: ['sts:SetSourceIdentity', 'sts:AssumeRole'],
                  Condition: { Null: { 'sts:SourceIdentity': 'false' } },
                },
              ],
            }),
          ),
          Description: role.attrs.description as string,
          MaxSessionDuration: 7200,
          Tags: [
            { Key: 'datagrant:managed', Value: 'true' },
            { Key: 'datagrant:installation', Value: 'inst-1' },
          ],
          AttachedManagedPolicies: [{ PolicyArn: `arn:aws:iam::123456789012:policy/datagrant/${policy.name}` }],
          RolePolicyList: [{ PolicyName: inline.name, PolicyDocument: JSON.stringify(inline.attrs.document) }],
          ...edit,
        },
      ],
    },
    keys: new Map(),
    credentials: [],
  });
}

const changes = (actual: ReturnType<typeof read>) =>
  diff({ aws: { resources: desired, notices: [] } }, { aws: { backend: 'aws', resources: actual.resources } }, { now: NOW, specHash: 't', applied: {} })
    .changes;

describe('access-set roles read back', () => {
  test("a role as apply made it reads as the compiler's: no changes", () => {
    const actual = read();
    expect(actual.resources.find((r) => r.kind === 'role')!.attrs).toEqual(role.attrs);
    expect(changes(actual).map((c) => `${c.action} ${c.address}`)).toEqual([]);
    for (const r of actual.resources) expect(asAwsResource(r)).toEqual(r);
  });

  test('a trust policy edited by hand is shown as its document, and updated', () => {
    const stranger = JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::999999999999:root' }, Action: 'sts:AssumeRole' }],
    });
    const actual = read({ AssumeRolePolicyDocument: stranger });
    expect(JSON.stringify(actual.resources.find((r) => r.kind === 'role')!.attrs.trust)).toContain('999999999999');
    expect(changes(actual).map((c) => `${c.action} ${c.address}`)).toEqual([`update aws:role/${role.name}`]);
  });

  test('a shorter session length or another description is drift too', () => {
    expect(changes(read({ MaxSessionDuration: 3600, Description: 'x' })).map((c) => `${c.action} ${c.address}`)).toEqual([`update aws:role/${role.name}`]);
  });

  test("another installation's role is foreign, never a resource", () => {
    const actual = read({}, 'inst-2');
    expect(actual.resources.filter((r) => r.kind === 'role')).toEqual([]);
    expect(actual.resources.filter((r) => r.address.includes('/role/'))).toEqual([]);
    expect(actual.foreign).toContainEqual({ address: `aws:role/${role.name}`, installation: 'inst-1' });
  });
});
