import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { compile } from '../../src/compile/index.js';
import { compileAws, grantStatements, IAM_QUOTAS } from '../../src/compile/aws/compile.js';
import {
  MANAGED_POLICY_MAX_CHARS,
  mergeStatements,
  normalizePolicy,
  packStatements,
  policyDocument,
  type PolicyDocument,
  type Statement,
} from '../../src/model/aws-policy.js';
import { CompileError, SpecError } from '../../src/core/errors.js';
import type { Level, Resource } from '../../src/core/types.js';
import { S3_PREFIX_RE, s3PrefixProblem } from '../../src/spec/limits.js';
import { parseSpec } from '../../src/spec/load.js';
import { specSchema, type Spec, type SpecInput } from '../../src/spec/schema.js';
import { mulberry32 } from '../support/prng.js';

const NOW = new Date('2026-11-28T00:00:00Z');
const BUCKET = 'ai-model-data';
const ARN = `arn:aws:s3:::${BUCKET}`;

const build = (input: Omit<SpecInput, 'version' | 'backends'> & { backends?: SpecInput['backends'] }): Spec =>
  specSchema.parse({ version: 1, backends: { aws: { type: 'aws' } }, ...input });

const byKind = (rs: Resource[], kind: string) => rs.filter((r) => r.kind === kind);
const policyDoc = (rs: Resource[], name: string) =>
  rs.find((r) => r.kind === 'policy' && r.name === name)?.attrs.document as unknown as PolicyDocument | undefined;
/** The document of a principal's direct grants: its inline policy, or the shared policies attached to it. */
const directDoc = (rs: Resource[], user: string): PolicyDocument | undefined => {
  const inline = rs.find((r) => r.address === `aws:inline-policy/user/${user}/dg-direct-grants`);
  if (inline) return inline.attrs.document as unknown as PolicyDocument;
  const attached = byKind(rs, 'attachment').filter((a) => a.attrs.entity === 'user' && a.attrs.entityName === user);
  if (!attached.length) return undefined;
  return { Version: '2012-10-17', Statement: canonicalOrder(attached.flatMap((a) => policyDoc(rs, String(a.attrs.policy))!.Statement)) };
};
const canonicalOrder = (ss: Statement[]) => [...ss].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
const nonWhitespace = (doc: PolicyDocument) => JSON.stringify(doc).replace(/\s/g, '').length;

// The least-privilege table, written out by hand: what each level must grant, and nothing more.
const OBJECT: Record<Level, string[]> = {
  read: ['s3:GetObject', 's3:GetObjectVersion'],
  write: ['s3:AbortMultipartUpload', 's3:GetObject', 's3:GetObjectVersion', 's3:ListMultipartUploadParts', 's3:PutObject'],
  admin: [
    's3:AbortMultipartUpload',
    's3:DeleteObject',
    's3:DeleteObjectVersion',
    's3:GetObject',
    's3:GetObjectVersion',
    's3:ListMultipartUploadParts',
    's3:PutObject',
  ],
};

function expectedStatements(level: Level, prefix: string | undefined, condition?: Statement['Condition']): Statement[] {
  const c = condition ? { Condition: condition } : {};
  const object: Statement = { Effect: 'Allow', Action: OBJECT[level], Resource: [`${ARN}/${prefix ?? ''}*`], ...c };
  if (!prefix) {
    // A whole bucket: listing it all is the point, so ListBucket carries no condition.
    const bucketActions = ['s3:GetBucketLocation', 's3:ListBucket', ...(level === 'read' ? [] : ['s3:ListBucketMultipartUploads'])];
    return canonicalOrder([object, { Effect: 'Allow', Action: bucketActions, Resource: [ARN], ...c }]);
  }
  const listing: Statement = {
    Effect: 'Allow',
    Action: ['s3:ListBucket'],
    Resource: [ARN],
    Condition: { ...(condition ?? {}), StringLike: { 's3:prefix': [`${prefix}*`] } },
  };
  return canonicalOrder([object, { Effect: 'Allow', Action: ['s3:GetBucketLocation'], Resource: [ARN], ...c }, listing]);
}

describe('levels x prefix x group/direct', () => {
  const cases: [Level, string | undefined, 'group' | 'direct'][] = [];
  for (const level of ['read', 'write', 'admin'] as const) {
    for (const prefix of [undefined, 'training/']) for (const via of ['group', 'direct'] as const) cases.push([level, prefix, via]);
  }

  test.each(cases)('%s, prefix %s, via %s', (level, prefix, via) => {
    // GIVEN one grant, through a group or directly
    const grant = { dataset: 'data', access: level };
    const spec = build({
      datasets: { data: { backend: 'aws', bucket: BUCKET, ...(prefix ? { prefix } : {}) } },
      groups: via === 'group' ? { team: { grants: [grant] } } : {},
      principals: { alice: { type: 'person', groups: via === 'group' ? ['team'] : [], grants: via === 'direct' ? [grant] : [] } },
    });
    // WHEN
    const { resources } = compileAws(spec, 'aws', { now: NOW });
    // THEN exactly the least-privilege statements, in one policy on the grant's holder: the
    // group's managed policy, or the principal's inline policy
    const expected = { Version: '2012-10-17', Statement: expectedStatements(level, prefix) };
    if (via === 'group') {
      expect(byKind(resources, 'policy').map((p) => p.name)).toEqual(['dg-group-team']);
      expect(policyDoc(resources, 'dg-group-team')).toEqual(expected);
      expect(byKind(resources, 'attachment').map((r) => r.attrs)).toEqual([{ entity: 'group', entityName: 'team', policy: 'dg-group-team' }]);
      expect(byKind(resources, 'inline-policy')).toEqual([]);
    } else {
      expect(byKind(resources, 'policy')).toEqual([]);
      expect(byKind(resources, 'attachment')).toEqual([]);
      expect(byKind(resources, 'inline-policy').map((r) => [r.name, r.attrs])).toEqual([
        ['dg-direct-grants', { entity: 'user', entityName: 'alice', document: expected }],
      ]);
    }
    expect(byKind(resources, 'membership').map((r) => r.attrs)).toEqual(via === 'group' ? [{ group: 'team', user: 'alice' }] : []);
    expect(byKind(resources, 'user').map((r) => r.name)).toEqual(['alice']);
    expect(byKind(resources, 'key').map((r) => r.name)).toEqual(['alice']);
  });

  test('ListBucket is only ever conditioned on s3:prefix when the dataset has a prefix', () => {
    for (const level of ['read', 'write', 'admin'] as const) {
      const whole = grantStatements(BUCKET, undefined, { dataset: 'd', access: level });
      expect(JSON.stringify(whole)).not.toContain('s3:prefix');
      const prefixed = grantStatements(BUCKET, 'a/', { dataset: 'd', access: level });
      const listing = prefixed.filter((s) => s.Action.includes('s3:ListBucket'));
      expect(listing).toEqual([{ Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [ARN], Condition: { StringLike: { 's3:prefix': ['a/*'] } } }]);
      // Listing in-progress uploads cannot be limited to a prefix, so a prefixed dataset never gets it.
      expect(JSON.stringify(prefixed)).not.toContain('ListBucketMultipartUploads');
    }
  });

  test('no action outside the table, and no wildcard action or resource outside the dataset', () => {
    const spec = build({
      datasets: { a: { backend: 'aws', bucket: BUCKET, prefix: 'x/' }, b: { backend: 'aws', bucket: 'other-bucket' } },
      principals: {
        p: {
          type: 'service',
          grants: [
            { dataset: 'a', access: 'admin' },
            { dataset: 'b', access: 'admin' },
          ],
        },
      },
    });
    const doc = directDoc(compileAws(spec, 'aws', { now: NOW }).resources, 'p')!;
    const actions = new Set(doc.Statement.flatMap((s) => s.Action));
    expect([...actions].sort()).toEqual([...new Set([...OBJECT.admin, 's3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads'])].sort());
    for (const s of doc.Statement) {
      expect(s.Effect).toBe('Allow');
      for (const r of s.Resource) expect(r).toMatch(/^arn:aws:s3:::(ai-model-data(\/x\/\*)?|other-bucket(\/\*)?)$/);
    }
  });
});

