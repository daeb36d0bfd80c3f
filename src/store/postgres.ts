// The shared state store for `datagrant serve` replicas: PostgreSQL named by DATAGRANT_STORE_URL.
// Same semantics as SqliteStore; what differs is how replicas are kept from stepping on each other:
// - schema creation runs under a transaction-level advisory lock, so replicas may start together;
// - audit appends run under a transaction-level advisory lock, so the chain never forks;
// - the state lock is a session-level advisory lock held on a dedicated connection, so a replica
//   that dies loses it with its connection (no heartbeat, no staleness guess).
// Session advisory locks need a real session: the URL must not name a transaction-mode pooler.
import { createHash } from 'node:crypto';
import { redactUrl } from '../core/url.js';
import { hostname } from 'node:os';
import pg from 'pg';
import { LockError, StoreError } from '../core/errors.js';
import type { Change, Json } from '../core/types.js';
import { entryMac, GENESIS, headMac, KEY_ROTATED, rotationDetail, verifyChain, type AuditHead } from './audit-chain.js';
import type { MasterKey } from './crypto.js';
import { checkInstallationId, checkKey, checkNoRotation, INSTALLATION, KEY_CHECK, KEY_CHECK_NEXT, newInstallationId } from './meta.js';
import { keyChanged, opensUnder, refuseBrokenChain, reseal, rotationElsewhere } from './rotation.js';
import {
  credentialAad,
  instant,
  reviewClosed,
  reviewTaken,
  reviewUnknown,
  requestUnknown,
  toCredential,
  toRequest,
  toReview,
  toSession,
  transitionColumns,
  transitionRefusal,
  type CredRow,
  type DecisionRow,
  type RequestRow,
  type ReviewRow,
  type SessionRow,
  toAudit,
  type AuditRow,
} from './rows.js';
import type { AccessRequest, NewRequest, RequestState, RequestTransition } from '../model/request.js';
import type { Review, ReviewDecision, ReviewSummary } from '../model/review.js';
import type {
  AuditEntry,
  AuditInput,
  AuditVerdict,
  CredentialRow,
  JournalEntry,
  KeyRotationPort,
  LockHolder,
  SessionRecord,
  StateStore,
  StoredBackend,
} from './store.js';

export interface PgStoreOptions {
  /** Schema holding datagrant's tables; created if missing. Default `datagrant`. */
  schema?: string;
  /** Connections in the pool (the state lock keeps one of them while held). Default 10. */
  poolSize?: number;
  /** Open a state whose master key rotation is unfinished (`rekey` only). */
  rotating?: boolean;
}

const LOCK_NAME = 'state';
/** First half of every advisory lock key datagrant takes ("dg"); the second half names the lock. */
export const LOCK_SPACE = 0x6467;
/** Per-address locks for saveCredential live in their own space, so they never meet the named locks. */
const CREDENTIAL_LOCK_SPACE = 0x6468;
export const TABLES = [
  'credentials',
  'applied',
  'journal',
  'audit',
  'audit_head',
  'locks',
  'meta',
  'backends',
  'sessions',
  'reviews',
  'review_decisions',
  'requests',
] as const;

const q = (ident: string) => `"${ident.replace(/"/g, '""')}"`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A stable non-negative int4 for an advisory lock key (non-negative so it reads back as the same oid in pg_locks). */
export function lockKey(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32BE(0) & 0x7fffffff;
}

