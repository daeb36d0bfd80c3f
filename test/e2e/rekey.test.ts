// Issue 16: `datagrant rekey` killed (SIGKILL, from inside, right after each step) at every step:
// every stored secret then opens under exactly one of the two keys, a rerun finishes, the
// secrets are intact under the new key, the old key is refused and `audit verify` passes across
// the change, naming it. Runs the built CLI (`npm run build`) in a child process.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, test } from 'vitest';
import { workspace, type Workspace } from '../support/cli.js';
import { MasterKey } from '../../src/store/crypto.js';
import { credentialAad, type CredRow } from '../../src/store/rows.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const root = resolve(import.meta.dirname, '../..');
let ws: Workspace | undefined;
afterEach(() => ws?.cleanup());

const SECRETS: Record<string, Record<string, string>> = {
  'aws:key/alice': { accessKeyId: 'AKIAALICE', secretAccessKey: 'alice-secret' },
  'aws:key/bob': { accessKeyId: 'AKIABOB', secretAccessKey: 'bob-secret' },
  'pg:password/carol': { password: 'carol-password' },
};

const stateDb = (w: Workspace) => join(w.dir, '.datagrant/state.db');
const keyFile = (w: Workspace) => join(w.dir, '.datagrant/master.key');
const newKeyFile = (w: Workspace) => join(w.dir, '.datagrant/master.key.new');

/** A state with three current credentials, one retiring, and a few audit entries, under a key file. */
async function seeded(env: NodeJS.ProcessEnv = {}): Promise<{ w: Workspace; old: string }> {
  const w = workspace(env);
  expect((await w.run('init')).code).toBe(0);
  const old = env.DATAGRANT_MASTER_KEY ?? readFileSync(keyFile(w), 'utf8');
  const store = new SqliteStore(stateDb(w), MasterKey.parse(old));
  for (const [address, secret] of Object.entries(SECRETS)) {
    const [backend, rest] = address.split(':') as [string, string];
    const principal = rest.split('/')[1]!;
    if (address === 'aws:key/alice') {
      await store.saveCredential({ address, credentialId: 'AKIAALICEOLD', backend, principal, createdAt: '2026-01-01T00:00:00Z' }, { old: 'alice-old' });
      await store.saveCredential(
        { address, credentialId: secret.accessKeyId!, backend, principal, createdAt: '2026-02-01T00:00:00Z' },
        secret,
        '2026-12-31T00:00:00Z',
      );
    } else {
      await store.saveCredential({ address, credentialId: secret.accessKeyId ?? 'pw1', backend, principal, createdAt: '2026-02-01T00:00:00Z' }, secret);
    }
    await store.audit({ actor: 'seed', event: 'credential.issued', address, outcome: 'ok', detail: null }, '2026-02-01T00:00:00Z');
  }
  await store.close();
  return { w, old };
}

/** For each stored row, which of the keys open it. */
function openers(w: Workspace, keys: Record<string, string>): { row: string; plain: string[]; by: string[] }[] {
  const db = new Database(stateDb(w), { readonly: true });
  try {
    return (db.prepare('SELECT * FROM credentials ORDER BY address, credential_id').all() as CredRow[]).map((r) => {
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
      return { row: `${r.address}#${r.credential_id}`, plain, by };
    });
  } finally {
    db.close();
  }
}

function childRekey(w: Workspace, crashAt: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(root, 'bin/datagrant.js'), 'rekey'], {
      cwd: w.dir,
      env: { ...process.env, ...w.env, DATAGRANT_TEST_CRASH_AT: crashAt },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('exit', (code, signal) => done({ code, signal, stderr }));
  });
}

/** What every finished rotation must show, whichever way it got there. */
async function finishedUnder(w: Workspace, old: string, fresh: string, expected: Record<string, string>): Promise<void> {
  expect(openers(w, { old, fresh }).map((o) => [o.row, o.by, o.plain])).toEqual(Object.entries(expected).map(([row, plain]) => [row, ['fresh'], [plain]]));
  const verify = await w.run('audit', 'verify');
  expect(verify.code, verify.stderr).toBe(0);
  expect(verify.stdout).toMatch(/Audit chain intact: 4 entries verified\.\nThe master key changed at entry 4 \(\S+\): entries from 4 on verify/);
  const listed = await w.run('credentials', 'list');
  expect(listed.code, listed.stderr).toBe(0);
}

const rows = (key: string) => Object.fromEntries(openers(ws!, { key }).map((o) => [o.row, o.plain[0]!]));

