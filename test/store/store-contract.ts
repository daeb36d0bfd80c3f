// One behavioural suite for every StateStore implementation (SQLite, PostgreSQL), a describe per
// port, so a failure names the port and the clause. What only one store can do (SQLite's file,
// PostgreSQL's schemas and sessions) is tested in that store's own file.
import { hostname } from 'node:os';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { KeyChangedError, LockError, RequestError, ReviewError, StoreError } from '../../src/core/errors.js';
import type { Action, Change } from '../../src/core/types.js';
import type { AccessReportRow } from '../../src/model/access.js';
import { requestAddress, type AccessRequest, type NewRequest } from '../../src/model/request.js';
import type { Review, ReviewDecision } from '../../src/model/review.js';
import { MasterKey } from '../../src/store/crypto.js';
import type { AuditInput, KeyRotationPort, StateStore } from '../../src/store/store.js';

/** One fresh state, and the ways the contract reaches it from outside the store under test. */
export interface StoreHarness {
  /** The state, freshly created (empty) under `key`. */
  store: StateStore;
  key: MasterKey;
  /** The same state opened again: a restart, or, where the store is shared, another replica. Default key: `key`. */
  reopen(key?: MasterKey): Promise<StateStore>;
  /** Statements run directly on the store's tables, as anyone with access to the database could: tampering. */
  exec(sql: string): Promise<void>;
  /** One SELECT run directly on the store's tables. */
  query<T extends Record<string, unknown>>(sql: string): Promise<T[]>;
  /** Everything the store holds at rest, as text to search: the database file, or every row. */
  atRest(): Promise<string>;
  /** The state lock taken by another live holder (another process, another replica) and held until `release`. */
  holdElsewhere(holder: string): Promise<{ pid: number; release(): Promise<void> }>;
  /** The state lock left behind by a holder that died without releasing it. */
  leaveDeadHolder(holder: string): Promise<void>;
  /** Close every store opened through the harness and remove the state. */
  close(): Promise<void>;
}

export interface StoreContractOptions {
  /** Several processes share one state at once (serve replicas): runs the clauses about racing writers. */
  replicas: boolean;
}

const AT = '2026-11-28T00:00:00.000Z';
const LATER = '2026-11-29T00:00:00.000Z';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETzz';

const row = (credentialId: string, address = 'aws:key/alice', principal = 'alice') => ({ address, credentialId, createdAt: AT, backend: 'aws', principal });
const change = (address: string, action: Action = 'create'): Change => ({
  address,
  backend: 'aws',
  kind: 'user',
  action,
  before: null,
  after: null,
  drift: false,
  reason: 'test',
});
const entry = (i: number, actor = 'tester'): AuditInput => ({
  actor,
  event: 'change.create',
  address: `aws:user/u${i}`,
  outcome: 'ok',
  detail: i % 2 ? null : `d${i}`,
});
const otherKey = () => MasterKey.parse(MasterKey.generate());

