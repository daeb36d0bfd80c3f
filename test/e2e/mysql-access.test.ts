// The mysql backend end to end, through the CLI, on a real MariaDB: the passwords datagrant issues
// read what the spec grants and nothing else; an expired grant stops at the first apply after it
// expires, and a removed principal cannot log in; a session that was open when access went is
// ended; the credentials export in every format works with MariaDB's own client.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Workspace } from '../support/cli.js';
import { expectDenied, expectLoginRefused, expectSessionEnded, mysqlAdmin, mysqlConnectAs, mysqlFixture, mysqlQueryAs, mysqlUrlFor } from '../support/mysql.js';
import { apply, expectNoChanges, initWorkspace } from './aws-support.js';

const run = promisify(execFile);
const fx = mysqlFixture('myaccess');
const readers = fx.name('readers');
const alice = fx.name('alice');
const trainer = fx.name('trainer');
let features: string;
let labels: string;
let secret: string;
let ws: Workspace;
const DAY = 86400_000;
const expires = new Date(Date.now() + DAY).toISOString().slice(0, 19) + 'Z';

const spec = (withAlice: boolean) => `version: 1
backends:
  db: { type: mysql, url: "\${DB_URL}", scope: ${fx.run} }
datasets:
  features: { backend: db, database: ${features} }
  labels: { backend: db, database: ${labels}, tables: [gold] }
  secret: { backend: db, database: ${secret} }
groups:
  ${readers}: { grants: [{ dataset: features, access: read }] }
principals:
${withAlice ? `  ${alice}: { type: person, email: alice@example.com, groups: [${readers}] }\n` : ''}  ${trainer}:
    type: service
    groups: [${readers}]
    grants: [{ dataset: labels, access: write, expires: ${expires} }]
`;