describe('expiry', () => {
  const EXP = '2027-01-31';
  const cond = { DateLessThan: { 'aws:CurrentTime': ['2027-01-31T00:00:00Z'] } };

  test.each([
    ['no prefix', undefined],
    ['a prefix', 'training/'],
  ])('every statement of an expiring grant carries DateLessThan aws:CurrentTime (%s)', (_what, prefix) => {
    const spec = build({
      datasets: { data: { backend: 'aws', bucket: BUCKET, ...(prefix ? { prefix } : {}) } },
      principals: { p: { type: 'service', grants: [{ dataset: 'data', access: 'write', expires: EXP }] } },
    });
    const doc = directDoc(compileAws(spec, 'aws', { now: NOW }).resources, 'p')!;
    expect(doc.Statement).toEqual(expectedStatements('write', prefix, cond));
    for (const s of doc.Statement) expect(s.Condition?.DateLessThan).toEqual({ 'aws:CurrentTime': ['2027-01-31T00:00:00Z'] });
  });

  test('an instant with an offset is converted to UTC in the condition', () => {
    const [first] = grantStatements(BUCKET, undefined, { dataset: 'd', access: 'read', expires: '2027-01-31T12:30:00+02:00' });
    expect(first!.Condition).toEqual({ DateLessThan: { 'aws:CurrentTime': ['2027-01-31T10:30:00Z'] } });
  });

  test('an expiring statement is never merged with an otherwise identical non-expiring one', () => {
    // GIVEN two datasets naming the same bucket, one granted until a date and one for good
    const spec = build({
      datasets: { a: { backend: 'aws', bucket: BUCKET }, b: { backend: 'aws', bucket: BUCKET } },
      principals: {
        p: {
          type: 'service',
          grants: [
            { dataset: 'a', access: 'read', expires: EXP },
            { dataset: 'b', access: 'read' },
          ],
        },
      },
    });
    // WHEN
    const doc = directDoc(compileAws(spec, 'aws', { now: NOW }).resources, 'p')!;
    // THEN the forever grant keeps working after the expiry instant
    expect(doc.Statement).toEqual(canonicalOrder([...expectedStatements('read', undefined), ...expectedStatements('read', undefined, cond)]));
  });

  test('an expired grant compiles to nothing; a principal whose only grants expired has no user and no key', () => {
    const spec = build({
      datasets: { a: { backend: 'aws', bucket: BUCKET }, b: { backend: 'aws', bucket: 'other-bucket' } },
      groups: { g: { grants: [{ dataset: 'b', access: 'read', expires: '2026-11-01' }] } },
      principals: {
        gone: { type: 'service', grants: [{ dataset: 'a', access: 'read', expires: '2026-11-01' }] },
        groupOnly: { type: 'person', groups: ['g'] },
        mixed: {
          type: 'person',
          grants: [
            { dataset: 'a', access: 'read', expires: '2026-11-01' },
            { dataset: 'b', access: 'write' },
          ],
        },
      },
    });
    const { resources } = compileAws(spec, 'aws', { now: NOW });
    expect(resources.map((r) => r.address)).toEqual([
      'aws:group/g', // the group stays (it is in the spec) but holds no policy
      'aws:user/mixed',
      'aws:inline-policy/user/mixed/dg-direct-grants',
      'aws:key/mixed',
    ]);
    expect(JSON.stringify(directDoc(resources, 'mixed'))).not.toContain(BUCKET);
    // The same spec a day before expiry grants everything.
    const before = compileAws(spec, 'aws', { now: new Date('2026-10-31T00:00:00Z') }).resources;
    expect(byKind(before, 'user').map((r) => r.name)).toEqual(['gone', 'groupOnly', 'mixed']);
    expect(byKind(before, 'key').map((r) => r.name)).toEqual(['gone', 'groupOnly', 'mixed']);
  });

  test('compile() notes grants expiring within 7 days, and not those expired or further out', () => {
    const spec = build({
      datasets: { a: { backend: 'aws', bucket: BUCKET } },
      groups: { g: { grants: [{ dataset: 'a', access: 'read', expires: '2026-12-01' }] } },
      principals: {
        p: { type: 'service', grants: [{ dataset: 'a', access: 'write', expires: '2026-12-05T00:00:00Z' }] },
        q: { type: 'service', grants: [{ dataset: 'a', access: 'write', expires: '2026-12-05T00:00:01Z' }] },
        r: { type: 'service', grants: [{ dataset: 'a', access: 'write', expires: '2026-11-27' }] },
      },
    });
    const { notices, desired } = compile(spec, NOW);
    expect(notices).toEqual([
      { level: 'info', message: 'group g: read access to a expires at 2026-12-01T00:00:00.000Z (in 3 days)' },
      { level: 'info', message: 'principal p: write access to a expires at 2026-12-05T00:00:00.000Z (in 7 days)' },
    ]);
    expect(Object.keys(desired)).toEqual(['aws']);
  });
});

// ---------------------------------------------------------------------------------------------
// A small IAM evaluator for the statements datagrant writes (Allow only; exact action names;
// `*` in resources and StringLike; DateLessThan on aws:CurrentTime). Enough to prove that merging
// and packing never change what a policy allows.

interface Request {
  action: string;
  resource: string;
  /** The s3:prefix request context key; absent when undefined. */
  prefix?: string;
  time: string;
}

const globs = new Map<string, RegExp>();
const glob = (pattern: string, value: string) => {
  let re = globs.get(pattern);
  if (!re) {
    re = new RegExp(
      `^${pattern
        .split('*')
        .map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'))
        .join('.*')}$`,
    );
    globs.set(pattern, re);
  }
  return re.test(value);
};

function conditionHolds(c: Statement['Condition'], req: Request): boolean {
  for (const [op, kv] of Object.entries(c ?? {})) {
    for (const [key, values] of Object.entries(kv)) {
      if (op === 'StringLike' && key === 's3:prefix') {
        if (req.prefix === undefined || !values.some((v) => glob(v, req.prefix!))) return false;
      } else if (op === 'DateLessThan' && key === 'aws:CurrentTime') {
        if (!values.some((v) => Date.parse(req.time) < Date.parse(v))) return false;
      } else {
        throw new Error(`evaluator does not know ${op} ${key}`);
      }
    }
  }
  return true;
}

const allows = (statements: Statement[], req: Request) =>
  statements.some(
    (s) => s.Effect === 'Allow' && s.Action.includes(req.action) && s.Resource.some((r) => glob(r, req.resource)) && conditionHolds(s.Condition, req),
  );

const BUCKETS = ['bucket-a', 'bucket-b'];
const PREFIXES = [undefined, 'a/', 'a/b/', 'c/'];
const EXPIRIES = [undefined, undefined, '2027-01-01', '2027-06-01'];
const ALL_ACTIONS = [...OBJECT.admin, 's3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads', 's3:DeleteBucket'];
const TIMES = ['2026-12-01T00:00:00Z', '2027-03-01T00:00:00Z', '2027-09-01T00:00:00Z'];

