// SqliteStore: the StateStore contract, then what only a state file has (its mode, a lost file).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { stateStoreContract, type StoreHarness } from './store-contract.js';

stateStoreContract(
  'SQLite',
  async (): Promise<StoreHarness> => {
    const dir = mkdtempSync(join(tmpdir(), 'dg-store-'));
    const file = join(dir, 'state.db');
    const key = MasterKey.parse(MasterKey.generate());
    const opened: SqliteStore[] = [];
    const open = (k: MasterKey = key) => {
      const s = new SqliteStore(file, k);
      opened.push(s);
      return s;
    };
    const store = open();
    return {
      store,
      key,
      reopen: async (k) => open(k),
      exec: async (sql) => void store.db.exec(sql),
      query: async <T>(sql: string) => store.db.prepare(sql).all() as T[],
      atRest: async () => {
        store.db.pragma('wal_checkpoint(TRUNCATE)');
        return [file, `${file}-wal`]
          .filter((f) => existsSync(f))
          .map((f) => readFileSync(f).toString('latin1'))
          .join('\n');
      },
      holdElsewhere: async (holder) => {
        // A process may take over its own lock (the pid is its own): the lock taken here is made
        // to look held by another live process on this host, the test runner's parent.
        const other = open();
        await other.acquireLock(holder);
        other.db.prepare('UPDATE locks SET pid = ?').run(process.ppid);
        return {
          pid: process.ppid,
          release: async () => {
            other.db.prepare('UPDATE locks SET pid = ?').run(process.pid);
            await other.releaseLock();
          },
        };
      },
      leaveDeadHolder: async (holder) => {
        const child = spawn(process.execPath, ['-e', '0']);
        const pid = child.pid!;
        await new Promise((r) => child.on('exit', r));
        store.db
          .prepare("INSERT INTO locks (name, holder, pid, host, acquired_at, heartbeat_at) VALUES ('state', ?, ?, ?, '2026-11-28T00:00:00.000Z', 0)")
          .run(holder, pid, hostname());
      },
      close: async () => {
        for (const s of opened) await s.close().catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  { replicas: false },
);

describe('the SQLite state file', () => {
  let dir: string;
  let key: MasterKey;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dg-store-'));
    key = MasterKey.parse(MasterKey.generate());
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('is created readable by its owner only', async () => {
    const store = new SqliteStore(join(dir, 'state.db'), key);
    await store.saveCredential(
      { address: 'aws:key/alice', credentialId: 'AKIAONE', createdAt: '2026-11-28T00:00:00.000Z', backend: 'aws', principal: 'alice' },
      {
        secretAccessKey: 's1',
      },
    );
    await store.close();
    expect(statSync(join(dir, 'state.db')).mode & 0o777).toBe(0o600);
  });

  test('an empty (0-byte) or unreadable state file is an error naming the file, never a fresh start', async () => {
    const file = join(dir, 'state.db');
    writeFileSync(file, '');
    expect(() => new SqliteStore(file, key)).toThrow(`the state store ${file} is empty (0 bytes)`);
    writeFileSync(file, 'this is not a database, just text that got here somehow');
    expect(() => new SqliteStore(file, key)).toThrow(/cannot open the state store .*state\.db: .*not a database.*backup/);
    rmSync(file);
    await new SqliteStore(file, key).close();
  });

  test('a state file made before access reviews and requests gets their tables when opened, keeping its data', async () => {
    const file = join(dir, 'state.db');
    const old = new SqliteStore(file, key);
    await old.audit({ actor: 'a', event: 'change.create', address: 'aws:user/a', outcome: 'ok', detail: null }, '2026-11-28T00:00:00.000Z');
    old.db.exec('DROP TABLE review_decisions; DROP TABLE reviews; DROP TABLE requests');
    await old.close();
    const store = new SqliteStore(file, key);
    expect(await store.reviews()).toEqual([]);
    expect(await store.requests()).toEqual([]);
    expect(await store.verifyAudit()).toEqual({ ok: true, entries: 1 });
    await store.close();
  });

  test('a state file whose decisions predate their actor gets the column when opened, and records who decided', async () => {
    const file = join(dir, 'state.db');
    const old = new SqliteStore(file, key);
    old.db.exec(`DROP TABLE review_decisions;
      CREATE TABLE review_decisions (review TEXT NOT NULL REFERENCES reviews (name), row_id TEXT NOT NULL, reviewer TEXT NOT NULL,
        decision TEXT NOT NULL, reason TEXT NOT NULL, decided_at TEXT NOT NULL, self_review INTEGER NOT NULL, audit_seq INTEGER NOT NULL,
        PRIMARY KEY (review, row_id, reviewer))`);
    await old.close();
    const store = new SqliteStore(file, key);
    const audit = { actor: 'carol@cli', address: null, outcome: 'ok', detail: null };
    const manifest = {
      extractedAt: '',
      query: { command: '', filters: {} },
      specFile: '',
      specSha256: '',
      auditHead: null,
      datagrantVersion: '',
      populationSha256: '',
      limits: [],
      invariants: [],
      requests: {},
      datasets: {},
    };
    await store.startReview(
      { name: 'q', startedAt: '2026-11-28T00:00:00.000Z', startedBy: 'carol@cli', manifest, population: [], emails: {} },
      { ...audit, event: 'review.start' },
    );
    const d = {
      rowId: 'r',
      decision: 'keep' as const,
      reason: 'fine',
      reviewer: 'dave',
      actor: 'carol@cli',
      decidedAt: '2026-11-28T00:00:00.000Z',
      selfReview: false,
    };
    await store.recordDecisions('q', [d], [{ ...audit, event: 'review.decide' }]);
    expect((await store.review('q'))!.decisions).toEqual([{ ...d, auditSeq: 2 }]);
    await store.close();
  });
});
