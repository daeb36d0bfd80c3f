// The postgres compiler: spec → roles, memberships, per-level grants and password slots. Pure.
import { describe, expect, test } from 'vitest';
import { assertDistinctAddresses } from '../../src/compile/index.js';
import { compilePostgres, grantPrivileges, pgAddress, type GrantAttrs } from '../../src/compile/postgres/compile.js';
import { PG_LEVELS, levelIncrement } from '../../src/model/postgres-levels.js';
import { resourcesFromCatalog } from '../../src/backends/postgres/catalog.js';
import { CompileError } from '../../src/core/errors.js';
import type { Level, Resource } from '../../src/core/types.js';
import { specSchema, type Spec, type SpecInput } from '../../src/spec/schema.js';

const NOW = new Date('2026-06-01T00:00:00Z');

function spec(extra: Partial<SpecInput> = {}): Spec {
  return specSchema.parse({
    version: 1,
    backends: { wh: { type: 'postgres', url: 'postgres://x@localhost/db' }, aws: { type: 'aws' } },
    datasets: {
      features: { backend: 'wh', database: 'analytics', schema: 'features' },
      labels: { backend: 'wh', database: 'analytics', schema: 'labels', tables: ['gold', 'silver'] },
      evals: { backend: 'wh', database: 'evals', schema: 'results' },
      bucket: { backend: 'aws', bucket: 'ai-model-data' },
    },
    ...extra,
  });
}

const compile = (s: Spec, now = NOW) => compilePostgres(s, 'wh', { now }).resources;
const byAddress = (rs: Resource[]) => Object.fromEntries(rs.map((r) => [r.address, r]));
const grantAttrs = (rs: Resource[], address: string) => byAddress(rs)[address]!.attrs as unknown as GrantAttrs;

