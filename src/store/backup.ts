// `state backup` and `state restore`. A backup is one SQLite file in the SQLite state's own
// tables, with the SCIM identities inside it (an image of scim.db) and a `datagrant_backup` table
// saying what it is: its format, when it was taken, and which store it was taken from. The SQLite
// state is copied with SQLite's online backup API (consistent while serve or an apply writes: a
// copy that a write interrupts starts over); the PostgreSQL store is written into the same tables
// (backup-postgres.ts), so either store restores a backup of either. Secrets stay sealed under the
// master key, which is never in the backup: a backup without its key is useless, and the key
// without a backup recovers nothing either.
import Database from 'better-sqlite3';
import { timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { StoreError } from '../core/errors.js';
import type { MasterKey } from './crypto.js';
import { checkKey, INSTALLATION, KEY_CHECK } from './meta.js';
import type { StatePaths } from './open.js';
import { verifyChain, type AuditHead } from './audit-chain.js';
import { credentialAad, toAudit, type AuditRow, type CredRow } from './rows.js';
import { pidAlive } from './sqlite.js';

/**
 * The table a backup carries beside the state's own: `format`, `taken_at`, `store` (sqlite or
 * postgres; absent in backups from before the PostgreSQL store had backups: sqlite) and `scim`.
 */
export const BACKUP_TABLE = 'datagrant_backup';
export const FORMAT = 'datagrant-sqlite-backup/1';
/** The header row that holds the MAC over everything else in the file. */
const MAC = 'mac';
export type StoreKind = 'sqlite' | 'postgres';

export interface BackupInfo {
  file: string;
  takenAt: string;
  installation: string;
  credentials: number;
  scim: boolean;
  /** The store it was taken from. */
  store: StoreKind;
}

const inside = (dir: string, file: string) => {
  const r = relative(dir, file);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
};

export const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The tables of a SQLite file in a fixed order (by name), SQLite's own left out. */
export const tablesOf = (db: Database.Database) =>
  (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name").all() as { name: string }[]).map(
    (r) => r.name,
  );

export const columnsOf = (db: Database.Database, table: string) => (db.pragma(`table_info(${ident(table)})`) as { name: string }[]).map((c) => c.name);

/** One piece of the canonical form: a tag, the payload's length, the payload. */
function piece(tag: string, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.write(tag, 0, 'latin1');
  head.writeBigUInt64BE(BigInt(payload.length), 1);
  return Buffer.concat([head, payload]);
}

/** A value with its SQLite type: 1 (integer), 1.0 (real), '1' (text) and x'31' (blob) all differ. */
function valuePiece(v: unknown): Buffer {
  if (v === null) return piece('N');
  if (typeof v === 'bigint') return piece('I', Buffer.from(v.toString()));
  if (typeof v === 'number') {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return piece('F', b);
  }
  if (typeof v === 'string') return piece('S', Buffer.from(v, 'utf8'));
  if (Buffer.isBuffer(v)) return piece('B', v);
  throw new StoreError(`a backup holds a value of an unexpected type (${typeof v})`);
}

/**
 * Every row of every table of a backup (the header too, but its MAC) in one unambiguous form:
 * tables by name, each with its column names, its rows sorted on every column in binary order
 * (a row's place depends on nothing but the rows), each value tagged with its type and length.
 * A row added, removed or changed anywhere, or a table dropped, changes it.
 */
function* canonicalForm(db: Database.Database): Generator<Buffer> {
  yield piece('V', Buffer.from('datagrant backup MAC/1'));
  for (const table of tablesOf(db)) {
    const columns = columnsOf(db, table);
    yield piece('T', Buffer.from(table));
    for (const column of columns) yield piece('C', Buffer.from(column));
    const rows = db
      .prepare(
        `SELECT ${columns.map(ident).join(', ')} FROM ${ident(table)}${table === BACKUP_TABLE ? ` WHERE key <> '${MAC}'` : ''} ORDER BY ${columns.map((c) => `${ident(c)} COLLATE BINARY`).join(', ')}`,
      )
      .raw()
      .safeIntegers();
    for (const row of rows.iterate() as IterableIterator<unknown[]>) {
      yield piece('R');
      for (const v of row) yield valuePiece(v);
    }
    yield piece('E');
  }
}

/** Adds to the header the MAC over the whole file: the last write before the file is closed. */
export function sealBackup(db: Database.Database, key: MasterKey): void {
  db.prepare(`INSERT INTO ${BACKUP_TABLE} (key, value) VALUES (?, ?)`).run(MAC, key.backupMac(canonicalForm(db)));
}

/**
 * A backup is kept off-host, where anyone may edit it without the key: a backends row, a journal
 * entry or an installation id written there would steer the restored state (a backend's fromEnv
 * naming DATAGRANT_MASTER_KEY would send the key out at the next plan). Nothing in it is read
 * before its MAC verifies.
 */
function verifyMac(db: Database.Database, header: Map<string, string | Buffer>, key: MasterKey, file: string, tables: Set<string>): void {
  const stored = header.get(MAC);
  if (stored === undefined) {
    throw new StoreError(
      `the backup ${file} carries no MAC (it was made by a datagrant from before backups were authenticated), so nothing in it can be trusted; nothing was changed. Make a new backup with \`datagrant state backup\` from the state it was taken from; if that state is gone, restore this file with the datagrant version that made it, into a fresh state directory, and back that up with this version`,
    );
  }
  const mine = Buffer.from(key.backupMac(canonicalForm(db)));
  const theirs = Buffer.from(stored);
  if (mine.length === theirs.length && timingSafeEqual(mine, theirs)) return;
  // Only to say which: a backup made under another key, or one edited since (nothing else is read).
  if (tables.has('meta')) checkKey(key, meta(db, KEY_CHECK), () => undefined, `the backup ${file}`);
  throw new StoreError(
    `the backup ${file} was changed after it was made: its content does not match its MAC under the master key (the file was edited, or damaged); nothing was changed. Restore another backup`,
  );
}

/** Written beside its final name and renamed into place: a reader never sees half a backup. */
export const tmpBeside = (file: string) => join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);