function requests(): Request[] {
  const out: Request[] = [];
  for (const bucket of [...BUCKETS, 'bucket-c']) {
    const resources = [`arn:aws:s3:::${bucket}`, ...['x', 'a/x', 'a/b/x', 'c/x', 'ab/x'].map((k) => `arn:aws:s3:::${bucket}/${k}`)];
    for (const resource of resources) {
      for (const action of ALL_ACTIONS) {
        for (const prefix of [undefined, '', 'a/', 'a/b/', 'c/', 'ab/']) for (const time of TIMES) out.push({ action, resource, prefix, time });
      }
    }
  }
  return out;
}

function randomStatements(rand: () => number): Statement[] {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const n = 1 + Math.floor(rand() * 8);
  const out: Statement[] = [];
  for (let i = 0; i < n; i++) {
    const expires = pick(EXPIRIES);
    out.push(
      ...grantStatements(pick(BUCKETS), pick(PREFIXES), { dataset: 'd', access: pick(['read', 'write', 'admin'] as const), ...(expires ? { expires } : {}) }),
    );
  }
  return out;
}

describe('merging and packing never change evaluation', () => {
  const reqs = requests();
  const allowedSet = (ss: Statement[]) => reqs.filter((r) => allows(ss, r)).map((r) => JSON.stringify(r));

  test.each(Array.from({ length: 40 }, (_, i) => [1000 + i]))('random grant set, seed %i', (seed) => {
    // GIVEN the raw statements of a random set of grants
    const raw = randomStatements(mulberry32(seed));
    const expected = allowedSet(raw);
    // WHEN merged, and packed into small documents (forcing splits)
    const merged = mergeStatements(raw);
    const packed = packStatements(raw, 400).flatMap((d) => d.Statement);
    // THEN exactly the same requests are allowed
    expect(allowedSet(merged)).toEqual(expected);
    expect(allowedSet(packed)).toEqual(expected);
    expect(merged.length).toBeLessThanOrEqual(raw.length);
    // and merging is a fixpoint: merging again changes nothing
    expect(mergeStatements(merged)).toEqual(merged);
  });

  test('the evaluator itself tells the levels apart (so the property above is not vacuous)', () => {
    const read = grantStatements('bucket-a', 'a/', { dataset: 'd', access: 'read' });
    const at = '2026-12-01T00:00:00Z';
    expect(allows(read, { action: 's3:GetObject', resource: 'arn:aws:s3:::bucket-a/a/x', time: at })).toBe(true);
    expect(allows(read, { action: 's3:GetObject', resource: 'arn:aws:s3:::bucket-a/c/x', time: at })).toBe(false);
    expect(allows(read, { action: 's3:PutObject', resource: 'arn:aws:s3:::bucket-a/a/x', time: at })).toBe(false);
    expect(allows(read, { action: 's3:ListBucket', resource: 'arn:aws:s3:::bucket-a', prefix: 'a/', time: at })).toBe(true);
    expect(allows(read, { action: 's3:ListBucket', resource: 'arn:aws:s3:::bucket-a', prefix: 'c/', time: at })).toBe(false);
    expect(allows(read, { action: 's3:ListBucket', resource: 'arn:aws:s3:::bucket-a', time: at })).toBe(false);
    const expiring = grantStatements('bucket-a', undefined, { dataset: 'd', access: 'read', expires: '2027-01-01' });
    expect(allows(expiring, { action: 's3:GetObject', resource: 'arn:aws:s3:::bucket-a/x', time: at })).toBe(true);
    expect(allows(expiring, { action: 's3:GetObject', resource: 'arn:aws:s3:::bucket-a/x', time: '2027-01-01T00:00:00Z' })).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

function shuffled<T>(xs: T[], rand: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const shuffleRecord = <T>(r: Record<string, T>, rand: () => number) => Object.fromEntries(shuffled(Object.entries(r), rand));

describe('canonical output', () => {
  const input = () => {
    const datasets: Record<string, { backend: string; bucket: string; prefix?: string }> = {};
    for (let i = 0; i < 12; i++) datasets[`ds-${i}`] = { backend: 'aws', bucket: `bucket-${i % 3}`, ...(i % 2 ? { prefix: `p${i}/` } : {}) };
    const levels = ['read', 'write', 'admin'] as const;
    const groups: Record<string, { grants: { dataset: string; access: Level; expires?: string }[] }> = {};
    for (let g = 0; g < 4; g++)
      groups[`team-${g}`] = {
        grants: [0, 1, 2, 3].map((k) => ({ dataset: `ds-${(g * 3 + k) % 12}`, access: levels[(g + k) % 3]!, ...(k === 2 ? { expires: '2027-05-01' } : {}) })),
      };
    const principals: Record<string, { type: 'person' | 'service'; groups: string[]; grants: { dataset: string; access: Level }[] }> = {};
    for (let p = 0; p < 8; p++) {
      principals[`user-${p}`] = {
        type: p % 2 ? 'service' : 'person',
        groups: [`team-${p % 4}`, `team-${(p + 1) % 4}`],
        grants: [0, 1, 2].map((k) => ({ dataset: `ds-${(p + k * 5) % 12}`, access: levels[(p + k) % 3]! })),
      };
    }
    return { datasets, groups, principals };
  };

  const compileShuffled = (seed: number) => {
    const rand = mulberry32(seed);
    const { datasets, groups, principals } = input();
    const spec = build({
      datasets: shuffleRecord(datasets, rand),
      groups: shuffleRecord(Object.fromEntries(Object.entries(groups).map(([k, g]) => [k, { grants: shuffled(g.grants, rand) }])), rand),
      principals: shuffleRecord(
        Object.fromEntries(Object.entries(principals).map(([k, p]) => [k, { ...p, groups: shuffled(p.groups, rand), grants: shuffled(p.grants, rand) }])),
        rand,
      ),
    });
    return compileAws(spec, 'aws', { now: NOW }).resources;
  };

  test('shuffling datasets, grants, groups and principals yields byte-identical policies and resource lists', () => {
    const reference = compileShuffled(1);
    const docs = (rs: Resource[]) => rs.filter((p) => p.attrs.document).map((p) => `${p.address} ${JSON.stringify(p.attrs.document)}`);
    expect(docs(reference).length).toBeGreaterThan(8);
    for (const seed of [2, 3, 4, 5, 6, 7]) {
      const other = compileShuffled(seed);
      expect(docs(other)).toEqual(docs(reference));
      expect(JSON.stringify(other)).toBe(JSON.stringify(reference));
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('IAM quotas', () => {
  /** `n` datasets with a prefix each: every one adds a ListBucket statement that cannot merge. */
  const prefixed = (n: number) =>
    Object.fromEntries(
      Array.from({ length: n }, (_, i) => [
        `ds-${String(i).padStart(4, '0')}`,
        { backend: 'aws', bucket: BUCKET, prefix: `datasets/${String(i).padStart(4, '0')}/` },
      ]),
    );
  const readAll = (n: number) => Array.from({ length: n }, (_, i) => ({ dataset: `ds-${String(i).padStart(4, '0')}`, access: 'read' as const }));

  test('a group over 6,144 characters is packed into dg-group-x, dg-group-x-2, … each within the limit', () => {
    // GIVEN a group whose statements need several policies
    const spec = build({ datasets: prefixed(100), groups: { x: { grants: readAll(100) } }, principals: { alice: { type: 'person', groups: ['x'] } } });
    // WHEN
    const { resources } = compileAws(spec, 'aws', { now: NOW });
    // THEN
    const policies = byKind(resources, 'policy');
    expect(policies.length).toBeGreaterThan(1);
    expect(policies.map((p) => p.name)).toEqual(['dg-group-x', ...Array.from({ length: policies.length - 1 }, (_, i) => `dg-group-x-${i + 2}`)]);
    for (const p of policies) expect(nonWhitespace(p.attrs.document as unknown as PolicyDocument)).toBeLessThanOrEqual(MANAGED_POLICY_MAX_CHARS);
    expect(byKind(resources, 'attachment').map((a) => a.address)).toEqual(policies.map((p) => `aws:attachment/group/x/${p.name}`));
    // and together they say exactly what one unlimited policy would
    const all = policies.flatMap((p) => (p.attrs.document as unknown as PolicyDocument).Statement);
    expect(canonicalOrder(all)).toEqual(mergeStatements(readAll(100).flatMap((g, i) => grantStatements(BUCKET, `datasets/${String(i).padStart(4, '0')}/`, g))));
  });

  test('one merged statement larger than a policy (a group reading 250 buckets) is split, not refused', () => {
    const datasets = Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`d${i}`, { backend: 'aws', bucket: `bucket-number-${i}` }]));
    const grants = Object.keys(datasets).map((dataset) => ({ dataset, access: 'read' as const }));
    const spec = build({ datasets, groups: { wide: { grants } }, principals: { a: { type: 'person', groups: ['wide'] } } });
    const policies = byKind(compileAws(spec, 'aws', { now: NOW }).resources, 'policy');
    expect(policies.length).toBeGreaterThan(1);
    const statements = policies.flatMap((p) => (p.attrs.document as unknown as PolicyDocument).Statement);
    for (const p of policies) expect(nonWhitespace(p.attrs.document as unknown as PolicyDocument)).toBeLessThanOrEqual(MANAGED_POLICY_MAX_CHARS);
    const objectResources = statements.filter((s) => s.Action.includes('s3:GetObject')).flatMap((s) => s.Resource);
    expect(objectResources.sort()).toEqual(Array.from({ length: 250 }, (_, i) => `arn:aws:s3:::bucket-number-${i}/*`).sort());
  });

  test.each([
    [
      'group',
      (n: number) => ({ groups: { big: { grants: readAll(n) } }, principals: { alice: { type: 'person' as const, groups: ['big'] } } }),
      'backend aws: group big: needs',
      'IAM allows 10 per group',
    ],
    [
      'user',
      (n: number) => ({ principals: { alice: { type: 'person' as const, grants: readAll(n) } } }),
      'backend aws: principal alice: needs',
      'IAM allows 10 per user',
    ],
  ])('more than 10 policies for a %s is a CompileError naming it and the limit', (_what, shape, start, limit) => {
    const n = 700;
    let error: unknown;
    try {
      compileAws(build({ datasets: prefixed(n), ...shape(n) }), 'aws', { now: NOW });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CompileError);
    const [problem] = (error as CompileError).problems;
    expect(problem).toMatch(new RegExp(`^${start} \\d+ managed policies; ${limit}$`));
    expect(IAM_QUOTAS.policiesPerEntity).toBe(10);
  });

  test('ten groups per user is fine; eleven is a CompileError naming the principal and the limit', () => {
    const make = (n: number) => {
      const groups = Object.fromEntries(Array.from({ length: n }, (_, i) => [`g${i}`, { grants: [{ dataset: 'd', access: 'read' as const }] }]));
      return build({ datasets: { d: { backend: 'aws', bucket: BUCKET } }, groups, principals: { alice: { type: 'person', groups: Object.keys(groups) } } });
    };
    expect(byKind(compileAws(make(10), 'aws', { now: NOW }).resources, 'membership')).toHaveLength(10);
    expect(() => compileAws(make(11), 'aws', { now: NOW })).toThrow(
      new CompileError(['backend aws: principal alice: is in 11 groups on backend aws; IAM allows 10 per user']),
    );
  });
});

describe("the account's quotas, and the forms that fit them", () => {
  // `COMMON` prefixed datasets read by everyone who has large direct grants, and one dataset of
  // each principal's own, so that large documents are alike or distinct as a case needs.
  const COMMON = 15;
  const ds = (name: string) => ({ backend: 'aws', bucket: BUCKET, prefix: `${name}/` });
  const common = Object.fromEntries(Array.from({ length: COMMON }, (_, i) => [`common-${i}`, ds(`common-${i}`)]));
  const read = (dataset: string) => ({ dataset, access: 'read' as const });
  type Shape = 'small' | 'large-alike' | 'large-distinct';
  /** `n` principals whose direct grants are small (inline), large and alike, or large and each different. */
  const principals = (n: number, shape: Shape, offset = 0) => {
    const datasets: Record<string, ReturnType<typeof ds>> = { ...common };
    const out: Record<string, { type: 'service'; grants: ReturnType<typeof read>[] }> = {};
    for (let i = offset; i < offset + n; i++) {
      const own = `own-${i}`;
      datasets[own] = ds(own);
      const grants = shape === 'small' ? [read(own)] : [...Object.keys(common).map(read), ...(shape === 'large-distinct' ? [read(own)] : [])];
      out[`p${i}`] = { type: 'service', grants };
    }
    return { datasets, principals: out };
  };
  const groups = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`g${i}`, { grants: [read('common-0')] }]));
  const tooMany = (need: string, what: string, quota: string, source: string, way: string) =>
    `backend aws: ${need} ${what} needed, the account quota is ${quota} (${source}). ${way}.`;
  const POLICIES_WAY =
    "Raise the quota in AWS (up to 5,000) and quotas.policies with it, or put principals with the same direct grants into a group: a group's policies count once, however many members it has";

  interface Case {
    n: number;
    shape: Shape;
    groups?: number;
    quotas?: Record<string, number>;
    /** Managed policies, inline policies, users, groups; or the one problem. */
    expect: { policies: number; inline: number; users: number; groups: number } | string;
  }
  const cases: [string, Case][] = [
    [
      'small direct grants are inline: 2,000 principals, no managed policy',
      { n: 2000, shape: 'small', expect: { policies: 0, inline: 2000, users: 2000, groups: 0 } },
    ],
    [
      'identical large direct grants share one policy: 300 principals',
      { n: 300, shape: 'large-alike', expect: { policies: 1, inline: 0, users: 300, groups: 0 } },
    ],
    [
      'distinct large direct grants have one policy each, up to the quota',
      { n: 50, shape: 'large-distinct', quotas: { policies: 50 }, expect: { policies: 50, inline: 0, users: 50, groups: 0 } },
    ],
    [
      '1,612 distinct large direct grants: one policy each, over the default quota',
      {
        n: 1612,
        shape: 'large-distinct',
        expect: tooMany('1,612', 'customer managed policies', '1,500', "AWS's default; quotas.policies sets another", '')
          .replace('needed,', 'needed (0 for groups, 1,612 shared by principals whose direct grants are too large for an inline policy),')
          .replace('. .', `. ${POLICIES_WAY}.`),
      },
    ],
    [
      'groups count their policies too, against a lowered quota',
      {
        n: 10,
        shape: 'large-distinct',
        groups: 5,
        quotas: { policies: 14 },
        expect: tooMany('15', 'customer managed policies', '14', 'quotas.policies', POLICIES_WAY).replace(
          'needed,',
          'needed (5 for groups, 10 shared by principals whose direct grants are too large for an inline policy),',
        ),
      },
    ],
    [
      'a quota raised in the spec is honoured',
      { n: 60, shape: 'large-distinct', quotas: { policies: 1600, groups: 500 }, groups: 400, expect: { policies: 460, inline: 0, users: 60, groups: 400 } },
    ],
    ['300 groups are fine', { n: 1, shape: 'small', groups: 300, expect: { policies: 300, inline: 1, users: 1, groups: 300 } }],
    [
      '301 groups are not',
      {
        n: 1,
        shape: 'small',
        groups: 301,
        quotas: { policies: 5000 },
        expect: tooMany(
          '301',
          'IAM groups',
          '300',
          "AWS's default; quotas.groups sets another",
          'Raise the quota in AWS (up to 500) and quotas.groups with it, or grant through fewer groups: every group with a grant on this backend is an IAM group',
        ),
      },
    ],
    ['5,000 principals are 5,000 IAM users: fine', { n: 5000, shape: 'small', expect: { policies: 0, inline: 5000, users: 5000, groups: 0 } }],
    [
      '10,000 principals are more IAM users than AWS allows',
      {
        n: 10000,
        shape: 'small',
        expect: tooMany(
          '10,000',
          'IAM users',
          '5,000',
          "AWS's default; quotas.users sets another",
          'AWS raises it no further, and every principal with a grant on this backend is an IAM user: manage some of them from a spec and state of their own, in another AWS account',
        ),
      },
    ],
    [
      'a users quota lowered to leave room for others',
      {
        n: 101,
        shape: 'small',
        quotas: { users: 100 },
        expect: tooMany(
          '101',
          'IAM users',
          '100',
          'quotas.users',
          'Raise quotas.users if the account has room (AWS allows 5,000 IAM users and raises that no further). Every principal with a grant on this backend is an IAM user',
        ),
      },
    ],
  ];

  test.each(cases)('%s', (_name, c) => {
    // GIVEN
    const shaped = principals(c.n, c.shape);
    const spec = build({
      backends: { aws: { type: 'aws', ...(c.quotas ? { quotas: c.quotas } : {}) } },
      datasets: shaped.datasets,
      groups: groups(c.groups ?? 0),
      principals: { ...shaped.principals, ...(c.groups ? { member: { type: 'person', groups: Object.keys(groups(c.groups)).slice(0, 10) } } : {}) },
    });
    // WHEN
    let result: ReturnType<typeof compileAws> | undefined;
    let error: unknown;
    try {
      result = compileAws(spec, 'aws', { now: NOW });
    } catch (e) {
      error = e;
    }
    // THEN
    if (typeof c.expect === 'string') {
      expect(error).toBeInstanceOf(CompileError);
      expect((error as CompileError).problems).toEqual([c.expect]);
      return;
    }
    expect(error).toBeUndefined();
    const rs = result!.resources;
    const member = c.groups ? 1 : 0;
    expect({
      policies: byKind(rs, 'policy').length,
      inline: byKind(rs, 'inline-policy').length,
      users: byKind(rs, 'user').length - member,
      groups: byKind(rs, 'group').length,
    }).toEqual(c.expect);
  });

  test('inline up to 2,048 characters, shared from one more: the form follows the document alone', () => {
    // GIVEN principals with ever more grants, until the document outgrows an inline policy
    const datasets = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`d${i}`, ds(`d${i}`)]));
    const principalsByCount = Object.fromEntries(
      Array.from({ length: 30 }, (_, i) => [`p${i + 1}`, { type: 'service' as const, grants: Array.from({ length: i + 1 }, (_, k) => read(`d${k}`)) }]),
    );
    const { resources } = compileAws(build({ datasets, principals: principalsByCount }), 'aws', { now: NOW });
    // THEN every inline document is within 2,048 characters, every shared one is beyond it
    const inline = byKind(resources, 'inline-policy');
    const attachedToUsers = byKind(resources, 'attachment').filter((a) => a.attrs.entity === 'user');
    expect(inline.length).toBeGreaterThan(0);
    expect(attachedToUsers.length).toBeGreaterThan(0);
    for (const r of inline) expect(nonWhitespace(r.attrs.document as unknown as PolicyDocument)).toBeLessThanOrEqual(2048);
    for (const a of attachedToUsers) expect(nonWhitespace(directDoc(resources, String(a.attrs.entityName))!)).toBeGreaterThan(2048);
    // and the switch happens once: fewer grants inline, more grants shared
    const inlineCounts = inline.map((r) => Number(String(r.attrs.entityName).slice(1)));
    const sharedCounts = attachedToUsers.map((a) => Number(String(a.attrs.entityName).slice(1)));
    expect(Math.max(...inlineCounts)).toBeLessThan(Math.min(...sharedCounts));
    // and a shared policy is named by its document, so that an auditor can tell what it is for
    for (const a of attachedToUsers) expect(a.attrs.policy).toMatch(/^dg-shared-[0-9a-f]{12}$/);
  });

  test("a principal's form does not move when others come, go or change", () => {
    const base = principals(6, 'large-alike');
    const small = principals(3, 'small', 6);
    const compiled = (ps: Record<string, unknown>) =>
      compileAws(build({ datasets: { ...base.datasets, ...small.datasets }, principals: ps as SpecInput['principals'] }), 'aws', { now: NOW }).resources;
    const formOf = (rs: Resource[], who: string) =>
      rs.filter((r) => (r.kind === 'attachment' || r.kind === 'inline-policy') && r.attrs.entityName === who).map((r) => JSON.stringify([r.address, r.attrs]));
    const everyone = compiled({ ...base.principals, ...small.principals });
    // others added, removed, or given different grants
    const fewer = compiled({ p0: base.principals.p0, p6: small.principals.p6 });
    const changed = compiled({ ...base.principals, p1: { type: 'service', grants: [read('own-7')] }, ...small.principals });
    for (const rs of [fewer, changed]) {
      expect(formOf(rs, 'p0')).toEqual(formOf(everyone, 'p0'));
      expect(formOf(rs, 'p6')).toEqual(formOf(everyone, 'p6'));
    }
    // the shared policy itself is the same object, whoever else holds it
    expect(byKind(fewer, 'policy')).toEqual(byKind(everyone, 'policy'));
  });

  test('backends that reach one account share its quotas; another endpoint is another account', () => {
    const a = principals(40, 'large-distinct');
    const b = principals(40, 'large-distinct', 40);
    const onBackend = (name: string, part: typeof a) => ({
      datasets: Object.fromEntries(Object.entries(part.datasets).map(([k, v]) => [`${name}-${k}`, { ...v, backend: name }])),
      principals: Object.fromEntries(
        Object.entries(part.principals).map(([k, v]) => [k, { ...v, grants: v.grants.map((g) => ({ ...g, dataset: `${name}-${g.dataset}` })) }]),
      ),
    });
    const specWith = (second: Record<string, unknown>) => {
      const one = onBackend('aws', a);
      const two = onBackend('aws2', b);
      return build({
        backends: { aws: { type: 'aws' }, aws2: { type: 'aws', ...second } },
        datasets: { ...one.datasets, ...two.datasets },
        principals: { ...one.principals, ...two.principals },
      });
    };
    // 40 policies each fit one backend's quota; 80 do not fit the account's
    expect(() => compile(specWith({ region: 'eu-west-1', quotas: { policies: 70 } }), NOW)).toThrow(
      new CompileError([
        'backends aws, aws2: they reach one AWS account (the same credentials and endpoint) and share its quotas: together 80 customer managed policies needed, the account quota is 70 (quotas.policies of backend aws2). ' +
          `${POLICIES_WAY}. Or give each backend a share in its quotas.`,
      ]),
    );
    expect(Object.keys(compile(specWith({ endpoint: 'http://127.0.0.1:5000', quotas: { policies: 70 } }), NOW).desired)).toEqual(['aws', 'aws2']);
  });

  test("a backend that assumes a role reaches the role's account: roles in one account share its quotas, in two do not", () => {
    const a = principals(40, 'large-distinct');
    const b = principals(40, 'large-distinct', 40);
    const role = (account: string, name = 'datagrant') => ({ assumeRole: { roleArn: `arn:aws:iam::${account}:role/${name}` } });
    const specWith = (first: Record<string, unknown>, second: Record<string, unknown>) =>
      build({
        backends: { aws: { type: 'aws', ...first }, aws2: { type: 'aws', quotas: { policies: 70 }, ...second } },
        datasets: {
          ...Object.fromEntries(Object.entries(a.datasets).map(([k, v]) => [`aws-${k}`, { ...v, backend: 'aws' }])),
          ...Object.fromEntries(Object.entries(b.datasets).map(([k, v]) => [`aws2-${k}`, { ...v, backend: 'aws2' }])),
        },
        principals: {
          ...Object.fromEntries(
            Object.entries(a.principals).map(([k, v]) => [k, { ...v, grants: v.grants.map((g) => ({ ...g, dataset: `aws-${g.dataset}` })) }]),
          ),
          ...Object.fromEntries(
            Object.entries(b.principals).map(([k, v]) => [k, { ...v, grants: v.grants.map((g) => ({ ...g, dataset: `aws2-${g.dataset}` })) }]),
          ),
        },
      });
    // Two roles (even named alike) in one account: one account's quotas.
    expect(() => compile(specWith(role('222222222222', 'a'), role('222222222222', 'b')), NOW)).toThrow(
      new CompileError([
        'backends aws, aws2: they reach one AWS account (account 222222222222, by the roles they assume, at the same endpoint) and share its quotas: together 80 customer managed policies needed, the account quota is 70 (quotas.policies of backend aws2). ' +
          `${POLICIES_WAY}. Or give each backend a share in its quotas.`,
      ]),
    );
    // A role in another account: two accounts. The default chain's account is not known at plan
    // (compiling does no I/O), so it is counted apart from every role's.
    expect(Object.keys(compile(specWith(role('222222222222'), role('333333333333')), NOW).desired)).toEqual(['aws', 'aws2']);
    expect(Object.keys(compile(specWith({}, role('333333333333')), NOW).desired)).toEqual(['aws', 'aws2']);
  });
});

describe('names, paths, tags and dependencies', () => {
  test('a packed part and another group cannot share a policy name (dg-group-x-2)', () => {
    // GIVEN group x needing two policies, and a group named x-2
    const datasets = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`d${i}`, { backend: 'aws', bucket: BUCKET, prefix: `p${i}/` }]));
    const grants = Object.keys(datasets).map((dataset) => ({ dataset, access: 'read' as const }));
    const spec = build({ datasets, groups: { x: { grants }, 'x-2': { grants: [{ dataset: 'd0', access: 'read' }] } } });
    // WHEN / THEN a clear error instead of two owners silently sharing one IAM policy
    expect(() => compileAws(spec, 'aws', { now: NOW })).toThrow(
      new CompileError(['backend aws: group x-2: needs a policy named dg-group-x-2, which group x (part 2) also needs; rename one of them']),
    );
  });

  test('every resource of a small spec, exactly', () => {
    const spec = build({
      backends: { aws: { type: 'aws', iamPath: '/ml/datagrant/' } },
      settings: { rotate: '30d', rotationGrace: '12h' },
      datasets: { data: { backend: 'aws', bucket: BUCKET, prefix: 'training/' }, out: { backend: 'aws', bucket: 'ai-model-artifacts' } },
      groups: { researchers: { grants: [{ dataset: 'data', access: 'read' }] }, unused: {} },
      principals: {
        alice: { type: 'person', email: 'alice@example.com', groups: ['researchers'] },
        trainer: { type: 'service', groups: ['researchers'], grants: [{ dataset: 'out', access: 'write' }], rotate: '90d' },
      },
    });
    const { resources, notices } = compileAws(spec, 'aws', { now: NOW });
    expect(notices).toEqual([]);
    const path = '/ml/datagrant/';
    const base = { backend: 'aws' };
    expect(resources.map(({ attrs, ...r }) => ({ ...r, attrs: attrs.document ? { ...attrs, document: '…' } : attrs }))).toEqual([
      { ...base, address: 'aws:group/researchers', kind: 'group', name: 'researchers', attrs: { path }, immutable: [], deps: [] },
      {
        ...base,
        address: 'aws:policy/dg-group-researchers',
        kind: 'policy',
        name: 'dg-group-researchers',
        attrs: { path, document: '…' },
        immutable: ['path'],
        deps: [],
      },
      {
        ...base,
        address: 'aws:attachment/group/researchers/dg-group-researchers',
        kind: 'attachment',
        name: 'dg-group-researchers',
        attrs: { entity: 'group', entityName: 'researchers', policy: 'dg-group-researchers' },
        immutable: ['entity', 'entityName', 'policy'],
        deps: ['aws:group/researchers', 'aws:policy/dg-group-researchers'],
      },
      {
        ...base,
        address: 'aws:user/alice',
        kind: 'user',
        name: 'alice',
        attrs: { path, tags: { 'datagrant:managed': 'true', 'datagrant:type': 'person', 'datagrant:email': 'alice@example.com' } },
        immutable: [],
        deps: [],
      },
      {
        ...base,
        address: 'aws:membership/researchers/alice',
        kind: 'membership',
        name: 'alice',
        attrs: { group: 'researchers', user: 'alice' },
        immutable: ['group', 'user'],
        deps: ['aws:user/alice', 'aws:group/researchers'],
      },
      {
        ...base,
        address: 'aws:key/alice',
        kind: 'key',
        name: 'alice',
        attrs: { user: 'alice', status: 'Active' },
        immutable: ['user'],
        // The key waits for its group's policy too, so it can read the moment it is handed out.
        deps: ['aws:user/alice', 'aws:membership/researchers/alice', 'aws:attachment/group/researchers/dg-group-researchers'],
        lifecycle: { rotateAfterSeconds: 30 * 86400, graceSeconds: 12 * 3600 },
      },
      {
        ...base,
        address: 'aws:user/trainer',
        kind: 'user',
        name: 'trainer',
        attrs: { path, tags: { 'datagrant:managed': 'true', 'datagrant:type': 'service' } },
        immutable: [],
        deps: [],
      },
      {
        ...base,
        address: 'aws:membership/researchers/trainer',
        kind: 'membership',
        name: 'trainer',
        attrs: { group: 'researchers', user: 'trainer' },
        immutable: ['group', 'user'],
        deps: ['aws:user/trainer', 'aws:group/researchers'],
      },
      {
        ...base,
        address: 'aws:inline-policy/user/trainer/dg-direct-grants',
        kind: 'inline-policy',
        name: 'dg-direct-grants',
        attrs: { entity: 'user', entityName: 'trainer', document: '…' },
        immutable: ['entity', 'entityName'],
        // Deleted before the memberships (the reader's teardown order), and created before the
        // policy earlier versions gave the principal is removed.
        deps: ['aws:user/trainer', 'aws:membership/researchers/trainer'],
        supersedes: ['aws:attachment/user/trainer/dg-user-trainer'],
      },
      {
        ...base,
        address: 'aws:key/trainer',
        kind: 'key',
        name: 'trainer',
        attrs: { user: 'trainer', status: 'Active' },
        immutable: ['user'],
        // The key is handed out last: it must work the moment it exists.
        deps: [
          'aws:user/trainer',
          'aws:membership/researchers/trainer',
          'aws:attachment/group/researchers/dg-group-researchers',
          'aws:inline-policy/user/trainer/dg-direct-grants',
        ],
        lifecycle: { rotateAfterSeconds: 90 * 86400, graceSeconds: 12 * 3600 },
      },
    ]);
  });

  test('defaults: IAM path /datagrant/, grace 24h, no rotation unless asked', () => {
    const spec = build({
      datasets: { d: { backend: 'aws', bucket: BUCKET } },
      principals: { p: { type: 'service', grants: [{ dataset: 'd', access: 'read' }] } },
    });
    const { resources } = compileAws(spec, 'aws', { now: NOW });
    expect(byKind(resources, 'user')[0]!.attrs.path).toBe('/datagrant/');
    expect(byKind(resources, 'key')[0]!.lifecycle).toEqual({ graceSeconds: 86400 });
  });

  test('every dependency names a resource of the same desired state', () => {
    const spec = build({
      datasets: { d: { backend: 'aws', bucket: BUCKET }, e: { backend: 'aws', bucket: 'other-bucket', prefix: 'x/' } },
      groups: { g: { grants: [{ dataset: 'd', access: 'read' }] }, h: { grants: [{ dataset: 'e', access: 'write' }] } },
      principals: { p: { type: 'service', groups: ['h', 'g'], grants: [{ dataset: 'e', access: 'admin' }] }, q: { type: 'person', groups: ['g'] } },
    });
    const { resources } = compileAws(spec, 'aws', { now: NOW });
    const addresses = new Set(resources.map((r) => r.address));
    expect(addresses.size).toBe(resources.length);
    for (const r of resources) for (const d of r.deps) expect(addresses).toContain(d);
  });

  test('only this backend: grants on another aws backend or on postgres make no IAM objects here', () => {
    const spec = build({
      backends: { aws: { type: 'aws' }, other: { type: 'aws' }, wh: { type: 'postgres', url: 'postgres://x' } },
      datasets: { d: { backend: 'other', bucket: BUCKET }, f: { backend: 'wh', database: 'analytics', schema: 'features' } },
      groups: {
        g: {
          grants: [
            { dataset: 'd', access: 'read' },
            { dataset: 'f', access: 'read' },
          ],
        },
      },
      principals: { p: { type: 'person', groups: ['g'] } },
    });
    expect(compileAws(spec, 'aws', { now: NOW }).resources).toEqual([]);
    expect(compileAws(spec, 'other', { now: NOW }).resources.map((r) => r.address)).toEqual([
      'other:group/g',
      'other:policy/dg-group-g',
      'other:attachment/group/g/dg-group-g',
      'other:user/p',
      'other:membership/g/p',
      'other:key/p',
    ]);
  });
});

