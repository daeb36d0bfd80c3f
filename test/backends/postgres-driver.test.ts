// The postgres driver against a real server: apply compiled changes, read them back, and prove
// with the issued passwords what each role can and cannot do.
import { createHash, createHmac } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend, KnownCredential } from '../../src/backends/backend.js';
import { createPostgresBackend } from '../../src/backends/postgres/driver.js';
import { ident, literal, scramVerifier } from '../../src/backends/postgres/sql.js';
import { compilePostgres } from '../../src/compile/postgres/compile.js';
import { BackendError } from '../../src/core/errors.js';
import type { Change, DesiredState, Plan } from '../../src/core/types.js';
import { diff } from '../../src/plan/diff.js';
import { specSchema, type Spec, type SpecInput } from '../../src/spec/schema.js';
import { adminQuery, connectAs, expectLoginRefused, expectPermissionDenied, expectPgError, pgFixture, queryAs, testPgUrl, urlFor } from '../support/pg.js';

// Fails the whole file at load, not as skipped tests, when there is no server.
testPgUrl();
const fx = pgFixture('dgpg');
const B = 'wh';
const alice = fx.name('alice');
const bob = fx.name('bob');
const carol = fx.name('carol');
const dave = fx.name('dave');
const erin = fx.name('erin');
const readers = fx.name('readers');
const owner = fx.role(fx.name('owner'));
const ownerPassword = 'owner-pw-for-tests';
const handmade = fx.role(fx.name('handmade'));
const foreign = fx.role(fx.name('foreign'));
let main = '';
let second = '';

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
  main = await fx.database('main');
  second = await fx.database('second');
  await adminQuery('postgres', `CREATE ROLE "${owner}" LOGIN PASSWORD '${ownerPassword}'`);
  await adminQuery('postgres', `CREATE ROLE "${handmade}" NOLOGIN`);
  // Marked by another datagrant (another scope): just as invisible.
  await adminQuery('postgres', `CREATE ROLE "${foreign}" NOLOGIN; COMMENT ON ROLE "${foreign}" IS '{"datagrant":"managed","scope":"someone-else"}'`);
  for (const db of [main, second]) {
    await adminQuery('postgres', `REVOKE CONNECT, TEMPORARY ON DATABASE "${db}" FROM PUBLIC`);
    await adminQuery('postgres', `GRANT CONNECT ON DATABASE "${db}" TO "${owner}"`);
  }
  await adminQuery(
    main,
    `
    CREATE SCHEMA features AUTHORIZATION "${owner}";
    CREATE SCHEMA other;
    CREATE TABLE other.secret (x int); INSERT INTO other.secret VALUES (42);
  `,
  );
  const o = await connectAs(main, { name: owner, password: ownerPassword });
  await o.query(`
    CREATE TABLE features.a (id serial PRIMARY KEY, v text); INSERT INTO features.a (v) VALUES ('one');
    CREATE TABLE features.b (v text); INSERT INTO features.b VALUES ('bee');
  `);
  await o.end();
  await adminQuery(second, `CREATE SCHEMA features; CREATE TABLE features.a (v text); INSERT INTO features.a VALUES ('far');`);
  // A hand-made role with its own grant: datagrant must neither see nor touch it.
  await adminQuery(main, `GRANT USAGE ON SCHEMA features TO "${handmade}", "${foreign}"; GRANT SELECT ON features.b TO "${handmade}", "${foreign}"`);
});

afterAll(async () => {
  pg.Client.prototype.query = originalQuery;
  await backend?.close();
  await fx.cleanup();
});

