// PgStore against a real PostgreSQL (DATAGRANT_TEST_PG_URL; no skipping). One database for the
// file; every test gets its own freshly created schema, dropped afterwards. Several PgStore
// instances on one schema stand for several `datagrant serve` replicas.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { StoreError } from '../../src/core/errors.js';
import type { Change } from '../../src/core/types.js';
import { MasterKey } from '../../src/store/crypto.js';
import { openPgStore, type PgStore } from '../../src/store/postgres.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { AuditInput } from '../../src/store/store.js';
import { adminQuery, pgFixture, testPgUrl, urlFor } from '../support/pg.js';

// Without a server this file fails here, loudly.
testPgUrl();

const AT = '2026-11-28T00:00:00.000Z';
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

beforeAll(async () => {
  db = await fx.database('state');
  url = urlFor(db);
});
afterAll(async () => {
  await fx.cleanup();
});
beforeEach(async () => {
  schema = `dg_t${++schemaCount}`;
  key = MasterKey.parse(MasterKey.generate());
  store = await replica();
});
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  await adminQuery(db, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
});

const row = (id: string, address = 'aws:key/alice') => ({ address, credentialId: id, createdAt: AT, backend: 'aws', principal: 'alice' });
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
    expect(tables.map((t) => t.tablename)).toEqual(['applied', 'audit', 'audit_head', 'backends', 'credentials', 'journal', 'locks', 'meta']);
    // Reopening changes nothing and keeps the data; replicas that started together agree on one installation id.
    await stores[0]!.setApplied('a', 'h');
    expect(await (await replica()).applied()).toEqual({ a: 'h' });
    expect(new Set(await Promise.all(stores.map((s) => s.installation()))).size).toBe(1);
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

