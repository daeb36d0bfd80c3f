import { createMysqlBackend } from '../../src/backends/mysql/driver.js';
import { mysqlAdmin, mysqlFixture, mysqlUrlFor } from '../support/mysql.js';
import { describeBackendContract } from './backend-contract.js';

describeBackendContract('mysql', async () => {
  const fx = mysqlFixture('contract');
  const features = await fx.database('features');
  const labels = await fx.database('labels');
  const outsider = fx.name('outsider');
  await mysqlAdmin(
    `CREATE TABLE \`${features}\`.f (id int); CREATE TABLE \`${labels}\`.l (id int);
     CREATE USER '${outsider}'@'%' IDENTIFIED BY 'outsider-pw'; GRANT SELECT ON \`${features}\`.f TO '${outsider}'@'%'`,
  );
  const outside = async () =>
    JSON.stringify([
      await mysqlAdmin(`SHOW GRANTS FOR '${outsider}'@'%'`),
      await mysqlAdmin(`SELECT Priv FROM mysql.global_priv WHERE User = ? AND Host = '%'`, [outsider]),
    ]);
  const before = await outside();
  return {
    name: 'db',
    backend: createMysqlBackend({ name: 'db', url: mysqlUrlFor(), scope: fx.run }),
    env: { DB_URL: mysqlUrlFor() },
    spec: `version: 1
backends: { db: { type: mysql, url: "\${DB_URL}", scope: ${fx.run} } }
datasets:
  features: { backend: db, database: ${features} }
  labels: { backend: db, database: ${labels}, tables: [l] }
groups: { ${fx.name('readers')}: { grants: [{ dataset: features, access: read }] } }
principals:
  ${fx.name('alice')}: { type: person, groups: [${fx.name('readers')}] }
  ${fx.name('trainer')}: { type: service, groups: [${fx.name('readers')}], grants: [{ dataset: labels, access: write }] }
`,
    // An admin that may make accounts and roles (and mark them) but holds nothing on the
    // dataset's database: every GRANT there is refused.
    async lacking() {
      const admin = { name: fx.name('lacking_admin'), password: `pw-${fx.run}` };
      await mysqlAdmin(
        `CREATE USER '${admin.name}'@'%' IDENTIFIED BY '${admin.password}';
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '${admin.name}'@'%'; GRANT SELECT, UPDATE ON mysql.* TO '${admin.name}'@'%'`,
      );
      const scope = `${fx.run}_lacking`;
      return {
        backend: createMysqlBackend({ name: 'db', url: mysqlUrlFor(admin), scope }),
        env: { DB_URL: mysqlUrlFor(admin) },
        spec: `version: 1
backends: { db: { type: mysql, url: "\${DB_URL}", scope: ${scope} } }
datasets: { features: { backend: db, database: ${features} } }
principals:
  ${fx.name('lacking_bob')}: { type: service, grants: [{ dataset: features, access: read }] }
`,
      };
    },
    async outsideUnchanged() {
      if ((await outside()) !== before) throw new Error('the hand-made account outside the boundary changed');
    },
    cleanup: () => fx.cleanup(),
  };
});
