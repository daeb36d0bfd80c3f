// Every backend call has a deadline: an AWS endpoint or a PostgreSQL server that accepts the
// connection and never answers makes `plan` fail with a message naming the backend, the address
// and the deadline, instead of hanging; a statement blocked on the server is cancelled there.
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { startBlackHole, type BlackHole } from '../support/black-hole.js';
import type { Workspace } from '../support/cli.js';
import { adminQuery, pgFixture, urlFor } from '../support/pg.js';
import { apply, expectNoChanges, initWorkspace } from './aws-support.js';

const fx = pgFixture('deadline');
let db: string;
let hole: BlackHole;
let ws: Workspace | undefined;

beforeAll(async () => {
  db = await fx.database('wh');
  await adminQuery(db, `CREATE SCHEMA features; CREATE TABLE features.f (id int);`);
});
afterAll(async () => fx.cleanup());
afterEach(async () => {
  ws?.cleanup();
  ws = undefined;
  await hole?.close();
});

/** Runs the CLI and measures how long it took. */
async function timed(w: Workspace, ...args: string[]) {
  const started = performance.now();
  const r = await w.run(...args);
  return { ...r, seconds: (performance.now() - started) / 1000 };
}

const PG_SPEC = (timeouts: string) => `version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run}, timeouts: ${timeouts} }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
principals:
  ${fx.name('ada')}: { type: person, grants: [{ dataset: features, access: read }] }
`;

describe('a server that accepts and never answers', () => {
  test('aws: plan exits 1 within the request deadline, naming the backend, the endpoint and the deadline', async () => {
    // GIVEN an endpoint that accepts TCP connections and says nothing, and a 1 s deadline
    hole = await startBlackHole();
    process.env.AWS_ACCESS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE';
    process.env.AWS_SECRET_ACCESS_KEY = 'not-a-real-secret-only-for-this-test';
    process.env.AWS_REGION = 'us-east-1';
    delete process.env.AWS_ENDPOINT_URL;
    ws = await initWorkspace(`version: 1
backends:
  aws: { type: aws, endpoint: "http://127.0.0.1:${hole.port}", timeouts: { connect: 1s, request: 1s } }
datasets: { data: { backend: aws, bucket: ai-model-data } }
principals: { ada: { type: person, grants: [{ dataset: data, access: read }] } }
`);
    // WHEN planning
    const r = await timed(ws, 'plan');
    // THEN it fails, soon, with the reason; a request the server took is not sent again
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^Error: backend aws\b/);
    expect(r.stderr).toContain(`no answer from http://127.0.0.1:${hole.port} within 1 s (request timeout)`);
    expect(r.stderr).toContain('backends.aws.timeouts.request');
    expect(hole.accepted).toBeGreaterThan(0);
    expect(r.seconds).toBeLessThan(20);
  });

  test('postgres: plan exits 1 after the connect deadline (retried: nothing was sent), without the password', async () => {
    hole = await startBlackHole();
    ws = await initWorkspace(PG_SPEC('{ connect: 1s }'));
    ws.env.WH_URL = `postgres://datagrant:pw-${fx.run}@127.0.0.1:${hole.port}/${db}`;
    const r = await timed(ws, 'plan');
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^Error: backend wh\b/);
    expect(r.stderr).toContain(`no answer from postgres://datagrant@127.0.0.1:${hole.port}/${db} within 1 s (connect timeout)`);
    expect(r.stderr).toContain('backends.wh.timeouts.connect');
    expect(r.stdout + r.stderr).not.toContain(`pw-${fx.run}`);
    // a connection that was never made is retried like any network fault, each within the deadline
    expect(hole.accepted).toBeGreaterThan(1);
    expect(r.seconds).toBeLessThan(40);
  });
});

describe('a statement blocked on a live server', () => {
  test('is cancelled at the request deadline and the apply fails; once unblocked, the next apply converges', async () => {
    // GIVEN a session holding the lock datagrant takes to change the database's ACL
    const url = urlFor(db);
    ws = await initWorkspace(PG_SPEC('{ request: 1s }'));
    ws.env.WH_URL = url;
    const blocker = new pg.Client({ connectionString: url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`datagrant:database:${db}`]);
      // WHEN applying
      const r = await timed(ws, 'apply', '--auto-approve');
      // THEN the blocked change fails at the deadline, named, and the apply says so
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.stdout + r.stderr).toMatch(/within 1 s \(request timeout\)/);
      expect(r.seconds).toBeLessThan(30);
      // and nothing waits on the server any more: the blocked statement was cancelled there
      const waiting = await blocker.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = $1`, [db]);
      expect(waiting.rows[0]).toEqual({ n: 0 });
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
    // WHEN the lock is gone, THEN the next run converges
    await apply(ws);
    await expectNoChanges(ws);
  });
});
