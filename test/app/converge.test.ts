// converge's rules, with an in-memory backend: what the store may change and when, the guards,
// saved-plan authentication, a removed backend, crash recovery and serve's mass-event hold.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { converge, GuardError, signPlan, storedSettings, type ConvergeOptions } from '../../src/app/converge.js';
import { InvariantError } from '../../src/compile/invariants.js';
import { StalePlanError } from '../../src/core/errors.js';
import { attrsHash } from '../../src/plan/diff.js';
import { parseSpec } from '../../src/spec/load.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { FakeBackend } from '../support/fake-backend.js';

const NOW = new Date('2026-11-28T00:00:00Z');
let dir: string;
let store: SqliteStore;
let fakes: Record<string, FakeBackend>;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dg-converge-'));
  store = new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()));
  fakes = { aws: new FakeBackend('aws') };
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function specText(people: number, backends = ['aws']): string {
  const lines = ['version: 1', 'backends:', ...backends.map((b) => `  ${b}: { type: aws }`), 'datasets:'];
  for (const b of backends) lines.push(`  ds-${b}: { backend: ${b}, bucket: bucket-${b} }`);
  lines.push('groups:', `  g: { grants: [${backends.map((b) => `{ dataset: ds-${b}, access: read }`).join(', ')}] }`, 'principals:');
  if (people === 0) lines.push('  {}');
  for (let p = 0; p < people; p++) lines.push(`  u${p}: { type: person, groups: [g] }`);
  return lines.join('\n');
}

function run(text: string, extra: Partial<ConvergeOptions> = {}) {
  const { spec, notices } = parseSpec(text, { file: 't.yaml', env: {}, now: NOW });
  return converge({
    mode: 'apply',
    spec,
    specHash: String(text.length) + text.slice(-20),
    notices,
    store,
    makeBackends: (backends) => Object.fromEntries(Object.keys(backends).map((b) => [b, (fakes[b] ??= new FakeBackend(b))])),
    actor: 'test',
    now: NOW,
    onMassEvent: 'refuse',
    ...extra,
  });
}

const keys = (b: FakeBackend) => [...b.objects.values()].filter((r) => r.kind === 'key');

