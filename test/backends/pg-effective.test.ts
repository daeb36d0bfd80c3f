// Effective access on PostgreSQL, as pure logic: catalog facts → who reaches a dataset, at which
// level, through what. Each way in (GRANT, PUBLIC, membership, SET ROLE, ownership, superuser,
// default and column privileges) and each way a privilege stays unusable is one case.
import { describe, expect, test } from 'vitest';
import type { Level } from '../../src/core/types.js';
import { parseComment, parseOwnComment } from '../../src/backends/postgres/catalog.js';
import {
  NO_LOGIN_RECORD,
  effectiveAccess,
  type AclItem,
  type PgAccessDataset,
  type PgAccessFacts,
  type PgRelationFact,
  type PgRoleFact,
} from '../../src/backends/postgres/effective.js';

const mark = (extra: Record<string, unknown> = {}) => JSON.stringify({ datagrant: 'managed', scope: 'sc', installation: 'inst', ...extra });
const marker = (c: string | null) => parseOwnComment(c, 'sc', 'inst');
const legacy = (c: string | null) => parseComment(c, 'sc', 'inst') !== undefined;
const acl = (grantee: string | null, ...privileges: string[]): AclItem[] => privileges.map((privilege) => ({ grantee, privilege }));
const ALL = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'];

const WHOLE: PgAccessDataset = { name: 'hr-data', database: 'd', schema: 'hr' };
const LISTED: PgAccessDataset = { name: 'hr-a', database: 'd', schema: 'hr', tables: ['a'] };

/**
 * A server with database d (owner dbo, PUBLIC may connect), schema hr (owner so; USAGE for tabo,
 * who made the tables, and no one else) and tables a and b (owner tabo), before any grant.
 */
function server(version = 150000) {
  const table = (name: string): PgRelationFact => ({
    database: 'd',
    schema: 'hr',
    name,
    relkind: 'r',
    partition: false,
    rowSecurity: false,
    owner: 'tabo',
    acl: acl('tabo', ...ALL),
  });
  const f: PgAccessFacts = {
    backend: 'wh',
    version,
    roles: ['dbo', 'so', 'tabo'].map((n) => role(n)),
    memberships: [],
    databases: [
      { name: 'd', owner: 'dbo', allowConnections: true, acl: [...acl(null, 'CONNECT', 'TEMPORARY'), ...acl('dbo', 'CREATE', 'TEMPORARY', 'CONNECT')] },
    ],
    schemas: [{ database: 'd', name: 'hr', owner: 'so', acl: [...acl('so', 'USAGE', 'CREATE'), ...acl('tabo', 'USAGE')] }],
    relations: [table('a'), table('b')],
    columns: [],
    defaults: [],
  };
  const s = {
    f,
    role(name: string, o: Partial<PgRoleFact> = {}) {
      f.roles.push(role(name, o));
      return s;
    },
    member(group: string, member: string, options: { inherit?: boolean; set?: boolean } = {}) {
      f.memberships.push({ role: group, member, inheritOption: options.inherit ?? null, setOption: options.set ?? null });
      return s;
    },
    grant(tables: string[], grantee: string | null, ...privileges: string[]) {
      for (const t of tables) f.relations.find((r) => r.name === t)!.acl.push(...acl(grantee, ...privileges));
      return s;
    },
    usage(grantee: string | null) {
      f.schemas[0]!.acl.push(...acl(grantee, 'USAGE'));
      return s;
    },
    /** REVOKE CONNECT ON DATABASE d FROM PUBLIC, GRANT CONNECT … TO each of `to`. */
    connectOnly(...to: string[]) {
      f.databases[0]!.acl = [...f.databases[0]!.acl.filter((a) => a.grantee !== null), ...to.flatMap((g) => acl(g, 'CONNECT'))];
      return s;
    },
    read(...datasets: PgAccessDataset[]) {
      return effectiveAccess(f, datasets.length ? datasets : [WHOLE], marker, { legacy });
    },
  };
  return s;
}

function role(name: string, o: Partial<PgRoleFact> = {}): PgRoleFact {
  return { name, superuser: false, inherit: true, login: true, createRole: false, validUntil: null, comment: null, ...o };
}

