// state backup | restore, for either store; a backup of either restores into either.
import { resolve } from 'node:path';
import { UsageError } from '../../core/errors.js';
import { backupSqlite, restoreSqlite, type BackupInfo } from '../../store/backup.js';
import { keyConfigured, masterKeyFor } from '../../store/open.js';
import { SqliteStore } from '../../store/sqlite.js';
import { actorOf, pathsFor, withStore, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';

const what = (info: BackupInfo) => `the state of installation ${info.installation} (${info.credentials} credentials${info.scim ? ', SCIM identities' : ''})`;

export async function stateBackup(io: Io, opts: CommonOptions & { file: string; force?: boolean }): Promise<number> {
  const paths = pathsFor(io, opts);
  const now = io.now();
  const target = resolve(io.cwd, opts.file);
  // Opening the store checks the key first: a backup the configured key cannot read is no backup.
  const info = await withStore(io, opts, async (store) => {
    let made: BackupInfo;
    if (store instanceof SqliteStore) {
      made = await backupSqlite(store.db, paths, target, store.masterKey, { force: opts.force ?? false, now });
    } else {
      // Loaded only here: the SQLite path never loads the PostgreSQL client.
      const [{ backupPg }, { PgStore }, { scimTables }] = await Promise.all([
        import('../../store/backup-postgres.js'),
        import('../../store/postgres.js'),
        import('../../scim/store/backup.js'),
      ]);
      if (!(store instanceof PgStore)) throw new UsageError('state backup knows the SQLite and the PostgreSQL store only');
      made = await backupPg(store, target, { force: opts.force ?? false, now, scim: scimTables });
    }
    await store.audit({ actor: actorOf(io), event: 'state.backup', address: null, outcome: 'ok', detail: `to ${made.file}` }, now.toISOString());
    return made;
  });
  io.stdout(
    `Backed up ${what(info)}${info.store === 'postgres' ? ' from PostgreSQL' : ''} to ${info.file} (mode 0600).\n` +
      'Its secrets stay encrypted; the master key is not in it, but it is sealed under the key (an edited copy does not restore).\n' +
      'Keep the key somewhere else: a restore needs both.\n',
  );
  return 0;
}

export async function stateRestore(io: Io, opts: CommonOptions & { file: string; force?: boolean }): Promise<number> {
  const paths = pathsFor(io, opts);
  if (!keyConfigured(paths, io.env)) {
    throw new UsageError(
      `state restore needs the master key the backup was made with: put it in ${paths.keyFile} (mode 0600) or DATAGRANT_MASTER_KEY, or its KMS-wrapped copy in ${paths.kmsKeyFile}; \`datagrant init\` would make a new key, which cannot read the backup`,
    );
  }
  const { key, source } = await masterKeyFor(paths, io.env);
  const o = { force: opts.force ?? false, ...(source.kind === 'kms' ? { installation: source.wrapped.kms.installation } : {}) };
  const file = resolve(io.cwd, opts.file);
  const url = io.env.DATAGRANT_STORE_URL;
  let info: BackupInfo;
  if (url) {
    const [{ restorePg }, { scimTables }] = await Promise.all([import('../../store/backup-postgres.js'), import('../../scim/store/backup.js')]);
    info = await restorePg(file, url, key, { ...o, scim: scimTables });
  } else {
    const { scimTables } = await import('../../scim/store/backup.js');
    info = await restoreSqlite(file, paths, key, { ...o, scim: scimTables });
  }
  await withStore(io, opts, (store) =>
    store.audit(
      { actor: actorOf(io), event: 'state.restored', address: null, outcome: 'ok', detail: `from ${info.file}, taken at ${info.takenAt}` },
      io.now().toISOString(),
    ),
  );
  const from = info.store === (url ? 'postgres' : 'sqlite') ? '' : ` (taken from the ${info.store === 'postgres' ? 'PostgreSQL' : 'SQLite'} store)`;
  io.stdout(
    `Restored ${what(info)} from the backup taken at ${info.takenAt}${from} into ${url ? 'the PostgreSQL store (DATAGRANT_STORE_URL)' : paths.dir}.\n` +
      'Run `datagrant plan`: changes made since the backup show there, and apply brings the backends back in line.\n',
  );
  return 0;
}
