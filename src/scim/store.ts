// Where SCIM identities live: the `scim_users` and `scim_groups` tables of the state store, in
// SQLite (default) or PostgreSQL (DATAGRANT_STORE_URL, shared by `serve` replicas). A resource is
// its attribute set as JSON plus columns the protocol needs: created/lastModified, a version
// counter (meta.version is the weak ETag W/"<n>", bumped by every write), and the folded unique
// key (userName for users, displayName for groups) under a UNIQUE index, so a duplicate is refused
// by the database even when two replicas race. Every write is one transaction that re-reads the
// row, checks If-Match, runs the caller's change and writes it: a request that fails stores nothing.
//
// A user also has a principal name (its IAM user and PostgreSQL role), given in the transaction
// that creates it and never changed (see identities.ts). `scim_principal_names` holds every name
// ever given, with its user: deleting the user leaves the row, so a name never passes to another
// identity. Rows from before names were stored get theirs from assignPrincipalNames.
//
// Pending work. An IdP that got its 200 never sends the change again, so a change must outlive the
// replica that accepted it. `scim_work` holds two sequence numbers: `changed`, bumped by every
// write in the write's own transaction (last, so its row lock is held only until the commit, and
// the numbers follow commit order), and `reconciled`, the `changed` a reconcile read before the
// identities and then applied successfully. While reconciled < changed, work is pending, whichever
// replica took the write: every replica polls the two and reconciles until they meet.
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync } from 'node:fs';
import { redactUrl } from '../core/url.js';
import Database from 'better-sqlite3';
import pg from 'pg';
import { StoreError } from '../core/errors.js';
import type { StatePaths } from '../store/open.js';
import { statementCache } from '../store/sqlite.js';
import { notFound, preconditionFailed, ScimError, uniqueness } from './errors.js';
import { principalNameCandidates } from './identities.js';
import type { JsonObject, ResourceType } from './schemas.js';
import { textOf } from '../core/canonical.js';

export interface ScimRecord {
  type: ResourceType;
  id: string;
  /** Attributes as stored: canonical names, no id/meta/schemas; the enterprise extension under its URN. */
  attrs: JsonObject;
  created: string;
  lastModified: string;
  /** Weak ETag, `W/"<n>"`. */
  version: string;
  /** Users only: the principal name given at creation, the user's for ever. */
  principal?: string;
}

export interface ScimChange {
  type: ResourceType;
  id: string;
  action: 'create' | 'update' | 'delete';
}
export type ChangeListener = (change: ScimChange) => void;

/** How far SCIM writes and reconciles have got: work is pending while `reconciled` < `changed`. */
export interface ScimWork {
  changed: number;
  reconciled: number;
}

export interface CreateOptions {
  /** Principal names the spec defines now: a new user never gets one (compared case-insensitively). */
  reservedNames?: Iterable<string>;
}

export interface WriteOptions {
  /** The request's If-Match: `*` or a list of ETags; a mismatch is 412 and nothing is written. */
  ifMatch?: string;
}

