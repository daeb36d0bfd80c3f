// The SCIM tables' part in `state backup` and `state restore` of the PostgreSQL store.
import type { ScimTables } from '../../store/backup-postgres.js';
import { openPgScimStore } from './postgres.js';
import { SqliteScimStore } from './sqlite.js';

export const scimTables: ScimTables = {
  emptyImage: () => new SqliteScimStore(':memory:').db,
  createPg: async (pool, schema) => {
    // A store on a pool it was given leaves the pool open.
    await openPgScimStore(pool, { schema });
  },
};
