// PgStore against a real PostgreSQL (DATAGRANT_TEST_PG_URL; no skipping): the StateStore
// contract, then what only a shared PostgreSQL state has (schemas, sessions, pools). One database
// for the file; every test gets its own freshly created schema, dropped afterwards. Several
// PgStore instances on one schema stand for several `datagrant serve` replicas.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { StoreError } from '../../src/core/errors.js';
import type { Change } from '../../src/core/types.js';
import { MasterKey } from '../../src/store/crypto.js';
import { openPgStore, type PgStore } from '../../src/store/postgres.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { AuditInput } from '../../src/store/store.js';
import { adminQuery, pgFixture, testPgUrl, urlFor } from '../support/pg.js';
import { stateStoreContract, type StoreHarness } from './store-contract.js';

// Without a server this file fails here, loudly.
testPgUrl();

const AT = '2026-11-28T00:00:00.000Z';
const TABLES = ['applied', 'audit', 'audit_head', 'backends', 'credentials', 'journal', 'locks', 'meta'];
const fx = pgFixture('dg_pgstore');
let db: string;
let url: string;
let schemaCount = 0;
let schema: string;
let key: MasterKey;
let store: PgStore;
const opened: PgStore[] = [];

/** Another replica (or the same one restarted): a new PgStore on the test's schema. */
async function replica(k: MasterKey = key, s: string = schema): Promise<PgStore> {
  const st = await openPgStore(url, k, { schema: s });
  opened.push(st);
  return st;
}

/** Run SQL as the admin: with values, one statement as written; without, statements with the test's schema on the search path. */
async function sql<T extends Record<string, unknown> = Record<string, unknown>>(text: string, values?: unknown[]): Promise<T[]> {
  if (values) return (await adminQuery<T>(db, text, values)).rows;
  const r = await adminQuery<T>(db, `SET search_path TO "${schema}"; ${text}`);
  const results = (Array.isArray(r) ? r : [r]) as { rows: T[] }[];
  return results.at(-1)!.rows;
}

const backendOfHolder = async () => Number((await sql<{ backend_pid: number }>('SELECT backend_pid FROM locks'))[0]!.backend_pid);

beforeAll(async () => {
  db = await fx.database('state');
  url = urlFor(db);
});
afterAll(async () => {
  await fx.cleanup();
});

async function fresh(): Promise<void> {
  schema = `dg_t${++schemaCount}`;
  key = MasterKey.parse(MasterKey.generate());
  store = await replica();
}

