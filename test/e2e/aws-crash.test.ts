// Crash safety (issue 3): an apply runs in a child process and is killed with SIGKILL right after
// moto executed its k-th request, before the answer arrives — the worst moment: the side effect
// happened and datagrant never heard of it — for every k of the run. After each kill a rerun must
// converge, IAM must hold no key whose secret is missing from the store, the store no secret for a
// key that does not exist, and the issued key must grant exactly what the spec says.
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { GetAccountAuthorizationDetailsCommand, type IAMClient } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startMoto, type Moto } from '../support/moto.js';
import { startProxy, type CountingProxy } from '../support/http-proxy.js';
import { adminIam, canRead, cannotTouch, cannotWrite, issuedKey, keysOf, s3For, useMotoAdmin } from './aws-support.js';
import { workspace, type Workspace } from '../support/cli.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const root = resolve(import.meta.dirname, '../..');
// Small enough that every request of the apply can be a kill point (one spawned process each),
// large enough that the apply runs its changes concurrently and makes more than 30 requests.
const PRINCIPALS = 10;
const MASTER = MasterKey.generate();

function spec(): string {
  const l = [
    'version: 1',
    'backends: { aws: { type: aws } }',
    'datasets:',
    '  data: { backend: aws, bucket: ai-model-data, prefix: training/ }',
    '  art: { backend: aws, bucket: ai-model-artifacts }',
  ];
  l.push('groups:', '  readers: { grants: [{ dataset: data, access: read }] }', 'principals:');
  for (let i = 0; i < PRINCIPALS; i++) {
    l.push(
      i % 5 === 0 ? `  p${i}: { type: service, groups: [readers], grants: [{ dataset: art, access: write }] }` : `  p${i}: { type: person, groups: [readers] }`,
    );
  }
  return l.join('\n');
}

let moto: Moto;
let proxy: CountingProxy;

beforeAll(async () => {
  // Nothing here attaches an AWS managed policy, and loading them makes every reset take seconds.
  moto = await startMoto({ auth: true, managedPolicies: false });
  proxy = await startProxy(moto.endpoint);
});
afterAll(async () => {
  await proxy?.close();
  await moto?.stop();
});

/**
 * Run `datagrant apply` in a child process; kill it once the proxy forwarded request `killAt`, or
 * as `killAt` decides per request (`withhold`: the child never gets that answer).
 */
function childApply(
  ws: Workspace,
  killAt: number | undefined | ((n: number, body: string) => 'kill' | 'withhold' | 'pass'),
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(root, 'bin/datagrant.js'), 'apply', '--auto-approve'], {
      cwd: ws.dir,
      env: { ...process.env, ...ws.env, AWS_ENDPOINT_URL: proxy.endpoint },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proxy.reset();
    proxy.onForwarded = (n, _req, body) => {
      const verdict = typeof killAt === 'function' ? killAt(n, body) : n === killAt ? 'kill' : 'pass';
      if (verdict === 'kill') child.kill('SIGKILL');
      return verdict !== 'pass';
    };
    child.on('exit', (code, signal) => done({ code, signal }));
  });
}

async function invariants(iam: IAMClient, ws: Workspace): Promise<void> {
  const store = new SqliteStore(join(ws.dir, '.datagrant/state.db'), MasterKey.parse(MASTER));
  try {
    const stored = new Set((await store.credentials()).map((c) => c.credentialId));
    const d = await iam.send(new GetAccountAuthorizationDetailsCommand({ Filter: ['User'] }));
    const inIam = new Set<string>();
    for (const u of d.UserDetailList ?? []) {
      if (!u.Path?.startsWith('/datagrant/')) continue;
      for (const k of await keysOf(iam, u.UserName!)) inIam.add(k);
    }
    expect(
      [...inIam].filter((k) => !stored.has(k)),
      'keys in IAM whose secret is not stored',
    ).toEqual([]);
    expect(
      [...stored].filter((k) => !inIam.has(k)),
      'stored secrets for keys that do not exist',
    ).toEqual([]);
    expect(inIam.size).toBe(PRINCIPALS);
    // every stored secret decrypts
    for (const c of await store.credentials()) expect((await store.revealCredential(c.address))?.secret.secretAccessKey).toBeTruthy();
  } finally {
    await store.close();
  }
}

