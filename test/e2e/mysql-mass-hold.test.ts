// serve's answer to a mass deprovisioning, on a real MariaDB: access ends at once but reversibly
// (accounts locked and stripped of their role, their open sessions ended) while deleting the
// accounts waits for a person; once confirmed, they go.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { converge, type ConvergeOptions } from '../../src/app/converge.js';
import { closeBackends, makeBackends } from '../../src/backends/factory.js';
import type { Backend } from '../../src/backends/backend.js';
import { parseSpec } from '../../src/spec/load.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { expectLoginRefused, expectSessionEnded, mysqlAdmin, mysqlConnectAs, mysqlFixture, mysqlQueryAs, mysqlUrlFor } from '../support/mysql.js';

const fx = mysqlFixture('myhold');
let db: string;
let dir: string;
let store: SqliteStore;
const opened: Record<string, Backend>[] = [];
const people = (n: number) => Array.from({ length: n }, (_, i) => fx.name(`p${i}`));

beforeAll(async () => {
  db = await fx.database('wh');
  await mysqlAdmin(`CREATE TABLE \`${db}\`.t (id int); INSERT INTO \`${db}\`.t VALUES (1)`);
  dir = mkdtempSync(join(tmpdir(), 'dg-myhold-'));
  store = new SqliteStore(join(dir, 'state.db'), MasterKey.parse(MasterKey.generate()));
});
afterAll(async () => {
  for (const b of opened) await closeBackends(b);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
  await fx.cleanup();
});

function run(names: string[], extra: Partial<ConvergeOptions> = {}) {
  const text = `version: 1
backends: { db: { type: mysql, url: "\${DB_URL}", scope: ${fx.run} } }
datasets: { wh: { backend: db, database: ${db} } }
groups: { ${fx.name('g')}: { grants: [{ dataset: wh, access: read }] } }
principals:
${names.map((n) => `  ${n}: { type: person, groups: [${fx.name('g')}] }`).join('\n') || '  {}'}
`;
  const now = new Date();
  const { spec, notices } = parseSpec(text, { file: 't.yaml', env: { DB_URL: mysqlUrlFor() }, now });
  return converge({
    mode: 'apply',
    spec,
    specHash: String(names.length),
    notices,
    store,
    makeBackends: (backends, installation) => {
      const b = makeBackends({ backends }, { installation });
      opened.push(b);
      return b;
    },
    actor: 'test',
    now,
    onMassEvent: 'refuse',
    ...extra,
  });
}

const password = async (name: string) => ({ name, password: (await store.revealCredential(`db:password/${name}`))!.secret.password! });

test('a mass deprovisioning locks the accounts and ends their sessions at once; the deletions wait for a person', async () => {
  // GIVEN 8 principals, one of them with an open session
  const all = people(8);
  expect((await run(all)).outcome).toBe('applied');
  const leaver = await password(all[7]!);
  const open = await mysqlConnectAs(leaver, db);
  try {
    expect((await open.query('SELECT id FROM t'))[0]).toEqual([{ id: 1 }]);
    // WHEN the identity provider drops 6 of them and serve reconciles
    const held = await run(all.slice(0, 2), { onMassEvent: 'hold' });
    expect(held.outcome).toBe('applied');
    // THEN the accounts' deletion is held, and nothing of theirs works any more
    expect(held.held.filter((c) => c.kind === 'account').map((c) => c.address)).toHaveLength(6);
    await expectSessionEnded(open);
  } finally {
    open.destroy();
  }
  await expectLoginRefused(leaver);
  const accounts = await mysqlAdmin<{ User: string; locked: string }[]>(
    `SELECT User, JSON_VALUE(Priv, '$.account_locked') AS locked FROM mysql.global_priv WHERE User IN (?) AND Host = '%' ORDER BY User`,
    [all],
  );
  expect(accounts.map((a) => [a.User, a.locked === 'true' || a.locked === '1'])).toEqual(all.map((n, i) => [n, i >= 2]));
  expect(await mysqlAdmin<unknown[]>(`SELECT Role FROM mysql.roles_mapping WHERE User = ? AND Host = '%'`, [all[7]])).toEqual([]);
  // and those who stay still read
  expect(await mysqlQueryAs(await password(all[0]!), `SELECT id FROM \`${db}\`.t`)).toEqual([{ id: 1 }]);

  // WHEN a person confirms
  expect((await run(all.slice(0, 2), { allow: { massDestroy: true } })).outcome).toBe('applied');
  // THEN the accounts are gone
  expect(
    (await mysqlAdmin<{ User: string }[]>(`SELECT User FROM mysql.global_priv WHERE User IN (?) AND Host = '%'`, [all])).map((a) => a.User).sort(),
  ).toEqual(all.slice(0, 2).sort());
});
