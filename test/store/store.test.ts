import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { initState, loadMasterKey, statePaths } from '../../src/store/open.js';

let dir: string;
let key: MasterKey;
let store: SqliteStore;
const AT = '2026-11-28T00:00:00.000Z';

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dg-store-'));
  key = MasterKey.parse(MasterKey.generate());
  store = new SqliteStore(join(dir, 'state.db'), key);
});
afterEach(async () => {
  await store.close().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

const row = (id: string) => ({ address: 'aws:key/alice', credentialId: id, createdAt: AT, backend: 'aws', principal: 'alice' });

describe('credentials', () => {
  test('are stored encrypted: the raw database file never contains the secret', async () => {
    // GIVEN a secret that is easy to search for
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETzz';
    // WHEN it is stored and the database is checkpointed to disk
    await store.saveCredential(row('AKIAONE'), { accessKeyId: 'AKIAONE', secretAccessKey: secret });
    store.db.pragma('wal_checkpoint(TRUNCATE)');
    // THEN only the decrypting read returns it
    const raw = readFileSync(join(dir, 'state.db'));
    expect(raw.includes(Buffer.from(secret))).toBe(false);
    expect((await store.revealCredential('aws:key/alice'))?.secret.secretAccessKey).toBe(secret);
    expect(statSync(join(dir, 'state.db')).mode & 0o777).toBe(0o600);
  });

  test('a ciphertext moved to another address does not decrypt (bound to its address)', async () => {
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
    await store.saveCredential({ ...row('AKIATWO'), address: 'aws:key/bob', principal: 'bob' }, { secretAccessKey: 's2' });
    store.db.exec(
      "UPDATE credentials SET ciphertext = (SELECT ciphertext FROM credentials WHERE address = 'aws:key/alice'), nonce = (SELECT nonce FROM credentials WHERE address = 'aws:key/alice'), tag = (SELECT tag FROM credentials WHERE address = 'aws:key/alice') WHERE address = 'aws:key/bob'",
    );
    await expect(store.revealCredential('aws:key/bob')).rejects.toThrow(/cannot decrypt the credential for aws:key\/bob/);
  });

  test('a wrong master key is refused when the store opens, by its key check, and the error holds no secret', async () => {
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 'topsecretvalue' });
    await store.close();
    const err = (() => {
      try {
        store = new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()));
        return undefined;
      } catch (e) {
        return e as Error;
      }
    })();
    expect(String(err)).toMatch(/wrong master key: .*different master key/);
    expect(String(err)).not.toMatch(/topsecretvalue|tamper/);
    // nothing was written: the right key still opens it, and the secret is intact
    store = new SqliteStore(join(dir, 'state.db'), key);
    expect((await store.revealCredential('aws:key/alice'))?.secret).toEqual({ secretAccessKey: 'topsecretvalue' });
  });

  test('a state made before key checks: a key that cannot open its credentials is refused', async () => {
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
    store.db.exec("DELETE FROM meta WHERE key = 'key_check'");
    await store.close();
    expect(() => new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()))).toThrow(/wrong master key/);
    store = new SqliteStore(join(dir, 'state.db'), key);
    expect(store.db.prepare("SELECT count(*) AS n FROM meta WHERE key = 'key_check'").get()).toEqual({ n: 1 });
  });

  test('an empty (0-byte) or unreadable state file is an error naming the file, never a fresh start', async () => {
    await store.close();
    const file = join(dir, 'state.db');
    writeFileSync(file, '');
    expect(() => new SqliteStore(file, key)).toThrow(`the state store ${file} is empty (0 bytes)`);
    writeFileSync(file, 'this is not a database, just text that got here somehow');
    expect(() => new SqliteStore(file, key)).toThrow(/cannot open the state store .*state\.db: .*not a database.*backup/);
    rmSync(file);
    store = new SqliteStore(file, key);
  });

  test('each state has an installation id; only a fresh state may take another one', async () => {
    const id = await store.installation();
    expect(id).toMatch(/^[a-z0-9-]{8,64}$/);
    await store.setInstallation('team-a-0123456789');
    expect(await store.installation()).toBe('team-a-0123456789');
    await expect(store.setInstallation('Not Valid')).rejects.toThrow(/not valid/);
    await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
    await expect(store.setInstallation('team-b-0123456789')).rejects.toThrow(/already manages objects as installation team-a-0123456789/);
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
  });
});