async function dropAll(): Promise<void> {
  for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  await adminQuery(db, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

stateStoreContract(
  'PostgreSQL',
  async (): Promise<StoreHarness> => {
    await fresh();
    return {
      store,
      key,
      reopen: (k) => replica(k),
      exec: async (text) => void (await sql(text)),
      query: (text) => sql(text),
      atRest: async () => {
        const lines: string[] = [];
        for (const t of TABLES) for (const r of await sql<{ line: string }>(`SELECT t::text AS line FROM ${t} t`)) lines.push(r.line);
        return lines.join('\n');
      },
      holdElsewhere: async (holder) => {
        const other = await replica();
        await other.acquireLock(holder);
        return { pid: process.pid, release: () => other.releaseLock() };
      },
      leaveDeadHolder: async (holder) => {
        // The replica's process is killed: its connection goes, and with it the advisory lock.
        await (await replica()).acquireLock(holder);
        await adminQuery(db, 'SELECT pg_terminate_backend($1)', [await backendOfHolder()]);
      },
      close: dropAll,
    };
  },
  { replicas: true },
);

describe('PostgreSQL only', () => {
  beforeEach(fresh);
  afterEach(dropAll);

  const change = (address: string) => ({ address, action: 'create' }) as unknown as Change;
  const entry = (i: number, actor = 'tester'): AuditInput => ({
    actor,
    event: 'change.create',
    address: `aws:user/u${i}`,
    outcome: 'ok',
    detail: i % 2 ? null : `d${i}`,
  });

  describe('opening', () => {
    test('creates the schema and tables once; replicas starting together all succeed', async () => {
      schema = `dg_t${++schemaCount}_race`;
      const stores = await Promise.all([1, 2, 3, 4, 5, 6].map(() => replica()));
      expect(stores).toHaveLength(6);
      const tables = await sql<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', [schema]);
      expect(tables.map((t) => t.tablename)).toEqual([
        'applied',
        'audit',
        'audit_head',
        'backends',
        'credentials',
        'journal',
        'locks',
        'meta',
        'requests',
        'review_decisions',
        'reviews',
        'sessions',
      ]);
      // Reopening changes nothing and keeps the data; replicas that started together agree on one installation id.
      await stores[0]!.setApplied('a', 'h');
      expect(await (await replica()).applied()).toEqual({ a: 'h' });
      expect(new Set(await Promise.all(stores.map((s) => s.installation()))).size).toBe(1);
    });

    test('a schema made before access reviews and requests gets their tables when opened, keeping its data', async () => {
      await store.audit(entry(1), AT);
      await sql('DROP TABLE review_decisions; DROP TABLE reviews; DROP TABLE requests');
      const s = await replica();
      expect(await s.reviews()).toEqual([]);
      expect(await s.requests()).toEqual([]);
      expect(await s.verifyAudit()).toEqual({ ok: true, entries: 1 });
    });

    test('the default schema is `datagrant`', async () => {
      const s = await openPgStore(url, key);
      opened.push(s);
      try {
        expect(s.schema).toBe('datagrant');
        await s.setApplied('x', 'y');
        expect(await sql('SELECT * FROM datagrant.applied', [])).toEqual([{ address: 'x', attrs_hash: 'y' }]);
      } finally {
        await s.close();
        await adminQuery(db, 'DROP SCHEMA datagrant CASCADE');
      }
    });

    test('a role without CREATE rights can use a schema prepared for it', async () => {
      const role = fx.role(fx.name('app'));
      const password = 'pw-app-1234';
      await adminQuery(db, `CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`);
      await adminQuery(
        db,
        `GRANT USAGE ON SCHEMA "${schema}" TO "${role}"; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema}" TO "${role}"`,
      );
      const s = await openPgStore(urlFor(db, { name: role, password }), key, { schema });
      opened.push(s);
      await s.journalBegin('run', change('aws:user/a'), AT);
      await s.audit(entry(1), AT);
      await s.acquireLock('app');
      expect((await store.lockHolder())?.holder).toBe('app');
      await s.releaseLock();
      expect(await store.verifyAudit()).toEqual({ ok: true, entries: 1 });
    });

    test('errors name the store without its password; bad schema names are refused', async () => {
      const err = await openPgStore('postgres://someone:sekrit-pw@127.0.0.1:1/nowhere', key).catch((e: Error) => e);
      expect(err).toBeInstanceOf(StoreError);
      expect(String(err)).toMatch(/cannot open the state store postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/nowhere/);
      expect(String(err)).not.toMatch(/sekrit/);
      await expect(openPgStore(url, key, { schema: 'x"; DROP TABLE y; --' })).rejects.toThrow(/plain identifier/);
    });
  });

  describe('one MAC for both stores', () => {
    test('an untouched chain has the very hashes SqliteStore writes', async () => {
      const lite = new SqliteStore(':memory:', key);
      for (let i = 1; i <= 5; i++) for (const s of [store, lite]) await s.audit(entry(i), AT);
      expect(await store.verifyAudit()).toEqual({ ok: true, entries: 5 });
      expect(await store.auditEntries()).toEqual(await lite.auditEntries());
      await lite.close();
    });
  });

  describe('lock', () => {
    test('the lock passes between replicas, both ways', async () => {
      const other = await replica();
      await store.acquireLock('alice@serve-1 (apply)');
      await expect(other.acquireLock('bob@serve-2 (apply)')).rejects.toThrow(
        new RegExp(`locked by alice@serve-1 \\(apply\\) \\(pid ${process.pid} on .+, since 20\\d\\d-.+\\); wait for it to finish, or pass --lock-timeout`),
      );
      // Released, the other replica takes it, and now refuses the first.
      await store.releaseLock();
      expect(await other.lockHolder()).toBeUndefined();
      await other.acquireLock('bob@serve-2');
      expect((await store.lockHolder())?.holder).toBe('bob@serve-2');
      await expect(store.acquireLock('alice')).rejects.toThrow(/locked by bob@serve-2/);
      await other.releaseLock();
      expect(await store.lockHolder()).toBeUndefined();
    });

    test('a replica whose connection dies loses the lock to PostgreSQL; the next one takes it', async () => {
      const other = await replica();
      await store.acquireLock('alice@serve-1');
      // The replica's process is killed: its connection goes, and with it the advisory lock.
      await adminQuery(db, 'SELECT pg_terminate_backend($1)', [await backendOfHolder()]);
      // Its row is still there but no longer counts.
      await expect.poll(() => other.lockHolder(), { timeout: 5000 }).toBeUndefined();
      expect(await sql('SELECT holder FROM locks')).toEqual([{ holder: 'alice@serve-1' }]);
      await other.acquireLock('bob@serve-2', 5000);
      expect((await other.lockHolder())?.holder).toBe('bob@serve-2');
      // The dead holder's release neither throws nor frees the new holder's lock.
      await store.releaseLock();
      expect((await other.lockHolder())?.holder).toBe('bob@serve-2');
      await expect(store.acquireLock('alice again')).rejects.toThrow(/locked by bob@serve-2/);
      // The store itself still works on fresh connections.
      await store.setApplied('x', 'y');
      expect(await other.applied()).toEqual({ x: 'y' });
    });

    test('after the holder closes (its pool ended), another replica takes the lock at once', async () => {
      const other = await replica();
      await store.acquireLock('alice@serve-1');
      await store.close();
      await other.acquireLock('bob@serve-2');
      expect((await other.lockHolder())?.holder).toBe('bob@serve-2');
    });

    test('a holder row left without its advisory lock does not count', async () => {
      await sql(
        "INSERT INTO locks (name, holder, pid, host, acquired_at, backend_pid) VALUES ('state', 'ghost', 1, 'gone', '2026-01-01T00:00:00.000Z', 999999)",
      );
      expect(await store.lockHolder()).toBeUndefined();
      await store.acquireLock('alice');
      expect(await store.lockHolder()).toMatchObject({ holder: 'alice', pid: process.pid });
    });

    test('taken twice by one replica, one release frees it for another', async () => {
      const other = await replica();
      await store.acquireLock('alice (plan)');
      await store.acquireLock('alice (apply)');
      await store.releaseLock();
      await other.acquireLock('bob');
      expect((await store.lockHolder())?.holder).toBe('bob');
    });

    test('stores in different schemas do not share the lock', async () => {
      const elsewhere = await replica(key, `${schema}_other`);
      try {
        await store.acquireLock('alice');
        await elsewhere.acquireLock('bob');
        expect((await elsewhere.lockHolder())?.holder).toBe('bob');
        expect((await store.lockHolder())?.holder).toBe('alice');
      } finally {
        await elsewhere.close();
        await adminQuery(db, `DROP SCHEMA "${schema}_other" CASCADE`);
      }
    });
  });
});
