// The account's IAM quotas against moto with IAM enforcement: direct grants held in an inline
// policy or in a shared managed policy give exactly their access; an installation made by an
// earlier version (a managed policy per principal) moves to those forms without a moment in
// which anyone's access is missing or wider; a spec past a quota fails at plan, with nothing made.
import { join } from 'node:path';
import { ListAttachedUserPoliciesCommand, ListPoliciesCommand, ListUserPoliciesCommand, ListUsersCommand, type IAMClient } from '@aws-sdk/client-iam';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { applyPlan } from '../../src/apply/apply.js';
import { readActual } from '../../src/app/engine.js';
import type { Backend, ExecuteResult } from '../../src/backends/backend.js';
import { closeBackends, makeBackends } from '../../src/backends/factory.js';
import { applyCommand } from '../../src/cli/commands/lifecycle.js';
import { reportError } from '../../src/cli/main.js';
import { compile } from '../../src/compile/index.js';
import type { Change } from '../../src/core/types.js';
import { diff } from '../../src/plan/diff.js';
import { parseSpec } from '../../src/spec/load.js';
import { openStore, statePaths } from '../../src/store/open.js';
import type { Workspace } from '../support/cli.js';
import { legacyDesired } from '../support/legacy-aws.js';
import { expectAccessDenied, startMoto, type AwsKey, type Moto } from '../support/moto.js';
import {
  adminIam,
  apply,
  canRead,
  cannotTouch,
  cannotWrite,
  expectNoChanges,
  initWorkspace,
  issuedKey,
  keyIsDead,
  s3For,
  useMotoAdmin,
} from './aws-support.js';

let moto: Moto;
let ws: Workspace;
let iam: IAMClient;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
});
afterAll(async () => moto?.stop());
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  iam = adminIam(moto);
});
afterEach(() => {
  ws?.cleanup();
  iam?.destroy();
});

// Sixteen prefixes of ai-model-data that hold nothing: read together with training/, they make a
// document too large for an inline policy (2,048 characters).
const AREAS = Array.from({ length: 16 }, (_, i) => `area-${i}`);
const LARGE = `[{ dataset: training, access: read }, ${AREAS.map((a) => `{ dataset: ${a}, access: read }`).join(', ')}]`;
const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/ }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
${AREAS.map((a) => `  ${a}: { backend: aws, bucket: ai-model-data, prefix: ${a}/ }`).join('\n')}
principals:
  small: { type: service, grants: [{ dataset: artifacts, access: read }] }
  big-a: { type: service, grants: ${LARGE} }
  big-b: { type: service, grants: ${LARGE} }