describe('audit chain', () => {
  const fill = async (n: number) => {
    for (let i = 1; i <= n; i++) await store.audit({ actor: 'tester', event: 'change.create', address: `aws:user/u${i}`, outcome: 'ok', detail: null }, AT);
  };

  test('an untouched chain verifies', async () => {
    await fill(5);
    expect(await store.verifyAudit()).toEqual({ ok: true, entries: 5 });
  });

  test.each([
    ['an edited entry', "UPDATE audit SET outcome = 'failed' WHERE seq = 3", 3, /changed/],
    ['a deleted entry', 'DELETE FROM audit WHERE seq = 3', 4, /removed or inserted/],
    ['a deleted last entry', 'DELETE FROM audit WHERE seq = 5', 5, /removed/],
    [
      'an inserted entry',
      "INSERT INTO audit (seq, at, actor, event, address, outcome, detail, prev_hash, hash) SELECT 6, at, actor, event, 'aws:user/evil', outcome, detail, hash, hash FROM audit WHERE seq = 5",
      6,
      /./,
    ],
    [
      'swapped entries',
      'UPDATE audit SET seq = CASE seq WHEN 2 THEN 102 WHEN 4 THEN 2 END WHERE seq IN (2, 4); UPDATE audit SET seq = 4 WHERE seq = 102',
      2,
      /./,
    ],
    ['a recomputed plain hash', "UPDATE audit SET address = 'aws:user/x', hash = 'deadbeef' WHERE seq = 2", 2, /./],
  ])('detects %s and names the first bad entry', async (_what, sql, firstBad, reason) => {
    await fill(5);
    store.db.exec(sql);
    const v = await store.verifyAudit();
    expect(v.ok).toBe(false);
    expect(v.firstBad?.seq).toBe(firstBad);
    expect(v.firstBad?.reason).toMatch(reason);
  });
});

describe('lock', () => {
  test('a second holder fails with a message naming the first', async () => {
    await store.acquireLock('alice@cli (apply)');
    const other = new SqliteStore(join(dir, 'state.db'), key);
    // Pretend the holder is another live process on this host: our parent.
    store.db.prepare('UPDATE locks SET pid = ?').run(process.ppid);
    await expect(other.acquireLock('bob@cli (apply)')).rejects.toThrow(/locked by alice@cli \(apply\) \(pid \d+ on/);
    await other.close();
  });

  test('a lock left by a dead process is taken over', async () => {
    const child = spawn(process.execPath, ['-e', '0']);
    const pid = child.pid!;
    await new Promise((r) => child.on('exit', r));
    store.db
      .prepare("INSERT INTO locks (name, holder, pid, host, acquired_at, heartbeat_at) VALUES ('state', 'ghost', ?, ?, ?, ?)")
      .run(pid, (await import('node:os')).hostname(), AT, 0);
    await store.acquireLock('alice@cli');
    expect((await store.lockHolder())?.holder).toBe('alice@cli');
    await store.releaseLock();
    expect(await store.lockHolder()).toBeUndefined();
  });
});

describe('master key', () => {
  test('init creates a 0600 key file once; a group-readable key file is refused', async () => {
    const paths = statePaths(join(dir, 'st'));
    expect(initState(paths, {}).createdKey).toBe(true);
    expect(initState(paths, {}).createdKey).toBe(false);
    expect(statSync(paths.keyFile).mode & 0o777).toBe(0o600);
    expect(() => loadMasterKey(paths, {})).not.toThrow();
    const { chmodSync } = await import('node:fs');
    chmodSync(paths.keyFile, 0o640);
    expect(() => loadMasterKey(paths, {})).toThrow(/readable by other users/);
  });

  test('a state directory open to other users is refused, naming the fix', async () => {
    const paths = statePaths(join(dir, 'open'));
    initState(paths, {});
    const { chmodSync } = await import('node:fs');
    const { openStore } = await import('../../src/store/open.js');
    await (await openStore(paths, {})).close();
    chmodSync(paths.dir, 0o755);
    await expect(openStore(paths, {})).rejects.toThrow(`the state directory ${paths.dir} is open to other users (mode 755); run: chmod 700 ${paths.dir}`);
  });

  test('no key configured is a clear error', () => {
    expect(() => loadMasterKey(statePaths(join(dir, 'none')), {})).toThrow(/DATAGRANT_MASTER_KEY .*datagrant init/);
  });
});
