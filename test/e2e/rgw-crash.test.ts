// Crash safety on a real Ceph RGW: an apply runs in a child process and is killed with SIGKILL
// right after the gateway executed its k-th request, before the answer arrives — for every k of
// the run. After each kill a rerun must converge, the gateway must hold no key whose secret the
// store lacks (nor the store a secret for a key that is gone), and every principal's policies must
// be in place. A kill in the middle of a rotation is the worst case Ceph bug 48761 makes: the new
// key exists, its secret is lost, and the key's creation has deleted the user's policies.
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { workspace, type Workspace } from '../support/cli.js';
import { startProxy, type CountingProxy } from '../support/http-proxy.js';
import { contentsOf, expectDenied, readObject, rgwFixture, s3As } from '../support/rgw.js';

const root = resolve(import.meta.dirname, '../..');
const MASTER = MasterKey.generate();
const fx = rgwFixture('crash');
let proxy: CountingProxy;
let data: string;

const spec = (prefix: string) => `version: 1
backends:
  onprem: { type: rgw, endpoint: "${proxy.endpoint}", accessKeyId: "\${RGW_KEY}", secretAccessKey: "\${RGW_SECRET}", userPrefix: ${prefix} }
datasets:
  training: { backend: onprem, bucket: ${data}, prefix: training/ }
  private: { backend: onprem, bucket: ${data}, prefix: private/ }
groups:
  readers: { grants: [{ dataset: training, access: read }] }
principals:
  alice: { type: person, groups: [readers], grants: [{ dataset: private, access: read }] }
  bob: { type: service, groups: [readers] }
`;

beforeAll(async () => {
  proxy = await startProxy(fx.rgw.endpoint);
  data = await fx.makeBucket('data', ['training/a.txt', 'private/p.txt', 'other/o.txt']);
});
afterAll(async () => {
  await proxy?.close();
  await fx.cleanup();
});

function newWorkspace(prefix: string): Workspace {
  const ws = workspace({ DATAGRANT_MASTER_KEY: MASTER, RGW_KEY: fx.rgw.admin.accessKeyId, RGW_SECRET: fx.rgw.admin.secretAccessKey });
  ws.writeSpec(spec(prefix));
  return ws;
}