type Reading = ReturnType<typeof effectiveAccess>;
/** The paths of `holder`'s row at `level` (`[partial]` marked), or undefined: no such row. */
const paths = (r: Reading, holder: string, level: Level, dataset = 'hr-data') =>
  r.rows.find((x) => x.dataset === dataset && x.level === level && x.holder.id === holder)?.paths.map((p) => `${p.via}${p.partial ? ' [partial]' : ''}`);
/** The levels `holder` has rows at. */
const levels = (r: Reading, holder: string, dataset = 'hr-data') => r.rows.filter((x) => x.dataset === dataset && x.holder.id === holder).map((x) => x.level);

describe('a GRANT on the tables', () => {
  test('on every table of a whole-schema dataset, with USAGE: one full path in words one can REVOKE', () => {
    const r = server().role('bob').usage('bob').grant(['a', 'b'], 'bob', 'SELECT').read();
    expect(paths(r, 'bob', 'read')).toEqual(['GRANT SELECT ON ALL TABLES IN SCHEMA hr TO bob']);
    expect(r.rows.find((x) => x.holder.id === 'bob')!.holder).toEqual({ id: 'bob', kind: 'pg-role', name: 'bob', managed: false });
  });

  test('on some tables of a whole schema: partial, naming them', () => {
    const r = server().role('bob').usage('bob').grant(['b'], 'bob', 'SELECT').read();
    expect(paths(r, 'bob', 'read')).toEqual(['GRANT SELECT ON hr.b TO bob [partial]']);
  });

  test('a dataset with a table list sees only its tables: a grant on another table is not access to it', () => {
    const s = server().role('bob').role('eve').usage('bob').usage('eve').grant(['a'], 'bob', 'SELECT').grant(['b'], 'eve', 'SELECT');
    const r = s.read(LISTED);
    expect(paths(r, 'bob', 'read', 'hr-a')).toEqual(['GRANT SELECT ON hr.a TO bob']);
    expect(paths(r, 'eve', 'read', 'hr-a')).toBeUndefined();
  });

  test.each<[string, string[], Level[]]>([
    ['SELECT is read', ['SELECT'], ['read']],
    ['any of INSERT, UPDATE, DELETE is write (INSERT alone gives no read)', ['INSERT'], ['write']],
    ['DELETE is write', ['DELETE'], ['write']],
    ["datagrant's write grant is read and write", ['SELECT', 'INSERT', 'UPDATE', 'DELETE'], ['read', 'write']],
    ['TRUNCATE is admin', ['TRUNCATE'], ['admin']],
    ['REFERENCES is admin', ['REFERENCES'], ['admin']],
    ['every privilege is every level', ALL, ['read', 'write', 'admin']],
  ])('%s', (_, privileges, want) => {
    const r = server()
      .role('bob')
      .usage('bob')
      .grant(['a', 'b'], 'bob', ...privileges)
      .read();
    expect(levels(r, 'bob')).toEqual(want);
  });

  test('the privileges of one level are named together', () => {
    const r = server().role('bob').usage('bob').grant(['a', 'b'], 'bob', 'DELETE', 'INSERT').read();
    expect(paths(r, 'bob', 'write')).toEqual(['GRANT INSERT, DELETE ON ALL TABLES IN SCHEMA hr TO bob']);
  });
});

describe('USAGE and CONNECT', () => {
  test('without USAGE on the schema a table privilege is no access, and limits say so', () => {
    const r = server().role('bob').grant(['a', 'b'], 'bob', 'SELECT').read();
    expect(levels(r, 'bob')).toEqual([]);
    expect(r.limits).toContain(
      'dataset hr-data: privileges held by bob reach no one: without USAGE on schema hr or CONNECT on database d they cannot be used, and are not shown',
    );
  });

  test('without CONNECT (revoked from PUBLIC) it is no access either', () => {
    const r = server().connectOnly('dbo').role('bob').usage('bob').grant(['a', 'b'], 'bob', 'SELECT').read();
    expect(levels(r, 'bob')).toEqual([]);
    // (nor the schema's and the tables' owners, who hold no CONNECT either)
    expect(r.limits).toEqual([
      'dataset hr-data: privileges held by bob, so, tabo reach no one: without USAGE on schema hr or CONNECT on database d they cannot be used, and are not shown',
    ]);
  });

  test('USAGE and CONNECT count from wherever the role has them: PUBLIC, a role it inherits from', () => {
    const r = server()
      .connectOnly('dbo', 'connectors')
      .role('connectors', { login: false })
      .member('connectors', 'bob')
      .usage(null)
      .role('bob')
      .grant(['a', 'b'], 'bob', 'SELECT')
      .read();
    expect(paths(r, 'bob', 'read')).toEqual(['GRANT SELECT ON ALL TABLES IN SCHEMA hr TO bob']);
  });

  test("a group's privileges are used by a member that can connect, though the group itself cannot", () => {
    const s = server().connectOnly('dbo', 'carol').role('readers', { login: false }).role('carol').member('readers', 'carol');
    const r = s.usage('readers').grant(['a', 'b'], 'readers', 'SELECT').read();
    expect(paths(r, 'carol', 'read')).toEqual(['member of role readers']);
    expect(levels(r, 'readers')).toEqual([]);
    expect(r.limits.some((l) => l.includes('reach no one') && l.includes('readers'))).toBe(false);
  });
});