export interface ScimStore {
  get(type: ResourceType, id: string): Promise<ScimRecord | undefined>;
  /** All resources of a type, oldest first (created, then id): the stable order of list pages. */
  list(type: ResourceType): Promise<ScimRecord[]>;
  /** The resource whose unique key (userName / displayName) equals `key`, case-insensitively. */
  findByKey(type: ResourceType, key: string): Promise<ScimRecord | undefined>;
  /** Which of `ids` name an existing resource of `type`. */
  existing(type: ResourceType, ids: string[]): Promise<Set<string>>;
  /** The resources of `ids` that exist, oldest first (created, then id). */
  getMany(type: ResourceType, ids: string[]): Promise<ScimRecord[]>;
  /** Whether some user has no principal name yet (a row from before names were stored). */
  hasUnnamedUsers(): Promise<boolean>;
  /**
   * 409 uniqueness if the unique key is taken. A user gets its principal name in the same
   * transaction: the first candidate never given to any user and not in `reservedNames`.
   */
  create(type: ResourceType, attrs: JsonObject, opts?: CreateOptions): Promise<ScimRecord>;
  /** Read, change and write one resource in one transaction; `change` may throw a ScimError to abort. */
  update(type: ResourceType, id: string, change: (current: ScimRecord) => JsonObject, opts?: WriteOptions): Promise<ScimRecord>;
  /** Deleting a user also removes it from every group, in the same transaction. */
  delete(type: ResourceType, id: string, opts?: WriteOptions): Promise<void>;
  /**
   * Name every user that has no principal name yet (rows from before names were stored), once,
   * in creation order, as if each were created then: never a name in `reserved` or ever given.
   */
  assignPrincipalNames(reserved: Iterable<string>): Promise<void>;
  /** Which of `names` were ever given to a user, deleted ones included: lowercased name → user id. */
  principalOwners(names: Iterable<string>): Promise<Map<string, string>>;
  /** The pending-work marker (also how `serve` learns the store answers). */
  work(): Promise<ScimWork>;
  /**
   * A reconcile that read `changed` = `seq` before reading the identities has applied them:
   * record it, with who did it. Never moves back (a slower run that read less records nothing).
   */
  markReconciled(seq: number, actor: string): Promise<void>;
  /** Called after every committed write; returns a function that unsubscribes. */
  onChange(listener: ChangeListener): () => void;
  close(): Promise<void>;
}

export interface ScimStoreOptions {
  /** The clock (tests pass a fixed one). */
  now?: () => Date;
  /** Id generator (tests pass a deterministic one). Default: random UUIDs. */
  newId?: () => string;
}

const TABLE: Record<ResourceType, string> = { User: 'scim_users', Group: 'scim_groups' };

export function uniqueKey(type: ResourceType, attrs: JsonObject): string {
  const v = type === 'User' ? attrs.userName : attrs.displayName;
  return textOf(v).toLowerCase();
}

