// Issue 5 end to end: `datagrant serve` receives Okta's and Entra's SCIM requests; a user in a
// mapped group gets a key that reads the group's dataset; deactivation kills it; reactivation
// issues a new one. Proven with the issued keys against moto with IAM enforcement.
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { hashToken } from '../../src/scim/server.js';
import { startServe, type RunningServer } from '../../src/serve/serve.js';
import type { Io } from '../../src/app/io.js';
import { startMoto, type Moto } from '../support/moto.js';
import type { Workspace } from '../support/cli.js';
import { adminQuery, expectLoginRefused, pgFixture, queryAs, urlFor } from '../support/pg.js';
import { canRead, cannotTouch, initWorkspace, issuedKey, keyIsDead, s3For, useMotoAdmin } from './aws-support.js';

const TOKEN = 'test-token-for-scim-0123456789';
const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
groups:
  ml-researchers: { grants: [{ dataset: training-data, access: read }] }
scim:
  groups: { "ML Research": ml-researchers }
`;

let moto: Moto;
let ws: Workspace;
let server: RunningServer;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
});
afterAll(async () => moto?.stop());
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  ws = await initWorkspace(SPEC);
  ws.env.DATAGRANT_SCIM_TOKEN_SHA256 = hashToken(TOKEN);
  server = await startServer();
});

/** `serve` in the workspace; its reconciler thread takes the environment as it is now. */
async function startServer(): Promise<RunningServer> {
  const io: Io = { stdout: () => undefined, stderr: () => undefined, env: ws.env, cwd: ws.dir, isTTY: false, now: () => new Date() };
  const started = await startServe(io, { port: 0, debounceMs: 20, intervalSeconds: 3600, logger: pino({ level: 'error' }) });
  await started.reconciler.settled();
  return started;
}
afterEach(async () => {
  await server?.close();
  ws?.cleanup();
});

async function scim(method: string, path: string, body?: unknown, token = TOKEN): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${server.url}/scim/v2${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/scim+json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers };
}

/** Make a change and wait for the reconcile it triggers. */
async function andReconcile<T>(p: Promise<T>): Promise<T> {
  const r = await p;
  await server.reconciler.settled();
  return r;
}

const USER = 'schemas:core:2.0:User';
const okUser = (userName: string) => ({
  schemas: [`urn:ietf:params:scim:${USER}`],
  userName,
  name: { givenName: 'Ada', familyName: 'Lovelace' },
  emails: [{ primary: true, value: userName, type: 'work' }],
  displayName: 'Ada Lovelace',
  active: true,
});

describe('Okta', () => {
  test('create, group, deactivate, reactivate: access follows, proven with the issued keys', async () => {
    // Okta first looks the user up, then creates it
    const lookup = await scim('GET', `/Users?filter=${encodeURIComponent('userName eq "ada@example.com"')}&startIndex=1&count=100`);
    expect(lookup.status).toBe(200);
    expect(lookup.json.totalResults).toBe(0);
    const created = await scim('POST', '/Users', okUser('ada@example.com'));
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toMatch(/\/scim\/v2\/Users\/[\w-]+$/);
    const id = created.json.id as string;

    // pushing the group with ada as member: she gets the group's dataset
    const group = await andReconcile(
      scim('POST', '/Groups', {
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
        displayName: 'ML Research',
        members: [{ value: id, display: 'ada@example.com' }],
      }),
    );
    expect(group.status).toBe(201);
    const first = await issuedKey(ws, 'ada');
    await canRead(s3For(moto, first), 'ai-model-data', 'training/a.txt', 'training');

    // Okta deactivates with a no-path replace; the key is revoked at once
    const off = await andReconcile(
      scim('PATCH', `/Users/${id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }] }),
    );
    expect(off.status).toBe(200);
    expect(off.json.active).toBe(false);
    await keyIsDead(moto, first);
    expect((await ws.run('credentials', 'list')).stdout).not.toContain('ada');

    // reactivation provisions again, with a new key
    await andReconcile(
      scim('PATCH', `/Users/${id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: true } }] }),
    );
    const second = await issuedKey(ws, 'ada');
    expect(second.accessKeyId).not.toBe(first.accessKeyId);
    await canRead(s3For(moto, second), 'ai-model-data', 'training/a.txt', 'training');
    await keyIsDead(moto, first);
  });
});

describe('Entra', () => {
  test('string booleans, capitalised ops and member removal by value array', async () => {
    const created = await scim('POST', '/Users', { ...okUser('grace@example.com'), externalId: 'e-1' });
    const id = created.json.id as string;
    const group = await scim('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'ML Research', externalId: 'g-1' });
    const gid = group.json.id as string;
    // Entra lists groups without members
    const list = await scim('GET', `/Groups?excludedAttributes=members&filter=${encodeURIComponent('displayName eq "ML Research"')}`);
    expect(list.status).toBe(200);
    expect((list.json.Resources as Record<string, unknown>[])[0]).not.toHaveProperty('members');
    // Entra adds members with a capitalised op
    await andReconcile(
      scim('PATCH', `/Groups/${gid}`, {
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
        Operations: [{ op: 'Add', path: 'members', value: [{ value: id }] }],
      }),
    );
    const key = await issuedKey(ws, 'grace');
    await canRead(s3For(moto, key), 'ai-model-data', 'training/a.txt', 'training');
    // and removes them by path "members" with a value array: access goes
    await andReconcile(
      scim('PATCH', `/Groups/${gid}`, {
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
        Operations: [{ op: 'Remove', path: 'members', value: [{ value: id }] }],
      }),
    );
    await keyIsDead(moto, key);
    // Entra deactivates with "False" as a string
    const off = await scim('PATCH', `/Users/${id}`, {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
      Operations: [{ op: 'Replace', path: 'active', value: 'False' }],
    });
    expect(off.status).toBe(200);
    expect(off.json.active).toBe(false);
  });
});

describe('PostgreSQL', () => {
  const fx = pgFixture('serve');
  let db: string;
  beforeAll(async () => {
    db = await fx.database('features');
    await adminQuery(
      db,
      `REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC; CREATE SCHEMA features; CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1);`,
    );
  });
  afterAll(async () => fx.cleanup());

  test('a SCIM user in a mapped group logs in with the issued password; deactivated, the login is refused', async () => {
    // GIVEN a spec whose mapped group also grants a PostgreSQL schema
    // (group and principal names are roles, which are cluster-wide: unique to this run)
    const group = fx.name('ml');
    ws.writeSpec(
      SPEC.replace('backends: { aws: { type: aws } }', `backends:\n  aws: { type: aws }\n  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run} }`)
        .replace('datasets:\n', `datasets:\n  features: { backend: wh, database: ${db}, schema: features }\n`)
        .replace(
          'ml-researchers: { grants: [{ dataset: training-data, access: read }] }',
          `${group}: { grants: [{ dataset: training-data, access: read }, { dataset: features, access: read }] }`,
        )
        .replace('"ML Research": ml-researchers', `"ML Research": ${group}`),
    );
    ws.env.WH_URL = urlFor(db);
    await server.close();
    server = await startServer();
    const userName = `${fx.run}@example.com`;
    fx.role(fx.run); // the SCIM user's role is named after the userName's local part
    const created = await scim('POST', '/Users', okUser(userName));
    const id = created.json.id as string;
    await andReconcile(
      scim('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'ML Research', members: [{ value: id }] }),
    );
    const r = await ws.run('credentials', 'export', fx.run, '--backend', 'wh', '--format', 'json');
    expect(r.code, `${r.stderr}\nreconcile failures: ${server.reconciler.metrics.failures}`).toBe(0);
    const secret = JSON.parse(r.stdout) as { username: string; password: string };
    const login = { name: secret.username, password: secret.password };
    expect(await queryAs(db, login, 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);
    await andReconcile(
      scim('PATCH', `/Users/${id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }] }),
    );
    await expectLoginRefused(db, login);
  });
});

