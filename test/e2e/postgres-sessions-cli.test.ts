// PostgreSQL sessions through the CLI, as an operator uses them: apply a spec with a temporary
// principal, `credentials export` issues a login that holds exactly the principal's access, an
// apply keeps it while it is due, and removing the principal ends it (its open connection too).
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import type { Workspace } from '../support/cli.js';
import { adminQuery, connectAs, expectLoginRefused, expectPermissionDenied, pgFixture, queryAs, urlFor } from '../support/pg.js';
import { apply, expectNoChanges, initWorkspace } from './aws-support.js';

const fx = pgFixture('pgsesscli');
const tess = fx.name('tess');
const kim = fx.name('kim');
let db: string;
let ws: Workspace | undefined;

beforeAll(async () => {
  db = await fx.database('wh');
  await adminQuery(
    db,
    `REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC; CREATE SCHEMA features; CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1);
     CREATE SCHEMA other; CREATE TABLE other.secret (x int);`,
  );
});
afterAll(async () => fx.cleanup());
afterEach(() => ws?.cleanup());

const spec = (withTess: boolean) => `version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run} }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
  other: { backend: wh, database: ${db}, schema: other }
principals:
${withTess ? `  ${tess}: { type: person, credentials: temporary, maxSession: 30m, grants: [{ dataset: features, access: read }] }\n` : ''}  ${kim}: { type: person, grants: [{ dataset: other, access: read }] }
`;

interface Login {
  user: string;
  password: string;
  validUntil: string;
}

async function session(w: Workspace): Promise<Login> {
  const r = await w.run('credentials', 'export', tess, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as Login;
  // Nothing secret on stderr, ever.
  expect(r.stderr).not.toContain(s.password);
  return s;
}

test('export issues a login with exactly the principal access, kept by apply while due, ended when the principal goes', async () => {
  // GIVEN an applied spec with a temporary principal
  ws = await initWorkspace(spec(true));
  ws.env.WH_URL = urlFor(db);
  await apply(ws);
  // it has no stored password: nothing to list
  expect((await ws.run('credentials', 'list')).stdout).not.toContain(tess);

  // WHEN a session is exported
  const started = Date.now();
  const s = await session(ws);
  const login = { name: s.user, password: s.password };

  // THEN it is a login of its own, valid for maxSession at most, reading the dataset and nothing else
  expect(s.user).not.toBe(tess);
  const ends = Date.parse(s.validUntil) - started;
  expect(ends).toBeGreaterThan(25 * 60_000);
  expect(ends).toBeLessThanOrEqual(30 * 60_000 + 5_000);
  expect(await queryAs(db, login, 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);
  await expectPermissionDenied(db, login, 'INSERT INTO features.f VALUES (2)');
  await expectPermissionDenied(db, login, 'SELECT x FROM other.secret');
  // and an apply keeps it (the session log says it is due): nothing to change
  await expectNoChanges(ws);
  await apply(ws);
  expect(await queryAs(db, login, 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);

  // WHEN the principal is removed from the spec, with a connection of the session open
  const open = await connectAs(db, login);
  ws.writeSpec(spec(false));
  await apply(ws);

  // THEN the open connection was ended and the login refused; the next plan is empty
  await expect(open.query('SELECT 1')).rejects.toThrow();
  await open.end().catch(() => undefined);
  await expectLoginRefused(db, login);
  await expectNoChanges(ws);
  const audit = (await ws.run('audit', 'log')).stdout;
  expect(audit).toContain('session.issue');
  expect(audit).not.toContain(s.password);
});
