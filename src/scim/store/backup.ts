// The SCIM tables' part in `state backup` and `state restore`: their SQLite shape (a backup's
// image of scim.db, the scim.db a restore writes into) and their PostgreSQL tables.
import type { ScimTables } from '../../store/backup-postgres.js';
import { SqliteScimStore } from './sqlite.js';

export const scimTables: ScimTables = {
  emptyImage: () => new SqliteScimStore(':memory:').db,
  openFile: (file) => new SqliteScimStore(file).db,
  createPg: async (pool, schema) => {
    // Loaded only here: a restore into SQLite never loads the PostgreSQL client.
    const { openPgScimStore } = await import('./postgres.js');
    // A store on a pool it was given leaves the pool open.
    await openPgScimStore(pool, { schema });
  },
};
