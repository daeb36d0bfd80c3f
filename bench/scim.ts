// SCIM benchmark (issue 5) against `datagrant serve` on loopback with the durable SQLite store:
// requests/s and p50/p99 at 10 concurrent connections (from a worker thread, like a separate client) for GET /Users/{id}, GET with a filter,
// POST /Users and PATCH deactivate; then deprovision latency (PATCH active:false → the issued key
// is refused) over 50 users. Targets: p99 ≤ 10 ms for GET/PATCH; deprovision p99 ≤ 2 s.
import { Agent, request } from 'node:http';
import { Worker } from 'node:worker_threads';
import { cpus, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Io } from '../src/cli/io.js';
import { main } from '../src/cli/main.js';
import { silenceSdkNodeVersionWarning } from '../src/cli/warnings.js';
import { hashToken } from '../src/scim/server.js';
import { startServe } from '../src/serve/serve.js';
import { startMoto } from '../test/support/moto.js';

silenceSdkNodeVersionWarning();
const CONNECTIONS = 10;
const REQUESTS = Number(process.env.BENCH_SCIM_REQUESTS ?? 2000);
const DEPROVISION_USERS = Number(process.env.BENCH_DEPROVISION_USERS ?? 50);
const TOKEN = 'bench-token-0123456789abcdef';

const moto = await startMoto({ auth: true });
const dir = mkdtempSync(join(tmpdir(), 'dg-scimbench-'));
writeFileSync(
  join(dir, 'datagrant.yaml'),
  `version: 1
backends: { aws: { type: aws } }
datasets: { data: { backend: aws, bucket: ai-model-data, prefix: training/ } }
groups: { readers: { grants: [{ dataset: data, access: read }] } }
scim: { groups: { Readers: readers } }
`,
);
const env = {
  ...process.env,
  AWS_ACCESS_KEY_ID: moto.admin.accessKeyId,
  AWS_SECRET_ACCESS_KEY: moto.admin.secretAccessKey,
  AWS_REGION: moto.region,
  AWS_ENDPOINT_URL: moto.endpoint,
  DATAGRANT_MASTER_KEY: 'c'.repeat(64),
  DATAGRANT_SCIM_TOKEN_SHA256: hashToken(TOKEN),
};
Object.assign(process.env, env);
let captured = '';
const io: Io = { stdout: (s) => (captured += s), stderr: (s) => (captured += s), env, cwd: dir, isTTY: false, now: () => new Date() };
// The serve defaults (100 ms debounce), as in production.
const server = await startServe(io, { port: 0, intervalSeconds: 3600, logger: pino({ level: 'silent' }) });
const url = new URL(server.url);
const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });

function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path: `/scim/v2${path}`, agent, headers: { authorization: `Bearer ${TOKEN}`, ...(data ? { 'content-type': 'application/scim+json', 'content-length': data.length } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

const user = (userName: string) => ({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName, active: true, emails: [{ value: userName, primary: true }] });
const patchActive = (active: boolean) => ({ schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active } }] });
const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function load(label: string, kind: 'get' | 'filter' | 'post' | 'patch', ids: string[], ok: number): Promise<void> {
  const worker = new Worker(new URL('./scim-load.mjs', import.meta.url), {
    workerData: { url: server.url, token: TOKEN, connections: CONNECTIONS, requests: REQUESTS, kind, ids, ok },
  });
  const r = await new Promise<{ seconds: number; latencies: number[]; bad: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  const lat = r.latencies.sort((a, b) => a - b);
  console.log(`  ${label.padEnd(30)} ${(REQUESTS / r.seconds).toFixed(0).padStart(6)} req/s  p50 ${pct(lat, 50).toFixed(1).padStart(5)} ms  p99 ${pct(lat, 99).toFixed(1).padStart(5)} ms${r.bad ? `  (${r.bad} unexpected statuses!)` : ''}`);
}

console.log(`scim: datagrant serve on loopback, SQLite store, ${CONNECTIONS} connections, ${REQUESTS} requests each (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'})`);
try {
  // Seed users (not in a mapped group, so reconciles stay light during the load).
  const ids: string[] = [];
  for (let i = 0; i < 200; i++) ids.push((await call('POST', '/Users', user(`seed${i}@example.com`))).json.id as string);
  await server.reconciler.settled();

  // Warm-up (JIT, SQLite page cache), not measured.
  for (let i = 0; i < 300; i++) await call('GET', `/Users/${ids[i % ids.length]}`);
  await load('GET /Users/{id}', 'get', ids, 200);
  await load('GET /Users?filter=userName eq', 'filter', ids, 200);
  await load('POST /Users', 'post', ids, 201);
  await load('PATCH active (deactivate/reactivate)', 'patch', ids, 200);
  await server.reconciler.settled();

  // Deprovision latency: users in the mapped group get keys; each is deactivated in turn and its
  // key is tried until AWS refuses it.
  const people: string[] = [];
  for (let i = 0; i < DEPROVISION_USERS; i++) people.push((await call('POST', '/Users', user(`person${i}@example.com`))).json.id as string);
  await call('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'Readers', members: people.map((value) => ({ value })) });
  await server.reconciler.settled();
  await server.reconciler.settled();
  const lat: number[] = [];
  for (let i = 0; i < people.length; i++) {
    captured = '';
    await main(['credentials', 'export', `person${i}`, '--backend', 'aws', '--format', 'json'], io);
    const k = JSON.parse(captured) as { AccessKeyId: string; SecretAccessKey: string };
    const s3 = new S3Client({ region: moto.region, endpoint: moto.endpoint, forcePathStyle: true, credentials: { accessKeyId: k.AccessKeyId, secretAccessKey: k.SecretAccessKey }, maxAttempts: 1 });
    const got = await s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' }));
    await got.Body?.transformToString();
    const t0 = performance.now();
    await call('PATCH', `/Users/${people[i]}`, patchActive(false));
    for (;;) {
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' }));
        await r.Body?.transformToString();
      } catch {
        break;
      }
      if (performance.now() - t0 > 30_000) throw new Error(`person${i}'s key still works 30 s after deactivation`);
      await new Promise((r) => setTimeout(r, 10));
    }
    lat.push(performance.now() - t0);
    s3.destroy();
  }
  lat.sort((a, b) => a - b);
  console.log(`  deprovision (${lat.length} users)     p50 ${(pct(lat, 50) / 1000).toFixed(2)} s  p99 ${(pct(lat, 99) / 1000).toFixed(2)} s  max ${(lat.at(-1)! / 1000).toFixed(2)} s  (target p99 ≤ 2 s)`);
} finally {
  agent.destroy();
  await server.close();
  await moto.stop();
  rmSync(dir, { recursive: true, force: true });
}
