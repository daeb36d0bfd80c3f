// Issue 9, finding 9: a burst of 100 SCIM deactivations within 5 s, as an IdP sends when a team
// leaves. Every deactivated person's key must be refused soon after its PATCH — also once the
// burst crosses the mass-deprovisioning threshold, where serve holds the deletions and revokes
// access reversibly instead (memberships and policies removed, keys inactive: moto honours an
// inactive key, so "refused" is AccessDenied on the dataset). Everyone else keeps their access.
// The bound here is one load cannot break; bench/scim.ts measures the p99 against its 3 s target.
import { pino } from 'pino';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Io } from '../../src/app/io.js';
import { hashToken } from '../../src/scim/server.js';
import { startServe, type RunningServer } from '../../src/serve/serve.js';
import type { Workspace } from '../support/cli.js';
import { startMoto, type AwsKey, type Moto } from '../support/moto.js';
import { initWorkspace, issuedKey, keyRefused, useMotoAdmin } from './aws-support.js';

const TOKEN = 'test-token-for-burst-0123456789';
const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
groups:
  ml-researchers: { grants: [{ dataset: training-data, access: read }] }
scim:
  groups: { "ML Research": ml-researchers }
`;
const PEOPLE = 120;
const LEAVERS = 100;
const BURST_MS = 5000;
/** What a user must see, with room for a loaded machine: the bench holds the 3 s target. */
const REFUSED_WITHIN_MS = 10_000;

let moto: Moto;
let ws: Workspace;
let server: RunningServer;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
  useMotoAdmin(moto);
  ws = await initWorkspace(SPEC);
  ws.env.DATAGRANT_SCIM_TOKEN_SHA256 = hashToken(TOKEN);
  const io: Io = { stdout: () => undefined, stderr: () => undefined, env: ws.env, cwd: ws.dir, isTTY: false, now: () => new Date() };
  server = await startServe(io, { port: 0, intervalSeconds: 3600, logger: pino({ level: 'silent' }) });
  await server.reconciler.settled();
});
afterAll(async () => {
  await server?.close();
  ws?.cleanup();
  await moto?.stop();
});

async function scim(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${server.url}/scim/v2${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/scim+json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(
  `${LEAVERS} deactivations within ${BURST_MS / 1000} s: each leaver's key is refused soon after its PATCH; the others keep access`,
  { timeout: 600_000 },
  async () => {
    // GIVEN 120 people in a mapped group, each with a key that reads the dataset
    const ids: string[] = [];
    for (let i = 0; i < PEOPLE; i++) {
      const r = await scim('POST', '/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `p${i}@example.com`, active: true });
      expect(r.status).toBe(201);
      ids.push(r.json.id as string);
    }
    await scim('POST', '/Groups', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
      displayName: 'ML Research',
      members: ids.map((value) => ({ value })),
    });
    await server.reconciler.settled();
    const keys: AwsKey[] = [];
    for (let i = 0; i < PEOPLE; i++) keys.push(await issuedKey(ws, `p${i}`));
    for (const k of keys) expect(await keyRefused(moto, k)).toBe(false);

    // WHEN 100 of them are deactivated, one PATCH every 50 ms
    const answered: (number | undefined)[] = [];
    const refusedAt: (number | undefined)[] = [];
    const t0 = performance.now();
    const burst = (async () => {
      const sent: Promise<void>[] = [];
      for (let i = 0; i < LEAVERS; i++) {
        await sleep(Math.max(0, t0 + (i * BURST_MS) / LEAVERS - performance.now()));
        sent.push(
          scim('PATCH', `/Users/${ids[i]}`, {
            schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
            Operations: [{ op: 'replace', value: { active: false } }],
          }).then((r) => {
            expect(r.status).toBe(200);
            answered[i] = performance.now();
          }),
        );
      }
      await Promise.all(sent);
    })();
    // AND each answered leaver's key is tried, a few at a time, until AWS refuses it
    const probe = async () => {
      for (;;) {
        const waiting = [...Array(LEAVERS).keys()].filter((i) => refusedAt[i] === undefined);
        if (waiting.length === 0) return;
        const due = waiting.filter((i) => answered[i] !== undefined);
        for (const i of due)
          if (performance.now() - answered[i]! > REFUSED_WITHIN_MS * 3)
            throw new Error(`p${i}'s key still works ${REFUSED_WITHIN_MS * 3} ms after its deactivation`);
        for (let j = 0; j < due.length; j += 4) {
          await Promise.all(
            due.slice(j, j + 4).map(async (i) => {
              if (await keyRefused(moto, keys[i]!)) refusedAt[i] = performance.now();
            }),
          );
        }
        await sleep(20);
      }
    };
    await Promise.all([burst, probe()]);
    expect(answered.at(-1)! - t0).toBeLessThan(BURST_MS + 2000);

    // THEN every leaver's key was refused soon after its PATCH was answered
    const latency = [...Array(LEAVERS).keys()].map((i) => refusedAt[i]! - answered[i]!);
    const slow = latency.map((ms, i) => ({ who: `p${i}`, ms: Math.round(ms) })).filter((x) => x.ms > REFUSED_WITHIN_MS);
    expect(slow).toEqual([]);
    // (Whether this burst crosses the mass-deprovisioning threshold depends on how the reconciles
    // batch it, which load changes; the next test crosses it for certain.)
    await server.reconciler.settled();
    // AND the people who stay keep their access
    for (let i = LEAVERS; i < PEOPLE; i++) expect(await keyRefused(moto, keys[i]!)).toBe(false);
  },
);

