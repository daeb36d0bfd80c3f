// A leaked key, on moto with IAM enforcement: `credentials rotate NAME --revoke-old` deletes every
// older key of the principal and issues a new one in one run, and a run killed half-way (in a child
// process, through a proxy that withholds moto's answer) is finished by the next apply, with the
// plan in between saying so.
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { IAMClient } from '@aws-sdk/client-iam';
import { startMoto, type AwsKey, type Moto } from '../support/moto.js';
import { startProxy, type CountingProxy } from '../support/http-proxy.js';
import { workspace, type Workspace } from '../support/cli.js';
import { MasterKey } from '../../src/store/crypto.js';
import { adminIam, apply, canRead, expectNoChanges, issuedKey, keyIsDead, keysOf, s3For, useMotoAdmin } from './aws-support.js';

const root = resolve(import.meta.dirname, '../..');
const MASTER = MasterKey.generate();
const SPEC = `version: 1
settings: { rotate: 90d, rotationGrace: 24h }
backends: { aws: { type: aws } }
datasets: { data: { backend: aws, bucket: ai-model-data } }
principals:
  trainer: { type: service, grants: [{ dataset: data, access: read }] }
`;

let moto: Moto;
let proxy: CountingProxy;
let ws: Workspace;
let iam: IAMClient;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
  proxy = await startProxy(moto.endpoint);
});
afterAll(async () => {
  await proxy?.close();
  await moto?.stop();
});
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  iam = adminIam(moto);
  ws = workspace({ DATAGRANT_MASTER_KEY: MASTER });
  ws.writeSpec(SPEC);
  await apply(ws);
});
afterEach(() => {
  proxy.onForwarded = undefined;
  ws?.cleanup();
  iam?.destroy();
});

const read = (key: AwsKey) => canRead(s3For(moto, key), 'ai-model-data', 'training/a.txt');

type Entry = { event: string; address: string | null; detail: string | null; outcome: string };
async function auditLog(): Promise<Entry[]> {
  return JSON.parse((await ws.run('audit', 'log', '--json')).stdout) as Entry[];
}

/** After the leak is dealt with: only the stored key exists, it reads, the leaked ones are refused, and nothing is left to do. */
async function revoked(leaked: AwsKey[]): Promise<AwsKey> {
  const now = await issuedKey(ws, 'trainer');
  expect(await keysOf(iam, 'trainer')).toEqual([now.accessKeyId]);
  for (const k of leaked) await keyIsDead(moto, k);
  await read(now);
  await expectNoChanges(ws);
  return now;
}

describe('credentials rotate --revoke-old', () => {
  test('one command: the leaked key is refused at once, the new key reads, the audit shows both', async () => {
    const leaked = await issuedKey(ws, 'trainer');
    const r = await ws.run('credentials', 'rotate', 'trainer', '--revoke-old');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain(`aws:key/trainer~${leaked.accessKeyId}`);
    expect(r.stdout).toContain('credential revoked: deleted now, without grace');
    const fresh = await revoked([leaked]);
    expect(fresh.accessKeyId).not.toBe(leaked.accessKeyId);

    const log = (await auditLog()).filter((e) => ['credential.issue', 'credential.rotate', 'credential.erase'].includes(e.event));
    expect(log.map((e) => `${e.event} ${e.address} ${e.detail}`).slice(-2)).toEqual([
      `credential.erase aws:key/trainer id ${leaked.accessKeyId}`,
      `credential.rotate aws:key/trainer id ${fresh.accessKeyId}`,
    ]);
    // nothing retires later: the store holds the new key alone
    expect(JSON.parse((await ws.run('credentials', 'list', '--json')).stdout)).toEqual([
      expect.objectContaining({ address: 'aws:key/trainer', credentialId: fresh.accessKeyId, state: 'current' }),
    ]);
  });

  test('a key already in its grace goes too: both older keys die in the same run', async () => {
    const first = await issuedKey(ws, 'trainer');
    expect((await ws.run('credentials', 'rotate', 'trainer')).code).toBe(0);
    const second = await issuedKey(ws, 'trainer');
    await read(first); // in its grace
    const r = await ws.run('credentials', 'rotate', 'trainer', '--revoke-old');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    await revoked([first, second]);
    const erased = (await auditLog()).filter((e) => e.event === 'credential.erase').map((e) => e.detail);
    expect(erased).toEqual(expect.arrayContaining([`id ${first.accessKeyId}`, `id ${second.accessKeyId}`]));
  });
});

/**
 * `credentials rotate trainer --revoke-old` in a child process through the proxy; at the first
 * request whose body matches `at`, moto executes it, the child never hears the answer, and is killed.
 */
function killedRotate(at: RegExp): Promise<{ signal: NodeJS.Signals | null; hit: boolean }> {
  return new Promise((done) => {
    let hit = false;
    const child = spawn(process.execPath, [join(root, 'bin/datagrant.js'), 'credentials', 'rotate', 'trainer', '--revoke-old'], {
      cwd: ws.dir,
      env: { ...process.env, ...ws.env, AWS_ENDPOINT_URL: proxy.endpoint },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proxy.reset();
    proxy.onForwarded = (_n, _req, body) => {
      if (hit || !at.test(body)) return false;
      hit = true;
      child.kill('SIGKILL');
      return true;
    };
    child.on('exit', (_code, signal) => done({ signal, hit }));
  });
}

describe('a --revoke-old killed half-way is finished by the next apply, and the plan says so first', () => {
  test('killed while deactivating the leaked key: the plan names its deletion, without grace', async () => {
    const leaked = await issuedKey(ws, 'trainer');
    expect(await killedRotate(/Action=UpdateAccessKey/)).toEqual({ signal: 'SIGKILL', hit: true });
    proxy.onForwarded = undefined;
    // the key is still there (deactivated only, which moto honours) and still the store's current
    // key: the next plan deletes it and rotates the slot, rather than keep it
    expect(await keysOf(iam, 'trainer')).toEqual([leaked.accessKeyId]);
    const plan = await ws.run('plan', '--detailed-exitcode');
    expect(plan.code, `${plan.stdout}\n${plan.stderr}`).toBe(2);
    expect(plan.stdout).toContain(`aws:key/trainer~${leaked.accessKeyId}`);
    expect(plan.stdout).toContain('credential revoked: deleted now, without grace');
    expect(plan.stdout).toMatch(/-\/\+ aws:key\/trainer\b/);
    await apply(ws);
    await revoked([leaked]);
  });

  test.each([
    ['deleting the leaked key', /Action=DeleteAccessKey/],
    ['issuing the new key (its secret never received)', /Action=CreateAccessKey/],
  ])('killed while %s', async (_what, at) => {
    const leaked = await issuedKey(ws, 'trainer');
    expect(await killedRotate(at)).toEqual({ signal: 'SIGKILL', hit: true });
    proxy.onForwarded = undefined;
    // the principal has no usable stored key yet: the plan issues one
    const plan = await ws.run('plan', '--detailed-exitcode');
    expect(plan.code, `${plan.stdout}\n${plan.stderr}`).toBe(2);
    expect(plan.stdout).toMatch(/\+ aws:key\/trainer\b/);
    await apply(ws);
    await revoked([leaked]);
  });
});