describe('the DESIGN.md draft, end to end through the loader', () => {
  test('alice reads the training prefix through her group; trainer writes artifacts and reads training data until 2027-01-31', () => {
    // GIVEN
    const text = readFileSync(new URL('../fixtures/draft.yaml', import.meta.url), 'utf8');
    const { spec } = parseSpec(text, { file: 'draft.yaml', env: { WAREHOUSE_URL: 'postgres://db/analytics' }, now: NOW });
    // WHEN
    const { resources } = compileAws(spec, 'aws', { now: NOW });
    // THEN
    expect(resources.map((r) => r.address)).toEqual([
      'aws:group/ml-researchers',
      'aws:policy/dg-group-ml-researchers',
      'aws:attachment/group/ml-researchers/dg-group-ml-researchers',
      'aws:user/alice',
      'aws:membership/ml-researchers/alice',
      'aws:key/alice',
      'aws:user/trainer',
      'aws:inline-policy/user/trainer/dg-direct-grants',
      'aws:key/trainer',
    ]);
    // The postgres grant of the group makes nothing in IAM.
    expect(policyDoc(resources, 'dg-group-ml-researchers')!.Statement).toEqual(expectedStatements('read', 'training/'));
    const trainer = directDoc(resources, 'trainer')!.Statement;
    const until = { DateLessThan: { 'aws:CurrentTime': ['2027-01-31T00:00:00Z'] } };
    const artifacts = 'arn:aws:s3:::ai-model-artifacts';
    expect(trainer).toEqual(
      canonicalOrder([
        { Effect: 'Allow', Action: OBJECT.write, Resource: [`${artifacts}/*`] },
        { Effect: 'Allow', Action: ['s3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads'], Resource: [artifacts] },
        ...expectedStatements('read', 'training/', until),
      ]),
    );
    expect(byKind(resources, 'key').map((k) => [k.name, k.lifecycle])).toEqual([
      ['alice', { graceSeconds: 86400 }],
      ['trainer', { rotateAfterSeconds: 90 * 86400, graceSeconds: 86400 }],
    ]);
  });
});

