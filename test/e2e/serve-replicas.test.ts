// Issue 9, finding 9: a deactivation the IdP got its 200 for is carried out, whatever happens to
// the replica that took it. Two `datagrant serve` processes (the built CLI) share a PostgreSQL
// store. The replica that accepted a deactivation is killed (SIGKILL) right after its 200, before
// its debounced reconcile starts: the other replica carries it out. The store's connections are
// cut while a reconcile runs: once the store is back, the reconcile is retried and succeeds.
// Proven with the deactivated user's issued key against moto with IAM enforcement.
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from 'vitest';
import { hashToken } from '../../src/scim/server.js';
import { MasterKey } from '../../src/store/crypto.js';
import { workspace, type Workspace } from '../support/cli.js';
import { startProxy, type CountingProxy } from '../support/http-proxy.js';
import { freePort, startMoto, type AwsKey, type Moto } from '../support/moto.js';
import { adminQuery, pgFixture, urlFor } from '../support/pg.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { canRead, issuedKey, keyRefused, s3For, useMotoAdmin } from './aws-support.js';

const BIN = join(resolve(import.meta.dirname, '../..'), 'bin/datagrant.js');
const TOKEN = 'test-token-for-replicas-0123456789';
const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
groups:
  ml-researchers: { grants: [{ dataset: training-data, access: read }] }
scim:
  groups: { "ML Research": ml-researchers }