describe('PUBLIC', () => {
  test('GRANT … TO PUBLIC with USAGE for PUBLIC is one row of its own, not a row for every role', () => {
    const r = server().role('bob').usage(null).grant(['a'], null, 'SELECT').read();
    expect(paths(r, 'PUBLIC', 'read')).toEqual(['GRANT SELECT ON hr.a TO PUBLIC [partial]']);
    expect(r.rows.find((x) => x.holder.id === 'PUBLIC')!.holder).toEqual({ id: 'PUBLIC', kind: 'pg-public', name: 'PUBLIC', managed: false });
    expect(levels(r, 'bob')).toEqual([]);
  });

  test('GRANT … TO PUBLIC without USAGE for PUBLIC reaches exactly the roles that have USAGE', () => {
    const r = server().role('bob').role('eve').usage('bob').grant(['a', 'b'], null, 'SELECT').read();
    expect(levels(r, 'PUBLIC')).toEqual([]);
    expect(paths(r, 'bob', 'read')).toEqual(['GRANT SELECT ON ALL TABLES IN SCHEMA hr TO PUBLIC']);
    expect(levels(r, 'eve')).toEqual([]);
  });
});

describe('membership', () => {
  test('an INHERIT member holds what its group holds, through any depth', () => {
    const s = server().role('analysts', { login: false }).role('team', { login: false }).role('carol').role('dan');
    s.usage('analysts').grant(['a', 'b'], 'analysts', 'SELECT').member('analysts', 'team').member('team', 'carol').member('analysts', 'dan');
    const r = s.read();
    expect(paths(r, 'dan', 'read')).toEqual(['member of role analysts']);
    expect(paths(r, 'carol', 'read')).toEqual(['member of role analysts (through team)']);
    expect(paths(r, 'analysts', 'read')).toEqual(['GRANT SELECT ON ALL TABLES IN SCHEMA hr TO analysts']);
  });

  test("a member path is partial when the group's own access is", () => {
    const r = server().role('analysts', { login: false }).role('carol').member('analysts', 'carol').usage('analysts').grant(['a'], 'analysts', 'SELECT').read();
    expect(paths(r, 'carol', 'read')).toEqual(['member of role analysts [partial]']);
  });

  test('PostgreSQL 15: a NOINHERIT member does not hold it, but can SET ROLE to it', () => {
    const s = server().role('analysts', { login: false }).role('nora', { inherit: false }).member('analysts', 'nora');
    const r = s.usage('analysts').grant(['a', 'b'], 'analysts', 'SELECT').read();
    expect(paths(r, 'nora', 'read')).toEqual(['can SET ROLE analysts']);
  });

  test.each<[string, { inherit: boolean; set: boolean }, string[] | undefined]>([
    ['INHERIT TRUE', { inherit: true, set: true }, ['member of role analysts']],
    ['INHERIT FALSE, SET TRUE', { inherit: false, set: true }, ['can SET ROLE analysts']],
    // What PostgreSQL 16 gives a CREATEROLE role over the roles it creates: ADMIN only.
    ['INHERIT FALSE, SET FALSE', { inherit: false, set: false }, undefined],
  ])('PostgreSQL 16 reads the grant, not the member: %s', (_, options, want) => {
    // rolinherit false would make it NOINHERIT before 16; from 16 the grant's option decides
    const s = server(160004).role('analysts', { login: false }).role('nora', { inherit: false }).member('analysts', 'nora', options);
    const r = s.usage('analysts').grant(['a', 'b'], 'analysts', 'SELECT').read();
    expect(paths(r, 'nora', 'read')).toEqual(want);
  });

  test("a member of a superuser role can SET ROLE to it: every level; superuser itself isn't inherited", () => {
    const r = server().role('root', { superuser: true, login: false }).role('ops').member('root', 'ops').read();
    for (const l of ['read', 'write', 'admin'] as Level[]) {
      expect(paths(r, 'root', l)).toEqual(['superuser']);
      expect(paths(r, 'ops', l)).toEqual(['can SET ROLE root']);
    }
  });

  test('a member of pg_read_all_data reads every table; the predefined role itself is no row', () => {
    const r = server().role('pg_read_all_data', { login: false }).role('auditor').member('pg_read_all_data', 'auditor').read();
    expect(paths(r, 'auditor', 'read')).toEqual(['member of role pg_read_all_data']);
    expect(levels(r, 'auditor')).toEqual(['read']);
    expect(levels(r, 'pg_read_all_data')).toEqual([]);
  });
});

