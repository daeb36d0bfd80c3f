// The SCIM store in SQLite: `scim.db` in the state directory (or a handle given by the caller).
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync } from 'node:fs';
import { textOf } from '../../core/canonical.js';
import { StoreError } from '../../core/errors.js';
import { statementCache } from '../../store/sqlite.js';
import { notFound, preconditionFailed } from '../errors.js';
import type { JsonObject, ResourceType } from '../schemas.js';
import { claimFirst, folded, nameInOrder } from './names.js';
import { duplicate, etag, ifMatchAdmits, Listeners, TABLE, toRecord, uniqueKey, withoutMember, workOf, type Row } from './records.js';
import type { ChangeListener, CreateOptions, ScimRecord, ScimStore, ScimStoreOptions, ScimWork, WriteOptions } from './store.js';

const SQLITE_DDL = `
CREATE TABLE IF NOT EXISTS scim_users (
  id TEXT PRIMARY KEY,
  unique_key TEXT NOT NULL UNIQUE,
  created TEXT NOT NULL,
  last_modified TEXT NOT NULL,
  version INTEGER NOT NULL,
  attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scim_users_order ON scim_users (created, id);
CREATE TABLE IF NOT EXISTS scim_groups (
  id TEXT PRIMARY KEY,
  unique_key TEXT NOT NULL UNIQUE,
  created TEXT NOT NULL,
  last_modified TEXT NOT NULL,
  version INTEGER NOT NULL,
  attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scim_groups_order ON scim_groups (created, id);
CREATE TABLE IF NOT EXISTS scim_principal_names (
  name TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  assigned TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scim_work (
  name TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  at TEXT,
  actor TEXT
) WITHOUT ROWID;
INSERT OR IGNORE INTO scim_work (name, seq) VALUES ('changed', 0), ('reconciled', 0);
`;
// After the column exists (added to tables from before it). Only rows without a name are indexed:
// finding none costs a create nothing. The names' uniqueness is scim_principal_names' key (every
// name set on a user was claimed there first), so users.principal needs no index of its own.
const SQLITE_PRINCIPAL_DDL = `
CREATE INDEX IF NOT EXISTS scim_users_unnamed ON scim_users (created, id) WHERE principal IS NULL;
`;

export class SqliteScimStore implements ScimStore {
  readonly db: Database.Database;
  private readonly owned: boolean;
  private readonly listeners = new Listeners();
  private readonly now: () => Date;
  private readonly newId: () => string;
  private readonly sql: (text: string) => Database.Statement;

  /** `db` is an open better-sqlite3 handle (the state store's) or a file path (`:memory:` for tests). */
  constructor(db: Database.Database | string, opts: ScimStoreOptions = {}) {
    this.owned = typeof db === 'string';
    const fresh = typeof db === 'string' && db !== ':memory:' && !existsSync(db);
    try {
      this.db = typeof db === 'string' ? new Database(db) : db;
      // Names and e-mail addresses: readable by the owner only, like the state store.
      if (fresh) chmodSync(db, 0o600);
      // A file of its own gets the state store's settings (WAL, synchronous NORMAL: a commit
      // survives a crash of the process; the last ones may be lost on power failure).
      if (this.owned) {
        this.db.pragma('journal_mode = WAL');
        this.db.pragma('synchronous = NORMAL');
      }
      this.db.pragma('busy_timeout = 5000');
      // One write transaction: the server and the reconciler thread open the same file at once.
      this.db
        .transaction(() => {
          this.db.exec(SQLITE_DDL);
          const columns = this.db.prepare('SELECT name FROM pragma_table_info(?)').all('scim_users') as { name: string }[];
          if (!columns.some((c) => c.name === 'principal')) this.db.exec('ALTER TABLE scim_users ADD COLUMN principal TEXT');
          this.db.exec(SQLITE_PRINCIPAL_DDL);
        })
        .immediate();
    } catch (e) {
      throw new StoreError(`cannot open the SCIM tables: ${(e as Error).message}`);
    }
    this.now = opts.now ?? (() => new Date());
    this.newId = opts.newId ?? randomUUID;
    this.sql = statementCache(this.db);
    this.createTx = this.db.transaction((type: ResourceType, id: string, at: string, attrs: JsonObject, reserved: ReadonlySet<string>) =>
      this.createIn(type, id, at, attrs, reserved),
    );
    this.updateTx = this.db.transaction((type: ResourceType, id: string, change: (current: ScimRecord) => JsonObject, opts: WriteOptions) =>
      this.updateIn(type, id, change, opts),
    );
  }

