// Temporary principals on AWS: access-set roles instead of users and keys, their quotas, and the
// revocation of sessions that outlive their access — proved on the compiled documents with the
// repository's IAM evaluator, since moto enforces neither aws:SourceIdentity nor aws:TokenIssueTime.
import { describe, expect, test } from 'vitest';
import { compile, sessionTarget } from '../../src/compile/index.js';
import type { Resource } from '../../src/core/types.js';
import { evaluate, type AnyPolicy } from '../../src/model/iam-eval.js';
import type { SessionFact } from '../../src/model/session.js';
import { specSchema, type SpecInput } from '../../src/spec/schema.js';
import { roleSessionName } from '../../src/backends/aws/sessions.js';

const NOW = new Date('2026-11-30T12:00:00Z');
const at = (minutes: number) => new Date(NOW.getTime() + minutes * 60_000).toISOString();

const spec = (principals: SpecInput['principals'], backend: Record<string, unknown> = {}) =>
  specSchema.parse({
    version: 1,
    backends: { aws: { type: 'aws', ...backend } },
    datasets: {
      train: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' },
      evals: { backend: 'aws', bucket: 'ai-model-data', prefix: 'eval/' },
      art: { backend: 'aws', bucket: 'ai-model-artifacts' },
    },
    groups: {
      researchers: { grants: [{ dataset: 'train', access: 'read' }] },
      reviewers: { grants: [{ dataset: 'evals', access: 'read' }] },
    },
    principals,
  });

const resourcesOf = (s: ReturnType<typeof spec>, sessions?: SessionFact[], now = NOW) =>
  compile(s, now, { installation: 'inst-1', ...(sessions ? { sessions } : {}) }).desired.aws!.resources;
const byKind = (rs: Resource[], kind: string) => rs.filter((r) => r.kind === kind);
const targetOf = (s: ReturnType<typeof spec>, p: string, now = NOW) => (sessionTarget(s, 'aws', p, now) as { target: string }).target;

const team = (extra: SpecInput['principals'] = {}) =>
  spec({
    alice: { type: 'person', email: 'alice@example.com', credentials: 'temporary', groups: ['researchers', 'reviewers'], maxSession: '4h' },
    bob: { type: 'person', credentials: 'temporary', groups: ['reviewers', 'researchers'] },
    carol: { type: 'person', credentials: 'temporary', groups: ['researchers'], grants: [{ dataset: 'art', access: 'write' }] },
    dave: { type: 'person', groups: ['researchers'] },
    ...extra,
  });

