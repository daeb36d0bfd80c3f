import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { writeLegacySqlite } from './legacy.js';
import { scimNameMigrationContract, scimStoreContract } from './store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'dg-scim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

scimStoreContract(async (opts) => new SqliteScimStore(':memory:', opts));

let legacy = 0;
scimNameMigrationContract(async (users) => {
  const file = join(dir, `legacy-${++legacy}.db`);
  writeLegacySqlite(file, users);
  return new SqliteScimStore(file);
});

test('shares the state store handle: scim_ tables next to the others, left open on close', async () => {
  const db = new Database(join(dir, 'state.db'));
  db.exec('CREATE TABLE credentials (x TEXT)');
  const store = new SqliteScimStore(db);
  await store.create('User', { userName: 'a@x.com' });
  await store.close();
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
  expect(tables).toEqual(['credentials', 'scim_groups', 'scim_principal_names', 'scim_users', 'scim_work']);
  db.close();
});

test('a file path survives reopening', async () => {
  const file = join(dir, 'scim.db');
  const s1 = new SqliteScimStore(file);
  const a = await s1.create('Group', { displayName: 'G' });
  await s1.close();
  const s2 = new SqliteScimStore(file);
  expect(await s2.get('Group', a.id)).toEqual(a);
  await s2.close();
});

test('a file of its own is created readable by the owner only (it holds names and e-mail addresses)', async () => {
  const file = join(dir, 'scim-mode.db');
  const store = new SqliteScimStore(file);
  await store.create('User', { userName: 'a@x.com' });
  await store.close();
  expect(statSync(file).mode & 0o777).toBe(0o600);
});
