// PgScimStore against a real PostgreSQL (DATAGRANT_TEST_PG_URL, printed by scripts/pg-setup.sh).
// Without a server this file fails, loudly: it is never skipped.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { openPgScimStore, type PgScimStore } from '../../src/scim/store/postgres.js';
import { adminQuery, pgFixture, testPgUrl, urlFor } from '../support/pg.js';
import { legacyPgDdl, legacyRows } from './legacy.js';
import { scimNameMigrationContract, scimStoreContract } from './store-contract.js';

testPgUrl();

const fx = pgFixture('dg_scim');
let db: string;
let n = 0;
beforeAll(async () => {
  db = await fx.database('scim');
});
afterAll(async () => {
  await fx.cleanup();
});

scimStoreContract(async (opts) => openPgScimStore(urlFor(db), { ...opts, schema: `scim_t${++n}` }));

scimNameMigrationContract(async (users) => {
  const schema = `scim_legacy${++n}`;
  await adminQuery(db, `CREATE SCHEMA ${schema}; ${legacyPgDdl(schema)}`);
  for (const row of legacyRows(users))
    await adminQuery(db, `INSERT INTO ${schema}.scim_users (id, unique_key, created, last_modified, version, attrs) VALUES ($1, $2, $3, $4, $5, $6)`, [...row]);
  return openPgScimStore(urlFor(db), { schema });
});

test('replicas opening together all succeed and see one set of tables', async () => {
  const stores: PgScimStore[] = await Promise.all([1, 2, 3, 4].map(() => openPgScimStore(urlFor(db), { schema: 'scim_race' })));
  try {
    const tables = await adminQuery<{ tablename: string }>(db, 'SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', ['scim_race']);
    expect(tables.rows.map((t) => t.tablename)).toEqual(['scim_groups', 'scim_principal_names', 'scim_users', 'scim_work']);
    // Two replicas racing to create the same userName: exactly one wins.
    const results = await Promise.allSettled(stores.map((s) => s.create('User', { userName: 'Same@x.com' })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').map((r) => r.reason.status)).toEqual([409, 409, 409]);
  } finally {
    for (const s of stores) await s.close();
  }
});

test('a URL that cannot be opened is a StoreError without the password', async () => {
  const u = new URL(urlFor(db));
  u.password = 'wrong-secret-pw';
  await expect(openPgScimStore(u.toString())).rejects.toThrow(/^cannot open the SCIM tables in .*\*\*\*/);
  await expect(openPgScimStore(u.toString())).rejects.not.toThrow(/wrong-secret-pw/);
});
