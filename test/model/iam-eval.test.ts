// The IAM evaluator against AWS's documented rules, then against the documents datagrant compiles:
// what moto does not enforce (conditions, session revocation) is proved here.
import { describe, expect, test } from 'vitest';
import { compile } from '../../src/compile/index.js';
import type { Resource } from '../../src/core/types.js';
import {
  conditionHolds,
  evaluate,
  evaluateSession,
  hasPolicyVariable,
  matchesAny,
  reachOfPrefix,
  withVariables,
  type AnyPolicy,
  type AnyStatement,
  type EvalRequest,
} from '../../src/model/iam-eval.js';
import { specSchema } from '../../src/spec/schema.js';

const doc = (...Statement: AnyPolicy['Statement'][]): AnyPolicy => ({ Version: '2012-10-17', Statement: Statement.flat() });
const req = (action: string, resource: string, context?: EvalRequest['context'], unknownKeys?: string[]): EvalRequest => ({
  action,
  resource,
  ...(context ? { context } : {}),
  ...(unknownKeys ? { unknownKeys } : {}),
});
const decide = (policies: AnyPolicy[], r: EvalRequest) => evaluate(policies, r).decision;

describe('matching', () => {
  test('actions match case-insensitively with * and ?; resources case-sensitively, * crossing /', () => {
    const p = doc({ Effect: 'Allow', Action: 's3:Get*', Resource: 'arn:aws:s3:::b/train/*' });
    expect(decide([p], req('S3:GETOBJECT', 'arn:aws:s3:::b/train/x/y.txt'))).toBe('allow');
    expect(decide([p], req('s3:PutObject', 'arn:aws:s3:::b/train/x'))).toBe('implicit-deny');
    expect(decide([p], req('s3:GetObject', 'arn:aws:s3:::b/Train/x'))).toBe('implicit-deny');
    expect(decide([p], req('s3:GetObject', 'arn:aws:s3:::b/trainer'))).toBe('implicit-deny');
    const q = doc({ Effect: 'Allow', Action: 's3:GetObjec?', Resource: '*' });
    expect(decide([q], req('s3:GetObject', 'arn:aws:s3:::any'))).toBe('allow');
    expect(decide([q], req('s3:GetObjectVersion', 'arn:aws:s3:::any'))).toBe('implicit-deny');
  });

  test('regular-expression characters in patterns are literal', () => {
    const p = doc({ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/a.b(c)/*' });
    expect(decide([p], req('s3:GetObject', 'arn:aws:s3:::b/a.b(c)/k'))).toBe('allow');
    expect(decide([p], req('s3:GetObject', 'arn:aws:s3:::b/aXb(c)/k'))).toBe('implicit-deny');
  });

  test('NotAction and NotResource', () => {
    const p = doc({ Effect: 'Allow', NotAction: 's3:Delete*', NotResource: 'arn:aws:s3:::secret/*' });
    expect(decide([p], req('s3:GetObject', 'arn:aws:s3:::b/k'))).toBe('allow');
    expect(decide([p], req('s3:DeleteObject', 'arn:aws:s3:::b/k'))).toBe('implicit-deny');
    expect(decide([p], req('s3:GetObject', 'arn:aws:s3:::secret/k'))).toBe('implicit-deny');
  });

  test('an explicit deny wins over any allow, in any policy', () => {
    const allow = doc({ Effect: 'Allow', Action: '*', Resource: '*' });
    const deny = doc({ Sid: 'NoWrites', Effect: 'Deny', Action: 's3:PutObject', Resource: '*' });
    const r = evaluate([allow, deny], req('s3:PutObject', 'arn:aws:s3:::b/k'));
    expect(r.decision).toBe('explicit-deny');
    expect(r.deniedBy).toEqual(['NoWrites']);
    expect(decide([allow, deny], req('s3:GetObject', 'arn:aws:s3:::b/k'))).toBe('allow');
  });
});

describe('conditions', () => {
  const expiring = doc({
    Effect: 'Allow',
    Action: 's3:GetObject',
    Resource: '*',
    Condition: { DateLessThan: { 'aws:CurrentTime': '2026-12-01T00:00:00Z' } },
  });

  test('DateLessThan on aws:CurrentTime: allowed before the instant, not at or after it', () => {
    expect(decide([expiring], req('s3:GetObject', 'x', { 'aws:CurrentTime': '2026-11-30T23:59:59Z' }))).toBe('allow');
    expect(decide([expiring], req('s3:GetObject', 'x', { 'aws:CurrentTime': '2026-12-01T00:00:00Z' }))).toBe('implicit-deny');
    // Condition key names are case-insensitive.
    expect(decide([expiring], req('s3:GetObject', 'x', { 'AWS:currenttime': '2026-11-01T00:00:00Z' }))).toBe('allow');
  });

  test('an absent key: positive operators are false, negated ones and …IfExists true, Null tests presence', () => {
    const op = (Condition: NonNullable<AnyStatement['Condition']>) =>
      decide([doc({ Effect: 'Allow', Action: '*', Resource: '*', Condition })], req('s3:GetObject', 'x'));
    expect(op({ StringEquals: { 'aws:SourceIdentity': 'alice' } })).toBe('implicit-deny');
    expect(op({ StringNotEquals: { 'aws:SourceIdentity': 'alice' } })).toBe('allow');
    expect(op({ StringEqualsIfExists: { 'aws:SourceIdentity': 'alice' } })).toBe('allow');
    expect(op({ Null: { 'aws:SourceIdentity': 'true' } })).toBe('allow');
    expect(op({ Null: { 'aws:SourceIdentity': 'false' } })).toBe('implicit-deny');
    expect(op({ 'ForAllValues:StringEquals': { 'aws:TagKeys': ['a'] } })).toBe('allow');
    expect(op({ 'ForAnyValue:StringEquals': { 'aws:TagKeys': ['a'] } })).toBe('implicit-deny');
  });

  test('values of one key are ORed (NORed when negated); keys and operators are ANDed', () => {
    const s = (Condition: Record<string, Record<string, string | string[]>>) => doc({ Effect: 'Allow', Action: '*', Resource: '*', Condition });
    const listing = s({ StringLike: { 's3:prefix': ['train/*', 'eval/*'] } });
    expect(decide([listing], req('s3:ListBucket', 'b', { 's3:prefix': 'eval/2026/' }))).toBe('allow');
    expect(decide([listing], req('s3:ListBucket', 'b', { 's3:prefix': 'secret/' }))).toBe('implicit-deny');
    const not = s({ StringNotEquals: { 'aws:username': ['a', 'b'] } });
    expect(decide([not], req('x:Y', 'r', { 'aws:username': 'b' }))).toBe('implicit-deny');
    expect(decide([not], req('x:Y', 'r', { 'aws:username': 'c' }))).toBe('allow');
    const both = s({ StringEquals: { 'aws:username': 'a' }, StringLike: { 's3:prefix': 'p/*' } });
    expect(decide([both], req('x:Y', 'r', { 'aws:username': 'a', 's3:prefix': 'p/1' }))).toBe('allow');
    expect(decide([both], req('x:Y', 'r', { 'aws:username': 'a', 's3:prefix': 'q/1' }))).toBe('implicit-deny');
  });

  test('what cannot be known statically is unknown and says why; a deny that cannot be decided blocks an allow', () => {
    const ip = doc({ Sid: 'Office', Effect: 'Allow', Action: '*', Resource: '*', Condition: { IpAddress: { 'aws:SourceIp': '10.0.0.0/8' } } });
    const r = evaluate([ip], req('s3:GetObject', 'x', { 'aws:SourceIp': '10.1.2.3' }));
    expect(r.decision).toBe('unknown');
    expect(r.unknown.join()).toMatch(/Office: operator IpAddress/);
    const byRequest = doc({ Effect: 'Allow', Action: '*', Resource: '*', Condition: { StringLike: { 's3:prefix': 'a/*' } } });
    const u = evaluate([byRequest], req('s3:ListBucket', 'b', undefined, ['s3:prefix']));
    expect(u.decision).toBe('unknown');
    expect(u.unknown.join()).toMatch(/s3:prefix/);
    const allow = doc({ Effect: 'Allow', Action: '*', Resource: '*' });
    const maybeDeny = doc({ Effect: 'Deny', Action: '*', Resource: '*', Condition: { Bogus: { k: 'v' } } });
    expect(decide([allow, maybeDeny], req('a:B', 'r'))).toBe('unknown');
    expect(decide([maybeDeny], req('a:B', 'r'))).toBe('implicit-deny');
  });
});

describe('a reading without a request (effective access)', () => {
  test('with otherKeysUnknown only the keys supplied are known: the clock decides, the rest is unknown and named', () => {
    const s: AnyStatement = {
      Effect: 'Allow',
      Action: '*',
      Resource: '*',
      Condition: { DateLessThan: { 'aws:CurrentTime': '2027-01-01T00:00:00Z' }, Bool: { 'aws:MultiFactorAuthPresent': 'true' } },
    };
    const why: string[] = [];
    expect(conditionHolds(s, { context: { 'aws:CurrentTime': '2026-12-01T00:00:00Z' }, otherKeysUnknown: true }, why)).toBe('unknown');
    expect(why.join()).toMatch(/Bool on aws:MultiFactorAuthPresent/);
    // past the instant the statement is off, whatever the unknown key would say
    expect(conditionHolds(s, { context: { 'aws:CurrentTime': '2027-01-02T00:00:00Z' }, otherKeysUnknown: true }, [])).toBe(false);
    // without the flag an absent key is absent: Bool on it is false
    expect(conditionHolds(s, { context: { 'aws:CurrentTime': '2026-12-01T00:00:00Z' } }, [])).toBe(false);
    // a Null test of an unknown key is unknown too
    expect(conditionHolds({ ...s, Condition: { Null: { 'aws:SourceVpc': 'true' } } }, { otherKeysUnknown: true }, [])).toBe('unknown');
  });
});

describe('how much of a prefix resource patterns reach', () => {
  const DS = 'arn:aws:s3:::b/train/';
  test.each([
    ['the dataset exactly', ['arn:aws:s3:::b/train/*'], 'all'],
    ['a shorter prefix', ['arn:aws:s3:::b/tr*'], 'all'],
    ['the whole bucket', ['arn:aws:s3:::b/*'], 'all'],
    ['everything', ['*'], 'all'],
    ['any bucket, one wildcard segment', ['arn:aws:s3:::*/train/*'], 'all'],
    ['? for one character', ['arn:aws:s3:::?/t?ain/*'], 'all'],
    ['a sub-prefix', ['arn:aws:s3:::b/train/sub/*'], 'some'],
    ['one object', ['arn:aws:s3:::b/train/a.txt'], 'some'],
    ['objects by suffix', ['arn:aws:s3:::b/*.csv'], 'some'],
    ['a wildcard that needs one more character', ['arn:aws:s3:::b/train/?*'], 'some'],
    ['another prefix of the bucket', ['arn:aws:s3:::b/other/*'], 'none'],
    ['a longer name sharing the start', ['arn:aws:s3:::b/trainer/*'], 'none'],
    ['the bucket, not its objects', ['arn:aws:s3:::b'], 'none'],
    ['another bucket', ['arn:aws:s3:::c/*'], 'none'],
    ['case matters', ['arn:aws:s3:::b/Train/*'], 'none'],
    ['parts that together cover it', ['arn:aws:s3:::b/train/', 'arn:aws:s3:::b/train/?*'], 'all'],
    ['no patterns', [], 'none'],
  ])('%s', (_, patterns, reach) => {
    expect(reachOfPrefix(patterns, DS, 'widen')).toBe(reach);
  });

  test('policy variables: widened to *, or the pattern dropped; the escapes are literal', () => {
    const home = 'arn:aws:s3:::b/${aws:username}/*';
    expect(hasPolicyVariable(home)).toBe(true);
    expect(reachOfPrefix([home], 'arn:aws:s3:::b/alice/', 'widen')).toBe('all');
    expect(reachOfPrefix([home], 'arn:aws:s3:::b/alice/', 'narrow')).toBe('none');
    const escaped = 'arn:aws:s3:::b/train/${*}';
    expect(hasPolicyVariable(escaped)).toBe(false);
    // the object named `train/*`, and no other
    expect(reachOfPrefix([escaped], DS, 'narrow')).toBe('some');
    expect(reachOfPrefix([escaped], 'arn:aws:s3:::b/train/x', 'narrow')).toBe('none');
  });
});

describe('one resource: matchesAny', () => {
  test.each<[string, string[], string, boolean]>([
    ['exactly', ['arn:aws:s3:::b'], 'arn:aws:s3:::b', true],
    ['its objects are not the bucket', ['arn:aws:s3:::b/*'], 'arn:aws:s3:::b', false],
    ['a longer name is another bucket', ['arn:aws:s3:::b'], 'arn:aws:s3:::bb', false],
    ['* and ?', ['arn:aws:s3:::*', 'arn:aws:s3:::x'], 'arn:aws:s3:::b', true],
    ['? is one character', ['arn:aws:s3:::b?'], 'arn:aws:s3:::b', false],
    ['a variable, widened', ['arn:aws:iam::1:user/${aws:username}'], 'arn:aws:iam::1:user/bob', true],
  ])('%s', (_, patterns, value, want) => {
    expect(matchesAny(patterns, value, 'widen')).toBe(want);
  });

  test('a variable read narrowly matches nothing; put in, it matches its value only', () => {
    expect(matchesAny(['arn:aws:iam::1:user/${aws:username}'], 'arn:aws:iam::1:user/bob', 'narrow')).toBe(false);
    const own = withVariables('arn:aws:iam::*:user/${AWS:UserName}', { 'aws:username': 'bob' });
    expect(own).toBe('arn:aws:iam::*:user/bob');
    expect(matchesAny([own], 'arn:aws:iam::1:user/bob', 'narrow')).toBe(true);
    expect(matchesAny([own], 'arn:aws:iam::1:user/bobby', 'narrow')).toBe(false);
    expect(withVariables('a/${aws:userid}', { 'aws:username': 'bob' })).toBe('a/${aws:userid}');
  });
});

describe('sessions', () => {
  const role = doc({ Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: 'arn:aws:s3:::b/*' });

  test('a session gets the intersection of its role and its session policies', () => {
    const session = doc({ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' });
    expect(evaluateSession([role], [session], req('s3:GetObject', 'arn:aws:s3:::b/k')).decision).toBe('allow');
    expect(evaluateSession([role], [session], req('s3:PutObject', 'arn:aws:s3:::b/k')).decision).toBe('implicit-deny');
    expect(evaluateSession([role], [session], req('s3:GetObject', 'arn:aws:s3:::c/k')).decision).toBe('implicit-deny');
    expect(evaluateSession([role], [], req('s3:PutObject', 'arn:aws:s3:::b/k')).decision).toBe('allow');
  });

  test('revoking one identity: its sessions issued until the instant are denied; later ones and others are not', () => {
    const revoked = doc({
      Sid: 'RevokeAlice',
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: { StringEquals: { 'aws:SourceIdentity': 'alice' }, DateLessThanEquals: { 'aws:TokenIssueTime': '2026-11-30T12:00:00Z' } },
    });
    const ctx = (who: string, issued: string) => ({ 'aws:SourceIdentity': who, 'aws:TokenIssueTime': issued });
    const get = (who: string, issued: string) => decide([role, revoked], req('s3:GetObject', 'arn:aws:s3:::b/k', ctx(who, issued)));
    expect(get('alice', '2026-11-30T11:59:00Z')).toBe('explicit-deny');
    expect(get('alice', '2026-11-30T12:00:00Z')).toBe('explicit-deny');
    expect(get('alice', '2026-11-30T12:00:01Z')).toBe('allow');
    expect(get('bob', '2026-11-30T11:00:00Z')).toBe('allow');
  });
});

describe("datagrant's compiled documents", () => {
  const NOW = new Date('2026-11-28T00:00:00Z');
  const spec = specSchema.parse({
    version: 1,
    backends: { aws: { type: 'aws' } },
    datasets: {
      train: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' },
      evals: { backend: 'aws', bucket: 'ai-model-data', prefix: 'eval/' },
      other: { backend: 'aws', bucket: 'other-bucket' },
    },
    groups: { researchers: { grants: [{ dataset: 'train', access: 'read' }] } },
    principals: {
      alice: { type: 'person', groups: ['researchers'], grants: [{ dataset: 'evals', access: 'write', expires: '2026-12-01T00:00:00Z' }] },
    },
  });
  const resources = compile(spec, NOW).desired.aws!.resources;
  // Whatever representation the compiler chooses (managed policies attached, or inline), the
  // documents that apply to an entity.
  const documents = (entity: 'user' | 'group', name: string): AnyPolicy[] => {
    const ofEntity = (r: Resource) => r.attrs.entity === entity && r.attrs.entityName === name;
    const attached = new Set(resources.filter((r) => r.kind === 'attachment' && ofEntity(r)).map((a) => String(a.attrs.policy)));
    const managed = resources.filter((r) => r.kind === 'policy' && attached.has(r.name));
    const inline = resources.filter((r) => r.kind === 'inline-policy' && ofEntity(r));
    return [...managed, ...inline].map((r) => r.attrs.document as unknown as AnyPolicy);
  };
  const alice = [...documents('user', 'alice'), ...documents('group', 'researchers')];
  const at = (t: string, extra: Record<string, string> = {}) => ({ 'aws:CurrentTime': t, ...extra });

  test('the documents for alice exist', () => {
    expect(documents('group', 'researchers').length).toBeGreaterThan(0);
    expect(documents('user', 'alice').length).toBeGreaterThan(0);
  });

  test('read via the group: objects under the prefix and listing with that prefix only', () => {
    expect(decide(alice, req('s3:GetObject', 'arn:aws:s3:::ai-model-data/training/a.txt', at('2026-11-29T00:00:00Z')))).toBe('allow');
    expect(decide(alice, req('s3:PutObject', 'arn:aws:s3:::ai-model-data/training/a.txt', at('2026-11-29T00:00:00Z')))).toBe('implicit-deny');
    expect(decide(alice, req('s3:ListBucket', 'arn:aws:s3:::ai-model-data', at('2026-11-29T00:00:00Z', { 's3:prefix': 'training/x' })))).toBe('allow');
    expect(decide(alice, req('s3:ListBucket', 'arn:aws:s3:::ai-model-data', at('2026-11-29T00:00:00Z', { 's3:prefix': 'secret/' })))).toBe('implicit-deny');
  });

  test('the direct write grant holds until it expires, enforced by the condition itself', () => {
    const put = (t: string) => decide(alice, req('s3:PutObject', 'arn:aws:s3:::ai-model-data/eval/x', at(t)));
    expect(put('2026-11-30T23:59:59Z')).toBe('allow');
    expect(put('2026-12-01T00:00:00Z')).toBe('implicit-deny');
  });

  test('other datasets and other buckets are denied', () => {
    expect(decide(alice, req('s3:GetObject', 'arn:aws:s3:::other-bucket/secret.txt', at('2026-11-29T00:00:00Z')))).toBe('implicit-deny');
    expect(decide(alice, req('s3:DeleteObject', 'arn:aws:s3:::ai-model-data/eval/x', at('2026-11-29T00:00:00Z')))).toBe('implicit-deny');
  });
});
