import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ACTION_TABLE, provisionerPolicy, usesSessions } from '../../src/compile/aws/provisioner-policy.js';
import { specSchema, type Spec, type SpecInput } from '../../src/spec/schema.js';

const build = (input: Omit<SpecInput, 'version' | 'backends'> & { backends?: SpecInput['backends'] }): Spec =>
  specSchema.parse({ version: 1, backends: { aws: { type: 'aws' } }, ...input });

const AWS_DRIVER = join(import.meta.dirname, '../../src/backends/aws');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/**
 * Every `new XCommand(` the AWS driver sends, as the IAM action it needs (`iam:X`, `sts:X`, `s3:X`),
 * its service told by the client package the file imports it from.
 */
function actionsTheDriverSends(): Map<string, string[]> {
  const sent = new Map<string, string[]>();
  for (const file of sourceFiles(AWS_DRIVER)) {
    const text = readFileSync(file, 'utf8');
    const serviceOf = new Map<string, string>();
    for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*'@aws-sdk\/client-([a-z0-9]+)'/g)) {
      for (const name of m[1]!.split(',').map((n) => n.trim().replace(/^type\s+/, ''))) if (name) serviceOf.set(name, m[2]!);
    }
    for (const m of text.matchAll(/new\s+(\w+)Command\s*\(/g)) {
      const service = serviceOf.get(`${m[1]}Command`);
      if (!service) throw new Error(`${file}: ${m[1]}Command is not imported from an @aws-sdk client package`);
      const action = `${service}:${m[1]}`;
      sent.set(action, [...(sent.get(action) ?? []), file.slice(AWS_DRIVER.length + 1)]);
    }
  }
  return sent;
}

const statementsOf = (doc: unknown) => (doc as { Statement: { Sid: string; Action: string[]; Resource: string | string[]; Condition?: unknown }[] }).Statement;
const allowed = (doc: unknown) => new Set(statementsOf(doc).flatMap((s) => s.Action));

describe('the policy keeps up with the driver', () => {
  const sent = actionsTheDriverSends();

  test('the source scan finds the driver (a scan that finds nothing would prove nothing)', () => {
    expect(sent.get('iam:CreateAccessKey')).toEqual(['kinds/keys.ts']);
    expect(sent.has('sts:AssumeRole')).toBe(true);
    expect(sent.has('s3:GetBucketPolicy')).toBe(true);
  });

  test('every AWS call the driver makes has its place in the action table', () => {
    const missing = [...sent.keys()].filter((a) => !(a in ACTION_TABLE)).map((a) => `${a} (sent in ${sent.get(a)!.join(', ')})`);
    expect(missing, 'add each to ACTION_TABLE in src/compile/aws/provisioner-policy.ts, in the statement that should allow it').toEqual([]);
  });

  test('the table names no action the driver no longer sends', () => {
    expect(Object.keys(ACTION_TABLE).filter((a) => !sent.has(a))).toEqual([]);
  });

  test('the widest policy (sessions, effective access) allows every action that needs a permission', () => {
    const spec = build({
      settings: { credentials: 'temporary' },
      datasets: { d: { backend: 'aws', bucket: 'ai-model-data' } },
      principals: { alice: { type: 'person', grants: [{ dataset: 'd', access: 'read' }] } },
    });
    const { document } = provisionerPolicy(spec, 'aws', { withAccess: true });
    const needed = Object.entries(ACTION_TABLE)
      .filter(([, home]) => home !== 'none' && home !== 'caller')
      .map(([a]) => a);
    const have = allowed(document);
    expect(needed.filter((a) => !have.has(a))).toEqual([]);
  });
});

