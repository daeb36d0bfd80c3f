// `state backup` and `state restore` for the SQLite state. A backup is the state database itself,
// copied with SQLite's online backup API (consistent while serve or an apply writes: a copy that a
// write interrupts starts over), with the SCIM identities (scim.db) stored inside it. Secrets stay
// sealed under the master key, which is never in the backup: a backup without its key is useless,
// and the key without a backup recovers nothing either.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { StoreError } from '../core/errors.js';
import type { MasterKey } from './crypto.js';
import { checkKey, INSTALLATION, KEY_CHECK } from './meta.js';
import type { StatePaths } from './open.js';
import { credentialAad, type CredRow } from './rows.js';
import { pidAlive } from './sqlite.js';

/** The table a backup carries beside the state's own: what it is, when it was taken, scim.db. */
const BACKUP_TABLE = 'datagrant_backup';
const FORMAT = 'datagrant-sqlite-backup/1';

export interface BackupInfo {
  file: string;
  takenAt: string;
  installation: string;
  credentials: number;
  scim: boolean;
}

const inside = (dir: string, file: string) => {
  const r = relative(dir, file);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
};

/** Written beside its final name and renamed into place: a reader never sees half a backup. */
const tmpBeside = (file: string) => join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);

function fsyncFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Copies the state (`state`, an open connection to state.db) and scim.db to `target`. Refuses a
 * target inside the state directory (a backup must survive losing it) and an existing file
 * unless `force`.
 */