describe('a prefix reaches the IAM document exactly as reviewed', () => {
  /** The spec as a reviewer reads it: one dataset with `prefix`, read by alice. */
  const specText = (prefix: string) => `version: 1
backends:
  aws: { type: aws }
datasets:
  d: { backend: aws, bucket: ${BUCKET}, prefix: ${JSON.stringify(prefix)} }
principals:
  alice: { type: person, grants: [{ dataset: d, access: read }] }
`;
  /** Every string in the compiled documents that names a place in the bucket. */
  const places = (doc: PolicyDocument) =>
    doc.Statement.flatMap((s) => [...s.Resource.filter((r) => r.startsWith(`${ARN}/`)), ...(s.Condition?.StringLike?.['s3:prefix'] ?? [])]);

  test('every character from U+0000 to U+017F is refused by validation, or held verbatim in Resource and s3:prefix', () => {
    const refused: string[] = [];
    for (let code = 0; code < 0x180; code++) {
      // GIVEN a prefix with the character inside it, as written in the reviewed file
      const ch = String.fromCodePoint(code);
      const prefix = `data/a${ch}b/`;
      // The JSON Schema published for editors says the same as the validator.
      expect(S3_PREFIX_RE.test(prefix)).toBe(s3PrefixProblem(prefix) === undefined);
      let spec: Spec;
      try {
        spec = parseSpec(specText(prefix), { file: 'datagrant.yaml', env: {}, now: NOW }).spec;
      } catch (e) {
        // THEN either it is refused, at the prefix, with the reason
        expect(e).toBeInstanceOf(SpecError);
        expect((e as SpecError).problems).toEqual([
          expect.objectContaining({ line: 5, path: 'datasets.d.prefix', message: expect.stringContaining(s3PrefixProblem(prefix)!) as unknown as string }),
        ]);
        refused.push(code.toString(16).padStart(4, '0'));
        continue;
      }
      // or the document holds exactly the reviewed text, and no policy variable
      const doc = directDoc(compileAws(spec, 'aws', { now: NOW }).resources, 'alice')!;
      expect(places(doc).sort()).toEqual([`${ARN}/${prefix}*`, `${prefix}*`].sort());
      expect(JSON.stringify(doc)).not.toContain('${');
    }
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => (from + i).toString(16).padStart(4, '0'));
    // Control characters, % * + : ?, and everything IAM cannot hold (past U+00FF).
    expect(refused).toEqual([...range(0x00, 0x1f), '0025', '002a', '002b', '003a', '003f', ...range(0x7f, 0x9f), ...range(0x100, 0x17f)]);
  });

  test.each(['home/${aws:username}/', 't/${aws:PrincipalTag/team}/', 'a$/{b}/${*}'])('the policy variable in %s is refused before compiling', (prefix) => {
    expect(() => parseSpec(specText(prefix), { file: 'datagrant.yaml', env: {}, now: NOW })).toThrow(/must not contain "\$\{"/);
    // specSchema alone (as the Pulumi package and tests build specs) refuses it too.
    expect(specSchema.safeParse({ version: 1, backends: { aws: { type: 'aws' } }, datasets: { d: { backend: 'aws', bucket: BUCKET, prefix } } }).success).toBe(
      false,
    );
  });

  test.each(['$x/', '{x}/', 'a$/{b}/', 'x$'])('%s holds a $ or a brace but no policy variable, and compiles verbatim', (prefix) => {
    const { spec } = parseSpec(specText(prefix), { file: 'datagrant.yaml', env: {}, now: NOW });
    const doc = directDoc(compileAws(spec, 'aws', { now: NOW }).resources, 'alice')!;
    expect(places(doc).sort()).toEqual([`${ARN}/${prefix}*`, `${prefix}*`].sort());
    expect(JSON.stringify(doc)).not.toContain('${');
  });
});

