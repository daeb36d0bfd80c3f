import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { applyPlan, dependencies } from '../../src/apply/apply.js';
import { compile } from '../../src/compile/index.js';
import { ApplyError } from '../../src/core/errors.js';
import { specHashOfRun } from '../../src/model/audit.js';
import { diff } from '../../src/plan/diff.js';
import { parseSpec } from '../../src/spec/load.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { FakeBackend } from '../support/fake-backend.js';
import { legacyDesired } from '../support/legacy-aws.js';

const NOW = new Date('2026-11-28T00:00:00Z');
let dir: string;
let store: SqliteStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dg-apply-'));
  store = new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()));
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function specText(principals: number, groups = 2): string {
  const lines = ['version: 1', 'backends:', '  aws: { type: aws }', 'datasets:'];
  for (let g = 0; g < groups; g++) lines.push(`  ds${g}: { backend: aws, bucket: bucket-${g}, prefix: p${g}/ }`);
  lines.push('groups:');
  for (let g = 0; g < groups; g++) lines.push(`  g${g}: { grants: [{ dataset: ds${g}, access: read }] }`);
  lines.push('principals:');
  for (let p = 0; p < principals; p++)
    lines.push(`  user${p}: { type: service, groups: [g${p % groups}], grants: [{ dataset: ds${(p + 1) % groups}, access: write }] }`);
  return lines.join('\n');
}

async function planFor(text: string, backend: FakeBackend) {
  const { spec } = parseSpec(text, { file: 't.yaml', env: {}, now: NOW });
  const { desired } = compile(spec, NOW);
  const actual = { aws: await backend.read({ credentials: [] }) };
  return diff(desired, actual, { now: NOW, specHash: 'h', applied: await store.applied() });
}