describe('credentials', () => {
  test('are stored encrypted: no column of any table holds the secret', async () => {
    // GIVEN a secret that is easy to search for
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETzz';
    // WHEN it is stored (and rotated, so a retiring row exists too) and the journal and audit are written
    await store.saveCredential(row('AKIAONE'), { accessKeyId: 'AKIAONE', secretAccessKey: `${secret}-old` });
    await store.saveCredential(row('AKIATWO'), { accessKeyId: 'AKIATWO', secretAccessKey: secret }, '2026-11-29T00:00:00.000Z');
    await store.journalBegin('run1', change('aws:key/alice'), AT);
    await store.audit({ actor: 't', event: 'credential.issue', address: 'aws:key/alice', outcome: 'ok', detail: null }, AT);
    // THEN no row, read back as text, contains it: neither plainly, nor hex- or base64-encoded
    const needles = [secret, Buffer.from(secret).toString('hex'), Buffer.from(secret).toString('base64').slice(0, 40), 'secretAccessKey'];
    let scanned = 0;
    for (const t of ['credentials', 'applied', 'journal', 'audit', 'audit_head', 'locks']) {
      for (const r of await sql<{ line: string }>(`SELECT t::text AS line FROM ${t} t`)) {
        scanned++;
        for (const n of needles) expect(r.line.toLowerCase()).not.toContain(n.toLowerCase());
      }
    }
    expect(scanned).toBeGreaterThanOrEqual(5);
    const [c] = await sql<{ nonce: Buffer; tag: Buffer }>("SELECT nonce, tag FROM credentials WHERE credential_id = 'AKIATWO'");
    expect([c!.nonce.length, c!.tag.length]).toEqual([12, 16]);
    // and only the decrypting read returns it
    expect((await store.revealCredential('aws:key/alice'))?.secret.secretAccessKey).toBe(secret);
    expect(await (await replica()).revealCredential('aws:key/alice')).toEqual({
      row: { address: 'aws:key/alice', credentialId: 'AKIATWO', createdAt: AT, backend: 'aws', principal: 'alice', state: 'current' },
      secret: { accessKeyId: 'AKIATWO', secretAccessKey: secret },
    });
  });

  test('a ciphertext moved to another address does not decrypt (bound to its address)', async () => {
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
    await store.saveCredential({ ...row('AKIATWO', 'aws:key/bob'), principal: 'bob' }, { secretAccessKey: 's2' });
    await sql(
      "UPDATE credentials b SET ciphertext = a.ciphertext, nonce = a.nonce, tag = a.tag FROM credentials a WHERE a.address = 'aws:key/alice' AND b.address = 'aws:key/bob'",
    );
    await expect(store.revealCredential('aws:key/bob')).rejects.toThrow(/cannot decrypt the credential for aws:key\/bob#AKIATWO/);
    expect((await store.revealCredential('aws:key/alice'))?.secret).toEqual({ secretAccessKey: 's1' });
  });

  test('a ciphertext moved to another credential id of the same address does not decrypt', async () => {
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
    await sql("UPDATE credentials SET credential_id = 'AKIAEVIL'");
    await expect(store.revealCredential('aws:key/alice')).rejects.toThrow(/cannot decrypt the credential for aws:key\/alice#AKIAEVIL/);
  });

  test('a wrong master key is refused when the store opens, and the error holds no secret', async () => {
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 'topsecretvalue' });
    const err = await replica(MasterKey.parse(MasterKey.generate())).catch((e: Error) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect(String(err)).toMatch(/wrong master key/);
    expect(String(err)).not.toMatch(/topsecretvalue|tamper/);
    // A state made before key checks: the key is judged by whether it opens a stored credential.
    await sql(`DELETE FROM ${schema}.meta WHERE key = 'key_check'`, []);
    await expect(replica(MasterKey.parse(MasterKey.generate()))).rejects.toThrow(/wrong master key/);
    expect((await (await replica()).revealCredential('aws:key/alice'))?.secret).toEqual({ secretAccessKey: 'topsecretvalue' });
  });

  test('forgetting a backend removes its records and nothing else', async () => {
    await store.rememberBackend({ name: 'wh', type: 'postgres', settings: { url: 'postgres://x@h/db' } });
    await store.rememberBackend({ name: 'aws', type: 'aws', settings: {} });
    await store.saveCredential({ ...row('P1'), address: 'wh:password/alice', backend: 'wh' }, { password: 'p' });
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
    await store.setApplied('wh:role/alice', 'h1');
    await store.setApplied('whx:role/alice', 'h2');
    await store.forgetBackend('wh');
    expect((await store.backends()).map((b) => b.name)).toEqual(['aws']);
    expect((await store.credentials()).map((c) => c.address)).toEqual(['aws:key/alice']);
    expect(await store.applied()).toEqual({ 'whx:role/alice': 'h2' });
  });

  test('rotation keeps exactly one current credential and retires the previous one', async () => {
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
    await store.saveCredential(row('AKIATWO'), { secretAccessKey: 's2' }, '2026-11-29T00:00:00.000Z');
    const rows = await store.credentials();
    expect(rows.map((r) => [r.credentialId, r.state, r.retireAt ?? null])).toEqual([
      ['AKIAONE', 'retiring', '2026-11-29T00:00:00.000Z'],
      ['AKIATWO', 'current', null],
    ]);
    expect((await store.revealCredential('aws:key/alice'))?.secret.secretAccessKey).toBe('s2');
    // Without a grace period the previous credential is erased.
    await store.saveCredential(row('AKIATHREE'), { secretAccessKey: 's3' });
    expect((await store.credentials()).map((r) => r.credentialId)).toEqual(['AKIAONE', 'AKIATHREE']);
    // retire and erase
    await store.retireCredential('aws:key/alice', 'AKIATHREE', '2026-12-01T00:00:00.000Z');
    expect(await store.revealCredential('aws:key/alice')).toBeUndefined();
    await store.eraseCredential('aws:key/alice', 'AKIAONE');
    expect((await store.credentials()).map((r) => [r.credentialId, r.state, r.retireAt])).toEqual([['AKIATHREE', 'retiring', '2026-12-01T00:00:00.000Z']]);
  });

  test('lists credentials in the same order as SqliteStore (byte order, not the database collation)', async () => {
    const lite = new SqliteStore(':memory:', key);
    const addresses = ['aws:key/Zed', 'aws:key/alice', 'aws:key/_x', 'aws:key/a-b', 'aws:key/a.b', 'aws:key/ä'];
    for (const [i, a] of addresses.entries()) {
      for (const s of [store, lite]) await s.saveCredential({ ...row(`K${i}`, a), createdAt: `2026-11-28T00:00:0${i}.000Z` }, { v: a });
    }
    expect(await store.credentials()).toEqual(await lite.credentials());
    await lite.close();
  });

  test('one current credential per address is enforced by the database itself', async () => {
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
    await expect(
      sql("INSERT INTO credentials SELECT address, 'AKIADUP', backend, principal, 'current', created_at, NULL, nonce, ciphertext, tag FROM credentials"),
    ).rejects.toThrow(/one_current_credential/);
  });

  test('two replicas rotating one address at once leave exactly one current credential', async () => {
    const other = await replica();
    await store.saveCredential(row('AKIA0'), { v: '0' });
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? store : other).saveCredential(row(`AKIA${i + 1}`), { v: String(i + 1) }, '2026-11-29T00:00:00.000Z')),
    );
    const rows = await store.credentials();
    expect(rows).toHaveLength(11);
    expect(rows.filter((r) => r.state === 'current')).toHaveLength(1);
    const current = rows.find((r) => r.state === 'current')!;
    expect((await other.revealCredential('aws:key/alice'))?.secret.v).toBe(current.credentialId.slice(4));
  });
});