describe('normalizePolicy (documents read back from AWS)', () => {
  const compiled = policyDocument([
    ...grantStatements(BUCKET, 'training/', { dataset: 'a', access: 'write', expires: '2027-01-31' }),
    ...grantStatements('other-bucket', undefined, { dataset: 'b', access: 'read' }),
  ]);

  test('a compiled document is already normal', () => {
    expect(normalizePolicy(compiled)).toEqual(compiled);
  });

  test('single values as strings, any order of statements and values: equal to the compiled document', () => {
    const scrambled = {
      Version: '2012-10-17',
      Statement: [...compiled.Statement].reverse().map((st) => ({
        ...(st.Condition
          ? {
              Condition: Object.fromEntries(
                Object.entries(st.Condition).map(([op, kv]) => [
                  op,
                  Object.fromEntries(Object.entries(kv).map(([k, v]) => [k, v.length === 1 ? v[0] : [...v].reverse()])),
                ]),
              ),
            }
          : {}),
        Resource: st.Resource.length === 1 ? st.Resource[0] : [...st.Resource].reverse(),
        Action: st.Action.length === 1 ? st.Action[0] : [...st.Action].reverse(),
        Effect: st.Effect,
      })),
    };
    expect(JSON.stringify(normalizePolicy(scrambled))).toBe(JSON.stringify(compiled));
  });

  test.each([
    ['an extra statement', { ...compiled, Statement: [...compiled.Statement, { Effect: 'Allow', Action: 's3:*', Resource: '*' }] }],
    ['a Sid', { ...compiled, Statement: compiled.Statement.map((st, i) => (i === 0 ? { ...st, Sid: 'x' } : st)) }],
    ['a widened resource', { ...compiled, Statement: compiled.Statement.map((st, i) => (i === 0 ? { ...st, Resource: ['*'] } : st)) }],
    ['a dropped condition', { ...compiled, Statement: compiled.Statement.map(({ Condition: _c, ...st }) => st) }],
  ])('a hand edit stays visible as a difference: %s', (_what, edited) => {
    expect(normalizePolicy(edited)).not.toEqual(compiled);
  });

  test('a single statement given as an object, not a list', () => {
    const one = policyDocument(grantStatements(BUCKET, undefined, { dataset: 'a', access: 'read' }).slice(0, 1));
    expect(normalizePolicy({ Version: '2012-10-17', Statement: one.Statement[0] })).toEqual(one);
  });
});

