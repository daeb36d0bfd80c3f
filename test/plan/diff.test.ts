import { describe, expect, test } from 'vitest';
import { normalizePolicy } from '../../src/model/aws-policy.js';
import { dependencies } from '../../src/apply/apply.js';
import { compile } from '../../src/compile/index.js';
import type { ActualState, Change, DesiredState, Resource } from '../../src/core/types.js';
import { actualHash, attrsHash, diff, summarize, type DiffOptions } from '../../src/plan/diff.js';
import { specSchema } from '../../src/spec/schema.js';

const NOW = new Date('2026-11-28T00:00:00Z');
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();

const user = (name: string, attrs: Resource['attrs'] = { path: '/datagrant/', tags: { 'datagrant:managed': 'true' } }): Resource => ({
  address: `aws:user/${name}`,
  backend: 'aws',
  kind: 'user',
  name,
  attrs,
  immutable: [],
  deps: [],
});
const policy = (name: string, document: Resource['attrs'][string], path = '/datagrant/'): Resource => ({
  address: `aws:policy/${name}`,
  backend: 'aws',
  kind: 'policy',
  name,
  attrs: { path, document },
  immutable: ['path'],
  deps: [],
});
const key = (name: string, extra: Partial<Resource> = {}): Resource => ({
  address: `aws:key/${name}`,
  backend: 'aws',
  kind: 'key',
  name,
  attrs: { user: name, status: 'Active' },
  immutable: ['user'],
  deps: [`aws:user/${name}`],
  ...extra,
});

const DOC = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: ['arn:aws:s3:::b/*'] }] };
const DOC2 = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: ['arn:aws:s3:::b/*'] }] };

const desired = (...resources: Resource[]): Record<string, DesiredState> => ({ aws: { resources, notices: [] } });
const actual = (...resources: Resource[]): Record<string, ActualState> => ({ aws: { backend: 'aws', resources } });
const opts = (over: Partial<DiffOptions> = {}): DiffOptions => ({ now: NOW, specHash: 'spec-hash', ...over });
const appliedFor = (...rs: Resource[]) => Object.fromEntries(rs.map((r) => [r.address, attrsHash(r)]));

/** What a reader needs from each change: address, action, drift, reason. */
const brief = (cs: Change[]) => cs.map((c) => `${c.action}${c.drift ? ' (drift)' : ''} ${c.address}: ${c.reason}`);