describe('apply', () => {
  test('creates in dependency order, concurrently within the bound, and converges', async () => {
    // GIVEN a backend that refuses out-of-order creates
    const backend = new FakeBackend('aws', 2);
    const plan = await planFor(specText(12), backend);
    // WHEN the plan is applied with at most 4 changes in flight
    const result = await applyPlan(plan, { backends: { aws: backend }, store, actor: 't', concurrency: 4 });
    // THEN every change applied, concurrency was used but bounded, and a second plan is empty
    expect(result.failed).toEqual([]);
    expect(result.applied).toBe(plan.changes.length);
    expect(backend.maxInFlight).toBeGreaterThan(1);
    expect(backend.maxInFlight).toBeLessThanOrEqual(4);
    expect((await planFor(specText(12), backend)).changes).toEqual([]);
    // and every issued key is stored, one current per principal
    const creds = await store.credentials();
    expect(creds.filter((c) => c.state === 'current')).toHaveLength(12);
  });

  test('removing principals tears down in order: keys first, then attachments and memberships, then the user', async () => {
    const backend = new FakeBackend('aws');
    await applyPlan(await planFor(specText(3), backend), { backends: { aws: backend }, store, actor: 't' });
    backend.calls.length = 0;
    const plan = await planFor(specText(1), backend);
    await applyPlan(plan, { backends: { aws: backend }, store, actor: 't', concurrency: 8 });
    const deletes = backend.calls.filter((c) => c.startsWith('delete'));
    // keys are revoked in the first batch, before anything else is touched
    const firstNonKey = deletes.findIndex((c) => !c.includes(':key/'));
    expect(deletes.slice(0, firstNonKey).every((c) => c.includes(':key/'))).toBe(true);
    expect(deletes.filter((c) => c.includes(':key/'))).toHaveLength(2);
    for (const u of ['user1', 'user2']) {
      const at = (s: string) => deletes.indexOf(s);
      expect(at(`delete aws:user/${u}`)).toBeGreaterThan(at(`delete aws:key/${u}`));
      expect(at(`delete aws:user/${u}`)).toBeGreaterThan(at(`delete aws:inline-policy/user/${u}/dg-direct-grants`));
    }
    // their secrets are erased from the store
    expect((await store.credentials()).map((c) => c.principal)).toEqual(['user0']);
  });

  test('a failed change skips only what depends on it, and the run reports it', async () => {
    const backend = new FakeBackend('aws');
    const plan = await planFor(specText(4), backend);
    const broken = 'aws:user/user1';
    const inner = backend.execute.bind(backend);
    backend.execute = async (c) => {
      if (c.address === broken) throw new Error('AccessDenied: not allowed');
      return inner(c);
    };
    const err = (await applyPlan(plan, { backends: { aws: backend }, store, actor: 't' }).catch((e: unknown) => e)) as ApplyError & {
      result: { skipped: string[]; applied: number };
    };
    expect(err).toBeInstanceOf(ApplyError);
    expect(err.failures).toEqual([{ address: broken, message: 'AccessDenied: not allowed' }]);
    expect(err.result.skipped.sort()).toEqual(['aws:inline-policy/user/user1/dg-direct-grants', 'aws:key/user1', 'aws:membership/g1/user1']);
    expect(backend.objects.has('aws:user/user0')).toBe(true);
    const journal = await store.journal();
    expect(journal.find((j) => j.address === broken)?.outcome).toBe('failed');
  });

  test('changes held up by one limit leave the slots to changes of other kinds', async () => {
    // GIVEN a backend on which creating a group waits until some user exists: a limit that only
    // the progress of other changes lifts (as a throttled API action waits while others run)
    const backend = new FakeBackend('aws');
    const plan = await planFor(specText(6), backend);
    let userMade!: () => void;
    const aUser = new Promise<void>((r) => (userMade = r));
    const inner = backend.execute.bind(backend);
    backend.execute = async (c) => {
      if (c.kind === 'group') {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no user was created while the groups waited')), 2000);
          void aUser.then(() => resolve(clearTimeout(t)));
        });
      }
      const out = await inner(c);
      if (c.kind === 'user') userMade();
      return out;
    };
    // WHEN the plan is applied with as many slots as there are groups, which sort first
    const result = await applyPlan(plan, { backends: { aws: backend }, store, actor: 't', concurrency: 2 });
    // THEN the waiting groups did not hold both slots: a user was created meanwhile, and all landed
    expect(result.failed).toEqual([]);
    expect(result.applied).toBe(plan.changes.length);
  });

  test('an upgrade from per-principal policies creates the new form before it removes the old one', async () => {
    // GIVEN what earlier versions made: a managed policy per principal, small and large
    const backend = new FakeBackend('aws');
    const bigGrants = Array.from({ length: 40 }, (_, i) => `{ dataset: ds${i}, access: read }`).join(', ');
    const lines = ['version: 1', 'backends: { aws: { type: aws } }', 'datasets:'];
    for (let i = 0; i < 40; i++) lines.push(`  ds${i}: { backend: aws, bucket: bucket-${i}, prefix: p${i}/ }`);
    lines.push('principals:', '  small: { type: service, grants: [{ dataset: ds0, access: read }] }', `  big: { type: service, grants: [${bigGrants}] }`);
    const text = lines.join('\n');
    const { spec } = parseSpec(text, { file: 't.yaml', env: {}, now: NOW });
    const desired = compile(spec, NOW).desired;
    const legacy = { aws: { ...desired.aws!, resources: legacyDesired(desired.aws!.resources) } };
    await applyPlan(diff(legacy, { aws: await backend.read({ credentials: [] }) }, { now: NOW, specHash: 'h' }), {
      backends: { aws: backend },
      store,
      actor: 't',
    });
    // (big's grants needed two policies)
    expect([...backend.objects.keys()].filter((a) => a.startsWith('aws:policy/dg-user-')).sort()).toEqual([
      'aws:policy/dg-user-big',
      'aws:policy/dg-user-big-2',
      'aws:policy/dg-user-small',
    ]);
    backend.calls.length = 0;
    // WHEN the installation moves to the inline and shared forms, many changes at once
    const plan = await planFor(text, backend);
    await applyPlan(plan, { backends: { aws: backend }, store, actor: 't', concurrency: 8 });
    // THEN each principal's new form exists before its old attachment goes, deletes first or not
    const at = (s: string) => backend.calls.indexOf(s);
    const shared = [...backend.objects.keys()].filter((a) => a.startsWith('aws:attachment/user/big/dg-shared-')).sort();
    expect(shared).toHaveLength(2);
    expect(at('create aws:inline-policy/user/small/dg-direct-grants')).toBeGreaterThanOrEqual(0);
    expect(at('create aws:inline-policy/user/small/dg-direct-grants')).toBeLessThan(at('delete aws:attachment/user/small/dg-user-small'));
    expect(at(`create ${shared[0]}`)).toBeLessThan(at('delete aws:attachment/user/big/dg-user-big'));
    expect(at(`create ${shared[1]}`)).toBeLessThan(at('delete aws:attachment/user/big/dg-user-big-2'));
    expect(at('delete aws:attachment/user/big/dg-user-big')).toBeLessThan(at('delete aws:policy/dg-user-big'));
    // and nothing of the old form is left; a second plan is empty
    expect([...backend.objects.keys()].filter((a) => a.includes('dg-user-'))).toEqual([]);
    expect((await planFor(text, backend)).changes).toEqual([]);
  });

  test("a run's start entry names the spec it applies, for a review to tell the run that applied its revocations", async () => {
    const backend = new FakeBackend('aws');
    const plan = { ...(await planFor(specText(1), backend)), specHash: 'c'.repeat(64) };
    await applyPlan(plan, { backends: { aws: backend }, store, actor: 't' });
    const start = (await store.auditEntries()).find((e) => e.event === 'apply.start')!;
    expect(start.detail).toMatch(new RegExp(`^${plan.changes.length} changes, run [0-9a-f-]{36}, spec sha256 c{64}$`));
    expect(specHashOfRun(start.detail)).toBe('c'.repeat(64));
    expect(specHashOfRun('3 changes, run 0b0e')).toBeUndefined();
  });

  test('the dependency graph has no cycles for a compiled spec', () => {
    const { spec } = parseSpec(specText(5), { file: 't.yaml', env: {}, now: NOW });
    const plan = diff(compile(spec, NOW).desired, {}, { now: NOW, specHash: 'h' });
    const waits = dependencies(plan.changes);
    const seen = new Set<string>();
    const visit = (a: string, stack: Set<string>) => {
      expect(stack.has(a)).toBe(false);
      if (seen.has(a)) return;
      stack.add(a);
      for (const d of waits.get(a) ?? []) visit(d, stack);
      stack.delete(a);
      seen.add(a);
    };
    for (const a of waits.keys()) visit(a, new Set());
  });
});