describe('compiled access equals granted access (random specs, seeded)', () => {
  const reqs = requests();

  test.each(Array.from({ length: 12 }, (_, i) => [2000 + i]))(
    'seed %i: per principal, user + group policies allow exactly what its live grants allow',
    (seed) => {
      // GIVEN a random spec, some grants already expired at NOW
      const rand = mulberry32(seed);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
      const datasets: Record<string, { backend: string; bucket: string; prefix?: string }> = {};
      for (const bucket of BUCKETS)
        for (const prefix of PREFIXES) datasets[`${bucket}-${prefix ?? 'all'}`.replace(/\//g, '')] = { backend: 'aws', bucket, ...(prefix ? { prefix } : {}) };
      const names = Object.keys(datasets);
      const grants = () => {
        const chosen = shuffled(names, rand).slice(0, Math.floor(rand() * 4));
        return chosen.map((dataset) => {
          const expires = pick([undefined, undefined, '2026-11-01', ...EXPIRIES]);
          return { dataset, access: pick(['read', 'write', 'admin'] as const), ...(expires ? { expires } : {}) };
        });
      };
      const groups = Object.fromEntries(['g1', 'g2', 'g3'].map((g) => [g, { grants: grants() }]));
      const principals = Object.fromEntries(
        ['p1', 'p2', 'p3', 'p4', 'p5'].map((p) => [
          p,
          { type: 'service' as const, groups: shuffled(Object.keys(groups), rand).slice(0, Math.floor(rand() * 3)), grants: grants() },
        ]),
      );
      const spec = build({ datasets, groups, principals });
      // WHEN
      const { resources } = compileAws(spec, 'aws', { now: NOW });
      // THEN
      const docsOf = (entity: 'user' | 'group', name: string) => [
        ...byKind(resources, 'attachment')
          .filter((a) => a.attrs.entity === entity && a.attrs.entityName === name)
          .flatMap((a) => policyDoc(resources, String(a.attrs.policy))!.Statement),
        ...byKind(resources, 'inline-policy')
          .filter((a) => a.attrs.entity === entity && a.attrs.entityName === name)
          .flatMap((a) => (a.attrs.document as unknown as PolicyDocument).Statement),
      ];
      for (const [name, p] of Object.entries(principals)) {
        const memberOf = byKind(resources, 'membership')
          .filter((m) => m.attrs.user === name)
          .map((m) => String(m.attrs.group));
        const effective = [...docsOf('user', name), ...memberOf.flatMap((g) => docsOf('group', g))];
        const granted = [...p.grants, ...p.groups.flatMap((g) => groups[g]!.grants)]
          .filter((g) => !g.expires || new Date(`${g.expires}T00:00:00Z`) > NOW)
          .flatMap((g) => grantStatements(datasets[g.dataset]!.bucket, datasets[g.dataset]!.prefix, g));
        const allowed = (ss: Statement[]) => reqs.filter((r) => allows(ss, r)).length;
        expect(reqs.filter((r) => allows(effective, r))).toEqual(reqs.filter((r) => allows(granted, r)));
        // A principal with no live grant has no user and no key at all.
        const hasUser = resources.some((r) => r.address === `aws:user/${name}`);
        expect(hasUser).toBe(granted.length > 0);
        expect(resources.some((r) => r.address === `aws:key/${name}`)).toBe(granted.length > 0);
        if (!hasUser) expect(allowed(effective)).toBe(0);
      }
    },
  );
});