describe('actions', () => {
  test.each<[string, Resource[], Resource[], string[]]>([
    ['create', [user('alice')], [], ['create aws:user/alice: new in spec']],
    ['delete', [], [user('alice')], ['delete aws:user/alice: no longer in spec']],
    ['update in place', [policy('dg-user-a', DOC2)], [policy('dg-user-a', DOC)], ['update aws:policy/dg-user-a: spec changed: document']],
    [
      'replace on an immutable attribute',
      [policy('dg-user-a', DOC, '/new/')],
      [policy('dg-user-a', DOC)],
      ['replace aws:policy/dg-user-a: spec changed: path'],
    ],
    ['nothing when equal', [user('alice'), policy('dg-user-a', DOC)], [policy('dg-user-a', DOC), user('alice')], []],
    [
      'nothing when equal up to key order in attributes',
      [user('alice', { tags: { b: '2', a: '1' }, path: '/datagrant/' })],
      [user('alice', { path: '/datagrant/', tags: { a: '1', b: '2' } })],
      [],
    ],
  ])('%s', (_what, want, have, expected) => {
    const plan = diff(desired(...want), actual(...have), opts());
    expect(brief(plan.changes)).toEqual(expected);
  });

  test('before and after follow the documented meaning per action', () => {
    const a = policy('dg-user-a', DOC);
    const b = policy('dg-user-a', DOC2);
    const [update] = diff(desired(b), actual(a), opts()).changes;
    expect(update).toEqual({
      address: a.address,
      backend: 'aws',
      kind: 'policy',
      action: 'update',
      before: a,
      after: b,
      drift: false,
      reason: 'spec changed: document',
    });
    const [create] = diff(desired(b), actual(), opts()).changes;
    expect(create).toMatchObject({ action: 'create', before: null, after: b });
    const [del] = diff(desired(), actual(a), opts()).changes;
    expect(del).toMatchObject({ action: 'delete', before: a, after: null });
  });

  test('changes are ordered by backend then address, whatever the input order', () => {
    const want = {
      aws: { resources: [user('b'), user('a')], notices: [] },
      aaa: { resources: [{ ...user('z'), address: 'aaa:user/z', backend: 'aaa' }], notices: [] },
    };
    const plan = diff(want, {}, opts());
    expect(plan.changes.map((c) => c.address)).toEqual(['aaa:user/z', 'aws:user/a', 'aws:user/b']);
  });

  test('meta never causes a change', () => {
    const plan = diff(desired(user('alice')), actual({ ...user('alice'), meta: { id: 'AIDA1', createdAt: '2020-01-01T00:00:00Z' } }), opts());
    expect(plan.changes).toEqual([]);
  });

  test('summary counts a replace as one add and one destroy', () => {
    const plan = diff(desired(user('new'), policy('p1', DOC2), policy('p2', DOC, '/x/')), actual(user('old'), policy('p1', DOC), policy('p2', DOC)), opts());
    expect(brief(plan.changes).map((l) => l.split(':')[0])).toEqual(['update aws', 'replace aws', 'create aws', 'delete aws']);
    expect(summarize(plan)).toEqual({ add: 2, change: 1, destroy: 2 });
  });

  test('plan header: format, clock, spec hash, and a hash of the actual state per backend', () => {
    const have = actual(user('alice'));
    const plan = diff(desired(user('alice')), have, opts({ specHash: 'abc' }));
    expect(plan).toMatchObject({ formatVersion: 1, createdAt: NOW.toISOString(), specHash: 'abc', actualHashes: { aws: actualHash(have.aws!) } });
    // The actual hash ignores order but sees every attribute, meta and lifecycle change.
    expect(actualHash({ backend: 'aws', resources: [user('b'), user('a')] })).toBe(actualHash({ backend: 'aws', resources: [user('a'), user('b')] }));
    expect(actualHash({ backend: 'aws', resources: [user('a')] })).not.toBe(actualHash({ backend: 'aws', resources: [{ ...user('a'), meta: { id: 'x' } }] }));
  });
});

describe('drift, with what datagrant last applied', () => {
  const mine = policy('dg-user-a', DOC);

  test.each<[string, Resource[], Resource[], Record<string, string>, string[]]>([
    [
      'a hand-edited object is a drift update',
      [mine],
      [policy('dg-user-a', DOC2)],
      appliedFor(mine),
      ['update (drift) aws:policy/dg-user-a: changed outside datagrant: document'],
    ],
    ['a hand-deleted object is a drift create', [mine], [], appliedFor(mine), ['create (drift) aws:policy/dg-user-a: deleted outside datagrant']],
    [
      'an extra unknown object is a drift delete',
      [mine],
      [mine, user('intruder')],
      appliedFor(mine),
      ['delete (drift) aws:user/intruder: not made by datagrant'],
    ],
    ['an object datagrant made and the spec dropped is a plain delete', [], [mine], appliedFor(mine), ['delete aws:policy/dg-user-a: no longer in spec']],
    [
      'a spec change to an untouched object is not drift',
      [policy('dg-user-a', DOC2)],
      [mine],
      appliedFor(mine),
      ['update aws:policy/dg-user-a: spec changed: document'],
    ],
    [
      'a hand edit to an immutable attribute is a drift replace',
      [mine],
      [policy('dg-user-a', DOC, '/elsewhere/')],
      appliedFor(mine),
      ['replace (drift) aws:policy/dg-user-a: changed outside datagrant: path'],
    ],
  ])('%s', (_what, want, have, applied, expected) => {
    const plan = diff(desired(...want), actual(...have), opts({ applied }));
    expect(brief(plan.changes)).toEqual(expected);
  });

  test('without `applied` (no store yet) nothing is called drift', () => {
    const plan = diff(desired(mine), actual(policy('dg-user-a', DOC2), user('x')), opts());
    expect(plan.changes.map((c) => c.drift)).toEqual([false, false]);
  });
});

