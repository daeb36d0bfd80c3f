// A change that did nothing is not a success. Connected as a non-superuser admin (CREATEROLE) that
// holds CONNECT on the database without the grant option — the common `GRANT ALL ON DATABASE x TO
// admin` — PostgreSQL answers `GRANT CONNECT … TO role` with only a warning; and a REVOKE removes
// nothing another role granted. Apply must fail, naming the privilege and the statement that fixes
// it, instead of reporting success while the next plan shows the same change again.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import type { Workspace } from '../support/cli.js';
import { adminQuery, connectAs, pgFixture, queryAs, urlFor } from '../support/pg.js';
import { apply, expectNoChanges, initWorkspace } from './aws-support.js';

const fx = pgFixture('grantopt');
const admin = { name: fx.role(fx.name('admin')), password: `admin-pw-${fx.run}` };
const other = { name: fx.role(fx.name('other')), password: `other-pw-${fx.run}` };
let db: string;
let ws: Workspace | undefined;

beforeAll(async () => {
  db = await fx.database('wh');
  await adminQuery(
    'postgres',
    `CREATE ROLE "${admin.name}" LOGIN CREATEROLE PASSWORD '${admin.password}'; CREATE ROLE "${other.name}" LOGIN PASSWORD '${other.password}'`,
  );
  await adminQuery('postgres', `REVOKE ALL ON DATABASE "${db}" FROM PUBLIC; GRANT ALL ON DATABASE "${db}" TO "${admin.name}", "${other.name}"`);
  await adminQuery(db, `CREATE SCHEMA features AUTHORIZATION "${admin.name}"`);
  const c = await connectAs(db, admin);
  await c.query(`CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1);
    GRANT USAGE ON SCHEMA features TO "${other.name}"; GRANT INSERT ON features.f TO "${other.name}" WITH GRANT OPTION`);
  await c.end();
});
afterAll(async () => fx.cleanup());
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

/** One test's spec: its own scope and role names, so the tests share the server but nothing else. */
function spec(tag: string) {
  const readers = fx.name(`readers_${tag}`);
  const ada = fx.name(`ada_${tag}`);
  const text = `version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run}_${tag} }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
groups:
  ${readers}: { grants: [{ dataset: features, access: read }] }
principals:
  ${ada}: { type: service, groups: [${readers}] }
`;
  return { text, readers, ada };
}

describe('an admin role without the grant option', () => {
  test('apply fails on every run, naming CONNECT and the GRANT … WITH GRANT OPTION that fixes it; after the fix it converges', async () => {
    // GIVEN datagrant connects as the admin, which holds CONNECT on the database without the grant option
    const { text, readers, ada } = spec('connect');
    ws = await initWorkspace(text);
    ws.env.WH_URL = urlFor(db, admin);
    const fix = `GRANT CONNECT ON DATABASE "${db}" TO "${admin.name}" WITH GRANT OPTION;`;

    for (let run = 1; run <= 2; run++) {
      // WHEN applying (twice: a failure must not turn into a success on the next run)
      const r = await ws.run('apply', '--auto-approve');
      const out = r.stdout + r.stderr;
      // THEN it fails, names what was not granted and how to fix it
      expect(r.code, out).toBe(1);
      expect(out).toContain(`CONNECT on database ${db} was not granted to ${readers}`);
      expect(out).toContain(`As the owner or a superuser, run: ${fix}`);
      expect(out).not.toMatch(/Apply complete/);
    }
    // and the plan still shows the CONNECT grants it could not make
    const plan = await ws.run('plan', '--detailed-exitcode');
    expect(plan.code).toBe(2);
    expect(plan.stdout).toContain(`+ wh:connect/${readers}/${db}`);
    // and the role's CONNECT is not there
    expect((await adminQuery(db, `SELECT has_database_privilege($1, $2, 'CONNECT') AS can`, [readers, db])).rows).toEqual([{ can: false }]);

    // WHEN the owner runs the statement the message gave
    await adminQuery('postgres', fix);
    // THEN apply converges, the next plan is empty, and the issued password reads the table
    await apply(ws);
    await expectNoChanges(ws);
    const cred = JSON.parse((await ws.run('credentials', 'export', ada, '--format', 'json')).stdout) as { username: string; password: string };
    expect(await queryAs(db, { name: cred.username, password: cred.password }, 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);
  });

  test('a privilege another role granted by hand cannot be revoked by the admin: apply fails naming the grantor and the REVOKE', async () => {
    // GIVEN a converged state, then another role grants INSERT to a managed role by hand
    const { text, ada } = spec('revoke');
    ws = await initWorkspace(text);
    ws.env.WH_URL = urlFor(db, admin);
    await apply(ws);
    const c = await connectAs(db, other);
    await c.query(`GRANT INSERT ON features.f TO "${ada}"`);
    await c.end();
    // WHEN apply tries to revert the drift
    const r = await ws.run('apply', '--auto-approve');
    const out = r.stdout + r.stderr;
    // THEN it fails rather than report a revert that did not happen, and says who can revoke it
    expect(r.code, out).toBe(1);
    expect(out).toContain(`INSERT on table features.f is still held by ${ada}, granted by ${other.name}`);
    expect(out).toContain(`As ${other.name} or a superuser, run: REVOKE INSERT ON TABLE "features"."f" FROM "${ada}";`);
    // WHEN that role revokes it, THEN the next plan is empty
    const o = await connectAs(db, other);
    await o.query(`REVOKE INSERT ON features.f FROM "${ada}"`);
    await o.end();
    await expectNoChanges(ws);
  });
});
