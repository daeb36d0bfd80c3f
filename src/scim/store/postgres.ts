// The SCIM store in PostgreSQL (DATAGRANT_STORE_URL), shared by `serve` replicas: the state
// store's schema, created under an advisory lock so replicas may start together.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { textOf } from '../../core/canonical.js';
import { StoreError } from '../../core/errors.js';
import { redactUrl } from '../../core/url.js';
import { notFound, preconditionFailed } from '../errors.js';
import { principalNameCandidates } from '../identities.js';
import type { JsonObject, ResourceType } from '../schemas.js';
import { folded, nameInOrder } from './names.js';
import { duplicate, etag, ifMatchAdmits, Listeners, TABLE, toRecord, uniqueKey, withoutMember, workOf, type Row } from './records.js';
import type { ChangeListener, CreateOptions, ScimRecord, ScimStore, ScimStoreOptions, ScimWork, WriteOptions } from './store.js';

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