describe('ownership and superuser', () => {
  test('the owner of the tables has every level; the owners of the schema and database may drop, which is admin', () => {
    const r = server().read();
    for (const l of ['read', 'write', 'admin'] as Level[]) expect(paths(r, 'tabo', l)).toEqual(['owner of every table in schema hr']);
    expect(levels(r, 'so')).toEqual(['admin']);
    expect(paths(r, 'so', 'admin')).toEqual(['owner of schema hr (may drop its tables)']);
    expect(paths(r, 'dbo', 'admin')).toEqual(['owner of database d (may drop it)']);
  });

  test('every superuser has every level, without USAGE or CONNECT', () => {
    const r = server().connectOnly().role('postgres', { superuser: true }).role('admin2', { superuser: true }).read();
    for (const who of ['postgres', 'admin2']) expect(levels(r, who)).toEqual(['read', 'write', 'admin']);
    expect(paths(r, 'postgres', 'admin')).toEqual(['superuser']);
  });
});

describe('default privileges', () => {
  const defaults = (s: ReturnType<typeof server>) => {
    s.role('creator').role('fred').usage('fred');
    s.f.defaults.push(
      { database: 'd', schema: 'hr', creator: 'creator', grantee: 'fred', privilege: 'SELECT' },
      { database: 'd', schema: null, creator: 'creator', grantee: 'fred', privilege: 'INSERT' },
      // the creator's own entry in a global default is its ownership of what it creates
      { database: 'd', schema: null, creator: 'creator', grantee: 'creator', privilege: 'SELECT' },
      { database: 'd', schema: 'other', creator: 'creator', grantee: 'fred', privilege: 'TRUNCATE' },
    );
    return s;
  };

  test('a whole-schema dataset: future tables, in its schema or in any, as a partial path', () => {
    const r = defaults(server()).read();
    expect(paths(r, 'fred', 'read')).toEqual(['default privileges: future tables created by creator in hr [partial]']);
    expect(paths(r, 'fred', 'write')).toEqual(['default privileges: future tables created by creator in any schema [partial]']);
    expect(levels(r, 'fred')).toEqual(['read', 'write']);
    expect(levels(r, 'creator')).toEqual([]);
  });

  test('a dataset with a table list: future tables are not in it', () => {
    const r = defaults(server()).read(LISTED);
    expect(levels(r, 'fred', 'hr-a')).toEqual([]);
  });
});

describe('column privileges', () => {
  test('SELECT on some columns is partial read naming them, and limits say the report shows them so', () => {
    const s = server().role('bob').usage('bob');
    s.f.columns.push(
      { database: 'd', schema: 'hr', relation: 'a', column: 'salary', grantee: 'bob', privilege: 'SELECT' },
      { database: 'd', schema: 'hr', relation: 'a', column: 'name', grantee: 'bob', privilege: 'SELECT' },
      { database: 'd', schema: 'hr', relation: 'a', column: 'name', grantee: 'bob', privilege: 'UPDATE' },
    );
    const r = s.read();
    expect(paths(r, 'bob', 'read')).toEqual(['GRANT SELECT (name, salary) ON hr.a TO bob [partial]']);
    expect(paths(r, 'bob', 'write')).toEqual(['GRANT UPDATE (name) ON hr.a TO bob [partial]']);
    expect(r.limits).toContain('column privileges on hr.a: shown as partial access through a path that names the columns');
  });

  test('a column privilege already held on the whole table adds nothing', () => {
    const s = server().role('bob').usage('bob').grant(['a', 'b'], 'bob', 'SELECT');
    s.f.columns.push({ database: 'd', schema: 'hr', relation: 'a', column: 'x', grantee: 'bob', privilege: 'SELECT' });
    expect(paths(s.read(), 'bob', 'read')).toEqual(['GRANT SELECT ON ALL TABLES IN SCHEMA hr TO bob']);
  });
});