function ddl(s: string): string {
  return `
CREATE TABLE IF NOT EXISTS ${s}.credentials (
  address TEXT COLLATE "C" NOT NULL,
  credential_id TEXT COLLATE "C" NOT NULL,
  backend TEXT NOT NULL,
  principal TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('current', 'retiring')),
  created_at TEXT COLLATE "C" NOT NULL,
  retire_at TEXT,
  nonce BYTEA NOT NULL,
  ciphertext BYTEA NOT NULL,
  tag BYTEA NOT NULL,
  PRIMARY KEY (address, credential_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_current_credential ON ${s}.credentials (address) WHERE state = 'current';
CREATE TABLE IF NOT EXISTS ${s}.applied (
  address TEXT PRIMARY KEY,
  attrs_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ${s}.journal (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id TEXT NOT NULL,
  address TEXT NOT NULL,
  action TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  outcome TEXT NOT NULL,
  detail TEXT
);
ALTER TABLE ${s}.journal ADD COLUMN IF NOT EXISTS after_hash TEXT;
CREATE INDEX IF NOT EXISTS journal_pending ON ${s}.journal (id) WHERE outcome = 'pending';
CREATE INDEX IF NOT EXISTS journal_address ON ${s}.journal (address);
CREATE TABLE IF NOT EXISTS ${s}.meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ${s}.sessions (
  backend TEXT NOT NULL,
  principal TEXT NOT NULL,
  target TEXT NOT NULL,
  last_issued_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  PRIMARY KEY (backend, principal, target)
);
CREATE TABLE IF NOT EXISTS ${s}.backends (
  name TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  settings TEXT NOT NULL
);
-- Times stay TEXT, exactly as given: the audit MAC covers the string, and a timestamptz would
-- come back reformatted.
CREATE TABLE IF NOT EXISTS ${s}.audit (
  seq BIGINT PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  event TEXT NOT NULL,
  address TEXT,
  outcome TEXT NOT NULL,
  detail TEXT,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ${s}.audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL,
  hash TEXT NOT NULL,
  mac TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ${s}.reviews (
  name TEXT PRIMARY KEY,
  started_at TEXT NOT NULL,
  started_by TEXT NOT NULL,
  manifest TEXT NOT NULL,
  population TEXT NOT NULL,
  population_rows INTEGER NOT NULL,
  emails TEXT NOT NULL,
  closed_at TEXT,
  closed_by TEXT
);
CREATE TABLE IF NOT EXISTS ${s}.review_decisions (
  review TEXT NOT NULL REFERENCES ${s}.reviews (name),
  row_id TEXT COLLATE "C" NOT NULL,
  reviewer TEXT COLLATE "C" NOT NULL,
  actor TEXT NOT NULL,
  decision TEXT NOT NULL CHECK (decision IN ('keep', 'revoke')),
  reason TEXT NOT NULL CHECK (length(btrim(reason)) > 0),
  decided_at TEXT NOT NULL,
  self_review BOOLEAN NOT NULL,
  audit_seq BIGINT NOT NULL,
  PRIMARY KEY (review, row_id, reviewer)
);
ALTER TABLE ${s}.review_decisions ADD COLUMN IF NOT EXISTS actor TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS ${s}.requests (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  requester TEXT COLLATE "C" NOT NULL,
  dataset TEXT NOT NULL,
  level TEXT NOT NULL CHECK (level IN ('read', 'write', 'admin')),
  duration TEXT NOT NULL,
  reason TEXT NOT NULL CHECK (length(btrim(reason)) > 0),
  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'cancelled', 'expired')),
  requested_at TEXT COLLATE "C" NOT NULL,
  requested_via TEXT NOT NULL,
  decided_by TEXT,
  decided_at TEXT,
  decision_reason TEXT,
  decided_via TEXT,
  ends_at TEXT COLLATE "C",
  closed_at TEXT,
  closed_by TEXT,
  close_reason TEXT,
  closed_via TEXT,
  audit_seq BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_state ON ${s}.requests (state);
-- Who holds the state lock. The lock itself is the advisory lock; a row counts only while the
-- session named by backend_pid holds it.
CREATE TABLE IF NOT EXISTS ${s}.locks (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  acquired_at TEXT NOT NULL,
  backend_pid INTEGER NOT NULL
);
`;
}

/**
 * Open the PostgreSQL state store at `url`, creating its schema and tables if missing. Safe when
 * several replicas start at once. Throws StoreError (without the URL's password) when it cannot.
 */
export async function openPgStore(url: string, key: MasterKey, opts: PgStoreOptions = {}): Promise<PgStore> {
  const schema = opts.schema ?? 'datagrant';
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
    throw new StoreError(`the state store schema must be a plain identifier (letters, digits, _; at most 63), not ${JSON.stringify(schema)}`);
  }
  let pool: pg.Pool;
  try {
    pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 10, connectionTimeoutMillis: 10_000, application_name: 'datagrant' });
  } catch (e) {
    throw new StoreError(`cannot open the state store ${redactUrl(url)}: ${(e as Error).message}`);
  }
  // An idle connection that breaks is dropped by the pool and replaced on the next query.
  pool.on('error', () => undefined);
  try {
    await createSchema(pool, schema);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw new StoreError(`cannot open the state store ${redactUrl(url)} (schema ${schema}): ${(e as Error).message}`);
  }
  const store = new PgStore(pool, key, schema);
  try {
    await store.checkKeyAndInstallation(redactUrl(url), opts.rotating ?? false);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw e;
  }
  return store;
}

export async function createSchema(pool: pg.Pool, schema: string): Promise<void> {
  const present = async (c: pg.PoolClient) =>
    Number(
      (await c.query<{ n: string }>('SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2::text[])', [schema, [...TABLES]])).rows[0]
        ?.n,
    ) === TABLES.length;
  const c = await pool.connect();
  try {
    // Already there: no DDL at all, so a role without CREATE rights can use a prepared schema.
    if (await present(c)) return;
    await c.query('BEGIN');
    try {
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, lockKey(`${schema}/schema`)]);
      const exists = (await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount;
      if (!exists) await c.query(`CREATE SCHEMA ${q(schema)}`);
      await c.query(ddl(q(schema)));
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  } finally {
    c.release();
  }
}

interface JournalRow {
  id: string;
  run_id: string;
  address: string;
  action: string;
  started_at: string;
  finished_at: string | null;
  outcome: JournalEntry['outcome'];
  detail: string | null;
  after_hash: string | null;
}

function toJournal(r: JournalRow): JournalEntry {
  return {
    id: Number(r.id),
    runId: r.run_id,
    address: r.address,
    action: r.action,
    startedAt: r.started_at,
    finishedAt: r.finished_at ?? null,
    outcome: r.outcome,
    detail: r.detail ?? null,
    afterHash: r.after_hash ?? null,
  };
}

interface HeldLock {
  client: pg.PoolClient;
  onError: (e: Error) => void;
  /** Set when the lock's connection broke: PostgreSQL has released the lock. */
  lost: Error | undefined;
}

export class PgStore implements StateStore, KeyRotationPort {
  #lock: HeldLock | undefined;
  readonly #t: Record<(typeof TABLES)[number], string>;
  readonly #stateLockKey: number;
  readonly #auditLockKey: number;
  /** Opened by `rekey`, or began a rotation: an unfinished rotation is its own. */
  #rotating = false;