describe('principal names are for ever (issue 9)', () => {
  // Two SCIM users whose userNames both make `alice`, in groups with different access.
  const TWO_GROUPS = `version: 1
backends: { aws: { type: aws } }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
groups:
  ml-researchers: { grants: [{ dataset: training-data, access: read }] }
  evaluators: { grants: [{ dataset: artifacts, access: read }] }
scim:
  groups: { "ML Research": ml-researchers, "Evaluators": evaluators }
`;
  const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
  const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
  /** The name the second alice gets: `alice_` + 8 hex digits of sha256 of its userName. */
  const bName = `alice_${createHash('sha256').update('alice@b.example').digest('hex').slice(0, 8)}`;

  async function twoAlices() {
    ws.writeSpec(TWO_GROUPS);
    await server.close();
    server = await startServer();
    const a = (await scim('POST', '/Users', okUser('alice@a.example'))).json.id as string;
    const b = (await scim('POST', '/Users', okUser('alice@b.example'))).json.id as string;
    await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'ML Research', members: [{ value: a }] });
    await andReconcile(scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Evaluators', members: [{ value: b }] }));
    const keyA = await issuedKey(ws, 'alice');
    const keyB = await issuedKey(ws, bName);
    // each reads its own group's data and nothing else
    await canRead(s3For(moto, keyA), 'ai-model-data', 'training/a.txt', 'training');
    await cannotTouch(s3For(moto, keyA), 'ai-model-artifacts', 'model.bin');
    await canRead(s3For(moto, keyB), 'ai-model-artifacts', 'model.bin');
    await cannotTouch(s3For(moto, keyB), 'ai-model-data', 'training/a.txt');
    return { a, keyA, keyB };
  }

  /** After alice@a left: her key is refused everywhere; alice@b's own key reads exactly the artifacts. */
  async function onlyBRemains(keyA: Awaited<ReturnType<typeof twoAlices>>['keyA'], keyB: typeof keyA) {
    await keyIsDead(moto, keyA);
    await cannotTouch(s3For(moto, keyA), 'ai-model-artifacts', 'model.bin');
    await cannotTouch(s3For(moto, keyA), 'ai-model-data', 'training/a.txt');
    expect((await issuedKey(ws, bName)).accessKeyId).toBe(keyB.accessKeyId);
    await canRead(s3For(moto, keyB), 'ai-model-artifacts', 'model.bin');
    await cannotTouch(s3For(moto, keyB), 'ai-model-data', 'training/a.txt');
    await cannotTouch(s3For(moto, keyB), 'other-bucket', 'secret.txt');
    expect((await ws.run('credentials', 'export', 'alice', '--format', 'json')).code).not.toBe(0);
  }

  test('deactivating one alice revokes her key only; the other keeps exactly her own key and access; reactivated, the first gets her own name back', async () => {
    const { a, keyA, keyB } = await twoAlices();
    const off = await andReconcile(scim('PATCH', `/Users/${a}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] }));
    expect(off.status).toBe(200);
    await onlyBRemains(keyA, keyB);
    // back again: her own name, a new key, her own group's access; the other alice untouched
    await andReconcile(scim('PATCH', `/Users/${a}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: true } }] }));
    const again = await issuedKey(ws, 'alice');
    expect(again.accessKeyId).not.toBe(keyA.accessKeyId);
    await canRead(s3For(moto, again), 'ai-model-data', 'training/a.txt', 'training');
    await cannotTouch(s3For(moto, again), 'ai-model-artifacts', 'model.bin');
    expect((await issuedKey(ws, bName)).accessKeyId).toBe(keyB.accessKeyId);
    await canRead(s3For(moto, keyB), 'ai-model-artifacts', 'model.bin');
  });

  test('deleting one alice revokes her key only; the other keeps exactly her own; the name is never given again', async () => {
    const { a, keyA, keyB } = await twoAlices();
    const gone = await andReconcile(scim('DELETE', `/Users/${a}`));
    expect(gone.status).toBe(204);
    await onlyBRemains(keyA, keyB);
    // the same userName created again is another identity: it gets a name of its own, never `alice`
    const back = (await scim('POST', '/Users', okUser('alice@a.example'))).json.id as string;
    const group = (await scim('GET', `/Groups?filter=${encodeURIComponent('displayName eq "ML Research"')}`)).json.Resources as { id: string }[];
    await andReconcile(scim('PATCH', `/Groups/${group[0]!.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: back }] }] }));
    expect((await ws.run('credentials', 'export', 'alice', '--format', 'json')).code).not.toBe(0);
    const fresh = await issuedKey(ws, `alice_${createHash('sha256').update('alice@a.example').digest('hex').slice(0, 8)}`);
    await canRead(s3For(moto, fresh), 'ai-model-data', 'training/a.txt', 'training');
    await keyIsDead(moto, keyA);
  });

  test("a spec principal that takes a SCIM person's name is refused, and the person keeps her key and access", async () => {
    const { keyA, keyB } = await twoAlices();
    // WHEN the spec defines `alice`, with other access
    ws.writeSpec(TWO_GROUPS.replace('scim:', 'principals:\n  alice: { type: service, groups: [evaluators] }\nscim:'));
    const failures = server.reconciler.metrics.failures;
    await andReconcile(scim('POST', '/Users', okUser('carol@example.com')));
    // THEN the reconcile fails, saying so, and nothing changes hands
    expect(server.reconciler.metrics.failures).toBeGreaterThan(failures);
    const plan = await ws.run('plan');
    expect(plan.code).not.toBe(0);
    expect(plan.stderr).toMatch(/principal "alice".*SCIM user "alice@a\.example".*rename the spec's principal/);
    expect((await issuedKey(ws, 'alice')).accessKeyId).toBe(keyA.accessKeyId);
    await canRead(s3For(moto, keyA), 'ai-model-data', 'training/a.txt', 'training');
    await cannotTouch(s3For(moto, keyA), 'ai-model-artifacts', 'model.bin');
    await canRead(s3For(moto, keyB), 'ai-model-artifacts', 'model.bin');
  });
});

describe('auth', () => {
  test('a wrong or missing token is refused and changes nothing', async () => {
    expect((await scim('POST', '/Users', okUser('eve@example.com'), 'wrong')).status).toBe(401);
    const res = await fetch(`${server.url}/scim/v2/Users`);
    expect(res.status).toBe(401);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await scim('GET', '/Users')).json.totalResults).toBe(0);
  });
});

describe('the reconciler thread', () => {
  test("a failed reconcile is logged through serve's logger and counted in /metrics; the next good one recovers", async () => {
    // GIVEN serve with a logger whose lines are kept
    await server.close();
    const lines: { level: number; msg: string; err?: { message: string } }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const io: Io = { stdout: () => undefined, stderr: () => undefined, env: ws.env, cwd: ws.dir, isTTY: false, now: () => new Date() };
    server = await startServe(io, { port: 0, debounceMs: 20, intervalSeconds: 3600, logger });
    await server.reconciler.settled();
    // WHEN the spec breaks and a SCIM change asks for a reconcile
    ws.writeSpec(SPEC.replace('access: read', 'access: reed'));
    await andReconcile(scim('POST', '/Users', okUser('ada@example.com')));
    // THEN the failure is in the log, with the spec's own error, and in the metrics
    const failed = lines.find((l) => l.msg === 'reconcile failed');
    expect(failed?.level).toBe(50);
    expect(failed?.err?.message).toMatch(/access.*reed/s);
    const metrics = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(metrics).toMatch(/^datagrant_reconcile_failures_total [1-9]\d*$/m);
    // (the failed run is retried with backoff meanwhile, and fails again while the spec is broken)
    expect(lines.some((l) => l.msg === 'reconcile will be retried')).toBe(true);
    // and once the spec is fixed, the next change reconciles again: bob, put in a mapped group, gets a working key
    ws.writeSpec(SPEC);
    const bob = await scim('POST', '/Users', okUser('bob@example.com'));
    await andReconcile(
      scim('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'ML Research', members: [{ value: bob.json.id }] }),
    );
    await canRead(s3For(moto, await issuedKey(ws, 'bob')), 'ai-model-data', 'training/a.txt', 'training');
  });

  test('serve does not start when the reconciler cannot open the state store, and says why', async () => {
    const io: Io = {
      stdout: () => undefined,
      stderr: () => undefined,
      env: { ...ws.env, DATAGRANT_MASTER_KEY: '' },
      cwd: ws.dir,
      isTTY: false,
      now: () => new Date(),
    };
    await expect(startServe(io, { port: 0, stateDir: `${ws.dir}/no-state-here`, logger: pino({ level: 'silent' }) })).rejects.toThrow(
      /no master key: set DATAGRANT_MASTER_KEY/,
    );
  });
});

describe('the CLI next to serve', () => {
  test('plan and drift from the CLI count the SCIM people as serve does: no changes, nothing to tear down', async () => {
    // GIVEN a SCIM user in a mapped group, provisioned by serve
    const created = await scim('POST', '/Users', okUser('ada@example.com'));
    await andReconcile(
      scim('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'ML Research', members: [{ value: created.json.id }] }),
    );
    expect((await ws.run('credentials', 'list')).stdout).toContain('ada');
    // WHEN the CLI plans with the same spec
    const plan = await ws.run('plan', '--detailed-exitcode');
    const drift = await ws.run('drift');
    // THEN it sees what serve applied
    expect(plan.stdout).toContain('No changes.');
    expect(plan.code).toBe(0);
    expect(drift.code, drift.stdout).toBe(0);
  });
});