  private row(type: ResourceType, id: string): Row | undefined {
    return this.sql(`SELECT * FROM ${TABLE[type]} WHERE id = ?`).get(id) as Row | undefined;
  }

  async get(type: ResourceType, id: string): Promise<ScimRecord | undefined> {
    const r = this.row(type, id);
    return r && toRecord(type, r);
  }

  async list(type: ResourceType): Promise<ScimRecord[]> {
    return (this.sql(`SELECT * FROM ${TABLE[type]} ORDER BY created, id`).all() as Row[]).map((r) => toRecord(type, r));
  }

  async findByKey(type: ResourceType, key: string): Promise<ScimRecord | undefined> {
    const r = this.sql(`SELECT * FROM ${TABLE[type]} WHERE unique_key = ?`).get(key.toLowerCase()) as Row | undefined;
    return r && toRecord(type, r);
  }

  async existing(type: ResourceType, ids: string[]): Promise<Set<string>> {
    const stmt = this.sql(`SELECT 1 FROM ${TABLE[type]} WHERE id = ?`);
    return new Set(ids.filter((id) => stmt.get(id) !== undefined));
  }

  async getMany(type: ResourceType, ids: string[]): Promise<ScimRecord[]> {
    if (!ids.length) return [];
    const rows = this.sql(`SELECT * FROM ${TABLE[type]} WHERE id IN (SELECT value FROM json_each(?)) ORDER BY created, id`).all(JSON.stringify(ids)) as Row[];
    return rows.map((r) => toRecord(type, r));
  }

  async hasUnnamedUsers(): Promise<boolean> {
    return this.sql('SELECT 1 FROM scim_users WHERE principal IS NULL LIMIT 1').get() !== undefined;
  }

  private insertUnique(fn: () => void, type: ResourceType, attrs: JsonObject): void {
    try {
      fn();
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw duplicate(type, attrs);
      throw e;
    }
  }

  async create(type: ResourceType, attrs: JsonObject, opts: CreateOptions = {}): Promise<ScimRecord> {
    const id = this.newId();
    const at = this.now().toISOString();
    const principal = this.createTx.immediate(type, id, at, attrs, folded(opts.reservedNames));
    this.listeners.emit({ type, id, action: 'create' });
    return { type, id, attrs, created: at, lastModified: at, version: etag(1), ...(principal ? { principal } : {}) };
  }

  /** Built once, like updateTx. */
  private readonly createTx: Database.Transaction<
    (type: ResourceType, id: string, at: string, attrs: JsonObject, reserved: ReadonlySet<string>) => string | undefined
  >;

  private createIn(type: ResourceType, id: string, at: string, attrs: JsonObject, reserved: ReadonlySet<string>): string | undefined {
    let name: string | undefined;
    if (type === 'User') {
      // Older rows first, so that they get the names they would have had.
      this.nameUnnamed(reserved, at);
      const claim = this.sql('INSERT INTO scim_principal_names (name, user_id, assigned) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING');
      name = claimFirst(textOf(attrs.userName), reserved, (n) => claim.run(n, id, at).changes === 1);
    }
    this.insertUnique(
      () =>
        this.sql(
          `INSERT INTO ${TABLE[type]} (id, unique_key, created, last_modified, version, attrs${name ? ', principal' : ''}) VALUES (?, ?, ?, ?, 1, ?${name ? ', ?' : ''})`,
        ).run(id, uniqueKey(type, attrs), at, at, JSON.stringify(attrs), ...(name ? [name] : [])),
      type,
      attrs,
    );
    this.changed(at);
    return name;
  }

  /** Inside a write's transaction: the write is pending work until a reconcile covers it. */
  private changed(at: string): void {
    this.sql(`UPDATE scim_work SET seq = seq + 1, at = ? WHERE name = 'changed'`).run(at);
  }

  async work(): Promise<ScimWork> {
    const rows = this.sql('SELECT name, seq FROM scim_work').all() as { name: string; seq: number }[];
    return workOf(rows);
  }

  async markReconciled(seq: number, actor: string): Promise<void> {
    this.sql(`UPDATE scim_work SET seq = ?, at = ?, actor = ? WHERE name = 'reconciled' AND seq < ?`).run(seq, this.now().toISOString(), actor, seq);
  }