describe('credentials over time', () => {
  const rotating = (createdAgoMs: number) => ({
    want: key('alice', { lifecycle: { rotateAfterSeconds: 90 * 86400, graceSeconds: 86400 } }),
    have: key('alice', { meta: { accessKeyId: 'AKIAOLD', createdAt: iso(NOW.getTime() - createdAgoMs) } }),
  });

  test.each<[string, number, string[]]>([
    ['a key younger than rotateAfterSeconds stays', 89 * DAY, []],
    ['a key exactly due is replaced', 90 * DAY, ['replace aws:key/alice: rotation due (older than 90d)']],
    ['an older key is replaced', 400 * DAY, ['replace aws:key/alice: rotation due (older than 90d)']],
  ])('%s', (_what, age, expected) => {
    const { want, have } = rotating(age);
    expect(brief(diff(desired(want), actual(have), opts()).changes)).toEqual(expected);
  });

  test.each<[string, string, string]>([
    ['hours', '36h', '36h'],
    ['minutes', '90m', '90m'],
    ['seconds', '61s', '61s'],
  ])('the rotation reason shows the period in %s', (_what, _spec, shown) => {
    const seconds = { '36h': 36 * 3600, '90m': 90 * 60, '61s': 61 }[shown]!;
    const want = key('alice', { lifecycle: { rotateAfterSeconds: seconds } });
    const have = key('alice', { meta: { createdAt: iso(NOW.getTime() - seconds * 1000) } });
    expect(diff(desired(want), actual(have), opts()).changes[0]!.reason).toBe(`rotation due (older than ${shown})`);
  });

  test('a key without a rotation period never rotates', () => {
    const have = key('alice', { meta: { createdAt: '2001-01-01T00:00:00Z' } });
    expect(diff(desired(key('alice')), actual(have), opts()).changes).toEqual([]);
  });

  test("a forced rotation replaces a young key and cuts the old one's grace short", () => {
    const want = key('alice', { lifecycle: { rotateAfterSeconds: 90 * 86400 } });
    const have = key('alice', { meta: { createdAt: iso(NOW.getTime() - HOUR) } });
    const retiring = key('alice', { address: 'aws:key/alice~AKIAOLD', lifecycle: { retireAt: iso(NOW.getTime() + HOUR) } });
    const plan = diff(desired(want), actual(have, retiring), opts({ forceRotate: ['aws:key/alice'] }));
    expect(brief(plan.changes)).toEqual(['replace aws:key/alice: rotation requested', 'delete aws:key/alice~AKIAOLD: rotation grace ended']);
  });

  test('a rotation due while a superseded key is still in its grace waits, rather than issue a third key', () => {
    // GIVEN rotation every 12h with a 24h grace: the current key is due, the previous one still retiring
    const want = key('alice', { lifecycle: { rotateAfterSeconds: 12 * 3600, graceSeconds: 86400 } });
    const current = key('alice', { meta: { createdAt: iso(NOW.getTime() - 13 * HOUR) } });
    const old = key('alice', { address: 'aws:key/alice~AKIAOLD', lifecycle: { retireAt: iso(NOW.getTime() + 11 * HOUR) } });
    // WHEN
    const plan = diff(desired(want), actual(current, old), opts());
    // THEN nothing yet, and the reader is told why
    expect(plan.changes).toEqual([]);
    expect(plan.notices.map((n) => `${n.address}: ${n.message}`)).toEqual([
      'aws:key/alice: rotation is due, and waits until the superseded credential retires at 2026-11-28T11:00:00.000Z (at most two credentials at a time)',
      'aws:key/alice~AKIAOLD: superseded credential stays valid until 2026-11-28T11:00:00.000Z (rotation grace), then is deleted',
    ]);
    // and once the grace has ended, one plan deletes the old key and rotates the current one
    const later = diff(desired(want), actual(current, old), opts({ now: new Date(NOW.getTime() + 11 * HOUR) }));
    expect(brief(later.changes)).toEqual(['replace aws:key/alice: rotation due (older than 12h)', 'delete aws:key/alice~AKIAOLD: rotation grace ended']);
  });

  describe('a superseded key', () => {
    const want = key('alice');
    const current = key('alice', { meta: { createdAt: iso(NOW.getTime() - HOUR) } });
    const retiring = (retireAt: number) =>
      key('alice', { address: 'aws:key/alice~AKIAOLD', meta: { accessKeyId: 'AKIAOLD' }, lifecycle: { retireAt: iso(retireAt) } });

    test('within its grace: no change, and a notice saying until when', () => {
      const plan = diff(desired(want), actual(current, retiring(NOW.getTime() + HOUR)), opts({ applied: appliedFor(current) }));
      expect(plan.changes).toEqual([]);
      expect(plan.notices).toEqual([
        {
          level: 'info',
          address: 'aws:key/alice~AKIAOLD',
          message: 'superseded credential stays valid until 2026-11-28T01:00:00.000Z (rotation grace), then is deleted',
        },
      ]);
    });

    test.each([
      ['after its grace', NOW.getTime() - 1],
      ['exactly at the end of its grace', NOW.getTime()],
    ])('%s: deleted, and not called drift', (_what, at) => {
      const plan = diff(desired(want), actual(current, retiring(at)), opts({ applied: appliedFor(current) }));
      expect(brief(plan.changes)).toEqual(['delete aws:key/alice~AKIAOLD: rotation grace ended']);
    });

    test('of a principal removed from the spec: deleted at once, grace or not', () => {
      const plan = diff(desired(), actual(user('alice'), current, retiring(NOW.getTime() + DAY)), opts({ applied: appliedFor(user('alice'), current) }));
      expect(brief(plan.changes)).toEqual([
        'delete aws:key/alice: no longer in spec',
        'delete aws:key/alice~AKIAOLD: superseded credential of a principal removed from the spec',
        'delete aws:user/alice: no longer in spec',
      ]);
      expect(plan.notices).toEqual([]);
    });
  });
});