describe('rekey killed at each step', () => {
  const STEPS = ['key-written', 'begun', 'resealed:1', 'resealed:2', 'resealed:3', 'resealed', 'switched'];

  test.each(STEPS)('after %s: each secret opens under exactly one key, commands refuse clearly, a rerun finishes', async (step) => {
    const s = await seeded();
    ws = s.w;
    const before = rows(s.old);
    expect(Object.keys(before)).toHaveLength(4);

    const killed = await childRekey(ws, step);
    expect(killed.signal, killed.stderr).toBe('SIGKILL');

    // The new key was on disk, whole and 0600, before the state depended on it.
    const fresh = readFileSync(newKeyFile(ws), 'utf8');
    expect(statSync(newKeyFile(ws)).mode & 0o777).toBe(0o600);
    for (const o of openers(ws, { old: s.old, fresh })) expect(o.by, o.row).toHaveLength(1);
    const movedSoFar = openers(ws, { fresh }).filter((o) => o.by.length === 1).length;
    const steps = STEPS.indexOf(step);
    expect(movedSoFar).toBe(step === 'switched' || step === 'resealed' ? 4 : Math.max(0, steps - 1));

    // In the middle, every other command refuses and says what to do.
    const list = await ws.run('credentials', 'list');
    if (['key-written'].includes(step)) expect(list.code).toBe(0);
    else if (step === 'switched') {
      expect(list.stderr).toMatch(/master\.key\.new holds the key a `datagrant rekey` moved it to: that rekey was interrupted.*Run `datagrant rekey` again/);
      expect(list.stderr).toMatch(/Keep .*master\.key\.new: the state needs it/);
      expect(list.stderr).not.toMatch(/delete/i);
    } else expect(list.stderr).toMatch(/a master key rotation of the state store .* is unfinished .* Run `datagrant rekey` again/);

    const again = await ws.run('rekey');
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(keyFile(ws), 'utf8')).toBe(fresh);
    expect(existsSync(newKeyFile(ws))).toBe(false);
    await finishedUnder(ws, s.old, fresh, before);

    // The old key opens nothing any more.
    const withOld = await ws.run('credentials', 'list', '--json');
    expect(withOld.code).toBe(0);
    ws.env.DATAGRANT_MASTER_KEY = s.old;
    const refused = await ws.run('credentials', 'list');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/wrong master key/);
  });
});

describe('rekey', () => {
  test.each([
    ['--new-key-file naming the current key file', (w: Workspace) => ['--new-key-file', keyFile(w)]],
    ['a master.key.new that is a copy of the current key', (w: Workspace) => (writeFileSync(newKeyFile(w), readFileSync(keyFile(w)), { mode: 0o600 }), [])],
  ])('%s is refused: nothing rotates, and no key file is called spare', async (_what, args) => {
    const s = await seeded();
    ws = s.w;
    const r = await ws.run('rekey', ...args(ws));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/holds the current master key: a rotation to it would change nothing, so nothing was done/);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/delete/i);
    expect(readFileSync(keyFile(ws), 'utf8')).toBe(s.old);
    expect((await ws.run('credentials', 'list')).code).toBe(0);
  });

  test('with DATAGRANT_MASTER_KEY: the new key goes to a file and the operator is told to switch the variable', async () => {
    const old = MasterKey.generate();
    const s = await seeded({ DATAGRANT_MASTER_KEY: old });
    ws = s.w;
    const before = rows(old);
    const r = await ws.run('rekey');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Set DATAGRANT_MASTER_KEY to that key .* the old key no longer opens the state/);
    const fresh = readFileSync(newKeyFile(ws), 'utf8');
    expect((await ws.run('credentials', 'list')).stderr).toMatch(/wrong master key/);
    ws.env.DATAGRANT_MASTER_KEY = fresh.trim();
    await finishedUnder(ws, old, fresh, before);
    expect((await ws.run('rekey')).stdout).toMatch(/already is the one in .*master\.key\.new/);
  });

  test('twice: verify passes across both changes and names them; an entry before them that was changed is caught', async () => {
    const s = await seeded();
    ws = s.w;
    expect((await ws.run('rekey')).code).toBe(0);
    expect((await ws.run('credentials', 'show', 'bob', '--reveal')).code).toBe(0);
    expect((await ws.run('rekey')).code).toBe(0);
    const verify = await ws.run('audit', 'verify');
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(
      /The master key changed at entries 4 \(\S+\), 6 \(\S+\): entries from 6 on verify under the current key; entry 6, under it, vouches for the 5 before it/,
    );

    const db = new Database(stateDb(ws));
    db.prepare("UPDATE audit SET actor = 'mallory' WHERE seq = 2").run();
    db.close();
    const broken = await ws.run('audit', 'verify');
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/BROKEN at entry 1: the entries before the key change at entry 6 are not the ones it vouches for/);
    // Nor is a broken chain vouched for by another rotation.
    const refused = await ws.run('rekey');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/the audit chain does not verify under the current master key .* nothing was changed/);
  });

  test('a lost new key file during an unfinished rotation is named, not guessed', async () => {
    const s = await seeded();
    ws = s.w;
    expect((await childRekey(ws, 'resealed:1')).signal).toBe('SIGKILL');
    const other = join(ws.dir, 'other.key');
    writeFileSync(other, `${MasterKey.generate()}\n`, { mode: 0o600 });
    const r = await ws.run('rekey', '--new-key-file', other);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/an unfinished master key rotation moves this state to another key .* than the one given/);
    for (const o of openers(ws, { old: s.old, fresh: readFileSync(newKeyFile(ws), 'utf8') })) expect(o.by).toHaveLength(1);
  });
  test('--kms-key from master.key with KMS unreachable: refused before the state or the key file changes', async () => {
    const s = await seeded();
    ws = s.w;
    const before = rows(s.old);
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
      AWS_ACCESS_KEY_ID: 'AKIATEST',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'us-east-1',
    });
    let r;
    try {
      r = await ws.run('rekey', '--kms-key', 'arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000');
    } finally {
      for (const k of ['AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot make a master key with KMS key arn:aws:kms:us-east-1:111122223333:key\/\S+: .*nothing was read or changed/);
    expect(readFileSync(keyFile(ws), 'utf8')).toBe(s.old);
    expect(existsSync(join(ws.dir, '.datagrant/master.key.kms.new'))).toBe(false);
    expect(rows(s.old)).toEqual(before);
    const list = await ws.run('credentials', 'list');
    expect(list.code, list.stderr).toBe(0);

    const both = await ws.run('rekey', '--kms-key', 'arn:aws:kms:us-east-1:111122223333:key/x', '--new-key-file', 'k');
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/--new-key-file is for a plaintext master key; --kms-key makes the new one a data key from KMS/);
  });
});
