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
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { StoreError } from '../core/errors.js';
import type { MasterKey } from './crypto.js';
import { checkKey, INSTALLATION, KEY_CHECK } from './meta.js';
import type { StatePaths } from './open.js';
import { verifyChain, type AuditHead } from './audit-chain.js';
import { credentialAad, toAudit, type AuditRow, type CredRow } from './rows.js';
import { createStateTables, LOCK_NAME as STATE_LOCK, LOCK_STALE_MS, pidAlive } from './sqlite.js';

/**
 * The table a backup carries beside the state's own: `format`, `taken_at`, `store` (sqlite or
 * postgres; absent in backups from before the PostgreSQL store had backups: sqlite) and `scim`.
 */
export const BACKUP_TABLE = 'datagrant_backup';
export const FORMAT = 'datagrant-sqlite-backup/1';
export const HEADER_DDL = `CREATE TABLE ${BACKUP_TABLE} (key TEXT PRIMARY KEY, value BLOB NOT NULL)`;
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
  // 0600 before SQLite writes a byte of the state into it (SQLite would create it 0644).
  closeSync(openSync(tmp, 'wx', 0o600));
  try {
    await state.backup(tmp);
    const copy = new Database(tmp);
    try {
      const scim = existsSync(paths.scimDb) ? serializeScim(paths.scimDb) : undefined;
      copy.exec(HEADER_DDL);
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

/** The SCIM store's part, given by the caller (the store layer does not know SCIM's tables). */
export interface ScimSchema {
  /** An empty SCIM database in SQLite: the objects a backup's image of scim.db may hold. */
  emptyImage(): Database.Database;
  /** scim.db at `file`, with the SCIM tables made (and the file, when there is none). */
  openFile(file: string): Database.Database;
}

/** An empty state as this version makes it, with a backup's header: what a backup may hold. */
function emptyBackup(): Database.Database {
  const db = new Database(':memory:');
  createStateTables(db);
  db.exec(HEADER_DDL);
  return db;
}

/** The tables a restore writes, in the order of `tablesOf`; a lock is never the restored state's. */
function restoredTables(reference: Database.Database, skip: readonly string[]): string[] {
  return tablesOf(reference).filter((t) => !skip.includes(t));
}

const objectsOf = (db: Database.Database) =>
  (db.prepare('SELECT type, name, tbl_name FROM sqlite_master').all() as { type: string; name: string; tbl_name: string }[])
    // SQLite's own: statistics (ANALYZE, PRAGMA optimize) read by its query planner only, and the
    // indexes behind a table's UNIQUE and PRIMARY KEY constraints, which a table's own shape names.
    .filter((o) => !(o.type === 'table' && /^sqlite_stat\d$/.test(o.name)) && !(o.type === 'index' && o.name.startsWith('sqlite_autoindex_')))
    .map((o) => `${o.type} ${o.name}${o.tbl_name === o.name ? '' : ` on ${o.tbl_name}`}`);

/**
 * The MAC covers rows, not the schema: a trigger, view or table added to a backup would go
 * unnoticed. A restore copies only datagrant's tables, but a file holding anything datagrant does
 * not make was not written by `state backup` and is refused whole.
 */
function refuseForeignObjects(db: Database.Database, reference: Database.Database, where: string): void {
  const known = new Set(objectsOf(reference));
  const foreign = objectsOf(db).filter((o) => !known.has(o));
  if (foreign.length) {
    throw new StoreError(
      `${where} holds objects datagrant does not make (${foreign.join(', ')}): it was altered after it was made, or is no datagrant backup; nothing was changed`,
    );
  }
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
export function openBackup(source: string, key: MasterKey, o: { installation?: string; scim: ScimSchema }): OpenBackup {
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
    const reference = emptyBackup();
    try {
      refuseForeignObjects(backup, reference, `the backup ${file}`);
    } finally {
      reference.close();
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
    if (Buffer.isBuffer(scim)) {
      const image = new Database(scim);
      const empty = o.scim.emptyImage();
      try {
        refuseForeignObjects(image, empty, `the SCIM identities in the backup ${file}`);
      } finally {
        image.close();
        empty.close();
      }
    }
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
 * openBackup's checks. The rows are written into the state's own files, table by table, in one
 * transaction per file under the state lock, into tables this datagrant made: a serve that keeps
 * them open writes either before the restore (and --force replaces that) or after it (and it is
 * kept), never into a file the restore took away. A state already there is replaced only with
 * `force`, and never while another live process holds its lock. Returns what was restored.
 */
export async function restoreSqlite(
  source: string,
  paths: StatePaths,
  key: MasterKey,
  o: { force: boolean; installation?: string; scim: ScimSchema },
): Promise<BackupInfo> {
  const backup = openBackup(source, key, o);
  const image = backup.scim ? new Database(backup.scim) : o.scim.emptyImage();
  const made: string[] = [];
  let state: Database.Database | undefined;
  let scim: Database.Database | undefined;
  try {
    refuseExisting(paths, o.force);
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
    // Without SCIM identities on either side there is no scim.db to write.
    const withScim = backup.scim !== undefined || existsSync(paths.scimDb);
    // 0600 before a byte is in them; removed again when the restore fails.
    for (const f of withScim ? [paths.db, paths.scimDb] : [paths.db]) {
      if (existsSync(f)) continue;
      closeSync(openSync(f, 'wx', 0o600));
      made.push(f);
    }
    state = openState(paths.db);
    scim = withScim ? o.scim.openFile(paths.scimDb) : undefined;
    const reference = emptyBackup();
    const empty = o.scim.emptyImage();
    const stateTables = restoredTables(reference, [BACKUP_TABLE, 'locks']);
    const scimTableNames = restoredTables(empty, []);
    reference.close();
    empty.close();

    takeLock(state, paths);
    const into = state;
    try {
      into
        .transaction(() => {
          // review_decisions names its review: rows go in table by table, checked at commit.
          into.pragma('defer_foreign_keys = ON');
          copyRows(backup.db, into, stateTables);
          // Checked before scim.db commits, not only at the state's commit.
          const broken = into.pragma('foreign_key_check') as { table: string; parent: string }[];
          if (broken.length) {
            throw new StoreError(`the backup's ${broken[0]!.table} names rows of ${broken[0]!.parent} that it does not hold; nothing was changed`);
          }
          // Committed just before the state's: the two files cannot commit as one.
          if (scim) {
            const target = scim;
            target.transaction(() => copyRows(image, target, scimTableNames)).immediate();
          }
        })
        .immediate();
    } finally {
      into.prepare('DELETE FROM locks WHERE name = ? AND pid = ?').run(STATE_LOCK, process.pid);
    }
    state.close();
    scim?.close();
    return backup.info;
  } catch (e) {
    state?.close();
    scim?.close();
    for (const f of made) for (const suffix of ['', '-wal', '-shm']) rmSync(`${f}${suffix}`, { force: true });
    throw e;
  } finally {
    image.close();
    backup.close();
  }
}

/** The state file as SqliteStore opens it, its tables made as this version has them. */
function openState(file: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    createStateTables(db);
    return db;
  } catch (e) {
    db?.close();
    throw new StoreError(
      `cannot open the state store ${file} to restore into it (${(e as Error).message}); move it away and restore into a fresh state directory`,
    );
  }
}

/**
 * Takes the state lock for the restore, refusing one another live process holds: an apply or a
 * reconcile would go on writing what it read before the restore.
 */
function takeLock(db: Database.Database, paths: StatePaths): void {
  db.transaction(() => {
    const lock = db.prepare('SELECT holder, pid, host, heartbeat_at FROM locks WHERE name = ?').get(STATE_LOCK) as
      { holder: string; pid: number; host: string; heartbeat_at: number } | undefined;
    const live = lock && (lock.host === hostname() ? lock.pid !== process.pid && pidAlive(lock.pid) : Date.now() - lock.heartbeat_at <= LOCK_STALE_MS);
    if (lock && live) {
      throw new StoreError(
        `the state in ${paths.dir} is in use by ${lock.holder} (pid ${lock.pid} on ${lock.host}); stop it before restoring over it; nothing was changed`,
      );
    }
    db.prepare('INSERT OR REPLACE INTO locks (name, holder, pid, host, acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)').run(
      STATE_LOCK,
      'state restore',
      process.pid,
      hostname(),
      new Date().toISOString(),
      Date.now(),
    );
  }).immediate();
}

/**
 * Replaces the rows of each of `tables` in `to` with the backup's (a table the backup lacks, from
 * an older datagrant, is left empty). Only columns `to` has are written: a backup of a newer
 * datagrant with columns this one does not know is refused.
 */
function copyRows(from: Database.Database, to: Database.Database, tables: readonly string[]): void {
  const present = new Set(tablesOf(from));
  for (const table of tables) {
    to.prepare(`DELETE FROM ${ident(table)}`).run();
    if (!present.has(table)) continue;
    const columns = columnsOf(from, table);
    const room = new Set(columnsOf(to, table));
    const unknown = columns.filter((c) => !room.has(c));
    if (unknown.length) {
      throw new StoreError(
        `the backup's ${table} has columns this datagrant does not know (${unknown.join(', ')}; a backup of a newer datagrant?); nothing was changed`,
      );
    }
    const list = columns.map(ident).join(', ');
    const put = to.prepare(`INSERT INTO ${ident(table)} (${list}) VALUES (${columns.map(() => '?').join(', ')})`);
    for (const row of from
      .prepare(`SELECT ${list} FROM ${ident(table)}`)
      .raw()
      .safeIntegers()
      .iterate() as IterableIterator<unknown[]>)
      put.run(...row);
  }
}

/** A state that holds anything is replaced only with --force. */
function refuseExisting(paths: StatePaths, force: boolean): void {
  const present = [paths.db, paths.scimDb].filter((f) => existsSync(f) && statSync(f).size > 0);
  if (present.length === 0 || force) return;
  throw new StoreError(
    `${paths.dir} already holds a state (${present.map((f) => basename(f)).join(', ')}); restore into a fresh state directory, or pass --force to replace it (what it holds is lost)`,
  );
}
