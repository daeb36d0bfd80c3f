// state backup | restore.
import { resolve } from 'node:path';
import { UsageError } from '../../core/errors.js';
import { backupSqlite, restoreSqlite } from '../../store/backup.js';
import { keyConfigured, masterKeyFor } from '../../store/open.js';
import { SqliteStore } from '../../store/sqlite.js';
import { actorOf, pathsFor, withStore, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';

/**
 * The PostgreSQL store is backed up with PostgreSQL's own tools: pg_dump takes one consistent
 * snapshot of the schema while replicas write, and pg_restore puts it back with its types,
 * sequences and constraints; a second dump format of our own would only be less tested.
 */
function pgRefusal(verb: 'backup' | 'restore', env: NodeJS.ProcessEnv): UsageError | undefined {
  if (!env.DATAGRANT_STORE_URL) return undefined;
  return new UsageError(
    verb === 'backup'
      ? 'the state is in PostgreSQL (DATAGRANT_STORE_URL): back it up with `pg_dump --format=custom --schema=datagrant --file FILE URL` (one consistent snapshot while serve runs; see docs/operations.md). Secrets stay sealed under the master key, which is not in the dump.'
      : 'the state is in PostgreSQL (DATAGRANT_STORE_URL): restore a dump with `pg_restore --dbname URL FILE` into a database without a datagrant schema, then run `datagrant plan` with the same master key (see docs/operations.md)',
  );
}

export async function stateBackup(io: Io, opts: CommonOptions & { file: string; force?: boolean }): Promise<number> {
  const refusal = pgRefusal('backup', io.env);
  if (refusal) throw refusal;
  const paths = pathsFor(io, opts);
  const now = io.now();
  // Opening the store checks the key first: a backup the configured key cannot read is no backup.
  const info = await withStore(io, opts, async (store) => {
    if (!(store instanceof SqliteStore)) throw pgRefusal('backup', { DATAGRANT_STORE_URL: 'set' })!;
    const made = await backupSqlite(store.db, paths, resolve(io.cwd, opts.file), { force: opts.force ?? false, now });
    await store.audit({ actor: actorOf(io), event: 'state.backup', address: null, outcome: 'ok', detail: `to ${made.file}` }, now.toISOString());
    return made;
  });
  io.stdout(
    `Backed up the state of installation ${info.installation} (${info.credentials} credentials${info.scim ? ', SCIM identities' : ''}) to ${info.file} (mode 0600).\n` +
      'Its secrets stay encrypted; the master key is not in it. Keep the key somewhere else: a restore needs both.\n',
  );
  return 0;
}

export async function stateRestore(io: Io, opts: CommonOptions & { file: string; force?: boolean }): Promise<number> {
  const refusal = pgRefusal('restore', io.env);
  if (refusal) throw refusal;
  const paths = pathsFor(io, opts);
  if (!keyConfigured(paths, io.env)) {
    throw new UsageError(
      `state restore needs the master key the backup was made with: put it in ${paths.keyFile} (mode 0600) or DATAGRANT_MASTER_KEY, or its KMS-wrapped copy in ${paths.kmsKeyFile}; \`datagrant init\` would make a new key, which cannot read the backup`,
    );
  }
  const { key, source } = await masterKeyFor(paths, io.env);
  const info = await restoreSqlite(resolve(io.cwd, opts.file), paths, key, {
    force: opts.force ?? false,
    ...(source.kind === 'kms' ? { installation: source.wrapped.kms.installation } : {}),
  });
  await withStore(io, opts, (store) =>
    store.audit(
      { actor: actorOf(io), event: 'state.restored', address: null, outcome: 'ok', detail: `from ${info.file}, taken at ${info.takenAt}` },
      io.now().toISOString(),
    ),
  );
  io.stdout(
    `Restored the state of installation ${info.installation} (${info.credentials} credentials${info.scim ? ', SCIM identities' : ''}) from the backup taken at ${info.takenAt} into ${paths.dir}.\n` +
      'Run `datagrant plan`: changes made since the backup show there, and apply brings the backends back in line.\n',
  );
  return 0;
}