describe('levels', () => {
  test.each([
    ['read', ['CONNECT'], ['USAGE'], ['SELECT'], []],
    ['write', ['CONNECT'], ['USAGE'], ['SELECT', 'INSERT', 'UPDATE', 'DELETE'], ['USAGE', 'SELECT']],
    ['admin', ['CONNECT'], ['USAGE'], ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'], ['USAGE', 'SELECT']],
  ] as const)('%s', (level, database, schema, tables, sequences) => {
    expect(PG_LEVELS[level]).toEqual({ database, schema, tables, sequences });
  });

  test('increments are disjoint and add up to the level', () => {
    const inc = (['read', 'write', 'admin'] as Level[]).map(levelIncrement);
    expect(inc.map((i) => i.tables)).toEqual([['SELECT'], ['INSERT', 'UPDATE', 'DELETE'], ['TRUNCATE', 'REFERENCES', 'TRIGGER']]);
    expect(inc.map((i) => i.sequences)).toEqual([[], ['USAGE', 'SELECT'], []]);
    expect(inc.map((i) => i.schema)).toEqual([['USAGE'], [], []]);
  });
});

describe('compilePostgres', () => {
  test.each<[string, Level, 'features' | 'labels', string[]]>([
    ['read, all tables', 'read', 'features', ['read']],
    ['write, all tables', 'write', 'features', ['read', 'write']],
    ['admin, listed tables', 'admin', 'labels', ['read', 'write', 'admin']],
    ['read, listed tables', 'read', 'labels', ['read']],
  ])('%s: one grant resource per level up to the granted one', (_, access, dataset, levels) => {
    for (const via of ['group', 'direct'] as const) {
      const s = spec(
        via === 'group'
          ? { groups: { team: { grants: [{ dataset, access }] } }, principals: { alice: { type: 'person', groups: ['team'] } } }
          : { principals: { alice: { type: 'person', grants: [{ dataset, access }] } } },
      );
      const rs = compile(s);
      const grantee = via === 'group' ? 'team' : 'alice';
      const schema = dataset === 'features' ? 'features' : 'labels';
      const grants = rs.filter((r) => r.kind === 'grant');
      expect(grants.map((r) => r.address)).toEqual(levels.map((l) => `wh:grant/${grantee}/analytics.${schema}/${l}`).sort());
      for (const l of levels) {
        const a = grantAttrs(rs, `wh:grant/${grantee}/analytics.${schema}/${l}`);
        const tables = dataset === 'features' ? '*' : ['gold', 'silver'];
        expect(a).toEqual({ role: grantee, database: 'analytics', schema, level: l, tables, privileges: grantPrivileges(l as Level, tables) });
        // Default privileges only when the dataset is the whole schema.
        expect(a.privileges.defaultTables.length > 0).toBe(dataset === 'features');
      }
      expect(byAddress(rs)[`wh:connect/${grantee}/analytics`]!.attrs).toEqual({ role: grantee, database: 'analytics', privileges: ['CONNECT'] });
      expect(byAddress(rs)['wh:role/alice']!.attrs).toEqual({ login: true, validUntil: null, flags: [] });
      if (via === 'group') {
        expect(byAddress(rs)['wh:role/team']!.attrs).toEqual({ login: false, validUntil: null, flags: [] });
        expect(byAddress(rs)['wh:membership/team/alice']!.attrs).toEqual({ group: 'team', member: 'alice' });
      }
      const pw = byAddress(rs)['wh:password/alice']!;
      expect(pw.deps).toEqual(expect.arrayContaining(['wh:role/alice', ...grants.map((g) => g.address), `wh:connect/${grantee}/analytics`]));
    }
  });

  test('datasets on one schema merge: all tables wins, table lists union', () => {
    const s = spec({
      datasets: {
        a: { backend: 'wh', database: 'db', schema: 's', tables: ['t1'] },
        b: { backend: 'wh', database: 'db', schema: 's', tables: ['t2', 't1'] },
        c: { backend: 'wh', database: 'db', schema: 's' },
      },
      principals: {
        p: {
          type: 'service',
          grants: [
            { dataset: 'a', access: 'write' },
            { dataset: 'b', access: 'read' },
          ],
        },
        q: {
          type: 'service',
          grants: [
            { dataset: 'a', access: 'read' },
            { dataset: 'c', access: 'read' },
          ],
        },
      },
    });
    const rs = compile(s);
    expect(grantAttrs(rs, 'wh:grant/p/db.s/read').tables).toEqual(['t1', 't2']);
    expect(grantAttrs(rs, 'wh:grant/p/db.s/write').tables).toEqual(['t1']);
    expect(grantAttrs(rs, 'wh:grant/q/db.s/read').tables).toBe('*');
  });

  test.each([
    ['no expiry anywhere', [undefined, undefined], null],
    ['one grant without expiry keeps the login open', ['2026-09-01', undefined], null],
    ['all grants expire: the latest one ends the login', ['2026-09-01', '2026-12-31T12:00:00Z'], '2026-12-31T12:00:00.000Z'],
    ['an expired grant does not count', ['2026-01-01', '2026-07-01'], '2026-07-01T00:00:00.000Z'],
  ])('VALID UNTIL: %s', (_, [viaGroup, direct], validUntil) => {
    const s = spec({
      groups: { team: { grants: [{ dataset: 'features', access: 'read', ...(viaGroup ? { expires: viaGroup } : {}) }] } },
      principals: { alice: { type: 'person', groups: ['team'], grants: [{ dataset: 'evals', access: 'read', ...(direct ? { expires: direct } : {}) }] } },
    });
    expect(byAddress(compile(s))['wh:role/alice']!.attrs.validUntil).toBe(validUntil);
  });

  test('expired grants compile to nothing; a principal with none left has no role', () => {
    const s = spec({
      groups: { team: { grants: [{ dataset: 'features', access: 'read', expires: '2026-01-01' }] } },
      principals: {
        alice: { type: 'person', groups: ['team'] },
        bob: { type: 'person', grants: [{ dataset: 'evals', access: 'write', expires: '2026-05-31' }] },
      },
    });
    const rs = compile(s);
    // The group role stays (so a renewal keeps memberships), without grants; nobody logs in.
    expect(rs.map((r) => r.address)).toEqual(['wh:role/team']);
  });

  test('aws datasets and principals without postgres grants are ignored', () => {
    const s = spec({ principals: { alice: { type: 'person', grants: [{ dataset: 'bucket', access: 'read' }] } } });
    expect(compile(s)).toEqual([]);
  });

  test('password slot rotates like an AWS key, but without grace: a role holds one password', () => {
    const s = spec({
      settings: { rotate: '30d', rotationGrace: '2h' },
      principals: {
        alice: { type: 'person', grants: [{ dataset: 'features', access: 'read' }] },
        bot: { type: 'service', rotate: '1d', grants: [{ dataset: 'features', access: 'read' }] },
      },
    });
    const rs = byAddress(compile(s));
    expect(rs['wh:password/alice']).toMatchObject({
      kind: 'password',
      name: 'alice',
      attrs: { role: 'alice' },
      immutable: ['role'],
      lifecycle: { rotateAfterSeconds: 30 * 86400 },
    });
    expect(rs['wh:password/bot']!.lifecycle).toEqual({ rotateAfterSeconds: 86400 });
    // without a rotation period, no lifecycle at all
    expect(
      byAddress(compile(spec({ principals: { eve: { type: 'person', grants: [{ dataset: 'features', access: 'read' }] } } })))['wh:password/eve']!.lifecycle,
    ).toBeUndefined();
  });

  test('deterministic, sorted output whatever the spec order', () => {
    const a = spec({
      groups: { z: { grants: [{ dataset: 'features', access: 'read' }] }, a: { grants: [{ dataset: 'labels', access: 'write' }] } },
      principals: { m: { type: 'person', groups: ['z', 'a'] }, b: { type: 'person', groups: ['a'] } },
    });
    const b = spec({
      principals: { b: { type: 'person', groups: ['a'] }, m: { type: 'person', groups: ['a', 'z'] } },
      groups: { a: { grants: [{ dataset: 'labels', access: 'write' }] }, z: { grants: [{ dataset: 'features', access: 'read' }] } },
    });
    const ra = compile(a);
    expect(JSON.stringify(ra)).toBe(JSON.stringify(compile(b)));
    const addresses = ra.map((r) => r.address);
    expect(addresses).toEqual([...addresses].sort());
  });

  test.each([
    [
      'a group and a principal with one name',
      {
        groups: { same: { grants: [{ dataset: 'features', access: 'read' as const }] } },
        principals: { same: { type: 'person' as const, grants: [{ dataset: 'features', access: 'read' as const }] } },
      },
      /also used by group same/,
    ],
    ['a reserved pg_ prefix', { principals: { pg_reader: { type: 'service' as const, grants: [{ dataset: 'features', access: 'read' as const }] } } }, /pg_/],
    ['a name over 63 bytes', { groups: { ['g'.repeat(64)]: { grants: [{ dataset: 'features', access: 'read' as const }] } } }, /63 bytes/],
    [
      'the reserved name public',
      { principals: { public: { type: 'service' as const, grants: [{ dataset: 'features', access: 'read' as const }] } } },
      /reserves/,
    ],
  ])('refuses %s', (_, extra, message) => {
    expect(() => compile(spec(extra))).toThrow(CompileError);
    expect(() => compile(spec(extra))).toThrow(message);
  });
});

describe('catalog facts map back to compiled resources', () => {
  test('a write grant on all tables, read back from its ACLs, equals the compiled one', () => {
    const s = spec({ principals: { alice: { type: 'person', grants: [{ dataset: 'features', access: 'write' }] } } });
    const desired = compile(s).filter((r) => r.kind === 'grant' || r.kind === 'connect');
    const rel = (name: string, kind: 'table' | 'sequence', ownedBy: string | null = null) => ({
      database: 'analytics',
      schema: 'features',
      name,
      kind,
      owner: 'migrator',
      ownedBy,
    });
    const acl = (relation: string, kind: 'table' | 'sequence', privilege: string) => ({
      database: 'analytics',
      schema: 'features',
      relation,
      kind,
      role: 'alice',
      privilege,
    });
    const actual = resourcesFromCatalog({
      backend: 'wh',
      roles: [{ name: 'alice', login: true, validUntil: null, flags: [], comment: { datagrant: 'managed' } }],
      memberships: [],
      databaseAcl: [{ database: 'analytics', role: 'alice', privilege: 'CONNECT' }],
      schemas: [{ database: 'analytics', schema: 'features', owner: 'migrator' }],
      relations: [rel('t', 'table'), rel('t_id_seq', 'sequence', 't')],
      schemaAcl: [{ database: 'analytics', schema: 'features', role: 'alice', privilege: 'USAGE' }],
      columnAcl: [],
      relationAcl: [
        ...['SELECT', 'INSERT', 'UPDATE', 'DELETE'].map((p) => acl('t', 'table', p)),
        acl('t_id_seq', 'sequence', 'USAGE'),
        acl('t_id_seq', 'sequence', 'SELECT'),
      ],
      defaultAcl: [
        ...['SELECT', 'INSERT', 'UPDATE', 'DELETE'].map((privilege) => ({
          database: 'analytics',
          schema: 'features',
          owner: 'migrator',
          objtype: 'table' as const,
          role: 'alice',
          privilege,
        })),
        ...['USAGE', 'SELECT'].map((privilege) => ({
          database: 'analytics',
          schema: 'features',
          owner: 'migrator',
          objtype: 'sequence' as const,
          role: 'alice',
          privilege,
        })),
      ],
      credentials: [],
    }).filter((r) => r.kind === 'grant' || r.kind === 'connect');
    expect(actual).toEqual(desired);
  });
});

describe('addresses: distinct schemas never share one', () => {
  const twoDatasets = (a: [string, string], b: [string, string]) =>
    spec({
      datasets: { a: { backend: 'wh', database: a[0], schema: a[1] }, b: { backend: 'wh', database: b[0], schema: b[1] } },
      principals: {
        p: {
          type: 'service',
          grants: [
            { dataset: 'a', access: 'read' },
            { dataset: 'b', access: 'write' },
          ],
        },
      },
    });

  test.each<[string, [string, string], [string, string]]>([
    ['a dot in the database vs in the schema', ['x.y', 's'], ['x', 'y.s']],
    ['a written escape vs the character it stands for', ['a%2Eb', 'c'], ['a.b', 'c']],
    ['a slash in the database vs in the schema', ['a/b', 'c'], ['a', 'b/c']],
    ['a percent sign vs its escape', ['a%', '25.b'], ['a%25', 'b']],
  ])('%s: both grants are planned, each with its own address', (_what, a, b) => {
    // GIVEN two datasets whose names, joined as written, could be confused
    // WHEN
    const grants = compile(twoDatasets(a, b)).filter((r) => r.kind === 'grant');
    // THEN the read grant on a and the read and write grants on b, all three, on distinct addresses
    const held = grants.map((r) => [r.attrs.database, r.attrs.schema, r.attrs.level]);
    expect(held).toEqual(
      expect.arrayContaining([
        [...a, 'read'],
        [...b, 'read'],
        [...b, 'write'],
      ]),
    );
    expect(grants).toHaveLength(3);
    expect(new Set(grants.map((r) => r.address)).size).toBe(3);
  });

  test('names without "%", "." or "/" read as written', () => {
    expect(pgAddress.grant('wh', 'alice', 'analytics', 'features', 'read')).toBe('wh:grant/alice/analytics.features/read');
    expect(pgAddress.grant('wh', 'alice', 'x.y', 's', 'read')).toBe('wh:grant/alice/x%2Ey.s/read');
  });

  test('a grant on dotted names, read back from the catalog, has the address it was compiled to', () => {
    // GIVEN a read grant on schema "y.s" of database "x", as the catalog reports it after apply
    const s = spec({
      datasets: { d: { backend: 'wh', database: 'x', schema: 'y.s', tables: ['t'] } },
      principals: { alice: { type: 'person', grants: [{ dataset: 'd', access: 'read' }] } },
    });
    const desired = compile(s).filter((r) => r.kind === 'grant' || r.kind === 'connect');
    const actual = resourcesFromCatalog({
      backend: 'wh',
      roles: [{ name: 'alice', login: true, validUntil: null, flags: [], comment: { datagrant: 'managed' } }],
      memberships: [],
      databaseAcl: [{ database: 'x', role: 'alice', privilege: 'CONNECT' }],
      schemas: [{ database: 'x', schema: 'y.s', owner: 'migrator' }],
      relations: [{ database: 'x', schema: 'y.s', name: 't', kind: 'table', owner: 'migrator', ownedBy: null }],
      schemaAcl: [{ database: 'x', schema: 'y.s', role: 'alice', privilege: 'USAGE' }],
      columnAcl: [],
      relationAcl: [{ database: 'x', schema: 'y.s', relation: 't', kind: 'table', role: 'alice', privilege: 'SELECT' }],
      defaultAcl: [],
      credentials: [],
    }).filter((r) => r.kind === 'grant' || r.kind === 'connect');
    // THEN the same resources at the same addresses: nothing to change
    expect(actual).toEqual(desired);
    expect(actual.map((r) => r.address)).toContain('wh:grant/alice/x.y%2Es/read');
  });

  test('two objects on one address are a CompileError naming both, never a silent overwrite', () => {
    const r = (schema: string): Resource => ({
      address: 'wh:grant/p/x.y.s/read',
      backend: 'wh',
      kind: 'grant',
      name: 'p',
      attrs: { role: 'p', database: 'x', schema, level: 'read' },
      immutable: ['role', 'database', 'schema', 'level'],
      deps: [],
    });
    expect(() => assertDistinctAddresses('wh', [r('y.s'), r('s')])).toThrow(CompileError);
    expect(() => assertDistinctAddresses('wh', [r('y.s'), r('s')])).toThrow(
      'backend wh: grant {"role":"p","database":"x","schema":"y.s","level":"read"} and grant {"role":"p","database":"x","schema":"s","level":"read"} compile to one address, wh:grant/p/x.y.s/read; the plan would keep only one of them',
    );
    expect(() => assertDistinctAddresses('wh', [r('y.s')])).not.toThrow();
  });
});

describe('lifecycle numbers are safe before anything is done', () => {
  test('a rotation period past 10 years in a spec that skipped validation fails while compiling', () => {
    // GIVEN a spec object whose rotation period never went through the schema
    const s = spec({ principals: { alice: { type: 'person', grants: [{ dataset: 'features', access: 'read' }] } } });
    const unchecked = { ...s, settings: { rotate: '3000000000h' } } as Spec;
    // THEN compiling (pure, before any backend call) refuses it
    expect(() => compile(unchecked)).toThrow(RangeError);
    expect(() => compile(unchecked)).toThrow('duration 3000000000h is too long; a duration is at most 10 years (3650d, 87600h)');
  });

  test('at the limit, the lifecycle holds exactly 10 years', () => {
    const s = spec({
      settings: { rotate: '3650d', rotationGrace: '87600h' },
      principals: { alice: { type: 'person', grants: [{ dataset: 'features', access: 'read' }] } },
    });
    const lifecycle = byAddress(compile(s))['wh:password/alice']!.lifecycle!;
    expect(lifecycle).toEqual({ rotateAfterSeconds: 315360000 });
  });
});

describe('temporary principals (credentials: temporary)', () => {
  const s = spec({
    groups: { team: { grants: [{ dataset: 'features', access: 'read' }] } },
    principals: {
      tess: { type: 'person', credentials: 'temporary', groups: ['team'], grants: [{ dataset: 'labels', access: 'write' }] },
      kim: { type: 'person', groups: ['team'] },
      gone: { type: 'person', credentials: 'temporary', grants: [{ dataset: 'labels', access: 'read', expires: '2026-05-01' }] },
    },
  });
  const fact = (principal: string, target: string, expiresAt: string, backend = 'wh') => ({
    backend,
    principal,
    target,
    lastIssuedAt: '2026-05-31T23:30:00.000Z',
    expiresAt,
  });

  test("the principal's role never logs in and has no password; its grants and groups are as a key principal's", () => {
    const rs = byAddress(compile(s));
    expect(rs['wh:role/tess']!.attrs).toEqual({ login: false, validUntil: null, flags: [] });
    expect(rs['wh:password/tess']).toBeUndefined();
    expect(rs['wh:membership/team/tess']).toBeDefined();
    expect(grantAttrs(Object.values(rs), pgAddress.grant('wh', 'tess', 'analytics', 'labels', 'write')).tables).toEqual(['gold', 'silver']);
    // a key principal keeps its login and password
    expect(rs['wh:role/kim']!.attrs).toMatchObject({ login: true });
    expect(rs['wh:password/kim']).toBeDefined();
  });

  test('a logged session keeps its login while it may run and its principal still has sessions here; nothing else does', () => {
    const sessions = [
      fact('tess', 'tess~abcdefgh', '2026-06-01T00:30:00.000Z'),
      fact('tess', 'tess~expiredx', '2026-06-01T00:00:00.000Z'), // ended exactly now
      fact('kim', 'kim~keyprinc', '2026-06-01T00:30:00.000Z'), // keys, not sessions
      fact('gone', 'gone~noaccess', '2026-06-01T00:30:00.000Z'), // every grant expired
      fact('zed', 'zed~removedx', '2026-06-01T00:30:00.000Z'), // no longer in the spec
      fact('tess', 'tess~abcdefgh', '2026-06-01T00:30:00.000Z', 'other'), // another backend's
      fact('tess', 'not-a-session-login', '2026-06-01T00:30:00.000Z'),
    ];
    const logins = compilePostgres(s, 'wh', { now: NOW, sessions }).resources.filter((r) => r.kind === 'session-login');
    expect(logins).toEqual([
      {
        address: 'wh:session-login/tess/abcdefgh',
        backend: 'wh',
        kind: 'session-login',
        name: 'tess~abcdefgh',
        attrs: { principal: 'tess', login: true, memberOf: ['tess'], flags: [] },
        immutable: ['principal', 'login', 'memberOf', 'flags'],
        deps: ['wh:role/tess'],
      },
    ]);
  });

  test('a session login read from the catalog is the compiled one, its own membership folded in', () => {
    const sessions = [fact('tess', 'tess~abcdefgh', '2026-06-01T00:30:00.000Z')];
    const compiled = compilePostgres(s, 'wh', { now: NOW, sessions }).resources.find((r) => r.kind === 'session-login')!;
    const read = resourcesFromCatalog({
      backend: 'wh',
      roles: [
        { name: 'tess', login: false, validUntil: null, flags: [], comment: { datagrant: 'managed' } },
        {
          name: 'tess~abcdefgh',
          login: true,
          validUntil: '2026-06-01T00:30:00.000Z',
          flags: [],
          comment: { datagrant: 'managed', kind: 'session', principal: 'tess', validUntil: '2026-06-01T00:30:00.000Z' },
        },
      ],
      memberships: [{ group: 'tess', member: 'tess~abcdefgh' }],
      databaseAcl: [],
      schemas: [],
      relations: [],
      schemaAcl: [],
      relationAcl: [],
      columnAcl: [],
      defaultAcl: [],
      credentials: [],
    });
    expect(read.map((r) => r.address)).toEqual(['wh:role/tess', 'wh:session-login/tess/abcdefgh']);
    const login = read.find((r) => r.kind === 'session-login')!;
    expect(login.attrs).toEqual(compiled.attrs);
    expect(login.meta).toEqual({ validUntil: '2026-06-01T00:30:00.000Z' });
  });
});
