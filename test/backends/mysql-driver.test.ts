// The mysql driver on a real MariaDB, beyond the shared contract: where its ownership marker lives
// and that MariaDB keeps it, the boundary between scopes and installations, drift made by hand
// reverted, a run that died half-way recovered without orphans, and every call under a deadline.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Backend, KnownCredential } from '../../src/backends/backend.js';
import { createMysqlBackend } from '../../src/backends/mysql/driver.js';
import { creationHash, literal } from '../../src/backends/mysql/sql.js';
import { compile } from '../../src/compile/index.js';
import { BackendError } from '../../src/core/errors.js';
import type { ActualState, Change } from '../../src/core/types.js';
import { diff } from '../../src/plan/diff.js';
import { parseSpec } from '../../src/spec/load.js';
import { startBlackHole } from '../support/black-hole.js';
import { executeInOrder } from '../contract/backend-contract.js';
import { expectLoginRefused, mysqlAdmin, mysqlFixture, mysqlQueryAs, mysqlUrlFor } from '../support/mysql.js';

const fx = mysqlFixture('mydrv');
const now = new Date();
let db: string;
const backends: Backend[] = [];

beforeAll(async () => {
  db = await fx.database('wh');
  await mysqlAdmin(`CREATE TABLE \`${db}\`.f (id int); INSERT INTO \`${db}\`.f VALUES (1); CREATE TABLE \`${db}\`.g (id int)`);
});
afterAll(async () => {
  await Promise.all(backends.map((b) => b.close()));
  await fx.cleanup();
});

function driver(opts: { scope?: string; installation?: string } = {}): Backend {
  const b = createMysqlBackend({
    name: 'db',
    url: mysqlUrlFor(),
    scope: opts.scope ?? fx.run,
    ...(opts.installation ? { installation: opts.installation } : {}),
  });
  backends.push(b);
  return b;
}

const specText = (principals: string, scope = fx.run) => `version: 1
backends: { db: { type: mysql, url: "\${DB_URL}", scope: ${scope} } }
datasets:
  wh: { backend: db, database: ${db} }
  f: { backend: db, database: ${db}, tables: [f] }
groups: { ${scope}_ml: { grants: [{ dataset: wh, access: read }] } }
principals:
${principals}
`;

function planOf(text: string, actual: ActualState, credentials: KnownCredential[] = [], installation?: string) {
  const { spec } = parseSpec(text, { file: 'd.yaml', env: { DB_URL: mysqlUrlFor() }, now });
  const desired = { db: compile(spec, now, installation ? { installation } : {}).desired.db! };
  return diff(
    desired,
    { db: actual },
    { now, specHash: 'x', credentials: credentials.map((c) => ({ ...c, backend: 'db', principal: c.address.split('/')[1]! })) },
  );
}

/** Applies the spec from whatever is there; returns the credentials issued. */
async function converge(
  b: Backend,
  text: string,
  credentials: KnownCredential[] = [],
): Promise<{ credentials: KnownCredential[]; secrets: Record<string, Record<string, string>> }> {
  const plan = planOf(text, await b.read({ credentials }), credentials);
  const issued = [...credentials];
  const secrets: Record<string, Record<string, string>> = {};
  await executeInOrder(b, plan.changes, {
    onResult: (c, r) => {
      if (!r.credential) return;
      const i = issued.findIndex((k) => k.address === c.address);
      if (i >= 0) issued.splice(i, 1);
      issued.push({ address: c.address, credentialId: r.credential.credentialId, createdAt: r.credential.createdAt, state: 'current' });
      secrets[c.address] = r.secret!;
    },
  });
  return { credentials: issued, secrets };
}

const changesOf = (text: string, actual: ActualState, credentials: KnownCredential[] = []) =>
  planOf(text, actual, credentials).changes.map((c: Change) => `${c.action} ${c.address}`);