describe('converge', () => {
  test('a plan or a declined apply never changes the store', async () => {
    await run(specText(3));
    const before = JSON.stringify([await store.credentials(), await store.applied()]);
    fakes.aws!.objects.clear(); // the backend reads empty: wrong account, endpoint or path
    const plan = await run(specText(3), { mode: 'plan' });
    expect(plan.plan.notices.map((n) => n.message).join('\n')).toMatch(/none of the 3 credentials recorded for backend aws/);
    expect((await run(specText(3), { allow: { missingCredentials: true }, confirm: async () => false })).outcome).toBe('declined');
    await expect(run(specText(3))).rejects.toThrow(GuardError);
    expect(JSON.stringify([await store.credentials(), await store.applied()])).toBe(before);
  });

  test('with the explicit flag, the missing credentials are forgotten by the applied changes and new ones issued', async () => {
    await run(specText(3));
    const old = (await store.credentials()).map((c) => c.credentialId);
    fakes.aws!.objects.clear();
    const out = await run(specText(3), { allow: { missingCredentials: true } });
    expect(out.outcome).toBe('applied');
    const now = (await store.credentials()).map((c) => c.credentialId);
    expect(now).toHaveLength(3);
    expect(now.some((id) => old.includes(id))).toBe(false);
    expect(out.plan.changes.filter((c) => c.reason.includes('no longer exists'))).toHaveLength(3);
  });

  test('a saved plan must carry a MAC made under this master key', async () => {
    const planned = await run(specText(2), { mode: 'plan' });
    const signed = signPlan(planned.plan, store);
    const edited = { ...signed, changes: signed.changes.slice(1) };
    await expect(run(specText(2), { saved: { plan: edited, file: 'p.json' } })).rejects.toThrow(StalePlanError);
    await expect(run(specText(2), { saved: { plan: planned.plan, file: 'p.json' } })).rejects.toThrow(/not one this state made/);
    expect(fakes.aws!.calls).toEqual([]);
    expect((await run(specText(2), { saved: { plan: signed, file: 'p.json' } })).outcome).toBe('applied');
  });

  test('mass deprovisioning: refused without the flag; serve revokes reversibly and holds the deletions', async () => {
    await run(specText(8));
    await expect(run(specText(2))).rejects.toThrow(/6 of 8 principals on backend aws would be removed/);
    const held = await run(specText(2), { onMassEvent: 'hold' });
    expect(held.outcome).toBe('applied');
    expect(held.held.map((c) => c.address).filter((a) => a.startsWith('aws:user/'))).toHaveLength(6);
    // users and keys are still there, keys inactive, memberships gone
    const users = [...fakes.aws!.objects.values()].filter((r) => r.kind === 'user').map((r) => r.name);
    expect(users).toHaveLength(8);
    expect(
      keys(fakes.aws!)
        .filter((k) => k.attrs.status === 'Inactive')
        .map((k) => k.name)
        .sort(),
    ).toEqual(['u2', 'u3', 'u4', 'u5', 'u6', 'u7']);
    expect([...fakes.aws!.objects.keys()].filter((a) => a.startsWith('aws:membership/g/'))).toEqual(['aws:membership/g/u0', 'aws:membership/g/u1']);
    // a saved plan is no way around the guard
    const saved = signPlan((await run(specText(2), { mode: 'plan' })).plan, store);
    await expect(run(specText(2), { saved: { plan: saved, file: 'p.json' } })).rejects.toThrow(/--allow-mass-destroy/);
    // a person confirms
    expect((await run(specText(2), { allow: { massDestroy: true } })).outcome).toBe('applied');
    expect([...fakes.aws!.objects.values()].filter((r) => r.kind === 'user')).toHaveLength(2);
  });

  test('a backend removed from the spec is torn down, then forgotten', async () => {
    await run(specText(2, ['aws', 'other']));
    expect((await store.backends()).map((b) => b.name)).toEqual(['aws', 'other']);
    const out = await run(specText(2, ['aws']));
    expect(out.plan.notices.map((n) => n.message)).toContain('backend other is no longer in the spec: everything datagrant made there is torn down');
    expect(fakes.other!.objects.size).toBe(0);
    expect((await store.backends()).map((b) => b.name)).toEqual(['aws']);
    expect((await store.credentials()).some((c) => c.backend === 'other')).toBe(false);
  });

  test('a change interrupted by a crash whose object exists is recorded as applied, not as foreign', async () => {
    await run(specText(1));
    const { spec } = parseSpec(specText(2), { file: 't.yaml', env: {}, now: NOW });
    // the run died after creating u1's user, before recording it
    const planned = await run(specText(2), { mode: 'plan' });
    const user = planned.plan.changes.find((c) => c.address === 'aws:user/u1')!;
    fakes.aws!.objects.set(user.address, structuredClone(user.after!));
    await store.journalBegin('dead-run', user, NOW.toISOString(), attrsHash(user.after!));
    expect(spec.principals.u1).toBeDefined();
    const plan = await run(specText(0), { mode: 'plan', allow: { massDestroy: true } });
    expect(plan.plan.changes.find((c) => c.address === 'aws:user/u1')?.reason).toBe('no longer in spec');
    const applied = await run(specText(2));
    expect(applied.interrupted.map((e) => e.address)).toEqual(['aws:user/u1']);
    expect((await store.applied())['aws:user/u1']).toBe(attrsHash(user.after!));
  });

  describe('a `credentials rotate --revoke-old` killed after journaling the deletion of the leaked key', () => {
    /** u0's key leaked; the run that revokes it died before deleting it. Returns the leaked key's id. */
    async function killedRevocation(): Promise<string> {
      await run(specText(2));
      const leaked = (await store.credentials()).find((c) => c.principal === 'u0')!.credentialId;
      const planned = await run(specText(2), { mode: 'plan', forceRotate: ['aws:key/u0'], revoke: ['aws:key/u0'], only: ['aws:key/u0'] });
      const revocation = planned.plan.changes.find((c) => c.address === `aws:key/u0~${leaked}`)!;
      expect(revocation.action).toBe('delete');
      await store.journalBegin('dead-run', revocation, NOW.toISOString());
      return leaked;
    }
    const deleted = (id: string) => fakes.aws!.calls.includes(`delete aws:key/u0~${id}`);
    const stored = async (id: string) => (await store.credentials()).some((c) => c.credentialId === id);

    test("rotating another principal's key (`only`) still deletes it", async () => {
      const leaked = await killedRevocation();
      const out = await run(specText(2), { forceRotate: ['aws:key/u1'], only: ['aws:key/u1'] });
      expect(out.plan.changes.map((c) => `${c.action} ${c.address}`)).toContain(`delete aws:key/u0~${leaked}`);
      expect(deleted(leaked)).toBe(true);
      expect(await stored(leaked)).toBe(false);
      expect(await store.journalPending()).toEqual([]);
    });

    test('a plan saved before it is stale, and leaves the journal for the next run to finish', async () => {
      await run(specText(2));
      const saved = signPlan((await run(specText(3), { mode: 'plan' })).plan, store);
      const leaked = await killedRevocation();
      await expect(run(specText(3), { saved: { plan: saved, file: 'p.json' } })).rejects.toThrow(
        /p\.json was made before an interrupted `credentials rotate --revoke-old`.*aws:key\/u0~.*run plan again/,
      );
      expect((await store.journalPending()).map((e) => e.address)).toEqual([`aws:key/u0~${leaked}`]);
      expect(deleted(leaked)).toBe(false);
      expect(await stored(leaked)).toBe(true);
      const fresh = signPlan((await run(specText(3), { mode: 'plan' })).plan, store);
      expect((await run(specText(3), { saved: { plan: fresh, file: 'p2.json' } })).outcome).toBe('applied');
      expect(deleted(leaked)).toBe(true);
      expect(await stored(leaked)).toBe(false);
    });
  });

  test('a spec that breaks an invariant is refused before any backend is made or read; destroy is not', async () => {
    const text = `${specText(2)}\n  outsider: { type: service, grants: [{ dataset: ds-aws, access: read }] }\ninvariants:\n  only-g: { onlyMembersOf: [g] }\n`;
    const { spec, notices, source } = parseSpec(text, { file: 't.yaml', env: {}, now: NOW });
    let made = 0;
    const opts: ConvergeOptions = {
      mode: 'plan',
      spec,
      specHash: 'h',
      notices,
      source,
      store,
      makeBackends: (backends) => {
        made++;
        return Object.fromEntries(Object.keys(backends).map((b) => [b, fakes[b]!]));
      },
      actor: 'test',
      now: NOW,
    };
    for (const mode of ['plan', 'apply'] as const) {
      const refused = await converge({ ...opts, mode }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(InvariantError);
      expect((refused as Error).message).toBe(
        'invariant only-g: principal outsider gets read on ds-aws through principals.outsider.grants[0] (t.yaml:11:39), and outsider is not in group g',
      );
    }
    expect(made).toBe(0);
    expect(fakes.aws!.stats().requests).toBe(0);
    // Destroying removes every grant: there is nothing left to break an invariant.
    expect((await converge({ ...opts, mode: 'plan', destroy: true })).outcome).toBe('planned');
  });
});

describe('the settings the state keeps of a backend', () => {
  const ROLE = 'arn:aws:iam::222222222222:role/datagrant';

  test('an assumed role is kept, so a removed backend is torn down in its own account', () => {
    const { spec, templates } = parseSpec(
      `version: 1\nbackends:\n  other: { type: aws, assumeRole: { roleArn: "${ROLE}", externalId: ext-1, sessionName: dg } }\n`,
      { file: 'datagrant.yaml', env: {}, now: new Date(0) },
    );
    expect(storedSettings('other', spec.backends.other!, templates.other)).toEqual({
      name: 'other',
      type: 'aws',
      settings: { assumeRole: { roleArn: ROLE, externalId: 'ext-1', sessionName: 'dg' } },
    });
  });

  test('an external id read from ${VAR} is kept as the template, never its value', () => {
    const { spec, templates } = parseSpec(`version: 1\nbackends:\n  other: { type: aws, assumeRole: { roleArn: "${ROLE}", externalId: "\${EXT}" } }\n`, {
      file: 'datagrant.yaml',
      env: { EXT: 'from-env-ext' },
      now: new Date(0),
    });
    const stored = storedSettings('other', spec.backends.other!, templates.other);
    expect(stored.settings).toEqual({ assumeRole: { roleArn: ROLE }, fromEnv: { 'assumeRole.externalId': '${EXT}' } });
    expect(JSON.stringify(stored)).not.toContain('from-env-ext');
  });
});