test('a SIGKILL after any backend call loses no credential and orphans nothing', { timeout: 900_000 }, async () => {
  // Count the requests of an uninterrupted apply, and find where the key creations are.
  await moto.reset();
  useMotoAdmin(moto);
  const probe = workspace({ DATAGRANT_MASTER_KEY: MASTER });
  probe.writeSpec(spec());
  const creates: number[] = [];
  const full = childApply(probe, undefined);
  proxy.onForwarded = (n, _req, body) => {
    if (body.includes('Action=CreateAccessKey')) creates.push(n);
    return false;
  };
  expect((await full).code).toBe(0);
  const total = proxy.count();
  probe.cleanup();
  expect(creates).toHaveLength(PRINCIPALS);

  // Every request is a kill point: each write executed and never answered, each key created and
  // its secret never received. A rerun may make a request or two fewer than the probe, so a kill
  // point near the end may never fire: that run finished, and is checked all the same.
  let kills = 0;
  for (let k = 1; k <= total; k++) {
    await moto.reset();
    useMotoAdmin(moto);
    const iam = adminIam(moto);
    const ws = workspace({ DATAGRANT_MASTER_KEY: MASTER });
    ws.writeSpec(spec());
    let killedRequest = '';
    try {
      const killed = await childApply(ws, (n, body) => {
        if (n !== k) return 'pass';
        killedRequest = body;
        return 'kill';
      });
      if (killed.signal === 'SIGKILL') kills++;
      else expect({ code: killed.code, endedEarly: proxy.count() < k }, `kill point ${k} of ${total}`).toEqual({ code: 0, endedEarly: true });
      proxy.onForwarded = undefined;
      // the rerun recovers and converges
      process.env.AWS_ENDPOINT_URL = moto.endpoint;
      const rerun = await ws.run('apply', '--auto-approve');
      expect(rerun.code, `rerun after kill at ${k}:\n${rerun.stdout}\n${rerun.stderr}`).toBe(0);
      const again = await ws.run('plan', '--detailed-exitcode', '--exact');
      expect(again.code, `plan after rerun (kill at ${k}):\n${again.stdout}`).toBe(0);
      await invariants(iam, ws);
      // The key of the user the killed request was about (a key whose secret was lost on the way
      // is replaced): it reads its dataset, and no more.
      const user = /(?:^|&)UserName=(p\d+)(?:&|$)/.exec(killedRequest)?.[1] ?? 'p1';
      const s3 = s3For(moto, await issuedKey(ws, user));
      try {
        await canRead(s3, 'ai-model-data', 'training/a.txt', 'training');
        await cannotWrite(s3, 'ai-model-data', 'training/a.txt');
        await cannotTouch(s3, 'other-bucket', 'secret.txt');
        if (Number(user.slice(1)) % 5 !== 0) await cannotTouch(s3, 'ai-model-artifacts', 'model.bin');
      } finally {
        s3.destroy();
      }
    } finally {
      ws.cleanup();
      iam.destroy();
    }
  }
  expect(kills).toBeGreaterThanOrEqual(30);
});

test('a SIGKILL among the key deletions of a deprovisioning: the rerun needs no --allow-missing-credentials', async () => {
  await moto.reset();
  useMotoAdmin(moto);
  const iam = adminIam(moto);
  const ws = workspace({ DATAGRANT_MASTER_KEY: MASTER });
  const team = (names: string[]) =>
    [
      'version: 1',
      'backends: { aws: { type: aws } }',
      'datasets: { data: { backend: aws, bucket: ai-model-data, prefix: training/ } }',
      'principals:',
      ...names.map((n) => `  ${n}: { type: service, grants: [{ dataset: data, access: read }] }`),
    ].join('\n');
  try {
    ws.writeSpec(team(['a', 'b', 'c', 'd']));
    expect((await ws.run('apply', '--auto-approve')).code).toBe(0);
    ws.writeSpec(team(['d']));
    // Keys go first, concurrently: IAM deletes all three, and datagrant hears of none of it.
    let deletes = 0;
    const killed = await childApply(ws, (_n, body) => (!body.includes('Action=DeleteAccessKey') ? 'pass' : ++deletes === 3 ? 'kill' : 'withhold'));
    expect(killed.signal).toBe('SIGKILL');
    proxy.onForwarded = undefined;
    process.env.AWS_ENDPOINT_URL = moto.endpoint;
    // Its own journal says who deleted them: not a wrong account, no flag to ask for; and a
    // declined apply in between settles nothing, so the journal still says so afterwards.
    ws.confirm = async () => false;
    const declined = await ws.run('apply');
    ws.confirm = undefined;
    expect(declined.stderr).toContain('Apply cancelled.');
    expect(declined.stdout + declined.stderr).not.toMatch(/allow-missing-credentials|wrong account/);
    const rerun = await ws.run('apply', '--auto-approve');
    expect(rerun.code, `${rerun.stdout}\n${rerun.stderr}`).toBe(0);
    expect(rerun.stdout + rerun.stderr).not.toMatch(/allow-missing-credentials|wrong account/);
    expect((await ws.run('plan', '--detailed-exitcode', '--exact')).code).toBe(0);
    const stored = JSON.parse((await ws.run('credentials', 'list', '--json')).stdout) as { principal: string; credentialId: string }[];
    expect(stored.map((c) => c.principal)).toEqual(['d']);
    expect(await keysOf(iam, 'd')).toEqual([stored[0]!.credentialId]);
  } finally {
    ws.cleanup();
    iam.destroy();
  }
});