  constructor(
    readonly pool: pg.Pool,
    private readonly key: MasterKey,
    readonly schema: string,
  ) {
    this.#t = Object.fromEntries(TABLES.map((t) => [t, `${q(schema)}.${t}`])) as Record<(typeof TABLES)[number], string>;
    this.#stateLockKey = lockKey(`${schema}/state`);
    this.#auditLockKey = lockKey(`${schema}/audit`);
  }

  get masterKey(): MasterKey {
    return this.key;
  }

  /**
   * Refuses a write sealed or MACed under `key` when the state has moved to another key (or is
   * moving) since this replica opened it: a replica left running through `datagrant rekey` fails
   * its writes instead of mixing keys in the state. The shared meta lock holds a rotation's
   * begin and finish (exclusive) off until this transaction ends; always before the audit lock.
   * `rotation` lets through the rotation of the `rekey` that opened this store (its lock).
   */
  async #assertKey(c: pg.PoolClient, key: MasterKey, rotation: 'mine' | 'none' = 'none'): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock_shared($1, $2)', [LOCK_SPACE, lockKey(`${this.schema}/meta`)]);
    const { rows } = await c.query<{ key: string; value: string }>(`SELECT key, value FROM ${this.#t.meta} WHERE key = ANY($1::text[])`, [
      [KEY_CHECK, KEY_CHECK_NEXT],
    ]);
    const meta = new Map(rows.map((r) => [r.key, r.value]));
    const moving = meta.has(KEY_CHECK_NEXT) && !(rotation === 'mine' && this.#rotating);
    if (meta.get(KEY_CHECK) !== key.keyCheck() || moving) throw keyChanged(`the state store (schema ${this.schema})`);
  }