function makeSpec(extra: (s: SpecInput) => void = () => undefined): Spec {
  const input: SpecInput = {
    version: 1,
    backends: { [B]: { type: 'postgres', url: testPgUrl() } },
    datasets: {
      features: { backend: B, database: main, schema: 'features' },
      features_b: { backend: B, database: main, schema: 'features', tables: ['b'] },
      features_a: { backend: B, database: main, schema: 'features', tables: ['a'] },
      far: { backend: B, database: second, schema: 'features' },
    },
    groups: { [readers]: { grants: [{ dataset: 'features', access: 'read' }] } },
    principals: {
      [alice]: { type: 'person', groups: [readers] },
      [bob]: { type: 'service', grants: [{ dataset: 'features', access: 'write' }] },
      [carol]: { type: 'person', grants: [{ dataset: 'features_b', access: 'admin', expires: '2020-06-01' }] },
    },
  };
  extra(input);
  return specSchema.parse(input);
}

let backend: Backend;
/** The credential store, in memory: slot → current credential and its secret. */
const store = new Map<string, { known: KnownCredential; secret: Record<string, string> }>();
/** Every password ever issued in this file, to scan the SQL for. */
const issued: string[] = [];
const known = () => [...store.values()].map((s) => s.known);
const passwordOf = (role: string) => {
  const s = store.get(`${B}:password/${role}`);
  if (!s) throw new Error(`no password stored for ${role}`);
  return { name: role, password: s.secret.password! };
};

async function plan(spec: Spec, now = new Date()): Promise<Plan> {
  const desired: DesiredState = compilePostgres(spec, B, { now });
  const actual = await backend.read({ credentials: known() });
  return diff({ [B]: desired }, { [B]: actual }, { now: new Date(), specHash: 'test' });
}

/** A small local apply: creations after their dependencies, deletions before what they depend on. */
async function apply(p: Plan): Promise<void> {
  const pending = new Map(p.changes.map((c) => [c.address, c]));
  const blocked = (c: Change) => {
    if (c.action === 'delete') return [...pending.values()].some((o) => o !== c && o.action === 'delete' && o.before!.deps.includes(c.address));
    return c.after!.deps.some((d) => pending.has(d) && pending.get(d)!.action !== 'delete');
  };
  while (pending.size) {
    const ready = [...pending.values()].filter((c) => !blocked(c));
    if (ready.length === 0) throw new Error(`dependency cycle among ${[...pending.keys()].join(', ')}`);
    for (const c of ready) {
      const res = await backend.execute(c);
      if (res.secret && res.credential) {
        issued.push(res.secret.password!);
        store.set(c.address, {
          known: { address: c.address, credentialId: res.credential.credentialId, createdAt: res.credential.createdAt, state: 'current' },
          secret: res.secret,
        });
      }
      if (c.action === 'delete' && c.kind === 'password') store.delete(c.address);
      pending.delete(c.address);
    }
  }
}

const summary = (p: Plan) => p.changes.map((c) => `${c.action} ${c.address}`);