describe('applied hashes and the journal', () => {
  test('applied hashes are set, replaced and removed', async () => {
    await store.setApplied('aws:user/a', 'h1');
    await store.setApplied('aws:user/b', 'h2');
    await store.setApplied('aws:user/a', 'h3');
    await store.setApplied('aws:user/b', null);
    expect(await (await replica()).applied()).toEqual({ 'aws:user/a': 'h3' });
  });

  test('journal entries, newest first; recovery marks pending ones interrupted, once, like SqliteStore', async () => {
    const lite = new SqliteStore(':memory:', key);
    for (const s of [store, lite]) {
      const a = await s.journalBegin('run1', change('aws:user/a'), AT);
      const b = await s.journalBegin('run1', change('aws:user/b'), AT);
      await s.journalBegin('run1', change('aws:user/c'), AT);
      await s.journalEnd(a, 'ok', '2026-11-28T00:00:01.000Z');
      await s.journalEnd(b, 'failed', '2026-11-28T00:00:02.000Z', 'AccessDenied');
      await s.journalBegin('run1', change('aws:user/d'), AT);
    }
    expect(await store.journal()).toEqual(await lite.journal());
    expect((await store.journal(2)).map((e) => e.address)).toEqual(['aws:user/d', 'aws:user/c']);
    const recovered = await store.recoverJournal();
    expect(recovered).toEqual(await lite.recoverJournal());
    expect(recovered.map((e) => [e.id, e.address, e.outcome])).toEqual([
      [3, 'aws:user/c', 'pending'],
      [4, 'aws:user/d', 'pending'],
    ]);
    expect(await store.recoverJournal()).toEqual([]);
    expect(await store.journal()).toEqual(await lite.journal());
    expect((await store.journal()).map((e) => e.outcome)).toEqual(['interrupted', 'interrupted', 'failed', 'ok']);
    await lite.close();
  });

  test('two replicas recovering at once each get a disjoint share of the pending entries', async () => {
    const other = await replica();
    for (let i = 0; i < 200; i++) await store.journalBegin('run', change(`aws:user/u${i}`), AT);
    const [a, b] = await Promise.all([store.recoverJournal(), other.recoverJournal()]);
    const ids = [...a, ...b].map((e) => e.id).sort((x, y) => x - y);
    expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect((await store.journal(1000)).every((e) => e.outcome === 'interrupted')).toBe(true);
  });
});