async function login(name: string): Promise<{ name: string; password: string }> {
  const r = await ws.run('credentials', 'export', name, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as { username: string; password: string };
  return { name: s.username, password: s.password };
}

beforeAll(async () => {
  features = await fx.database('features');
  labels = await fx.database('labels');
  secret = await fx.database('secret');
  await mysqlAdmin(
    `CREATE TABLE \`${features}\`.f (id int); INSERT INTO \`${features}\`.f VALUES (1);
     CREATE TABLE \`${labels}\`.gold (id int); CREATE TABLE \`${labels}\`.silver (id int);
     CREATE TABLE \`${secret}\`.s (id int); INSERT INTO \`${secret}\`.s VALUES (42);`,
  );
  ws = await initWorkspace(spec(true));
  ws.env.DB_URL = mysqlUrlFor();
  await apply(ws);
});
afterAll(async () => {
  ws?.cleanup();
  await fx.cleanup();
});

describe('with the issued passwords', () => {
  test('a second plan is empty, and no password appears in any output', async () => {
    await expectNoChanges(ws);
    const issued = [(await login(alice)).password, (await login(trainer)).password];
    for (const text of ws.transcript) for (const p of issued) expect(text).not.toContain(p);
  });

  test('read is allowed, write is denied, other datasets and other tables are denied', async () => {
    const a = await login(alice);
    // read through the group's role, active at login as part of alice's own role
    expect(await mysqlQueryAs(a, `SELECT id FROM \`${features}\`.f`)).toEqual([{ id: 1 }]);
    await expectDenied(a, `INSERT INTO \`${features}\`.f VALUES (2)`);
    await expectDenied(a, `SELECT id FROM \`${secret}\`.s`);
    await expectDenied(a, `SELECT id FROM \`${labels}\`.gold`);
    // write on the listed table only
    const t = await login(trainer);
    await mysqlQueryAs(t, `INSERT INTO \`${labels}\`.gold VALUES (7)`);
    expect(await mysqlQueryAs(t, `SELECT id FROM \`${labels}\`.gold`)).toEqual([{ id: 7 }]);
    await expectDenied(t, `INSERT INTO \`${labels}\`.silver VALUES (7)`);
    await expectDenied(t, `DROP TABLE \`${labels}\`.gold`);
  });

  test('every export format logs in with MariaDB’s own client', async () => {
    const query = `SELECT id FROM \`${features}\`.f`;
    // my.cnf: the client reads login and database from the file
    const cnf = (await ws.run('credentials', 'export', alice, '--format', 'my.cnf')).stdout;
    const file = join(ws.dir, 'alice.cnf');
    writeFileSync(file, cnf, { mode: 0o600 });
    const viaCnf = await run('mariadb', [`--defaults-extra-file=${file}`, '--protocol=tcp', '-N', '-e', query]);
    expect(viaCnf.stdout.trim()).toBe('1');
    // env: the client's own variables (the password never on its command line)
    const env = Object.fromEntries(
      (await ws.run('credentials', 'export', alice, '--format', 'env')).stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(Object.keys(env)).toEqual(['MYSQL_HOST', 'MYSQL_TCP_PORT', 'MYSQL_USER', 'MYSQL_PWD', 'MYSQL_DATABASE']);
    const viaEnv = await run('mariadb', ['--protocol=tcp', '-u', env.MYSQL_USER!, '-N', '-e', query], { env: { ...process.env, ...env } });
    expect(viaEnv.stdout.trim()).toBe('1');
    // url: a driver's connection string
    const url = (await ws.run('credentials', 'export', alice, '--format', 'url')).stdout.trim();
    expect(url).toMatch(new RegExp(`^mysql://${alice}:[^@]+@127\\.0\\.0\\.1:\\d+/${features}$`));
    const u = new URL(url);
    expect(await mysqlQueryAs({ name: decodeURIComponent(u.username), password: decodeURIComponent(u.password) }, query)).toEqual([{ id: 1 }]);
  });
});

describe('rotation', () => {
  test('credentials rotate sets a new password at once: the old one is refused, the store keeps only the new one', async () => {
    const old = await login(alice);
    const r = await ws.run('credentials', 'rotate', alice);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('the old one stops working at once');
    const fresh = await login(alice);
    expect(fresh.password).not.toBe(old.password);
    await expectLoginRefused(old);
    expect(await mysqlQueryAs(fresh, `SELECT id FROM \`${features}\`.f`)).toEqual([{ id: 1 }]);
    const listed = JSON.parse((await ws.run('credentials', 'list', '--json')).stdout) as { address: string; state: string }[];
    expect(listed.filter((c) => c.address === `db:password/${alice}`).map((c) => c.state)).toEqual(['current']);
    await expectNoChanges(ws);
  });

  test('--revoke-old clears the leaked password first and ends the sessions opened with it', async () => {
    const old = await login(alice);
    // GIVEN a session opened with the leaked password, still open
    const open = await mysqlConnectAs(old, features);
    try {
      expect((await open.query('SELECT id FROM f'))[0]).toEqual([{ id: 1 }]);
      const r = await ws.run('credentials', 'rotate', alice, '--revoke-old');
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stderr).toContain(`db:password/${alice}: the old password is cleared and every open session of ${alice}'s login is ended`);
      // THEN that session is gone (MariaDB checks a password only at login), the old password is refused
      await expectSessionEnded(open);
    } finally {
      open.destroy();
    }
    await expectLoginRefused(old);
    expect(await mysqlQueryAs(await login(alice), `SELECT id FROM \`${features}\`.f`)).toEqual([{ id: 1 }]);
    await expectNoChanges(ws);
  });
});

describe('when access ends', () => {
  test('an expired grant is denied after the apply that follows its expiry, and a session open on it is ended', async () => {
    // GIVEN a session of trainer's, open on the labels database, that can write
    const t = await login(trainer);
    const open = await mysqlConnectAs(t, labels);
    try {
      await open.query('INSERT INTO gold VALUES (8)');
      // WHEN the grant expires and the next apply runs
      ws.now = () => new Date(Date.now() + 2 * DAY);
      const out = await apply(ws);
      expect(out).toMatch(new RegExp(`- db:grant/${trainer}/${labels}/write`));
      // THEN the open session is gone: MariaDB would have let it keep writing
      await expectSessionEnded(open);
    } finally {
      open.destroy();
    }
    // and a new session can still read features (its other grant), but no longer write labels
    expect(await mysqlQueryAs(t, `SELECT id FROM \`${features}\`.f`)).toEqual([{ id: 1 }]);
    await expectDenied(t, `INSERT INTO \`${labels}\`.gold VALUES (10)`);
    await expectDenied(t, `SELECT id FROM \`${labels}\`.gold`);
    expect((await mysqlAdmin<{ id: number }[]>(`SELECT id FROM \`${labels}\`.gold ORDER BY id`)).map((r) => r.id)).toEqual([7, 8]);
    await expectNoChanges(ws);
  });

  test('a principal removed from the spec cannot log in, and its open session is ended', async () => {
    // GIVEN alice's open session
    const a = await login(alice);
    const open = await mysqlConnectAs(a, features);
    try {
      expect((await open.query('SELECT id FROM f'))[0]).toEqual([{ id: 1 }]);
      // WHEN alice leaves the spec
      ws.writeSpec(spec(false));
      const out = await apply(ws);
      expect(out).toMatch(new RegExp(`- db:account/${alice}`));
      // THEN her session is ended, and her password opens nothing
      await expectSessionEnded(open);
    } finally {
      open.destroy();
    }
    await expectLoginRefused(a);
    expect(await mysqlAdmin<unknown[]>(`SELECT User FROM mysql.global_priv WHERE User = ?`, [alice])).toEqual([]);
    // the group and trainer are untouched
    expect(await mysqlQueryAs(await login(trainer), `SELECT id FROM \`${features}\`.f`)).toEqual([{ id: 1 }]);
    await expectNoChanges(ws);
  });
});