describe('postgres driver', () => {
  test('apply, then read back: the plan is empty', async () => {
    // GIVEN a spec with a group, a writer and a login whose grants expired in the past
    // Other test files share the server: each sees only the roles of its own scope.
    backend = createPostgresBackend({ name: B, url: testPgUrl(), scope: fx.run });
    const spec = makeSpec();
    // carol's grant runs until 2020-06-01: compile as of 2020 so that her role exists with VALID UNTIL in the past.
    const first = await plan(spec);
    expect(summary(first).some((s) => s.includes(carol))).toBe(false);
    await apply(first);
    const carolPlan = await plan(spec, new Date('2020-01-01T00:00:00Z'));
    await apply({ ...carolPlan, changes: carolPlan.changes.filter((c) => c.address.includes(carol)) });

    // WHEN read again (with the present clock, carol is no longer desired)
    const again = await plan(spec);
    // THEN only carol's removal remains; after applying it nothing
    expect(summary(again).every((s) => s.startsWith('delete') && s.includes(carol))).toBe(true);
    const carolPw = passwordOf(carol);
    await expectLoginRefused(main, carolPw); // VALID UNTIL in the past: PostgreSQL refuses the login itself
    await apply(again);
    expect(summary(await plan(spec))).toEqual([]);
    const roles = await adminQuery<{ rolname: string }>('postgres', `SELECT rolname FROM pg_roles WHERE rolname = $1`, [carol]);
    expect(roles.rowCount).toBe(0);
  });

  test('the issued password reads the granted schema, nothing else', async () => {
    const a = passwordOf(alice);
    expect(store.get(`${B}:password/${alice}`)!.secret).toMatchObject({ username: alice, database: main, host: new URL(testPgUrl()).hostname });
    expect(await queryAs(main, a, 'SELECT v FROM features.a')).toEqual([{ v: 'one' }]);
    expect(await queryAs(main, a, 'SELECT v FROM features.b')).toEqual([{ v: 'bee' }]);
    await expectPermissionDenied(main, a, `INSERT INTO features.a (v) VALUES ('no')`);
    await expectPermissionDenied(main, a, 'SELECT * FROM other.secret');
    await expectPgError(() => queryAs(second, a, 'SELECT 1'), /permission denied for database/);
  });

  test('write can insert (sequences included) but not truncate', async () => {
    const b = passwordOf(bob);
    await queryAs(main, b, `INSERT INTO features.a (v) VALUES ('from bob')`);
    await queryAs(main, b, `UPDATE features.b SET v = 'bee'`);
    await expectPermissionDenied(main, b, 'TRUNCATE features.b');
  });

  test('a table created later by the schema owner is readable through default privileges', async () => {
    const o = await connectAs(main, { name: owner, password: ownerPassword });
    await o.query(`CREATE TABLE features.later (v text); INSERT INTO features.later VALUES ('new')`);
    await o.end();
    expect(await queryAs(main, passwordOf(alice), 'SELECT v FROM features.later')).toEqual([{ v: 'new' }]);
    expect(summary(await plan(makeSpec()))).toEqual([]);
  });

  test('a hand-run GRANT on an owned role is drift, and apply reverts it', async () => {
    await adminQuery(
      main,
      `GRANT INSERT ON features.b TO "${alice}"; GRANT CREATE ON SCHEMA features TO "${readers}"; GRANT TEMPORARY ON DATABASE "${main}" TO "${bob}"; GRANT USAGE ON SCHEMA other TO "${bob}"; GRANT SELECT (x) ON other.secret TO "${bob}"`,
    );
    await adminQuery('postgres', `ALTER ROLE "${bob}" CREATEDB`);
    await queryAs(main, passwordOf(alice), `INSERT INTO features.b (v) VALUES ('drift')`);
    expect(await queryAs(main, passwordOf(bob), 'SELECT x FROM other.secret')).toEqual([{ x: 42 }]);
    const p = await plan(makeSpec());
    expect(summary(p)).toEqual([
      `update ${B}:connect/${bob}/${main}`,
      `delete ${B}:grant/${alice}/${main}.features/write`,
      `delete ${B}:grant/${bob}/${main}.other/read`,
      `update ${B}:grant/${readers}/${main}.features/read`,
      `update ${B}:role/${bob}`,
    ]);
    await apply(p);
    expect(summary(await plan(makeSpec()))).toEqual([]);
    await expectPermissionDenied(main, passwordOf(alice), `INSERT INTO features.b (v) VALUES ('no')`);
    await expectPermissionDenied(main, passwordOf(bob), 'SELECT x FROM other.secret');
    expect(await queryAs(main, passwordOf(alice), 'SELECT count(*)::int AS n FROM features.b')).toEqual([{ n: 2 }]);
  });

  test('hand-made roles and their grants are invisible and untouched', async () => {
    const actual = await backend.read({ credentials: known() });
    expect(actual.resources.filter((r) => [handmade, foreign, owner].some((n) => r.address.includes(n)))).toEqual([]);
    for (const role of [handmade, foreign]) {
      const acl = await adminQuery<{ ok: boolean }>(main, `SELECT has_table_privilege($1, 'features.b', 'SELECT') AS ok`, [role]);
      expect(acl.rows[0]!.ok).toBe(true);
    }
    // A principal whose name is taken by a hand-made role is refused, not adopted.
    const spec = makeSpec((s) => {
      s.principals![handmade] = { type: 'person', grants: [{ dataset: 'features', access: 'read' }] };
    });
    const p = await plan(spec);
    const create = p.changes.find((c) => c.address === `${B}:role/${handmade}`)!;
    await expect(backend.execute(create)).rejects.toThrow(/not managed by datagrant/);
  });

  test('rotation issues a new password; the old one stops working', async () => {
    const old = passwordOf(bob);
    const p = await plan(makeSpec());
    expect(p.changes).toEqual([]);
    const slot = `${B}:password/${bob}`;
    const desired = compilePostgres(makeSpec(), B, { now: new Date() }).resources.find((r) => r.address === slot)!;
    const actual = (await backend.read({ credentials: known() })).resources.find((r) => r.address === slot)!;
    await apply({
      ...p,
      changes: [{ address: slot, backend: B, kind: 'password', action: 'replace', before: actual, after: desired, drift: false, reason: 'rotation requested' }],
    });
    await expectLoginRefused(main, old);
    expect(await queryAs(main, passwordOf(bob), 'SELECT count(*)::int AS n FROM features.b')).toEqual([{ n: 2 }]);
    expect(summary(await plan(makeSpec()))).toEqual([]);
    // A password set by hand is noticed (the verifier no longer matches) and replaced.
    await adminQuery('postgres', `ALTER ROLE "${bob}" PASSWORD 'set-by-hand'`);
    expect(summary(await plan(makeSpec()))).toEqual([`create ${slot}`]);
    await apply(await plan(makeSpec()));
    await expectLoginRefused(main, { name: bob, password: 'set-by-hand' });
  });

  test('deprovisioning drops the role and terminates its open session', async () => {
    const session = await connectAs(main, passwordOf(alice));
    expect((await session.query('SELECT count(*)::int AS n FROM features.a')).rows[0].n).toBeGreaterThan(0);
    const spec = makeSpec((s) => {
      delete s.principals![alice];
    });
    const p = await plan(spec);
    expect(summary(p)).toEqual([`delete ${B}:membership/${readers}/${alice}`, `delete ${B}:password/${alice}`, `delete ${B}:role/${alice}`]);
    await apply(p);
    await expectPgError(() => session.query('SELECT 1'), /terminat|Connection terminated|not queryable/i);
    await session.end().catch(() => undefined);
    expect((await adminQuery('postgres', 'SELECT 1 FROM pg_roles WHERE rolname = $1', [alice])).rowCount).toBe(0);
    expect(summary(await plan(spec))).toEqual([]);
    // Deleting what is gone succeeds.
    await backend.execute(p.changes.find((c) => c.kind === 'role')!);
  });

  test('listed tables: write on one table (and its sequence) only; VALID UNTIL set and moved', async () => {
    const withErin = (expires: string) =>
      makeSpec((s) => {
        s.principals![erin] = { type: 'service', grants: [{ dataset: 'features_a', access: 'write', expires }] };
      });
    await apply(await plan(withErin('2099-01-01')));
    expect(summary(await plan(withErin('2099-01-01')))).toEqual([]);
    const e = passwordOf(erin);
    await queryAs(main, e, `INSERT INTO features.a (v) VALUES ('from erin')`);
    await expectPermissionDenied(main, e, 'SELECT * FROM features.b');
    await expectPermissionDenied(main, e, 'SELECT * FROM features.later');
    const until = async () =>
      (
        await adminQuery<{ t: string }>('postgres', `SELECT to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS t FROM pg_roles WHERE rolname = $1`, [
          erin,
        ])
      ).rows[0]!.t;
    expect(await until()).toBe('2099-01-01');
    const moved = await plan(withErin('2098-06-30'));
    expect(summary(moved)).toEqual([`update ${B}:role/${erin}`]);
    await apply(moved);
    expect(await until()).toBe('2098-06-30');
    expect(summary(await plan(withErin('2098-06-30')))).toEqual([]);
    await apply(await plan(makeSpec()));
    expect(summary(await plan(makeSpec()))).toEqual([]);
  });

  test('a role that owns objects is not dropped; the error names them', async () => {
    const spec = makeSpec((s) => {
      delete s.principals![alice];
      s.principals![dave] = { type: 'service', grants: [{ dataset: 'far', access: 'read' }] };
    });
    await apply(await plan(spec));
    expect(await queryAs(second, passwordOf(dave), 'SELECT v FROM features.a')).toEqual([{ v: 'far' }]);
    await expectPermissionDenied(second, passwordOf(dave), `INSERT INTO features.a VALUES ('x')`);
    await adminQuery(second, `CREATE TABLE features.dave_owns (x int); ALTER TABLE features.dave_owns OWNER TO "${dave}"`);
    const davePw = passwordOf(dave);
    const removal = await plan(makeSpec((s) => delete s.principals![alice]));
    const drop = removal.changes.find((c) => c.address === `${B}:role/${dave}`)!;
    const pwDelete = removal.changes.find((c) => c.address === `${B}:password/${dave}`)!;
    // The password stays set, to prove that the refused drop still locks the role out.
    await apply({ ...removal, changes: removal.changes.filter((c) => c !== drop && c !== pwDelete) });
    const err = await backend.execute(drop).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toMatch(/owns table features\.dave_owns in database/);
    // Not dropped, but locked out at once.
    await expectLoginRefused(second, davePw);
    await adminQuery(second, 'DROP TABLE features.dave_owns');
    await backend.execute(pwDelete);
    await backend.execute(drop);
    expect(summary(await plan(makeSpec((s) => delete s.principals![alice])))).toEqual([]);
  });

  test('no clear password was ever sent in SQL', () => {
    expect(issued.length).toBeGreaterThan(2);
    expect(sent.some((s) => s.includes('SCRAM-SHA-256$4096:'))).toBe(true);
    for (const pw of issued) expect(sent.filter((s) => s.includes(pw))).toEqual([]);
    expect(urlFor(main)).toContain(main);
  });
});

