// The mysql compiler: spec → roles, accounts, memberships, per-level grants and password slots.
// Pure: no server.
import { describe, expect, test } from 'vitest';
import { compile, nextChangeAt } from '../../src/compile/index.js';
import { compileMysql } from '../../src/compile/mysql/compile.js';
import { CompileError } from '../../src/core/errors.js';
import type { Level, Resource } from '../../src/core/types.js';
import { MYSQL_LEVELS, mysqlLevelIncrement, mysqlLevelOf } from '../../src/model/mysql-levels.js';
import { specSchema, type Spec, type SpecInput } from '../../src/spec/schema.js';

const NOW = new Date('2026-06-01T00:00:00Z');

function spec(extra: Partial<SpecInput> = {}, host?: string): Spec {
  return specSchema.parse({
    version: 1,
    backends: { db: { type: 'mysql', url: 'mysql://x@localhost', ...(host ? { host } : {}) }, aws: { type: 'aws' } },
    datasets: {
      analytics: { backend: 'db', database: 'analytics' },
      labels: { backend: 'db', database: 'analytics', tables: ['gold', 'silver'] },
      evals: { backend: 'db', database: 'evals', tables: ['runs'] },
      bucket: { backend: 'aws', bucket: 'ai-model-data' },
    },
    ...extra,
  });
}

const resources = (s: Spec, now = NOW) => compileMysql(s, 'db', { now }).resources;
const byAddress = (rs: Resource[]) => Object.fromEntries(rs.map((r) => [r.address, r]));

describe('levels', () => {
  test.each([
    ['read', ['SELECT']],
    ['write', ['SELECT', 'INSERT', 'UPDATE', 'DELETE']],
    ['admin', ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'ALTER', 'INDEX', 'REFERENCES', 'TRIGGER', 'CREATE VIEW', 'SHOW VIEW']],
  ] as const)('%s', (level, privileges) => {
    expect(MYSQL_LEVELS[level]).toEqual(privileges);
  });

  test('increments are disjoint and add up to the level; a privilege outside every level counts as admin', () => {
    const all = (['read', 'write', 'admin'] as Level[]).flatMap((l) => mysqlLevelIncrement(l));
    expect(new Set(all).size).toBe(all.length);
    expect(all.sort()).toEqual([...MYSQL_LEVELS.admin].sort());
    expect(mysqlLevelOf('INSERT')).toBe('write');
    expect(mysqlLevelOf('EXECUTE')).toBe('admin');
  });
});

describe('compileMysql', () => {
  test("a principal's account holds only its own role, which holds its direct grants and its groups", () => {
    const rs = resources(
      spec({
        groups: { ml: { grants: [{ dataset: 'analytics', access: 'read' }] } },
        principals: { alice: { type: 'person', groups: ['ml'], grants: [{ dataset: 'evals', access: 'write' }] } },
      }),
    );
    expect(rs.map((r) => r.address)).toEqual([
      'db:account/alice',
      'db:grant/alice/evals/read',
      'db:grant/alice/evals/write',
      'db:grant/ml/analytics/read',
      'db:membership/ml/alice',
      'db:password/alice',
      'db:role/alice',
      'db:role/ml',
    ]);
    const r = byAddress(rs);
    expect(r['db:account/alice']!.attrs).toEqual({ host: '%', locked: false, roles: ['alice'], defaultRole: 'alice', privileges: [] });
    expect(r['db:account/alice']!.deps).toEqual(['db:role/alice']);
    expect(r['db:grant/ml/analytics/read']!.attrs).toEqual({
      role: 'ml',
      database: 'analytics',
      level: 'read',
      tables: '*',
      privileges: { database: ['SELECT'], tables: [] },
    });
    expect(r['db:grant/alice/evals/write']!.attrs).toMatchObject({ tables: ['runs'], privileges: { database: [], tables: ['DELETE', 'INSERT', 'UPDATE'] } });
    // the password comes last: after the account and everything it leads to
    expect(r['db:password/alice']!.deps).toEqual([
      'db:account/alice',
      'db:grant/alice/evals/read',
      'db:grant/alice/evals/write',
      'db:grant/ml/analytics/read',
      'db:membership/ml/alice',
    ]);
  });

  test('the backend host is every account host, and the password slot names it', () => {
    const rs = byAddress(resources(spec({ principals: { bob: { type: 'service', grants: [{ dataset: 'evals', access: 'read' }] } } }, '10.0.%')));
    expect(rs['db:account/bob']!.attrs.host).toBe('10.0.%');
    expect(rs['db:password/bob']!.attrs).toEqual({ account: 'bob', host: '10.0.%' });
  });

  test('datasets of one database merge: the whole database wins over a table list, lists are unioned', () => {
    const rs = byAddress(
      resources(
        spec({
          datasets: {
            labels: { backend: 'db', database: 'analytics', tables: ['gold', 'silver'] },
            more: { backend: 'db', database: 'analytics', tables: ['bronze'] },
            whole: { backend: 'db', database: 'analytics' },
          },
          principals: {
            a: {
              type: 'service',
              grants: [
                { dataset: 'labels', access: 'write' },
                { dataset: 'more', access: 'read' },
              ],
            },
            b: {
              type: 'service',
              grants: [
                { dataset: 'labels', access: 'read' },
                { dataset: 'whole', access: 'read' },
              ],
            },
          },
        }),
      ),
    );
    expect(rs['db:grant/a/analytics/read']!.attrs.tables).toEqual(['bronze', 'gold', 'silver']);
    expect(rs['db:grant/a/analytics/write']!.attrs.tables).toEqual(['gold', 'silver']);
    expect(rs['db:grant/b/analytics/read']!.attrs.tables).toBe('*');
  });

  test('an expired grant compiles to nothing; a principal with none left has no account; its group keeps its role', () => {
    const s = spec({
      groups: { ml: { grants: [{ dataset: 'analytics', access: 'read', expires: '2026-05-01' }] } },
      principals: {
        alice: { type: 'person', groups: ['ml'] },
        bob: { type: 'service', grants: [{ dataset: 'evals', access: 'read', expires: '2026-07-01' }] },
      },
    });
    expect(resources(s).map((r) => r.address)).toEqual(['db:account/bob', 'db:grant/bob/evals/read', 'db:password/bob', 'db:role/bob', 'db:role/ml']);
    // and serve wakes when bob's grant ends, to remove it
    expect(nextChangeAt(s, [], NOW)?.toISOString()).toBe('2026-07-01T00:00:00.000Z');
    expect(resources(s, new Date('2026-07-01T00:00:01Z')).map((r) => r.address)).toEqual(['db:role/ml']);
  });

  test('rotation is carried by the password slot, with no grace', () => {
    const rs = byAddress(
      resources(spec({ settings: { rotate: '30d' }, principals: { bob: { type: 'service', grants: [{ dataset: 'evals', access: 'read' }] } } })),
    );
    expect(rs['db:password/bob']!.lifecycle).toEqual({ rotateAfterSeconds: 30 * 86400 });
  });

  test('compile() dispatches mysql backends, and names a principal clashing with a group', () => {
    const s = spec({ groups: { x: { grants: [{ dataset: 'evals', access: 'read' }] } } });
    s.principals.x = { type: 'person', groups: [], grants: [{ dataset: 'evals', access: 'read' }] };
    expect(() => compile(s, NOW)).toThrow(CompileError);
    expect(() => compile(s, NOW)).toThrow(/role name "x" is also used by group x; groups and principals share one role namespace in MariaDB/);
    delete s.principals.x;
    expect(Object.keys(compile(s, NOW).desired)).toEqual(['db', 'aws']);
  });
});