describe('revoking a leaked key', () => {
  const want = key('alice', { lifecycle: { rotateAfterSeconds: (90 * DAY) / 1000, graceSeconds: 86400 } });
  const current = key('alice', { meta: { accessKeyId: 'AKIALEAKED', createdAt: iso(NOW.getTime() - HOUR) } });
  const retiring = key('alice', { address: 'aws:key/alice~AKIAOLD', meta: { accessKeyId: 'AKIAOLD' }, lifecycle: { retireAt: iso(NOW.getTime() + HOUR) } });

  test('a revoked slot: every key it holds is deleted now, and the slot rotates with nothing left to retire', () => {
    const plan = diff(
      desired(want),
      actual(current, retiring),
      opts({ applied: appliedFor(current), forceRotate: ['aws:key/alice'], revoke: ['aws:key/alice'] }),
    );
    expect(brief(plan.changes)).toEqual([
      'replace aws:key/alice: rotation requested, the old credential revoked',
      'delete aws:key/alice~AKIALEAKED: credential revoked: deleted now, without grace',
      'delete aws:key/alice~AKIAOLD: credential revoked: deleted now, without grace',
    ]);
    // the deletion names the leaked key; the new key keeps its rotation period but has no grace to give
    expect(plan.changes[1]!.before!.meta!.accessKeyId).toBe('AKIALEAKED');
    expect(plan.changes[0]!.after!.lifecycle).toEqual({ rotateAfterSeconds: 90 * 86400 });
    expect(plan.notices).toEqual([]);
    // apply deletes both old keys before it issues the new one
    expect([...dependencies(plan.changes).get('aws:key/alice')!].sort()).toEqual(['aws:key/alice~AKIALEAKED', 'aws:key/alice~AKIAOLD']);
    expect([...dependencies(plan.changes).get('aws:key/alice~AKIALEAKED')!]).toEqual([]);
  });

  test('one revoked superseded key (a deletion a dead run began) is deleted in its grace; the current key stays', () => {
    const plan = diff(desired(want), actual(current, retiring), opts({ applied: appliedFor(current), revoke: ['aws:key/alice~AKIAOLD'] }));
    expect(brief(plan.changes)).toEqual(['delete aws:key/alice~AKIAOLD: credential revoked: deleted now, without grace']);
  });

  test('a revoked current key (a dead run began its deletion) still rotates its slot', () => {
    const plan = diff(desired(want), actual(current), opts({ applied: appliedFor(current), revoke: ['aws:key/alice~AKIALEAKED'] }));
    expect(brief(plan.changes)).toEqual([
      'replace aws:key/alice: rotation requested, the old credential revoked',
      'delete aws:key/alice~AKIALEAKED: credential revoked: deleted now, without grace',
    ]);
  });

  test('a revocation naming a key the backend no longer has changes nothing', () => {
    const plan = diff(desired(want), actual(current), opts({ applied: appliedFor(current), revoke: ['aws:key/alice~AKIAGONE', 'aws:key/bob'] }));
    expect(plan.changes).toEqual([]);
  });
});

