// Which SCIM store `serve` and the CLI use.
import type Database from 'better-sqlite3';
import type { StatePaths } from '../../store/open.js';
import { openPgScimStore } from './postgres.js';
import { SqliteScimStore } from './sqlite.js';
import type { ScimStore, ScimStoreOptions } from './store.js';

/**
 * The store `serve` uses: PostgreSQL when `storeUrl` (DATAGRANT_STORE_URL) is set, else SQLite on
 * `sqlite` (the state store's handle or file).
 */
export async function openScimStore(opts: { storeUrl?: string; sqlite: Database.Database | string; schema?: string } & ScimStoreOptions): Promise<ScimStore> {
  if (opts.storeUrl) return openPgScimStore(opts.storeUrl, opts);
  return new SqliteScimStore(opts.sqlite, opts);
}

/** The SCIM store of a state directory: PostgreSQL when `DATAGRANT_STORE_URL` is set, else its `scim.db`. */
export function openScimStoreAt(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<ScimStore> {
  return openScimStore({ ...(env.DATAGRANT_STORE_URL ? { storeUrl: env.DATAGRANT_STORE_URL } : {}), sqlite: paths.scimDb });
}