describe('audit chain', () => {
  const fill = async (n: number, s: { audit: PgStore['audit'] } = store) => {
    for (let i = 1; i <= n; i++) await s.audit(entry(i), AT);
  };

  test('an untouched chain verifies, with the very hashes SqliteStore writes (one MAC for both)', async () => {
    const lite = new SqliteStore(':memory:', key);
    await fill(5);
    await fill(5, lite);
    expect(await store.verifyAudit()).toEqual({ ok: true, entries: 5 });
    expect(await store.auditEntries()).toEqual(await lite.auditEntries());
    expect((await store.auditEntries()).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    await lite.close();
  });

  test('an empty chain verifies', async () => {
    expect(await store.verifyAudit()).toEqual({ ok: true, entries: 0 });
  });

  test('another master key is refused when the store opens (key check), before the chain is read', async () => {
    await fill(2);
    await expect(replica(MasterKey.parse(MasterKey.generate()))).rejects.toThrow(/wrong master key: .*different master key/);
    expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 2 });
  });

  // [what, PostgreSQL tampering, the same on SQLite, first bad seq, reason]
  test.each([
    ['an edited entry', "UPDATE audit SET outcome = 'failed' WHERE seq = 3", null, 3, /changed/],
    ['a deleted entry', 'DELETE FROM audit WHERE seq = 3', null, 4, /removed or inserted/],
    ['a deleted last entry', 'DELETE FROM audit WHERE seq = 5', null, 5, /removed/],
    ['a deleted last entry and head', 'DELETE FROM audit WHERE seq = 5; DELETE FROM audit_head', null, 1, /head of the chain is missing/],
    [
      'an inserted entry',
      "INSERT INTO audit (seq, at, actor, event, address, outcome, detail, prev_hash, hash) SELECT 6, at, actor, event, 'aws:user/evil', outcome, detail, hash, hash FROM audit WHERE seq = 5",
      null,
      6,
      /changed/,
    ],
    [
      'an entry inserted in the middle',
      "UPDATE audit SET seq = seq + 10 WHERE seq >= 3; UPDATE audit SET seq = seq - 9 WHERE seq >= 13; INSERT INTO audit (seq, at, actor, event, address, outcome, detail, prev_hash, hash) SELECT 3, at, actor, event, 'aws:user/evil', outcome, detail, hash, hash FROM audit WHERE seq = 2",
      "UPDATE audit SET seq = seq + 10 WHERE seq >= 3; UPDATE audit SET seq = seq - 9 WHERE seq >= 13; INSERT INTO audit (seq, at, actor, event, address, outcome, detail, prev_hash, hash) SELECT 3, at, actor, event, 'aws:user/evil', outcome, detail, hash, hash FROM audit WHERE seq = 2",
      3,
      /changed/,
    ],
    [
      'swapped entries',
      'UPDATE audit SET seq = 102 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 102',
      'UPDATE audit SET seq = CASE seq WHEN 2 THEN 102 WHEN 4 THEN 2 END WHERE seq IN (2, 4); UPDATE audit SET seq = 4 WHERE seq = 102',
      2,
      /does not follow/,
    ],
    ['a recomputed plain hash', "UPDATE audit SET address = 'aws:user/x', hash = 'deadbeef' WHERE seq = 2", null, 2, /changed/],
    ['an altered head', 'UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit WHERE seq = 4)', null, 4, /head of the chain was altered/],
  ])('detects %s and names the first bad entry, as SqliteStore does', async (_what, pgSql, liteSql, firstBad, reason) => {
    const lite = new SqliteStore(':memory:', key);
    await fill(5);
    await fill(5, lite);
    await sql(pgSql);
    lite.db.exec(liteSql ?? pgSql);
    const v = await store.verifyAudit();
    expect(v.ok).toBe(false);
    expect(v.firstBad?.seq).toBe(firstBad);
    expect(v.firstBad?.reason).toMatch(reason);
    expect(v).toEqual(await lite.verifyAudit());
    await lite.close();
  });

  test('two replicas appending 50 entries each at once keep one chain, and verifying meanwhile never cries wolf', async () => {
    const other = await replica();
    let appending = true;
    const verdicts: unknown[] = [];
    const verifier = (async () => {
      while (appending) {
        const v = await other.verifyAudit();
        if (!v.ok) verdicts.push(v);
      }
    })();
    await Promise.all([
      ...Array.from({ length: 50 }, (_, i) => store.audit(entry(i, 'replica-a'), AT)),
      ...Array.from({ length: 50 }, (_, i) => other.audit(entry(i, 'replica-b'), AT)),
    ]);
    appending = false;
    await verifier;
    expect(verdicts).toEqual([]);
    expect(await store.verifyAudit()).toEqual({ ok: true, entries: 100 });
    const entries = await other.auditEntries();
    expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(entries.filter((e) => e.actor === 'replica-a')).toHaveLength(50);
    const [head] = await sql<{ seq: string }>('SELECT seq FROM audit_head');
    expect(Number(head!.seq)).toBe(100);
  });
});

