// Where the state lives and where the master key comes from.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StoreError } from '../core/errors.js';
import { MasterKey } from './crypto.js';
import { SqliteStore } from './sqlite.js';
import type { StateStore } from './store.js';

export interface StatePaths {
  dir: string;
  /** Credentials, applied state, journal, lock, audit log. */
  db: string;
  keyFile: string;
  /**
   * SCIM identities (`datagrant serve`), in a file of their own: SQLite has one writer per file,
   * and SCIM requests must never wait for a reconcile's writes to the state (nor it for theirs).
   */
  scimDb: string;
}

export function statePaths(dir: string): StatePaths {
  const d = resolve(dir);
  return { dir: d, db: join(d, 'state.db'), keyFile: join(d, 'master.key'), scimDb: join(d, 'scim.db') };
}

/** The master key: `DATAGRANT_MASTER_KEY`, else the key file made by `datagrant init`. */
export function loadMasterKey(paths: StatePaths, env: NodeJS.ProcessEnv): MasterKey {
  const fromEnv = env.DATAGRANT_MASTER_KEY;
  if (fromEnv) return MasterKey.parse(fromEnv);
  if (!existsSync(paths.keyFile)) {
    throw new StoreError(`no master key: set DATAGRANT_MASTER_KEY (32 bytes, hex or base64) or run \`datagrant init\` to create ${paths.keyFile}`);
  }
  const mode = statSync(paths.keyFile).mode & 0o777;
  if (mode & 0o077) {
    throw new StoreError(`${paths.keyFile} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${paths.keyFile}`);
  }
  return MasterKey.parse(readFileSync(paths.keyFile, 'utf8'));
}

/** Create the state directory and a 0600 master key file unless a key is configured. */
export function initState(paths: StatePaths, env: NodeJS.ProcessEnv): { createdKey: boolean } {
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  if (env.DATAGRANT_MASTER_KEY || existsSync(paths.keyFile)) return { createdKey: false };
  writeFileSync(paths.keyFile, `${MasterKey.generate()}\n`, { mode: 0o600, flag: 'wx' });
  return { createdKey: true };
}

/**
 * The state store: PostgreSQL when `DATAGRANT_STORE_URL` names one (shared by `serve` replicas),
 * else the SQLite file in the state directory.
 */
export async function openStore(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<StateStore> {
  const key = loadMasterKey(paths, env);
  const url = env.DATAGRANT_STORE_URL;
  if (url) {
    const { openPgStore } = await import('./postgres.js');
    return openPgStore(url, key);
  }
  checkDirectory(paths.dir);
  return new SqliteStore(paths.db, key);
}

/**
 * The state directory holds the sealed credentials, the SCIM identities and usually the master
 * key: like master.key, it must not be open to other users.
 */
function checkDirectory(dir: string): void {
  if (!existsSync(dir)) return;
  const mode = statSync(dir).mode & 0o777;
  if (mode & 0o077) {
    throw new StoreError(`the state directory ${dir} is open to other users (mode ${mode.toString(8)}); run: chmod 700 ${dir}`);
  }
}
