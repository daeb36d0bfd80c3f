// Issue 16: `state backup` while another connection writes, `state restore` onto a fresh
// directory: the restored state plans no change, deletes no key as foreign, and the credentials
// read from it still work on moto.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IAMClient } from '@aws-sdk/client-iam';
import { afterEach, expect, test } from 'vitest';
import { workspace, type Workspace } from '../support/cli.js';
import type { Moto } from '../support/moto.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { apply, canRead, expectNoChanges, initWorkspace, issuedKey, keysOf, motoPerFile, s3For } from './aws-support.js';

let moto: Moto;
let iam: IAMClient;
const cleanups: (() => void)[] = [];
motoPerFile({ auth: true, managedPolicies: false }, { each: (m, i) => ((moto = m), (iam = i)) });
afterEach(() => cleanups.splice(0).forEach((f) => f()));

const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets: { data: { backend: aws, bucket: ai-model-data, prefix: training/ } }
principals:
  trainer: { type: service, grants: [{ dataset: data, access: read }] }
  alice: { type: person, grants: [{ dataset: data, access: read }] }
  bob: { type: person, grants: [{ dataset: data, access: read }] }
`;

function track(ws: Workspace): Workspace {
  cleanups.push(() => ws.cleanup());
  return ws;
}

function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), 'dg-backup-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('a backup taken while the state is written restores onto a fresh directory with no changes and working keys', async () => {
  const ws = track(await initWorkspace(SPEC));
  await apply(ws);
  const before = { trainer: await issuedKey(ws, 'trainer'), alice: await issuedKey(ws, 'alice'), bob: await issuedKey(ws, 'bob') };
  const keyText = readFileSync(join(ws.dir, '.datagrant/master.key'), 'utf8');

  // Another connection appends to the audit chain all through the backup (as serve would).
  const writer = new SqliteStore(join(ws.dir, '.datagrant/state.db'), MasterKey.parse(keyText));
  let writes = 0;
  const timer = setInterval(() => {
    void writer.audit({ actor: 'writer', event: 'test.write', address: null, outcome: 'ok', detail: `write ${writes++}` }, new Date().toISOString());
  }, 1);
  const out = join(scratch(), 'state.backup');
  let backup;
  try {
    backup = await ws.run('state', 'backup', out);
  } finally {
    clearInterval(timer);
    await writer.close();
  }
  expect(backup.code, backup.stderr).toBe(0);
  expect(backup.stdout).toContain('the master key is not in it');
  expect(statSync(out).mode & 0o777).toBe(0o600);
  expect(writes).toBeGreaterThan(0);
  // Nothing is left beside it: the copy was renamed into place whole.
  expect(readdirSync(join(out, '..'))).toEqual(['state.backup']);

  // A fresh machine: the spec, the same master key, and the backup.
  const fresh = track(workspace({}));
  fresh.writeSpec(SPEC);
  mkdirSync(join(fresh.dir, '.datagrant'), { mode: 0o700 });

  // Without a key, and with another key, nothing is written.
  const noKey = await fresh.run('state', 'restore', out);
  expect(noKey.code).toBe(1);
  expect(noKey.stderr).toMatch(/needs the master key the backup was made with/);
  writeFileSync(join(fresh.dir, '.datagrant/master.key'), `${MasterKey.generate()}\n`, { mode: 0o600 });
  const wrong = await fresh.run('state', 'restore', out);
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toMatch(/wrong master key: the backup .* was created with a different master key/);
  expect(existsSync(join(fresh.dir, '.datagrant/state.db'))).toBe(false);

  writeFileSync(join(fresh.dir, '.datagrant/master.key'), keyText, { mode: 0o600 });
  const restored = await fresh.run('state', 'restore', out);
  expect(restored.code, restored.stderr).toBe(0);
  expect(restored.stdout).toMatch(/Restored the state of installation \S+ \(3 credentials\)/);

  await expectNoChanges(fresh);
  // Applying changes nothing either: no key of these users is deleted as foreign or re-issued.
  const again = await fresh.run('apply', '--auto-approve');
  expect(again.code, again.stderr).toBe(0);
  for (const [name, key] of Object.entries(before)) {
    expect(await keysOf(iam, name)).toEqual([key.accessKeyId]);
    const exported = await issuedKey(fresh, name);
    expect(exported).toEqual(key);
    await canRead(s3For(moto, exported), 'ai-model-data', 'training/a.txt');
  }
  const verify = await fresh.run('audit', 'verify');
  expect(verify.code, verify.stderr).toBe(0);
  const log = await fresh.run('audit', 'log', '--json');
  const events = (JSON.parse(log.stdout) as { event: string }[]).map((e) => e.event);
  expect(events).toContain('state.restored');
});

test('backup refuses the state directory and an existing file; restore refuses a state that is there and a file that is no backup', async () => {
  const ws = track(await initWorkspace(SPEC));
  const inside = await ws.run('state', 'backup', '.datagrant/copy.db');
  expect(inside.code).toBe(1);
  expect(inside.stderr).toMatch(/refusing to write the backup .* inside the state directory/);

  const dir = scratch();
  const out = join(dir, 'b.db');
  writeFileSync(out, 'precious');
  const exists = await ws.run('state', 'backup', out);
  expect(exists.code).toBe(1);
  expect(exists.stderr).toMatch(/exists; pass --force/);
  expect((await ws.run('state', 'backup', out, '--force')).code).toBe(0);

  // Restoring over the state that is there needs --force.
  const over = await ws.run('state', 'restore', out);
  expect(over.code).toBe(1);
  expect(over.stderr).toMatch(/already holds a state \(state\.db\); restore into a fresh state directory, or pass --force/);
  expect((await ws.run('state', 'restore', out, '--force')).code).toBe(0);

  const fresh = track(workspace({}));
  mkdirSync(join(fresh.dir, '.datagrant'), { mode: 0o700 });
  copyFileSync(join(ws.dir, '.datagrant/master.key'), join(fresh.dir, '.datagrant/master.key'));
  const junk = join(dir, 'junk');
  writeFileSync(junk, 'not a database at all, just text');
  const bad = await fresh.run('state', 'restore', junk);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/is not a datagrant backup/);
  expect(existsSync(join(fresh.dir, '.datagrant/state.db'))).toBe(false);
});

test('after rekey the issued keys still work, nothing changes, and a plan saved under the old key is refused', async () => {
  const ws = track(await initWorkspace(SPEC));
  await apply(ws);
  const before = await issuedKey(ws, 'alice');
  ws.writeSpec(`${SPEC}  dave: { type: person, grants: [{ dataset: data, access: read }] }\n`);
  const saved = await ws.run('plan', '--out', 'old.plan');
  expect(saved.code, saved.stderr).toBe(0);

  const rekey = await ws.run('rekey');
  expect(rekey.code, rekey.stderr).toBe(0);
  expect(rekey.stdout).toMatch(/Sealed 3 credentials under the new master key/);

  const stale = await ws.run('apply', '--auto-approve', 'old.plan');
  expect(stale.code).toBe(1);
  expect(stale.stderr).toMatch(/the plan file .*old\.plan is not one this state made.*master key.*nothing was changed/);
  await expect(keysOf(iam, 'dave')).rejects.toThrow(/cannot be found/);

  ws.writeSpec(SPEC);
  await expectNoChanges(ws);
  const after = await issuedKey(ws, 'alice');
  expect(after).toEqual(before);
  await canRead(s3For(moto, after), 'ai-model-data', 'training/a.txt');
  expect((await ws.run('audit', 'verify')).code).toBe(0);
});
