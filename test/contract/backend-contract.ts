// The contract every backend driver passes (see src/backends/backend.ts): read sees only its own
// boundary; a second plan after a successful apply is empty; issued credentials come back with
// their id and are recognised at their slot; a change that cannot take effect fails instead of
// reporting success; deleting what is already gone succeeds; destroy leaves nothing inside the
// boundary and everything outside it untouched.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend, KnownCredential } from '../../src/backends/backend.js';
import { dependencies } from '../../src/apply/apply.js';
import { compile } from '../../src/compile/index.js';
import type { ActualState, Change, DesiredState, Plan } from '../../src/core/types.js';
import { diff } from '../../src/plan/diff.js';
import { parseSpec } from '../../src/spec/load.js';

export interface ContractFixture {
  backend: Backend;
  /** Spec name of the backend under test. */
  name: string;
  /** A spec with a group, two principals with credentials, group and direct grants. */
  spec: string;
  env?: Record<string, string>;
  /**
   * The same kind of backend connected as an operator that lacks a right the spec needs (and a
   * spec of its own, on its own boundary). Its changes must fail rather than report a success
   * that the next plan undoes.
   */
  lacking(): Promise<{ backend: Backend; spec: string; env?: Record<string, string> }>;
  /** Throws unless the object made by hand outside the boundary is exactly as it was. */
  outsideUnchanged(): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * Executes changes one at a time in an order that respects their dependencies. A change whose
 * dependency failed is skipped (as apply does); failures are returned, or thrown when `strict`.
 */
export async function executeInOrder(
  backend: Backend,
  changes: Change[],
  opts: { strict?: boolean; onResult?: (c: Change, r: Awaited<ReturnType<Backend['execute']>>) => void } = {},
): Promise<{ done: Set<string>; failed: Map<string, Error> }> {
  const waits = dependencies(changes);
  const done = new Set<string>();
  const failed = new Map<string, Error>();
  const pending = new Map(changes.map((c) => [c.address, c]));
  while (pending.size) {
    const ready = [...pending.values()].filter((c) => [...waits.get(c.address)!].every((d) => done.has(d) || failed.has(d)));
    expect(ready.length, 'a dependency cycle').toBeGreaterThan(0);
    for (const c of ready) {
      pending.delete(c.address);
      const blocked = [...waits.get(c.address)!].find((d) => failed.has(d));
      if (blocked) {
        failed.set(c.address, new Error(`skipped: depends on ${blocked}`));
        continue;
      }
      try {
        // (not `onResult?.(c, await …)`: optional chaining would skip the call's arguments too)
        const result = await backend.execute(c);
        opts.onResult?.(c, result);
        done.add(c.address);
      } catch (e) {
        if (opts.strict ?? true) throw e;
        failed.set(c.address, e as Error);
      }
    }
  }
  return { done, failed };
}

/**
 * Each clause is its own test; they run in order on one backend, each building on the state the
 * one before left (an empty boundary, then the applied spec, then nothing again).
 */
export function describeBackendContract(label: string, setup: () => Promise<ContractFixture>): void {
  describe(`${label} backend contract`, () => {
    let fx: ContractFixture;
    const now = new Date();
    let only: Record<string, DesiredState>;
    const credentials: KnownCredential[] = [];
    let plan: Plan;
    let applied: ActualState;
    beforeAll(async () => {
      fx = await setup();
      const { spec } = parseSpec(fx.spec, { file: 'contract.yaml', env: fx.env ?? {}, now });
      only = { [fx.name]: compile(spec, now).desired[fx.name]! };
      expect(only[fx.name]!.resources.length).toBeGreaterThan(5);
    });
    afterAll(async () => fx?.cleanup());
    const planFor = (actual: ActualState) => diff(only, { [fx.name]: actual }, { now, specHash: 'contract' });

    test('read sees nothing inside an empty boundary, and nothing outside it', async () => {
      const empty = await fx.backend.read({ credentials: [] });
      expect(empty.resources).toEqual([]);
      plan = planFor(empty);
    });

    test('every change of a plan executes in dependency order; an issued credential comes with its id', async () => {
      await executeInOrder(fx.backend, plan.changes, {
        onResult: (c, r) => {
          if (r.secret) {
            expect(r.credential, `${c.address} returned a secret without its id`).toBeDefined();
            expect(Object.values(r.secret).every((v) => typeof v === 'string' && v.length > 0)).toBe(true);
            credentials.push({ address: c.address, credentialId: r.credential!.credentialId, createdAt: r.credential!.createdAt, state: 'current' });
          }
        },
      });
      expect(credentials.length).toBe(2);
    });

    test('a second plan after a successful apply is empty', async () => {
      applied = await fx.backend.read({ credentials });
      expect(planFor(applied).changes.map((c) => `${c.action} ${c.address}`)).toEqual([]);
    });

    test('issued credentials are recognised at their slots, and no other credential is seen', () => {
      for (const c of credentials) expect(applied.resources.map((r) => r.address)).toContain(c.address);
      expect(applied.resources.filter((r) => r.address.includes('~')).map((r) => r.address)).toEqual([]);
    });

    test('a change that cannot take effect fails: nothing reported done is planned again', async () => {
      // GIVEN an operator lacking a right the spec needs, on a boundary of its own
      const lacking = await fx.lacking();
      try {
        const { spec } = parseSpec(lacking.spec, { file: 'lacking.yaml', env: lacking.env ?? {}, now });
        const desired = { [fx.name]: compile(spec, now).desired[fx.name]! };
        const first = diff(desired, { [fx.name]: await lacking.backend.read({ credentials: [] }) }, { now, specHash: 'lacking' });
        // WHEN its plan is executed
        const issued: KnownCredential[] = [];
        const { done, failed } = await executeInOrder(lacking.backend, first.changes, {
          strict: false,
          onResult: (c, r) => {
            if (r.credential) issued.push({ address: c.address, credentialId: r.credential.credentialId, createdAt: r.credential.createdAt, state: 'current' });
          },
        });
        // THEN something fails, and whatever was reported done does not come back in the next plan
        expect(failed.size, 'the operator lacks a right, yet every change succeeded').toBeGreaterThan(0);
        const again = diff(desired, { [fx.name]: await lacking.backend.read({ credentials: issued }) }, { now, specHash: 'lacking' });
        expect(again.changes.filter((c) => done.has(c.address)).map((c) => `${c.action} ${c.address}`)).toEqual([]);
      } finally {
        await lacking.backend.close();
      }
    });

    test('deleting what is already gone succeeds; destroy leaves nothing inside the boundary', async () => {
      const destroy = diff({ [fx.name]: { resources: [], notices: [] } }, { [fx.name]: applied }, { now, specHash: 'contract' });
      expect(destroy.changes.every((c) => c.action === 'delete')).toBe(true);
      await executeInOrder(fx.backend, destroy.changes);
      await executeInOrder(fx.backend, destroy.changes);
      expect((await fx.backend.read({ credentials: [] })).resources).toEqual([]);
    });

    test('nothing outside the boundary was touched, and the work was counted', async () => {
      await fx.outsideUnchanged();
      expect(fx.backend.stats().requests).toBeGreaterThan(plan.changes.length);
      await fx.backend.close();
    });
  });
}
