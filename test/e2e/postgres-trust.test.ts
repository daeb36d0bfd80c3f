// Issue 9 on a real PostgreSQL: a wrong scope never erases stored passwords, two installations
// sharing a server and scope never take each other's roles, mass deprovisioning needs a second
// yes — each proved by logging in with the issued passwords.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { adminQuery, expectLoginRefused, pgFixture, queryAs, urlFor } from '../support/pg.js';
import type { Workspace } from '../support/cli.js';
import { apply, expectNoChanges, initWorkspace } from './aws-support.js';

const fx = pgFixture('pgtrust');
let db: string;
const spaces: Workspace[] = [];
const people = (n: number) => Array.from({ length: n }, (_, i) => fx.name(`p${i + 1}`));

beforeAll(async () => {
  db = await fx.database('analytics');
  await adminQuery(
    db,
    `REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC; CREATE SCHEMA features; CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1);`,
  );
});
afterAll(async () => fx.cleanup());
afterEach(() => {
  for (const w of spaces.splice(0)) w.cleanup();
});

function spec(names: string[], scope = fx.run): string {
  const readers = `${fx.name('readers')}_${scope.slice(fx.run.length)}`;
  return `version: 1
backends:
  wh: { type: postgres, url: "\${WAREHOUSE_URL}", scope: ${scope} }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
groups:
  ${readers}: { grants: [{ dataset: features, access: read }] }
principals:
${names.length ? names.map((n) => `  ${n}: { type: person, groups: [${readers}] }`).join('\n') : '  {}'}
`;
}

async function ws(text: string): Promise<Workspace> {
  const w = await initWorkspace(text);
  w.env.WAREHOUSE_URL = urlFor(db);
  spaces.push(w);
  return w;
}

async function password(w: Workspace, name: string): Promise<{ name: string; password: string }> {
  const r = await w.run('credentials', 'export', name, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as { username: string; password: string };
  return { name: s.username, password: s.password };
}

const canRead = async (user: { name: string; password: string }) => expect(await queryAs(db, user, 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);

describe('PostgreSQL', () => {
  test('a wrong scope: plan calls it out, apply refuses, and after the fix every password still logs in', async () => {
    const names = people(3);
    const w = await ws(spec(names));
    await apply(w);
    const pws = await Promise.all(names.map((n) => password(w, n)));
    const before = (await w.run('credentials', 'list', '--json')).stdout;
    w.writeSpec(spec(names, `${fx.run}_typo`));
    const plan = await w.run('plan');
    expect(plan.stdout).toMatch(/none of the 3 credentials recorded for backend wh \(postgres:.*scope .*_typo\).*wrong account, endpoint, path, URL or scope/);
    const refused = await w.run('apply', '--auto-approve');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--allow-missing-credentials/);
    expect((await w.run('credentials', 'list', '--json')).stdout).toBe(before);
    w.writeSpec(spec(names));
    await expectNoChanges(w);
    for (const p of pws) await canRead(p);
  });

  test("a second installation on the same server and scope stops, naming the first one's roles", async () => {
    const names = people(2).map((n) => `${n}_i`);
    const scope = `${fx.run}_inst`;
    const a = await ws(spec(names, scope));
    await apply(a);
    const pw = await password(a, names[0]!);
    const b = await ws(spec([fx.name('q1')], scope));
    const r = await b.run('apply', '--auto-approve');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`another datagrant installation[\\s\\S]*wh:role/${names[0]}`));
    await canRead(pw);
    await expectNoChanges(a);
  });

  test('removing most principals needs --allow-mass-destroy; then their logins are refused', async () => {
    const names = people(6).map((n) => `${n}_m`);
    const scope = `${fx.run}_mass`;
    const w = await ws(spec(names, scope));
    await apply(w);
    const pws = await Promise.all(names.map((n) => password(w, n)));
    w.writeSpec(spec(names.slice(0, 1), scope));
    const refused = await w.run('apply', '--auto-approve');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/5 of 6 principals on backend wh would be removed/);
    for (const p of pws) await canRead(p);
    await apply(w, '--allow-mass-destroy');
    await canRead(pws[0]!);
    for (const p of pws.slice(1)) await expectLoginRefused(db, p);
  });

  test('a PostgreSQL backend removed from the spec is torn down (its ${WAREHOUSE_URL} read again); the state keeps no password', async () => {
    const names = people(2).map((n) => `${n}_r`);
    const scope = `${fx.run}_rm`;
    const w = await ws(spec(names, scope));
    await apply(w);
    const pws = await Promise.all(names.map((n) => password(w, n)));
    const adminPassword = new URL(urlFor(db)).password;
    w.writeSpec('version: 1\nbackends: {}\ndatasets: {}\ngroups: {}\nprincipals: {}\n');
    const plan = await w.run('plan');
    expect(plan.stdout).toMatch(/backend wh is no longer in the spec/);
    expect(plan.stdout).toContain(`- wh:role/${names[0]}`);
    await apply(w);
    for (const p of pws) await expectLoginRefused(db, p);
    await expectNoChanges(w);
    const { existsSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    for (const f of ['state.db', 'state.db-wal']) {
      const file = join(w.dir, '.datagrant', f);
      if (existsSync(file)) expect(readFileSync(file).includes(Buffer.from(adminPassword)), f).toBe(false);
    }
  });

  test('a removed PostgreSQL backend that cannot be reached: the error names what remains and how to reach it; nothing changes', async () => {
    const names = people(1).map((n) => `${n}_u`);
    const scope = `${fx.run}_un`;
    const w = await ws(spec(names, scope));
    await apply(w);
    const pw = await password(w, names[0]!);
    w.writeSpec('version: 1\nbackends: {}\ndatasets: {}\ngroups: {}\nprincipals: {}\n');
    delete w.env.WAREHOUSE_URL;
    const pgpassword = process.env.PGPASSWORD;
    delete process.env.PGPASSWORD;
    try {
      const r = await w.run('apply', '--auto-approve');
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`backend wh is no longer in the spec, but datagrant still has \\d+ object\\(s\\) and 1 credential\\(s\\) there \\(wh:[^)]*${names[0]}`),
      );
      expect(r.stderr).toMatch(/Set WAREHOUSE_URL as when it was applied/);
      expect(r.stderr).not.toContain(new URL(urlFor(db)).password);
    } finally {
      if (pgpassword !== undefined) process.env.PGPASSWORD = pgpassword;
    }
    await canRead(pw);
    w.env.WAREHOUSE_URL = urlFor(db);
    await apply(w);
    await expectLoginRefused(db, pw);
  });
});