/** Where a backup goes: an existing file is replaced only with `force`, and its directory must exist. */
export function backupTarget(file: string, force: boolean): void {
  if (existsSync(file) && !force) throw new StoreError(`${file} exists; pass --force to replace it`);
  if (!existsSync(dirname(file))) throw new StoreError(`cannot write the backup ${file}: the directory ${dirname(file)} does not exist`);
}

export function fsyncFile(file: string): void {
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
export async function backupSqlite(
  state: Database.Database,
  paths: StatePaths,
  target: string,
  key: MasterKey,
  o: { force: boolean; now: Date },
): Promise<BackupInfo> {
  const file = resolve(target);
  if (inside(paths.dir, file)) {
    throw new StoreError(`refusing to write the backup ${file} inside the state directory ${paths.dir}: a backup must outlive the directory it copies`);
  }
  backupTarget(file, o.force);
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
      put.run('store', 'sqlite');
      if (scim) put.run('scim', scim);
      sealBackup(copy, key);
      copy.pragma('journal_mode = DELETE');
      const info: BackupInfo = {
        file,
        takenAt: o.now.toISOString(),
        installation: meta(copy, INSTALLATION) ?? '(none)',
        credentials: (copy.prepare('SELECT count(*) AS n FROM credentials').get() as { n: number }).n,
        scim: scim !== undefined,
        store: 'sqlite',
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

/**
 * scim.db as one consistent image (a read transaction while serve's SCIM writes go on). scim.db is
 * in WAL mode, and SQLite opens no in-memory image whose header says WAL: the header's two
 * file-format bytes (offsets 18 and 19) are set back to the rollback journal's.
 */
function serializeScim(file: string): Buffer {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const image = db.serialize();
    image[18] = 1;
    image[19] = 1;
    return image;
  } finally {
    db.close();
  }
}

function meta(db: Database.Database, key: string): string | undefined {
  return (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
}

/** A backup whose format, key, installation and audit chain were checked; close() when done. */
export interface OpenBackup {
  db: Database.Database;
  info: BackupInfo;
  /** The image of scim.db, when the backup has SCIM identities. */
  scim: Buffer | undefined;
  close(): void;
}

/**
 * Opens the backup `source` and checks, before anything is written anywhere, that it is one, that
 * `key` is the key it was made with, that it is of `installation` (the one a KMS-wrapped key names)
 * and that its audit chain verifies under the key: a restore puts back a state that opens.
 */
export function openBackup(source: string, key: MasterKey, o: { installation?: string }): OpenBackup {
  const file = resolve(source);
  if (!existsSync(file)) throw new StoreError(`no backup at ${file}`);
  let db: Database.Database | undefined;
  let tables: Set<string>;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    tables = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
  } catch (e) {
    db?.close();
    throw new StoreError(`${file} is not a datagrant backup (${(e as Error).message}); nothing was changed`);
  }
  const backup = db;
  try {
    const info = tables.has(BACKUP_TABLE)
      ? new Map((backup.prepare(`SELECT key, value FROM ${BACKUP_TABLE}`).all() as { key: string; value: string | Buffer }[]).map((r) => [r.key, r.value]))
      : undefined;
    if (!info || info.get('format') !== FORMAT || !tables.has('meta') || !tables.has('credentials') || !tables.has('audit')) {
      throw new StoreError(`${file} is not a datagrant backup (written by \`datagrant state backup\`); nothing was changed`);
    }
    verifyMac(backup, info, key, file, tables);
    const store = info.get('store') ?? 'sqlite';
    if (store !== 'sqlite' && store !== 'postgres') {
      throw new StoreError(`the backup ${file} was taken from a ${String(store)} store, which this datagrant does not know; nothing was changed`);
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
    const entries = (backup.prepare('SELECT * FROM audit ORDER BY seq').all() as AuditRow[]).map(toAudit);
    const head = tables.has('audit_head') ? (backup.prepare('SELECT seq, hash, mac FROM audit_head WHERE id = 1').get() as AuditHead | undefined) : undefined;
    const chain = verifyChain(key, entries, head);
    if (!chain.ok) {
      throw new StoreError(
        `the audit chain in the backup ${file} does not verify under the master key (entry ${chain.firstBad!.seq}: ${chain.firstBad!.reason}); nothing was changed`,
      );
    }
    const scim = info.get('scim');
    return {
      db: backup,
      scim: Buffer.isBuffer(scim) ? scim : undefined,
      info: {
        file,
        takenAt: String(info.get('taken_at') ?? '(unknown)'),
        installation: installation ?? '(none)',
        credentials: (backup.prepare('SELECT count(*) AS n FROM credentials').get() as { n: number }).n,
        scim: Buffer.isBuffer(scim),
        store,
      },
      close: () => backup.close(),
    };
  } catch (e) {
    backup.close();
    throw e;
  }
}

/**
 * Puts the backup `source` (of either store) in place as the SQLite state of `paths`, after
 * openBackup's checks. A state already there is replaced only with `force`, and never while a
 * live process holds its lock. Returns what was restored.
 */
export async function restoreSqlite(source: string, paths: StatePaths, key: MasterKey, o: { force: boolean; installation?: string }): Promise<BackupInfo> {
  const backup = openBackup(source, key, o);
  try {
    refuseExisting(paths, o.force);
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });

    const stateTmp = tmpBeside(paths.db);
    const scimTmp = tmpBeside(paths.scimDb);
    try {
      await backup.db.backup(stateTmp);
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
      if (backup.scim) {
        const image = new Database(backup.scim);
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
      if (backup.scim) renameSync(scimTmp, paths.scimDb);
      else rmSync(paths.scimDb, { force: true });
    } finally {
      rmSync(stateTmp, { force: true });
      rmSync(scimTmp, { force: true });
    }
    return backup.info;
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