describe('access-set roles', () => {
  test('temporary principals get no user or key; one role per access set, named as sessionTarget names it', () => {
    const s = team();
    const rs = resourcesOf(s);
    expect(byKind(rs, 'user').map((r) => r.name)).toEqual(['dave']);
    expect(byKind(rs, 'key').map((r) => r.name)).toEqual(['dave']);
    const roles = byKind(rs, 'role');
    expect(roles.map((r) => r.name).sort()).toEqual([targetOf(s, 'alice'), targetOf(s, 'carol')].sort());
    expect(targetOf(s, 'bob')).toBe(targetOf(s, 'alice'));
    const shared = roles.find((r) => r.name === targetOf(s, 'alice'))!;
    expect(shared.attrs).toEqual({
      path: '/datagrant/',
      tags: { 'datagrant:managed': 'true', 'datagrant:installation': 'inst-1' },
      description: 'datagrant access set: groups researchers,reviewers + no direct grants',
      // the largest maxSession among its principals
      maxSessionDuration: 4 * 3600,
      trust: 'datagrant',
    });
    // No principal's name or email in what IAM lists to its readers.
    for (const r of roles) expect(JSON.stringify(r.attrs)).not.toMatch(/alice|bob|carol|example\.com/);
  });

  test("a role holds exactly its set's access: the groups' policies and the direct grants", () => {
    const s = team();
    const rs = resourcesOf(s);
    const attached = (role: string) =>
      byKind(rs, 'attachment')
        .filter((r) => r.attrs.entity === 'role' && r.attrs.entityName === role)
        .map((r) => r.attrs.policy)
        .sort();
    expect(attached(targetOf(s, 'alice'))).toEqual(['dg-group-researchers', 'dg-group-reviewers']);
    expect(attached(targetOf(s, 'carol'))).toEqual(['dg-group-researchers']);
    const inline = byKind(rs, 'inline-policy').filter((r) => r.attrs.entity === 'role');
    expect(inline.map((r) => [r.attrs.entityName, r.name])).toEqual([[targetOf(s, 'carol'), 'dg-direct-grants']]);
    const docs = [
      inline[0]!.attrs.document as unknown as AnyPolicy,
      ...byKind(rs, 'policy')
        .filter((p) => p.name === 'dg-group-researchers')
        .map((p) => p.attrs.document as unknown as AnyPolicy),
    ];
    const decide = (action: string, resource: string) => evaluate(docs, { action, resource }).decision;
    expect(decide('s3:PutObject', 'arn:aws:s3:::ai-model-artifacts/m.bin')).toBe('allow');
    expect(decide('s3:GetObject', 'arn:aws:s3:::ai-model-data/training/a.txt')).toBe('allow');
    expect(decide('s3:GetObject', 'arn:aws:s3:::ai-model-data/eval/c.txt')).toBe('implicit-deny');
  });

  test('a role waits for nothing but its policies; attachments wait for the role', () => {
    const s = team();
    const rs = resourcesOf(s);
    const role = targetOf(s, 'carol');
    for (const r of rs.filter((x) => x.attrs.entity === 'role' && x.attrs.entityName === role)) expect(r.deps).toContain(`aws:role/${role}`);
  });

  test('maxSessionDuration is at least IAM 3600 s', () => {
    const s = spec({ erin: { type: 'person', credentials: 'temporary', groups: ['researchers'], maxSession: '15m' } });
    expect(byKind(resourcesOf(s), 'role')[0]!.attrs.maxSessionDuration).toBe(3600);
  });

  test('roles count against quotas.roles, with the way out', () => {
    expect(() => resourcesOf(spec(team().principals as SpecInput['principals'], { quotas: { roles: 1 } }))).toThrow(
      /2 IAM roles needed, the account quota is 1 \(quotas\.roles\)\. Raise the quota .*same grants through groups/,
    );
    expect(byKind(resourcesOf(spec(team().principals as SpecInput['principals'], { quotas: { roles: 2 } })), 'role')).toHaveLength(2);
  });

  test('a role needing more than 10 managed policies is refused at plan', () => {
    const groups = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`g${i}`, { grants: [{ dataset: 'train', access: 'read' }] }]));
    const s = specSchema.parse({
      version: 1,
      backends: { aws: { type: 'aws' } },
      datasets: { train: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' } },
      groups,
      principals: { erin: { type: 'person', credentials: 'temporary', groups: Object.keys(groups) } },
    });
    expect(() => resourcesOf(s)).toThrow(/access-set role dg-s-[0-9a-f]{12} \(principals erin\): needs 11 managed policies.*IAM allows 10 per role/);
  });
});

