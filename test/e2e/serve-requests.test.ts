// serve's /v1/requests end to end, on moto with IAM enforcement and a real local OpenID provider:
// alice asks over HTTP with her ID token and cannot approve it herself; bob approves with his;
// serve applies it at once, and alice's issued key reads the dataset; serve wakes at the request's
// end and removes it without being asked, so her key is refused; a denied request grants nothing.
import { GetUserCommand, type IAMClient } from '@aws-sdk/client-iam';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Io } from '../../src/app/io.js';
import { main } from '../../src/cli/main.js';
import { hashToken } from '../../src/scim/server.js';
import { startServe, type RunningServer } from '../../src/serve/serve.js';
import { startMoto, type Moto } from '../support/moto.js';
import { startIdp, type TestIdp } from '../support/oidc.js';
import { adminIam, canRead, cannotWrite, keyRefused, s3For, useMotoAdmin } from './aws-support.js';

let moto: Moto;
let idp: TestIdp;
let iam: IAMClient;
let dir: string;
let server: RunningServer | undefined;
let io: Io;
const logLines: string[] = [];

async function cli(...args: string[]): Promise<string> {
  let out = '';
  const code = await main(args, { ...io, stdout: (s) => (out += s), stderr: (s) => (out += s) });
  expect(code, out).toBe(0);
  return out;
}

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
  useMotoAdmin(moto);
  iam = adminIam(moto);
  idp = await startIdp({
    accounts: { alice: { sub: 'u-alice', email: 'alice@example.com' }, bob: { sub: 'u-bob', email: 'bob@example.com' } },
  });
  dir = mkdtempSync(join(tmpdir(), 'dg-serve-requests-'));
  writeFileSync(
    join(dir, 'datagrant.yaml'),
    `version: 1
settings:
  oidc: [{ name: corp, issuer: "${idp.issuer}", audience: datagrant }]
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/, approvers: { principals: [bob] } }
principals:
  alice: { type: person, email: alice@example.com }
  bob: { type: person, email: bob@example.com }
`,
  );
  io = {
    stdout: () => undefined,
    stderr: () => undefined,
    env: { ...process.env, DATAGRANT_MASTER_KEY: 'c'.repeat(64), DATAGRANT_SCIM_TOKEN_SHA256: hashToken('scim-token-serve-requests-0123') },
    cwd: dir,
    isTTY: false,
    now: () => new Date(),
  };
  await cli('init');
  await cli('apply', '--auto-approve');
  server = await startServe(io, { port: 0, intervalSeconds: 3600, logger: pino({ level: 'debug' }, { write: (l: string) => void logLines.push(l) }) });
});

afterAll(async () => {
  await server?.close();
  iam?.destroy();
  await idp?.close();
  await moto?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function api(method: 'GET' | 'POST', path: string, who: 'alice' | 'bob', body?: object) {
  const res = await fetch(`${server!.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${await idp.idToken(who)}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const aliceExists = async () =>
  iam.send(new GetUserCommand({ UserName: 'alice' })).then(
    () => true,
    (e: Error) => (e.name.startsWith('NoSuchEntity') ? false : Promise.reject(e)),
  );

test('alice asks, bob approves over HTTP; serve grants at once and takes it away at the end by itself; a denial grants nothing', async () => {
  const made = await api('POST', '/v1/requests', 'alice', { dataset: 'training', access: 'read', duration: '20s', reason: 'evaluate the ranker' });
  expect(made.status, JSON.stringify(made.body)).toBe(201);
  const id = made.body.id as number;
  expect((await api('POST', `/v1/requests/${id}/approve`, 'alice', { reason: 'mine' })).status).toBe(403);

  const approved = await api('POST', `/v1/requests/${id}/approve`, 'bob', { reason: 'for this afternoon' });
  expect(approved.status, JSON.stringify(approved.body)).toBe(200);
  const endsAt = Date.parse(approved.body.endsAt as string);
  // The approval reconciled at once: no apply from anyone.
  await server!.reconciler.settled();
  expect(await aliceExists()).toBe(true);
  const key = JSON.parse(await cli('credentials', 'export', 'alice', '--format', 'json')) as { AccessKeyId: string; SecretAccessKey: string };
  const s3 = s3For(moto, { accessKeyId: key.AccessKeyId, secretAccessKey: key.SecretAccessKey });
  await canRead(s3, 'ai-model-data', 'training/a.txt', 'training');
  await cannotWrite(s3, 'ai-model-data', 'training/a.txt');
  s3.destroy();

  // serve wakes at the end (nextChangeAt) and removes the access; her key is refused.
  await expect
    .poll(() => keyRefused(moto, { accessKeyId: key.AccessKeyId, secretAccessKey: key.SecretAccessKey }), {
      timeout: Math.max(0, endsAt - Date.now()) + 20_000,
      interval: 500,
    })
    .toBe(true);
  expect(Date.now()).toBeGreaterThanOrEqual(endsAt);
  expect(await aliceExists()).toBe(false);
  const mine = await api('GET', `/v1/requests/${id}`, 'alice');
  expect(mine.body).toMatchObject({ state: 'expired', stateNow: 'expired', closed: { reason: `its access ended at ${new Date(endsAt).toISOString()}` } });

  // A denied request grants nothing.
  const again = await api('POST', '/v1/requests', 'alice', { dataset: 'training', access: 'read', duration: '1h', reason: 'one more run' });
  const denied = await api('POST', `/v1/requests/${again.body.id as number}/deny`, 'bob', { reason: 'use the sample set' });
  expect(denied.body.state).toBe('denied');
  await server!.reconciler.settled();
  expect(await cli('plan')).toContain('No changes.');
  expect(await aliceExists()).toBe(false);

  const log = JSON.parse(await cli('audit', 'log', '--json')) as { event: string; address: string | null; actor: string }[];
  expect(log.filter((e) => e.address === `request/${id}`).map((e) => `${e.event} ${e.actor}`)).toEqual([
    'request.create oidc:corp:u-alice',
    'request.refused oidc:corp:u-alice',
    'request.approve oidc:corp:u-bob',
    expect.stringMatching(/^request\.expire .+ \(serve\)$/),
  ]);
  expect(await cli('audit', 'verify')).toMatch(/^Audit chain intact/);
});
