// PostgreSQL sessions (issue 12) against a real server: a temporary principal's session is a login
// role holding exactly the principal's access, refused once VALID UNTIL passes, and dropped by
// apply when it ends or its principal loses it — its open sessions ended, what it made kept.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { IssuedBackendSession, KnownCredential } from '../../src/backends/backend.js';
import { PostgresBackend } from '../../src/backends/postgres/driver.js';
import { compile } from '../../src/compile/index.js';
import { BackendError } from '../../src/core/errors.js';
import type { Plan } from '../../src/core/types.js';
import type { SessionFact } from '../../src/model/session.js';
import { diff } from '../../src/plan/diff.js';
import { specSchema, type Spec, type SpecInput } from '../../src/spec/schema.js';
import { executeInOrder } from '../contract/backend-contract.js';
import { adminQuery, connectAs, expectLoginRefused, expectPermissionDenied, expectPgError, pgFixture, queryAs, testPgUrl, urlFor } from '../support/pg.js';

testPgUrl();
const fx = pgFixture('pgsess');
const B = 'wh';
const tess = fx.name('tess');
const wes = fx.name('wes');
const kim = fx.name('kim');
const handmade = fx.role(fx.name('handmade'));
let db = '';
/** Another database, which PUBLIC may connect to (PostgreSQL's default). */
let elsewhere = '';
let backend: PostgresBackend;

/** Every SQL statement (text and bind values) any pg client sent during this file. */
const sent: string[] = [];
const originalQuery = pg.Client.prototype.query;

beforeAll(async () => {
  (pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown }).query = function (this: pg.Client, ...args: unknown[]) {
    const [first, values] = args as [unknown, unknown];
    const text = typeof first === 'string' ? first : ((first as { text?: string } | null)?.text ?? '');
    sent.push(`${text} ${JSON.stringify(values ?? (first as { values?: unknown } | null)?.values ?? null)}`);
    return (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
  };
  db = await fx.database('wh');
  await adminQuery('postgres', `REVOKE CONNECT, TEMPORARY ON DATABASE "${db}" FROM PUBLIC; CREATE ROLE "${handmade}" NOLOGIN`);
  // `scratch` lets anyone create tables, as the public schema did before PostgreSQL 15: what a
  // session makes there is owned by its login role.
  await adminQuery(
    db,
    `CREATE SCHEMA features; CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1), (2);
     CREATE SCHEMA other; CREATE TABLE other.secret (x int);
     CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO PUBLIC;`,
  );
  elsewhere = await fx.database('elsewhere');
  await adminQuery(elsewhere, 'CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO PUBLIC');
  backend = new PostgresBackend({ name: B, url: urlFor(db), scope: fx.run });
});
afterAll(async () => {
  pg.Client.prototype.query = originalQuery;
  await backend?.close();
  await fx.cleanup();
});

function makeSpec(principals: SpecInput['principals']): Spec {
  return specSchema.parse({
    version: 1,
    backends: { [B]: { type: 'postgres', url: testPgUrl() } },
    datasets: { features: { backend: B, database: db, schema: 'features' }, other: { backend: B, database: db, schema: 'other' } },
    principals,
  });
}
const everyone = () =>
  makeSpec({
    [tess]: { type: 'person', credentials: 'temporary', grants: [{ dataset: 'features', access: 'read' }] },
    [wes]: { type: 'service', credentials: 'temporary', grants: [{ dataset: 'features', access: 'write' }] },
    [kim]: { type: 'person', grants: [{ dataset: 'other', access: 'read' }] },
  });
const withoutTess = () =>
  makeSpec({
    [wes]: { type: 'service', credentials: 'temporary', grants: [{ dataset: 'features', access: 'write' }] },
    [kim]: { type: 'person', grants: [{ dataset: 'other', access: 'read' }] },
  });

/** What the store's session log would hold for these sessions. */
const facts = (...issued: [principal: string, IssuedBackendSession][]): SessionFact[] =>
  issued.map(([principal, s]) => ({ backend: B, principal, target: s.target, lastIssuedAt: new Date().toISOString(), expiresAt: s.expiresAt }));