describe('notices', () => {
  test("passed-in notices come first, then each backend's compile notices", () => {
    const want = { aws: { resources: [], notices: [{ level: 'warning' as const, message: 'from compile' }] } };
    const plan = diff(want, {}, opts({ notices: [{ level: 'info', message: 'from spec' }] }));
    expect(plan.notices.map((n) => n.message)).toEqual(['from spec', 'from compile']);
  });
});

describe('a second plan after apply is empty', () => {
  test('compiled state read back (policies normalised from any JSON shape, meta filled in) diffs to nothing', () => {
    // GIVEN the desired state of a spec with groups, prefixes, expiry and direct grants
    const spec = specSchema.parse({
      version: 1,
      backends: { aws: { type: 'aws' } },
      datasets: { a: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' }, b: { backend: 'aws', bucket: 'ai-model-artifacts' } },
      groups: {
        g: {
          grants: [
            { dataset: 'a', access: 'read' },
            { dataset: 'b', access: 'admin', expires: '2027-01-31' },
          ],
        },
      },
      principals: { alice: { type: 'person', groups: ['g'] }, trainer: { type: 'service', grants: [{ dataset: 'b', access: 'write' }], rotate: '90d' } },
    });
    const { desired } = compile(spec, NOW);
    // WHEN the backend reports it back the way AWS would: statements reversed, single values as strings
    const readBack = desired.aws!.resources.map((r) => {
      const attrs = { ...r.attrs };
      if (r.kind === 'policy') {
        const doc = attrs.document as { Version: string; Statement: Record<string, unknown>[] };
        const one = (v: unknown) => (Array.isArray(v) && v.length === 1 ? v[0] : v);
        attrs.document = normalizePolicy({
          Version: doc.Version,
          Statement: [...doc.Statement].reverse().map((st) => ({ ...st, Action: one(st.Action), Resource: one(st.Resource) })),
        });
      }
      return { ...r, attrs, deps: [], immutable: undefined, lifecycle: undefined, meta: { createdAt: iso(NOW.getTime() - DAY), id: `ID-${r.name}` } };
    });
    const plan = diff(desired, { aws: { backend: 'aws', resources: readBack } }, opts({ applied: appliedFor(...desired.aws!.resources) }));
    // THEN
    expect(plan.changes).toEqual([]);
  });
});
