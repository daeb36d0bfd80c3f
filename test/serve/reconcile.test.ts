// The reconciler's choice between a run and a skip: a SCIM change that leaves the spec and the
// desired state as they were at the last good run does not touch the backends; anything else, a
// full (start, interval) run, or the run after a failure, does.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import type { PrincipalSpec } from '../../src/spec/schema.js';
import { Reconciler, type ReconcileLogger } from '../../src/serve/reconcile.js';
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
    identities: async () => structuredClone(people),
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
  store.db.prepare('INSERT INTO locks (name, holder, pid, host, acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)').run('state', 'other (apply)', 1, hostname(), new Date().toISOString(), Date.now());
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