`;

/** Exactly what each principal of SPEC may do: read its data, nothing more. */
async function expectExactAccess(keys: Record<string, AwsKey>): Promise<void> {
  const small = s3For(moto, keys.small!);
  await canRead(small, 'ai-model-artifacts', 'model.bin');
  await cannotWrite(small, 'ai-model-artifacts', 'model.bin');
  await cannotTouch(small, 'ai-model-data', 'training/a.txt');
  await cannotTouch(small, 'other-bucket', 'secret.txt');
  for (const name of ['big-a', 'big-b']) {
    const big = s3For(moto, keys[name]!);
    await canRead(big, 'ai-model-data', 'training/a.txt');
    await cannotWrite(big, 'ai-model-data', 'training/a.txt');
    await expectAccessDenied(big.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'eval/c.txt' })));
    await expectAccessDenied(big.send(new GetObjectCommand({ Bucket: 'ai-model-artifacts', Key: 'model.bin' })));
    await cannotTouch(big, 'other-bucket', 'secret.txt');
    big.destroy();
  }
  small.destroy();
}

const keysOf = async (w: Workspace) => ({ small: await issuedKey(w, 'small'), 'big-a': await issuedKey(w, 'big-a'), 'big-b': await issuedKey(w, 'big-b') });
const ownPolicies = async () =>
  ((await iam.send(new ListPoliciesCommand({ Scope: 'Local', PathPrefix: '/datagrant/' }))).Policies ?? []).map((p) => p.PolicyName!).sort();
const attached = async (user: string) =>
  ((await iam.send(new ListAttachedUserPoliciesCommand({ UserName: user }))).AttachedPolicies ?? []).map((p) => p.PolicyName);
const inline = async (user: string) => (await iam.send(new ListUserPoliciesCommand({ UserName: user }))).PolicyNames ?? [];

describe('direct grants, inline or shared', () => {
  test('small grants are an inline policy, identical large ones share one policy; each key has exactly its access', async () => {
    ws = await initWorkspace(SPEC);
    await apply(ws);
    // THEN in IAM: one managed policy in all, attached to both large holders
    const [shared] = await ownPolicies();
    expect(await ownPolicies()).toEqual([expect.stringMatching(/^dg-shared-[0-9a-f]{12}$/)]);
    expect(await inline('small')).toEqual(['dg-direct-grants']);
    expect(await attached('small')).toEqual([]);
    for (const big of ['big-a', 'big-b']) {
      expect(await attached(big)).toEqual([shared]);
      expect(await inline(big)).toEqual([]);
    }
    // and the keys can do what the spec grants and nothing else
    await expectExactAccess(await keysOf(ws));
    await expectNoChanges(ws);
  });
});

/** Applies SPEC as versions before inline and shared policies did, with the workspace's own state. */
async function applyAsEarlierVersion(w: Workspace, text: string): Promise<void> {
  const store = await openStore(statePaths(join(w.dir, '.datagrant')), w.env);
  const now = new Date();
  try {
    const { spec } = parseSpec(text, { file: 'datagrant.yaml', env: w.env, now });
    const installation = await store.installation();
    const backends = makeBackends(spec, { installation });
    try {
      const desired = compile(spec, now, { installation }).desired.aws!;
      const legacy = { aws: { ...desired, resources: legacyDesired(desired.resources) } };
      const plan = diff(legacy, await readActual(backends, store), { now, specHash: 'earlier', applied: await store.applied() });
      const result = await applyPlan(plan, { backends, store, actor: 'an earlier version' });
      expect(result.failed).toEqual([]);
    } finally {
      await closeBackends(backends);
    }
  } finally {
    await store.close();
  }
}

describe('an upgrade from a managed policy per principal', () => {
  test('moves every principal to the new form with its access intact after every single change', async () => {
    // GIVEN the installation an earlier version made: dg-user-NAME for each principal
    ws = await initWorkspace(SPEC);
    await applyAsEarlierVersion(ws, SPEC);
    expect(await ownPolicies()).toEqual(['dg-user-big-a', 'dg-user-big-b', 'dg-user-small']);
    const keys = await keysOf(ws);
    await expectExactAccess(keys);

    // WHEN this version applies, one change at a time, and every key is tried after each change
    const done: string[] = [];
    const probing = (inner: Backend): Backend => ({
      name: inner.name,
      type: inner.type,
      read: (o) => inner.read(o),
      execute: async (c: Change): Promise<ExecuteResult> => {
        const res = await inner.execute(c);
        done.push(`${c.action} ${c.address}`);
        try {
          await expectExactAccess(keys);
        } catch (e) {
          throw new Error(`after ${done.join(', ')}: ${(e as Error).message}`, { cause: e });
        }
        return res;
      },
      stats: () => inner.stats(),
      close: () => inner.close(),
    });
    const r = await ws.call((io) =>
      applyCommand(io, { autoApprove: true, concurrency: 1, backendOptions: { wrap: probing } }).catch((e: unknown) => reportError(io, e)),
    );
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);

    // THEN the plan was the upgrade, access held throughout, and nothing of the old form is left
    expect(done).toContain('create aws:inline-policy/user/small/dg-direct-grants');
    expect(done).toContain('delete aws:policy/dg-user-small');
    expect(await ownPolicies()).toEqual([expect.stringMatching(/^dg-shared-[0-9a-f]{12}$/)]);
    await expectExactAccess(keys);
    const ids = (ks: Record<string, AwsKey>) => Object.values(ks).map((k) => k.accessKeyId);
    expect(ids(await keysOf(ws))).toEqual(ids(keys));
    await expectNoChanges(ws);
  });
});

describe('a spec past a quota fails at plan', () => {
  const quotaSpec = (users?: number) => SPEC.replace('aws: { type: aws }', `aws: { type: aws${users ? `, quotas: { users: ${users} }` : ''} }`);
  const USERS_OVER = /^ {2}backend aws: 3 IAM users needed, the account quota is 2 \(quotas\.users\)\. Raise quotas\.users if the account has room/m;

  test('plan and apply exit 1 naming the quota, the count and the way out; nothing is made', async () => {
    ws = await initWorkspace(quotaSpec(2));
    const plan = await ws.run('plan');
    expect(plan.code).toBe(1);
    expect(plan.stderr).toMatch(/^Error: the spec cannot be expressed within the backend's limits:$/m);
    expect(plan.stderr).toMatch(USERS_OVER);
    const applied = await ws.run('apply', '--auto-approve');
    expect(applied.code).toBe(1);
    expect(applied.stderr).toMatch(USERS_OVER);
    expect((await iam.send(new ListUsersCommand({ PathPrefix: '/datagrant/' }))).Users).toEqual([]);
    expect(await ownPolicies()).toEqual([]);
    expect((await ws.run('credentials', 'list')).stdout).not.toMatch(/small|big/);
  });

  test('a 10,000-principal spec is refused at plan for the users AWS will not raise', async () => {
    const principals = Array.from({ length: 10000 }, (_, i) => `  p${i}: { type: service, grants: [{ dataset: artifacts, access: read }] }`);
    ws = await initWorkspace(`${SPEC.slice(0, SPEC.indexOf('principals:'))}principals:\n${principals.join('\n')}\n`);
    const plan = await ws.run('plan');
    expect(plan.code).toBe(1);
    expect(plan.stderr).toContain(
      "backend aws: 10,000 IAM users needed, the account quota is 5,000 (AWS's default; quotas.users sets another). AWS raises it no further",
    );
    expect((await iam.send(new ListUsersCommand({ PathPrefix: '/datagrant/' }))).Users).toEqual([]);
  });

  test('a quota lowered under what exists stops plan, and never the teardown', async () => {
    ws = await initWorkspace(quotaSpec());
    await apply(ws);
    const key = await issuedKey(ws, 'small');
    ws.writeSpec(quotaSpec(2));
    const plan = await ws.run('plan');
    expect(plan.code).toBe(1);
    expect(plan.stderr).toMatch(USERS_OVER);
    const destroyed = await ws.run('destroy', '--auto-approve');
    expect(destroyed.code, destroyed.stderr).toBe(0);
    await keyIsDead(moto, key);
    expect((await iam.send(new ListUsersCommand({ PathPrefix: '/datagrant/' }))).Users).toEqual([]);
    expect(await ownPolicies()).toEqual([]);
  });
});