  private nameUnnamed(reserved: ReadonlySet<string>, at: string): void {
    const unnamed = this.sql(
      `SELECT id, json_extract(attrs, '$.userName') AS user_name FROM scim_users WHERE principal IS NULL ORDER BY COALESCE(json_extract(attrs, '$.active'), 1) = 0, created, id`,
    ).all() as { id: string; user_name: string | null }[];
    if (!unnamed.length) return;
    const taken = new Set((this.sql('SELECT name FROM scim_principal_names').all() as { name: string }[]).map((r) => r.name));
    const record = this.sql('INSERT INTO scim_principal_names (name, user_id, assigned) VALUES (?, ?, ?)');
    const set = this.sql('UPDATE scim_users SET principal = ? WHERE id = ?');
    for (const { id, name } of nameInOrder(unnamed, taken, reserved)) {
      record.run(name, id, at);
      set.run(name, id);
    }
  }

  async assignPrincipalNames(reserved: Iterable<string>): Promise<void> {
    const names = folded(reserved);
    this.db.transaction(() => this.nameUnnamed(names, this.now().toISOString())).immediate();
  }

  async principalOwners(names: Iterable<string>): Promise<Map<string, string>> {
    const rows = this.sql('SELECT name, user_id FROM scim_principal_names WHERE name IN (SELECT value FROM json_each(?))').all(
      JSON.stringify([...folded(names)]),
    ) as { name: string; user_id: string }[];
    return new Map(rows.map((r) => [r.name, r.user_id]));
  }

  /** Built once: better-sqlite3 makes five wrapper functions on every call to transaction(). */
  private readonly updateTx: Database.Transaction<
    (type: ResourceType, id: string, change: (current: ScimRecord) => JsonObject, opts: WriteOptions) => ScimRecord
  >;

  async update(type: ResourceType, id: string, change: (current: ScimRecord) => JsonObject, opts: WriteOptions = {}): Promise<ScimRecord> {
    const rec = this.updateTx.immediate(type, id, change, opts);
    this.listeners.emit({ type, id, action: 'update' });
    return rec;
  }

  private updateIn(type: ResourceType, id: string, change: (current: ScimRecord) => JsonObject, opts: WriteOptions): ScimRecord {
    const r = this.row(type, id);
    if (!r) throw notFound(`${type} ${id} not found`);
    const current = toRecord(type, r);
    if (!ifMatchAdmits(opts.ifMatch, current.version)) throw preconditionFailed(`If-Match does not match the current version ${current.version}`);
    const attrs = change(current);
    const at = this.now().toISOString();
    const version = Number(r.version) + 1;
    this.insertUnique(
      () =>
        this.sql(`UPDATE ${TABLE[type]} SET unique_key = ?, last_modified = ?, version = ?, attrs = ? WHERE id = ?`).run(
          uniqueKey(type, attrs),
          at,
          version,
          JSON.stringify(attrs),
          id,
        ),
      type,
      attrs,
    );
    this.changed(at);
    return { type, id, attrs, created: current.created, lastModified: at, version: etag(version) };
  }

  async delete(type: ResourceType, id: string, opts: WriteOptions = {}): Promise<void> {
    const touched: string[] = [];
    const tx = this.db.transaction(() => {
      const r = this.row(type, id);
      if (!r) throw notFound(`${type} ${id} not found`);
      if (!ifMatchAdmits(opts.ifMatch, etag(Number(r.version))))
        throw preconditionFailed(`If-Match does not match the current version ${etag(Number(r.version))}`);
      // A user's principal name stays in scim_principal_names: no other identity ever gets it.
      this.sql(`DELETE FROM ${TABLE[type]} WHERE id = ?`).run(id);
      // Memberships of the deleted resource go with it (groups may hold users or groups).
      const at = this.now().toISOString();
      const groups = this.sql(`SELECT * FROM scim_groups WHERE instr(attrs, ?) > 0`).all(JSON.stringify(id)) as Row[];
      for (const g of groups) {
        const next = withoutMember(toRecord('Group', g).attrs, id);
        if (!next) continue;
        this.sql(`UPDATE scim_groups SET attrs = ?, last_modified = ?, version = version + 1 WHERE id = ?`).run(JSON.stringify(next), at, g.id);
        touched.push(g.id);
      }
      this.changed(at);
    });
    tx.immediate();
    this.listeners.emit({ type, id, action: 'delete' });
    for (const g of touched) this.listeners.emit({ type: 'Group', id: g, action: 'update' });
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  async close(): Promise<void> {
    if (this.owned) this.db.close();
  }
}