describe('revocation of live sessions', () => {
  const aliceSet = targetOf(team(), 'alice');
  const fact = (principal: string, target: string, issued: number, expires: number): SessionFact => ({
    backend: 'aws',
    principal,
    target,
    lastIssuedAt: at(issued),
    expiresAt: at(expires),
  });
  const revoked = (rs: Resource[], role: string) => rs.find((r) => r.address === `aws:inline-policy/role/${role}/dg-revoked`);
  // alice leaves the reviewers: her sessions ran as the role bob still uses.
  const moved = team({
    alice: { type: 'person', credentials: 'temporary', groups: ['researchers'] },
  });

  test('a principal still in its set: nothing to revoke', () => {
    expect(revoked(resourcesOf(team(), [fact('alice', aliceSet, -5, 55)]), aliceSet)).toBeUndefined();
  });

  test("a moved principal's sessions on the role are all denied, whenever issued; bob's are not (evaluator)", () => {
    const rs = resourcesOf(moved, [fact('alice', aliceSet, -5, 55), fact('bob', aliceSet, -3, 57)]);
    const deny = revoked(rs, aliceSet);
    expect(deny).toBeDefined();
    const policies = [
      deny!.attrs.document as unknown as AnyPolicy,
      ...byKind(rs, 'policy')
        .filter((p) => p.name.startsWith('dg-group-'))
        .map((p) => p.attrs.document as unknown as AnyPolicy),
    ];
    const read = (who: string, issuedAt: string) =>
      evaluate(policies, {
        action: 's3:GetObject',
        resource: 'arn:aws:s3:::ai-model-data/training/a.txt',
        context: { 'aws:SourceIdentity': who, 'aws:TokenIssueTime': issuedAt },
      }).decision;
    const cases: [string, string, string][] = [
      ['alice', at(-30), 'explicit-deny'],
      ['alice', at(-5), 'explicit-deny'],
      // Issued after the recorded one (a host clock lagging AWS's, a session issued while the
      // plan read the log): still alice's, on a role she has left, so still denied.
      ['alice', at(1), 'explicit-deny'],
      ['bob', at(-3), 'allow'],
      ['bob', at(-30), 'allow'],
    ];
    for (const [who, issued, decision] of cases) expect([who, issued, read(who, issued)]).toEqual([who, issued, decision]);
  });

  test('the deny is stable across plans and drops out once the session has expired', () => {
    const facts = [fact('alice', aliceSet, -5, 55)];
    expect(revoked(resourcesOf(moved, facts), aliceSet)).toEqual(revoked(resourcesOf(moved, facts, new Date(NOW.getTime() + 30 * 60_000)), aliceSet));
    expect(revoked(resourcesOf(moved, facts, new Date(NOW.getTime() + 55 * 60_000)), aliceSet)).toBeUndefined();
  });

  test.each([
    ['removed', spec({ bob: { type: 'person', credentials: 'temporary', groups: ['reviewers', 'researchers'] } })],
    ['switched to a key', team({ alice: { type: 'person', groups: ['researchers', 'reviewers'] } })],
  ])('a principal %s is revoked too', (_, s) => {
    const rs = resourcesOf(s, [fact('alice', aliceSet, -5, 55)]);
    expect(JSON.stringify(revoked(rs, aliceSet)?.attrs.document)).toContain('"alice"');
  });

  test('a role left without principals is deleted rather than denied', () => {
    const s = team();
    const carolRole = targetOf(s, 'carol');
    const rs = resourcesOf(team({ carol: { type: 'person', credentials: 'temporary', groups: ['researchers'] } }), [fact('carol', carolRole, -5, 55)]);
    expect(byKind(rs, 'role').map((r) => r.name)).not.toContain(carolRole);
    expect(revoked(rs, carolRole)).toBeUndefined();
  });

  test('too many to deny by name: every session issued by the latest (plus the clock margin) is denied, with a notice', () => {
    const many = Array.from({ length: 400 }, (_, i) => fact(`gone-principal-with-a-long-name-${i}`, aliceSet, -10 + (i % 7), 50));
    const out = compile(team(), NOW, { sessions: many }).desired.aws!;
    const deny = revoked(out.resources, aliceSet)!;
    expect(deny.attrs.document).toEqual({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Deny', Action: ['*'], Resource: ['*'], Condition: { DateLessThanEquals: { 'aws:TokenIssueTime': ['2026-11-30T12:01:00Z'] } } }],
    });
    expect(out.notices.map((n) => n.message).join('\n')).toMatch(/every session of the role issued at or before 2026-11-30T12:01:00Z is denied/);
  });
});

describe('the session name', () => {
  test.each([
    ['alice', 'alice'],
    ['alice.smith@example.com', 'alice.smith@example.com'],
    ['a b/c:d', 'a-b-c-d'],
    ['x', 'x-'],
    ['p'.repeat(80), 'p'.repeat(64)],
  ])('%s → %s (2 to 64 of [\\w+=,.@-])', (principal, name) => {
    expect(roleSessionName(principal)).toBe(name);
  });
});