describe('provisionerPolicy', () => {
  const keysOnly = build({
    datasets: { d: { backend: 'aws', bucket: 'ai-model-data' } },
    principals: { alice: { type: 'person', grants: [{ dataset: 'd', access: 'read' }] } },
  });

  test('every change is scoped to the path; only the account-wide reads are on "*"', () => {
    const { document } = provisionerPolicy(keysOnly, 'aws', { account: '111122223333' });
    const byId = Object.fromEntries(statementsOf(document).map((s) => [s.Sid, s]));
    expect(Object.keys(byId)).toEqual(['ReadAccount', 'ManageUsers', 'ManageAccessKeys', 'ManageGroups', 'ManagePolicies', 'AttachOwnPoliciesOnly']);
    expect(byId.ReadAccount!.Resource).toBe('*');
    expect(byId.ReadAccount!.Action).toEqual([
      'iam:GenerateCredentialReport',
      'iam:GetAccountAuthorizationDetails',
      'iam:GetCredentialReport',
      'iam:ListRoles',
    ]);
    expect(byId.ManageUsers!.Resource).toBe('arn:aws:iam::111122223333:user/datagrant/*');
    expect(byId.ManageAccessKeys!.Resource).toBe('arn:aws:iam::111122223333:user/datagrant/*');
    expect(byId.ManageGroups!.Resource).toBe('arn:aws:iam::111122223333:group/datagrant/*');
    expect(byId.ManagePolicies!.Resource).toBe('arn:aws:iam::111122223333:policy/datagrant/dg-*');
    expect(byId.AttachOwnPoliciesOnly!.Condition).toEqual({ ArnLike: { 'iam:PolicyARN': 'arn:aws:iam::111122223333:policy/datagrant/dg-*' } });
    expect(byId.AttachOwnPoliciesOnly!.Action).toEqual(['iam:AttachGroupPolicy', 'iam:AttachUserPolicy']);
  });

  test('no STS and no roles without temporary principals', () => {
    const { document, notes } = provisionerPolicy(keysOnly, 'aws');
    const have = allowed(document);
    // ListRoles stays: the read lists roles left at the path by an earlier spec (read-only).
    expect([...have].filter((a) => a.startsWith('sts:') || (/Role/.test(a) && a !== 'iam:ListRoles'))).toEqual([]);
    expect(usesSessions(keysOnly)).toBe(false);
    expect(notes.join('\n')).toMatch(/keep the previous policy until an apply has deleted them/);
  });

  test('a temporary principal adds the access-set roles and AssumeRole on them only, naming a SourceIdentity', () => {
    const spec = build({
      backends: { aws: { type: 'aws', iamPath: '/team/dg/' } },
      datasets: { d: { backend: 'aws', bucket: 'ai-model-data' } },
      principals: { bob: { type: 'service', credentials: 'temporary', grants: [{ dataset: 'd', access: 'read' }] } },
    });
    const { document } = provisionerPolicy(spec, 'aws', { account: '111122223333' });
    const byId = Object.fromEntries(statementsOf(document).map((s) => [s.Sid, s]));
    expect(byId.IssueSessions).toEqual({
      Sid: 'IssueSessions',
      Effect: 'Allow',
      Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
      Resource: 'arn:aws:iam::111122223333:role/team/dg/dg-s-*',
      Condition: { Null: { 'sts:SourceIdentity': 'false' } },
    });
    expect(byId.ManageAccessSetRoles!.Resource).toBe('arn:aws:iam::111122223333:role/team/dg/dg-s-*');
    expect(byId.AttachOwnPoliciesOnly!.Action).toContain('iam:AttachRolePolicy');
    expect(byId.ReadOwnRole).toBeUndefined();
  });

  test('assumeRole names account and partition, reads its own role, and says what the caller needs', () => {
    const roleArn = 'arn:aws-us-gov:iam::222233334444:role/ops/datagrant';
    const spec = build({
      backends: { aws: { type: 'aws', assumeRole: { roleArn } } },
      settings: { credentials: 'temporary' },
    });
    const p = provisionerPolicy(spec, 'aws');
    const byId = Object.fromEntries(statementsOf(p.document).map((s) => [s.Sid, s]));
    expect(byId.ManageUsers!.Resource).toBe('arn:aws-us-gov:iam::222233334444:user/datagrant/*');
    expect(byId.ReadOwnRole).toMatchObject({ Action: ['iam:GetRole'], Resource: roleArn });
    expect(p.caller).toEqual({
      Version: '2012-10-17',
      Statement: [{ Sid: 'AssumeDatagrantRole', Effect: 'Allow', Action: ['sts:AssumeRole'], Resource: roleArn }],
    });
  });

  test('--with-access adds the reads of effective access, bucket policies only on the datasets’ buckets', () => {
    const spec = build({
      datasets: { a: { backend: 'aws', bucket: 'bkt-one' }, b: { backend: 'aws', bucket: 'bkt-two', prefix: 'x/' }, c: { backend: 'aws', bucket: 'bkt-one' } },
    });
    const byId = Object.fromEntries(statementsOf(provisionerPolicy(spec, 'aws', { withAccess: true }).document).map((s) => [s.Sid, s]));
    expect(byId.ReadEffectiveAccess).toMatchObject({ Action: ['iam:GetPolicy', 'iam:GetPolicyVersion'], Resource: '*' });
    expect(byId.ReadDatasetBucketPolicies).toMatchObject({ Action: ['s3:GetBucketPolicy'], Resource: ['arn:aws:s3:::bkt-one', 'arn:aws:s3:::bkt-two'] });
    expect(provisionerPolicy(spec, 'aws').document).not.toHaveProperty(['Statement', 6]);
  });

  test('the widest policy still fits a customer managed policy (6,144 characters without whitespace)', () => {
    const spec = build({
      backends: { aws: { type: 'aws', assumeRole: { roleArn: 'arn:aws:iam::222233334444:role/some/long/path/datagrant-provisioner' } } },
      settings: { credentials: 'temporary' },
      datasets: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`d${i}`, { backend: 'aws', bucket: `training-data-bucket-${i}` }])),
    });
    const text = JSON.stringify(provisionerPolicy(spec, 'aws', { withAccess: true }).document);
    expect(text.replace(/\s/g, '').length).toBeLessThanOrEqual(6144);
  });
});