describe("datagrant's roles", () => {
  const world = () => {
    const s = server()
      .role('ana', { comment: mark(), validUntil: '2030-01-01T00:00:00.000Z' })
      .role('readers', { login: false, comment: mark() })
      .role('temp', { login: false, comment: mark() })
      .role('temp~abcdefgh', { comment: mark({ kind: 'session', principal: 'temp' }) })
      .role('lonely', { login: false, comment: mark() })
      .role('theirs', { comment: JSON.stringify({ datagrant: 'managed', scope: 'sc', installation: 'other' }) })
      .role('outsider', { comment: 'made by hand' });
    s.member('readers', 'ana').member('temp', 'temp~abcdefgh').member('readers', 'outsider');
    for (const g of ['readers', 'temp', 'lonely', 'theirs']) s.usage(g).grant(['a', 'b'], g, 'SELECT');
    return s.read();
  };
  const holder = (r: Reading, id: string) => r.rows.find((x) => x.holder.id === id)?.holder;

  test('a login role is its principal; a group role is managed without one; members get rows by membership', () => {
    const r = world();
    expect(holder(r, 'ana')).toEqual({ id: 'ana', kind: 'pg-role', name: 'ana', managed: true, principal: 'ana' });
    expect(holder(r, 'readers')).toEqual({ id: 'readers', kind: 'pg-role', name: 'readers', managed: true });
    expect(paths(r, 'ana', 'read')).toEqual(['member of role readers']);
  });

  test("a role's VALID UNTIL is when each of its paths ends", () => {
    const row = world().rows.find((x) => x.holder.id === 'ana')!;
    expect(row.paths.map((p) => p.expires)).toEqual(['2030-01-01T00:00:00.000Z']);
  });

  test("a session login only claims its principal (sessionOf), for the session log to confirm; the temporary principal's NOLOGIN role is the principal", () => {
    const r = world();
    expect(holder(r, 'temp~abcdefgh')).toEqual({ id: 'temp~abcdefgh', kind: 'pg-role', name: 'temp~abcdefgh', managed: true, sessionOf: 'temp' });
    expect(holder(r, 'temp')).toMatchObject({ managed: true, principal: 'temp' });
    expect(paths(r, 'temp~abcdefgh', 'read')).toEqual(['member of role temp']);
  });

  test('a marker forged by a role with CREATEROLE: without the installation id it is not ours; with it, a claim and no more', () => {
    const s = server()
      .role('ana', { comment: mark() })
      .role('mallory', { createRole: true })
      .role('forged', { comment: JSON.stringify({ datagrant: 'managed', kind: 'session', principal: 'ana' }) })
      .role('copied', { comment: mark({ kind: 'session', principal: 'ana' }) })
      // a login named as a session of ana's: its name claims ana too, but it is no member of ana's role
      .role('ana~zzzzzzzz', { comment: mark({ kind: 'session', principal: 'ana' }) })
      .role('readers', { login: false, comment: mark() })
      .member('readers', 'ana~zzzzzzzz');
    for (const g of ['forged', 'copied', 'ana~zzzzzzzz']) s.usage(g).grant(['a', 'b'], g, 'SELECT');
    const r = s.read();
    expect(holder(r, 'forged')).toEqual({ id: 'forged', kind: 'pg-role', name: 'forged', managed: false });
    expect(holder(r, 'copied')).toEqual({ id: 'copied', kind: 'pg-role', name: 'copied', managed: true, sessionOf: 'ana' });
    expect(holder(r, 'ana~zzzzzzzz')).toMatchObject({ managed: true, sessionOf: 'ana' });
    expect(holder(r, 'ana~zzzzzzzz')!.principal).toBeUndefined();
    // nor does a session-named member make a group role into a principal
    expect(holder(r, 'readers')?.principal).toBeUndefined();
    for (const h of ['forged', 'copied', 'ana~zzzzzzzz']) expect(r.usage.find((u) => u.holder === h)?.principal).toBeUndefined();
  });

  test("a marker without an installation id (an older version's) is not datagrant's, and limits name it", () => {
    const r = server()
      .role('old', { comment: JSON.stringify({ datagrant: 'managed', scope: 'sc' }) })
      .usage('old')
      .grant(['a', 'b'], 'old', 'SELECT')
      .read();
    expect(holder(r, 'old')).toEqual({ id: 'old', kind: 'pg-role', name: 'old', managed: false });
    expect(r.limits).toContain(
      "roles old: datagrant's marker without an installation id (made by a version before installations had ids, or written by hand); not counted as datagrant's until datagrant next changes them and writes its id",
    );
  });

  test("a NOLOGIN role of ours with no members or groups cannot be told apart: no principal, and limits say so; another installation's and a hand-made one are not managed", () => {
    const r = world();
    expect(holder(r, 'lonely')).toEqual({ id: 'lonely', kind: 'pg-role', name: 'lonely', managed: true });
    expect(r.limits.some((l) => l.startsWith('roles lonely: ') && l.includes('a group, or a temporary principal'))).toBe(true);
    expect(holder(r, 'theirs')).toMatchObject({ managed: false });
    expect(holder(r, 'outsider')).toEqual({ id: 'outsider', kind: 'pg-role', name: 'outsider', managed: false });
    expect(paths(r, 'outsider', 'read')).toEqual(['member of role readers']);
  });

  test('usage: one entry per managed login role, saying that PostgreSQL cannot tell', () => {
    expect(world().usage).toEqual([
      { backend: 'wh', holder: 'ana', principal: 'ana', credential: 'ana', unknown: NO_LOGIN_RECORD },
      { backend: 'wh', holder: 'temp~abcdefgh', credential: 'temp~abcdefgh', unknown: NO_LOGIN_RECORD },
    ]);
  });
});

