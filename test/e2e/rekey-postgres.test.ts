// Issue 16: `datagrant rekey` on the PostgreSQL state store (DATAGRANT_STORE_URL), with the
// master key in DATAGRANT_MASTER_KEY, killed (SIGKILL from inside) after each step: every secret
// opens under exactly one key, a rerun finishes, and the state then works under the new key only.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, expect, test } from 'vitest';
import { workspace, type Workspace } from '../support/cli.js';
import { adminQuery, pgFixture, urlFor } from '../support/pg.js';
import { MasterKey } from '../../src/store/crypto.js';
import { openPgStore } from '../../src/store/postgres.js';
import { credentialAad, type CredRow } from '../../src/store/rows.js';

const root = resolve(import.meta.dirname, '../..');
const fx = pgFixture('rekey');
let ws: Workspace | undefined;
afterEach(() => ws?.cleanup());
afterAll(() => fx.cleanup());

const SECRETS: Record<string, string> = { 'aws:key/alice': 'alice-secret', 'aws:key/bob': 'bob-secret', 'pg:password/carol': 'carol-password' };

async function seeded(db: string, old: string): Promise<Workspace> {
  const w = workspace({ DATAGRANT_STORE_URL: urlFor(db), DATAGRANT_MASTER_KEY: old });
  expect((await w.run('init')).code).toBe(0);
  const store = await openPgStore(urlFor(db), MasterKey.parse(old));
  try {
    for (const [address, secret] of Object.entries(SECRETS)) {
      const principal = address.split('/')[1]!;
      await store.saveCredential(
        { address, credentialId: `id-${principal}`, backend: address.split(':')[0]!, principal, createdAt: '2026-02-01T00:00:00Z' },
        { secret },
      );
      await store.audit({ actor: 'seed', event: 'credential.issued', address, outcome: 'ok', detail: null }, '2026-02-01T00:00:00Z');
    }
  } finally {
    await store.close();
  }
  return w;
}

async function openers(db: string, keys: Record<string, string>): Promise<{ row: string; by: string[]; plain: string[] }[]> {
  const { rows } = await adminQuery<CredRow>(db, 'SELECT * FROM datagrant.credentials ORDER BY address');
  return rows.map((r) => {
    const by: string[] = [];
    const plain: string[] = [];
    for (const [name, text] of Object.entries(keys)) {
      try {
        plain.push(MasterKey.parse(text).open({ nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag }, credentialAad(r.address, r.credential_id)));
        by.push(name);
      } catch {
        // not this key
      }
    }
    return { row: r.address, by, plain };
  });
}

test.each(['begun', 'resealed:1', 'resealed:2', 'resealed', 'switched'])('killed after %s: one key per secret, a rerun finishes', async (step) => {
  const db = await fx.database(`k${step.replace(/\W/g, '')}`);
  const old = MasterKey.generate();
  ws = await seeded(db, old);
  const killed = await new Promise<NodeJS.Signals | null>((done) => {
    const child = spawn(process.execPath, [join(root, 'bin/datagrant.js'), 'rekey'], {
      cwd: ws!.dir,
      env: { ...process.env, ...ws!.env, DATAGRANT_TEST_CRASH_AT: step },
      stdio: 'ignore',
    });
    child.on('exit', (_code, signal) => done(signal));
  });
  expect(killed).toBe('SIGKILL');
  const fresh = readFileSync(join(ws.dir, '.datagrant/master.key.new'), 'utf8').trim();
  for (const o of await openers(db, { old, fresh })) expect(o.by, o.row).toHaveLength(1);
  const midway = await ws.run('credentials', 'list');
  expect(midway.code).toBe(1);
  expect(midway.stderr).toMatch(step === 'switched' ? /wrong master key/ : /a master key rotation of the state store .* is unfinished/);

  const again = await ws.run('rekey');
  expect(again.code, again.stderr).toBe(0);
  expect(again.stdout).toMatch(/Set DATAGRANT_MASTER_KEY to that key/);
  expect((await openers(db, { old, fresh })).map((o) => [o.row, o.by, o.plain])).toEqual(
    Object.entries(SECRETS).map(([row, secret]) => [row, ['fresh'], [JSON.stringify({ secret })]]),
  );
  expect((await ws.run('credentials', 'list')).stderr).toMatch(/wrong master key/);
  ws.env.DATAGRANT_MASTER_KEY = fresh;
  const shown = await ws.run('credentials', 'show', 'carol', '--reveal');
  expect(shown.code, shown.stderr).toBe(0);
  expect(shown.stdout).toContain('carol-password');
  const verify = await ws.run('audit', 'verify');
  expect(verify.code, verify.stderr).toBe(0);
  expect(verify.stdout).toMatch(/The master key changed at entry 4 /);
});
