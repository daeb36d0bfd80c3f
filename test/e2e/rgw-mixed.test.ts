// Issue 14: one spec over AWS (moto), PostgreSQL, Ceph RGW and MariaDB — one plan, one apply, each
// enforced by its own system — proven with the key, passwords and key datagrant issued on each. The
// aws and rgw backends sign with different keys (the AWS chain; the rgw backend's own ${VAR}s).
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startMoto, type Moto } from '../support/moto.js';
import { adminQuery, expectLoginRefused, pgFixture, queryAs, urlFor } from '../support/pg.js';
import { contentsOf, expectDenied, readObject, rgwFixture, s3As } from '../support/rgw.js';
import { expectLoginRefused as expectMysqlLoginRefused, mysqlAdmin, mysqlFixture, mysqlQueryAs, mysqlUrlFor } from '../support/mysql.js';
import type { Workspace } from '../support/cli.js';
import { apply, canRead, expectNoChanges, initWorkspace, issuedKey, keyIsDead, s3For, useMotoAdmin } from './aws-support.js';

const pg = pgFixture('rgwmixed');
const rgw = rgwFixture('mixed');
const my = mysqlFixture('rgwmixed', pg.run);
let mart: string;
let moto: Moto;
let ws: Workspace;
let db: string;
let bucket: string;
const alice = pg.name('alice');
const bob = pg.name('bob');
const group = pg.name('ml');

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
  useMotoAdmin(moto);
  db = await pg.database('analytics');
  await adminQuery(
    db,
    `REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC; CREATE SCHEMA features; CREATE TABLE features.f (id int); INSERT INTO features.f VALUES (1);`,
  );
  bucket = await rgw.makeBucket('onprem', ['curated/a.txt']);
  mart = await my.database('mart');
  await mysqlAdmin(`CREATE TABLE \`${mart}\`.m (id int); INSERT INTO \`${mart}\`.m VALUES (5)`);
});
afterAll(async () => {
  ws?.cleanup();
  await pg.cleanup();
  await rgw.cleanup();
  await my.cleanup();
  await moto?.stop();
});

const spec = (principals: string) => `version: 1
backends:
  aws: { type: aws }
  warehouse: { type: postgres, url: "\${WAREHOUSE_URL}", scope: ${pg.run} }
  onprem: { type: rgw, endpoint: "${rgw.rgw.endpoint}", accessKeyId: "\${RGW_KEY}", secretAccessKey: "\${RGW_SECRET}", userPrefix: ${rgw.prefix} }
  mart: { type: mysql, url: "\${MART_URL}", scope: ${pg.run} }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
  features: { backend: warehouse, database: ${db}, schema: features }
  onprem-data: { backend: onprem, bucket: ${bucket}, prefix: curated/ }
  metrics: { backend: mart, database: ${mart} }
groups:
  ${group}:
    grants:
      - { dataset: training-data, access: read }
      - { dataset: features, access: read }
      - { dataset: onprem-data, access: read }
      - { dataset: metrics, access: read }
principals:
${principals}`;

async function exported(name: string, backend: string): Promise<Record<string, string>> {
  const r = await ws.run('credentials', 'export', name, '--backend', backend, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, string>;
}

test('AWS, PostgreSQL, RGW and MariaDB in one spec: one plan, one apply, each enforced; leaving revokes all four', async () => {
  ws = await initWorkspace(spec(`  ${alice}: { type: person, groups: [${group}] }\n  ${bob}: { type: service, groups: [${group}] }\n`));
  Object.assign(ws.env, { WAREHOUSE_URL: urlFor(db), RGW_KEY: rgw.rgw.admin.accessKeyId, RGW_SECRET: rgw.rgw.admin.secretAccessKey, MART_URL: mysqlUrlFor() });

  const plan = await ws.run('plan', '--detailed-exitcode');
  expect(plan.code, plan.stderr).toBe(2);
  for (const a of [
    `+ aws:user/${alice}`,
    `+ warehouse:role/${alice}`,
    `+ onprem:user/${alice}`,
    `+ onprem:inline-policy/${alice}/dg-group-${group.replace(/_/g, ':')}`,
    `+ mart:account/${alice}`,
  ]) {
    expect(plan.stdout).toContain(a);
  }
  await apply(ws);
  await expectNoChanges(ws);

  // each system, with what datagrant issued for it
  const awsKey = await issuedKey(ws, alice, 'aws');
  await canRead(s3For(moto, awsKey), 'ai-model-data', 'training/a.txt', 'training');
  const login = await exported(alice, 'warehouse');
  expect(await queryAs(db, { name: login.username!, password: login.password! }, 'SELECT id FROM features.f')).toEqual([{ id: 1 }]);
  const onprem = await exported(alice, 'onprem');
  const s3 = s3As(rgw.rgw, { accessKeyId: onprem.AccessKeyId!, secretAccessKey: onprem.SecretAccessKey! });
  expect(await readObject(s3, bucket, 'curated/a.txt')).toBe(contentsOf(bucket, 'curated/a.txt'));
  const martLogin = await exported(alice, 'mart');
  const mysqlUser = { name: martLogin.username!, password: martLogin.password! };
  expect(await mysqlQueryAs(mysqlUser, `SELECT id FROM \`${mart}\`.m`)).toEqual([{ id: 5 }]);

  // alice leaves: all four refuse her
  ws.writeSpec(spec(`  ${bob}: { type: service, groups: [${group}] }\n`));
  await apply(ws);
  await keyIsDead(moto, awsKey);
  await expectLoginRefused(db, { name: login.username!, password: login.password! });
  await expectDenied(readObject(s3, bucket, 'curated/a.txt'), "alice's rgw key");
  await expectMysqlLoginRefused(mysqlUser);
  s3.destroy();
  await expectNoChanges(ws);
});