`;
/** A bound no load breaks, for what takes a second or two when the machine is idle. */
const GENEROUS_MS = 10_000;

const fx = pgFixture('replicas');
let moto: Moto;
let ws: Workspace;
let db: string;
const replicas: Replica[] = [];
let pgProxy: TcpProxy | undefined;
let awsProxy: CountingProxy | undefined;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
});
afterAll(async () => {
  await moto?.stop();
  await fx.cleanup();
});
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  db = await fx.database(`store${Date.now() % 100000}`);
});
afterEach(async () => {
  for (const r of replicas.splice(0)) await r.stop();
  await pgProxy?.close();
  await awsProxy?.close();
  pgProxy = awsProxy = undefined;
  ws?.cleanup();
});

/** The state and the SCIM identities in PostgreSQL at `storeUrl`, shared by every replica. */
async function workspaceOn(storeUrl: string): Promise<void> {
  ws = workspace({ DATAGRANT_STORE_URL: storeUrl, DATAGRANT_MASTER_KEY: MasterKey.generate(), DATAGRANT_SCIM_TOKEN_SHA256: hashToken(TOKEN) });
  ws.writeSpec(SPEC);
  const r = await ws.run('init');
  expect(r.code, r.stderr).toBe(0);
}

interface Replica {
  id: string;
  url: string;
  child: ChildProcess;
  output(): string;
  kill(): void;
  stop(): Promise<void>;
}

/** `datagrant serve` in a process of its own, named `id` (DATAGRANT_REPLICA_ID), once it answers. */
async function startReplica(id: string, extraEnv: Record<string, string> = {}): Promise<Replica> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, ...ws.env, DATAGRANT_REPLICA_ID: id, ...extraEnv };
  delete env.DATAGRANT_ACTOR;
  const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--interval', '3600'], { cwd: ws.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const replica: Replica = {
    id,
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => out,
    kill: () => void child.kill('SIGKILL'),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  replicas.push(replica);
  await until(
    `replica ${id} to answer`,
    async () => (await fetch(`${replica.url}/healthz`)).ok,
    30_000,
    () => out,
  );
  return replica;
}

async function until(
  what: string,
  ok: () => Promise<boolean>,
  ms = GENEROUS_MS,
  diagnostics: () => string = () => replicas.map((r) => `--- ${r.id}\n${r.output()}`).join('\n'),
): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await ok().catch(() => false)) return performance.now() - t0;
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${diagnostics()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function scim(r: Replica, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${r.url}/scim/v2${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/scim+json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const DEACTIVATE = { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }] };

/** No SCIM write waits for a reconcile: every replica is idle. */
const nothingPending = async () => {
  const { rows } = await adminQuery<{ name: string; seq: string }>(db, 'SELECT name, seq FROM datagrant.scim_work');
  const seq = (n: string) => rows.find((r) => r.name === n)?.seq;
  return seq('changed') === seq('reconciled');
};

/** Ada, in the mapped group through `via`, with a key that reads the dataset. */
async function provisionAda(via: Replica): Promise<{ id: string; key: AwsKey }> {
  const created = await scim(via, 'POST', '/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'ada@example.com', active: true });
  expect(created.status).toBe(201);
  const id = created.json.id as string;
  await scim(via, 'POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'ML Research', members: [{ value: id }] });
  await until("ada's key", async () => (await ws.run('credentials', 'export', 'ada', '--format', 'json')).code === 0, 30_000);
  const key = await issuedKey(ws, 'ada');
  await until("ada's key to read the dataset", async () => !(await keyRefused(moto, key)), 30_000);
  await canRead(s3For(moto, key), 'ai-model-data', 'training/a.txt', 'training');
  await until('both replicas to be idle', nothingPending, 30_000);
  return { id, key };
}

/** Who deleted `address`, from the audit log. */
async function deletedBy(address: string): Promise<string | undefined> {
  const r = await ws.run('audit', 'log', '--json');
  expect(r.code, r.stderr).toBe(0);
  const entries = JSON.parse(r.stdout) as { actor: string; event: string; address: string | null; outcome: string }[];
  return entries.find((e) => e.address === address && e.event === 'change.delete' && e.outcome === 'ok')?.actor;
}

test('the replica that accepted a deactivation is killed right after its 200: the other replica revokes the key', { timeout: 180_000 }, async () => {
  // GIVEN two replicas on one PostgreSQL store, and ada with a working key
  await workspaceOn(urlFor(db));
  const a = await startReplica('replica-a');
  const b = await startReplica('replica-b');
  const { id, key } = await provisionAda(a);

  // WHEN ada is deactivated through A, and A is killed the moment it answers
  const off = await scim(a, 'PATCH', `/Users/${id}`, DEACTIVATE);
  a.kill();
  expect(off.status).toBe(200);
  expect(off.json.active).toBe(false);

  // THEN her key is refused soon, although nobody told B and its interval is an hour away
  const ms = await until("ada's key to be refused", () => keyRefused(moto, key));
  expect(ms).toBeLessThan(GENEROUS_MS);
  // and B records the work as done, without a failure, and the audit log names it
  await until('the work to be covered', nothingPending);
  expect(await deletedBy('aws:key/ada')).toMatch(/@replica-b \(serve\)$/);
  expect(b.output()).not.toMatch(/"msg":"reconcile failed"/);
});

test(
  "the store's connections are cut during the reconcile of a deactivation: once it is back, the run is retried and revokes the key",
  { timeout: 180_000 },
  async () => {
    // GIVEN a replica that reaches PostgreSQL through a proxy that can cut it off, and AWS through one that tells when a reconcile calls it
    pgProxy = await startTcpProxy({ host: new URL(urlFor(db)).hostname, port: Number(new URL(urlFor(db)).port || 5432) });
    awsProxy = await startProxy(moto.endpoint);
    await workspaceOn(pgProxy.via(urlFor(db)));
    const r = await startReplica('replica-a', { AWS_ENDPOINT_URL: awsProxy.endpoint });
    const { id, key } = await provisionAda(r);

    // WHEN ada is deactivated, and the store goes away as the reconcile reads AWS, for 3 s
    let cutAt: Promise<number> | undefined;
    let backAt: Promise<number> | undefined;
    awsProxy.onForwarded = () => {
      if (!cutAt) {
        pgProxy!.cut();
        cutAt = Promise.resolve(performance.now());
        backAt = new Promise((done) =>
          setTimeout(() => {
            pgProxy!.restore();
            done(performance.now());
          }, 3000),
        );
      }
      return false;
    };
    const off = await scim(r, 'PATCH', `/Users/${id}`, DEACTIVATE);
    expect(off.status).toBe(200);
    await until('the reconcile to reach AWS', async () => cutAt !== undefined);

    // THEN while the store is away, /healthz says so
    const health = await fetch(`${r.url}/healthz`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { reason: string }).reason).toMatch(/store/);

    // AND once it is back, the key is refused soon, the failed run having been retried
    const back = await backAt!;
    await until("ada's key to be refused", () => keyRefused(moto, key), 30_000);
    const sinceBack = performance.now() - back;
    expect(sinceBack).toBeLessThan(GENEROUS_MS);
    expect(r.output()).toMatch(/"msg":"reconcile failed"/);
    expect(r.output()).toMatch(/"msg":"reconcile will be retried"/);
    expect((await fetch(`${r.url}/healthz`)).status).toBe(200);
    await until('the work to be covered', nothingPending);
  },
);