describe('the ownership marker', () => {
  test('lives in mysql.global_priv, and MariaDB keeps it through ALTER USER, GRANT, SET DEFAULT ROLE and FLUSH PRIVILEGES', async () => {
    // GIVEN an applied principal
    const ada = fx.name('ada');
    const text = specText(`  ${ada}: { type: service, grants: [{ dataset: f, access: read }] }`);
    const b = driver();
    const { credentials } = await converge(b, text);
    const marker = async () =>
      JSON.stringify(
        (await mysqlAdmin<{ m: unknown }[]>(`SELECT JSON_QUERY(Priv, '$.datagrant') AS m FROM mysql.global_priv WHERE User = ? AND Host = '%'`, [ada]))[0]!.m,
      );
    const before = await marker();
    expect(JSON.parse(before)).toMatchObject({ scope: fx.run, credential: credentials[0]!.credentialId });
    // WHEN an operator changes the account in every way MariaDB rewrites its row
    await mysqlAdmin(
      `ALTER USER '${ada}'@'%' PASSWORD EXPIRE NEVER; GRANT SELECT ON \`${db}\`.g TO '${ada}'@'%'; REVOKE SELECT ON \`${db}\`.g FROM '${ada}'@'%';
       SET DEFAULT ROLE NONE FOR '${ada}'@'%'; SET DEFAULT ROLE \`${ada}\` FOR '${ada}'@'%'; ALTER USER '${ada}'@'%' ACCOUNT LOCK; ALTER USER '${ada}'@'%' ACCOUNT UNLOCK; FLUSH PRIVILEGES`,
    );
    // THEN the marker is still there, unchanged, and the next plan is empty
    expect(await marker()).toBe(before);
    expect(changesOf(text, await b.read({ credentials }), credentials)).toEqual([]);
  });

  test('two scopes on one server never see each other; another installation of the same scope is named, never touched', async () => {
    // GIVEN a principal applied by installation A of scope S
    const scope = `${fx.run}_s`;
    const bea = fx.name('bea');
    const text = specText(`  ${bea}: { type: service, grants: [{ dataset: f, access: read }] }`, scope);
    const a = driver({ scope, installation: 'inst-a' });
    await converge(a, text);
    // WHEN another scope, and another installation of scope S, read the server
    const other = await driver({ scope: `${fx.run}_t` }).read({ credentials: [] });
    const b = driver({ scope, installation: 'inst-b' });
    const seen = await b.read({ credentials: [] });
    // THEN the other scope sees nothing; installation B sees A's objects only as foreign
    expect(other.resources).toEqual([]);
    expect(other.foreign).toBeUndefined();
    expect(seen.resources).toEqual([]);
    expect(seen.foreign!.map((f) => f.address).sort()).toEqual([`db:account/${bea}`, `db:role/${scope}_ml`, `db:role/${bea}`].sort());
    // and a change of B's to A's account is refused before anything is sent
    const stray: Change = {
      address: `db:account/${bea}`,
      backend: 'db',
      kind: 'account',
      action: 'delete',
      before: (await a.read({ credentials: [] })).resources.find((r) => r.kind === 'account')!,
      after: null,
      drift: false,
      reason: 'test',
    };
    await expect(b.execute(stray)).rejects.toThrow(/belongs to another datagrant installation \(inst-a\)/);
    expect(await mysqlAdmin<unknown[]>(`SELECT User FROM mysql.global_priv WHERE User = ? AND Host = '%'`, [bea])).toHaveLength(1);
  });

  test('an account of the same name that datagrant did not make is never adopted, nor one of the same user name on another host', async () => {
    const cid = fx.name('cid');
    const dot = fx.name('dot');
    await mysqlAdmin(`CREATE USER '${cid}'@'%' IDENTIFIED BY 'hand-made'; CREATE USER '${dot}'@'localhost' IDENTIFIED BY 'hand-made'`);
    const b = driver();
    const text = specText(
      `  ${cid}: { type: service, grants: [{ dataset: f, access: read }] }\n  ${dot}: { type: service, grants: [{ dataset: f, access: read }] }`,
    );
    const plan = planOf(text, await b.read({ credentials: [] }));
    const { failed } = await executeInOrder(b, plan.changes, { strict: false });
    expect(failed.get(`db:account/${cid}`)?.message).toMatch(/account '.*cid'@'%' exists but is not managed by datagrant/);
    expect(failed.get(`db:account/${dot}`)?.message).toMatch(/another account named .*dot exists \('.*dot'@'localhost'\)/);
    // the hand-made accounts still log in with their own passwords
    expect(await mysqlQueryAs({ name: cid, password: 'hand-made' }, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});

describe('drift', () => {
  test("privileges granted by hand to datagrant's roles and accounts are reported, and the next apply revokes them", async () => {
    // GIVEN an applied principal in a group, and grants made by hand beside datagrant's
    const eve = fx.name('eve');
    const ml = fx.name('ml');
    const text = specText(`  ${eve}: { type: service, groups: [${ml}], grants: [{ dataset: f, access: read }] }`);
    const b = driver();
    const { credentials, secrets } = await converge(b, text);
    const like = db.replace(/_/g, '%').slice(0, -2); // a pattern that also matches the dataset's database
    await mysqlAdmin(
      [
        // escaped, the database itself; unescaped, its _ are wildcards: a pattern (as is `like`)
        `GRANT INSERT ON \`${db.replace(/_/g, '\\_')}\`.* TO \`${ml}\``,
        `GRANT DELETE ON \`${db}\`.* TO \`${ml}\``,
        `GRANT DELETE ON \`${db}\`.g TO \`${eve}\``,
        `GRANT UPDATE (id) ON \`${db}\`.f TO \`${eve}\``,
        `GRANT SELECT ON \`${like}\`.* TO \`${ml}\``,
        `GRANT PROCESS ON *.* TO \`${ml}\``,
        `GRANT SELECT ON \`${db}\`.g TO '${eve}'@'%'`,
      ].join('; '),
    );
    // WHEN read
    const drifted = await b.read({ credentials });
    // THEN each shows up as a change
    expect(changesOf(text, drifted, credentials)).toEqual([
      `update db:account/${eve}`,
      `delete db:grant/${eve}/${db}/write`,
      `delete db:grant/${ml}/${db}/write`,
      `delete db:pattern-grant/${ml}/${like.replace(/%/g, '%25')}`,
      `delete db:pattern-grant/${ml}/${db}`,
      `update db:role/${ml}`,
    ]);
    const r = Object.fromEntries(drifted.resources.map((x) => [x.address, x.attrs]));
    expect(r[`db:grant/${eve}/${db}/write`]).toMatchObject({ tables: ['g'], privileges: { database: [], tables: ['DELETE', 'UPDATE (columns)'] } });
    expect(r[`db:account/${eve}`]).toMatchObject({ privileges: [`SELECT ON \`${db}\`.\`g\``] });
    expect(r[`db:role/${ml}`]).toEqual({ privileges: ['PROCESS'] });
    // WHEN applied
    const plan = planOf(text, drifted, credentials);
    await executeInOrder(b, plan.changes);
    // THEN the next plan is empty, and the principal reads what the spec grants, no more
    expect(changesOf(text, await b.read({ credentials }), credentials)).toEqual([]);
    const login = { name: eve, password: secrets[`db:password/${eve}`]!.password! };
    expect(await mysqlQueryAs(login, `SELECT id FROM \`${db}\`.f`)).toEqual([{ id: 1 }]);
    await expect(mysqlQueryAs(login, `INSERT INTO \`${db}\`.f VALUES (2)`)).rejects.toThrow(/command denied/);
    await expect(mysqlQueryAs(login, `DELETE FROM \`${db}\`.g`)).rejects.toThrow(/command denied/);
  });
});

describe('a run that died half-way', () => {
  test('an account made but never marked, and a role likewise, are recognised as this installation’s and finished', async () => {
    // GIVEN what a run killed right after CREATE USER and CREATE ROLE leaves: unmarked objects
    const fay = fx.name('fay');
    await mysqlAdmin(`CREATE ROLE \`${fay}\`; CREATE USER '${fay}'@'%' IDENTIFIED BY PASSWORD '${creationHash(fx.run, undefined, fay)}'`);
    const b = driver();
    const text = specText(`  ${fay}: { type: service, grants: [{ dataset: f, access: read }] }`);
    // WHEN the next run applies
    const { credentials, secrets } = await converge(b, text);
    // THEN both are taken up, nothing is left over, and the password works
    expect(changesOf(text, await b.read({ credentials }), credentials)).toEqual([]);
    expect(await mysqlQueryAs({ name: fay, password: secrets[`db:password/${fay}`]!.password! }, `SELECT id FROM \`${db}\`.f`)).toEqual([{ id: 1 }]);
  });

  test('an account created with another scope’s creation hash, or a role someone else holds, is not taken', async () => {
    const gus = fx.name('gus');
    const hal = fx.name('hal');
    await mysqlAdmin(
      `CREATE USER '${gus}'@'%' IDENTIFIED BY PASSWORD '${creationHash('elsewhere', undefined, gus)}'; CREATE ROLE \`${hal}\`; GRANT \`${hal}\` TO '${fx.name('cid')}'@'%'`,
    );
    const b = driver();
    const text = specText(
      `  ${gus}: { type: service, grants: [{ dataset: f, access: read }] }\n  ${hal}: { type: service, grants: [{ dataset: f, access: read }] }`,
    );
    const { failed } = await executeInOrder(b, planOf(text, await b.read({ credentials: [] })).changes, { strict: false });
    expect(failed.get(`db:account/${gus}`)?.message).toMatch(/not managed by datagrant/);
    expect(failed.get(`db:role/${hal}`)?.message).toMatch(/role .*hal exists but is not managed by datagrant/);
  });

  test('a password set but never stored is not counted: the plan sets a new one, and the lost one stops working', async () => {
    // GIVEN an applied principal, whose password is then set again by a run that died before storing it
    const ian = fx.name('ian');
    const text = specText(`  ${ian}: { type: service, grants: [{ dataset: f, access: read }] }`);
    const b = driver();
    const first = await converge(b, text);
    const actual = await b.read({ credentials: first.credentials });
    const slot = actual.resources.find((r) => r.kind === 'password')!;
    const lost = await b.execute({
      address: slot.address,
      backend: 'db',
      kind: 'password',
      action: 'replace',
      before: slot,
      after: slot,
      drift: false,
      reason: 'x',
    });
    // WHEN the next run reads with only what the store holds
    const again = await b.read({ credentials: first.credentials });
    // THEN the slot holds no password it can vouch for, and the plan issues one
    expect(changesOf(text, again, first.credentials)).toEqual([`create db:password/${ian}`, `delete db:password/${ian}~${first.credentials[0]!.credentialId}`]);
    const next = await converge(b, text, first.credentials);
    expect(changesOf(text, await b.read({ credentials: next.credentials }), next.credentials)).toEqual([]);
    await expectLoginRefused({ name: ian, password: lost.secret!.password! });
    await expectLoginRefused({ name: ian, password: first.secrets[slot.address]!.password! });
    expect(await mysqlQueryAs({ name: ian, password: next.secrets[slot.address]!.password! }, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});

describe('sessions of accounts that lose access', () => {
  test('an admin that could not end them is refused before it revokes anything', async () => {
    // GIVEN an applied principal, and an admin of the same scope that may grant but not end sessions
    const jon = fx.name('jon');
    const text = specText(`  ${jon}: { type: service, grants: [{ dataset: f, access: read }] }`);
    const { credentials } = await converge(driver(), text);
    const weak = { name: fx.name('weak_admin'), password: `pw-${fx.run}` };
    await mysqlAdmin(
      `CREATE USER '${weak.name}'@'%' IDENTIFIED BY '${weak.password}'; GRANT CREATE USER ON *.* TO '${weak.name}'@'%';
       GRANT SELECT, UPDATE ON mysql.* TO '${weak.name}'@'%'; GRANT ALL ON \`${db}\`.* TO '${weak.name}'@'%' WITH GRANT OPTION`,
    );
    const b = createMysqlBackend({ name: 'db', url: mysqlUrlFor(weak), scope: fx.run });
    backends.push(b);
    // WHEN it applies a spec without the grant
    const actual = await b.read({ credentials });
    const revoke = planOf(specText(`  ${jon}: { type: service, grants: [{ dataset: wh, access: read }] }`), actual, credentials).changes.find(
      (c) => c.address === `db:grant/${jon}/${db}/read`,
    )!;
    // THEN the change fails saying what the admin lacks, and the principal still holds its grant
    await expect(b.execute(revoke)).rejects.toThrow(/cannot end other accounts' sessions.*GRANT PROCESS, CONNECTION ADMIN/);
    expect(changesOf(text, await driver().read({ credentials }), credentials)).toEqual([]);
  });
});

describe('deadlines', () => {
  test('a server that accepts and never answers fails the read within the connect deadline, naming it', async () => {
    const hole = await startBlackHole();
    try {
      const u = new URL(mysqlUrlFor());
      u.port = String(hole.port);
      const b = createMysqlBackend({ name: 'db', url: u.toString(), deadlines: { connectMs: 500, requestMs: 500 } });
      backends.push(b);
      const started = performance.now();
      const e = await b.read({ credentials: [] }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(BackendError);
      expect((e as BackendError).message).toMatch(/no answer from mysql:\/\/datagrant_admin@127\.0\.0\.1:\d+\/? within 0\.5 s \(connect timeout\)/);
      expect((e as BackendError).message).not.toContain(new URL(mysqlUrlFor()).password);
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      await hole.close();
    }
  });
});

describe('SQL literals', () => {
  test.each(["x'; DROP TABLE t; --", "back\\' slash", "\\\\'", 'plain'])(
    '%j reads back as itself, and stays one literal even with NO_BACKSLASH_ESCAPES',
    async (value) => {
      // Several statements: the result of each, the SELECTs at 1 and 3.
      const results = await mysqlAdmin<unknown[]>(
        `SET SESSION sql_mode = ''; SELECT ${literal(value)} AS v; SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'; SELECT ${literal(value)} AS v, 1 AS one`,
      );
      expect((results[1] as { v: string }[])[0]!.v).toBe(value);
      // The second SELECT parsed as one literal and one more column: nothing after it ran as SQL.
      expect(Object.keys((results[3] as Record<string, unknown>[])[0]!)).toEqual(['v', 'one']);
    },
  );
});
