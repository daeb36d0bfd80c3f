// Effective access on PostgreSQL, as pure logic: catalog facts → who reaches a dataset, at which
// level, through what. Each way in (GRANT, PUBLIC, membership, SET ROLE, ownership, superuser,
// default and column privileges) and each way a privilege stays unusable is one case.
import { describe, expect, test } from 'vitest';
import type { Level } from '../../src/core/types.js';
import { parseComment } from '../../src/backends/postgres/catalog.js';
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
const marker = (c: string | null) => parseComment(c, 'sc', 'inst');
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
      return effectiveAccess(f, datasets.length ? datasets : [WHOLE], marker);
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

  test("a session login is its principal's; the temporary principal's NOLOGIN role is the principal", () => {
    const r = world();
    expect(holder(r, 'temp~abcdefgh')).toMatchObject({ managed: true, principal: 'temp' });
    expect(holder(r, 'temp')).toMatchObject({ managed: true, principal: 'temp' });
    expect(paths(r, 'temp~abcdefgh', 'read')).toEqual(['member of role temp']);
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
      { backend: 'wh', holder: 'temp~abcdefgh', principal: 'temp', credential: 'temp~abcdefgh', unknown: NO_LOGIN_RECORD },
    ]);
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

  test('a missing database, schema or table is named', () => {
    const r = server().read(
      { name: 'x', database: 'nope', schema: 'hr' },
      { name: 'y', database: 'd', schema: 'nope' },
      { name: 'z', database: 'd', schema: 'hr', tables: ['a', 'gone'] },
    );
    expect(r.limits).toEqual(
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
