// Issue 10, item 5a on a real PostgreSQL: a server that refuses connections beyond a limit
// ("too many connections", SQLSTATE 53300) slows the apply down instead of failing it: fewer
// changes run at once, and each refused one is tried again while others get through.
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { applyCommand } from '../../src/cli/commands/lifecycle.js';
import type { Io } from '../../src/app/io.js';
import type { Workspace } from '../support/cli.js';
import { adminQuery, connectAs, pgFixture, queryAs, urlFor } from '../support/pg.js';
import { expectNoChanges, initWorkspace } from './aws-support.js';

const fx = pgFixture('pgthrottle');
// A superuser is exempt from connection limits: datagrant connects as an owner that is not one.
const owner = { name: fx.name('owner'), password: 'owner-password-for-tests' };
const PRINCIPALS = 24;
const LIMIT = 3;
let db: string;
let ws: Workspace | undefined;

beforeAll(async () => {
  db = await fx.database('analytics');
  await adminQuery('postgres', `CREATE ROLE "${owner.name}" LOGIN CREATEROLE PASSWORD '${owner.password}' CONNECTION LIMIT ${LIMIT}`);
  await adminQuery('postgres', `ALTER DATABASE "${db}" OWNER TO "${owner.name}"`);
  await adminQuery(db, `REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC; GRANT CONNECT ON DATABASE "${db}" TO "${owner.name}"`);
  await queryAs(db, owner, 'CREATE SCHEMA features; CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1)');
});
afterAll(async () => fx.cleanup());
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

function spec(): string {
  const readers = fx.name('readers');
  const writers = fx.name('writers');
  const names = Array.from({ length: PRINCIPALS }, (_, i) => fx.name(`p${i}`));
  return `version: 1
backends:
  wh: { type: postgres, url: "\${WAREHOUSE_URL}", scope: ${fx.run} }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
groups:
  ${readers}: { grants: [{ dataset: features, access: read }] }
  ${writers}: { grants: [{ dataset: features, access: write }] }
principals:
${names.map((n, i) => `  ${n}: { type: person, groups: [${i % 2 ? readers : writers}] }`).join('\n')}
`;
}

/** Passes everything through, counting the "too many connections" refusals on the way. */
function counting(seen: { refused: number }): (inner: Backend) => Backend {
  const count = (e: unknown): never => {
    if ((e as { code?: unknown }).code === '53300') seen.refused++;
    throw e;
  };
  return (inner) => ({
    name: inner.name,
    type: inner.type,
    read: (o) => inner.read(o).catch(count),
    execute: (c) => inner.execute(c).catch(count),
    stats: () => inner.stats(),
    close: () => inner.close(),
  });
}

test('an apply against a server out of connections waits for them and converges', async () => {
  // GIVEN a role allowed three connections, all taken by others for longer than six attempts'
  // backoff lasts, then all but one given back; and an apply that would use eight at once
  ws = await initWorkspace(spec());
  const others = await Promise.all(Array.from({ length: LIMIT }, () => connectAs(db, owner)));
  const giveBack = setTimeout(() => void Promise.all(others.slice(1).map((c) => c.end())), 5000);
  ws.env.WAREHOUSE_URL = urlFor(db, owner);
  const seen = { refused: 0 };
  let out = '';
  const io: Io = { stdout: (s) => (out += s), stderr: (s) => (out += s), env: ws.env, cwd: ws.dir, isTTY: false, now: () => new Date() };
  // WHEN it runs
  let code: number;
  try {
    code = await applyCommand(io, { autoApprove: true, concurrency: 8, backendOptions: { wrap: counting(seen) } });
  } finally {
    clearTimeout(giveBack);
    await Promise.all(others.map((c) => c.end().catch(() => undefined)));
  }
  // THEN the server did refuse connections, and yet every change was applied
  expect(seen.refused).toBeGreaterThan(0);
  expect(code, out).toBe(0);
  expect(out).not.toMatch(/too many connections|fail/i);
  await expectNoChanges(ws);
  // and an issued password reads the dataset
  const name = fx.name('p1');
  const r = await ws.run('credentials', 'export', name, '--format', 'json');
  const s = JSON.parse(r.stdout) as { username: string; password: string };
  expect(await queryAs(db, { name: s.username, password: s.password }, 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);
});
