import { createPostgresBackend } from '../../src/backends/postgres/driver.js';
import { adminQuery, pgFixture, urlFor } from '../support/pg.js';
import { describeBackendContract } from './backend-contract.js';

describeBackendContract('postgres', async () => {
  const fx = pgFixture('contract');
  const db = await fx.database('warehouse');
  const outsider = fx.name('outsider');
  await adminQuery(
    db,
    `CREATE SCHEMA features; CREATE TABLE features.f (id int); CREATE SCHEMA labels; CREATE TABLE labels.l (id int);
    CREATE ROLE "${outsider}" LOGIN; GRANT USAGE ON SCHEMA features TO "${outsider}"; GRANT SELECT ON features.f TO "${outsider}";`,
  );
  const privileges = async () =>
    JSON.stringify(
      (
        await adminQuery(
          db,
          `SELECT has_table_privilege($1, 'features.f', 'SELECT') AS s, has_table_privilege($1, 'features.f', 'INSERT') AS i, shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = $1`,
          [outsider],
        )
      ).rows,
    );
  const before = await privileges();
  return {
    name: 'wh',
    backend: createPostgresBackend({ name: 'wh', url: urlFor(db), scope: fx.run }),
    env: { WH_URL: urlFor(db) },
    spec: `version: 1
backends: { wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run} } }
datasets:
  features: { backend: wh, database: ${db}, schema: features }
  labels: { backend: wh, database: ${db}, schema: labels }
groups: { ${fx.name('readers')}: { grants: [{ dataset: features, access: read }] } }
principals:
  ${fx.name('alice')}: { type: person, groups: [${fx.name('readers')}] }
  ${fx.name('trainer')}: { type: service, groups: [${fx.name('readers')}], grants: [{ dataset: labels, access: write }] }
`,
    // An admin (CREATEROLE) holding CONNECT on the database without the grant option, as after
    // the common GRANT ALL ON DATABASE … TO admin: PostgreSQL only warns when it grants CONNECT.
    async lacking() {
      const admin = { name: fx.role(fx.name('lacking_admin')), password: `pw-${fx.run}` };
      await adminQuery(
        'postgres',
        `CREATE ROLE "${admin.name}" LOGIN CREATEROLE PASSWORD '${admin.password}'; GRANT ALL ON DATABASE "${db}" TO "${admin.name}"`,
      );
      const scope = `${fx.run}_lacking`;
      return {
        backend: createPostgresBackend({ name: 'wh', url: urlFor(db, admin), scope }),
        env: { WH_URL: urlFor(db, admin) },
        spec: `version: 1
backends: { wh: { type: postgres, url: "\${WH_URL}", scope: ${scope} } }
datasets: { features: { backend: wh, database: ${db}, schema: features } }
principals:
  ${fx.name('lacking_bob')}: { type: service, grants: [{ dataset: features, access: read }] }
`,
      };
    },
    async outsideUnchanged() {
      if ((await privileges()) !== before) throw new Error('the hand-made role outside the boundary changed');
    },
    cleanup: () => fx.cleanup(),
  };
});