describe('lock', () => {
  const backendOfHolder = async () => Number((await sql<{ backend_pid: number }>('SELECT backend_pid FROM locks'))[0]!.backend_pid);

  test('another replica cannot take it; the error names the holder', async () => {
    const other = await replica();
    await store.acquireLock('alice@serve-1 (apply)');
    await expect(other.acquireLock('bob@serve-2 (apply)')).rejects.toThrow(
      new RegExp(`locked by alice@serve-1 \\(apply\\) \\(pid ${process.pid} on .+, since 20\\d\\d-.+\\); wait for it to finish, or pass --lock-timeout`),
    );
    const started = Date.now();
    await expect(other.acquireLock('bob', 600)).rejects.toThrow(/locked by alice@serve-1/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
    expect(await other.lockHolder()).toMatchObject({ holder: 'alice@serve-1 (apply)', pid: process.pid });
    // Released, the other replica takes it.
    await store.releaseLock();
    expect(await other.lockHolder()).toBeUndefined();
    await other.acquireLock('bob@serve-2');
    expect((await store.lockHolder())?.holder).toBe('bob@serve-2');
    await expect(store.acquireLock('alice')).rejects.toThrow(/locked by bob@serve-2/);
    await other.releaseLock();
    expect(await store.lockHolder()).toBeUndefined();
  });

  test('a waiting replica gets the lock as soon as it is released', async () => {
    const other = await replica();
    await store.acquireLock('alice');
    const waiting = other.acquireLock('bob', 10_000);
    await new Promise((r) => setTimeout(r, 400));
    await store.releaseLock();
    await waiting;
    expect((await store.lockHolder())?.holder).toBe('bob');
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
    await sql("INSERT INTO locks (name, holder, pid, host, acquired_at, backend_pid) VALUES ('state', 'ghost', 1, 'gone', '2026-01-01T00:00:00.000Z', 999999)");
    expect(await store.lockHolder()).toBeUndefined();
    await store.acquireLock('alice');
    expect(await store.lockHolder()).toMatchObject({ holder: 'alice', pid: process.pid });
  });

  test('taking it again in the same store only renames the holder; one release frees it', async () => {
    const other = await replica();
    await store.acquireLock('alice (plan)');
    await store.acquireLock('alice (apply)');
    expect((await other.lockHolder())?.holder).toBe('alice (apply)');
    await store.releaseLock();
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
