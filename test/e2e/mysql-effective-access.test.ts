// Issue 13 on a real MariaDB: effective access read from the grant tables through the normal driver
// factory. After datagrant applies a spec, its principals' rows hold its own paths only; then
// accounts made by hand, each with one kind of path — a global privilege, a database grant, a
// pattern, a pattern shadowed by a more specific grant, a table and a column grant, a default role
// holding a role, a role only SET ROLE reaches, PUBLIC, an anonymous account, a locked account —
// are each reported with the right level and partial flag, and each reported access is
// real (logging in as the account does it) while what is not reported is refused. A query the
// server refuses is a failure, never a gap; `datagrant access` sets it all beside the spec.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { closeBackends, makeBackends } from '../../src/backends/factory.js';
import { createMysqlBackend } from '../../src/backends/mysql/driver.js';
import { NO_LOGIN_RECORD } from '../../src/backends/mysql/effective.js';
import type { Level } from '../../src/core/types.js';
import type { AccessReading, AccessReport } from '../../src/model/access.js';
import { parseSpec } from '../../src/spec/load.js';
import { openStore, statePaths } from '../../src/store/open.js';
import type { Workspace } from '../support/cli.js';
import { expectDenied, expectLoginRefused, mysqlAdmin, mysqlConnectAs, mysqlFixture, mysqlQueryAs, mysqlUrlFor } from '../support/mysql.js';
import { apply, initWorkspace } from './aws-support.js';

const fx = mysqlFixture('myeff');
const readers = fx.name('readers');
const ana = fx.name('ana');
const wes = fx.name('wes');
const login = (label: string) => ({ name: fx.name(label), password: `${label}-${fx.run}` });
const acct = (u: { name: string }) => `'${u.name}'@'%'`;
/** Accounts made by hand, one kind of path each. */
const glob = login('glob');
const dbw = login('dbw');
const pat = login('pat');
const shadow = login('shadow');
const tbl = login('tbl');
const col = login('col');
const defr = login('defr');
const setr = login('setr');
const locked = login('locked');
const merged = login('merged');
const nobody = login('nobody');
const base = fx.name('r_base');
const mid = fx.name('r_mid');
const adm = fx.name('r_adm');
const rex = fx.name('r_ex');
const rpat = fx.name('r_pat');
/** The anonymous account ''@'%' answers any name without an account of its own. */
const anon = { name: fx.name('anyone'), password: `anon-${fx.run}` };
let d: string;
let pub: string;
let anondb: string;
let other: string;
let ws: Workspace;
let backends: Record<string, Backend>;
let backend: Backend;

const spec = () => `version: 1
backends:
  db: { type: mysql, url: "\${DB_URL}", scope: ${fx.run} }
datasets:
  d: { backend: db, database: ${d} }
  d-t1: { backend: db, database: ${d}, tables: [t1] }
  pub: { backend: db, database: ${pub} }
  anon: { backend: db, database: ${anondb} }
groups:
  ${readers}: { grants: [{ dataset: d, access: read }] }
principals:
  ${ana}: { type: person, email: ana@example.com, groups: [${readers}] }
  ${wes}: { type: service, grants: [{ dataset: d-t1, access: write }] }
`;

beforeAll(async () => {
  d = await fx.database('d');
  pub = await fx.database('pub');
  anondb = await fx.database('anon');
  other = await fx.database('other');
  await mysqlAdmin(
    `CREATE TABLE \`${d}\`.t1 (id int, secret int); CREATE TABLE \`${d}\`.t2 (id int);
     CREATE TABLE \`${pub}\`.p (id int); CREATE TABLE \`${anondb}\`.a (id int); CREATE TABLE \`${other}\`.o (id int)`,
  );
  ws = await initWorkspace(spec());
  ws.env.DB_URL = mysqlUrlFor();
  await apply(ws);
  const store = await openStore(statePaths(join(ws.dir, '.datagrant')), ws.env);
  const installation = await store.installation();
  await store.close();
  const { spec: parsed } = parseSpec(spec(), { file: 'datagrant.yaml', env: ws.env, now: new Date() });
  backends = makeBackends(parsed, { installation });
  backend = backends.db!;
});
afterAll(async () => {
  await closeBackends(backends ?? {});
  await mysqlAdmin(`DROP USER IF EXISTS ''@'%'`).catch(() => undefined);
  await mysqlAdmin(`REVOKE ALL PRIVILEGES ON \`${exact(pub)}\`.* FROM PUBLIC`).catch(() => undefined);
  ws?.cleanup();
  await fx.cleanup();
});