export function stateStoreContract(label: string, open: () => Promise<StoreHarness>, opts: StoreContractOptions): void {
  let h: StoreHarness;
  let store: StateStore;
  beforeEach(async () => {
    h = await open();
    store = h.store;
  });
  afterEach(async () => {
    await h.close();
  });

  describe(`${label} StateStore contract`, () => {
    describe('credentials', () => {
      test('a saved credential is current; reveal returns it with its secret, also after reopening', async () => {
        await store.saveCredential(row('AKIAONE'), { accessKeyId: 'AKIAONE', secretAccessKey: SECRET });
        const expected = {
          row: { address: 'aws:key/alice', credentialId: 'AKIAONE', createdAt: AT, backend: 'aws', principal: 'alice', state: 'current' },
          secret: { accessKeyId: 'AKIAONE', secretAccessKey: SECRET },
        };
        expect(await store.credentials()).toEqual([expected.row]);
        expect(await store.revealCredential('aws:key/alice')).toEqual(expected);
        expect(await (await h.reopen()).revealCredential('aws:key/alice')).toEqual(expected);
        expect(await store.revealCredential('aws:key/nobody')).toBeUndefined();
      });

      test('saving again retires the previous credential until retireAt, or erases it without one', async () => {
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await store.saveCredential(row('AKIATWO'), { secretAccessKey: 's2' }, LATER);
        expect((await store.credentials()).map((r) => [r.credentialId, r.state, r.retireAt ?? null])).toEqual([
          ['AKIAONE', 'retiring', LATER],
          ['AKIATWO', 'current', null],
        ]);
        expect((await store.revealCredential('aws:key/alice'))?.secret.secretAccessKey).toBe('s2');
        // Without a grace period the previous current credential is erased; a retiring one stays.
        await store.saveCredential(row('AKIATHREE'), { secretAccessKey: 's3' });
        expect((await store.credentials()).map((r) => r.credentialId)).toEqual(['AKIAONE', 'AKIATHREE']);
        expect((await store.revealCredential('aws:key/alice'))?.secret.secretAccessKey).toBe('s3');
      });

      test('retire leaves no current credential; erase removes exactly the one named', async () => {
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await store.saveCredential(row('AKIATHREE'), { secretAccessKey: 's3' }, LATER);
        await store.retireCredential('aws:key/alice', 'AKIATHREE', '2026-12-01T00:00:00.000Z');
        expect(await store.revealCredential('aws:key/alice')).toBeUndefined();
        await store.eraseCredential('aws:key/alice', 'AKIAONE');
        expect((await store.credentials()).map((r) => [r.credentialId, r.state, r.retireAt])).toEqual([['AKIATHREE', 'retiring', '2026-12-01T00:00:00.000Z']]);
        await store.eraseCredential('aws:key/alice', 'AKIAGONE');
        expect(await store.credentials()).toHaveLength(1);
      });

      test('are listed by address in byte order (not a database collation), then by creation', async () => {
        const addresses = ['aws:key/Zed', 'aws:key/alice', 'aws:key/_x', 'aws:key/a-b', 'aws:key/a.b', 'aws:key/ä'];
        for (const [i, a] of addresses.entries()) {
          await store.saveCredential({ ...row(`K${i}`, a), createdAt: `2026-11-28T00:00:0${i}.000Z` }, { v: a });
        }
        await store.saveCredential({ ...row('K9', 'aws:key/Zed'), createdAt: '2026-11-28T00:00:09.000Z' }, { v: 'z' }, LATER);
        expect((await store.credentials()).map((r) => [r.address, r.credentialId])).toEqual([
          ['aws:key/Zed', 'K0'],
          ['aws:key/Zed', 'K9'],
          ['aws:key/_x', 'K2'],
          ['aws:key/a-b', 'K3'],
          ['aws:key/a.b', 'K4'],
          ['aws:key/alice', 'K1'],
          ['aws:key/ä', 'K5'],
        ]);
      });

      test('the secret appears in no output but reveal: not listings, journal, audit, applied state or lock', async () => {
        await store.rememberBackend({ name: 'aws', type: 'aws', settings: { region: 'eu-west-1' } });
        await store.saveCredential(row('AKIAONE'), { accessKeyId: 'AKIAONE', secretAccessKey: `${SECRET}-old` });
        await store.saveCredential(row('AKIATWO'), { accessKeyId: 'AKIATWO', secretAccessKey: SECRET }, LATER);
        await store.journalEnd(await store.journalBegin('run1', change('aws:key/alice', 'replace'), AT, 'h1'), 'ok', AT);
        await store.setApplied('aws:key/alice', 'h1');
        await store.audit({ actor: 't', event: 'credential.rotate', address: 'aws:key/alice', outcome: 'ok', detail: 'id AKIATWO' }, AT);
        await store.acquireLock('t');
        const outputs = [
          await store.credentials(),
          await store.applied(),
          await store.journal(),
          await store.journalPending(),
          [...(await store.journaled(['aws:key/alice']))],
          await store.auditEntries(),
          await store.verifyAudit(),
          await store.backends(),
          await store.lockHolder(),
          await store.installation(),
        ];
        const text = JSON.stringify(outputs);
        expect(text).toContain('AKIATWO');
        expect(text).not.toContain(SECRET);
        expect(text).not.toContain('secretAccessKey');
        expect((await store.revealCredential('aws:key/alice'))?.secret.secretAccessKey).toBe(SECRET);
      });

      test('are sealed at rest: nothing the store holds contains the secret, plainly, hex- or base64-encoded', async () => {
        await store.saveCredential(row('AKIAONE'), { accessKeyId: 'AKIAONE', secretAccessKey: `${SECRET}-old` });
        await store.saveCredential(row('AKIATWO'), { accessKeyId: 'AKIATWO', secretAccessKey: SECRET }, LATER);
        await store.journalBegin('run1', change('aws:key/alice'), AT);
        await store.audit({ actor: 't', event: 'credential.issue', address: 'aws:key/alice', outcome: 'ok', detail: null }, AT);
        const stored = (await h.atRest()).toLowerCase();
        // The scan sees the rows it should: the credentials' ids and the audit entry are there.
        expect(stored).toContain('akiatwo');
        expect(stored).toContain('credential.issue');
        const needles = [SECRET, Buffer.from(SECRET).toString('hex'), Buffer.from(SECRET).toString('base64').slice(0, 40), 'secretAccessKey'];
        for (const n of needles) expect(stored).not.toContain(n.toLowerCase());
        // AES-256-GCM: a 96-bit nonce and a 128-bit tag per row.
        const [c] = await h.query<{ nonce: Buffer; tag: Buffer }>("SELECT nonce, tag FROM credentials WHERE credential_id = 'AKIATWO'");
        expect([c!.nonce.length, c!.tag.length]).toEqual([12, 16]);
      });

      test('a sealed secret moved to another address does not decrypt (bound to its row)', async () => {
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await store.saveCredential(row('AKIATWO', 'aws:key/bob', 'bob'), { secretAccessKey: 's2' });
        await h.exec(
          `UPDATE credentials SET ${['ciphertext', 'nonce', 'tag'].map((col) => `${col} = (SELECT ${col} FROM credentials WHERE address = 'aws:key/alice')`).join(', ')} WHERE address = 'aws:key/bob'`,
        );
        const err = await store.revealCredential('aws:key/bob').catch((e: Error) => e);
        expect(err).toBeInstanceOf(StoreError);
        expect(String(err)).toMatch(/cannot decrypt the credential for aws:key\/bob#AKIATWO/);
        expect(String(err)).not.toMatch(/s1|s2/);
        expect((await store.revealCredential('aws:key/alice'))?.secret).toEqual({ secretAccessKey: 's1' });
      });

      test('a sealed secret moved to another credential id of the same address does not decrypt', async () => {
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await h.exec("UPDATE credentials SET credential_id = 'AKIAEVIL'");
        await expect(store.revealCredential('aws:key/alice')).rejects.toThrow(/cannot decrypt the credential for aws:key\/alice#AKIAEVIL/);
      });

      test('one current credential per address is enforced by the database itself', async () => {
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await expect(
          h.exec("INSERT INTO credentials SELECT address, 'AKIADUP', backend, principal, 'current', created_at, NULL, nonce, ciphertext, tag FROM credentials"),
        ).rejects.toThrow(/one_current_credential|UNIQUE constraint failed: credentials\.address/);
        expect((await store.credentials()).map((r) => r.credentialId)).toEqual(['AKIAONE']);
      });
    });

    describe('applied state', () => {
      test('hashes are set, replaced and removed, and outlive the store that wrote them', async () => {
        await store.setApplied('aws:user/a', 'h1');
        await store.setApplied('aws:user/b', 'h2');
        await store.setApplied('aws:user/a', 'h3');
        await store.setApplied('aws:user/b', null);
        await store.setApplied('aws:user/never', null);
        expect(await store.applied()).toEqual({ 'aws:user/a': 'h3' });
        expect(await (await h.reopen()).applied()).toEqual({ 'aws:user/a': 'h3' });
      });
    });

    describe('journal', () => {
      test('begin records intent (with the hash of the attributes aimed at), end the outcome; newest first', async () => {
        const a = await store.journalBegin('run1', change('aws:user/a'), AT, 'hash-a');
        const b = await store.journalBegin('run1', change('aws:user/b', 'delete'), AT);
        await store.journalEnd(a, 'ok', '2026-11-28T00:00:01.000Z');
        await store.journalEnd(b, 'failed', '2026-11-28T00:00:02.000Z', 'AccessDenied');
        const c = await store.journalBegin('run2', change('aws:user/c'), AT, null);
        expect(a < b && b < c).toBe(true);
        const base = { runId: 'run1', startedAt: AT };
        expect(await store.journal()).toEqual([
          { ...base, id: c, runId: 'run2', address: 'aws:user/c', action: 'create', finishedAt: null, outcome: 'pending', detail: null, afterHash: null },
          {
            ...base,
            id: b,
            address: 'aws:user/b',
            action: 'delete',
            finishedAt: '2026-11-28T00:00:02.000Z',
            outcome: 'failed',
            detail: 'AccessDenied',
            afterHash: null,
          },
          { ...base, id: a, address: 'aws:user/a', action: 'create', finishedAt: '2026-11-28T00:00:01.000Z', outcome: 'ok', detail: null, afterHash: 'hash-a' },
        ]);
        expect((await store.journal(2)).map((e) => e.id)).toEqual([c, b]);
      });

      test('pending entries are listed without being marked; recovery marks them interrupted, once', async () => {
        const a = await store.journalBegin('run1', change('aws:user/a'), AT);
        const b = await store.journalBegin('run1', change('aws:user/b'), AT);
        const c = await store.journalBegin('run1', change('aws:user/c'), AT, 'hash-c');
        await store.journalEnd(a, 'ok', AT);
        await store.journalEnd(b, 'failed', AT, 'AccessDenied');
        const d = await store.journalBegin('run1', change('aws:user/d'), AT);
        expect((await store.journalPending()).map((e) => [e.id, e.outcome])).toEqual([
          [c, 'pending'],
          [d, 'pending'],
        ]);
        expect((await store.journalPending()).map((e) => e.id)).toEqual([c, d]);
        // Recovery returns the entries as they were found, oldest first.
        const recovered = await store.recoverJournal();
        expect(recovered.map((e) => [e.id, e.address, e.outcome, e.afterHash])).toEqual([
          [c, 'aws:user/c', 'pending', 'hash-c'],
          [d, 'aws:user/d', 'pending', null],
        ]);
        expect(await store.recoverJournal()).toEqual([]);
        expect(await store.journalPending()).toEqual([]);
        expect((await store.journal()).map((e) => e.outcome)).toEqual(['interrupted', 'interrupted', 'failed', 'ok']);
      });

      test('journaled names the addresses the journal has ever seen a change for', async () => {
        await store.journalEnd(await store.journalBegin('run1', change('aws:user/a'), AT), 'ok', AT);
        await store.journalBegin('run1', change('aws:user/b'), AT);
        await store.recoverJournal();
        expect(await store.journaled(['aws:user/a', 'aws:user/b', 'aws:user/x'])).toEqual(new Set(['aws:user/a', 'aws:user/b']));
        expect(await store.journaled([])).toEqual(new Set());
      });
    });

    describe('audit log', () => {
      const fill = async (n: number) => {
        for (let i = 1; i <= n; i++) await store.audit(entry(i), AT);
      };

      test('entries are appended as given, each chained to the one before', async () => {
        await fill(3);
        const entries = await store.auditEntries();
        expect(entries.map(({ seq, at, actor, event, address, outcome, detail }) => ({ seq, at, actor, event, address, outcome, detail }))).toEqual(
          [1, 2, 3].map((i) => ({ seq: i, at: AT, ...entry(i) })),
        );
        expect(entries[0]!.prevHash).toMatch(/^0+$/);
        expect(entries.slice(1).map((e) => e.prevHash)).toEqual(entries.slice(0, -1).map((e) => e.hash));
        expect(await (await h.reopen()).auditEntries()).toEqual(entries);
      });

      test('the tail is the newest entries, newest first, as many as asked for', async () => {
        expect(await store.auditTail(10)).toEqual([]);
        await fill(5);
        const all = await store.auditEntries();
        expect(await store.auditTail(2)).toEqual([all[4], all[3]]);
        expect(await store.auditTail(10)).toEqual([...all].reverse());
        expect(await store.auditTail(0)).toEqual([]);
      });

      test('an untouched chain verifies, and so does an empty one', async () => {
        expect(await store.verifyAudit()).toEqual({ ok: true, entries: 0 });
        await fill(5);
        expect(await store.verifyAudit()).toEqual({ ok: true, entries: 5 });
      });

      test.each([
        ['an edited entry', "UPDATE audit SET outcome = 'failed' WHERE seq = 3", 3, /changed/],
        ['a deleted entry', 'DELETE FROM audit WHERE seq = 3', 4, /removed or inserted/],
        ['a deleted last entry', 'DELETE FROM audit WHERE seq = 5', 5, /removed/],
        ['a deleted last entry and head', 'DELETE FROM audit WHERE seq = 5; DELETE FROM audit_head', 1, /head of the chain is missing/],
        [
          'an appended entry',
          "INSERT INTO audit (seq, at, actor, event, address, outcome, detail, prev_hash, hash) SELECT 6, at, actor, event, 'aws:user/evil', outcome, detail, hash, hash FROM audit WHERE seq = 5",
          6,
          /changed/,
        ],
        [
          'an entry inserted in the middle',
          "UPDATE audit SET seq = seq + 10 WHERE seq >= 3; UPDATE audit SET seq = seq - 9 WHERE seq >= 13; INSERT INTO audit (seq, at, actor, event, address, outcome, detail, prev_hash, hash) SELECT 3, at, actor, event, 'aws:user/evil', outcome, detail, hash, hash FROM audit WHERE seq = 2",
          3,
          /changed/,
        ],
        [
          'swapped entries',
          'UPDATE audit SET seq = 102 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 102',
          2,
          /does not follow/,
        ],
        ['a recomputed plain hash', "UPDATE audit SET address = 'aws:user/x', hash = 'deadbeef' WHERE seq = 2", 2, /changed/],
        ['an altered head', 'UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit WHERE seq = 4)', 4, /head of the chain was altered/],
      ])('tampering is detected, naming the first bad entry: %s', async (_what, sql, firstBad, reason) => {
        await fill(5);
        await h.exec(sql);
        const v = await store.verifyAudit();
        expect(v.ok).toBe(false);
        expect(v.firstBad?.seq).toBe(firstBad);
        expect(v.firstBad?.reason).toMatch(reason);
      });
    });

    describe('lock', () => {
      const lockedBy = (holder: string) =>
        new RegExp(`locked by ${holder.replace(/[()]/g, '\\$&')} \\(pid \\d+ on .+, since 20\\d\\d-.+\\); wait for it to finish, or pass --lock-timeout`);

      test('acquire records the holder; release frees the lock', async () => {
        await store.acquireLock('alice@cli (apply)');
        const held = await store.lockHolder();
        expect(held).toMatchObject({ holder: 'alice@cli (apply)', pid: process.pid, host: hostname() });
        expect(Date.parse(held!.acquiredAt)).not.toBeNaN();
        await store.releaseLock();
        expect(await store.lockHolder()).toBeUndefined();
        expect(await (await h.reopen()).lockHolder()).toBeUndefined();
      });

      test('a second holder is refused with a LockError naming the first, also after waiting', async () => {
        const elsewhere = await h.holdElsewhere('alice@cli (apply)');
        const err = await store.acquireLock('bob@cli (apply)').catch((e: Error) => e);
        expect(err).toBeInstanceOf(LockError);
        expect(String(err)).toMatch(lockedBy('alice@cli (apply)'));
        expect(await store.lockHolder()).toMatchObject({ holder: 'alice@cli (apply)', pid: elsewhere.pid });
        const started = Date.now();
        await expect(store.acquireLock('bob', 600)).rejects.toThrow(lockedBy('alice@cli (apply)'));
        expect(Date.now() - started).toBeGreaterThanOrEqual(550);
        await elsewhere.release();
        await store.acquireLock('bob@cli');
        expect((await store.lockHolder())?.holder).toBe('bob@cli');
      });

      test('a waiting acquirer gets the lock as soon as it is released', async () => {
        const elsewhere = await h.holdElsewhere('alice');
        const waiting = store.acquireLock('bob', 10_000);
        await new Promise((r) => setTimeout(r, 400));
        await elsewhere.release();
        await waiting;
        expect((await store.lockHolder())?.holder).toBe('bob');
      });

      test('taking it again in the same store only renames the holder; one release frees it', async () => {
        await store.acquireLock('alice (plan)');
        await store.acquireLock('alice (apply)');
        expect((await (await h.reopen()).lockHolder())?.holder).toBe('alice (apply)');
        await store.releaseLock();
        await store.releaseLock();
        expect(await store.lockHolder()).toBeUndefined();
      });

      test("a dead holder's lock is taken over", async () => {
        await h.leaveDeadHolder('ghost@cli');
        await store.acquireLock('alice@cli', 5000);
        expect(await store.lockHolder()).toMatchObject({ holder: 'alice@cli', pid: process.pid });
        await store.releaseLock();
        expect(await store.lockHolder()).toBeUndefined();
      });
    });

    describe('backends registry', () => {
      test('remembered backends are listed by name with their settings; remembering again replaces them', async () => {
        await store.rememberBackend({ name: 'wh', type: 'postgres', settings: { url: 'postgres://x@h/db', port: 5432, tls: { mode: 'require' } } });
        await store.rememberBackend({ name: 'aws', type: 'aws', settings: {} });
        await store.rememberBackend({ name: 'wh', type: 'postgres', settings: { url: 'postgres://y@h/db' } });
        expect(await (await h.reopen()).backends()).toEqual([
          { name: 'aws', type: 'aws', settings: {} },
          { name: 'wh', type: 'postgres', settings: { url: 'postgres://y@h/db' } },
        ]);
      });

      test('forgetting a backend removes its credentials and applied state, and nothing else', async () => {
        await store.rememberBackend({ name: 'wh', type: 'postgres', settings: { url: 'postgres://x@h/db' } });
        await store.rememberBackend({ name: 'aws', type: 'aws', settings: {} });
        await store.saveCredential({ ...row('P1'), address: 'wh:password/alice', backend: 'wh' }, { password: 'p' });
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await store.setApplied('wh:role/alice', 'h1');
        await store.setApplied('whx:role/alice', 'h2');
        await store.setApplied('aws:user/alice', 'h3');
        await store.forgetBackend('wh');
        expect((await store.backends()).map((b) => b.name)).toEqual(['aws']);
        expect((await store.credentials()).map((c) => c.address)).toEqual(['aws:key/alice']);
        expect(await store.applied()).toEqual({ 'whx:role/alice': 'h2', 'aws:user/alice': 'h3' });
      });
    });

    describe('session log', () => {
      const rec = (principal: string, target: string, lastIssuedAt: string, expiresAt: string, backend = 'aws') => ({
        backend,
        principal,
        target,
        lastIssuedAt,
        expiresAt,
      });

      test('keeps the latest issue and the latest expiry per principal and target, across reopening', async () => {
        await store.recordSession(rec('bob', 'dg-s-1', '2026-11-30T10:00:00Z', '2026-11-30T11:00:00Z'));
        await store.recordSession(rec('alice', 'dg-s-1', '2026-11-30T10:00:00Z', '2026-11-30T12:00:00Z'));
        // Issued later but ending sooner (capped by a grant's expiry): both maxima are kept.
        await store.recordSession(rec('alice', 'dg-s-1', '2026-11-30T10:30:00.000Z', '2026-11-30T11:00:00Z'));
        // An older record arriving late (another replica) moves nothing back.
        await store.recordSession(rec('alice', 'dg-s-1', '2026-11-30T09:00:00Z', '2026-11-30T09:30:00Z'));
        await store.recordSession(rec('alice', 'dg-s-2', '2026-11-30T10:00:00Z', '2026-11-30T10:15:00Z'));
        expect(await (await h.reopen()).sessions()).toEqual([
          rec('alice', 'dg-s-1', '2026-11-30T10:30:00.000Z', '2026-11-30T12:00:00.000Z'),
          rec('alice', 'dg-s-2', '2026-11-30T10:00:00.000Z', '2026-11-30T10:15:00.000Z'),
          rec('bob', 'dg-s-1', '2026-11-30T10:00:00.000Z', '2026-11-30T11:00:00.000Z'),
        ]);
      });

      test('instants are compared as time, whatever their spelling; a non-instant is refused', async () => {
        await store.recordSession(rec('alice', 'r', '2026-11-30T10:00:00+01:00', '2026-11-30T10:59:00Z'));
        await store.recordSession(rec('alice', 'r', '2026-11-30T09:30:00Z', '2026-11-30T11:00:00+00:00'));
        expect(await store.sessions()).toEqual([rec('alice', 'r', '2026-11-30T09:30:00.000Z', '2026-11-30T11:00:00.000Z')]);
        await expect(store.recordSession(rec('alice', 'r', 'yesterday', '2026-11-30T11:00:00Z'))).rejects.toThrow(/not an ISO instant/);
      });

      test('pruning forgets only records whose every session has ended; forgetting a backend forgets its records', async () => {
        await store.recordSession(rec('alice', 'r', '2026-11-30T10:00:00Z', '2026-11-30T11:00:00Z'));
        await store.recordSession(rec('bob', 'r', '2026-11-30T10:00:00Z', '2026-11-30T12:00:00Z'));
        await store.recordSession(rec('carol', 'login', '2026-11-30T10:00:00Z', '2026-11-30T12:00:00Z', 'wh'));
        expect(await store.pruneSessions('2026-11-30T11:00:00Z')).toBe(1);
        expect((await store.sessions()).map((r) => r.principal)).toEqual(['bob', 'carol']);
        await store.forgetBackend('wh');
        expect((await store.sessions()).map((r) => r.principal)).toEqual(['bob']);
      });
    });

    describe('access reviews', () => {
      const accessRow = (who: string, dataset = 'training-data'): AccessReportRow => ({
        id: `aws|${dataset}|read|${who}`,
        backend: 'aws',
        dataset,
        level: 'read',
        who,
        principal: who,
        managed: true,
        status: 'both',
        intended: [{ via: `group ml`, path: 'groups.ml.grants[0]' }],
        actual: [{ via: 'group ml (managed policy dg-group-ml)' }],
        lastUsedAt: null,
      });
      const newReview = (name = '2026-Q4'): Omit<Review, 'decisions' | 'closedAt' | 'closedBy'> => ({
        name,
        startedAt: AT,
        startedBy: 'carol@cli',
        manifest: {
          extractedAt: AT,
          query: { command: 'datagrant access', filters: {} },
          specFile: 'datagrant.yaml',
          specSha256: 'a'.repeat(64),
          auditHead: null,
          datagrantVersion: '0.1.0',
          populationSha256: 'b'.repeat(64),
          limits: ['service control policies are not readable'],
          invariants: [{ invariant: 'hr-only', message: 'mallory reads hr-private', source: 'actual' }],
          requests: { aws: 4 },
          datasets: { 'training-data': { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' } },
        },
        // Markup and non-ASCII come back exactly as stored.
        population: [accessRow('alice'), accessRow('<b>"bob"</b> ∅')],
        emails: { alice: 'alice@example.com' },
      });
      const startAudit = (name = '2026-Q4'): AuditInput => ({ actor: 'carol@cli', event: 'review.start', address: null, outcome: 'ok', detail: name });
      const decision = (rowId: string, reviewer: string, verdict: 'keep' | 'revoke', at = LATER): Omit<ReviewDecision, 'auditSeq'> => ({
        rowId,
        decision: verdict,
        reason: `${verdict} because`,
        reviewer,
        actor: 'carol@cli',
        decidedAt: at,
        selfReview: reviewer === 'alice',
      });
      const decideAudit = (d: Omit<ReviewDecision, 'auditSeq'>): AuditInput => ({
        actor: d.reviewer,
        event: 'review.decide',
        address: null,
        outcome: d.decision,
        detail: d.rowId,
      });
      const decide = (name: string, ...ds: Omit<ReviewDecision, 'auditSeq'>[]) => store.recordDecisions(name, ds, ds.map(decideAudit));

      test('a started review reads back as stored, with its audit entry, across reopening', async () => {
        expect(await store.auditHead()).toBeUndefined();
        await store.startReview(newReview(), startAudit());
        const expected: Review = { ...newReview(), decisions: [], closedAt: null, closedBy: null };
        expect(await (await h.reopen()).review('2026-Q4')).toEqual(expected);
        expect(await store.reviews()).toEqual([{ name: '2026-Q4', startedAt: AT, startedBy: 'carol@cli', closedAt: null, rows: 2, decided: 0 }]);
        const entries = await store.auditEntries();
        expect(entries.map((e) => e.event)).toEqual(['review.start']);
        expect(await store.auditHead()).toEqual({ seq: entries[0]!.seq, hash: entries[0]!.hash });
        expect(await store.review('2026-Q3')).toBeUndefined();
      });

      test('a taken name is refused, naming who started it, and leaves no audit entry', async () => {
        await store.startReview(newReview(), startAudit());
        await store.closeReview('2026-Q4', LATER, 'carol@cli', { ...startAudit(), event: 'review.close' });
        const err = await store.startReview({ ...newReview(), startedBy: 'mallory@cli' }, startAudit()).catch((e: Error) => e);
        expect(err).toBeInstanceOf(ReviewError);
        expect(String(err)).toMatch(/a review named "2026-Q4" already exists \(started 2026-11-28T00:00:00.000Z by carol@cli\).*choose another name/);
        expect((await store.auditEntries()).map((e) => e.event)).toEqual(['review.start', 'review.close']);
        expect((await store.review('2026-Q4'))?.startedBy).toBe('carol@cli');
      });

      test("a reviewer's later decision on a row replaces theirs, not another reviewer's; each cites its audit entry", async () => {
        await store.startReview(newReview(), startAudit());
        const alice = newReview().population[0]!.id;
        const bob = newReview().population[1]!.id;
        await decide('2026-Q4', decision(alice, 'dave', 'keep'), decision(bob, 'dave', 'revoke'));
        const [again] = await decide('2026-Q4', decision(alice, 'dave', 'revoke', '2026-11-30T00:00:00.000Z'));
        await decide('2026-Q4', decision(alice, 'alice', 'keep'));
        const review = await (await h.reopen()).review('2026-Q4');
        // Ordered by row id, then reviewer, in byte order ('<' before 'a').
        expect(review?.decisions.map(({ rowId, reviewer, decision, selfReview }) => ({ rowId, reviewer, decision, selfReview }))).toEqual([
          { rowId: bob, reviewer: 'dave', decision: 'revoke', selfReview: false },
          { rowId: alice, reviewer: 'alice', decision: 'keep', selfReview: true },
          { rowId: alice, reviewer: 'dave', decision: 'revoke', selfReview: false },
        ]);
        const entries = await store.auditEntries();
        // The replaced decision stays in the chain; the standing one points at its own entry.
        expect(entries.filter((e) => e.event === 'review.decide').map((e) => `${e.actor} ${e.outcome} ${e.detail}`)).toEqual([
          `dave keep ${alice}`,
          `dave revoke ${bob}`,
          `dave revoke ${alice}`,
          `alice keep ${alice}`,
        ]);
        const standing = review!.decisions.find((d) => d.reviewer === 'dave' && d.rowId === alice)!;
        expect(standing).toEqual({ ...decision(alice, 'dave', 'revoke', '2026-11-30T00:00:00.000Z'), auditSeq: again!.auditSeq });
        expect(entries.find((e) => e.seq === standing.auditSeq)).toMatchObject({ at: '2026-11-30T00:00:00.000Z', outcome: 'revoke', detail: alice });
        expect((await store.reviews())[0]!.decided).toBe(2);
        expect(await store.verifyAudit()).toEqual({ ok: true, entries: entries.length });
      });

      test('decisions are recorded all or none: one without a reason records nothing', async () => {
        await store.startReview(newReview(), startAudit());
        const [a, b] = newReview().population.map((r) => r.id);
        const bad = { ...decision(b!, 'dave', 'revoke'), reason: '  ' };
        await expect(
          store.recordDecisions('2026-Q4', [decision(a!, 'dave', 'keep'), bad], [decideAudit(decision(a!, 'dave', 'keep')), decideAudit(bad)]),
        ).rejects.toThrow();
        expect((await store.review('2026-Q4'))?.decisions).toEqual([]);
        expect((await store.auditEntries()).map((e) => e.event)).toEqual(['review.start']);
        expect(await store.verifyAudit()).toEqual({ ok: true, entries: 1 });
      });

      test('an unknown or closed review takes no decision, and closes once', async () => {
        const row = newReview().population[0]!.id;
        await expect(decide('nope', decision(row, 'dave', 'keep'))).rejects.toThrow(/there is no review named "nope"/);
        await expect(store.closeReview('nope', LATER, 'carol', startAudit())).rejects.toThrow(ReviewError);
        await store.startReview(newReview(), startAudit());
        await store.closeReview('2026-Q4', LATER, 'carol@cli', { ...startAudit(), event: 'review.close' });
        expect(await (await h.reopen()).review('2026-Q4')).toMatchObject({ closedAt: LATER, closedBy: 'carol@cli' });
        expect((await store.reviews())[0]!.closedAt).toBe(LATER);
        const err = await decide('2026-Q4', decision(row, 'dave', 'keep')).catch((e: Error) => e);
        expect(err).toBeInstanceOf(ReviewError);
        expect(String(err)).toMatch(/"2026-Q4" was closed 2026-11-29T00:00:00.000Z by carol@cli; a closed review takes no more decisions/);
        await expect(store.closeReview('2026-Q4', LATER, 'carol@cli', startAudit())).rejects.toThrow(/was closed/);
        expect((await store.auditEntries()).map((e) => e.event)).toEqual(['review.start', 'review.close']);
      });

      test('reviews are listed oldest first', async () => {
        await store.startReview({ ...newReview('b-later'), startedAt: LATER }, startAudit('b-later'));
        await store.startReview(newReview('a-earlier'), startAudit('a-earlier'));
        expect((await store.reviews()).map((r) => r.name)).toEqual(['a-earlier', 'b-later']);
      });
    });

    describe('access requests', () => {
      const ask = (requester = 'alice', dataset = 'training-data', at = AT): NewRequest => ({
        requester,
        dataset,
        level: 'read',
        duration: '7d',
        // Markup, quotes and non-ASCII come back exactly as stored.
        reason: 'fine-tune the <b>"ranker"</b> ∅',
        requestedAt: at,
        requestedVia: `${requester}@cli`,
      });
      const made = (id: number): AuditInput => ({ actor: 'alice@cli', event: 'request.create', address: requestAddress(id), outcome: 'ok', detail: 'asked' });
      const decided = (id: number, event: string, actor = 'bob@cli'): AuditInput => ({
        actor,
        event,
        address: requestAddress(id),
        outcome: 'ok',
        detail: event,
      });
      const decision = (by = 'bob', at = LATER) => ({ by, at, reason: 'for the Q4 model', via: `${by}@cli` });
      const approve = (id: number, by = 'bob', endsAt = '2026-12-06T00:00:00.000Z') =>
        store.changeRequest(id, { to: 'approved', decision: decision(by), endsAt }, decided(id, 'request.approve', `${by}@cli`));
      const events = async () => (await store.auditEntries()).map((e) => `${e.event} ${e.address}`);

      test('a new request reads back as stored, pending, naming its audit entry, across reopening', async () => {
        const r = await store.createRequest(ask(), made);
        const entries = await store.auditEntries();
        expect(entries.map((e) => [e.event, e.address])).toEqual([['request.create', requestAddress(r.id)]]);
        const expected: AccessRequest = { id: r.id, ...ask(), state: 'pending', auditSeq: entries[0]!.seq };
        expect(r).toEqual(expected);
        expect(await (await h.reopen()).request(r.id)).toEqual(expected);
        expect(await store.request(r.id + 1000)).toBeUndefined();
      });

      test('ids grow with each request; a filter picks states and requester', async () => {
        const a = await store.createRequest(ask('alice'), made);
        const b = await store.createRequest(ask('bob', 'features'), made);
        const c = await store.createRequest(ask('alice', 'features'), made);
        expect(b.id).toBeGreaterThan(a.id);
        expect(c.id).toBeGreaterThan(b.id);
        await approve(b.id, 'carol');
        expect((await store.requests()).map((r) => r.id)).toEqual([a.id, b.id, c.id]);
        expect((await store.requests({ requester: 'alice' })).map((r) => r.id)).toEqual([a.id, c.id]);
        expect((await store.requests({ states: ['approved'] })).map((r) => r.id)).toEqual([b.id]);
        expect((await store.requests({ states: ['pending'], requester: 'bob' })).map((r) => r.id)).toEqual([]);
        expect((await store.requests({ states: [] })).map((r) => r.id)).toEqual([]);
      });

      test('a blank reason is refused and leaves no audit entry', async () => {
        await expect(store.createRequest({ ...ask(), reason: '   ' }, made)).rejects.toThrow();
        expect(await store.requests()).toEqual([]);
        expect(await store.auditEntries()).toEqual([]);
      });

      test('a decision is taken once: a second approval or a denial after it is a conflict naming the first, with no audit entry', async () => {
        const r = await store.createRequest(ask(), made);
        const approved = await approve(r.id);
        expect(approved).toMatchObject({ state: 'approved', decision: decision('bob'), endsAt: '2026-12-06T00:00:00.000Z' });
        expect(approved.auditSeq).toBe((await store.auditEntries()).at(-1)!.seq);
        const again = await approve(r.id, 'carol').catch((e: Error) => e);
        expect(again).toBeInstanceOf(RequestError);
        expect(again).toMatchObject({ kind: 'conflict' });
        expect(String(again)).toMatch(new RegExp(`request #${r.id} was already approved by bob at ${LATER}; a request that is approved cannot be approved`));
        await expect(store.changeRequest(r.id, { to: 'denied', decision: decision('carol') }, decided(r.id, 'request.deny', 'carol@cli'))).rejects.toThrow(
          /already approved by bob/,
        );
        expect(await events()).toEqual([`request.create ${requestAddress(r.id)}`, `request.approve ${requestAddress(r.id)}`]);
        expect(await (await h.reopen()).request(r.id)).toEqual(approved);
        expect(await store.verifyAudit()).toEqual({ ok: true, entries: 2 });
      });

      test('a denied request stays denied; an unknown one is not found', async () => {
        const r = await store.createRequest(ask(), made);
        const denied = await store.changeRequest(r.id, { to: 'denied', decision: decision('carol') }, decided(r.id, 'request.deny', 'carol@cli'));
        expect(denied).toMatchObject({ state: 'denied', decision: decision('carol') });
        expect(denied.endsAt).toBeUndefined();
        await expect(approve(r.id)).rejects.toThrow(/already denied by carol/);
        const unknown = await approve(r.id + 1000).catch((e: Error) => e);
        expect(unknown).toMatchObject({ kind: 'not-found', message: expect.stringMatching(new RegExp(`there is no request #${r.id + 1000}`)) });
      });

      test('cancelling: a pending one, an approved one while it lasts (keeping its approval), never one that has ended', async () => {
        const closed = (at: string) => ({ at, by: 'alice', reason: 'no longer needed', via: 'alice@cli' });
        const cancel = (id: number, at = LATER) => store.changeRequest(id, { to: 'cancelled', closed: closed(at) }, decided(id, 'request.cancel', 'alice@cli'));
        const pending = await store.createRequest(ask(), made);
        expect(await cancel(pending.id)).toMatchObject({ state: 'cancelled', closed: closed(LATER) });
        await expect(approve(pending.id)).rejects.toThrow(/already cancelled at/);

        const live = await store.createRequest(ask(), made);
        await approve(live.id, 'bob', '2026-12-06T00:00:00.000Z');
        const ended = await cancel(live.id, '2026-12-01T00:00:00.000Z');
        expect(ended).toMatchObject({
          state: 'cancelled',
          decision: decision('bob'),
          endsAt: '2026-12-06T00:00:00.000Z',
          closed: closed('2026-12-01T00:00:00.000Z'),
        });

        const over = await store.createRequest(ask(), made);
        await approve(over.id, 'bob', '2026-12-06T00:00:00.000Z');
        const err = await cancel(over.id, '2026-12-06T00:00:00.000Z').catch((e: Error) => e);
        expect(err).toMatchObject({ kind: 'conflict', message: expect.stringMatching(/ended at 2026-12-06T00:00:00.000Z; there is nothing left to cancel/) });
        expect((await store.request(over.id))?.state).toBe('approved');
      });

      test('expiry: approved ones whose end has come and pending ones left undecided, once each, with their audit entries', async () => {
        const due = await store.createRequest(ask('alice'), made);
        await approve(due.id, 'bob', '2026-12-01T00:00:00.000Z');
        const lasting = await store.createRequest(ask('bob'), made);
        await approve(lasting.id, 'carol', '2026-12-09T00:00:00.000Z');
        const stale = await store.createRequest(ask('carol', 'features', AT), made);
        const fresh = await store.createRequest(ask('dave', 'features', LATER), made);
        const seen: number[] = [];
        const expire = (now: string) =>
          store.expireRequests({ now, pendingBefore: LATER, via: 'ops@cli' }, (r) => {
            seen.push(r.id);
            return { actor: 'ops@cli', event: 'request.expire', address: requestAddress(r.id), outcome: 'ok', detail: r.closed!.reason };
          });
        const expired = await expire('2026-12-01T00:00:00.000Z');
        expect(expired.map((r) => [r.id, r.state])).toEqual([
          [due.id, 'expired'],
          [stale.id, 'expired'],
        ]);
        expect(seen).toEqual([due.id, stale.id]);
        expect(expired[0]).toMatchObject({
          decision: decision('bob'),
          closed: { at: '2026-12-01T00:00:00.000Z', reason: 'its access ended at 2026-12-01T00:00:00.000Z', via: 'ops@cli' },
        });
        expect(expired[0]!.closed!.by).toBeUndefined();
        expect(expired[1]!.closed!.reason).toBe(`nobody approved or denied it by ${LATER}`);
        const entries = await store.auditEntries();
        expect(entries.filter((e) => e.event === 'request.expire').map((e) => [e.address, e.detail])).toEqual([
          [requestAddress(due.id), 'its access ended at 2026-12-01T00:00:00.000Z'],
          [requestAddress(stale.id), `nobody approved or denied it by ${LATER}`],
        ]);
        expect(await (await h.reopen()).request(due.id)).toEqual(expired[0]);
        expect((await store.request(lasting.id))?.state).toBe('approved');
        expect((await store.request(fresh.id))?.state).toBe('pending');
        // Nothing is due twice.
        expect(await expire('2026-12-01T00:00:00.000Z')).toEqual([]);
        expect(await store.verifyAudit()).toEqual({ ok: true, entries: entries.length });
      });

      test('the version moves with every change of any request, and only then', async () => {
        expect(await store.requestsVersion()).toBe(0);
        const r = await store.createRequest(ask(), made);
        const v1 = await store.requestsVersion();
        expect(v1).toBeGreaterThan(0);
        await store.audit(entry(1), LATER);
        expect(await store.requestsVersion()).toBe(v1);
        await approve(r.id);
        expect(await store.requestsVersion()).toBeGreaterThan(v1);
      });

      if (opts.replicas) {
        test('two replicas approving one request at once: exactly one approval, one audit entry', async () => {
          const other = await h.reopen();
          const r = await store.createRequest(ask(), made);
          const outcomes = await Promise.allSettled(
            ['bob', 'carol', 'dave', 'erin'].map((by, i) =>
              (i % 2 ? other : store).changeRequest(r.id, { to: 'approved', decision: decision(by), endsAt: LATER }, decided(r.id, 'request.approve', by)),
            ),
          );
          expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
          expect((await events()).filter((e) => e.startsWith('request.approve'))).toHaveLength(1);
          expect(await store.verifyAudit()).toMatchObject({ ok: true });
        });
      }
    });

    describe('installation id', () => {
      test('a new state has one, kept across reopening; only a fresh state may take another', async () => {
        const id = await store.installation();
        expect(id).toMatch(/^[a-z0-9-]{8,64}$/);
        expect(await (await h.reopen()).installation()).toBe(id);
        await store.setInstallation('team-a-0123456789');
        expect(await store.installation()).toBe('team-a-0123456789');
        await expect(store.setInstallation('Not Valid')).rejects.toThrow(/not valid/);
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await expect(store.setInstallation('team-b-0123456789')).rejects.toThrow(/already manages objects as installation team-a-0123456789/);
        // Giving it the id it already has changes nothing, so it is no error.
        await store.setInstallation('team-a-0123456789');
        expect(await (await h.reopen()).installation()).toBe('team-a-0123456789');
      });

      test('applied state alone also makes a state no longer fresh', async () => {
        await store.setApplied('aws:user/a', 'h1');
        await expect(store.setInstallation('team-b-0123456789')).rejects.toThrow(/already manages objects/);
      });
    });

    describe('master key', () => {
      test('a wrong key is refused when the store opens, naming no secret and changing nothing', async () => {
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 'topsecretvalue' });
        await store.audit(entry(1), AT);
        await store.audit(entry(2), AT);
        const err = await h.reopen(otherKey()).catch((e: Error) => e);
        expect(err).toBeInstanceOf(StoreError);
        expect(String(err)).toMatch(/wrong master key: .*different master key/);
        expect(String(err)).not.toMatch(/topsecretvalue|tamper/);
        const again = await h.reopen();
        expect((await again.revealCredential('aws:key/alice'))?.secret).toEqual({ secretAccessKey: 'topsecretvalue' });
        expect(await again.verifyAudit()).toEqual({ ok: true, entries: 2 });
        expect(again.masterKey.keyCheck()).toBe(h.key.keyCheck());
      });

      test('a state made before key checks: a key that cannot open its credentials is refused; the right one records its check', async () => {
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await h.exec("DELETE FROM meta WHERE key = 'key_check'");
        await expect(h.reopen(otherKey())).rejects.toThrow(/wrong master key/);
        expect(await h.query("SELECT key FROM meta WHERE key = 'key_check'")).toEqual([]);
        expect((await (await h.reopen()).revealCredential('aws:key/alice'))?.secret).toEqual({ secretAccessKey: 's1' });
        expect(await h.query("SELECT key FROM meta WHERE key = 'key_check'")).toEqual([{ key: 'key_check' }]);
      });

      test('a rotation moves every credential and the chain to the new key; half done, the state opens for nobody else', async () => {
        const rotating = store as StateStore & KeyRotationPort;
        const next = otherKey();
        await store.saveCredential(row('AKIAONE'), { secretAccessKey: 's1' });
        await store.saveCredential(row('AKIATWO'), { secretAccessKey: 's2' }, LATER);
        await store.saveCredential(row('pw', 'pg:password/bob', 'bob'), { password: 'p' });
        await store.audit(entry(1), AT);
        await store.audit(entry(2), AT);
        const before = await store.credentials();
        // A process that opened the state before the rotation (a serve left running).
        const stale = await h.reopen();

        await rotating.beginRotation(next);
        await expect(stale.audit(entry(8), LATER)).rejects.toThrow(
          /master key of the state store .* was changed .* since this process opened it; nothing was written/,
        );
        expect(await rotating.rotationTarget()).toBe(next.keyCheck());
        await expect(h.reopen()).rejects.toThrow(/a master key rotation of the state store .* is unfinished/);
        await expect(h.reopen(next)).rejects.toThrow(/a master key rotation of the state store .* is unfinished/);
        await expect(rotating.beginRotation(otherKey())).rejects.toThrow(/moves this state to another key/);

        const moved: string[] = [];
        expect(await rotating.resealAll(next, (a) => moved.push(a))).toBe(3);
        expect(moved.sort()).toEqual(['aws:key/alice', 'aws:key/alice', 'pg:password/bob']);
        expect(await rotating.resealAll(next)).toBe(0);
        await rotating.finishRotation(next, 'ops@cli', LATER);

        await expect(h.reopen()).rejects.toThrow(/wrong master key/);
        await expect(stale.saveCredential(row('AKIASTALE'), { secretAccessKey: 'x' })).rejects.toThrow(/was changed .* since this process opened it/);
        await expect(stale.audit(entry(9), LATER)).rejects.toThrow(/was changed .* since this process opened it/);
        const after = await h.reopen(next);
        expect(await after.credentials()).toEqual(before);
        expect((await after.revealCredential('aws:key/alice'))?.secret).toEqual({ secretAccessKey: 's2' });
        expect((await after.revealCredential('pg:password/bob'))?.secret).toEqual({ password: 'p' });
        expect(await after.verifyAudit()).toEqual({ ok: true, entries: 3, keyChanges: [{ seq: 3, at: LATER }] });
        expect((await after.auditEntries()).at(-1)).toMatchObject({ actor: 'ops@cli', event: 'key.rotated', outcome: 'ok' });
        await after.audit(entry(4), LATER);
        expect(await after.verifyAudit()).toMatchObject({ ok: true, entries: 4 });
        await h.exec("UPDATE audit SET detail = 'x' WHERE seq = 1");
        expect(await after.verifyAudit()).toMatchObject({
          ok: false,
          firstBad: { seq: 1, reason: expect.stringMatching(/before the key change at entry 3/) as string },
        });
      });

      test('a process that opened the state before a rekey is refused the lock and the journal, so it reaches no backend', async () => {
        const rotating = (await h.reopen()) as StateStore & KeyRotationPort;
        const next = otherKey();
        // A serve left running: it opened the state under the old key.
        const stale = await h.reopen();
        await rotating.acquireLock('datagrant rekey');
        await rotating.beginRotation(next);
        await rotating.resealAll(next);
        await rotating.finishRotation(next, 'ops@cli', LATER);
        await rotating.releaseLock();

        const refused = /master key of the state store .* was changed .* since this process opened it; nothing was written/;
        const lock = await stale.acquireLock('serve (apply)').catch((e: Error) => e);
        expect(lock).toBeInstanceOf(KeyChangedError);
        expect(String(lock)).toMatch(refused);
        expect(await (await h.reopen(next)).lockHolder()).toBeUndefined();
        await expect(stale.journalBegin('run-1', change('aws:key/alice'), LATER)).rejects.toThrow(refused);
        expect(await (await h.reopen(next)).journal()).toEqual([]);
      });

      test('during a rotation only the rekey that began it takes the lock (a rerun resumes); a stale process is refused', async () => {
        const rotating = (await h.reopen()) as StateStore & KeyRotationPort;
        const stale = await h.reopen();
        await rotating.beginRotation(otherKey());
        await expect(stale.acquireLock('serve (apply)')).rejects.toBeInstanceOf(KeyChangedError);
        await rotating.acquireLock('datagrant rekey');
        expect((await rotating.lockHolder())?.holder).toBe('datagrant rekey');
      });
    });

    if (opts.replicas) {
      describe('replicas sharing the state', () => {
        test('two replicas rotating one address at once leave exactly one current credential', async () => {
          const other = await h.reopen();
          await store.saveCredential(row('AKIA0'), { v: '0' });
          await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? store : other).saveCredential(row(`AKIA${i + 1}`), { v: String(i + 1) }, LATER)));
          const rows = await store.credentials();
          expect(rows).toHaveLength(11);
          expect(rows.filter((r) => r.state === 'current')).toHaveLength(1);
          const current = rows.find((r) => r.state === 'current')!;
          expect((await other.revealCredential('aws:key/alice'))?.secret.v).toBe(current.credentialId.slice(4));
        });

        test('two replicas recovering at once each get a disjoint share of the pending entries', async () => {
          const other = await h.reopen();
          const ids: number[] = [];
          for (let i = 0; i < 200; i++) ids.push(await store.journalBegin('run', change(`aws:user/u${i}`), AT));
          const [a, b] = await Promise.all([store.recoverJournal(), other.recoverJournal()]);
          expect([...a, ...b].map((e) => e.id).sort((x, y) => x - y)).toEqual(ids);
          expect((await store.journal(1000)).every((e) => e.outcome === 'interrupted')).toBe(true);
        });

        test('two replicas deciding and closing one review at once: no decision lands after the close', async () => {
          const other = await h.reopen();
          const population = Array.from({ length: 40 }, (_, i) => `aws|ds|read|u${i}`);
          await store.startReview(
            {
              name: 'race',
              startedAt: AT,
              startedBy: 'carol',
              manifest: {
                extractedAt: AT,
                query: { command: 'datagrant access', filters: {} },
                specFile: 'datagrant.yaml',
                specSha256: 'a'.repeat(64),
                auditHead: null,
                datagrantVersion: '0.1.0',
                populationSha256: 'b'.repeat(64),
                limits: [],
                invariants: [],
                requests: {},
                datasets: {},
              },
              population: [],
              emails: {},
            },
            { actor: 'carol', event: 'review.start', address: null, outcome: 'ok', detail: 'race' },
          );
          const decideOne = (rowId: string) =>
            other
              .recordDecisions(
                'race',
                [{ rowId, decision: 'keep', reason: 'fine', reviewer: 'dave', actor: 'dave@cli', decidedAt: LATER, selfReview: false }],
                [{ actor: 'dave', event: 'review.decide', address: null, outcome: 'keep', detail: rowId }],
              )
              .then(
                () => 'ok',
                (e: Error) => e.message,
              );
          const results = await Promise.all([
            ...population.slice(0, 20).map(decideOne),
            store
              .closeReview('race', LATER, 'carol', { actor: 'carol', event: 'review.close', address: null, outcome: 'ok', detail: 'race' })
              .then(() => 'closed'),
            ...population.slice(20).map(decideOne),
          ]);
          expect(results.filter((r) => r !== 'ok' && r !== 'closed').every((r) => /was closed/.test(r))).toBe(true);
          const entries = await store.auditEntries();
          const closeSeq = entries.find((e) => e.event === 'review.close')!.seq;
          expect(entries.filter((e) => e.event === 'review.decide').every((e) => e.seq < closeSeq)).toBe(true);
          expect((await store.review('race'))!.decisions).toHaveLength(results.filter((r) => r === 'ok').length);
          expect(await store.verifyAudit()).toEqual({ ok: true, entries: entries.length });
        });

        test('two replicas appending 50 entries each at once keep one chain, and verifying meanwhile never cries wolf', async () => {
          const other = await h.reopen();
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
          const [head] = await h.query<{ seq: string | number }>('SELECT seq FROM audit_head');
          expect(Number(head!.seq)).toBe(100);
        });
      });
    }
  });
}
