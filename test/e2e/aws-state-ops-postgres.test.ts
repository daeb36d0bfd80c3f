// Issue 16: `state backup` and `state restore` with the PostgreSQL store (DATAGRANT_STORE_URL),
// on moto and a real PostgreSQL: a backup taken while another connection writes restores into a
// fresh database with no changes, working keys, its SCIM identities and requests, and ids that go
// on after the restored ones; a wrong key, a store that holds a state and a store in use are
// refused with nothing written; and a backup of either store restores into the other.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IAMClient } from '@aws-sdk/client-iam';
import { afterAll, afterEach, expect, test } from 'vitest';
import { workspace, type Workspace } from '../support/cli.js';
import type { Moto } from '../support/moto.js';
import { adminQuery, pgFixture, urlFor } from '../support/pg.js';
import { openPgScimStore } from '../../src/scim/store/postgres.js';
import { MasterKey } from '../../src/store/crypto.js';
import { openPgStore } from '../../src/store/postgres.js';
import { apply, canRead, expectNoChanges, issuedKey, keysOf, motoPerFile, s3For } from './aws-support.js';

let moto: Moto;
let iam: IAMClient;
const cleanups: (() => void)[] = [];
const fx = pgFixture('pgbackup');
motoPerFile({ auth: true, managedPolicies: false }, { each: (m, i) => ((moto = m), (iam = i)) });
afterEach(() => cleanups.splice(0).forEach((f) => f()));
afterAll(() => fx.cleanup());

const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets: { data: { backend: aws, bucket: ai-model-data, prefix: training/ } }
principals:
  trainer: { type: service, grants: [{ dataset: data, access: read }] }
  alice: { type: person, grants: [{ dataset: data, access: read }] }
