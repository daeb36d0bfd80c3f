// Sessions benchmark (issue 12): the real `datagrant serve` (bin/datagrant.js) issuing short-lived
// AWS sessions on POST /v1/credentials/aws to holders of an OIDC ID token from a real local
// OpenID provider, loaded by wrk (a process of its own) at 10 connections. Each session is a
// verified token, an STS AssumeRole on moto (IAM enforcement on), a readiness check with the new
// credentials, a record in the session log and an audit entry. Target: ≥ 200 sessions/s; p99 shown.
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import type { Io } from '../src/app/io.js';
import { main } from '../src/cli/main.js';
import { requireWrk, runWrk } from './wrk.js';
import { hashToken } from '../src/scim/server.js';
import { startMoto } from '../test/support/moto.js';
import { startIdp } from '../test/support/oidc.js';

const CONNECTIONS = Number(process.env.BENCH_SESSIONS_CONNECTIONS ?? 10);
const SECONDS = Number(process.env.BENCH_SESSIONS_SECONDS ?? 5);
const TARGET = 200;
const BIN = new URL('../bin/datagrant.js', import.meta.url).pathname;

requireWrk();

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

const moto = await startMoto({ auth: true, managedPolicies: false });
// moto stands in for AWS, which runs on other machines: it must not take the server's cores.
if (moto.pid) setPriority(moto.pid, 15);
// The emulator's own ceiling for the two calls a session costs (AssumeRole, then GetCallerIdentity
// with the new credentials), at the same concurrency, from a client with nothing else to do.
const ceiling = await (async () => {
  const cfg = { region: moto.region, endpoint: moto.endpoint, credentials: moto.admin, maxAttempts: 1 };
  const me = await new STSClient(cfg).send(new GetCallerIdentityCommand({}));
  const iam = new IAMClient(cfg);
  await iam.send(
    new CreateRoleCommand({
      RoleName: 'bench-ceiling',
      AssumeRolePolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Principal: { AWS: me.Arn }, Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'] }],
      }),
    }),
  );
  const sts = new STSClient(cfg);
  let n = 0;
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (Date.now() < end) {
        const r = await sts.send(new AssumeRoleCommand({ RoleArn: 'arn:aws:iam::123456789012:role/bench-ceiling', RoleSessionName: 'b', SourceIdentity: 'b' }));
        const c = r.Credentials!;
        const as = new STSClient({ ...cfg, credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! } });
        await as.send(new GetCallerIdentityCommand({}));
        as.destroy();
        n++;
      }
    }),
  );
  sts.destroy();
  iam.destroy();
  return n / SECONDS;
})();
const idp = await startIdp({ accounts: { alice: { sub: 'u-alice', email: 'alice@example.com' } } });
const dir = mkdtempSync(join(tmpdir(), 'dg-sessionbench-'));
writeFileSync(
  join(dir, 'datagrant.yaml'),
  `version: 1
settings:
  oidc: [{ name: corp, issuer: "${idp.issuer}", audience: datagrant }]
backends: { aws: { type: aws } }
datasets: { data: { backend: aws, bucket: ai-model-data, prefix: training/ } }
groups: { readers: { grants: [{ dataset: data, access: read }] } }
principals:
  alice: { type: person, email: alice@example.com, credentials: temporary, groups: [readers] }
`,
);
const env: NodeJS.ProcessEnv = {
  ...process.env,
  AWS_ACCESS_KEY_ID: moto.admin.accessKeyId,
  AWS_SECRET_ACCESS_KEY: moto.admin.secretAccessKey,
  AWS_REGION: moto.region,
  AWS_ENDPOINT_URL: moto.endpoint,
  DATAGRANT_MASTER_KEY: 'c'.repeat(64),
  DATAGRANT_SCIM_TOKEN_SHA256: hashToken('bench-scim-token-0123456789'),
};
// The in-process CLI's AWS SDK reads the standard chain from process.env.
Object.assign(process.env, {
  AWS_ACCESS_KEY_ID: moto.admin.accessKeyId,
  AWS_SECRET_ACCESS_KEY: moto.admin.secretAccessKey,
  AWS_REGION: moto.region,
  AWS_ENDPOINT_URL: moto.endpoint,
});
let captured = '';
const io: Io = { stdout: (s) => (captured += s), stderr: (s) => (captured += s), env, cwd: dir, isTTY: false, now: () => new Date() };
for (const args of [['init'], ['apply', '--auto-approve']]) {
  captured = '';
  if ((await main(args, io)) !== 0) throw new Error(`datagrant ${args.join(' ')} failed:\n${captured}`);
}

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const log = openSync(join(dir, 'serve.log'), 'a');
const server = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--interval', '3600', '--log-level', process.env.BENCH_LOG_LEVEL ?? 'warn'], {
  cwd: dir,
  env,
  stdio: ['ignore', log, log],
});
const serverExit = new Promise<void>((resolve) => server.once('exit', () => resolve()));
const token = await idp.idToken('alice');
const ask = () => fetch(`${base}/v1/credentials/aws`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
for (let deadline = Date.now() + 30_000; ;) {
  const r = await ask().catch(() => undefined);
  if (r?.status === 200) break;
  if (r && r.status !== 200 && r.status !== 503) throw new Error(`serve answered ${r.status}: ${await r.text()} (log: ${join(dir, 'serve.log')})`);
  if (Date.now() > deadline) throw new Error(`serve did not issue a session (log: ${join(dir, 'serve.log')})`);
  await new Promise((r) => setTimeout(r, 100));
}

const script = join(dir, 'load.lua');
writeFileSync(script, `request = function()\n  return wrk.format("POST", "/v1/credentials/aws", { ["Authorization"] = "Bearer ${token}" }, "")\nend\n`);
const { rps, p50, p99, bad } = await runWrk({ base, script, connections: CONNECTIONS, seconds: SECONDS });
console.log('sessions (serve, OIDC token → STS session on moto, 10 connections):');
console.log(
  `  ${rps.toFixed(0)} sessions/s (target ≥ ${TARGET}; moto's own ceiling for the same two calls: ${ceiling.toFixed(0)}/s)  p50 ${p50.toFixed(1)} ms  p99 ${p99.toFixed(1)} ms${bad ? `  (${bad} non-2xx!)` : ''}`,
);

server.kill('SIGTERM');
await serverExit;
await idp.close();
await moto.stop();
if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
else console.log(dir);
