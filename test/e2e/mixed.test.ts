// Issue 4: one spec whose group spans an S3 prefix and a PostgreSQL schema — one plan, one
// apply, both enforced — proven by logging in with the issued password and using the issued key.
// Issue 14: and a MariaDB database, in the same plan and apply.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { startMoto, type Moto } from '../support/moto.js';
import { adminQuery, connectAs, expectLoginRefused, expectPermissionDenied, pgFixture, queryAs, urlFor } from '../support/pg.js';
import type { Workspace } from '../support/cli.js';
import { expectLoginRefused as expectMysqlLoginRefused, mysqlAdmin, mysqlFixture, mysqlQueryAs, mysqlUrlFor } from '../support/mysql.js';
import { apply, canRead, cannotTouch, expectNoChanges, initWorkspace, issuedKey, keyIsDead, s3For, useMotoAdmin } from './aws-support.js';

const fx = pgFixture('mixed');
let moto: Moto;
let ws: Workspace;
let db: string;
let other: string;
const alice = fx.name('alice');
const bob = fx.name('bob');
const handmade = fx.role(fx.name('handmade'));
const group = fx.name('ml');
const my = mysqlFixture('mixed', fx.run);
let mart: string;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
  useMotoAdmin(moto);
  db = await fx.database('analytics');
  other = await fx.database('other');
  for (const d of [db, other]) await adminQuery(d, 'REVOKE CONNECT ON DATABASE ' + `"${d}"` + ' FROM PUBLIC');
  await adminQuery(
    db,
    `CREATE SCHEMA features; CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1), (2);
    CREATE SCHEMA private; CREATE TABLE private.p (id int); INSERT INTO private.p VALUES (42);
    CREATE ROLE "${handmade}" LOGIN PASSWORD 'handmade-pw'; GRANT CONNECT ON DATABASE "${db}" TO "${handmade}"; GRANT USAGE ON SCHEMA private TO "${handmade}"; GRANT SELECT ON private.p TO "${handmade}";`,
  );
  await adminQuery(other, 'CREATE TABLE t (id int)');
  mart = await my.database('mart');
  await mysqlAdmin(`CREATE TABLE \`${mart}\`.m (id int); INSERT INTO \`${mart}\`.m VALUES (5)`);
});
afterAll(async () => {
  await my.cleanup();
  await fx.cleanup();
  await moto?.stop();
});
afterEach(() => ws?.cleanup());

const spec = (principals: string) => `version: 1
backends:
  aws: { type: aws }
  warehouse: { type: postgres, url: "\${WAREHOUSE_URL}", scope: ${fx.run} }
  mart: { type: mysql, url: "\${MART_URL}", scope: ${fx.run} }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
  features: { backend: warehouse, database: ${db}, schema: features }
  metrics: { backend: mart, database: ${mart} }
groups:
  ${group}:
    grants:
      - { dataset: training-data, access: read }
      - { dataset: features, access: read }
      - { dataset: metrics, access: read }
principals:
${principals}`;

