// Effective access on MariaDB, as pure logic, for what the real server cannot easily show: how a
// database pattern matches and ranks (the most specific matching grant is the one that counts),
// PROXY (it needs an authentication plugin that proxies), grants to holders that are not there,
// and the ways to any access named in limits. The rest is proved on a real server
// (test/e2e/mysql-effective-access.test.ts).
import { describe, expect, test } from 'vitest';
import {
  databasePatternMatches,
  databasePatternRank,
  effectiveAccess,
  type MysqlAccessFacts,
  type MysqlObjectFact,
} from '../../src/backends/mysql/effective.js';

const account = (user: string, o: Partial<MysqlObjectFact> = {}): MysqlObjectFact => ({
  user,
  host: '%',
  isRole: false,
  ours: false,
  locked: false,
  passwordExpired: false,
  defaultRole: null,
  global: [],
  ...o,
});

const facts = (f: Partial<MysqlAccessFacts>): MysqlAccessFacts => ({
  backend: 'db',
  objects: [],
  mappings: [],
  databaseRows: [],
  tableRows: [],
  columnRows: [],
  proxies: [],
  databases: { ana_x: ['t'] },
  ...f,
});
const DS = [{ name: 'ana', database: 'ana_x' }];

describe('database patterns', () => {
  test('_ is one character, % any, a backslash makes either literal', () => {
    expect(databasePatternMatches('ana_x', 'ana_x')).toBe(true);
    expect(databasePatternMatches('ana_x', 'anaYx')).toBe(true);
    expect(databasePatternMatches('ana\\_x', 'anaYx')).toBe(false);
    expect(databasePatternMatches('ana\\_x', 'ana_x')).toBe(true);
    expect(databasePatternMatches('an%', 'ana_x')).toBe(true);
    expect(databasePatternMatches('an\\%', 'ana_x')).toBe(false);
    expect(databasePatternMatches('a.a%', 'ana_x')).toBe(false);
  });

  test('an exact name ranks first, then the later the first wildcard the higher', () => {
    expect(databasePatternRank('ana\\_x')).toBeGreaterThan(databasePatternRank('ana\\_%'));
    expect(databasePatternRank('ana\\_%')).toBeGreaterThan(databasePatternRank('ana%'));
    expect(databasePatternRank('ana%')).toBeGreaterThan(databasePatternRank('%'));
  });
});

describe('effective access from grant-table facts', () => {
  test("PROXY gives the proxied account's access, only through a plugin that proxies; proxying anyone is a limit", () => {
    const r = effectiveAccess(
      facts({
        objects: [account('bob'), account('px'), account('root', { host: 'localhost' })],
        databaseRows: [{ user: 'bob', host: '%', db: 'ana\\_x', privileges: ['SELECT', 'INSERT'] }],
        proxies: [
          { user: 'px', host: '%', proxiedUser: 'bob', proxiedHost: '%' },
          { user: 'root', host: 'localhost', proxiedUser: '', proxiedHost: '' },
        ],
      }),
      DS,
    );
    const px = r.rows.filter((x) => x.holder.id === `'px'@'%'`);
    expect(px.map((x) => x.level)).toEqual(['read', 'write']);
    expect(px[1]!.paths).toEqual([
      { via: `PROXY ON 'bob'@'%'`, conditions: ['it logs in through an authentication plugin that proxies (PAM, GSSAPI with a mapping)'] },
    ]);
    expect(r.limits.join('\n')).toContain(
      `accounts that may proxy any account (PROXY ON ''@'%'), through an authentication plugin that proxies, reach what that account reaches, which is not shown as theirs: 'root'@'localhost'`,
    );
  });

  test('a privilege outside every level reaches nothing; GRANT OPTION is admin', () => {
    const r = effectiveAccess(
      facts({
        objects: [account('ex'), account('go')],
        databaseRows: [
          { user: 'ex', host: '%', db: 'ana\\_x', privileges: ['EXECUTE', 'LOCK TABLES'] },
          { user: 'go', host: '%', db: 'ana\\_x', privileges: ['GRANT OPTION'] },
        ],
      }),
      DS,
    );
    expect(r.rows.map((x) => `${x.holder.id} ${x.level}`)).toEqual([`'go'@'%' admin`]);
  });

  test('SUPER or SET USER, and writing the grant tables, are named as ways to any access', () => {
    const r = effectiveAccess(
      facts({
        objects: [account('su', { global: ['SUPER'] }), account('gw'), account('plain')],
        databaseRows: [{ user: 'gw', host: '%', db: 'mysql', privileges: ['UPDATE'] }],
      }),
      DS,
    );
    expect(r.limits).toEqual([
      `accounts with SUPER or SET USER can create views and routines that run as any account (DEFINER), and so reach what any account reaches, which is not shown as theirs: 'su'@'%'`,
      `who may change the grant tables (INSERT or UPDATE on database mysql) can give themselves any access, which is not shown as theirs: 'gw'@'%'`,
    ]);
  });

  test("datagrant's account with a default role not its own, or a hand-added role, is not datagrant's path", () => {
    const role = (user: string, ours = true): MysqlObjectFact => account(user, { host: '', isRole: true, ours });
    const r = effectiveAccess(
      facts({
        objects: [account('ana', { ours: true, defaultRole: 'grp' }), role('grp'), role('ana'), role('hand', false)],
        mappings: [
          { user: 'ana', host: '%', role: 'grp' },
          { user: 'ana', host: '%', role: 'ana' },
          { user: 'grp', host: '', role: 'hand' },
        ],
        databaseRows: [
          { user: 'grp', host: '', db: 'ana\\_x', privileges: ['SELECT'] },
          { user: 'ana', host: '', db: 'ana\\_x', privileges: ['SELECT'] },
          { user: 'hand', host: '', db: 'ana\\_x', privileges: ['INSERT'] },
        ],
      }),
      DS,
    );
    const paths = (level: string) => r.rows.find((x) => x.holder.id === `'ana'@'%'` && x.level === level)!.paths;
    expect(paths('read')).toEqual([{ via: 'can SET ROLE `ana`' }, { via: 'default role `grp`' }]);
    expect(paths('write')).toEqual([{ via: 'default role `grp`, which holds role `hand`' }]);
    expect(r.rows.find((x) => x.holder.id === 'grp' && x.level === 'write')!.paths).toEqual([{ via: 'holds role `hand`' }]);
    expect(r.rows.find((x) => x.holder.id === 'grp' && x.level === 'read')!.paths).toEqual([{ via: 'GRANT SELECT ON `ana\\_x`.* TO `grp`', managed: true }]);
  });
});