describe("datagrant's own paths", () => {
  /** `via` → whether it is marked datagrant's, for `holder`'s row at `level`. */
  const marked = (r: Reading, holder: string, level: Level = 'read') =>
    Object.fromEntries(
      r.rows.find((x) => x.dataset === 'hr-data' && x.level === level && x.holder.id === holder)!.paths.map((p) => [p.via, p.managed === true]),
    );
  const world = () => {
    const s = server()
      .role('ana', { comment: mark() })
      .role('readers', { login: false, comment: mark() })
      .role('analysts', { login: false })
      .role('outsider')
      .member('readers', 'ana')
      .member('readers', 'outsider')
      .member('analysts', 'readers')
      .usage('readers')
      .usage('analysts')
      .usage(null)
      .grant(['a', 'b'], 'readers', 'SELECT')
      .grant(['a'], 'analysts', 'SELECT', 'INSERT')
      .grant(['b'], null, 'SELECT')
      .grant(['a'], 'ana', 'TRUNCATE');
    s.f.columns.push({ database: 'd', schema: 'hr', relation: 'b', column: 'x', grantee: 'ana', privilege: 'UPDATE' });
    s.f.defaults.push(
      { database: 'd', schema: 'hr', creator: 'tabo', grantee: 'ana', privilege: 'SELECT' },
      { database: 'd', schema: null, creator: 'tabo', grantee: 'ana', privilege: 'DELETE' },
    );
    return s.read();
  };

  test("a grant to datagrant's role and membership in its group are its own; membership in a role of anyone else's, through one of its roles or not, is not", () => {
    const r = world();
    expect(marked(r, 'ana')).toEqual({
      'member of role readers': true,
      'member of role analysts (through readers)': false,
      'default privileges: future tables created by tabo in hr': true,
    });
    expect(marked(r, 'readers')).toEqual({ 'GRANT SELECT ON ALL TABLES IN SCHEMA hr TO readers': true, 'member of role analysts': false });
    expect(marked(r, 'outsider')).toEqual({ 'member of role readers': false, 'member of role analysts (through readers)': false });
    expect(marked(r, 'PUBLIC')).toEqual({ 'GRANT SELECT ON hr.b TO PUBLIC': false });
  });

  test('column privileges and defaults for every schema are never datagrant’s', () => {
    const r = world();
    expect(marked(r, 'ana', 'write')).toEqual({
      'GRANT UPDATE (x) ON hr.b TO ana': false,
      'default privileges: future tables created by tabo in any schema': false,
      'member of role analysts (through readers)': false,
    });
    expect(marked(r, 'ana', 'admin')).toEqual({ 'GRANT TRUNCATE ON hr.a TO ana': true });
  });
});

