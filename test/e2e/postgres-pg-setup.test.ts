// Issue 16: the role `datagrant pg-setup` prints is enough, on a real PostgreSQL. A superuser runs
// the printed SQL with psql; datagrant then connects as that role (not a superuser) and applies,
// rotates, covers a table the schema's owner creates later, and destroys. Without the membership
// in the owner, apply fails with the GRANT to run instead of PostgreSQL's "must be member of role".
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import type { Workspace } from '../support/cli.js';
import { adminQuery, expectPermissionDenied, pgFixture, queryAs, testPgUrl, urlFor } from '../support/pg.js';
import { apply, expectNoChanges, initWorkspace } from './aws-support.js';

const fx = pgFixture('pgsetup');
const provisioner = { name: fx.role(fx.name('dg')), password: `dg-pw-${fx.run}` };
const migrator = fx.role(fx.name('migrator'));
const stranger = fx.role(fx.name('stranger'));
let db: string;
let ws: Workspace | undefined;

beforeAll(async () => {
  db = await fx.database('wh');
  await adminQuery('postgres', `CREATE ROLE "${migrator}" NOLOGIN; CREATE ROLE "${stranger}" NOLOGIN`);
  await adminQuery(
    db,
    `REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC;
     CREATE SCHEMA features AUTHORIZATION "${migrator}"; CREATE SCHEMA labels AUTHORIZATION "${migrator}";
     SET ROLE "${migrator}";
     CREATE TABLE features.f (id serial, v text); INSERT INTO features.f (v) VALUES ('one');
     CREATE TABLE labels.l1 (id serial, v text); INSERT INTO labels.l1 (v) VALUES ('label');
     CREATE TABLE labels.secret (v text); INSERT INTO labels.secret VALUES ('no');
     RESET ROLE;
     CREATE SCHEMA private AUTHORIZATION "${stranger}"; SET ROLE "${stranger}";
     CREATE TABLE private.p (v text); INSERT INTO private.p VALUES ('no');
     RESET ROLE;`,
  );
});
afterAll(async () => fx.cleanup());
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

/** Each test its own scope and role names: roles a failed test left are not the next one's. */
function spec(tag: string, withLabels = true) {
  const ada = fx.name(`ada_${tag}`);
  const bob = fx.name(`bob_${tag}`);
  const readers = fx.name(`readers_${tag}`);
  const text = `version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run}_${tag} }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
${withLabels ? `  labels: { backend: wh, database: ${db}, schema: labels, tables: [l1] }\n` : ''}groups:
  ${readers}: { grants: [{ dataset: features, access: read }] }
principals:
  ${ada}: { type: service, groups: [${readers}] }
${withLabels ? `  ${bob}: { type: service, grants: [{ dataset: labels, access: write }] }\n` : ''}`;
  return { text, ada, bob, readers };
}

/** Runs `sql` as the superuser with psql, as an operator would. */
function psql(sql: string): string {
  const file = join(ws!.dir, 'pg-setup.sql');
  writeFileSync(file, sql);
  const url = new URL(testPgUrl());
  return execFileSync('psql', [urlFor('postgres'), '-v', 'ON_ERROR_STOP=1', '-q', '-f', file], {
    encoding: 'utf8',
    env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
  });
}

