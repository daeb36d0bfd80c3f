// The contract every backend driver passes (see src/backends/backend.ts): read sees only its own
// boundary; executing a plan then reading back gives an empty diff; issued credentials come back
// with their id and are recognised at their slot; deleting what is already gone succeeds; destroy
// leaves nothing inside the boundary and everything outside it untouched.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend, KnownCredential } from '../../src/backends/backend.js';
import { dependencies } from '../../src/apply/apply.js';
import { compile } from '../../src/compile/index.js';
import type { ActualState, Change } from '../../src/core/types.js';
import { diff } from '../../src/plan/diff.js';
import { parseSpec } from '../../src/spec/load.js';

export interface ContractFixture {
  backend: Backend;
  /** Spec name of the backend under test. */
  name: string;
  /** A spec with a group, two principals with credentials, group and direct grants. */
  spec: string;
  env?: Record<string, string>;
  /** Throws unless the object made by hand outside the boundary is exactly as it was. */
  outsideUnchanged(): Promise<void>;
  cleanup(): Promise<void>;
}

/** Executes changes one at a time in an order that respects their dependencies. */
async function executeInOrder(backend: Backend, changes: Change[], onResult?: (c: Change, r: Awaited<ReturnType<Backend['execute']>>) => void): Promise<void> {
  const waits = dependencies(changes);
  const done = new Set<string>();
  const pending = new Map(changes.map((c) => [c.address, c]));
  while (pending.size) {
    const ready = [...pending.values()].filter((c) => [...waits.get(c.address)!].every((d) => done.has(d)));
    expect(ready.length, 'a dependency cycle').toBeGreaterThan(0);
    for (const c of ready) {
      // (not `onResult?.(c, await …)`: optional chaining would skip the call's arguments too)
      const result = await backend.execute(c);
      onResult?.(c, result);
      pending.delete(c.address);
      done.add(c.address);
    }
  }
}

export function describeBackendContract(label: string, setup: () => Promise<ContractFixture>): void {
  describe(`${label} backend contract`, () => {
    let fx: ContractFixture;
    beforeAll(async () => {
      fx = await setup();
    });
    afterAll(async () => fx?.cleanup());

    test('empty read; apply then read back is an empty diff; credentials at their slots; idempotent destroy; outside untouched', async () => {
      const now = new Date();
      const { spec } = parseSpec(fx.spec, { file: 'contract.yaml', env: fx.env ?? {}, now });
      const desired = compile(spec, now).desired;
      const only = { [fx.name]: desired[fx.name]! };
      expect(only[fx.name]!.resources.length).toBeGreaterThan(5);

      // 1. nothing inside the boundary yet, and nothing outside it is seen
      const empty = await fx.backend.read({ credentials: [] });
      expect(empty.resources).toEqual([]);

      // 2. every change of the plan, in dependency order
      const credentials: KnownCredential[] = [];
      const plan = diff(only, { [fx.name]: empty }, { now, specHash: 'contract' });
      await executeInOrder(fx.backend, plan.changes, (c, r) => {
        if (r.secret) {
          expect(r.credential, `${c.address} returned a secret without its id`).toBeDefined();
          expect(Object.values(r.secret).every((v) => typeof v === 'string' && v.length > 0)).toBe(true);
          credentials.push({ address: c.address, credentialId: r.credential!.credentialId, createdAt: r.credential!.createdAt, state: 'current' });
        }
      });
      expect(credentials.length).toBe(2);

      // 3. read back: no difference, and each issued credential sits at its slot
      const actual: ActualState = await fx.backend.read({ credentials });
      expect(diff(only, { [fx.name]: actual }, { now, specHash: 'contract' }).changes.map((c) => `${c.action} ${c.address}`)).toEqual([]);
      for (const c of credentials) expect(actual.resources.map((r) => r.address)).toContain(c.address);
      expect(actual.resources.filter((r) => r.address.includes('~')).map((r) => r.address)).toEqual([]);

      // 4. destroy, twice: deleting what is already gone succeeds
      const destroy = diff({ [fx.name]: { resources: [], notices: [] } }, { [fx.name]: actual }, { now, specHash: 'contract' });
      expect(destroy.changes.every((c) => c.action === 'delete')).toBe(true);
      await executeInOrder(fx.backend, destroy.changes);
      await executeInOrder(fx.backend, destroy.changes);

      // 5. nothing left inside, nothing outside touched; work was counted
      expect((await fx.backend.read({ credentials: [] })).resources).toEqual([]);
      await fx.outsideUnchanged();
      expect(fx.backend.stats().requests).toBeGreaterThan(plan.changes.length);
      await fx.backend.close();
    });
  });
}