describe('partitions and inheritance children', () => {
  /** `a` partitioned: hr.a_1 in the dataset's schema, archive.a_0 elsewhere; archive.kid inherits from b. */
  const parted = () => {
    const s = server().role('bob').role('eve').role('arch').usage('bob').usage('eve');
    const rel = (schema: string, name: string, of: string, partition: boolean): PgRelationFact => ({
      database: 'd',
      schema,
      name,
      relkind: 'r',
      partition,
      rowSecurity: false,
      owner: 'arch',
      acl: acl('arch', ...ALL),
      ancestors: [{ schema: 'hr', name: of }],
    });
    s.f.relations[0]!.relkind = 'p';
    s.f.relations.push(rel('hr', 'a_1', 'a', true), rel('archive', 'a_0', 'a', true), rel('archive', 'kid', 'b', false));
    s.f.schemas.push({ database: 'd', name: 'archive', owner: 'so', acl: [...acl('arch', 'USAGE'), ...acl('bob', 'USAGE')] });
    const on = (name: string, grantee: string, ...privileges: string[]) => s.f.relations.find((r) => r.name === name)!.acl.push(...acl(grantee, ...privileges));
    return { s, on };
  };

  test('a grant on a partition in the schema or elsewhere, or on an inheritance child, is partial access; a table list sees only its tables’', () => {
    const { s, on } = parted();
    on('a_1', 'bob', 'SELECT');
    on('a_0', 'bob', 'SELECT', 'DELETE');
    on('kid', 'bob', 'SELECT');
    const r = s.read(WHOLE, LISTED);
    expect(paths(r, 'bob', 'read')).toEqual([
      'GRANT SELECT ON archive.a_0 TO bob (a partition of hr.a) [partial]',
      'GRANT SELECT ON archive.kid TO bob (an inheritance child of hr.b) [partial]',
      'GRANT SELECT ON hr.a_1 TO bob (a partition of hr.a) [partial]',
    ]);
    expect(paths(r, 'bob', 'write')).toEqual(['GRANT DELETE ON archive.a_0 TO bob (a partition of hr.a) [partial]']);
    expect(paths(r, 'bob', 'read', 'hr-a')).toEqual([
      'GRANT SELECT ON archive.a_0 TO bob (a partition of hr.a) [partial]',
      'GRANT SELECT ON hr.a_1 TO bob (a partition of hr.a) [partial]',
    ]);
  });

  test("a partition's owner reaches its rows; without USAGE on the partition's schema a grant reaches no one", () => {
    const { s, on } = parted();
    on('a_0', 'eve', 'SELECT');
    const r = s.read();
    // (and of hr.a_1, which it would reach with USAGE on hr)
    expect(paths(r, 'arch', 'read')).toEqual([
      'owner of archive.a_0 (a partition of hr.a) [partial]',
      'owner of archive.kid (an inheritance child of hr.b) [partial]',
    ]);
    expect(paths(s.usage('arch').read(), 'arch', 'read')).toContain('owner of hr.a_1 (a partition of hr.a) [partial]');
    expect(levels(r, 'eve')).toEqual([]);
    expect(r.limits.find((l) => l.startsWith('dataset hr-data: privileges held by'))).toMatch(
      / eve[ ,].*or on the schema of a partition or child of its tables/,
    );
  });

  test('column privileges on a partition are partial, naming it', () => {
    const { s } = parted();
    s.f.columns.push({ database: 'd', schema: 'archive', relation: 'a_0', column: 'pay', grantee: 'bob', privilege: 'SELECT' });
    expect(paths(s.read(), 'bob', 'read')).toEqual(['GRANT SELECT (pay) ON archive.a_0 TO bob (a partition of hr.a) [partial]']);
  });
});