export async function backupSqlite(state: Database.Database, paths: StatePaths, target: string, o: { force: boolean; now: Date }): Promise<BackupInfo> {
  const file = resolve(target);
  if (inside(paths.dir, file)) {
    throw new StoreError(`refusing to write the backup ${file} inside the state directory ${paths.dir}: a backup must outlive the directory it copies`);
  }
  if (existsSync(file) && !o.force) throw new StoreError(`${file} exists; pass --force to replace it`);
  if (!existsSync(dirname(file))) throw new StoreError(`cannot write the backup ${file}: the directory ${dirname(file)} does not exist`);
  const tmp = tmpBeside(file);
  rmSync(tmp, { force: true });
  try {
    await state.backup(tmp);
    chmodSync(tmp, 0o600);
    const copy = new Database(tmp);
    try {
      const scim = existsSync(paths.scimDb) ? serializeScim(paths.scimDb) : undefined;
      copy.exec(`CREATE TABLE ${BACKUP_TABLE} (key TEXT PRIMARY KEY, value BLOB NOT NULL)`);
      const put = copy.prepare(`INSERT INTO ${BACKUP_TABLE} (key, value) VALUES (?, ?)`);
      put.run('format', FORMAT);
      put.run('taken_at', o.now.toISOString());
      if (scim) put.run('scim', scim);
      copy.pragma('journal_mode = DELETE');
      const info: BackupInfo = {
        file,
        takenAt: o.now.toISOString(),
        installation: meta(copy, INSTALLATION) ?? '(none)',
        credentials: (copy.prepare('SELECT count(*) AS n FROM credentials').get() as { n: number }).n,
        scim: scim !== undefined,
      };
      copy.close();
      fsyncFile(tmp);
      renameSync(tmp, file);
      return info;
    } finally {
      if (copy.open) copy.close();
    }
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** scim.db as one consistent image (a read transaction while serve's SCIM writes go on). */
function serializeScim(file: string): Buffer {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.serialize();
  } finally {
    db.close();
  }
}

function meta(db: Database.Database, key: string): string | undefined {
  return (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
}

/**
 * Puts the backup `source` in place as the state of `paths`, after checking that `key` is the
 * key it was made with (before anything is written). A state already there is replaced only with
 * `force`, and never while a live process holds its lock. Returns what was restored.
 */
export async function restoreSqlite(source: string, paths: StatePaths, key: MasterKey, o: { force: boolean; installation?: string }): Promise<BackupInfo> {
  const file = resolve(source);
  if (!existsSync(file)) throw new StoreError(`no backup at ${file}`);
  let backup: Database.Database | undefined;
  let tables: Set<string>;
  try {
    backup = new Database(file, { readonly: true, fileMustExist: true });
    tables = new Set((backup.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
  } catch (e) {
    backup?.close();
    throw new StoreError(`${file} is not a datagrant backup (${(e as Error).message}); nothing was changed`);
  }
  try {
    const info = tables.has(BACKUP_TABLE)
      ? new Map((backup.prepare(`SELECT key, value FROM ${BACKUP_TABLE}`).all() as { key: string; value: string | Buffer }[]).map((r) => [r.key, r.value]))
      : undefined;
    if (!info || info.get('format') !== FORMAT || !tables.has('meta') || !tables.has('credentials')) {
      throw new StoreError(`${file} is not a datagrant backup (written by \`datagrant state backup\`); nothing was changed`);
    }
    const opensSample = () => {
      const r = backup.prepare('SELECT * FROM credentials LIMIT 1').get() as CredRow | undefined;
      if (!r) return undefined;
      try {
        key.open({ nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag }, credentialAad(r.address, r.credential_id));
        return true;
      } catch {
        return false;
      }
    };
    checkKey(key, meta(backup, KEY_CHECK), opensSample, `the backup ${file}`);
    const installation = meta(backup, INSTALLATION);
    if (o.installation !== undefined && installation !== o.installation) {
      throw new StoreError(
        `the backup ${file} is of installation ${installation}, but the KMS-wrapped key names installation ${o.installation}; nothing was changed`,
      );
    }
    refuseExisting(paths, o.force);
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });

    const stateTmp = tmpBeside(paths.db);
    const scimTmp = tmpBeside(paths.scimDb);
    try {
      await backup.backup(stateTmp);
      const copy = new Database(stateTmp);
      try {
        copy.exec(`DROP TABLE ${BACKUP_TABLE}`);
        // The lock of the process that was running where the backup was taken is not ours.
        copy.exec('DELETE FROM locks');
      } finally {
        copy.close();
      }
      chmodSync(stateTmp, 0o600);
      fsyncFile(stateTmp);
      const scim = info.get('scim');
      if (Buffer.isBuffer(scim)) {
        const image = new Database(scim);
        try {
          await image.backup(scimTmp);
        } finally {
          image.close();
        }
        chmodSync(scimTmp, 0o600);
        fsyncFile(scimTmp);
      }
      // A WAL left by the state being replaced would be replayed over the restored file.
      for (const db of [paths.db, paths.scimDb]) for (const suffix of ['-wal', '-shm']) rmSync(`${db}${suffix}`, { force: true });
      renameSync(stateTmp, paths.db);
      if (Buffer.isBuffer(scim)) renameSync(scimTmp, paths.scimDb);
      else rmSync(paths.scimDb, { force: true });
    } finally {
      rmSync(stateTmp, { force: true });
      rmSync(scimTmp, { force: true });
    }
    return {
      file,
      takenAt: String(info.get('taken_at') ?? '(unknown)'),
      installation: meta(backup, INSTALLATION) ?? '(none)',
      credentials: (backup.prepare('SELECT count(*) AS n FROM credentials').get() as { n: number }).n,
      scim: Buffer.isBuffer(info.get('scim')),
    };
  } finally {
    backup.close();
  }
}

/** A state that holds anything is replaced only with --force, and never under a live lock. */
function refuseExisting(paths: StatePaths, force: boolean): void {
  const present = [paths.db, paths.scimDb].filter((f) => existsSync(f) && statSync(f).size > 0);
  if (present.length === 0) return;
  if (!force) {
    throw new StoreError(
      `${paths.dir} already holds a state (${present.map((f) => basename(f)).join(', ')}); restore into a fresh state directory, or pass --force to replace it (what it holds is lost)`,
    );
  }
  if (!existsSync(paths.db)) return;
  const db = new Database(paths.db, { readonly: true, fileMustExist: true });
  try {
    const hasLocks = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'locks'").get();
    const lock = hasLocks ? (db.prepare('SELECT holder, pid, host FROM locks').get() as { holder: string; pid: number; host: string } | undefined) : undefined;
    // On another host a lock row proves nothing about a live holder; here it does.
    if (lock && lock.host === hostname() && lock.pid !== process.pid && pidAlive(lock.pid)) {
      throw new StoreError(`the state in ${paths.dir} is in use by ${lock.holder} (pid ${lock.pid} on ${lock.host}); stop it before restoring over it`);
    }
  } finally {
    db.close();
  }
}