async function password(w: Workspace, who: string): Promise<{ name: string; password: string }> {
  const r = await w.run('credentials', 'export', who, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as { username: string; password: string };
  return { name: s.username, password: s.password };
}

describe('pg-setup', () => {
  test('datagrant runs as the printed role alone: apply, rotation, a later table, destroy', async () => {
    const { text, ada, bob, readers } = spec('full');
    ws = await initWorkspace(text);
    ws.env.WH_URL = urlFor(db, provisioner);
    const printed = await ws.run('pg-setup', '--role', provisioner.name);
    expect(printed.code, printed.stderr).toBe(0);
    psql(printed.stdout);
    // Run twice, as an operator re-runs it when the spec grows: it must not fail on what exists.
    psql(printed.stdout);
    await adminQuery('postgres', `ALTER ROLE "${provisioner.name}" PASSWORD '${provisioner.password}'`);
    const attrs = await adminQuery('postgres', 'SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1', [provisioner.name]);
    expect(attrs.rows).toEqual([{ rolsuper: false, rolcreaterole: true, rolcreatedb: false }]);

    await apply(ws);
    await expectNoChanges(ws);
    const a1 = await password(ws, ada);
    expect(await queryAs(db, a1, 'SELECT v FROM features.f')).toEqual([{ v: 'one' }]);
    const b = await password(ws, bob);
    await queryAs(db, b, "INSERT INTO labels.l1 (v) VALUES ('two')");
    await expectPermissionDenied(db, b, 'SELECT * FROM labels.secret');

    // rotation
    const rotated = await ws.run('credentials', 'rotate', ada);
    expect(rotated.code, rotated.stdout + rotated.stderr).toBe(0);
    const a2 = await password(ws, ada);
    expect(a2.password).not.toBe(a1.password);
    expect(await queryAs(db, a2, 'SELECT v FROM features.f')).toEqual([{ v: 'one' }]);

    // a table the owner creates later is readable at once (default privileges), and grantable
    await adminQuery(db, `SET ROLE "${migrator}"; CREATE TABLE features.later (v text); INSERT INTO features.later VALUES ('later'); RESET ROLE;`);
    expect(await queryAs(db, a2, 'SELECT v FROM features.later')).toEqual([{ v: 'later' }]);
    await expectNoChanges(ws);

    // teardown
    const destroyed = await ws.run('destroy', '--auto-approve');
    expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
    const left = await adminQuery('postgres', 'SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])', [[ada, bob, readers]]);
    expect(left.rows).toEqual([]);

    // datagrant's role is no superuser: a schema of no dataset, another owner's, is refused to it
    await expectPermissionDenied(db, provisioner, 'SELECT * FROM private.p');
  });

  test('without the membership in the owner, apply says which GRANT to run', async () => {
    ws = await initWorkspace(spec('member', false).text);
    ws.env.WH_URL = urlFor(db, provisioner);
    const printed = await ws.run('pg-setup', '--role', provisioner.name);
    expect(printed.code, printed.stderr).toBe(0);
    psql(printed.stdout);
    // GIVEN datagrant holds the schema's privileges with the grant option, but is no member of its owner
    await adminQuery('postgres', `ALTER ROLE "${provisioner.name}" PASSWORD '${provisioner.password}'; REVOKE "${migrator}" FROM "${provisioner.name}"`);
    await adminQuery(
      db,
      `GRANT USAGE ON SCHEMA features TO "${provisioner.name}" WITH GRANT OPTION; GRANT SELECT ON ALL TABLES IN SCHEMA features TO "${provisioner.name}" WITH GRANT OPTION`,
    );

    const r = await ws.run('apply', '--auto-approve');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`datagrant's role ${provisioner.name} is not a member of role ${migrator}`);
    expect(r.stderr).toContain(`As a superuser, run: GRANT "${migrator}" TO "${provisioner.name}";`);

    // WHEN the superuser runs what it said
    await adminQuery('postgres', `GRANT "${migrator}" TO "${provisioner.name}"`);
    // THEN apply converges
    await apply(ws);
    await expectNoChanges(ws);
    const destroyed = await ws.run('destroy', '--auto-approve');
    expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
  });

  /** What the printed script does for a spec of one dataset: psql's output, or its error. */
  async function setupFor(database: string, schema: string, tag: string): Promise<{ ok: boolean; out: string }> {
    ws = await initWorkspace(`version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run}_${tag} }
datasets:
  d: { backend: wh, database: ${database}, schema: ${schema} }
`);
    ws.env.WH_URL = urlFor(database, provisioner);
    const printed = await ws.run('pg-setup', '--role', provisioner.name);
    expect(printed.code, printed.stderr).toBe(0);
    try {
      return { ok: true, out: psql(printed.stdout) };
    } catch (e) {
      return { ok: false, out: String((e as { stderr?: string }).stderr) };
    }
  }
  const memberOf = async (owner: string) =>
    (await adminQuery('postgres', 'SELECT pg_has_role($1, $2, $3) AS m', [provisioner.name, owner, 'MEMBER'])).rows[0]!.m as boolean;

  test.each([
    [
      'pg_execute_server_program (a shell as postgres)',
      (r: string) => `GRANT pg_execute_server_program TO "${r}"`,
      /the predefined role pg_execute_server_program/,
    ],
    ['pg_read_server_files', (r: string) => `GRANT pg_read_server_files TO "${r}"`, /the predefined role pg_read_server_files/],
    ['pg_write_all_data', (r: string) => `GRANT pg_write_all_data TO "${r}"`, /the predefined role pg_write_all_data/],
    ['pg_signal_backend with ADMIN OPTION', (r: string) => `GRANT pg_signal_backend TO "${r}" WITH ADMIN OPTION`, /the predefined role pg_signal_backend/],
    ['CREATEROLE', (r: string) => `ALTER ROLE "${r}" CREATEROLE`, /\(CREATEROLE\)/],
    ['REPLICATION', (r: string) => `ALTER ROLE "${r}" REPLICATION`, /\(REPLICATION\)/],
    ['BYPASSRLS', (r: string) => `ALTER ROLE "${r}" BYPASSRLS`, /\(BYPASSRLS\)/],
    ['a superuser role it is a member of', (r: string) => `CREATE ROLE "${r}_su" SUPERUSER NOLOGIN; GRANT "${r}_su" TO "${r}"`, /_su: SUPERUSER/],
  ])('an owner that holds %s is refused, and datagrant is made no member of it', async (_what, give, held) => {
    const tag = `p${fx.run.slice(-4)}${Math.random().toString(36).slice(2, 7)}`;
    const owner = fx.role(fx.name(`own_${tag}`));
    fx.role(`${owner}_su`);
    await adminQuery('postgres', `CREATE ROLE "${owner}" NOLOGIN; ${give(owner)}`);
    await adminQuery(db, `CREATE SCHEMA "s_${tag}" AUTHORIZATION "${owner}"`);
    const r = await setupFor(db, `s_${tag}`, tag);
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(new RegExp(`the owner ${owner} of schema s_${tag} can do more than own`));
    expect(r.out).toMatch(held);
    expect(await memberOf(owner)).toBe(false);
  });

  test("schema public (owned by pg_database_owner): datagrant acts as the database's owner, and grants there", async () => {
    const pub = await fx.database('pub');
    const dbOwner = fx.role(fx.name('dbowner'));
    await adminQuery('postgres', `CREATE ROLE "${dbOwner}" NOLOGIN; ALTER DATABASE "${pub}" OWNER TO "${dbOwner}"`);
    await adminQuery(pub, `SET ROLE "${dbOwner}"; CREATE TABLE public.t (v text); INSERT INTO public.t VALUES ('pub'); RESET ROLE;`);
    expect((await adminQuery(pub, "SELECT nspowner::regrole::text AS o FROM pg_namespace WHERE nspname = 'public'")).rows).toEqual([
      { o: 'pg_database_owner' },
    ]);

    const ada = fx.name('ada_pub');
    const r = await setupFor(pub, 'public', 'pub');
    expect(r.ok, r.out).toBe(true);
    expect(await memberOf(dbOwner)).toBe(true);
    await adminQuery('postgres', `ALTER ROLE "${provisioner.name}" PASSWORD '${provisioner.password}'`);
    ws!.writeSpec(`version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run}_pub }
datasets:
  d: { backend: wh, database: ${pub}, schema: public }
principals:
  ${ada}: { type: service, grants: [{ dataset: d, access: read }] }
`);
    await apply(ws!);
    await expectNoChanges(ws!);
    expect(await queryAs(pub, await password(ws!, ada), 'SELECT v FROM public.t')).toEqual([{ v: 'pub' }]);
    const destroyed = await ws!.run('destroy', '--auto-approve');
    expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
  });

  test('schema public of a database a superuser owns is refused, naming the database and its owner', async () => {
    const r = await setupFor(db, 'public', 'pubsu');
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(new RegExp(`schema public is owned by pg_database_owner, that is by the owner of database ${db}, the superuser \\w+`));
  });
});
