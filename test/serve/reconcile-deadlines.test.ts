// serve's reconciler and a backend that stops answering: the run fails at the deadline (it does
// not hang, so later runs are not stuck behind it), and the next run after the server is back
// converges. Real drivers, a real PostgreSQL behind a TCP relay that starts as a black hole.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { makeBackends } from '../../src/backends/factory.js';
import { Reconciler, type ReconcileLogger } from '../../src/serve/reconcile.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { startBlackHole, type BlackHole } from '../support/black-hole.js';
import { adminQuery, pgFixture, testPgUrl } from '../support/pg.js';

const fx = pgFixture('rcdeadline');
let db: string;
let dir: string;
let hole: BlackHole;

beforeAll(async () => {
  db = await fx.database('wh');
  await adminQuery(db, 'CREATE SCHEMA features; CREATE TABLE features.f (id int);');
  dir = mkdtempSync(join(tmpdir(), 'dg-rcdeadline-'));
  hole = await startBlackHole();
});
afterAll(async () => {
  await hole?.close();
  rmSync(dir, { recursive: true, force: true });
  await fx.cleanup();
});

test('a run against a server that never answers fails at the deadline; the next one, once it answers, converges', async () => {
  // GIVEN the spec's PostgreSQL url points at a relay that accepts and never answers
  const real = new URL(testPgUrl());
  const relayed = new URL(real);
  relayed.port = String(hole.port);
  relayed.pathname = `/${db}`;
  writeFileSync(
    join(dir, 'datagrant.yaml'),
    `version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run}, timeouts: { connect: 1s, request: 5s } }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
principals:
  ${fx.name('ada')}: { type: service, grants: [{ dataset: features, access: read }] }
`,
  );
  const store = new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()));
  const errors: string[] = [];
  const quiet = () => undefined;
  const logger: ReconcileLogger = { debug: quiet, info: quiet, warn: quiet, error: (obj) => void errors.push(JSON.stringify(obj)) };
  const reconciler = new Reconciler({
    specFile: join(dir, 'datagrant.yaml'),
    env: { WH_URL: relayed.toString() },
    store,
    merge: async (spec) => ({ spec, notices: [] }),
    makeBackends: (backends, installation) => makeBackends({ backends }, { installation }),
    logger,
  });
  try {
    // WHEN a run goes out
    const started = performance.now();
    await reconciler.runOnce({ full: true });
    // THEN it ends, failed, with the reason logged
    expect((performance.now() - started) / 1000).toBeLessThan(40);
    expect(reconciler.metrics).toMatchObject({ runs: 1, failures: 1 });
    expect(errors.join('\n')).toMatch(/no answer from postgres:\/\/[^ ]*127\.0\.0\.1:\d+\/[^ ]* within 1 s \(connect timeout\)/);

    // WHEN the server answers again
    hole.forwardTo(Number(real.port || 5432));
    await reconciler.runOnce({ full: true });
    // THEN the next run converges: the role exists, with its grant, and nothing new failed
    expect(reconciler.metrics).toMatchObject({ runs: 2, failures: 1 });
    const role = await adminQuery(db, `SELECT has_table_privilege($1, 'features.f', 'SELECT') AS can FROM pg_roles WHERE rolname = $1`, [fx.name('ada')]);
    expect(role.rows).toEqual([{ can: true }]);
    expect(errors).toHaveLength(1);
  } finally {
    await reconciler.stop();
    await store.close();
  }
});
