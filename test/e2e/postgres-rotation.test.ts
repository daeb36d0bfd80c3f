// A PostgreSQL role holds one password: after a rotation the old one stops at once, so the store
// must not keep it, nor `credentials list` show it as retiring for the rotation grace period, and
// the next plan has nothing to clean up.
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import type { Workspace } from '../support/cli.js';
import { adminQuery, connectAs, expectLoginRefused, pgFixture, queryAs, urlFor } from '../support/pg.js';
import { apply, expectNoChanges, initWorkspace } from './aws-support.js';

const fx = pgFixture('pgrotate');
const ada = fx.name('ada');
let db: string;
let ws: Workspace | undefined;

beforeAll(async () => {
  db = await fx.database('wh');
  await adminQuery(
    db,
    `REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC; CREATE SCHEMA features; CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1);`,
  );
});
afterAll(async () => fx.cleanup());
afterEach(() => ws?.cleanup());

interface Listed {
  address: string;
  credentialId: string;
  state: string;
  retireAt?: string;
}

async function password(w: Workspace, who = ada): Promise<{ name: string; password: string }> {
  const r = await w.run('credentials', 'export', who, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as { username: string; password: string };
  return { name: s.username, password: s.password };
}

test('after a rotation the superseded password is gone from the store and the list; the old one is refused, the new one works', async () => {
  // GIVEN an applied spec with a 24 h rotation grace (which AWS keys get)
  ws = await initWorkspace(`version: 1
settings: { rotationGrace: 24h }
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run} }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
principals:
  ${ada}: { type: service, grants: [{ dataset: features, access: read }] }
`);
  ws.env.WH_URL = urlFor(db);
  await apply(ws);
  const old = await password(ws);
  const before = JSON.parse((await ws.run('credentials', 'list', '--json')).stdout) as Listed[];
  expect(before).toHaveLength(1);

  // WHEN the password is rotated
  const r = await ws.run('credentials', 'rotate', ada);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(r.stdout).toContain('the old one stops working at once');

  // THEN the store holds only the new password: nothing listed as retiring
  const after = JSON.parse((await ws.run('credentials', 'list', '--json')).stdout) as Listed[];
  expect(after.map((c) => ({ address: c.address, state: c.state, retireAt: c.retireAt }))).toEqual([
    { address: `wh:password/${ada}`, state: 'current', retireAt: undefined },
  ]);
  expect(after[0]!.credentialId).not.toBe(before[0]!.credentialId);
  const table = (await ws.run('credentials', 'list')).stdout;
  expect(table).not.toContain('retiring');
  // and the backend agrees: the old password is refused, the new one reads, the next plan is empty
  await expectLoginRefused(db, old);
  expect(await queryAs(db, await password(ws), 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);
  await expectNoChanges(ws);
});

test('--revoke-old on a password clears it first and ends the sessions opened with it; the new one works', async () => {
  const bea = fx.name('bea');
  ws = await initWorkspace(`version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run}c }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
principals:
  ${bea}: { type: service, grants: [{ dataset: features, access: read }] }
`);
  ws.env.WH_URL = urlFor(db);
  await apply(ws);
  const old = await password(ws, bea);
  // GIVEN a session opened with the leaked password, still open
  const open = await connectAs(db, old);
  try {
    expect((await open.query('SELECT id FROM features.f')).rows).toEqual([{ id: 1 }]);
    const r = await ws.run('credentials', 'rotate', bea, '--revoke-old');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `wh:password/${bea}: the old password is cleared and every open session of ${bea}'s login is ended, then a new password is set.`,
    );
    expect(r.stdout).toContain('(the password is cleared, and every open session of its login is ended)');
    // THEN that session is gone, the old password is refused, and the new one reads
    await expect(open.query('SELECT id FROM features.f')).rejects.toThrow(/terminat|Connection terminated|not queryable/);
  } finally {
    await open.end().catch(() => undefined);
  }
  await expectLoginRefused(db, old);
  expect(await queryAs(db, await password(ws, bea), 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);
  await expectNoChanges(ws);
  const audit = JSON.parse((await ws.run('audit', 'log', '--json')).stdout) as { event: string; address: string | null }[];
  expect(audit.some((e) => e.event === 'credential.erase' && e.address === `wh:password/${bea}`)).toBe(true);
});

test('a password set by hand is forgotten and replaced by the next apply, which does not fail on it', async () => {
  // GIVEN an applied principal with a stored password (another name and scope: the first test's installation keeps ada)
  const bo = fx.name('bo');
  ws = await initWorkspace(`version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run}b }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
principals:
  ${bo}: { type: service, grants: [{ dataset: features, access: read }] }
`);
  ws.env.WH_URL = urlFor(db);
  await apply(ws);
  const stored = await password(ws, bo);
  // WHEN someone sets another password by hand
  await adminQuery(db, `ALTER ROLE "${bo}" PASSWORD 'set-by-hand-${fx.run}'`);
  // THEN the plan forgets the stored one and issues a new one, and the apply succeeds
  const plan = await ws.run('plan');
  expect(plan.stdout).toContain('recorded credential no longer exists in the backend: forget it');
  await apply(ws);
  const fresh = await password(ws, bo);
  expect(fresh.password).not.toBe(stored.password);
  expect(await queryAs(db, fresh, 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);
  await expectLoginRefused(db, { name: bo, password: `set-by-hand-${fx.run}` });
  await expectNoChanges(ws);
});