/** Runs the CLI in a child process; kills it when `verdict` says so for a request the gateway executed. */
function child(ws: Workspace, args: string[], verdict: (n: number, method: string, url: string) => 'kill' | 'pass'): Promise<NodeJS.Signals | null> {
  return new Promise((done) => {
    const p = spawn(process.execPath, [join(root, 'bin/datagrant.js'), ...args], {
      cwd: ws.dir,
      env: { ...process.env, ...ws.env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proxy.reset();
    proxy.onForwarded = (n, req) => {
      if (verdict(n, req.method ?? '', req.url ?? '') !== 'kill') return false;
      p.kill('SIGKILL');
      return true;
    };
    p.on('exit', (_code, signal) => done(signal));
  });
}

/** The store and the gateway agree on every key; each principal holds its policies and reads its data, and no more. */
async function invariants(ws: Workspace, prefix: string): Promise<void> {
  const store = new SqliteStore(join(ws.dir, '.datagrant/state.db'), MasterKey.parse(MASTER));
  try {
    const stored = await store.credentials();
    const held: string[] = [];
    for (const p of ['alice', 'bob']) held.push(...((await fx.user(`${prefix}${p}`))?.keys ?? []));
    expect(held.sort(), 'the keys the gateway holds are exactly the stored ones').toEqual(stored.map((c) => c.credentialId).sort());
    expect(await fx.policyNames(`${prefix}alice`)).toEqual(['dg-boundary', 'dg-direct-grants', 'dg-group-readers']);
    expect(await fx.policyNames(`${prefix}bob`)).toEqual(['dg-boundary', 'dg-group-readers']);
    for (const c of stored.filter((x) => x.state === 'current')) {
      const secret = (await store.revealCredential(c.address))!.secret;
      const s3 = s3As(fx.rgw, { accessKeyId: secret.accessKeyId!, secretAccessKey: secret.secretAccessKey! });
      try {
        expect(await readObject(s3, data, 'training/a.txt')).toBe(contentsOf(data, 'training/a.txt'));
        await expectDenied(readObject(s3, data, 'other/o.txt'), `${c.principal} reading another prefix`);
      } finally {
        s3.destroy();
      }
    }
  } finally {
    await store.close();
  }
}

async function converges(ws: Workspace, prefix: string, what: string): Promise<void> {
  proxy.onForwarded = undefined;
  const rerun = await ws.run('apply', '--auto-approve');
  expect(rerun.code, `rerun after ${what}:\n${rerun.stdout}\n${rerun.stderr}`).toBe(0);
  const again = await ws.run('plan', '--detailed-exitcode');
  expect(again.code, `plan after the rerun (${what}):\n${again.stdout}`).toBe(0);
  await invariants(ws, prefix);
}

test('a SIGKILL after any request of an apply loses no key and orphans none', { timeout: 600_000 }, async () => {
  // Count the requests of an uninterrupted apply.
  const probe = newWorkspace(`${fx.prefix}probe-`);
  expect((await probe.run('init')).code).toBe(0);
  expect(await child(probe, ['apply', '--auto-approve'], () => 'pass')).toBeNull();
  const total = proxy.count();
  probe.cleanup();
  expect(total).toBeGreaterThanOrEqual(10);

  let kills = 0;
  for (let k = 1; k <= total; k++) {
    const prefix = `${fx.prefix}k${k}-`;
    const ws = newWorkspace(prefix);
    try {
      expect((await ws.run('init')).code).toBe(0);
      if ((await child(ws, ['apply', '--auto-approve'], (n) => (n === k ? 'kill' : 'pass'))) === 'SIGKILL') kills++;
      await converges(ws, prefix, `a kill at request ${k} of ${total}`);
    } finally {
      ws.cleanup();
    }
  }
  expect(kills).toBeGreaterThanOrEqual(total - 2);
});

test('a SIGKILL right after a rotation made its key: the lost key is deleted, the deleted policies put back', async () => {
  const prefix = `${fx.prefix}rot-`;
  const ws = newWorkspace(prefix);
  try {
    expect((await ws.run('init')).code).toBe(0);
    expect((await ws.run('apply', '--auto-approve')).code).toBe(0);
    const before = (await fx.user(`${prefix}alice`))!.keys;
    // WHEN `credentials rotate` dies the moment the gateway made the new key
    const signal = await child(ws, ['credentials', 'rotate', 'alice'], (_n, method, url) =>
      method === 'PUT' && /^\/admin\/user\?(.*&)?key=/.test(url) ? 'kill' : 'pass',
    );
    expect(signal).toBe('SIGKILL');
    // THEN the gateway holds a key nobody recorded, and (bug 48761) alice has no policy left
    const after = (await fx.user(`${prefix}alice`))!;
    expect(after.keys.filter((k) => !before.includes(k))).toHaveLength(1);
    expect(Object.keys(after.policies ?? {})).toEqual([]);
    // AND the plan repairs both, and the next apply converges
    proxy.onForwarded = undefined;
    const plan = await ws.run('plan');
    expect(plan.stdout).toContain('+ onprem:inline-policy/alice/dg-group-readers');
    expect(plan.stdout).toMatch(/- onprem:key\/alice~[A-Z0-9]{20}/);
    await converges(ws, prefix, 'a kill during a rotation');
    expect((await fx.user(`${prefix}alice`))!.keys).toEqual(before);
  } finally {
    ws.cleanup();
  }
});

/** alice's stored key, read straight from the store. */
async function storedKey(ws: Workspace): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  const store = new SqliteStore(join(ws.dir, '.datagrant/state.db'), MasterKey.parse(MASTER));
  try {
    const c = (await store.credentials()).find((x) => x.principal === 'alice' && x.state === 'current')!;
    const { accessKeyId, secretAccessKey } = (await store.revealCredential(c.address))!.secret;
    return { accessKeyId: accessKeyId!, secretAccessKey: secretAccessKey! };
  } finally {
    await store.close();
  }
}

/** The leaked key is refused at once; the gateway holds alice's stored key alone, which reads. */
async function leakRevoked(ws: Workspace, prefix: string, leaked: { accessKeyId: string; secretAccessKey: string }): Promise<void> {
  const fresh = await storedKey(ws);
  expect(fresh.accessKeyId).not.toBe(leaked.accessKeyId);
  expect((await fx.user(`${prefix}alice`))!.keys).toEqual([fresh.accessKeyId]);
  const s3 = s3As(fx.rgw, leaked);
  try {
    await expectDenied(readObject(s3, data, 'training/a.txt'), 'the leaked key reading its dataset');
  } finally {
    s3.destroy();
  }
  await invariants(ws, prefix);
  expect((await ws.run('plan', '--detailed-exitcode')).code).toBe(0);
}

test('credentials rotate --revoke-old: the leaked key dies in the same run, the audit shows its erase and the rotation', async () => {
  const prefix = `${fx.prefix}leak-`;
  const ws = newWorkspace(prefix);
  try {
    expect((await ws.run('init')).code).toBe(0);
    expect((await ws.run('apply', '--auto-approve')).code).toBe(0);
    const leaked = await storedKey(ws);
    const r = await ws.run('credentials', 'rotate', 'alice', '--revoke-old');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    await leakRevoked(ws, prefix, leaked);
    const log = JSON.parse((await ws.run('audit', 'log', '--json')).stdout) as { event: string; address: string; detail: string }[];
    const fresh = await storedKey(ws);
    expect(log.filter((e) => e.event === 'credential.erase' || e.event === 'credential.rotate').map((e) => `${e.event} ${e.address} ${e.detail}`)).toEqual([
      `credential.erase onprem:key/alice id ${leaked.accessKeyId}`,
      `credential.rotate onprem:key/alice id ${fresh.accessKeyId}`,
    ]);
  } finally {
    ws.cleanup();
  }
});

test('a --revoke-old killed as the gateway deleted the leaked key: the plan issues a key, the next apply converges', async () => {
  const prefix = `${fx.prefix}leakk-`;
  const ws = newWorkspace(prefix);
  try {
    expect((await ws.run('init')).code).toBe(0);
    expect((await ws.run('apply', '--auto-approve')).code).toBe(0);
    const leaked = await storedKey(ws);
    const signal = await child(ws, ['credentials', 'rotate', 'alice', '--revoke-old'], (_n, method, url) =>
      method === 'DELETE' && /^\/admin\/user\?(.*&)?key=/.test(url) ? 'kill' : 'pass',
    );
    expect(signal).toBe('SIGKILL');
    proxy.onForwarded = undefined;
    const plan = await ws.run('plan', '--detailed-exitcode');
    expect(plan.code, plan.stdout).toBe(2);
    expect(plan.stdout).toMatch(/\+ onprem:key\/alice\b/);
    expect((await ws.run('apply', '--auto-approve')).code).toBe(0);
    await leakRevoked(ws, prefix, leaked);
  } finally {
    ws.cleanup();
  }
});