`;

function pgWorkspace(db: string, key: string): Workspace {
  const ws = workspace({ DATAGRANT_STORE_URL: urlFor(db), DATAGRANT_MASTER_KEY: key });
  cleanups.push(() => ws.cleanup());
  ws.writeSpec(SPEC);
  return ws;
}

function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), 'dg-pgbackup-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const hasSchema = async (db: string) => (await adminQuery(db, "SELECT 1 FROM pg_namespace WHERE nspname = 'datagrant'")).rowCount === 1;

const request = (at: string) => ({
  requester: 'alice',
  dataset: 'data',
  level: 'read' as const,
  duration: '7d',
  reason: 'evaluate the ranker',
  requestedAt: at,
  requestedVia: 'alice@cli',
});
const asked = (id: number) => ({ actor: 'alice@cli', event: 'request.create', address: `request/${id}`, outcome: 'ok', detail: 'asked' });

test('a backup taken while another connection writes restores into a fresh database: no changes, working keys, ids after the restored ones', async () => {
  const key = MasterKey.generate();
  const source = await fx.database('source');
  const ws = pgWorkspace(source, key);
  expect((await ws.run('init')).code).toBe(0);
  await apply(ws);
  const before = { trainer: await issuedKey(ws, 'trainer'), alice: await issuedKey(ws, 'alice') };

  // SCIM identities and a request, as serve would have them.
  const scim = await openPgScimStore(urlFor(source));
  await scim.create('User', { userName: 'carol@example.com', active: true });
  await scim.close();
  const writer = await openPgStore(urlFor(source), MasterKey.parse(key));
  const first = await writer.createRequest(request(new Date().toISOString()), asked);

  // Another connection appends to the audit chain all through the backup.
  let writes = 0;
  let writing = true;
  const loop = (async () => {
    while (writing) {
      await writer.audit({ actor: 'writer', event: 'test.write', address: null, outcome: 'ok', detail: `write ${writes++}` }, new Date().toISOString());
    }
  })();
  const out = join(scratch(), 'pg.backup');
  let backup;
  try {
    backup = await ws.run('state', 'backup', out);
  } finally {
    writing = false;
    await loop;
    await writer.close();
  }
  expect(backup.code, backup.stderr).toBe(0);
  expect(backup.stdout).toMatch(/Backed up the state of installation \S+ \(2 credentials, SCIM identities\) from PostgreSQL to .*pg\.backup \(mode 0600\)/);
  expect(writes).toBeGreaterThan(0);
  expect(statSync(out).mode & 0o777).toBe(0o600);
  expect(readdirSync(join(out, '..'))).toEqual(['pg.backup']);
  // The file holds sealed secrets, never the key nor a secret in the clear.
  const bytes = readFileSync(out);
  for (const text of [key, before.alice.secretAccessKey, before.trainer.secretAccessKey]) expect(bytes.includes(Buffer.from(text))).toBe(false);

  // A fresh database: a wrong key is refused before anything is written there.
  const target = await fx.database('target');
  const fresh = pgWorkspace(target, MasterKey.generate());
  const wrong = await fresh.run('state', 'restore', out);
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toMatch(/wrong master key: the backup .* was created with a different master key/);
  expect(await hasSchema(target)).toBe(false);

  fresh.env.DATAGRANT_MASTER_KEY = key;
  const restored = await fresh.run('state', 'restore', out);
  expect(restored.code, restored.stderr).toBe(0);
  expect(restored.stdout).toMatch(/Restored the state of installation \S+ \(2 credentials, SCIM identities\) .* into the PostgreSQL store/);
  await expectNoChanges(fresh);
  for (const [name, k] of Object.entries(before)) {
    const exported = await issuedKey(fresh, name);
    expect(exported).toEqual(k);
    await canRead(s3For(moto, exported), 'ai-model-data', 'training/a.txt');
  }
  const verify = await fresh.run('audit', 'verify');
  expect(verify.code, verify.stderr).toBe(0);
  const log = JSON.parse((await fresh.run('audit', 'log', '--json')).stdout) as { event: string }[];
  // What was written up to the snapshot; the backup's own entry comes after it.
  expect(log.map((e) => e.event)).toEqual(expect.arrayContaining(['state.restored', 'test.write', 'request.create']));
  expect(log.map((e) => e.event)).not.toContain('state.backup');

  const users = await openPgScimStore(urlFor(target));
  expect((await users.list('User')).map((u) => u.attrs.userName)).toEqual(['carol@example.com']);
  await users.close();

  // New rows take ids after the restored ones: an apply journals, a request is numbered on.
  const journalMax = Number((await adminQuery<{ m: string }>(target, 'SELECT max(id) AS m FROM datagrant.journal')).rows[0]!.m);
  fresh.writeSpec(`${SPEC}  dave: { type: person, grants: [{ dataset: data, access: read }] }\n`);
  await apply(fresh);
  expect(await keysOf(iam, 'dave')).toHaveLength(1);
  expect(Number((await adminQuery<{ m: string }>(target, 'SELECT min(id) AS m FROM datagrant.journal WHERE address LIKE $1', ['%dave%'])).rows[0]!.m)).toBe(
    journalMax + 1,
  );
  const store = await openPgStore(urlFor(target), MasterKey.parse(key));
  try {
    expect((await store.createRequest(request(new Date().toISOString()), asked)).id).toBe(first.id + 1);
  } finally {
    await store.close();
  }
  expect((await fresh.run('audit', 'verify')).code).toBe(0);
});

test('restore refuses a store that holds a state (unless --force) and one in use, with nothing written', async () => {
  const key = MasterKey.generate();
  const db = await fx.database('held');
  const ws = pgWorkspace(db, key);
  expect((await ws.run('init')).code).toBe(0);
  await apply(ws);
  const out = join(scratch(), 'b');
  expect((await ws.run('state', 'backup', out)).code).toBe(0);

  const audit = async () => (await adminQuery<{ n: string }>(db, 'SELECT count(*) AS n FROM datagrant.audit')).rows[0]!.n;
  const n = await audit();
  const over = await ws.run('state', 'restore', out);
  expect(over.code).toBe(1);
  expect(over.stderr).toMatch(/already holds a state \(.*credentials.*\); restore into a fresh database or schema, or pass --force/);
  expect(await audit()).toBe(n);

  // Another process holds the state lock (an apply, say).
  const store = await openPgStore(urlFor(db), MasterKey.parse(key));
  await store.acquireLock('someone else');
  try {
    const busy = await ws.run('state', 'restore', out, '--force');
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/is in use \(another process holds its state lock/);
    expect(await audit()).toBe(n);
  } finally {
    await store.close();
  }

  const forced = await ws.run('state', 'restore', out, '--force');
  expect(forced.code, forced.stderr).toBe(0);
  await expectNoChanges(ws);
  expect((await ws.run('audit', 'verify')).code).toBe(0);
});

test('a backup of either store restores into the other', async () => {
  // PostgreSQL → SQLite.
  const key = MasterKey.generate();
  const db = await fx.database('cross');
  const ws = pgWorkspace(db, key);
  expect((await ws.run('init')).code).toBe(0);
  await apply(ws);
  const alice = await issuedKey(ws, 'alice');
  const fromPg = join(scratch(), 'from-pg');
  const b = await ws.run('state', 'backup', fromPg);
  expect(b.code, b.stderr).toBe(0);

  const lite = workspace({});
  cleanups.push(() => lite.cleanup());
  lite.writeSpec(SPEC);
  mkdirSync(join(lite.dir, '.datagrant'), { mode: 0o700 });
  writeFileSync(join(lite.dir, '.datagrant/master.key'), `${key}\n`, { mode: 0o600 });
  const toLite = await lite.run('state', 'restore', fromPg);
  expect(toLite.code, toLite.stderr).toBe(0);
  expect(toLite.stdout).toMatch(/\(taken from the PostgreSQL store\)/);
  await expectNoChanges(lite);
  expect(await issuedKey(lite, 'alice')).toEqual(alice);
  // A copy: the SDK marks the credentials object it is given.
  await canRead(s3For(moto, { ...alice }), 'ai-model-data', 'training/a.txt');
  expect((await lite.run('audit', 'verify')).code).toBe(0);

  // SQLite → PostgreSQL, with what the SQLite state wrote since.
  await lite.run('credentials', 'show', 'alice', '--reveal');
  const fromLite = join(scratch(), 'from-lite');
  expect((await lite.run('state', 'backup', fromLite)).code).toBe(0);
  const back = pgWorkspace(await fx.database('back'), key);
  const toPg = await back.run('state', 'restore', fromLite);
  expect(toPg.code, toPg.stderr).toBe(0);
  expect(toPg.stdout).toMatch(/\(taken from the SQLite store\)/);
  await expectNoChanges(back);
  expect(await issuedKey(back, 'alice')).toEqual(alice);
  const verify = await back.run('audit', 'verify');
  expect(verify.code, verify.stderr).toBe(0);
});

test('a backup of the PostgreSQL store edited without the key is refused by either store, with nothing written', async () => {
  const key = MasterKey.generate();
  const ws = pgWorkspace(await fx.database('edited'), key);
  expect((await ws.run('init')).code).toBe(0);
  await apply(ws);
  const out = join(scratch(), 'pg.backup');
  const made = await ws.run('state', 'backup', out);
  expect(made.code, made.stderr).toBe(0);
  // Write access to the file, not the key: a pending slot that would make recovery delete a user.
  const file = new Database(out);
  file
    .prepare("INSERT INTO journal (run_id, address, action, started_at, outcome) VALUES ('run-x', 'aws:user/alice', 'delete', ?, 'pending')")
    .run(new Date().toISOString());
  file.close();

  const target = await fx.database('edited-target');
  const intoPg = await pgWorkspace(target, key).run('state', 'restore', out);
  expect(intoPg.code).toBe(1);
  expect(intoPg.stderr).toMatch(/the backup .* was changed after it was made: its content does not match its MAC under the master key.*nothing was changed/);
  expect(await hasSchema(target)).toBe(false);

  const lite = workspace({ DATAGRANT_MASTER_KEY: key });
  cleanups.push(() => lite.cleanup());
  const intoLite = await lite.run('state', 'restore', out);
  expect(intoLite.code).toBe(1);
  expect(intoLite.stderr).toMatch(/was changed after it was made/);
  expect(existsSync(join(lite.dir, '.datagrant/state.db'))).toBe(false);
});