/** The store's credentials (kim's password), and their secrets. */
const known = new Map<string, KnownCredential>();
const issued = new Map<string, Record<string, string>>();

async function plan(spec: Spec, sessions: SessionFact[]): Promise<Plan> {
  const now = new Date();
  const { desired } = compile(spec, now, { sessions });
  return diff(desired, { [B]: await backend.read({ credentials: [...known.values()] }) }, { now, specHash: 'test' });
}
const apply = (p: Plan) =>
  executeInOrder(backend, p.changes, {
    onResult: (c, r) => {
      if (r.credential) known.set(c.address, { address: c.address, ...r.credential, state: 'current' });
      if (r.secret) issued.set(c.address, r.secret);
    },
  });
const summary = (p: Plan) => p.changes.map((c) => `${c.action} ${c.address}`).sort();
/** Every session password issued in this file, to scan the SQL for. */
const passwords: string[] = [];
const userOf = (s: IssuedBackendSession) => {
  passwords.push(s.secret.password!);
  return { name: s.secret.user!, password: s.secret.password! };
};
const roleExists = async (role: string) => (await adminQuery('postgres', 'SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount === 1;

describe('PostgreSQL sessions', () => {
  test("a session holds exactly the principal's access, until its end; the principal's own role cannot log in", async () => {
    // GIVEN the applied spec: tess reads features, with sessions (no password of her own)
    await apply(await plan(everyone(), []));
    expect(await adminQuery('postgres', 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [tess]).then((r) => r.rows)).toEqual([{ rolcanlogin: false }]);

    // WHEN a 10-minute session is issued for her
    const before = Date.now();
    const s = await backend.issueSession({ principal: tess, target: tess, durationSeconds: 600 });

    // THEN it names a login of its own, on this server and database, ending 10 minutes from now
    expect(s.target).toMatch(new RegExp(`^${tess}~[a-z2-7]{8}$`));
    expect(s.secret).toEqual({ user: s.target, password: expect.any(String), host: expect.any(String), port: expect.any(String), database: db });
    expect(Date.parse(s.expiresAt) - before).toBeGreaterThan(595_000);
    expect(Date.parse(s.expiresAt) - before).toBeLessThan(605_000);
    expect(s.readyMs).toBeGreaterThanOrEqual(0);
    // AND it reads the dataset, and nothing more
    expect(await queryAs(db, userOf(s), 'SELECT id FROM features.f ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
    await expectPermissionDenied(db, userOf(s), 'INSERT INTO features.f VALUES (3)');
    await expectPermissionDenied(db, userOf(s), 'SELECT * FROM other.secret');
    // AND the server's VALID UNTIL is the instant returned
    const until = await adminQuery('postgres', `SELECT (extract(epoch FROM rolvaliduntil) * 1000)::float8 AS ms FROM pg_roles WHERE rolname = $1`, [s.target]);
    expect(new Date(Math.round((until.rows[0] as { ms: number }).ms)).toISOString()).toBe(s.expiresAt);
    // AND with the session logged, the next plan leaves it alone: nothing to change
    expect(summary(await plan(everyone(), facts([tess, s])))).toEqual([]);
  });

  test('a session stops at VALID UNTIL, and the next apply drops its login', async () => {
    // GIVEN a 2-second session that works right away
    const s = await backend.issueSession({ principal: tess, target: tess, durationSeconds: 2 });
    expect(await queryAs(db, userOf(s), 'SELECT count(*)::int AS n FROM features.f')).toEqual([{ n: 2 }]);

    // WHEN its end has passed
    await new Promise((r) => setTimeout(r, Date.parse(s.expiresAt) - Date.now() + 300));

    // THEN the server refuses the login
    await expectLoginRefused(db, userOf(s));
    // AND apply, with the session still in the log, drops the login
    const p = await plan(everyone(), facts([tess, s]));
    expect(summary(p)).toContain(`delete wh:session-login/${tess}/${s.target.split('~')[1]}`);
    await apply(p);
    expect(await roleExists(s.target)).toBe(false);
  });

  test('revoked (principal removed): the login is gone and its open session ended; the next plan is empty', async () => {
    // GIVEN a session of tess with a connection held open
    const s = await backend.issueSession({ principal: tess, target: tess, durationSeconds: 600 });
    const held = await connectAs(db, userOf(s));
    expect((await held.query('SELECT count(*)::int AS n FROM features.f')).rows).toEqual([{ n: 2 }]);
    try {
      // WHEN tess leaves the spec, and apply runs with her session in the log
      const p = await plan(withoutTess(), facts([tess, s]));
      expect(summary(p)).toContain(`delete wh:session-login/${tess}/${s.target.split('~')[1]}`);
      await apply(p);

      // THEN the open connection was ended, the login is gone, and so is her role
      await expectPgError(() => held.query('SELECT 1'), /terminat|Connection terminated|not queryable/);
      expect(await roleExists(s.target)).toBe(false);
      expect(await roleExists(tess)).toBe(false);
      await expectLoginRefused(db, userOf(s));
      expect(summary(await plan(withoutTess(), facts([tess, s])))).toEqual([]);
    } finally {
      await held.end().catch(() => undefined);
    }
  });

  test("what a session made does not block dropping its login: it becomes the principal's", async () => {
    // GIVEN a session of wes that created tables, and granted on them, in two databases
    const s = await backend.issueSession({ principal: wes, target: wes, durationSeconds: 600 });
    for (const where of [db, elsewhere]) {
      await queryAs(where, userOf(s), `CREATE TABLE scratch.made (v text); INSERT INTO scratch.made VALUES ('kept'); GRANT SELECT ON scratch.made TO PUBLIC`);
    }

    // WHEN apply runs without that session in the log (ended, or never logged)
    const p = await plan(withoutTess(), []);
    expect(summary(p)).toEqual([`delete wh:session-login/${wes}/${s.target.split('~')[1]}`]);
    await apply(p);

    // THEN the login is gone, and the tables (with their data) belong to wes's role
    expect(await roleExists(s.target)).toBe(false);
    for (const where of [db, elsewhere]) {
      const owner = await adminQuery(where, `SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'scratch.made'::regclass`);
      expect(owner.rows).toEqual([{ owner: wes }]);
      expect((await adminQuery(where, 'SELECT v FROM scratch.made')).rows).toEqual([{ v: 'kept' }]);
    }
  });

  test('a session login given more by hand (another role) is dropped: only the broker makes one', async () => {
    // GIVEN a logged session of wes, then granted kim's role by hand
    const s = await backend.issueSession({ principal: wes, target: wes, durationSeconds: 600 });
    await adminQuery('postgres', `GRANT "${kim}" TO "${s.target}"`);
    expect(await queryAs(db, userOf(s), 'SELECT count(*)::int AS n FROM other.secret')).toEqual([{ n: 0 }]);

    // WHEN planned with the session in the log
    const p = await plan(withoutTess(), facts([wes, s]));

    // THEN the login is replaced — dropped, as nothing but the broker can make one — and gone after apply
    const address = `wh:session-login/${wes}/${s.target.split('~')[1]}`;
    expect(p.changes.filter((c) => c.kind === 'session-login').map((c) => [c.address, c.action, c.reason])).toEqual([
      [address, 'replace', 'spec changed: memberOf'],
    ]);
    await apply(p);
    expect(await roleExists(s.target)).toBe(false);
    expect(await roleExists(kim)).toBe(true);
  });

  test('switching to sessions ends the password; switching back to a key drops the session logins', async () => {
    // GIVEN kim with the password the first apply issued (credentials: key)
    const kimKey = { name: kim, password: issued.get(`wh:password/${kim}`)!.password! };
    expect(await queryAs(db, kimKey, 'SELECT count(*)::int AS n FROM other.secret')).toEqual([{ n: 0 }]);

    // WHEN kim switches to sessions
    const temporary = makeSpec({
      [wes]: { type: 'service', credentials: 'temporary', grants: [{ dataset: 'features', access: 'write' }] },
      [kim]: { type: 'person', credentials: 'temporary', grants: [{ dataset: 'other', access: 'read' }] },
    });
    const p = await plan(temporary, []);
    expect(summary(p)).toEqual([`delete wh:password/${kim}`, `update wh:role/${kim}`]);
    await apply(p);
    known.delete(`wh:password/${kim}`);

    // THEN the password is refused, and a session reads what kim may read
    await expectLoginRefused(db, kimKey);
    const s = await backend.issueSession({ principal: kim, target: kim, durationSeconds: 600 });
    expect(await queryAs(db, userOf(s), 'SELECT count(*)::int AS n FROM other.secret')).toEqual([{ n: 0 }]);

    // AND WHEN kim goes back to a key, the session login is dropped though its session has not ended
    const back = await plan(withoutTess(), facts([kim, s]));
    expect(summary(back)).toEqual([`create wh:password/${kim}`, `delete wh:session-login/${kim}/${s.target.split('~')[1]}`, `update wh:role/${kim}`].sort());
    await apply(back);
    expect(await roleExists(s.target)).toBe(false);
    await expectLoginRefused(db, userOf(s));
  });

  test('a session is refused for a role datagrant does not manage, or one that is itself a session login', async () => {
    const refused = async (target: string) => {
      const e = await backend.issueSession({ principal: target, target, durationSeconds: 60 }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(BackendError);
      return (e as BackendError).message;
    };
    expect(await refused(handmade)).toMatch(/not managed by datagrant/);
    const s = await backend.issueSession({ principal: wes, target: wes, durationSeconds: 60 });
    expect(await refused(s.target)).toMatch(/not managed by datagrant|session login/);
    expect(await refused(fx.name('nobody'))).toMatch(/does not exist yet: apply the spec/);
    for (const bad of [0, -5, 1.5, Number.NaN]) {
      await expect(backend.issueSession({ principal: wes, target: wes, durationSeconds: bad })).rejects.toThrow(/whole number of seconds above 0/);
    }
  });

  test('an admin with only CREATEROLE issues sessions, and drops one that touched nothing', async () => {
    // GIVEN datagrant connected as a CREATEROLE admin (not a superuser), on the same boundary
    const admin = { name: fx.role(fx.name('cr_admin')), password: `pw-${fx.run}` };
    await adminQuery(
      'postgres',
      `CREATE ROLE "${admin.name}" LOGIN CREATEROLE PASSWORD '${admin.password}'; GRANT CONNECT ON DATABASE "${db}" TO "${admin.name}"`,
    );
    const limited = new PostgresBackend({ name: B, url: urlFor(db, admin), scope: fx.run });
    try {
      // WHEN it issues a session of wes, which is used, then dropped as unlogged
      const s = await limited.issueSession({ principal: wes, target: wes, durationSeconds: 600 });
      expect(await queryAs(db, userOf(s), 'SELECT count(*)::int AS n FROM features.f')).toEqual([{ n: 2 }]);
      const address = `wh:session-login/${wes}/${s.target.split('~')[1]}`;
      const drop = (await plan(withoutTess(), [])).changes.filter((c) => c.address === address);
      expect(drop.map((c) => c.action)).toEqual(['delete']);
      await executeInOrder(limited, drop);

      // THEN the login is gone
      expect(await roleExists(s.target)).toBe(false);
    } finally {
      await limited.close();
    }
  });

  test('no session password was ever sent in SQL: only its SCRAM verifier', () => {
    expect(passwords.length).toBeGreaterThan(0);
    expect(sent.some((q) => q.includes('SCRAM-SHA-256$'))).toBe(true);
    for (const pw of passwords) expect(sent.filter((q) => q.includes(pw))).toEqual([]);
  });
});