/** Whether an If-Match header value admits `version` (weak comparison, RFC 7232 §2.3.2). */
export function ifMatchAdmits(ifMatch: string | undefined, version: string): boolean {
  if (ifMatch === undefined) return true;
  const opaque = (tag: string) => tag.trim().replace(/^W\//i, '');
  const tags = ifMatch
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  return tags.some((t) => t === '*' || opaque(t) === opaque(version));
}

const etag = (n: number) => `W/"${n}"`;

const folded = (names: Iterable<string> | undefined) => new Set([...(names ?? [])].map((n) => n.toLowerCase()));

/** The first of `userName`'s candidate names outside `reserved` that `claim` (which records it) accepts. */
function claimFirst(userName: string, reserved: ReadonlySet<string>, claim: (name: string) => boolean): string {
  const candidates = principalNameCandidates(userName);
  for (;;) {
    const name = candidates.next().value;
    if (!reserved.has(name) && claim(name)) return name;
  }
}

/**
 * Names for users without one (a store from before names were kept), in the order given: active
 * users first, in creation order — exactly the names the backends already hold for them, since
 * names used to be computed over active users only — then inactive ones. `taken` holds every name
 * ever given and grows.
 */
function nameInOrder(
  users: readonly { id: string; user_name: string | null }[],
  taken: Set<string>,
  reserved: ReadonlySet<string>,
): { id: string; name: string }[] {
  const claim = (name: string) => {
    if (taken.has(name)) return false;
    taken.add(name);
    return true;
  };
  return users.map((u) => ({ id: u.id, name: claimFirst(u.user_name ?? '', reserved, claim) }));
}

/** Listeners that cannot break a write: one throwing listener does not stop the others. */
class Listeners {
  private readonly set = new Set<ChangeListener>();
  add(l: ChangeListener): () => void {
    this.set.add(l);
    return () => this.set.delete(l);
  }
  emit(c: ScimChange): void {
    for (const l of this.set) {
      try {
        l(c);
      } catch {
        // A listener's failure is the listener's business; the write has committed.
      }
    }
  }
}

function withoutMember(attrs: JsonObject, id: string): JsonObject | undefined {
  const members = attrs.members;
  if (!Array.isArray(members)) return undefined;
  const left = members.filter((m) => !(typeof m === 'object' && m !== null && !Array.isArray(m) && m.value === id));
  if (left.length === members.length) return undefined;
  const next = { ...attrs };
  if (left.length) next.members = left;
  else delete next.members;
  return next;
}

// ---------------------------------------------------------------------------------------------
// SQLite

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

interface Row {
  id: string;
  unique_key: string;
  created: string;
  last_modified: string;
  version: number | string;
  attrs: string | JsonObject;
  principal?: string | null;
}

function toRecord(type: ResourceType, r: Row): ScimRecord {
  return {
    type,
    id: r.id,
    attrs: typeof r.attrs === 'string' ? (JSON.parse(r.attrs) as JsonObject) : r.attrs,
    created: r.created,
    lastModified: r.last_modified,
    version: etag(Number(r.version)),
    ...(typeof r.principal === 'string' ? { principal: r.principal } : {}),
  };
}

function workOf(rows: { name: string; seq: number | string }[]): ScimWork {
  const seq = (name: string) => Number(rows.find((r) => r.name === name)?.seq ?? 0);
  return { changed: seq('changed'), reconciled: seq('reconciled') };
}

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

function duplicate(type: ResourceType, attrs: JsonObject): ScimError {
  return type === 'User'
    ? uniqueness(`a User with userName ${JSON.stringify(attrs.userName)} already exists (userName is unique, case-insensitively)`)
    : uniqueness(`a Group with displayName ${JSON.stringify(attrs.displayName)} already exists (displayName is unique, case-insensitively)`);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const q = (ident: string) => `"${ident.replace(/"/g, '""')}"`;

function pgDdl(s: string): string {
  return ['scim_users', 'scim_groups']
    .map(
      (t) => `
CREATE TABLE IF NOT EXISTS ${s}.${t} (
  id TEXT COLLATE "C" PRIMARY KEY,
  unique_key TEXT COLLATE "C" NOT NULL UNIQUE,
  created TEXT COLLATE "C" NOT NULL,
  last_modified TEXT NOT NULL,
  version BIGINT NOT NULL,
  attrs JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS ${t}_order ON ${s}.${t} (created, id);`,
    )
    .join('\n').concat(`
ALTER TABLE ${s}.scim_users ADD COLUMN IF NOT EXISTS principal TEXT COLLATE "C";
CREATE INDEX IF NOT EXISTS scim_users_unnamed ON ${s}.scim_users (created, id) WHERE principal IS NULL;
CREATE TABLE IF NOT EXISTS ${s}.scim_principal_names (
  name TEXT COLLATE "C" PRIMARY KEY,
  user_id TEXT COLLATE "C" NOT NULL,
  assigned TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ${s}.scim_work (
  name TEXT COLLATE "C" PRIMARY KEY,
  seq BIGINT NOT NULL,
  at TEXT,
  actor TEXT
);
INSERT INTO ${s}.scim_work (name, seq) VALUES ('changed', 0), ('reconciled', 0) ON CONFLICT (name) DO NOTHING;`);
}

// Advisory lock keys: (dg, SC) guards creating the tables, (dg, SN) naming older users.
const DDL_LOCK = [0x6467, 0x5343];
const NAMING_LOCK = [0x6467, 0x534e];

export interface PgScimStoreOptions extends ScimStoreOptions {
  /** Schema holding the tables (the state store's); created if missing. Default `datagrant`. */
  schema?: string;
  poolSize?: number;
}

/**
 * Open the SCIM tables in PostgreSQL: `url` (DATAGRANT_STORE_URL) or an existing pool (the state
 * store's; not closed by `close()`). Safe when several replicas start at once.
 */
export async function openPgScimStore(url: string | pg.Pool, opts: PgScimStoreOptions = {}): Promise<PgScimStore> {
  const schema = opts.schema ?? 'datagrant';
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
    throw new StoreError(`the SCIM store schema must be a plain identifier (letters, digits, _; at most 63), not ${JSON.stringify(schema)}`);
  }
  const owned = typeof url === 'string';
  const pool =
    typeof url === 'string'
      ? new pg.Pool({ connectionString: url, max: opts.poolSize ?? 10, connectionTimeoutMillis: 10_000, application_name: 'datagrant-scim' })
      : url;
  if (owned) pool.on('error', () => undefined);
  try {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      // Replicas starting together: one creates, the others wait and find the tables.
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', DDL_LOCK);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${q(schema)}`);
      await c.query(pgDdl(q(schema)));
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  } catch (e) {
    if (owned) await pool.end().catch(() => undefined);
    throw new StoreError(`cannot open the SCIM tables in ${typeof url === 'string' ? redactUrl(url) : 'the state store'}: ${(e as Error).message}`);
  }
  return new PgScimStore(pool, schema, owned, opts);
}

export class PgScimStore implements ScimStore {
  private readonly listeners = new Listeners();
  private readonly now: () => Date;
  private readonly newId: () => string;

  constructor(
    readonly pool: pg.Pool,
    readonly schema: string,
    private readonly owned: boolean,
    opts: ScimStoreOptions = {},
  ) {
    this.now = opts.now ?? (() => new Date());
    this.newId = opts.newId ?? randomUUID;
  }

  private t(type: ResourceType): string {
    return `${q(this.schema)}.${TABLE[type]}`;
  }

  async get(type: ResourceType, id: string): Promise<ScimRecord | undefined> {
    const r = await this.pool.query<Row>(`SELECT * FROM ${this.t(type)} WHERE id = $1`, [id]);
    return r.rows[0] && toRecord(type, r.rows[0]);
  }

  async list(type: ResourceType): Promise<ScimRecord[]> {
    const r = await this.pool.query<Row>(`SELECT * FROM ${this.t(type)} ORDER BY created, id`);
    return r.rows.map((row) => toRecord(type, row));
  }

  async findByKey(type: ResourceType, key: string): Promise<ScimRecord | undefined> {
    const r = await this.pool.query<Row>(`SELECT * FROM ${this.t(type)} WHERE unique_key = $1`, [key.toLowerCase()]);
    return r.rows[0] && toRecord(type, r.rows[0]);
  }

  async existing(type: ResourceType, ids: string[]): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const r = await this.pool.query<{ id: string }>(`SELECT id FROM ${this.t(type)} WHERE id = ANY($1::text[])`, [ids]);
    return new Set(r.rows.map((x) => x.id));
  }

  async getMany(type: ResourceType, ids: string[]): Promise<ScimRecord[]> {
    if (!ids.length) return [];
    const r = await this.pool.query<Row>(`SELECT * FROM ${this.t(type)} WHERE id = ANY($1::text[]) ORDER BY created, id`, [ids]);
    return r.rows.map((row) => toRecord(type, row));
  }

  async hasUnnamedUsers(): Promise<boolean> {
    const r = await this.pool.query(`SELECT 1 FROM ${this.t('User')} WHERE principal IS NULL LIMIT 1`);
    return (r.rowCount ?? 0) > 0;
  }

  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  }

  private async unique<T>(type: ResourceType, attrs: () => JsonObject, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if ((e as { code?: string }).code === '23505') throw duplicate(type, attrs());
      throw e;
    }
  }

  async create(type: ResourceType, attrs: JsonObject, opts: CreateOptions = {}): Promise<ScimRecord> {
    const id = this.newId();
    const at = this.now().toISOString();
    const insert = (c: pg.PoolClient, principal: string | null) =>
      c.query(
        `INSERT INTO ${this.t(type)} (id, unique_key, created, last_modified, version, attrs${type === 'User' ? ', principal' : ''}) VALUES ($1, $2, $3, $3, 1, $4${type === 'User' ? ', $5' : ''})`,
        [id, uniqueKey(type, attrs), at, JSON.stringify(attrs), ...(type === 'User' ? [principal] : [])],
      );
    let principal: string | undefined;
    if (type === 'User') {
      const reserved = folded(opts.reservedNames);
      principal = await this.unique(
        type,
        () => attrs,
        () =>
          this.tx(async (c) => {
            // Older rows first, so that they get the names they would have had.
            await this.nameUnnamed(c, reserved, at);
            const name = await this.claimName(c, id, textOf(attrs.userName), reserved, at);
            await insert(c, name);
            await this.changed(c, at);
            return name;
          }),
      );
    } else {
      await this.unique(
        type,
        () => attrs,
        () =>
          this.tx(async (c) => {
            await insert(c, null);
            await this.changed(c, at);
          }),
      );
    }
    this.listeners.emit({ type, id, action: 'create' });
    return { type, id, attrs, created: at, lastModified: at, version: etag(1), ...(principal ? { principal } : {}) };
  }

  private names(): string {
    return `${q(this.schema)}.scim_principal_names`;
  }

  private workTable(): string {
    return `${q(this.schema)}.scim_work`;
  }

  /**
   * Inside a write's transaction, as its last statement: the row lock it takes is held only until
   * the commit, and a write that commits later always gets the higher number.
   */
  private async changed(c: pg.PoolClient, at: string): Promise<void> {
    await c.query(`UPDATE ${this.workTable()} SET seq = seq + 1, at = $1 WHERE name = 'changed'`, [at]);
  }

  async work(): Promise<ScimWork> {
    const r = await this.pool.query<{ name: string; seq: string }>(`SELECT name, seq FROM ${this.workTable()}`);
    return workOf(r.rows);
  }

  async markReconciled(seq: number, actor: string): Promise<void> {
    await this.pool.query(`UPDATE ${this.workTable()} SET seq = $1, at = $2, actor = $3 WHERE name = 'reconciled' AND seq < $1`, [
      seq,
      this.now().toISOString(),
      actor,
    ]);
  }

  /** claimFirst, one round trip per candidate. */
  private async claimName(c: pg.PoolClient, id: string, userName: string, reserved: ReadonlySet<string>, at: string): Promise<string> {
    const candidates = principalNameCandidates(userName);
    for (;;) {
      const name = candidates.next().value;
      if (reserved.has(name)) continue;
      // ON CONFLICT DO NOTHING waits for a replica claiming the same name, then moves on.
      const r = await c.query(`INSERT INTO ${this.names()} (name, user_id, assigned) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`, [name, id, at]);
      if (r.rowCount === 1) return name;
    }
  }

  private async nameUnnamed(c: pg.PoolClient, reserved: ReadonlySet<string>, at: string): Promise<void> {
    const unnamed = `SELECT id, attrs->>'userName' AS user_name FROM ${this.t('User')} WHERE principal IS NULL ORDER BY COALESCE(attrs->>'active', 'true') = 'false', created, id`;
    if (!(await c.query(`${unnamed} LIMIT 1`)).rowCount) return;
    // One namer at a time; a create that finds older rows unnamed waits here, then finds none.
    await c.query('SELECT pg_advisory_xact_lock($1, $2)', NAMING_LOCK);
    const users = await c.query<{ id: string; user_name: string | null }>(`${unnamed} FOR UPDATE`);
    if (!users.rowCount) return;
    const taken = new Set((await c.query<{ name: string }>(`SELECT name FROM ${this.names()}`)).rows.map((r) => r.name));
    const named = nameInOrder(users.rows, taken, reserved);
    const ids = named.map((n) => n.id);
    const names = named.map((n) => n.name);
    await c.query(`INSERT INTO ${this.names()} (name, user_id, assigned) SELECT n, i, $3 FROM unnest($1::text[], $2::text[]) AS x(n, i)`, [names, ids, at]);
    await c.query(`UPDATE ${this.t('User')} AS u SET principal = x.n FROM unnest($1::text[], $2::text[]) AS x(n, i) WHERE u.id = x.i`, [names, ids]);
  }

  async assignPrincipalNames(reserved: Iterable<string>): Promise<void> {
    const names = folded(reserved);
    await this.tx((c) => this.nameUnnamed(c, names, this.now().toISOString()));
  }

  async principalOwners(names: Iterable<string>): Promise<Map<string, string>> {
    const r = await this.pool.query<{ name: string; user_id: string }>(`SELECT name, user_id FROM ${this.names()} WHERE name = ANY($1::text[])`, [
      [...folded(names)],
    ]);
    return new Map(r.rows.map((x) => [x.name, x.user_id]));
  }

  async update(type: ResourceType, id: string, change: (current: ScimRecord) => JsonObject, opts: WriteOptions = {}): Promise<ScimRecord> {
    let next: JsonObject = {};
    const rec = await this.unique(
      type,
      () => next,
      () =>
        this.tx(async (c) => {
          const r = await c.query<Row>(`SELECT * FROM ${this.t(type)} WHERE id = $1 FOR UPDATE`, [id]);
          if (!r.rows[0]) throw notFound(`${type} ${id} not found`);
          const current = toRecord(type, r.rows[0]);
          if (!ifMatchAdmits(opts.ifMatch, current.version)) throw preconditionFailed(`If-Match does not match the current version ${current.version}`);
          next = change(current);
          const at = this.now().toISOString();
          const version = Number(r.rows[0].version) + 1;
          await c.query(`UPDATE ${this.t(type)} SET unique_key = $1, last_modified = $2, version = $3, attrs = $4 WHERE id = $5`, [
            uniqueKey(type, next),
            at,
            version,
            JSON.stringify(next),
            id,
          ]);
          await this.changed(c, at);
          return { type, id, attrs: next, created: current.created, lastModified: at, version: etag(version) };
        }),
    );
    this.listeners.emit({ type, id, action: 'update' });
    return rec;
  }

  async delete(type: ResourceType, id: string, opts: WriteOptions = {}): Promise<void> {
    const touched = await this.tx(async (c) => {
      const r = await c.query<Row>(`SELECT * FROM ${this.t(type)} WHERE id = $1 FOR UPDATE`, [id]);
      if (!r.rows[0]) throw notFound(`${type} ${id} not found`);
      const v = etag(Number(r.rows[0].version));
      if (!ifMatchAdmits(opts.ifMatch, v)) throw preconditionFailed(`If-Match does not match the current version ${v}`);
      // A user's principal name stays in scim_principal_names: no other identity ever gets it.
      await c.query(`DELETE FROM ${this.t(type)} WHERE id = $1`, [id]);
      const at = this.now().toISOString();
      const groups = await c.query<Row>(`SELECT * FROM ${this.t('Group')} WHERE attrs->'members' @> $1::jsonb FOR UPDATE`, [JSON.stringify([{ value: id }])]);
      const ids: string[] = [];
      for (const g of groups.rows) {
        const next = withoutMember(toRecord('Group', g).attrs, id);
        if (!next) continue;
        await c.query(`UPDATE ${this.t('Group')} SET attrs = $1, last_modified = $2, version = version + 1 WHERE id = $3`, [JSON.stringify(next), at, g.id]);
        ids.push(g.id);
      }
      await this.changed(c, at);
      return ids;
    });
    this.listeners.emit({ type, id, action: 'delete' });
    for (const g of touched) this.listeners.emit({ type: 'Group', id: g, action: 'update' });
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  async close(): Promise<void> {
    if (this.owned) await this.pool.end();
  }
}

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
