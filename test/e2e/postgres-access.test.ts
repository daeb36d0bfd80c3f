// Issue 13 on a real PostgreSQL: effective access read from the catalogs through the normal driver
// factory. After datagrant applies a spec, access made by hand — a GRANT to an unmanaged role,
// GRANT … TO PUBLIC, an unmanaged member of a managed group (inherited), a NOINHERIT member (SET
// ROLE), default privileges on future tables — each appears as unmanaged access with its path, and
// a grant on another schema does not; where cheap, logging in as the role proves the access real.
// Then what goes around the tables: grants on their partitions and inheritance children (in any
// schema) are partial access, views elsewhere and SECURITY DEFINER functions are named in limits;
// a session marker forged by a CREATEROLE role is only a claim (sessionOf), one without the
// installation's id is not datagrant's, and datagrant's own paths are marked so.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { NO_LOGIN_RECORD } from '../../src/backends/postgres/effective.js';
import { closeBackends, makeBackends } from '../../src/backends/factory.js';
import type { Level } from '../../src/core/types.js';
import type { AccessDataset, AccessReading } from '../../src/model/access.js';
import { parseSpec } from '../../src/spec/load.js';
import { openStore, statePaths } from '../../src/store/open.js';
import type { Workspace } from '../support/cli.js';
import { adminQuery, connectAs, expectPermissionDenied, pgFixture, queryAs, urlFor } from '../support/pg.js';
import { apply, initWorkspace } from './aws-support.js';

const fx = pgFixture('pgaccess');
const n = (label: string) => fx.role(fx.name(label));
const readers = n('readers');
const ana = n('ana');
const wes = n('wes');
/** Unmanaged roles, made by hand; each with a password, to prove what it is shown to have. */
const direct = { name: n('direct'), password: `direct-${fx.run}` };
const member = { name: n('member'), password: `member-${fx.run}` };
const noinherit = { name: n('noinherit'), password: `noinherit-${fx.run}` };
const nobody = { name: n('nobody'), password: `nobody-${fx.run}` };
const creator = { name: n('creator'), password: `creator-${fx.run}` };
const future = { name: n('future'), password: `future-${fx.run}` };
const columns = { name: n('columns'), password: `columns-${fx.run}` };
const handGroup = n('handgroup');
const other = n('other');
const partReader = { name: n('partreader'), password: `partreader-${fx.run}` };
const viewer = { name: n('viewer'), password: `viewer-${fx.run}` };
const forger = { name: n('forger'), password: `forger-${fx.run}` };
const forged = { name: fx.role(`${ana}~forgedzz`), password: `forged-${fx.run}` };
const oldStyle = n('oldstyle');

let db: string;
let ws: Workspace;
let backend: Backend;
let backends: Record<string, Backend>;
const DATASETS = (): AccessDataset[] => [
  { name: 'hr', database: db, schema: 'hr' },
  { name: 'hr-salaries', database: db, schema: 'hr', tables: ['salaries'] },
];

beforeAll(async () => {
  db = await fx.database('wh');
  await adminQuery(
    db,
    `CREATE SCHEMA hr; CREATE TABLE hr.salaries (who text, amount int); CREATE TABLE hr.notes (note text);
     INSERT INTO hr.salaries VALUES ('ana', 1); INSERT INTO hr.notes VALUES ('hello');
     CREATE SCHEMA other; CREATE TABLE other.t (id int);`,
  );
  const text = `version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run} }
datasets:
  hr: { backend: wh, database: ${db}, schema: hr }
  hr-salaries: { backend: wh, database: ${db}, schema: hr, tables: [salaries] }
groups:
  ${readers}: { grants: [{ dataset: hr, access: read }] }
principals:
  ${ana}: { type: person, groups: [${readers}] }
  ${wes}: { type: service, grants: [{ dataset: hr, access: write }] }
`;
  ws = await initWorkspace(text);
  ws.env.WH_URL = urlFor(db);
  await apply(ws);

  // The driver as every command makes it: the spec's backend, this state's installation.
  const store = await openStore(statePaths(join(ws.dir, '.datagrant')), ws.env);
  const installation = await store.installation();
  await store.close();
  const { spec } = parseSpec(text, { file: 'datagrant.yaml', env: ws.env, now: new Date() });
  backends = makeBackends(spec, { installation });
  backend = backends.wh!;
});
afterAll(async () => {
  await closeBackends(backends ?? {});
  ws?.cleanup();
  await fx.cleanup();
});