async function password(name: string): Promise<{ name: string; password: string }> {
  const r = await ws.run('credentials', 'export', name, '--backend', 'warehouse', '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as { username: string; password: string };
  return { name: s.username, password: s.password };
}

test('one group spanning S3 and PostgreSQL: one plan, one apply, both enforced; leaving revokes both', async () => {
  ws = await initWorkspace(spec(`  ${alice}: { type: person, groups: [${group}] }\n  ${bob}: { type: service, groups: [${group}] }\n`));
  ws.env.WAREHOUSE_URL = urlFor(db);
  ws.env.MART_URL = mysqlUrlFor();

  const plan = await ws.run('plan', '--detailed-exitcode');
  expect(plan.code, plan.stderr).toBe(2);
  expect(plan.stdout).toContain(`+ aws:user/${alice}`);
  expect(plan.stdout).toContain(`+ warehouse:role/${alice}`);
  expect(plan.stdout).toContain(`+ warehouse:role/${group}`);
  expect(plan.stdout).toContain(`+ mart:account/${alice}`);
  expect(plan.stdout).not.toMatch(/mysql:\/\/[^\s]*:[^\s]*@/);
  expect(plan.stdout).not.toContain(handmade);
  expect(plan.stdout).not.toMatch(/postgres:\/\/[^\s]*:[^\s]*@/);

  await apply(ws);
  await expectNoChanges(ws);

  // AWS: the group's prefix is readable with the issued key
  const key = await issuedKey(ws, alice, 'aws');
  await canRead(s3For(moto, key), 'ai-model-data', 'training/a.txt', 'training');
  await cannotTouch(s3For(moto, key), 'other-bucket', 'secret.txt');

  // PostgreSQL: log in with the issued password
  const pw = await password(alice);
  expect(pw.name).toBe(alice);
  expect(await queryAs(db, pw, 'SELECT id FROM features.f ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
  await expectPermissionDenied(db, pw, 'INSERT INTO features.f VALUES (3)');
  await expectPermissionDenied(db, pw, 'SELECT * FROM private.p');
  await expectPgLoginDenied(other, pw);
  // a table created after apply is readable through default privileges
  await adminQuery(db, 'CREATE TABLE features.later (id int); INSERT INTO features.later VALUES (7)');
  expect(await queryAs(db, pw, 'SELECT id FROM features.later')).toEqual([{ id: 7 }]);
  await expectNoChanges(ws);

  // MariaDB: log in with the issued password
  const myPw = await mysqlPassword(alice);
  expect(await mysqlQueryAs(myPw, `SELECT id FROM \`${mart}\`.m`)).toEqual([{ id: 5 }]);
  await expect(mysqlQueryAs(myPw, `INSERT INTO \`${mart}\`.m VALUES (6)`)).rejects.toThrow(/command denied/);

  // PostgreSQL rotation: the new password works at once, the old one no longer does
  const rotated = await ws.run('credentials', 'rotate', alice, '--backend', 'warehouse');
  expect(rotated.code, rotated.stderr).toBe(0);
  const pw2 = await password(alice);
  expect(pw2.password).not.toBe(pw.password);
  expect(await queryAs(db, pw2, 'SELECT count(*)::int AS n FROM features.f')).toEqual([{ n: 2 }]);
  await expectLoginRefused(db, pw);
  const bobPw = await password(bob);

  // WHEN alice leaves, with a session still open
  const session = await connectAs(db, pw2);
  expect((await session.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  ws.writeSpec(spec(`  ${bob}: { type: service, groups: [${group}] }\n`));
  const out = await apply(ws);
  expect(out).toContain(`- aws:user/${alice}`);
  expect(out).toContain(`- warehouse:role/${alice}`);
  expect(out).toContain(`- mart:account/${alice}`);
  // THEN her key is dead, her login refused, her open session terminated; bob is untouched
  await keyIsDead(moto, key);
  await expectLoginRefused(db, pw2);
  await expectMysqlLoginRefused(myPw);
  await expect(session.query('SELECT 1')).rejects.toThrow();
  await session.end().catch(() => undefined);
  expect(await queryAs(db, await password(bob), 'SELECT count(*)::int AS n FROM features.f')).toEqual([{ n: 2 }]);
  // the hand-made role and its grants are untouched
  expect(await queryAs(db, { name: handmade, password: 'handmade-pw' }, 'SELECT id FROM private.p')).toEqual([{ id: 42 }]);
  await expectNoChanges(ws);

  // no password issued appears in any output, the journal, the audit log or a state file
  const secrets = [pw.password, pw2.password, bobPw.password, key.secretAccessKey, myPw.password];
  const transcript = ws.transcript.join('\n');
  const stateDir = join(ws.dir, '.datagrant');
  const files = readdirSync(stateDir).map((f) => readFileSync(join(stateDir, f)));
  for (const s of secrets) {
    expect(transcript.includes(s)).toBe(false);
    for (const f of files) expect(f.includes(Buffer.from(s))).toBe(false);
  }

  // destroy removes everything datagrant made, and still leaves the hand-made role alone
  expect((await ws.run('destroy', '--auto-approve')).code).toBe(0);
  const roles = await adminQuery<{ rolname: string }>('postgres', `SELECT rolname FROM pg_roles WHERE rolname IN ($1, $2, $3, $4)`, [
    alice,
    bob,
    handmade,
    group,
  ]);
  expect(roles.rows.map((r) => r.rolname)).toEqual([handmade]);
  expect(await mysqlAdmin<unknown[]>(`SELECT User FROM mysql.global_priv WHERE User IN (?, ?, ?)`, [alice, bob, group])).toEqual([]);
});

async function mysqlPassword(name: string): Promise<{ name: string; password: string }> {
  const r = await ws.run('credentials', 'export', name, '--backend', 'mart', '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as { username: string; password: string };
  return { name: s.username, password: s.password };
}

async function expectPgLoginDenied(database: string, user: { name: string; password: string }): Promise<void> {
  await expectLoginRefused(database, user);
}
