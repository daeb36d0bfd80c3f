// `datagrant access` as an operator runs it, on a real PostgreSQL: the table, CSV and JSON agree
// with the catalogs; the administrators every server has are accepted through knownAccess; a
// GRANT made by hand shows as access the spec does not grant, breaks the spec's invariant, and
// turns --detailed-exitcode to 2.
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { AccessReport } from '../../src/model/access.js';
import type { Workspace } from '../support/cli.js';
import { adminQuery, pgFixture, urlFor } from '../support/pg.js';
import { apply, initWorkspace } from './aws-support.js';

const fx = pgFixture('acccli');
const n = (label: string) => fx.role(fx.name(label));
const readers = n('readers');
const ana = n('ana');
const wes = n('wes');
const intruder = n('intruder');
let db: string;
let ws: Workspace;

const spec = (extra = '') => `version: 1
backends:
  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run} }
datasets:
  hr: { backend: wh, database: ${db}, schema: hr }
  sales: { backend: wh, database: ${db}, schema: sales }
groups:
  ${readers}: { grants: [{ dataset: hr, access: read }] }
principals:
  ${ana}: { type: person, email: ana@example.com, groups: [${readers}] }
  ${wes}: { type: service, grants: [{ dataset: sales, access: write }] }
${extra}`;

beforeAll(async () => {
  db = await fx.database('wh');
  await adminQuery(db, `CREATE SCHEMA hr; CREATE TABLE hr.salaries (who text); CREATE SCHEMA sales; CREATE TABLE sales.orders (id int);`);
  ws = await initWorkspace(spec());
  ws.env.WH_URL = urlFor(db);
  await apply(ws);
});
afterAll(async () => {
  ws?.cleanup();
  await adminQuery(db, `DROP ROLE IF EXISTS ${intruder}`).catch(() => undefined);
  await fx.cleanup();
});

const report = async (...args: string[]) => {
  const r = await ws.run('access', '--format', 'json', ...args);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as AccessReport;
};

test('the spec and the catalogs agree; the servers administrators are named, and accepted only through knownAccess', async () => {
  const first = await report();
  const mine = first.rows.filter((r) => r.managed).map((r) => `${r.who} ${r.level} ${r.dataset} ${r.status}`);
  expect(mine.sort()).toEqual([`${ana} read hr both`, `${wes} read sales both`, `${wes} write sales both`]);
  // Every unmanaged holder on a fresh server is a superuser or an owner: name them all.
  const admins = [...new Set(first.rows.filter((r) => !r.managed).map((r) => r.who))];
  expect(admins.length).toBeGreaterThan(0);
  for (const r of first.rows.filter((x) => !x.managed)) expect(r.actual.map((p) => p.via).join(' ')).toMatch(/superuser|owner/);
  const differs = await ws.run('access', '--detailed-exitcode');
  expect(differs.code).toBe(2);
  expect(differs.stdout).toContain('only in the backends');

  ws.writeSpec(
    spec(`knownAccess:
  admins:
    backend: wh
    holders: [${admins.map((a) => JSON.stringify(a)).join(', ')}]
    access: admin
    reason: the server's administrators
invariants:
  hr-stays-with-readers:
    datasets: [hr]
    onlyMembersOf: [${readers}]
`),
  );
  const clean = await ws.run('access', '--detailed-exitcode');
  expect(clean.code, clean.stdout + clean.stderr).toBe(0);
  expect(clean.stdout).toContain('known: admins');
});

test('a GRANT made by hand is access the spec does not grant: shown in every format, exit 2', async () => {
  await adminQuery(db, `CREATE ROLE ${intruder} LOGIN; GRANT USAGE ON SCHEMA hr TO ${intruder}; GRANT SELECT ON hr.salaries TO ${intruder}`);
  const table = await ws.run('access', '--dataset', 'hr', '--detailed-exitcode');
  expect(table.code).toBe(2);
  expect(table.stdout).toMatch(new RegExp(`! read\\s+${intruder} \\(pg-role, not datagrant's\\)\\s+actual only`));
  // The spec's invariant holds for the spec (plan passes) but not for the backend: named.
  expect(table.stdout).toContain('Invariants broken by the access the backends hold:');
  expect(table.stdout).toMatch(new RegExp(`invariant hr-stays-with-readers: .*${intruder}`));
  expect((await ws.run('plan')).code).toBe(0);
  const csv = await ws.run('access', '--dataset', 'hr', '--format', 'csv');
  expect(csv.stdout.split('\r\n')[0]).toBe('dataset,backend,level,who,principal,holder_kind,holder_id,managed,status,through,expires,last_used,known_access');
  expect(csv.stdout).toContain(`hr,wh,read,${intruder},,pg-role,${intruder},false,actual,`);
  const json = await report('--principal', intruder);
  expect(json.rows.map((r) => [r.dataset, r.level, r.status, r.managed])).toEqual([['hr', 'read', 'actual', false]]);
  expect(json.rows[0]!.actual[0]!.via).toContain('GRANT SELECT');
  // Only the hand-made grant is new: the spec's side is unchanged.
  const sales = await report('--dataset', 'sales');
  expect(sales.rows.some((r) => r.who === intruder)).toBe(false);
});

test('a dataset the backend cannot read makes the report incomplete: said on stderr, and the check exits 1', async () => {
  const text = spec().replace('  sales: { backend: wh', `  gone: { backend: wh, database: ${db}_gone, schema: s }\n  sales: { backend: wh`);
  ws.writeSpec(text);
  try {
    const r = await ws.run('access', '--format', 'csv', '--detailed-exitcode');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Warning: the report is incomplete; these could not be read:\n {2}wh: .*_gone/);
    const table = await ws.run('access');
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('INCOMPLETE: these could not be read this time');
  } finally {
    ws.writeSpec(spec());
  }
});

test('bad input names the value and what is allowed, and reads nothing', async () => {
  const r = await ws.run('access', '--dataset', 'nope');
  expect(r.code).toBe(1);
  expect(r.stderr).toContain('there is no dataset "nope" in datagrant.yaml; datasets: hr, sales');
  const u = await ws.run('access', '--unused', '90x');
  expect(u.code).toBe(1);
  expect(u.stderr).toContain('--unused "90x" is not a duration');
  const p = await ws.run('access', '--principal', 'nobody-at-all');
  expect(p.code).toBe(1);
  expect(p.stderr).toContain('there is no principal "nobody-at-all" in datagrant.yaml, and no backend holds access for a holder of that name or id');
  const f = await ws.run('access', '--format', 'xml');
  expect(f.code).toBe(1);
  expect(f.stderr).toMatch(/xml.*Allowed choices are table, csv, json, html/);
});