const read = () => backend.readAccess!({ datasets: DATASETS() });
const row = (r: AccessReading, dataset: string, level: Level, holder: string) =>
  r.rows.find((x) => x.dataset === dataset && x.level === level && x.holder.id === holder);
const vias = (r: AccessReading, dataset: string, level: Level, holder: string) =>
  row(r, dataset, level, holder)?.paths.map((p) => `${p.via}${p.partial ? ' [partial]' : ''}`);
const levels = (r: AccessReading, dataset: string, holder: string) => r.rows.filter((x) => x.dataset === dataset && x.holder.id === holder).map((x) => x.level);

describe('effective access on PostgreSQL', () => {
  let before: AccessReading;

  test("right after apply: datagrant's principals hold exactly the spec's levels, through the spec's paths", async () => {
    before = await read();
    // ana reads through the group; the group is managed but no principal; wes writes directly
    expect(levels(before, 'hr', ana)).toEqual(['read']);
    expect(vias(before, 'hr', 'read', ana)).toEqual([`member of role ${readers}`]);
    expect(row(before, 'hr', 'read', ana)!.holder).toEqual({ id: ana, kind: 'pg-role', name: ana, managed: true, principal: ana });
    expect(levels(before, 'hr', readers)).toEqual(['read']);
    expect(row(before, 'hr', 'read', readers)!.holder).toEqual({ id: readers, kind: 'pg-role', name: readers, managed: true });
    expect(levels(before, 'hr', wes)).toEqual(['read', 'write']);
    expect(vias(before, 'hr', 'write', wes)).toContain(`GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA hr TO ${wes}`);
    expect(row(before, 'hr', 'write', wes)!.holder).toMatchObject({ managed: true, principal: wes });
    // and every path of theirs is datagrant's own
    for (const who of [ana, wes, readers])
      for (const r of before.rows.filter((x) => x.holder.id === who)) expect(r.paths.every((p) => p.managed === true)).toBe(true);
    expect(before.failures).toEqual([]);
    // the spec grants nothing on hr-salaries, but its table is in hr: the same access reaches it
    expect(vias(before, 'hr-salaries', 'read', ana)).toEqual([`member of role ${readers}`]);
    // the superuser datagrant connects as is there too, and nothing of this test's is unmanaged yet
    expect(vias(before, 'hr', 'admin', 'datagrant_admin')).toContain('superuser');
    expect(before.rows.filter((x) => !x.holder.managed && x.holder.id.startsWith(fx.run))).toEqual([]);
    // PostgreSQL keeps no login record: said so for each of datagrant's login roles
    for (const p of [ana, wes])
      expect(before.usage).toContainEqual({ backend: 'wh', holder: p, principal: p, credential: p, createdAt: expect.any(String), unknown: NO_LOGIN_RECORD });
    expect(before.usage.map((u) => u.holder)).not.toContain(readers);
  });

  test('access made by hand appears as unmanaged, each with its path, and is real', async () => {
    // GIVEN grants made by hand, beside datagrant's
    const login = (u: { name: string; password: string }, extra = '') => `CREATE ROLE "${u.name}" LOGIN ${extra} PASSWORD '${u.password}'`;
    await adminQuery(
      'postgres',
      [
        login(direct),
        login(member),
        login(noinherit, 'NOINHERIT'),
        login(nobody),
        login(creator),
        login(future),
        login(columns),
        `CREATE ROLE "${handGroup}" NOLOGIN`,
        `CREATE ROLE "${other}" LOGIN`,
        `GRANT "${readers}" TO "${member.name}"`,
        `GRANT "${handGroup}" TO "${noinherit.name}"`,
      ].join('; '),
    );
    await adminQuery(
      db,
      [
        `GRANT SELECT ON hr.salaries TO "${direct.name}"`,
        `GRANT USAGE ON SCHEMA hr TO PUBLIC`,
        `GRANT SELECT ON hr.notes TO PUBLIC`,
        `GRANT SELECT ON ALL TABLES IN SCHEMA hr TO "${handGroup}"`,
        `GRANT CREATE ON SCHEMA hr TO "${creator.name}"`,
        `ALTER DEFAULT PRIVILEGES FOR ROLE "${creator.name}" IN SCHEMA hr GRANT SELECT ON TABLES TO "${future.name}"`,
        `ALTER DEFAULT PRIVILEGES FOR ROLE "${creator.name}" GRANT INSERT ON TABLES TO "${future.name}"`,
        `GRANT SELECT (amount) ON hr.salaries TO "${columns.name}"`,
        `ALTER TABLE hr.salaries ENABLE ROW LEVEL SECURITY`,
        `CREATE POLICY everyone ON hr.salaries USING (true)`,
        `GRANT USAGE ON SCHEMA other TO "${other}"`,
        `GRANT SELECT, INSERT ON other.t TO "${other}"`,
      ].join('; '),
    );

    // WHEN effective access is read again
    const r = await read();
    const unmanaged = (holder: string) =>
      expect(r.rows.find((x) => x.holder.id === holder)!.holder).toEqual({ id: holder, kind: 'pg-role', name: holder, managed: false });

    // THEN a direct GRANT: partial on the whole schema, full on the dataset that lists only its table
    expect(vias(r, 'hr', 'read', direct.name)).toEqual([`GRANT SELECT ON hr.salaries TO ${direct.name} [partial]`]);
    expect(vias(r, 'hr-salaries', 'read', direct.name)).toEqual([`GRANT SELECT ON hr.salaries TO ${direct.name}`]);
    expect(levels(r, 'hr', direct.name)).toEqual(['read']);
    unmanaged(direct.name);
    expect(await queryAs(db, direct, 'SELECT who FROM hr.salaries')).toEqual([{ who: 'ana' }]);

    // PUBLIC, now with USAGE on hr: a row of its own, reaching a role that holds nothing else
    expect(vias(r, 'hr', 'read', 'PUBLIC')).toEqual(['GRANT SELECT ON hr.notes TO PUBLIC [partial]']);
    expect(row(r, 'hr', 'read', 'PUBLIC')!.holder).toEqual({ id: 'PUBLIC', kind: 'pg-public', name: 'PUBLIC', managed: false });
    expect(vias(r, 'hr-salaries', 'read', 'PUBLIC')).toBeUndefined();
    expect(levels(r, 'hr', nobody.name)).toEqual([]);
    expect(await queryAs(db, nobody, 'SELECT note FROM hr.notes')).toEqual([{ note: 'hello' }]);

    // an unmanaged member of datagrant's group inherits its access, by a path that is not datagrant's
    expect(vias(r, 'hr', 'read', member.name)).toEqual([`member of role ${readers}`]);
    expect(row(r, 'hr', 'read', member.name)!.paths[0]!.managed).toBeUndefined();
    unmanaged(member.name);
    expect(await queryAs(db, member, 'SELECT who FROM hr.salaries')).toEqual([{ who: 'ana' }]);

    // a NOINHERIT member holds nothing by itself, but can SET ROLE to the group that does
    expect(vias(r, 'hr', 'read', noinherit.name)).toEqual([`can SET ROLE ${handGroup}`]);
    expect(vias(r, 'hr', 'read', handGroup)).toEqual([`GRANT SELECT ON ALL TABLES IN SCHEMA hr TO ${handGroup}`]);
    unmanaged(noinherit.name);
    await expectPermissionDenied(db, noinherit, 'SELECT who FROM hr.salaries');
    const c = await connectAs(db, noinherit);
    try {
      await c.query(`SET ROLE "${handGroup}"`);
      expect((await c.query('SELECT who FROM hr.salaries')).rows).toEqual([{ who: 'ana' }]);
    } finally {
      await c.end();
    }

    // default privileges: future tables of the whole schema (in it, or in any), not of the table list
    expect(vias(r, 'hr', 'read', future.name)).toEqual([`default privileges: future tables created by ${creator.name} in hr [partial]`]);
    expect(vias(r, 'hr', 'write', future.name)).toEqual([`default privileges: future tables created by ${creator.name} in any schema [partial]`]);
    expect(levels(r, 'hr-salaries', future.name)).toEqual([]);
    unmanaged(future.name);

    // a column privilege is partial read naming its columns; it and row-level security are limits
    expect(vias(r, 'hr-salaries', 'read', columns.name)).toEqual([`GRANT SELECT (amount) ON hr.salaries TO ${columns.name} [partial]`]);
    expect(await queryAs(db, columns, 'SELECT amount FROM hr.salaries')).toEqual([{ amount: 1 }]);
    await expectPermissionDenied(db, columns, 'SELECT who FROM hr.salaries');
    expect(r.limits).toContain('column privileges on hr.salaries: shown as partial access through a path that names the columns');
    expect(r.limits.filter((l) => l.startsWith('row-level security is enabled on hr.salaries:'))).toHaveLength(1);

    // a grant on another schema of the same database is not access to the dataset
    expect(r.rows.filter((x) => x.holder.id === other)).toEqual([]);

    // datagrant's principals are as the spec says, still
    expect(levels(r, 'hr', ana)).toEqual(['read']);
    expect(levels(r, 'hr', wes)).toEqual(['read', 'write']);

    // and the read stays bulk: more roles and grants, not more requests
    expect(r.requests).toBe(before.requests);

    // the default privilege is real: a table the creator makes is readable by the grantee
    await queryAs(db, creator, `CREATE TABLE hr.later (x int); INSERT INTO hr.later VALUES (7)`);
    await queryAs(db, future, 'INSERT INTO hr.later VALUES (8)');
    expect(await queryAs(db, future, 'SELECT x FROM hr.later ORDER BY x')).toEqual([{ x: 7 }, { x: 8 }]);
    await expectPermissionDenied(db, future, 'SELECT who FROM hr.salaries');
  });

  test("partitions and inheritance children of a dataset's tables, in its schema or another, are ways to its rows; views and SECURITY DEFINER functions elsewhere are named", async () => {
    // GIVEN a schema of a partitioned table and an inherited one, with parts in another schema
    await adminQuery(
      'postgres',
      [`CREATE ROLE "${partReader.name}" LOGIN PASSWORD '${partReader.password}'`, `CREATE ROLE "${viewer.name}" LOGIN PASSWORD '${viewer.password}'`].join(
        '; ',
      ),
    );
    await adminQuery(
      db,
      [
        `CREATE SCHEMA ev; CREATE SCHEMA archive; CREATE SCHEMA reports`,
        `CREATE TABLE ev.events (at date, what text) PARTITION BY RANGE (at)`,
        `CREATE TABLE ev.events_2024 PARTITION OF ev.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`,
        `CREATE TABLE archive.events_2020 PARTITION OF ev.events FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')`,
        `INSERT INTO ev.events VALUES ('2020-06-01', 'old'), ('2024-06-01', 'new')`,
        `CREATE TABLE ev.logs (line text); CREATE TABLE archive.logs_old () INHERITS (ev.logs); INSERT INTO archive.logs_old VALUES ('kept')`,
        `GRANT USAGE ON SCHEMA archive TO "${partReader.name}"`,
        `GRANT SELECT ON archive.events_2020, archive.logs_old TO "${partReader.name}"`,
        `CREATE VIEW reports.recent AS SELECT what FROM ev.events`,
        `GRANT USAGE ON SCHEMA reports TO "${viewer.name}"; GRANT SELECT ON reports.recent TO "${viewer.name}"`,
        `CREATE FUNCTION public.log_count() RETURNS bigint SECURITY DEFINER LANGUAGE sql AS 'SELECT count(*) FROM ev.logs'`,
      ].join('; '),
    );
    const EV: AccessDataset[] = [
      { name: 'ev', database: db, schema: 'ev' },
      { name: 'ev-logs', database: db, schema: 'ev', tables: ['logs'] },
    ];

    // WHEN effective access to them is read
    const r = await backend.readAccess!({ datasets: EV });

    // THEN the grants on the parts are partial access to the datasets whose tables they are parts of
    expect(vias(r, 'ev', 'read', partReader.name)).toEqual([
      `GRANT SELECT ON archive.events_2020 TO ${partReader.name} (a partition of ev.events) [partial]`,
      `GRANT SELECT ON archive.logs_old TO ${partReader.name} (an inheritance child of ev.logs) [partial]`,
    ]);
    expect(vias(r, 'ev-logs', 'read', partReader.name)).toEqual([
      `GRANT SELECT ON archive.logs_old TO ${partReader.name} (an inheritance child of ev.logs) [partial]`,
    ]);
    // and they are real: the partition's rows, not the parent's
    expect(await queryAs(db, partReader, 'SELECT what FROM archive.events_2020')).toEqual([{ what: 'old' }]);
    expect(await queryAs(db, partReader, 'SELECT line FROM archive.logs_old')).toEqual([{ line: 'kept' }]);
    await expectPermissionDenied(db, partReader, 'SELECT what FROM ev.events');

    // the view elsewhere and the SECURITY DEFINER function are named, each where it reads
    const admin = (await adminQuery<{ u: string }>(db, 'SELECT current_user AS u')).rows[0]!.u;
    expect(r.limits.filter((l) => / (views outside it|SECURITY DEFINER functions)/.test(l))).toEqual([
      `dataset ev: views outside it read its tables: reports.recent (owner ${admin}, over ev.events); who may read them reaches those rows with their owners' privileges, which this report does not show`,
      `dataset ev: SECURITY DEFINER functions name its tables: public.log_count() (owner ${admin}, names ev.logs); who may EXECUTE them (by default PUBLIC) runs them with their owners' privileges, which this report does not show`,
      `dataset ev-logs: SECURITY DEFINER functions name its tables: public.log_count() (owner ${admin}, names ev.logs); who may EXECUTE them (by default PUBLIC) runs them with their owners' privileges, which this report does not show`,
    ]);
    // which are real ways in: the viewer reads the rows through the view, not the table
    expect(await queryAs(db, viewer, 'SELECT what FROM reports.recent ORDER BY what')).toEqual([{ what: 'new' }, { what: 'old' }]);
    await expectPermissionDenied(db, viewer, 'SELECT what FROM ev.events');
    expect(await queryAs(db, viewer, 'SELECT public.log_count() AS n')).toEqual([{ n: '1' }]);
    expect(r.failures).toEqual([]);
  });

  test("a forged session marker is a claim, never a principal; one without the installation's id is not datagrant's", async () => {
    // GIVEN a role with CREATEROLE that copies datagrant's marker (with its installation id, readable
    // by anyone) onto a login named as one of ana's sessions, and makes it a member of ana's role;
    // and a role with a marker lacking any installation id
    const comment = (await adminQuery<{ c: string }>('postgres', `SELECT shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = $1`, [ana]))
      .rows[0]!.c;
    const marker = JSON.parse(comment) as Record<string, unknown>;
    expect(marker.installation).toEqual(expect.any(String));
    await adminQuery('postgres', `CREATE ROLE "${forger.name}" LOGIN CREATEROLE PASSWORD '${forger.password}'`);
    await queryAs(
      'postgres',
      forger,
      [
        `CREATE ROLE "${forged.name}" LOGIN PASSWORD '${forged.password}'`,
        `COMMENT ON ROLE "${forged.name}" IS '${JSON.stringify({ ...marker, kind: 'session', principal: ana, credential: undefined })}'`,
        `GRANT "${ana}" TO "${forged.name}"`,
        `CREATE ROLE "${oldStyle}" NOLOGIN`,
        `COMMENT ON ROLE "${oldStyle}" IS '${JSON.stringify({ datagrant: 'managed', scope: marker.scope })}'`,
        `GRANT "${readers}" TO "${oldStyle}"`,
      ].join('; '),
    );

    // WHEN effective access is read
    const r = await read();

    // THEN the forged login claims ana's session (for the session log to refute), and is not ana
    const f = row(r, 'hr', 'read', forged.name)!;
    expect(f.holder).toEqual({ id: forged.name, kind: 'pg-role', name: forged.name, managed: true, sessionOf: ana });
    expect(f.paths.map((p) => p.via)).toEqual([`member of role ${readers} (through ${ana})`]);
    expect(r.usage.find((u) => u.holder === forged.name)?.principal).toBeUndefined();
    expect(await queryAs(db, forged, 'SELECT who FROM hr.salaries')).toEqual([{ who: 'ana' }]);
    // ana is still ana
    expect(row(r, 'hr', 'read', ana)!.holder).toEqual({ id: ana, kind: 'pg-role', name: ana, managed: true, principal: ana });
    // and the old-style marker is not datagrant's: its path neither, and limits name it
    expect(row(r, 'hr', 'read', oldStyle)!.holder).toEqual({ id: oldStyle, kind: 'pg-role', name: oldStyle, managed: false });
    expect(row(r, 'hr', 'read', oldStyle)!.paths.map((p) => [p.via, p.managed])).toEqual([[`member of role ${readers}`, undefined]]);
    expect(r.limits).toContainEqual(expect.stringMatching(new RegExp(`^roles .*${oldStyle}.*: datagrant's marker without an installation id`)));
  });

  test('a dataset whose database does not exist is a failure of the reading', async () => {
    const r = await backend.readAccess!({ datasets: [...DATASETS(), { name: 'gone', database: `${db}_gone`, schema: 'hr' }] });
    expect(r.failures).toEqual([`dataset gone: database ${db}_gone does not exist`]);
    expect(r.rows.some((x) => x.dataset === 'hr')).toBe(true);
  });
});
