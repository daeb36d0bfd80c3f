// Issue 16: a master key wrapped by KMS (moto's KMS): init writes no plaintext key, apply and
// credentials export work through it, rekey replaces the data key, and a wrong KMS key, another
// installation's file or KMS refusing stops every command before anything is read or changed.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CreateAccessKeyCommand, CreateUserCommand, PutUserPolicyCommand, type IAMClient } from '@aws-sdk/client-iam';
import { CreateKeyCommand, DecryptCommand, KMSClient } from '@aws-sdk/client-kms';
import Database from 'better-sqlite3';
import { afterEach, expect, test } from 'vitest';
import { workspace, type Workspace } from '../support/cli.js';
import type { Moto } from '../support/moto.js';
import { MasterKey } from '../../src/store/crypto.js';
import { credentialAad, type CredRow } from '../../src/store/rows.js';
import { apply, canRead, expectNoChanges, issuedKey, keysOf, motoPerFile, s3For } from './aws-support.js';

const root = resolve(import.meta.dirname, '../..');
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
`;

const kms = () => new KMSClient({ region: moto.region, endpoint: moto.endpoint, credentials: moto.admin });
async function newKmsKey(): Promise<string> {
  const r = await kms().send(new CreateKeyCommand({ Description: 'datagrant test' }));
  return r.KeyMetadata!.Arn!;
}

function fresh(): string {
  const d = mkdtempSync(join(tmpdir(), 'dg-kms-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function kmsWorkspace(): Workspace {
  const ws = workspace({});
  cleanups.push(() => ws.cleanup());
  ws.writeSpec(SPEC);
  return ws;
}

const kmsFile = (ws: Workspace) => join(ws.dir, '.datagrant/master.key.kms');
const stateHash = (ws: Workspace) =>
  createHash('sha256')
    .update(readFileSync(join(ws.dir, '.datagrant/state.db')))
    .digest('hex');
interface Wrapped {
  version: number;
  kms: { keyId: string; installation: string; ciphertext: string };
}
const wrapped = (ws: Workspace) => JSON.parse(readFileSync(kmsFile(ws), 'utf8')) as Wrapped;

test('init --kms-key writes only the wrapped key; apply, export, rekey and verify work through KMS', async () => {
  const arn = await newKmsKey();
  const ws = kmsWorkspace();
  const init = await ws.run('init', '--kms-key', arn);
  expect(init.code, init.stderr).toBe(0);
  expect(init.stdout).toMatch(/master\.key\.kms: the master key wrapped by KMS key arn:aws:kms:us-east-1:\d+:key\/\S+; no plaintext key is written/);
  expect(readdirSync(join(ws.dir, '.datagrant')).filter((f) => f.startsWith('master.key'))).toEqual(['master.key.kms']);
  const file = wrapped(ws);
  expect(file.kms.keyId).toBe(arn);
  expect(init.stdout).toContain(`Installation ${file.kms.installation}:`);

  // The plaintext key (as KMS gives it back) is in no file of the state directory.
  const plain = (
    await kms().send(
      new DecryptCommand({
        KeyId: arn,
        CiphertextBlob: Buffer.from(file.kms.ciphertext, 'base64'),
        EncryptionContext: { purpose: 'datagrant-master-key', installation: file.kms.installation },
      }),
    )
  ).Plaintext!;
  const key = Buffer.from(plain);
  for (const f of readdirSync(join(ws.dir, '.datagrant'))) {
    const bytes = readFileSync(join(ws.dir, '.datagrant', f));
    for (const form of [key, Buffer.from(key.toString('hex')), Buffer.from(key.toString('base64'))]) expect(bytes.includes(form), f).toBe(false);
  }

  await apply(ws);
  await expectNoChanges(ws);
  const before = await issuedKey(ws, 'alice');
  await canRead(s3For(moto, before), 'ai-model-data', 'training/a.txt');

  const rekey = await ws.run('rekey');
  expect(rekey.code, rekey.stderr).toBe(0);
  expect(rekey.stdout).toMatch(/master\.key\.kms now holds the new master key, wrapped by KMS/);
  expect(wrapped(ws).kms.ciphertext).not.toBe(file.kms.ciphertext);
  expect(existsSync(`${kmsFile(ws)}.new`)).toBe(false);
  expect(existsSync(join(ws.dir, '.datagrant/master.key'))).toBe(false);
  const after = await issuedKey(ws, 'alice');
  expect([after.accessKeyId, after.secretAccessKey]).toEqual([before.accessKeyId, before.secretAccessKey]);
  await canRead(s3For(moto, after), 'ai-model-data', 'training/a.txt');
  const verify = await ws.run('audit', 'verify');
  expect(verify.code, verify.stderr).toBe(0);
  expect(verify.stdout).toMatch(/The master key changed at entry \d+/);
  await expectNoChanges(ws);

  // A backup restores on a fresh machine that has only the wrapped key.
  const backup = join(fresh(), 'kms.backup');
  expect((await ws.run('state', 'backup', backup)).code).toBe(0);
  const restored = kmsWorkspace();
  mkdirSync(join(restored.dir, '.datagrant'), { mode: 0o700 });
  copyFileSync(kmsFile(ws), kmsFile(restored));
  const r = await restored.run('state', 'restore', backup);
  expect(r.code, r.stderr).toBe(0);
  await expectNoChanges(restored);
  expect((await issuedKey(restored, 'alice')).secretAccessKey).toBe(before.secretAccessKey);

  // The same wrapped key in the environment, for a host without the file (a copy of the state here).
  const fromEnv = kmsWorkspace();
  mkdirSync(join(fromEnv.dir, '.datagrant'), { mode: 0o700 });
  copyFileSync(join(ws.dir, '.datagrant/state.db'), join(fromEnv.dir, '.datagrant/state.db'));
  fromEnv.env.DATAGRANT_MASTER_KEY_KMS = readFileSync(kmsFile(ws), 'utf8');
  expect((await issuedKey(fromEnv, 'alice')).secretAccessKey).toBe(before.secretAccessKey);
});

test("a wrong KMS key, another installation's file, or KMS refusing: a clear error, nothing read or changed", async () => {
  const arn = await newKmsKey();
  const other = await newKmsKey();
  const ws = kmsWorkspace();
  expect((await ws.run('init', '--kms-key', arn)).code).toBe(0);
  await apply(ws);
  const good = readFileSync(kmsFile(ws), 'utf8');
  const state = stateHash(ws);

  // The file names another KMS key than the one that wrapped its blob: KMS refuses.
  writeFileSync(kmsFile(ws), good.replace(arn, other));
  const wrongArn = await ws.run('credentials', 'list');
  expect(wrongArn.code).toBe(1);
  expect(wrongArn.stderr).toMatch(
    new RegExp(
      `cannot unwrap the master key in .*master\\.key\\.kms with KMS key ${other.replace(/[/]/g, '\\/')}: KMS refused \\(AccessDeniedException: .*\\)\\. The file was wrapped by another KMS key .*; nothing was read or changed`,
    ),
  );

  // A blob altered, or bound to another installation: KMS refuses it too (the context is part of it).
  const f = JSON.parse(good) as Wrapped;
  writeFileSync(kmsFile(ws), JSON.stringify({ ...f, kms: { ...f.kms, installation: 'another-installation-0001' } }));
  const wrongContext = await ws.run('credentials', 'list');
  expect(wrongContext.code).toBe(1);
  expect(wrongContext.stderr).toMatch(/cannot unwrap the master key .* KMS refused \(InvalidCiphertextException/);

  // Another installation's wrapped key (another data key under the same KMS key): refused by
  // the installation it names, before the state is used.
  const elsewhere = kmsWorkspace();
  expect((await elsewhere.run('init', '--kms-key', arn)).code).toBe(0);
  copyFileSync(kmsFile(elsewhere), kmsFile(ws));
  const foreign = await ws.run('credentials', 'list');
  expect(foreign.code).toBe(1);
  expect(foreign.stderr).toMatch(/wrong master key: the state store .* was created with a different master key .*; nothing was read or changed/);

  // KMS refusing this identity kms:Decrypt.
  writeFileSync(kmsFile(ws), good);
  await iam.send(new CreateUserCommand({ UserName: 'no-kms' }));
  await iam.send(
    new PutUserPolicyCommand({
      UserName: 'no-kms',
      PolicyName: 'p',
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          { Effect: 'Allow', Action: '*', Resource: '*' },
          { Effect: 'Deny', Action: 'kms:Decrypt', Resource: '*' },
        ],
      }),
    }),
  );
  const k = (await iam.send(new CreateAccessKeyCommand({ UserName: 'no-kms' }))).AccessKey!;
  const denied = kmsWorkspace();
  copyFileSync(join(ws.dir, '.datagrant/state.db'), join(denied.dir, 'state.db'));
  Object.assign(denied.env, { DATAGRANT_MASTER_KEY_KMS: good, AWS_ACCESS_KEY_ID: k.AccessKeyId, AWS_SECRET_ACCESS_KEY: k.SecretAccessKey });
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_ACCESS_KEY_ID = k.AccessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = k.SecretAccessKey;
  let refused;
  try {
    refused = await denied.run('--state-dir', '.', 'credentials', 'list');
  } finally {
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
  }
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(
    /cannot unwrap the master key in DATAGRANT_MASTER_KEY_KMS .* KMS refused \(access denied \(HTTP 403\)\)\. .*this identity may not kms:Decrypt/,
  );

  // None of it touched the state; the right file still works.
  expect(stateHash(ws)).toBe(state);
  expect(await keysOf(iam, 'alice')).toHaveLength(1);
  writeFileSync(kmsFile(ws), good);
  await expectNoChanges(ws);

  // init --kms-key never replaces a key that is there.
  const again = await ws.run('init', '--kms-key', other);
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(/a master key is already configured .* init --kms-key makes the key of a new state/);
  expect(readFileSync(kmsFile(ws), 'utf8')).toBe(good);
});

test.each(['resealed:1', 'switched'])('rekey of a KMS-wrapped key killed after %s: a rerun finishes under a new data key', async (step) => {
  const arn = await newKmsKey();
  const ws = kmsWorkspace();
  expect((await ws.run('init', '--kms-key', arn)).code).toBe(0);
  await apply(ws);
  const before = await issuedKey(ws, 'trainer');
  const old = readFileSync(kmsFile(ws), 'utf8');
  const killed = await new Promise<NodeJS.Signals | null>((done) => {
    const child = spawn(process.execPath, [join(root, 'bin/datagrant.js'), 'rekey'], {
      cwd: ws.dir,
      env: { ...process.env, ...ws.env, DATAGRANT_TEST_CRASH_AT: step },
      stdio: 'ignore',
    });
    child.on('exit', (_code, signal) => done(signal));
  });
  expect(killed).toBe('SIGKILL');
  expect(readFileSync(kmsFile(ws), 'utf8')).toBe(old);
  expect(existsSync(`${kmsFile(ws)}.new`)).toBe(true);
  const list = await ws.run('credentials', 'list');
  expect(list.code).toBe(1);
  expect(list.stderr).toMatch(step === 'switched' ? /wrong master key/ : /rotation .* is unfinished/);

  const again = await ws.run('rekey');
  expect(again.code, again.stderr).toBe(0);
  expect(readFileSync(kmsFile(ws), 'utf8')).not.toBe(old);
  const after = await issuedKey(ws, 'trainer');
  expect(after.secretAccessKey).toBe(before.secretAccessKey);
  await canRead(s3For(moto, after), 'ai-model-data', 'training/a.txt');
  expect((await ws.run('audit', 'verify')).code).toBe(0);
});

/** For each stored row, which of the keys (plaintext MasterKey texts) open it. */
function openers(ws: Workspace, keys: Record<string, MasterKey>): { row: string; by: string[] }[] {
  const db = new Database(join(ws.dir, '.datagrant/state.db'), { readonly: true });
  try {
    return (db.prepare('SELECT * FROM credentials ORDER BY address, credential_id').all() as CredRow[]).map((r) => ({
      row: r.address,
      by: Object.entries(keys)
        .filter(([, k]) => {
          try {
            k.open({ nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag }, credentialAad(r.address, r.credential_id));
            return true;
          } catch {
            return false;
          }
        })
        .map(([name]) => name),
    }));
  } finally {
    db.close();
  }
}

/** The plaintext of a KMS-wrapped key file, as KMS gives it back. */
async function unwrapped(file: string): Promise<MasterKey> {
  const f = JSON.parse(readFileSync(file, 'utf8')) as Wrapped;
  const r = await kms().send(
    new DecryptCommand({
      KeyId: f.kms.keyId,
      CiphertextBlob: Buffer.from(f.kms.ciphertext, 'base64'),
      EncryptionContext: { purpose: 'datagrant-master-key', installation: f.kms.installation },
    }),
  );
  return new MasterKey(Buffer.from(r.Plaintext!));
}

const MOVE_STEPS = ['key-written', 'begun', 'resealed:1', 'resealed', 'switched', 'renamed', 'overwritten'];

test.each(MOVE_STEPS)('rekey --kms-key from master.key killed after %s: one key per secret, a rerun finishes, no plaintext key is left', async (step) => {
  const arn = await newKmsKey();
  const ws = kmsWorkspace();
  expect((await ws.run('init')).code).toBe(0);
  await apply(ws);
  const before = await issuedKey(ws, 'trainer');
  const plainFile = join(ws.dir, '.datagrant/master.key');
  const oldText = readFileSync(plainFile, 'utf8').trim();
  const old = MasterKey.parse(oldText);

  const killed = await new Promise<NodeJS.Signals | null>((done) => {
    const child = spawn(process.execPath, [join(root, 'bin/datagrant.js'), 'rekey', '--kms-key', arn], {
      cwd: ws.dir,
      env: { ...process.env, ...ws.env, DATAGRANT_TEST_CRASH_AT: step },
      stdio: 'ignore',
    });
    child.on('exit', (_code, signal) => done(signal));
  });
  expect(killed).toBe('SIGKILL');
  const newFile = existsSync(`${kmsFile(ws)}.new`) ? `${kmsFile(ws)}.new` : kmsFile(ws);
  const fresh = await unwrapped(newFile);
  const found = openers(ws, { old, fresh });
  expect(found).toHaveLength(2);
  for (const o of found) expect(o.by, o.row).toHaveLength(1);
  const switched = MOVE_STEPS.indexOf(step) >= MOVE_STEPS.indexOf('switched');
  if (switched) for (const o of found) expect(o.by).toEqual(['fresh']);
  // The plaintext key stays until the state is under the KMS-wrapped one, and that file is in place.
  expect(existsSync(plainFile)).toBe(true);
  expect(existsSync(kmsFile(ws))).toBe(['renamed', 'overwritten'].includes(step));
  if (step === 'overwritten') expect(readFileSync(plainFile).includes(Buffer.from(oldText))).toBe(false);
  if (['renamed', 'overwritten'].includes(step)) {
    // Both files: other commands name the one the state opens with, and how to finish.
    const list = await ws.run('credentials', 'list');
    expect(list.code).toBe(1);
    expect(list.stderr).toMatch(
      /the state opens with .*master\.key\.kms: a move into KMS .* was interrupted .*Run `datagrant rekey --kms-key <the same KMS key>` again/,
    );
  }

  const again = await ws.run('rekey', '--kms-key', arn);
  expect(again.code, again.stderr).toBe(0);
  expect(again.stdout).toMatch(/master\.key\.kms now holds the new master key, wrapped by KMS; .*master\.key was overwritten and removed/);
  expect(readdirSync(join(ws.dir, '.datagrant')).filter((f) => f.startsWith('master.key'))).toEqual(['master.key.kms']);
  expect(openers(ws, { old, fresh }).map((o) => o.by)).toEqual([['fresh'], ['fresh']]);
  const after = await issuedKey(ws, 'trainer');
  expect([after.accessKeyId, after.secretAccessKey]).toEqual([before.accessKeyId, before.secretAccessKey]);
  await canRead(s3For(moto, after), 'ai-model-data', 'training/a.txt');
  const verify = await ws.run('audit', 'verify');
  expect(verify.code, verify.stderr).toBe(0);
  expect(verify.stdout).toMatch(/The master key changed at entry \d+/);
  // The old plaintext key opens nothing any more.
  ws.env.DATAGRANT_MASTER_KEY = oldText;
  expect((await ws.run('credentials', 'list')).stderr).toMatch(/wrong master key/);
});

test('rekey --kms-key from DATAGRANT_MASTER_KEY: the operator is told to switch to the wrapped key', async () => {
  const arn = await newKmsKey();
  const old = MasterKey.generate();
  const ws = kmsWorkspace();
  ws.env.DATAGRANT_MASTER_KEY = old;
  expect((await ws.run('init')).code).toBe(0);
  await apply(ws);
  const before = await issuedKey(ws, 'alice');
  const r = await ws.run('rekey', '--kms-key', arn);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/Set DATAGRANT_MASTER_KEY_KMS to that file's content wherever datagrant runs, remove DATAGRANT_MASTER_KEY/);
  expect((await ws.run('credentials', 'list')).stderr).toMatch(/wrong master key/);
  delete ws.env.DATAGRANT_MASTER_KEY;
  ws.env.DATAGRANT_MASTER_KEY_KMS = readFileSync(`${kmsFile(ws)}.new`, 'utf8');
  expect((await issuedKey(ws, 'alice')).secretAccessKey).toBe(before.secretAccessKey);
  await expectNoChanges(ws);
  expect((await ws.run('audit', 'verify')).code).toBe(0);
});
