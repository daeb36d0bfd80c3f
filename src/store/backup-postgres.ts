// `state backup` and `state restore` for the PostgreSQL store (DATAGRANT_STORE_URL). A backup is
// read in one REPEATABLE READ, READ ONLY transaction (one snapshot of every table while replicas
// write) into the same file a SQLite backup is (backup.ts): the state's tables in the SQLite
// state's shape, and the SCIM tables as an image of scim.db. A restore writes a backup of either
// store into an empty PostgreSQL store in one transaction, after backup.ts has checked the file
// and the key; a restore that fails leaves the store as it was.
import Database from 'better-sqlite3';
import { closeSync, openSync, renameSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import { StoreError } from '../core/errors.js';
import { redactUrl } from '../core/url.js';
import { verifyChain } from './audit-chain.js';
import {
  BACKUP_TABLE,
  backupTarget,
  columnsOf,
  FORMAT,
  fsyncFile,
  HEADER_DDL,
  ident,
  openBackup,
  sealBackup,
  tablesOf,
  tmpBeside,
  type BackupInfo,
  type ScimSchema,
} from './backup.js';
import type { MasterKey } from './crypto.js';
import { INSTALLATION } from './meta.js';
import { createSchema, LOCK_SPACE, lockKey, TABLES, type PgStore } from './postgres.js';
import { toAudit, type AuditRow } from './rows.js';
import { createStateTables } from './sqlite.js';

/** The SCIM store's part, given by the caller (the store layer does not know SCIM's tables). */
export interface ScimTables extends ScimSchema {
  /** Creates the SCIM tables in a PostgreSQL schema (a restore into a fresh store). */
  createPg(pool: pg.Pool, schema: string): Promise<void>;
}

/** The lock of a process where the backup was taken is not the restored state's. */
const NOT_COPIED = new Set(['locks']);
/** Tables whose rows are no state of their own: what a store has from `init` or a first start. */
const BARE = new Set(['meta', 'locks', 'scim_work']);

type PgColumns = Map<string, { name: string; type: string; identity: boolean }[]>;

async function pgColumns(c: pg.ClientBase, schema: string): Promise<PgColumns> {
  const { rows } = await c.query<{ table_name: string; column_name: string; data_type: string; is_identity: string }>(
    `SELECT table_name, column_name, data_type, is_identity FROM information_schema.columns
     WHERE table_schema = $1 ORDER BY table_name, ordinal_position`,
    [schema],
  );
  const out: PgColumns = new Map();
  for (const r of rows) {
    const list = out.get(r.table_name) ?? [];
    list.push({ name: r.column_name, type: r.data_type, identity: r.is_identity === 'YES' });
    out.set(r.table_name, list);
  }
  return out;
}

const sqliteTables = (db: Database.Database) => tablesOf(db).filter((t) => t !== BACKUP_TABLE);

/** A PostgreSQL value as SQLite stores it: BIGINT comes as a string, BOOLEAN as true/false. */
function toSqlite(type: string, v: unknown): unknown {
  if (v === null) return null;
  if (type === 'bigint') {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : BigInt(v as string);
  }
  if (type === 'boolean') return v ? 1 : 0;
  return v;
}

/** Copies `tables` of the PostgreSQL schema into the same tables of `db`, every column of each. */
async function copyOut(c: pg.ClientBase, schema: string, columns: PgColumns, db: Database.Database, tables: string[]): Promise<void> {
  for (const table of tables) {
    const cols = columns.get(table)!;
    const room = new Set(columnsOf(db, table));
    const lost = cols.filter((col) => !room.has(col.name));
    if (lost.length) {
      throw new StoreError(
        `the column${lost.length > 1 ? 's' : ''} ${lost.map((l) => l.name).join(', ')} of ${schema}.${table} ${lost.length > 1 ? 'have' : 'has'} no place in a backup of this datagrant version; nothing was written`,
      );
    }
    // JSON as the text it is: the SQLite state keeps text.
    const select = cols.map((col) => (col.type === 'jsonb' || col.type === 'json' ? `${ident(col.name)}::text AS ${ident(col.name)}` : ident(col.name)));
    const { rows } = await c.query<Record<string, unknown>>(`SELECT ${select.join(', ')} FROM ${ident(schema)}.${ident(table)}`);
    // OR REPLACE: the SCIM image starts with its own rows of scim_work.
    const put = db.prepare(
      `INSERT OR REPLACE INTO ${ident(table)} (${cols.map((col) => ident(col.name)).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
    );
    db.transaction(() => {
      for (const r of rows) put.run(...cols.map((col) => toSqlite(col.type, r[col.name])));
    })();
  }
}

/**
 * Writes a consistent copy of `store` to `target` (0600, written beside it and renamed into
 * place). An existing file is replaced only with `force`.
 */
export async function backupPg(store: PgStore, target: string, o: { force: boolean; now: Date; scim: ScimTables }): Promise<BackupInfo> {
  const file = resolve(target);
  backupTarget(file, o.force);
  const tmp = tmpBeside(file);
  rmSync(tmp, { force: true });
  // 0600 before a byte of the state is in it.
  closeSync(openSync(tmp, 'wx', 0o600));
  try {
    const state = new Database(tmp);
    const image = o.scim.emptyImage();
    try {
      createStateTables(state);
      const scimTables = sqliteTables(image);
      let scim = false;
      const c = await store.pool.connect();
      try {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const columns = await pgColumns(c, store.schema);
        const stateTables = TABLES.filter((t) => !NOT_COPIED.has(t));
        const unknown = [...columns.keys()].filter((t) => !(TABLES as readonly string[]).includes(t) && !scimTables.includes(t));
        if (unknown.length) {
          throw new StoreError(
            `the schema ${store.schema} holds tables a backup of this datagrant version does not know (${unknown.join(', ')}); nothing was written`,
          );
        }
        await copyOut(c, store.schema, columns, state, stateTables);
        scim = scimTables.every((t) => columns.has(t));
        if (scim) await copyOut(c, store.schema, columns, image, scimTables);
        await c.query('COMMIT');
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      } finally {
        c.release();
      }
      state.exec(HEADER_DDL);
      const put = state.prepare(`INSERT INTO ${BACKUP_TABLE} (key, value) VALUES (?, ?)`);
      put.run('format', FORMAT);
      put.run('taken_at', o.now.toISOString());
      put.run('store', 'postgres');
      if (scim) put.run('scim', image.serialize());
      sealBackup(state, store.masterKey);
      const info: BackupInfo = {
        file,
        takenAt: o.now.toISOString(),
        installation: (state.prepare('SELECT value FROM meta WHERE key = ?').get(INSTALLATION) as { value: string } | undefined)?.value ?? '(none)',
        credentials: (state.prepare('SELECT count(*) AS n FROM credentials').get() as { n: number }).n,
        scim,
        store: 'postgres',
      };
      state.close();
      fsyncFile(tmp);
      renameSync(tmp, file);
      return info;
    } finally {
      if (state.open) state.close();
      image.close();
    }
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** A SQLite value as the PostgreSQL column takes it. */
function toPg(type: string, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (type === 'boolean') return Boolean(v);
  return v;
}

/** Inserts every row of `table` in `db` into the same table of the schema (explicit ids too). */
async function copyIn(c: pg.ClientBase, schema: string, columns: PgColumns, db: Database.Database, table: string): Promise<void> {
  const target = columns.get(table);
  if (!target) {
    throw new StoreError(`the backup holds a table ${table} that this store does not have (a backup of a newer datagrant?); nothing was changed`);
  }
  const types = new Map(target.map((col) => [col.name, col.type]));
  const cols = columnsOf(db, table);
  const missing = cols.filter((col) => !types.has(col));
  if (missing.length) {
    throw new StoreError(
      `the backup's ${table} has columns this store does not have (${missing.join(', ')}; a backup of a newer datagrant?); nothing was changed`,
    );
  }
  const rows = db
    .prepare(`SELECT ${cols.map(ident).join(', ')} FROM ${ident(table)}`)
    .raw()
    .all() as unknown[][];
  // As many rows per statement as PostgreSQL's 65535 parameters allow, at most 500.
  const per = Math.max(1, Math.min(500, Math.floor(60_000 / Math.max(1, cols.length))));
  for (let i = 0; i < rows.length; i += per) {
    const chunk = rows.slice(i, i + per);
    const values: unknown[] = [];
    const tuples = chunk.map((r) => `(${r.map((v, j) => `$${values.push(toPg(types.get(cols[j]!)!, v))}`).join(', ')})`);
    await c.query(`INSERT INTO ${ident(schema)}.${ident(table)} (${cols.map(ident).join(', ')}) OVERRIDING SYSTEM VALUE VALUES ${tuples.join(', ')}`, values);
  }
  // New rows take ids after the restored ones.
  for (const col of target.filter((x) => x.identity)) {
    await c.query(
      `SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max(${ident(col.name)}) FROM ${ident(schema)}.${ident(table)}), 0) + 1, false)`,
      [`${ident(schema)}.${ident(table)}`, col.name],
    );
  }
}

/**
 * Restores the backup `source` (of either store) into the PostgreSQL store at `url`: checked by
 * openBackup before connecting, then written in one transaction into a store that holds no state
 * (one that does is replaced only with `force`, and never while another process holds its state
 * lock). The restored audit chain is verified before the transaction commits.
 */
export async function restorePg(
  source: string,
  url: string,
  key: MasterKey,
  o: { force: boolean; installation?: string; scim: ScimTables; schema?: string },
): Promise<BackupInfo> {
  const schema = o.schema ?? 'datagrant';
  const backup = openBackup(source, key, o);
  const image = backup.scim ? new Database(backup.scim) : undefined;
  const where = `the state store ${redactUrl(url)} (schema ${schema})`;
  let pool: pg.Pool | undefined;
  try {
    pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 10_000, application_name: 'datagrant' });
    pool.on('error', () => undefined);
    try {
      await createSchema(pool, schema);
      await o.scim.createPg(pool, schema);
    } catch (e) {
      throw new StoreError(`cannot open ${where}: ${(e as Error).message}`);
    }
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      const { rows } = await c.query<{ got: boolean }>('SELECT pg_try_advisory_xact_lock($1, $2) AS got', [LOCK_SPACE, lockKey(`${schema}/state`)]);
      if (!rows[0]?.got) {
        throw new StoreError(
          `${where} is in use (another process holds its state lock: an apply, rekey or serve replica); stop it before restoring; nothing was changed`,
        );
      }
      // Replicas that start meanwhile wait, then find the restored key check and installation.
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, lockKey(`${schema}/meta`)]);
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, lockKey(`${schema}/audit`)]);
      const columns = await pgColumns(c, schema);
      const tables = [...columns.keys()];
      const holding: string[] = [];
      for (const t of tables.filter((x) => !BARE.has(x))) {
        if ((await c.query(`SELECT 1 FROM ${ident(schema)}.${ident(t)} LIMIT 1`)).rowCount) holding.push(t);
      }
      if (holding.length && !o.force) {
        throw new StoreError(
          `${where} already holds a state (${holding.join(', ')}); restore into a fresh database or schema, or pass --force to replace it (what it holds is lost); nothing was changed`,
        );
      }
      await c.query(`TRUNCATE ${tables.map((t) => `${ident(schema)}.${ident(t)}`).join(', ')} RESTART IDENTITY`);
      for (const t of sqliteTables(backup.db).filter((x) => !NOT_COPIED.has(x))) await copyIn(c, schema, columns, backup.db, t);
      if (image) for (const t of sqliteTables(image)) await copyIn(c, schema, columns, image, t);

      const entries = (await c.query<AuditRow>(`SELECT * FROM ${ident(schema)}.audit ORDER BY seq`)).rows.map(toAudit);
      const h = (await c.query<{ seq: string; hash: string; mac: string }>(`SELECT seq, hash, mac FROM ${ident(schema)}.audit_head WHERE id = 1`)).rows[0];
      const chain = verifyChain(key, entries, h ? { seq: Number(h.seq), hash: h.hash, mac: h.mac } : undefined);
      if (!chain.ok) {
        throw new StoreError(`the restored audit chain does not verify (entry ${chain.firstBad!.seq}: ${chain.firstBad!.reason}); nothing was changed`);
      }
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
    return backup.info;
  } finally {
    image?.close();
    backup.close();
    await pool?.end().catch(() => undefined);
  }
}