  async #meta(c: pg.PoolClient | pg.Pool, key: string): Promise<string | undefined> {
    return (await c.query<{ value: string }>(`SELECT value FROM ${this.#t.meta} WHERE key = $1`, [key])).rows[0]?.value;
  }

  /** Refuses a wrong master key before anything is read or written; gives a new state its installation id. */
  async checkKeyAndInstallation(where: string, rotating = false): Promise<void> {
    this.#rotating = rotating;
    await this.tx(async (c) => {
      // Replicas starting together take turns, so they agree on one installation id.
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, lockKey(`${this.schema}/meta`)]);
      const sample = (await c.query<CredRow>(`SELECT * FROM ${this.#t.credentials} LIMIT 1`)).rows[0];
      const opens = (() => {
        if (!sample) return undefined;
        try {
          this.key.open({ nonce: sample.nonce, ciphertext: sample.ciphertext, tag: sample.tag }, credentialAad(sample.address, sample.credential_id));
          return true;
        } catch {
          return false;
        }
      })();
      checkNoRotation(await this.#meta(c, KEY_CHECK_NEXT), rotating, `the state store ${where} (schema ${this.schema})`);
      if (checkKey(this.key, await this.#meta(c, KEY_CHECK), () => opens, `the state store ${where} (schema ${this.schema})`) === 'write') {
        await c.query(`INSERT INTO ${this.#t.meta} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [
          KEY_CHECK,
          this.key.keyCheck(),
        ]);
      }
      if ((await this.#meta(c, INSTALLATION)) === undefined) {
        await c.query(`INSERT INTO ${this.#t.meta} (key, value) VALUES ($1, $2)`, [INSTALLATION, newInstallationId()]);
      }
    });
  }

  async installation(): Promise<string> {
    return (await this.#meta(this.pool, INSTALLATION))!;
  }

  async setInstallation(id: string): Promise<void> {
    checkInstallationId(id);
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, lockKey(`${this.schema}/meta`)]);
      const current = await this.#meta(c, INSTALLATION);
      if (current === id) return;
      const { rows } = await c.query<{ n: string }>(`SELECT (SELECT count(*) FROM ${this.#t.credentials}) + (SELECT count(*) FROM ${this.#t.applied}) AS n`);
      if (Number(rows[0]?.n) > 0)
        throw new StoreError(`this state already manages objects as installation ${current}; an installation id can only be given to a fresh state`);
      await c.query(`INSERT INTO ${this.#t.meta} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [INSTALLATION, id]);
    });
  }

  async backends(): Promise<StoredBackend[]> {
    const { rows } = await this.pool.query<{ name: string; type: string; settings: string }>(
      `SELECT name, type, settings FROM ${this.#t.backends} ORDER BY name`,
    );
    return rows.map((r) => ({ name: r.name, type: r.type, settings: JSON.parse(r.settings) as { [key: string]: Json } }));
  }

  async rememberBackend(b: StoredBackend): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.#t.backends} (name, type, settings) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET type = EXCLUDED.type, settings = EXCLUDED.settings`,
      [b.name, b.type, JSON.stringify(b.settings)],
    );
  }

  async forgetBackend(name: string): Promise<void> {
    await this.tx(async (c) => {
      await c.query(`DELETE FROM ${this.#t.backends} WHERE name = $1`, [name]);
      await c.query(`DELETE FROM ${this.#t.credentials} WHERE backend = $1`, [name]);
      await c.query(`DELETE FROM ${this.#t.applied} WHERE left(address, length($1) + 1) = $1 || ':'`, [name]);
      await c.query(`DELETE FROM ${this.#t.sessions} WHERE backend = $1`, [name]);
    });
  }

  async recordSession(r: SessionRecord): Promise<void> {
    const t = this.#t.sessions;
    await this.pool.query(
      `INSERT INTO ${t} (backend, principal, target, last_issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (backend, principal, target) DO UPDATE SET
         last_issued_at = GREATEST(${t}.last_issued_at, excluded.last_issued_at), expires_at = GREATEST(${t}.expires_at, excluded.expires_at)`,
      [r.backend, r.principal, r.target, instant(r.lastIssuedAt), instant(r.expiresAt)],
    );
  }

  async sessions(): Promise<SessionRecord[]> {
    const rows = await this.pool.query<SessionRow>(`SELECT * FROM ${this.#t.sessions} ORDER BY backend COLLATE "C", principal COLLATE "C", target COLLATE "C"`);
    return rows.rows.map(toSession);
  }

  async pruneSessions(now: string): Promise<number> {
    return (await this.pool.query(`DELETE FROM ${this.#t.sessions} WHERE expires_at <= $1`, [instant(now)])).rowCount ?? 0;
  }

  /** Run `fn` in one transaction on one connection. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query(begin);
      const result = await fn(c);
      await c.query('COMMIT');
      c.release();
      return result;
    } catch (e) {
      // A connection that cannot even roll back is dropped rather than reused.
      const broken = await c.query('ROLLBACK').then(
        () => false,
        () => true,
      );
      c.release(broken ? (e as Error) : undefined);
      throw e;
    }
  }

  async credentials(): Promise<CredentialRow[]> {
    const { rows } = await this.pool.query<CredRow>(`SELECT * FROM ${this.#t.credentials} ORDER BY address, created_at, credential_id`);
    return rows.map(toCredential);
  }

  async saveCredential(row: Omit<CredentialRow, 'state' | 'retireAt'>, secret: Record<string, string>, retireAt?: string): Promise<void> {
    const sealed = this.key.seal(JSON.stringify(secret), credentialAad(row.address, row.credentialId));
    const t = this.#t.credentials;
    await this.tx(async (c) => {
      // Two replicas saving for one address take turns, so the second retires the first's
      // credential instead of colliding with it on the one-current index.
      await this.#assertKey(c, this.key);
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [CREDENTIAL_LOCK_SPACE, lockKey(`${this.schema}/${row.address}`)]);
      if (retireAt) {
        await c.query(`UPDATE ${t} SET state = 'retiring', retire_at = $1 WHERE address = $2 AND state = 'current'`, [retireAt, row.address]);
      } else {
        await c.query(`DELETE FROM ${t} WHERE address = $1 AND state = 'current'`, [row.address]);
      }
      await c.query(
        `INSERT INTO ${t} (address, credential_id, backend, principal, state, created_at, retire_at, nonce, ciphertext, tag)
         VALUES ($1, $2, $3, $4, 'current', $5, NULL, $6, $7, $8)
         ON CONFLICT (address, credential_id) DO UPDATE SET
           backend = EXCLUDED.backend, principal = EXCLUDED.principal, state = 'current', created_at = EXCLUDED.created_at,
           retire_at = NULL, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, tag = EXCLUDED.tag`,
        [row.address, row.credentialId, row.backend, row.principal, row.createdAt, sealed.nonce, sealed.ciphertext, sealed.tag],
      );
    });
  }

  async revealCredential(address: string): Promise<{ row: CredentialRow; secret: Record<string, string> } | undefined> {
    const { rows } = await this.pool.query<CredRow>(`SELECT * FROM ${this.#t.credentials} WHERE address = $1 AND state = 'current'`, [address]);
    const r = rows[0];
    if (!r) return undefined;
    const secret = JSON.parse(this.key.open({ nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag }, credentialAad(r.address, r.credential_id))) as Record<
      string,
      string
    >;
    return { row: toCredential(r), secret };
  }

  async eraseCredential(address: string, credentialId: string): Promise<void> {
    await this.pool.query(`DELETE FROM ${this.#t.credentials} WHERE address = $1 AND credential_id = $2`, [address, credentialId]);
  }

  async retireCredential(address: string, credentialId: string, retireAt: string): Promise<void> {
    await this.pool.query(`UPDATE ${this.#t.credentials} SET state = 'retiring', retire_at = $1 WHERE address = $2 AND credential_id = $3`, [
      retireAt,
      address,
      credentialId,
    ]);
  }

  async applied(): Promise<Record<string, string>> {
    const { rows } = await this.pool.query<{ address: string; attrs_hash: string }>(`SELECT address, attrs_hash FROM ${this.#t.applied}`);
    return Object.fromEntries(rows.map((r) => [r.address, r.attrs_hash]));
  }

  async setApplied(address: string, hash: string | null): Promise<void> {
    if (hash === null) await this.pool.query(`DELETE FROM ${this.#t.applied} WHERE address = $1`, [address]);
    else {
      await this.pool.query(
        `INSERT INTO ${this.#t.applied} (address, attrs_hash) VALUES ($1, $2) ON CONFLICT (address) DO UPDATE SET attrs_hash = EXCLUDED.attrs_hash`,
        [address, hash],
      );
    }
  }

  async journalBegin(runId: string, change: Change, at: string, afterHash: string | null = null): Promise<number> {
    // Only the address, action and a hash of the attributes: a change never carries a secret, and the journal stays so.
    // The intent is journaled before the side effect: a replica left running through a rekey
    // stops here, before the backend call whose result it could not record.
    return this.tx(async (c) => {
      await this.#assertKey(c, this.key);
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO ${this.#t.journal} (run_id, address, action, started_at, outcome, after_hash) VALUES ($1, $2, $3, $4, 'pending', $5) RETURNING id`,
        [runId, change.address, change.action, at, afterHash],
      );
      return Number(rows[0]!.id);
    });
  }

  async journalPending(): Promise<JournalEntry[]> {
    const { rows } = await this.pool.query<JournalRow>(`SELECT * FROM ${this.#t.journal} WHERE outcome = 'pending' ORDER BY id`);
    return rows.map(toJournal);
  }

  async journaled(addresses: string[]): Promise<Set<string>> {
    if (addresses.length === 0) return new Set();
    const { rows } = await this.pool.query<{ address: string }>(`SELECT DISTINCT address FROM ${this.#t.journal} WHERE address = ANY($1::text[])`, [addresses]);
    return new Set(rows.map((r) => r.address));
  }

  async journalEnd(id: number, outcome: 'ok' | 'failed', at: string, detail?: string): Promise<void> {
    await this.pool.query(`UPDATE ${this.#t.journal} SET outcome = $1, finished_at = $2, detail = $3 WHERE id = $4`, [outcome, at, detail ?? null, id]);
  }

  async recoverJournal(): Promise<JournalEntry[]> {
    // One statement: atomic, and when two replicas recover at once each entry goes to one of them.
    // The entries come back as they were found (pending), as SqliteStore returns them.
    const { rows } = await this.pool.query<JournalRow>(
      `UPDATE ${this.#t.journal} SET outcome = 'interrupted' WHERE outcome = 'pending'
       RETURNING id, run_id, address, action, started_at, finished_at, 'pending' AS outcome, detail, after_hash`,
    );
    return rows.map(toJournal).sort((a, b) => a.id - b.id);
  }

  async journal(limit = 1000): Promise<JournalEntry[]> {
    const { rows } = await this.pool.query<JournalRow>(`SELECT * FROM ${this.#t.journal} ORDER BY id DESC LIMIT $1`, [limit]);
    return rows.map(toJournal);
  }

  async audit(entry: AuditInput, at: string): Promise<void> {
    await this.tx((c) => this.#append(c, entry, at));
  }

  /** Appends one entry inside the caller's transaction on `c`; returns its seq. */
  async #append(c: pg.PoolClient, entry: AuditInput, at: string, key = this.key): Promise<number> {
    await this.#assertKey(c, key);
    // Appends from every replica take turns: the head read below sees the previous append.
    await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, this.#auditLockKey]);
    const { rows } = await c.query<{ seq: string; hash: string }>(`SELECT seq, hash FROM ${this.#t.audit} ORDER BY seq DESC LIMIT 1`);
    const head = rows[0];
    const e = { seq: (head ? Number(head.seq) : 0) + 1, at, ...entry, prevHash: head?.hash ?? GENESIS };
    const hash = entryMac(key, e);
    await c.query(
      `INSERT INTO ${this.#t.audit} (seq, at, actor, event, address, outcome, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [e.seq, e.at, e.actor, e.event, e.address, e.outcome, e.detail, e.prevHash, hash],
    );
    await c.query(
      `INSERT INTO ${this.#t.audit_head} (id, seq, hash, mac) VALUES (1, $1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, mac = EXCLUDED.mac`,
      [e.seq, hash, headMac(key, e.seq, hash)],
    );
    return e.seq;
  }

  async auditHead(): Promise<{ seq: number; hash: string } | undefined> {
    const { rows } = await this.pool.query<{ seq: string; hash: string }>(`SELECT seq, hash FROM ${this.#t.audit} ORDER BY seq DESC LIMIT 1`);
    const r = rows[0];
    return r ? { seq: Number(r.seq), hash: r.hash } : undefined;
  }

  async startReview(review: Omit<Review, 'decisions' | 'closedAt' | 'closedBy'>, audit: AuditInput): Promise<void> {
    await this.tx(async (c) => {
      const { rowCount } = await c.query(
        `INSERT INTO ${this.#t.reviews} (name, started_at, started_by, manifest, population, population_rows, emails)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING`,
        [
          review.name,
          review.startedAt,
          review.startedBy,
          JSON.stringify(review.manifest),
          JSON.stringify(review.population),
          review.population.length,
          JSON.stringify(review.emails),
        ],
      );
      if (!rowCount) {
        const taken = (await c.query<ReviewRow>(`SELECT name, started_at, started_by FROM ${this.#t.reviews} WHERE name = $1`, [review.name])).rows[0]!;
        throw reviewTaken(taken);
      }
      await this.#append(c, audit, review.startedAt);
    });
  }

  async reviews(): Promise<ReviewSummary[]> {
    const { rows } = await this.pool.query<{
      name: string;
      started_at: string;
      started_by: string;
      closed_at: string | null;
      population_rows: number;
      decided: string;
    }>(
      `SELECT r.name, r.started_at, r.started_by, r.closed_at, r.population_rows,
         (SELECT count(DISTINCT d.row_id) FROM ${this.#t.review_decisions} d WHERE d.review = r.name) AS decided
       FROM ${this.#t.reviews} r ORDER BY r.started_at COLLATE "C", r.name COLLATE "C"`,
    );
    return rows.map((r) => ({
      name: r.name,
      startedAt: r.started_at,
      startedBy: r.started_by,
      closedAt: r.closed_at,
      rows: r.population_rows,
      decided: Number(r.decided),
    }));
  }

  async review(name: string): Promise<Review | undefined> {
    return this.tx(async (c) => {
      const r = (await c.query<ReviewRow>(`SELECT * FROM ${this.#t.reviews} WHERE name = $1`, [name])).rows[0];
      if (!r) return undefined;
      const decisions = (await c.query<DecisionRow>(`SELECT * FROM ${this.#t.review_decisions} WHERE review = $1 ORDER BY row_id, reviewer`, [name])).rows;
      return toReview(r, decisions);
    }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  }

  async recordDecisions(name: string, decisions: Omit<ReviewDecision, 'auditSeq'>[], audits: AuditInput[]): Promise<ReviewDecision[]> {
    if (decisions.length !== audits.length) throw new TypeError('one audit entry per decision');
    return this.tx(async (c) => {
      // FOR UPDATE: a close running at the same time waits, or is waited for; never a decision after it.
      const r = (await c.query<ReviewRow>(`SELECT name, closed_at, closed_by FROM ${this.#t.reviews} WHERE name = $1 FOR UPDATE`, [name])).rows[0];
      if (!r) throw reviewUnknown(name);
      if (r.closed_at) throw reviewClosed(r);
      const out: ReviewDecision[] = [];
      for (const [i, d] of decisions.entries()) {
        const auditSeq = await this.#append(c, audits[i]!, d.decidedAt);
        await c.query(
          `INSERT INTO ${this.#t.review_decisions} (review, row_id, reviewer, actor, decision, reason, decided_at, self_review, audit_seq)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (review, row_id, reviewer) DO UPDATE SET actor = EXCLUDED.actor, decision = EXCLUDED.decision, reason = EXCLUDED.reason,
             decided_at = EXCLUDED.decided_at, self_review = EXCLUDED.self_review, audit_seq = EXCLUDED.audit_seq`,
          [name, d.rowId, d.reviewer, d.actor, d.decision, d.reason, d.decidedAt, d.selfReview, auditSeq],
        );
        out.push({ ...d, auditSeq });
      }
      return out;
    });
  }

  async closeReview(name: string, at: string, by: string, audit: AuditInput): Promise<void> {
    await this.tx(async (c) => {
      const r = (await c.query<ReviewRow>(`SELECT name, closed_at, closed_by FROM ${this.#t.reviews} WHERE name = $1 FOR UPDATE`, [name])).rows[0];
      if (!r) throw reviewUnknown(name);
      if (r.closed_at) throw reviewClosed(r);
      await c.query(`UPDATE ${this.#t.reviews} SET closed_at = $1, closed_by = $2 WHERE name = $3`, [at, by, name]);
      await this.#append(c, audit, at);
    });
  }

  async createRequest(r: NewRequest, audit: (id: number) => AuditInput): Promise<AccessRequest> {
    const t = this.#t.requests;
    return this.tx(async (c) => {
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO ${t} (requester, dataset, level, duration, reason, state, requested_at, requested_via, audit_seq)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, 0) RETURNING id`,
        [r.requester, r.dataset, r.level, r.duration, r.reason, instant(r.requestedAt), r.requestedVia],
      );
      const id = Number(rows[0]!.id);
      const seq = await this.#append(c, audit(id), instant(r.requestedAt));
      return toRequest((await c.query<RequestRow>(`UPDATE ${t} SET audit_seq = $1 WHERE id = $2 RETURNING *`, [seq, id])).rows[0]!);
    });
  }

  async request(id: number): Promise<AccessRequest | undefined> {
    if (!Number.isSafeInteger(id)) return undefined;
    const r = (await this.pool.query<RequestRow>(`SELECT * FROM ${this.#t.requests} WHERE id = $1`, [id])).rows[0];
    return r ? toRequest(r) : undefined;
  }

  async requests(filter: { states?: readonly RequestState[]; requester?: string } = {}): Promise<AccessRequest[]> {
    const { rows } = await this.pool.query<RequestRow>(
      `SELECT * FROM ${this.#t.requests} WHERE ($1::text[] IS NULL OR state = ANY($1::text[])) AND ($2::text IS NULL OR requester = $2) ORDER BY id`,
      [filter.states ? [...filter.states] : null, filter.requester ?? null],
    );
    return rows.map(toRequest);
  }

  async changeRequest(id: number, change: RequestTransition, audit: AuditInput): Promise<AccessRequest> {
    const t = this.#t.requests;
    const at = change.to === 'cancelled' ? change.closed.at : change.decision.at;
    if (!Number.isSafeInteger(id)) throw requestUnknown(id);
    return this.tx(async (c) => {
      // FOR UPDATE: two approvers deciding at once take turns; the second finds it decided.
      const r = (await c.query<RequestRow>(`SELECT * FROM ${t} WHERE id = $1 FOR UPDATE`, [id])).rows[0];
      if (!r) throw requestUnknown(id);
      const refusal = transitionRefusal(r, change);
      if (refusal) throw refusal;
      const seq = await this.#append(c, audit, instant(at));
      const { rows } = await c.query<RequestRow>(
        `UPDATE ${t} SET state = $1, decided_by = coalesce($2, decided_by), decided_at = coalesce($3, decided_at),
           decision_reason = coalesce($4, decision_reason), decided_via = coalesce($5, decided_via), ends_at = coalesce($6, ends_at),
           closed_at = $7, closed_by = $8, close_reason = $9, closed_via = $10, audit_seq = $11 WHERE id = $12 RETURNING *`,
        [...transitionColumns(change), seq, id],
      );
      return toRequest(rows[0]!);
    });
  }

  async expireRequests(o: { now: string; pendingBefore: string; via: string }, audit: (r: AccessRequest) => AuditInput): Promise<AccessRequest[]> {
    const t = this.#t.requests;
    const [now, before] = [instant(o.now), instant(o.pendingBefore)];
    const due = `SELECT * FROM ${t} WHERE (state = 'approved' AND ends_at <= $1) OR (state = 'pending' AND requested_at < $2) ORDER BY id`;
    // Most runs find nothing: no transaction (and no wait for the audit lock) then.
    if (!(await this.pool.query(`${due} LIMIT 1`, [now, before])).rowCount) return [];
    return this.tx(async (c) => {
      // Replicas expiring at once: each row goes to one of them (the other skips it, locked).
      const { rows } = await c.query<RequestRow>(`${due} FOR UPDATE SKIP LOCKED`, [now, before]);
      const out: AccessRequest[] = [];
      for (const row of rows) {
        const reason = row.state === 'approved' ? `its access ended at ${row.ends_at}` : `nobody approved or denied it by ${before}`;
        const closed: RequestRow = { ...row, state: 'expired', closed_at: now, closed_by: null, close_reason: reason, closed_via: o.via };
        const seq = await this.#append(c, audit(toRequest(closed)), now);
        await c.query(`UPDATE ${t} SET state = 'expired', closed_at = $1, close_reason = $2, closed_via = $3, audit_seq = $4 WHERE id = $5`, [
          now,
          reason,
          o.via,
          seq,
          row.id,
        ]);
        out.push(toRequest({ ...closed, audit_seq: seq }));
      }
      return out;
    });
  }

  async requestsVersion(): Promise<number> {
    return Number((await this.pool.query<{ v: string }>(`SELECT coalesce(max(audit_seq), 0) AS v FROM ${this.#t.requests}`)).rows[0]!.v);
  }

  async auditEntries(): Promise<AuditEntry[]> {
    const { rows } = await this.pool.query<AuditRow>(`SELECT * FROM ${this.#t.audit} ORDER BY seq`);
    return rows.map(toAudit);
  }

  async auditTail(limit: number): Promise<AuditEntry[]> {
    const { rows } = await this.pool.query<AuditRow>(`SELECT * FROM ${this.#t.audit} ORDER BY seq DESC LIMIT $1`, [Math.max(0, Math.floor(limit))]);
    return rows.map(toAudit);
  }

  async rotationTarget(): Promise<string | undefined> {
    return this.#meta(this.pool, KEY_CHECK_NEXT);
  }

  async beginRotation(next: MasterKey): Promise<void> {
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, lockKey(`${this.schema}/meta`)]);
      const pending = await this.#meta(c, KEY_CHECK_NEXT);
      if (pending !== undefined && pending !== next.keyCheck()) throw rotationElsewhere(pending);
      await c.query(`INSERT INTO ${this.#t.meta} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [
        KEY_CHECK_NEXT,
        next.keyCheck(),
      ]);
    });
    this.#rotating = true;
  }

  async resealAll(next: MasterKey, after?: (address: string) => void): Promise<number> {
    const t = this.#t.credentials;
    const ids = (await this.pool.query<{ address: string; credential_id: string }>(`SELECT address, credential_id FROM ${t} ORDER BY address, credential_id`))
      .rows;
    let moved = 0;
    for (const id of ids) {
      const done = await this.tx(async (c) => {
        const r = (await c.query<CredRow>(`SELECT * FROM ${t} WHERE address = $1 AND credential_id = $2 FOR UPDATE`, [id.address, id.credential_id])).rows[0];
        if (!r) return false;
        const resealed = reseal(this.key, next, r);
        if (!resealed) return false;
        await c.query(`UPDATE ${t} SET nonce = $1, ciphertext = $2, tag = $3 WHERE address = $4 AND credential_id = $5`, [
          resealed.nonce,
          resealed.ciphertext,
          resealed.tag,
          r.address,
          r.credential_id,
        ]);
        return true;
      });
      if (done) {
        moved++;
        after?.(id.address);
      }
    }
    return moved;
  }

  async finishRotation(next: MasterKey, actor: string, at: string): Promise<void> {
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, lockKey(`${this.schema}/meta`)]);
      // The audit lock first: no replica appends between the check of the chain and the switch.
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, this.#auditLockKey]);
      const pending = await this.#meta(c, KEY_CHECK_NEXT);
      if (pending !== next.keyCheck()) throw rotationElsewhere(pending);
      for (const r of (await c.query<CredRow>(`SELECT * FROM ${this.#t.credentials}`)).rows) opensUnder(next, r);
      const entries = (await c.query<AuditRow>(`SELECT * FROM ${this.#t.audit} ORDER BY seq`)).rows.map(toAudit);
      const h = (await c.query<{ seq: string; hash: string; mac: string }>(`SELECT seq, hash, mac FROM ${this.#t.audit_head} WHERE id = 1`)).rows[0];
      refuseBrokenChain(verifyChain(this.key, entries, h ? { seq: Number(h.seq), hash: h.hash, mac: h.mac } : undefined));
      await c.query(`UPDATE ${this.#t.meta} SET value = $1 WHERE key = $2`, [next.keyCheck(), KEY_CHECK]);
      await c.query(`DELETE FROM ${this.#t.meta} WHERE key = $1`, [KEY_CHECK_NEXT]);
      await this.#append(c, { actor, event: KEY_ROTATED, address: null, outcome: 'ok', detail: rotationDetail(this.key, next, entries) }, at, next);
    });
  }

  async verifyAudit(): Promise<AuditVerdict> {
    // Entries and head from one snapshot: an append by another replica in between is no tampering.
    const { entries, head } = await this.tx(async (c) => {
      const entries = (await c.query<AuditRow>(`SELECT * FROM ${this.#t.audit} ORDER BY seq`)).rows.map(toAudit);
      const h = (await c.query<{ seq: string; hash: string; mac: string }>(`SELECT seq, hash, mac FROM ${this.#t.audit_head} WHERE id = 1`)).rows[0];
      const head: AuditHead | undefined = h ? { seq: Number(h.seq), hash: h.hash, mac: h.mac } : undefined;
      return { entries, head };
    }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    return verifyChain(this.key, entries, head);
  }

  async acquireLock(holder: string, waitMs = 0): Promise<void> {
    if (this.#lock && !this.#lock.lost) {
      // Already ours (the session lock is held on our connection): record the new holder name.
      await this.tx((c) => this.#assertKey(c, this.key, 'mine'));
      await this.#writeHolder(this.#lock.client, holder);
      return;
    }
    if (this.#lock) await this.releaseLock();

    const deadline = Date.now() + waitMs;
    const client = await this.pool.connect();
    const lock: HeldLock = { client, lost: undefined, onError: (e) => void (lock.lost = e) };
    client.on('error', lock.onError);
    let taken = false;
    try {
      // Let the server notice within about a minute when this replica's host vanishes without
      // closing the connection, so the lock does not outlive it by the OS default of hours.
      await client.query('SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3').catch(() => undefined);
      for (;;) {
        const { rows } = await client.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS got', [LOCK_SPACE, this.#stateLockKey]);
        if (rows[0]?.got) break;
        if (Date.now() >= deadline) throw await this.#lockedError();
        await sleep(Math.max(0, Math.min(250, deadline - Date.now())));
      }
      taken = true;
      // A replica that opened the state before a rekey is refused here, before its run reads or
      // changes any backend (the keys it would make could not be stored, nor its changes audited).
      await this.tx((c) => this.#assertKey(c, this.key, 'mine'));
      await this.#writeHolder(client, holder);
    } catch (e) {
      client.removeListener('error', lock.onError);
      // Dropping the connection gives the advisory lock back if we had taken it.
      client.release(taken ? (e as Error) : lock.lost);
      throw e;
    }
    this.#lock = lock;
  }

  async #writeHolder(client: pg.PoolClient, holder: string): Promise<void> {
    await client.query(
      `INSERT INTO ${this.#t.locks} (name, holder, pid, host, acquired_at, backend_pid) VALUES ($1, $2, $3, $4, $5, pg_backend_pid())
       ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, pid = EXCLUDED.pid, host = EXCLUDED.host,
         acquired_at = EXCLUDED.acquired_at, backend_pid = EXCLUDED.backend_pid`,
      [LOCK_NAME, holder, process.pid, hostname(), new Date().toISOString()],
    );
  }

  async #lockedError(): Promise<LockError> {
    // The holder writes its row just after taking the lock; give that moment a chance.
    for (let i = 0; i < 5; i++) {
      const current = await this.lockHolder();
      if (current) {
        return new LockError(
          `the state is locked by ${current.holder} (pid ${current.pid} on ${current.host}, since ${current.acquiredAt}); wait for it to finish, or pass --lock-timeout to wait`,
        );
      }
      await sleep(100);
    }
    return new LockError('the state is locked by another replica that has not recorded its name; wait for it to finish, or pass --lock-timeout to wait');
  }

  async releaseLock(): Promise<void> {
    const lock = this.#lock;
    if (!lock) return;
    this.#lock = undefined;
    let broken: Error | undefined = lock.lost;
    if (!broken) {
      try {
        await lock.client.query(`DELETE FROM ${this.#t.locks} WHERE name = $1 AND backend_pid = pg_backend_pid()`, [LOCK_NAME]);
        await lock.client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_SPACE, this.#stateLockKey]);
      } catch (e) {
        // Dropping the connection below releases the lock all the same.
        broken = e as Error;
      }
    }
    lock.client.removeListener('error', lock.onError);
    lock.client.release(broken);
  }

  async lockHolder(): Promise<LockHolder | undefined> {
    // The row alone proves nothing (its replica may have died): it counts only while the session
    // that wrote it still holds the advisory lock.
    const { rows } = await this.pool.query<{ holder: string; pid: number; host: string; acquired_at: string }>(
      `SELECT l.holder, l.pid, l.host, l.acquired_at FROM ${this.#t.locks} l
       WHERE l.name = $1 AND EXISTS (
         SELECT 1 FROM pg_locks k
         WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.backend_pid
           AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND k.classid = $2::oid AND k.objid = $3::oid AND k.objsubid = 2)`,
      [LOCK_NAME, LOCK_SPACE, this.#stateLockKey],
    );
    const r = rows[0];
    return r ? { holder: r.holder, pid: r.pid, host: r.host, acquiredAt: r.acquired_at } : undefined;
  }

  /** Releases the state lock if held, then ends the pool. */
  async close(): Promise<void> {
    await this.releaseLock();
    await this.pool.end();
  }
}