const DATASETS = () => [
  { name: 'd', database: d },
  { name: 'd-t1', database: d, tables: ['t1'] },
  { name: 'pub', database: pub },
  { name: 'anon', database: anondb },
];
const read = () => backend.readAccess!({ datasets: DATASETS() });
const row = (r: AccessReading, dataset: string, level: Level, holder: string) =>
  r.rows.find((x) => x.dataset === dataset && x.level === level && x.holder.id === holder);
const vias = (r: AccessReading, dataset: string, level: Level, holder: string) =>
  row(r, dataset, level, holder)?.paths.map((p) => `${p.via}${p.partial ? ' [partial]' : ''}${p.managed ? ' [managed]' : ''}`);
const levels = (r: AccessReading, dataset: string, holder: string) => r.rows.filter((x) => x.dataset === dataset && x.holder.id === holder).map((x) => x.level);
/** A database in `GRANT … ON db.*` as its exact name: `_` is a wildcard there unless escaped. */
const exact = (db: string) => db.replace(/_/g, '\\_');
const ok = (u: { name: string; password: string }, sql: string) => mysqlQueryAs(u, sql);

describe('effective access on MariaDB', () => {
  test("right after apply: datagrant's principals hold the spec's levels, through its own paths only", async () => {
    const r = await read();
    expect(r.failures).toEqual([]);
    const a = `'${ana}'@'%'`;
    const w = `'${wes}'@'%'`;
    expect(levels(r, 'd', a)).toEqual(['read']);
    expect(vias(r, 'd', 'read', a)).toEqual([`default role \`${ana}\`, which holds role \`${readers}\` [managed]`]);
    expect(row(r, 'd', 'read', a)!.holder).toEqual({ id: a, kind: 'mysql-account', name: `${ana}@%`, managed: true, principal: ana });
    // wes writes t1 only: the whole database is partial, the dataset of t1 is not
    expect(levels(r, 'd-t1', w)).toEqual(['read', 'write']);
    expect(vias(r, 'd-t1', 'write', w)).toEqual([`default role \`${wes}\` [managed]`]);
    expect(vias(r, 'd', 'write', w)).toEqual([`default role \`${wes}\` [partial] [managed]`]);
    // the roles are holders too, datagrant's, with their grants as paths
    expect(row(r, 'd', 'read', readers)!.holder).toEqual({ id: readers, kind: 'mysql-role', name: readers, managed: true });
    expect(vias(r, 'd', 'read', readers)).toEqual([`GRANT SELECT ON \`${exact(d)}\`.* TO \`${readers}\` [managed]`]);
    expect(vias(r, 'd', 'read', ana)).toEqual([`holds role \`${readers}\` [managed]`]);
    // the admin datagrant connects as reaches everything through its global privileges
    expect(vias(r, 'd', 'admin', `'datagrant_admin'@'127.0.0.1'`)![0]).toMatch(/^GRANT .*DROP.* ON \*\.\* TO 'datagrant_admin'@'127.0.0.1'$/);
    expect(r.rows.filter((x) => !x.holder.managed && x.holder.id.includes(fx.run))).toEqual([]);
    for (const p of [a, w]) expect(r.usage).toContainEqual(expect.objectContaining({ holder: p, unknown: NO_LOGIN_RECORD }));
    expect(r.requests).toBe(1);
  });

  test('access made by hand is reported with its path, level and partial flag, and is real', async () => {
    const pattern = `${exact(d).slice(0, -1)}%`;
    await mysqlAdmin(
      [
        ...[glob, dbw, pat, shadow, tbl, col, defr, setr, locked, merged, nobody].map((u) => `CREATE USER ${acct(u)} IDENTIFIED BY '${u.password}'`),
        `CREATE USER ''@'%' IDENTIFIED BY '${anon.password}'`,
        `ALTER USER ${acct(locked)} ACCOUNT LOCK`,
        `GRANT SELECT ON *.* TO ${acct(glob)}`,
        `GRANT SELECT, INSERT ON \`${exact(d)}\`.* TO ${acct(dbw)}`,
        `GRANT SELECT ON \`${pattern}\`.* TO ${acct(pat)}`,
        `GRANT SELECT ON \`${exact(d)}\`.* TO ${acct(shadow)}`,
        `GRANT INSERT ON \`${pattern}\`.* TO ${acct(shadow)}`,
        `GRANT SELECT ON \`${d}\`.t1 TO ${acct(tbl)}`,
        `GRANT SELECT (id) ON \`${d}\`.t1 TO ${acct(col)}`,
        `CREATE ROLE \`${base}\``,
        `CREATE ROLE \`${mid}\``,
        `CREATE ROLE \`${adm}\``,
        `GRANT SELECT ON \`${exact(d)}\`.* TO \`${base}\``,
        `GRANT \`${base}\` TO \`${mid}\``,
        `GRANT \`${mid}\` TO ${acct(defr)}`,
        `SET DEFAULT ROLE \`${mid}\` FOR ${acct(defr)}`,
        `GRANT ALL PRIVILEGES ON \`${exact(d)}\`.* TO \`${adm}\``,
        `GRANT \`${adm}\` TO ${acct(setr)}`,
        `GRANT SELECT ON \`${exact(d)}\`.* TO ${acct(locked)}`,
        `CREATE ROLE \`${rex}\``,
        `CREATE ROLE \`${rpat}\``,
        `GRANT SELECT ON \`${exact(d)}\`.* TO \`${rex}\``,
        `GRANT INSERT ON \`${pattern}\`.* TO \`${rpat}\``,
        `GRANT \`${rpat}\` TO \`${rex}\``,
        `GRANT \`${rex}\` TO ${acct(merged)}`,
        `GRANT \`${rpat}\` TO ${acct(merged)}`,
        `SET DEFAULT ROLE \`${rex}\` FOR ${acct(merged)}`,
        `GRANT SELECT ON \`${exact(pub)}\`.* TO PUBLIC`,
        `GRANT SELECT ON \`${exact(anondb)}\`.* TO ''@'%'`,
        `GRANT SELECT ON \`${exact(other)}\`.* TO ${acct(nobody)}`,
      ].join(';\n'),
    );
    const r = await read();
    expect(r.failures).toEqual([]);

    // a global privilege: every database, all of it
    expect(levels(r, 'd', acct(glob))).toEqual(['read']);
    expect(vias(r, 'd', 'read', acct(glob))).toEqual([`GRANT SELECT ON *.* TO ${acct(glob)}`]);
    await ok(glob, `SELECT * FROM \`${d}\`.t2`);
    await expectDenied(glob, `INSERT INTO \`${d}\`.t2 VALUES (1)`);

    // a database grant: read and write, not admin, and not managed although on the same database
    expect(levels(r, 'd', acct(dbw))).toEqual(['read', 'write']);
    expect(vias(r, 'd', 'write', acct(dbw))).toEqual([`GRANT INSERT ON \`${exact(d)}\`.* TO ${acct(dbw)}`]);
    expect(row(r, 'd', 'write', acct(dbw))!.holder).toEqual({ id: acct(dbw), kind: 'mysql-account', name: `${dbw.name}@%`, managed: false });
    await ok(dbw, `INSERT INTO \`${d}\`.t2 VALUES (1)`);
    await expectDenied(dbw, `DROP TABLE \`${d}\`.t2`);

    // a pattern that matches the database is access
    expect(vias(r, 'd', 'read', acct(pat))).toEqual([`GRANT SELECT ON \`${pattern}\`.* TO ${acct(pat)} (a pattern matching ${d})`]);
    await ok(pat, `SELECT * FROM \`${d}\`.t1`);

    // … unless a more specific grant of the same account matches too: only that one counts
    expect(levels(r, 'd', acct(shadow))).toEqual(['read']);
    expect(r.limits.join('\n')).toContain(`GRANT … ON \`${pattern}\`.* TO ${acct(shadow)}`);
    await ok(shadow, `SELECT * FROM \`${d}\`.t1`);
    await expectDenied(shadow, `INSERT INTO \`${d}\`.t1 VALUES (1, 1)`);

    // a table grant: part of the database, all of the dataset of that table
    expect(vias(r, 'd', 'read', acct(tbl))).toEqual([`GRANT SELECT ON \`${d}\`.\`t1\` TO ${acct(tbl)} [partial]`]);
    expect(vias(r, 'd-t1', 'read', acct(tbl))).toEqual([`GRANT SELECT ON \`${d}\`.\`t1\` TO ${acct(tbl)}`]);
    await ok(tbl, `SELECT * FROM \`${d}\`.t1`);
    await expectDenied(tbl, `SELECT * FROM \`${d}\`.t2`);

    // a column grant: partial everywhere
    expect(vias(r, 'd-t1', 'read', acct(col))).toEqual([`GRANT SELECT (\`id\`) ON \`${d}\`.\`t1\` TO ${acct(col)} [partial]`]);
    await ok(col, `SELECT id FROM \`${d}\`.t1`);
    await expectDenied(col, `SELECT secret FROM \`${d}\`.t1`);

    // a default role, and the role it holds
    expect(levels(r, 'd', acct(defr))).toEqual(['read']);
    expect(vias(r, 'd', 'read', acct(defr))).toEqual([`default role \`${mid}\`, which holds role \`${base}\``]);
    expect(vias(r, 'd', 'read', mid)).toEqual([`holds role \`${base}\``]);
    await ok(defr, `SELECT * FROM \`${d}\`.t2`);

    // a role granted but not the default: reached by SET ROLE, at every level its grant gives
    expect(levels(r, 'd', acct(setr))).toEqual(['read', 'write', 'admin']);
    expect(vias(r, 'd', 'admin', acct(setr))).toEqual([`can SET ROLE \`${adm}\``]);
    await expectDenied(setr, `SELECT * FROM \`${d}\`.t2`);
    const c = await mysqlConnectAs(setr);
    try {
      for (const sql of [`SET ROLE \`${adm}\``, `CREATE TABLE \`${d}\`.made_by_setr (id int)`, `DROP TABLE \`${d}\`.made_by_setr`]) await c.query(sql);
    } finally {
      await c.end();
    }

    // a role with the roles it holds is one lookup: the pattern its held role has is shadowed by
    // its own exact grant; set on its own, the held role's pattern counts
    expect(vias(r, 'd', 'read', acct(merged))).toEqual([`default role \`${rex}\``]);
    expect(vias(r, 'd', 'write', acct(merged))).toEqual([`can SET ROLE \`${rpat}\``]);
    expect(levels(r, 'd', rex)).toEqual(['read']);
    expect(levels(r, 'd', rpat)).toEqual(['write']);
    await expectDenied(merged, `INSERT INTO \`${d}\`.t2 VALUES (1)`);
    const m = await mysqlConnectAs(merged);
    try {
      for (const sql of [`SET ROLE \`${rpat}\``, `INSERT INTO \`${d}\`.t2 VALUES (1)`]) await m.query(sql);
    } finally {
      await m.end();
    }

    // PUBLIC: its own row, not repeated in every account's; real for an account with no grant at all
    expect(vias(r, 'pub', 'read', 'PUBLIC')).toEqual([`GRANT SELECT ON \`${exact(pub)}\`.* TO PUBLIC`]);
    expect(row(r, 'pub', 'read', 'PUBLIC')!.holder).toEqual({ id: 'PUBLIC', kind: 'mysql-public', name: 'PUBLIC', managed: false });
    expect(row(r, 'pub', 'read', acct(nobody))).toBeUndefined();
    await ok(nobody, `SELECT * FROM \`${pub}\`.p`);

    // the anonymous account: anyone who logs in under a name that has no account
    expect(row(r, 'anon', 'read', `''@'%'`)!.holder).toEqual({ id: `''@'%'`, kind: 'mysql-anonymous', name: `''@%`, managed: false });
    await ok(anon, `SELECT * FROM \`${anondb}\`.a`);

    // a locked account: its access holds only once it is unlocked, and says so
    expect(row(r, 'd', 'read', acct(locked))!.paths[0]!.conditions).toEqual([
      'the account is locked (ACCOUNT LOCK): nobody logs in as it until it is unlocked',
    ]);
    await expectLoginRefused(locked);

    // an account with access elsewhere only is not reported here, and has none
    expect(r.rows.filter((x) => x.holder.id === acct(nobody))).toEqual([]);
    await expectDenied(nobody, `SELECT * FROM \`${d}\`.t1`);

    // a grant by hand to datagrant's account is another way in, not datagrant's
    await mysqlAdmin(`GRANT SELECT ON \`${d}\`.t2 TO '${ana}'@'%'`);
    const after = await read();
    expect(vias(after, 'd', 'read', `'${ana}'@'%'`)).toEqual([
      `GRANT SELECT ON \`${d}\`.\`t2\` TO '${ana}'@'%' [partial]`,
      `default role \`${ana}\`, which holds role \`${readers}\` [managed]`,
    ]);
    await mysqlAdmin(`REVOKE SELECT ON \`${d}\`.t2 FROM '${ana}'@'%'`);
  });

  test('a grant table the reader may not read is a failure, never a silent gap; a missing database too', async () => {
    const limited = login('limited');
    await mysqlAdmin(
      [
        `CREATE USER ${acct(limited)} IDENTIFIED BY '${limited.password}'`,
        ...['global_priv', 'roles_mapping', 'db', 'columns_priv', 'proxies_priv'].map((t) => `GRANT SELECT ON mysql.${t} TO ${acct(limited)}`),
        // information_schema shows it the databases it has a privilege on
        ...[d, pub, anondb].map((x) => `GRANT SELECT ON \`${exact(x)}\`.* TO ${acct(limited)}`),
      ].join(';\n'),
    );
    const b = createMysqlBackend({ name: 'db', url: mysqlUrlFor(limited), scope: fx.run });
    try {
      const r = await b.readAccess!({ datasets: [...DATASETS(), { name: 'gone', database: fx.name('gone') }] });
      expect(r.failures).toEqual([
        expect.stringMatching(/^table grants \(mysql\.tables_priv\) could not be read: access they give is not reported \(.*denied/),
        `dataset gone: database ${fx.name('gone')} does not exist (or the account datagrant connects as has no privilege on it, which hides it)`,
      ]);
      // what the other queries found is still reported
      expect(levels(r, 'd', acct(dbw))).toEqual(['read', 'write']);
    } finally {
      await b.close();
    }
  });
});

describe('datagrant access with a MariaDB backend', () => {
  test('rows both, actual only and intended only, and nothing incomplete', async () => {
    // GIVEN wes's grant taken away by hand, and a hand-made account reading the database
    await mysqlAdmin(`REVOKE INSERT, UPDATE, DELETE ON \`${d}\`.t1 FROM \`${wes}\``);
    const r = await ws.run('access', '--format', 'json', '--dataset', 'd');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as AccessReport;
    expect(report.incomplete).toEqual([]);
    const line = (who: string, level: Level) => report.rows.find((x) => x.who === who && x.level === level && x.dataset === 'd');
    expect(line(ana, 'read')).toMatchObject({ status: 'both', managed: true, principal: ana });
    expect(line(ana, 'read')!.actual).toEqual([{ via: `default role \`${ana}\`, which holds role \`${readers}\``, managed: true }]);
    expect(line(dbw.name + '@%', 'write')).toMatchObject({ status: 'actual', managed: false });
    // datagrant's own roles are not rows of their own: their principals' rows name them
    expect(report.rows.filter((x) => x.who === readers || (x.holder?.kind === 'mysql-role' && x.holder.managed))).toEqual([]);
    const w = await ws.run('access', '--format', 'json', '--dataset', 'd-t1');
    const wr = JSON.parse(w.stdout) as AccessReport;
    expect(wr.rows.find((x) => x.who === wes && x.level === 'write')).toMatchObject({ status: 'intended', actual: [] });
    expect(wr.rows.find((x) => x.who === wes && x.level === 'read')).toMatchObject({ status: 'both' });
    const table = await ws.run('access');
    expect(table.stdout).not.toMatch(/INCOMPLETE|cannot report effective access/);
  });
});