describe('SQL helpers', () => {
  test("the SCRAM-SHA-256 verifier matches RFC 7677's example exchange", async () => {
    // GIVEN the RFC's password, salt and messages
    const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
    const nonce = 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
    const authMessage = `n=user,r=rOprNGfwEbeRWgbNEkqO,r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=${nonce}`;
    // WHEN we compute the verifier
    const v = await scramVerifier('pencil', salt);
    const m = /^SCRAM-SHA-256\$4096:([^$]+)\$([^:]+):(.+)$/.exec(v)!;
    const storedKey = Buffer.from(m[2]!, 'base64');
    const serverKey = Buffer.from(m[3]!, 'base64');
    // THEN the server signature is the RFC's, and the RFC's client proof verifies against StoredKey
    expect(m[1]).toBe('W22ZaJ0SNY7soEsUEjb6gQ==');
    expect(createHmac('sha256', serverKey).update(authMessage).digest('base64')).toBe('6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
    const clientSignature = createHmac('sha256', storedKey).update(authMessage).digest();
    const proof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
    const clientKey = Buffer.from(proof.map((b, i) => b ^ clientSignature[i]!));
    expect(createHash('sha256').update(clientKey).digest().equals(storedKey)).toBe(true);
  });

  test.each([
    ['plain', '"plain"'],
    ['with "quotes"', '"with ""quotes"""'],
    ['Mixed.Case-name', '"Mixed.Case-name"'],
  ])('ident(%j)', (input, quoted) => {
    expect(ident(input)).toBe(quoted);
  });

  test('ident and literal refuse NUL; literal doubles quotes and escapes backslashes', () => {
    expect(() => ident('a\0b')).toThrow();
    expect(() => ident('')).toThrow();
    expect(() => literal('a\0b')).toThrow();
    expect(literal("it's")).toBe("'it''s'");
    expect(literal('a\\b')).toBe("E'a\\\\b'");
  });
});