describe('ways around the tables’ privileges, named in limits', () => {
  test('views outside the dataset over its tables, directly or through other views', () => {
    const s = server();
    s.f.views = [
      { database: 'd', schema: 'reports', name: 'pay', owner: 'tabo', on: { schema: 'hr', name: 'a' } },
      { database: 'd', schema: 'reports', name: 'pay', owner: 'tabo', on: { schema: 'hr', name: 'b' } },
      { database: 'd', schema: 'reports', name: 'other', owner: 'tabo', on: { schema: 'sales', name: 'x' } },
    ];
    const r = s.read(WHOLE, LISTED);
    expect(r.limits).toContain(
      "dataset hr-data: views outside it read its tables: reports.pay (owner tabo, over hr.a, hr.b); who may read them reaches those rows with their owners' privileges, which this report does not show",
    );
    expect(r.limits).toContain(
      "dataset hr-a: views outside it read its tables: reports.pay (owner tabo, over hr.a); who may read them reaches those rows with their owners' privileges, which this report does not show",
    );
  });

  test('a view in the schema is a table of a whole-schema dataset, and outside a table list', () => {
    const s = server();
    s.f.relations.push({ database: 'd', schema: 'hr', name: 'v', relkind: 'v', partition: false, rowSecurity: false, owner: 'tabo', acl: [] });
    s.f.views = [{ database: 'd', schema: 'hr', name: 'v', owner: 'tabo', on: { schema: 'hr', name: 'a' } }];
    const r = s.read(WHOLE, LISTED);
    expect(r.limits.filter((l) => l.includes('views outside'))).toEqual([
      "dataset hr-a: views outside it read its tables: hr.v (owner tabo, over hr.a); who may read them reaches those rows with their owners' privileges, which this report does not show",
    ]);
  });

  test('SECURITY DEFINER functions whose source names a table; none, no line', () => {
    const s = server();
    expect(s.read().limits.filter((l) => l.includes('SECURITY DEFINER'))).toEqual([]);
    s.f.functions = [
      { database: 'd', schema: 'public', name: 'pay_of', args: 'who text', owner: 'tabo', body: 'SELECT amount FROM HR."a" WHERE who = $1' },
      { database: 'd', schema: 'public', name: 'unrelated', args: '', owner: 'tabo', body: 'SELECT abba FROM hr.bb' },
    ];
    expect(s.read().limits).toContain(
      "dataset hr-data: SECURITY DEFINER functions name its tables: public.pay_of(who text) (owner tabo, names hr.a); who may EXECUTE them (by default PUBLIC) runs them with their owners' privileges, which this report does not show",
    );
  });
});

describe('limits', () => {
  test('row-level security on a table of a dataset is named once', () => {
    const s = server();
    s.f.relations[1]!.rowSecurity = true;
    const r = s.read(WHOLE, { ...WHOLE, name: 'again' });
    expect(r.limits.filter((l) => l.startsWith('row-level security'))).toEqual([
      'row-level security is enabled on hr.b: its policies narrow the rows a holder reaches, which this report does not evaluate (it shows table privileges)',
    ]);
  });

  test('a missing database, schema or table is a failure of the reading, not a limit', () => {
    const r = server().read(
      { name: 'x', database: 'nope', schema: 'hr' },
      { name: 'y', database: 'd', schema: 'nope' },
      { name: 'z', database: 'd', schema: 'hr', tables: ['a', 'gone'] },
    );
    expect(r.limits.filter((l) => / (does not exist|not found)/.test(l))).toEqual([]);
    expect(r.failures).toEqual(
      expect.arrayContaining([
        'dataset x: database nope does not exist',
        'dataset y: schema nope does not exist in database d',
        'dataset z: hr.gone not found in database d',
      ]),
    );
  });

  test('CREATEROLE roles, which can make themselves members of others, are named', () => {
    const r = server().role('provisioner', { createRole: true }).read();
    expect(r.limits).toContain(
      "roles with CREATEROLE can make themselves members of any role but a superuser and so reach those roles' access, which is not shown as theirs: provisioner",
    );
  });
});

test('names that need quoting in SQL are quoted in the paths', () => {
  const s = server().role('Bob Smith').usage('Bob Smith');
  s.f.relations[0]!.name = 'Pay Roll';
  s.f.relations[0]!.acl.push(...acl('Bob Smith', 'SELECT'));
  expect(paths(s.read(), 'Bob Smith', 'read')).toEqual(['GRANT SELECT ON hr."Pay Roll" TO "Bob Smith" [partial]']);
});