test('a mass deprovisioning in one SCIM request: access ends at once, deletions wait for `apply --allow-mass-destroy`', { timeout: 600_000 }, async () => {
  // GIVEN 40 more people in the mapped group (with the 20 who stayed above: 60 with a working key)
  const group = ((await scim('GET', `/Groups?filter=${encodeURIComponent('displayName eq "ML Research"')}`)).json.Resources as { id: string }[])[0]!.id;
  const newcomers: string[] = [];
  for (let i = 0; i < 40; i++) {
    const r = await scim('POST', '/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `q${i}@example.com`, active: true });
    newcomers.push(r.json.id as string);
  }
  await scim('PATCH', `/Groups/${group}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
    Operations: [{ op: 'add', path: 'members', value: newcomers.map((value) => ({ value })) }],
  });
  await server.reconciler.settled();
  const leaving = [...newcomers.map((_, i) => `q${i}`), ...Array.from({ length: 10 }, (_, i) => `p${LEAVERS + i}`)];
  const staying = Array.from({ length: PEOPLE - LEAVERS - 10 }, (_, i) => `p${LEAVERS + 10 + i}`);
  const keys = new Map<string, AwsKey>();
  for (const n of [...leaving, ...staying]) keys.set(n, await issuedKey(ws, n));
  const ids = new Map<string, string>();
  for (const n of leaving)
    ids.set(n, ((await scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${n}@example.com"`)}`)).json.Resources as { id: string }[])[0]!.id);
  const eventsBefore = server.reconciler.metrics.massEvents;

  // WHEN one request removes 50 of the 60 from the group (an IdP's group assignment removed)
  const r = await scim('PATCH', `/Groups/${group}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
    Operations: leaving.map((n) => ({ op: 'remove', path: `members[value eq "${ids.get(n)}"]` })),
  });
  expect(r.status).toBe(200);

  // THEN every leaver's key is refused (their memberships and policies are gone) ...
  const deadline = performance.now() + REFUSED_WITHIN_MS;
  for (const n of leaving) {
    while (!(await keyRefused(moto, keys.get(n)!))) {
      if (performance.now() > deadline) throw new Error(`${n}'s key still works ${REFUSED_WITHIN_MS} ms after the group change`);
      await sleep(50);
    }
  }
  await server.reconciler.settled();
  // ... as a mass event: the users and keys are kept (inactive) for a person to confirm
  expect(server.reconciler.metrics.massEvents).toBeGreaterThan(eventsBefore);
  expect(server.reconciler.metrics.heldDeletions).toBeGreaterThanOrEqual(leaving.length);
  const { GetUserCommand, ListAccessKeysCommand } = await import('@aws-sdk/client-iam');
  const { adminIam } = await import('./aws-support.js');
  const iam = adminIam(moto);
  expect((await iam.send(new ListAccessKeysCommand({ UserName: 'q0' }))).AccessKeyMetadata?.map((k) => k.Status)).toEqual(['Inactive']);
  // AND the people who stay keep their access
  for (const n of staying) expect(await keyRefused(moto, keys.get(n)!)).toBe(false);

  // WHEN a person confirms from the CLI, THEN the held users go
  const refused = await ws.run('apply', '--auto-approve');
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/--allow-mass-destroy/);
  const confirmed = await ws.run('apply', '--auto-approve', '--allow-mass-destroy');
  expect(confirmed.code, confirmed.stderr).toBe(0);
  await expect(iam.send(new GetUserCommand({ UserName: 'q0' }))).rejects.toThrow();
  for (const n of staying) expect(await keyRefused(moto, keys.get(n)!)).toBe(false);
  iam.destroy();
});
