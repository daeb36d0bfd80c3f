// The reconciler's choice between a run and a skip: a SCIM change that leaves the spec and the
// desired state as they were at the last good run does not touch the backends; anything else, a
// full (start, interval) run, or the run after a failure, does.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { ScimWork } from '../../src/scim/store/store.js';
import type { PrincipalSpec, Spec } from '../../src/spec/schema.js';
import { Reconciler, retryDelayMs, type PendingWork, type ReconcileLogger } from '../../src/serve/reconcile.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { FakeBackend } from '../support/fake-backend.js';

const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets: { data: { backend: aws, bucket: ai-model-data } }
groups: { readers: { grants: [{ dataset: data, access: read }] } }
scim: { groups: { Readers: readers } }
`;

let dir: string;
let store: SqliteStore;
let backend: FakeBackend;
let people: Record<string, PrincipalSpec>;
/** The SCIM people merged as mergedSpec merges them (a spec principal of the same name wins). */
const withPeople = (spec: Spec, p: Record<string, PrincipalSpec>) => ({ spec: { ...spec, principals: { ...p, ...spec.principals } }, notices: [] });
let errors: string[];
let reconciler: Reconciler;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dg-reconcile-'));
  writeFileSync(join(dir, 'datagrant.yaml'), SPEC);
  store = new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()));
  backend = new FakeBackend('aws');
  people = {};
  errors = [];
  const quiet = () => undefined;
  const logger: ReconcileLogger = { debug: quiet, info: quiet, warn: quiet, error: (obj) => void errors.push(JSON.stringify(obj)) };
  reconciler = new Reconciler({
    specFile: join(dir, 'datagrant.yaml'),
    env: {},
    store,
    merge: async (spec) => withPeople(spec, structuredClone(people)),
    makeBackends: () => ({ aws: backend }),
    logger,
    debounceMs: 10,
  });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const reads = () => backend.stats().requests - backend.calls.length;

test('a SCIM change that changes no principal skips the backends; a full run and a real change do not', async () => {
  // GIVEN a first full run
  await reconciler.runOnce({ full: true });
  expect(reads()).toBe(1);
  // WHEN SCIM changes leave the desired state as it was: a no-op PATCH, a user outside every mapped group
  await reconciler.runOnce({ full: false });
  people.bob = { type: 'person', groups: [], grants: [] };
  await reconciler.runOnce({ full: false });
  // THEN the backends are not read
  expect(reads()).toBe(1);
  expect(reconciler.metrics.skippedUnchanged).toBe(2);

  // WHEN someone joins a mapped group
  people.ada = { type: 'person', groups: ['readers'], grants: [] };
  await reconciler.runOnce({ full: false });
  // THEN the run reads and applies
  expect(reads()).toBe(2);
  expect(backend.calls).toContain('create aws:user/ada');
  // and an interval (full) run reads even when nothing changed
  await reconciler.runOnce({ full: true });
  expect(reads()).toBe(3);
  // while the next SCIM change without effect skips again
  await reconciler.runOnce({ full: false });
  expect(reads()).toBe(3);
  expect(reconciler.metrics).toMatchObject({ runs: 3, failures: 0, skippedUnchanged: 3 });
  expect(errors).toEqual([]);
});

test('after a failed run, the next SCIM change runs even if the spec is back to what last succeeded', async () => {
  await reconciler.runOnce({ full: true });
  writeFileSync(join(dir, 'datagrant.yaml'), SPEC.replace('access: read', 'access: reed'));
  await reconciler.runOnce({ full: false });
  expect(reconciler.metrics.failures).toBe(1);
  expect(errors.join()).toContain('reed');
  writeFileSync(join(dir, 'datagrant.yaml'), SPEC);
  await reconciler.runOnce({ full: false });
  expect(reads()).toBe(2);
  expect(reconciler.metrics).toMatchObject({ runs: 3, failures: 1, skippedUnchanged: 0 });
});

test('a serve left running through a rekey is refused before it reads or changes a backend, says so once, and keeps refusing', async () => {
  // GIVEN a serve that ran once, then a rekey by another process
  await reconciler.runOnce({ full: true });
  const [before, made] = [backend.stats().requests, backend.calls.length];
  const next = MasterKey.parse(MasterKey.generate());
  const rekey = new SqliteStore(join(dir, 'state.db'), store.masterKey, { rotating: true });
  await rekey.acquireLock('datagrant rekey');
  await rekey.beginRotation(next);
  await rekey.resealAll(next);
  await rekey.finishRotation(next, 'ops@cli', new Date().toISOString());
  await rekey.releaseLock();
  await rekey.close();
  // WHEN someone joins, and the serve reconciles, again and again
  people.ada = { type: 'person', groups: ['readers'], grants: [] };
  expect(await reconciler.runOnce({ full: true })).toBe('refused');
  expect(await reconciler.runOnce({ full: true })).toBe('refused');
  // THEN no backend was read or changed, each run counts as a failure, and one line says why
  expect(backend.stats().requests).toBe(before);
  expect(backend.calls.slice(made)).toEqual([]);
  expect(reconciler.metrics.failures).toBe(2);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatch(/was changed .*since this process opened it/);
});

test("a SCIM person who breaks an invariant gets no access, and the rest of the run, a leaver's removal included, applies", async () => {
  // GIVEN a spec that asks every person for an email, and a running installation with two readers
  writeFileSync(join(dir, 'datagrant.yaml'), `${SPEC}invariants: { people-have-email: { type: person, require: [email] } }\n`);
  people.ada = { type: 'person', email: 'ada@example.com', groups: ['readers'], grants: [] };
  people.cy = { type: 'person', email: 'cy@example.com', groups: ['readers'], grants: [] };
  expect(await reconciler.runOnce({ full: true })).toBe('applied');
  expect(backend.objects.has('aws:membership/readers/cy')).toBe(true);
  // WHEN the identity provider pushes a person without one, and cy leaves
  people.bob = { type: 'person', groups: ['readers'], grants: [] };
  delete people.cy;
  // THEN the run applies: cy's access is removed, bob gets nothing, and the breach is logged by name
  const second = await reconciler.runOnce({ full: false });
  expect(second, errors.join('\n')).toBe('applied');
  expect(backend.objects.has('aws:membership/readers/cy')).toBe(false);
  expect(backend.calls).toContain('delete aws:membership/readers/cy');
  expect([...backend.objects.keys()].some((k) => k.includes('readers/bob'))).toBe(false);
  expect(errors).toEqual([JSON.stringify({ violations: ['invariant people-have-email: principal bob (a SCIM person) has no email'] })]);
  expect(reconciler.metrics.invariantsWithheld).toBe(1);
  // and once the person has one, the next run grants bob's access
  people.bob.email = 'bob@example.com';
  expect(await reconciler.runOnce({ full: false })).toBe('applied');
  expect(backend.objects.has('aws:membership/readers/bob')).toBe(true);
});

test('a spec edit is a change: the next SCIM change runs', async () => {
  await reconciler.runOnce({ full: true });
  writeFileSync(join(dir, 'datagrant.yaml'), `${SPEC}principals: { svc: { type: service, grants: [{ dataset: data, access: read }] } }\n`);
  await reconciler.runOnce({ full: false });
  expect(reads()).toBe(2);
  expect(backend.calls).toContain('create aws:user/svc');
});

test('an apply by someone else since the last good run (another replica, the CLI) makes the next SCIM change run', async () => {
  await reconciler.runOnce({ full: true });
  await reconciler.runOnce({ full: false });
  expect(reads()).toBe(1);
  // another replica deprovisioned someone (the applied state in the shared store moved)
  await store.setApplied('aws:user/someone-else', 'h');
  await reconciler.runOnce({ full: false });
  expect(reads()).toBe(2);
  expect(reconciler.metrics.skippedUnchanged).toBe(1);
});

test('a run that finds the state lock taken tries again, and settles only once it has run', async () => {
  // GIVEN another live process holds the state lock (pid 1 is always alive)
  await reconciler.runOnce({ full: true });
  people.ada = { type: 'person', groups: ['readers'], grants: [] };
  store.db
    .prepare('INSERT INTO locks (name, holder, pid, host, acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)')
    .run('state', 'other (apply)', 1, hostname(), new Date().toISOString(), Date.now());
  // WHEN a SCIM change asks for a reconcile
  reconciler.trigger();
  const settled = reconciler.settled();
  await new Promise((r) => setTimeout(r, 300));
  // THEN it was refused the lock, and waits
  expect(reconciler.metrics.skippedLocked).toBeGreaterThanOrEqual(1);
  expect(backend.calls).not.toContain('create aws:user/ada');
  // and once the other holder is done, the retry applies the change
  store.db.prepare('DELETE FROM locks').run();
  await settled;
  expect(backend.calls).toContain('create aws:user/ada');
  await reconciler.stop();
});

test.each([
  // failures in a row → the wait lies within [half, whole] of the doubled step, capped at 30 s
  [1, 250, 500],
  [2, 500, 1000],
  [3, 1000, 2000],
  [7, 15_000, 30_000],
  [8, 15_000, 30_000],
  [50, 15_000, 30_000],
])('retry %i after a failure waits %i to %i ms', (failures, low, high) => {
  expect(retryDelayMs(failures, {}, () => 0)).toBe(low);
  expect(retryDelayMs(failures, {}, () => 1)).toBe(high);
  const some = retryDelayMs(failures);
  expect(some).toBeGreaterThanOrEqual(low);
  expect(some).toBeLessThanOrEqual(high);
});

/** The SCIM store's pending-work marker as another replica's writes move it; `down` makes it unreachable. */
class FakePending implements PendingWork {
  changed = 0;
  reconciled = 0;
  down = false;
  covers: { seq: number; actor: string }[] = [];
  async work(): Promise<ScimWork> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    return { changed: this.changed, reconciled: this.reconciled };
  }
  async markReconciled(seq: number, actor: string): Promise<void> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    this.covers.push({ seq, actor });
    this.reconciled = Math.max(this.reconciled, seq);
  }
}

const until = async (what: string, ok: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('pending work in the SCIM store', () => {
  let pending: FakePending;
  let down: boolean;
  const start = (extra: Partial<ConstructorParameters<typeof Reconciler>[0]> = {}) => {
    const quiet = () => undefined;
    reconciler = new Reconciler({
      specFile: join(dir, 'datagrant.yaml'),
      env: {},
      store,
      merge: async (spec) => {
        if (down) throw new Error('Connection terminated unexpectedly');
        return withPeople(spec, structuredClone(people));
      },
      pending,
      pollMs: 20,
      makeBackends: () => ({ aws: backend }),
      logger: { debug: quiet, info: quiet, warn: quiet, error: (obj) => void errors.push(JSON.stringify(obj)) },
      debounceMs: 10,
      intervalMs: 3_600_000,
      actor: 'ops@replica-b:42 (serve)',
      ...extra,
    });
    reconciler.start();
  };
  beforeEach(() => {
    pending = new FakePending();
    down = false;
  });
  afterEach(async () => reconciler.stop());

  test('a change another replica accepted and never reconciled is picked up without a trigger here, and recorded as covered', async () => {
    // GIVEN this replica has reconciled at start
    start();
    await reconciler.settled();
    // WHEN another replica stores a change (ada joins a mapped group) and dies before reconciling
    people.ada = { type: 'person', groups: ['readers'], grants: [] };
    pending.changed = 1;
    // THEN this replica applies it, nobody having told it, and records the work as covered
    await until('ada to be provisioned', () => backend.calls.includes('create aws:user/ada'));
    await until('the work to be covered', () => pending.reconciled === 1);
    expect(pending.covers.at(-1)).toEqual({ seq: 1, actor: 'ops@replica-b:42 (serve)' });
  });

  test('a change another run already covered stops before the backends', async () => {
    start();
    await reconciler.settled();
    const before = backend.stats().requests;
    // WHEN a SCIM change here asks for a run, but another replica covered every write meanwhile
    pending.changed = 5;
    pending.reconciled = 5;
    reconciler.trigger();
    await reconciler.settled();
    // THEN nothing is read
    expect(backend.stats().requests).toBe(before);
    expect(reconciler.metrics.skippedCovered).toBeGreaterThanOrEqual(1);
  });

  test('a failed run is retried until it succeeds, not left to the interval; settled() does not wait for the backoff', async () => {
    // GIVEN ada is in a mapped group, and the store fails the identities read for a while
    people.ada = { type: 'person', groups: ['readers'], grants: [] };
    down = true;
    start();
    // WHEN the start-up run fails (no SCIM change is pending: nothing but the retry will run it)
    await reconciler.settled();
    expect(reconciler.metrics.failures).toBeGreaterThanOrEqual(1);
    expect(backend.calls).toEqual([]);
    down = false;
    // THEN a retry applies it
    await until('ada to be provisioned', () => backend.calls.includes('create aws:user/ada'));
    expect(errors.join()).toContain('Connection terminated unexpectedly');
  });

  test('when the store answers again, a failed run is retried at once rather than after its backoff', async () => {
    // GIVEN a backoff far longer than the test: 20 to 40 s before the first retry
    start({ retry: { firstMs: 40_000, maxMs: 40_000 } });
    await reconciler.settled();
    // WHEN the store goes away as a change arrives, the run fails, and the store comes back
    down = true;
    pending.down = true;
    people.ada = { type: 'person', groups: ['readers'], grants: [] };
    reconciler.trigger();
    await until('the run to fail', () => reconciler.metrics.failures === 1);
    await new Promise((r) => setTimeout(r, 100)); // polls find the store unreachable
    pending.changed = 1;
    down = false;
    pending.down = false;
    // THEN the change is applied long before the backoff would have allowed
    await until('ada to be provisioned', () => backend.calls.includes('create aws:user/ada'), 15_000);
    await until('the work to be covered', () => pending.reconciled === 1);
  });
});

test('a run at the instant access ends by itself (a grant expiry, a session end), not only at the interval', async () => {
  // GIVEN a principal whose grant ends 1.5 s from now, and no interval to speak of
  const ends = new Date(Date.now() + 1500).toISOString();
  writeFileSync(join(dir, 'datagrant.yaml'), `${SPEC}principals:\n  p: { type: service, grants: [{ dataset: data, access: read, expires: "${ends}" }] }\n`);
  reconciler.start();
  await reconciler.settled();
  const before = reads();
  // WHEN the instant passes (plus the second the wake waits), THEN a full run reads the backend
  // again by itself (the interval is 5 minutes away)
  await readAgain(before);
  await reconciler.stop();
});

test('wakeBy: a session issued since the last run brings the next full run forward to its end', async () => {
  await reconciler.runOnce({ full: true });
  const before = reads();
  reconciler.wakeBy(new Date(Date.now() + 500));
  await readAgain(before);
  await reconciler.stop();
});

/** Waits (up to 20 s, for a loaded machine) until the backend has been read more than `before` times. */
async function readAgain(before: number): Promise<void> {
  for (const until = Date.now() + 20_000; reads() <= before;) {
    if (Date.now() > until) throw new Error('no run came by itself');
    await new Promise((r) => setTimeout(r, 100));
  }
  await reconciler.settled();
}
