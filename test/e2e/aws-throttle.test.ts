// Issue 10, item 5a: against an IAM that throttles every action above a fixed rate, as AWS does,
// the first apply (CLI) and the first reconcile (serve) of a spec with many principals finish with
// everything converged: throttling is paced and waited out, never reported as a failure. A
// permanently throttled action still fails, with a message that says so.
import { CreateUserCommand, ListUsersCommand } from '@aws-sdk/client-iam';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from 'vitest';
import { ActionLimiters, limitActions } from '../../src/backends/aws/limiter.js';
import type { Io } from '../../src/app/io.js';
import { hashToken } from '../../src/scim/server.js';
import { startServe } from '../../src/serve/serve.js';
import type { Workspace } from '../support/cli.js';
import { iamAs, startMoto, type Moto } from '../support/moto.js';
import { startThrottlingProxy, type ThrottlingProxy } from '../support/throttle-proxy.js';
import { canRead, cannotTouch, expectNoChanges, initWorkspace, issuedKey, s3For, useMotoAdmin } from './aws-support.js';

const GROUPS = 3;
const PRINCIPALS = 30;

/** PRINCIPALS services in GROUPS groups, two memberships and a key each: 2 × PRINCIPALS AddUserToGroup. */
function spec(): string {
  const l = ['version: 1', 'backends:', '  aws: { type: aws }', 'datasets:'];
  for (let g = 0; g < GROUPS; g++) l.push(`  ds${g}: { backend: aws, bucket: ai-model-data, prefix: ${g === 0 ? 'training' : `team${g}`}/ }`);
  l.push('groups:');
  for (let g = 0; g < GROUPS; g++) l.push(`  g${g}: { grants: [{ dataset: ds${g}, access: read }] }`);
  l.push('principals:');
  for (let p = 0; p < PRINCIPALS; p++) l.push(`  svc${p}: { type: service, groups: [g${p % GROUPS}, g${(p + 1) % GROUPS}] }`);
  return l.join('\n');
}

let moto: Moto;
let proxy: ThrottlingProxy;
let ws: Workspace | undefined;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
});
afterAll(async () => moto?.stop());
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  // 10 requests/s per action: 60 memberships take 6 s at best, and any burst of the apply's
  // 8 concurrent changes is refused.
  proxy = await startThrottlingProxy(moto.endpoint, { ratePerSecond: 10 });
  // The CLI's (and serve's) SDK reads the endpoint from the environment.
  process.env.AWS_ENDPOINT_URL = proxy.endpoint;
});
afterEach(async () => {
  ws?.cleanup();
  ws = undefined;
  await proxy.close();
});

/** Everything converged: a plan finds nothing to do, and a key of each group's members reads its dataset. */
async function expectConverged(w: Workspace): Promise<void> {
  await expectNoChanges(w);
  // svc0 is in g0 (training/) and g1; svc2 in g2 and g0; svc1 in g1 and g2, not in g0.
  await canRead(s3For(moto, await issuedKey(w, 'svc0')), 'ai-model-data', 'training/a.txt', 'training');
  await canRead(s3For(moto, await issuedKey(w, 'svc2')), 'ai-model-data', 'training/a.txt', 'training');
  await cannotTouch(s3For(moto, await issuedKey(w, 'svc1')), 'other-bucket', 'secret.txt');
}

test('the first apply through a throttling IAM exits 0, and the next plan is empty', async () => {
  // GIVEN a workspace whose spec needs well over a second of every busy action's rate
  ws = await initWorkspace(spec());
  // WHEN the first apply runs
  const r = await ws.run('apply', '--auto-approve');
  // THEN IAM did throttle it, and yet every change was applied
  expect(proxy.stats().throttled).toBeGreaterThan(0);
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  expect(r.stdout + r.stderr).not.toMatch(/fail|Throttl|Rate exceeded/i);
  await expectConverged(ws);
});

test("serve's first reconcile through a throttling IAM applies everything", async () => {
  // GIVEN the same spec, served
  ws = await initWorkspace(spec());
  ws.env.DATAGRANT_SCIM_TOKEN_SHA256 = hashToken('test-token-for-scim-0123456789');
  const io: Io = { stdout: () => undefined, stderr: () => undefined, env: ws.env, cwd: ws.dir, isTTY: false, now: () => new Date() };
  const errors: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void errors.push(line) });
  // WHEN serve starts (its first reconcile is a full one) and settles
  const server = await startServe(io, { port: 0, debounceMs: 20, intervalSeconds: 3600, logger });
  try {
    await server.reconciler.settled();
    // THEN the reconcile was throttled, and neither failed nor logged a problem
    expect(proxy.stats().throttled).toBeGreaterThan(0);
    expect(server.reconciler.metrics).toMatchObject({ runs: 1, failures: 0 });
    expect(errors).toEqual([]);
  } finally {
    await server.close();
  }
  await expectConverged(ws);
});

test('an action IAM never lets through fails with a message that says so, and throttled ones still land', async () => {
  // GIVEN a client paced by the limiter, with little patience, against an IAM that refuses every
  // ListUsers and lets 5 CreateUser through per second
  await proxy.close();
  proxy = await startThrottlingProxy(moto.endpoint, { ratePerSecond: 5, rates: { ListUsers: 0 } });
  const iam = iamAs({ endpoint: proxy.endpoint }, moto.admin);
  limitActions(iam, new ActionLimiters({ patienceMs: 1500 }));
  try {
    // WHEN twenty users are created at once, and the users listed
    const names = Array.from({ length: 20 }, (_, i) => `paced-${i}`);
    await Promise.all(names.map((UserName) => iam.send(new CreateUserCommand({ UserName, Path: '/paced/' }))));
    const listing = iam.send(new ListUsersCommand({}));
    // THEN all the users exist, though CreateUser was throttled on the way
    expect(proxy.stats().byAction.CreateUser!.throttled).toBeGreaterThan(0);
    const admin = iamAs(moto, moto.admin);
    const made = (await admin.send(new ListUsersCommand({ PathPrefix: '/paced/' }))).Users?.map((u) => u.UserName).sort();
    expect(made).toEqual([...names].sort());
    admin.destroy();
    // and the listing gives up once nothing got through for the patience, naming the action
    await expect(listing).rejects.toMatchObject({
      name: 'RateLimitStalled',
      message: expect.stringMatching(/AWS throttled every ListUsers request for \d+ s, none got through/),
    });
  } finally {
    iam.destroy();
  }
});
