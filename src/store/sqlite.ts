// The default state store: one SQLite file (`.datagrant/state.db`), readable only by its owner.
import Database from 'better-sqlite3';
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { LockError, StoreError } from '../core/errors.js';
import type { Change, Json } from '../core/types.js';
import { entryMac, GENESIS, headMac, KEY_ROTATED, rotationDetail, verifyChain, type AuditHead } from './audit-chain.js';
import type { MasterKey } from './crypto.js';
import { checkInstallationId, checkKey, checkNoRotation, INSTALLATION, KEY_CHECK, KEY_CHECK_NEXT, newInstallationId } from './meta.js';
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
} from './rows.js';
import { keyChanged, opensUnder, refuseBrokenChain, reseal, rotationElsewhere } from './rotation.js';
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

/** The state lock's row in `locks` (an apply, rekey or serve's reconcile holds it; a restore takes it). */
export const LOCK_NAME = 'state';
/** A lock whose holder has not refreshed it for this long is stale, even on another host. */
export const LOCK_STALE_MS = 60_000;
const LOCK_HEARTBEAT_MS = 10_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS credentials (
  address TEXT NOT NULL,
  credential_id TEXT NOT NULL,
  backend TEXT NOT NULL,
  principal TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('current', 'retiring')),
  created_at TEXT NOT NULL,
  retire_at TEXT,
  nonce BLOB NOT NULL,
  ciphertext BLOB NOT NULL,
  tag BLOB NOT NULL,
  PRIMARY KEY (address, credential_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_current_credential ON credentials(address) WHERE state = 'current';
CREATE TABLE IF NOT EXISTS applied (
  address TEXT PRIMARY KEY,
  attrs_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL,
  address TEXT NOT NULL,
  action TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  outcome TEXT NOT NULL,
  detail TEXT
);
CREATE INDEX IF NOT EXISTS journal_address ON journal(address);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  event TEXT NOT NULL,
  address TEXT,
  outcome TEXT NOT NULL,
  detail TEXT,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL,
  mac TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backends (
  name TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
  backend TEXT NOT NULL,
  principal TEXT NOT NULL,
  target TEXT NOT NULL,
  last_issued_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  PRIMARY KEY (backend, principal, target)
);
CREATE TABLE IF NOT EXISTS reviews (
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
CREATE TABLE IF NOT EXISTS review_decisions (
  review TEXT NOT NULL REFERENCES reviews (name),
  row_id TEXT NOT NULL,
  reviewer TEXT NOT NULL,
  actor TEXT NOT NULL,
  decision TEXT NOT NULL CHECK (decision IN ('keep', 'revoke')),
  reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
  decided_at TEXT NOT NULL,
  self_review INTEGER NOT NULL,
  audit_seq INTEGER NOT NULL,
  PRIMARY KEY (review, row_id, reviewer)
);
CREATE TABLE IF NOT EXISTS requests (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  requester TEXT NOT NULL,
  dataset TEXT NOT NULL,
  level TEXT NOT NULL CHECK (level IN ('read', 'write', 'admin')),
  duration TEXT NOT NULL,
  reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'cancelled', 'expired')),
  requested_at TEXT NOT NULL,
  requested_via TEXT NOT NULL,
  decided_by TEXT,
  decided_at TEXT,
  decision_reason TEXT,
  decided_via TEXT,
  ends_at TEXT,
  closed_at TEXT,
  closed_by TEXT,
  close_reason TEXT,
  closed_via TEXT,
  audit_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state);
CREATE TABLE IF NOT EXISTS locks (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  acquired_at TEXT NOT NULL,
  heartbeat_at INTEGER NOT NULL
);
`;

/**
 * The state's tables, as this version has them (older files gain the newer columns). A backup of
 * the PostgreSQL store is written into these same tables, so either store restores either's.
 */
export function createStateTables(db: Database.Database): void {
  db.exec(SCHEMA);
  const journalColumns = (db.pragma('table_info(journal)') as { name: string }[]).map((c) => c.name);
  if (!journalColumns.includes('after_hash')) db.exec('ALTER TABLE journal ADD COLUMN after_hash TEXT');
  const decisionColumns = (db.pragma('table_info(review_decisions)') as { name: string }[]).map((c) => c.name);
  if (!decisionColumns.includes('actor')) db.exec("ALTER TABLE review_decisions ADD COLUMN actor TEXT NOT NULL DEFAULT ''");
}

/** Whether a process of this host is alive (a lock's holder, say). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * prepare() for one connection that compiles each SQL text once: better-sqlite3 compiles on every
 * prepare(), which costs more than running a point query.
 */
export function statementCache(db: Database.Database): (text: string) => Database.Statement {
  const statements = new Map<string, Database.Statement>();
  return (text) => {
    let stmt = statements.get(text);
    if (!stmt) {
      stmt = db.prepare(text);
      statements.set(text, stmt);
    }
    return stmt;
  };
}

export class SqliteStore implements StateStore, KeyRotationPort {
  readonly db: Database.Database;
  private readonly sql: (text: string) => Database.Statement;
  #heartbeat: NodeJS.Timeout | undefined;
  /** Opened by `rekey`, or began a rotation: an unfinished rotation is its own. */
  #rotating: boolean;

  constructor(
    readonly file: string,
    private readonly key: MasterKey,
    opts: { rotating?: boolean } = {},
  ) {
    if (file !== ':memory:') {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    }
    const fresh = file === ':memory:' || !existsSync(file);
    // An empty file is a state that was lost (truncated, a failed copy), never a new one: starting
    // afresh would forget every credential and see every object datagrant made as someone else's.
    if (!fresh && statSync(file).size === 0) {
      throw new StoreError(
        `the state store ${file} is empty (0 bytes): it was truncated or badly copied, and datagrant will not start afresh over it. Restore it from a backup; only if the state is truly lost, move the file away (then see "Ownership boundary" in the README on adopting this installation's objects).`,
      );
    }
    try {
      this.db = new Database(file);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 5000');
      createStateTables(this.db);
    } catch (e) {
      throw new StoreError(
        `cannot open the state store ${file}: ${(e as Error).message}. Restore it from a backup, or check its permissions; datagrant will not start afresh over it.`,
      );
    }
    if (fresh && file !== ':memory:') chmodSync(file, 0o600);
    this.sql = statementCache(this.db);
    this.#rotating = opts.rotating ?? false;
    this.#checkKeyAndInstallation(this.#rotating);
  }

  get masterKey(): MasterKey {
    return this.key;
  }

  /**
   * Refuses a write sealed or MACed under `key` when the state has moved to another key (or is
   * moving) since this process opened it: a serve left running through `datagrant rekey` fails
   * its writes instead of mixing keys in the state. `rotation` lets through the rotation of the
   * `rekey` that opened this store (its lock, taken again on a rerun).
   */
  #assertKey(key: MasterKey, rotation: 'mine' | 'none' = 'none'): void {
    const moving = this.#meta(KEY_CHECK_NEXT) !== undefined && !(rotation === 'mine' && this.#rotating);
    if (this.#meta(KEY_CHECK) !== key.keyCheck() || moving) throw keyChanged(`the state store ${this.file}`);
  }

  #meta(key: string): string | undefined {
    return (this.sql('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  #checkKeyAndInstallation(rotating: boolean): void {
    const opensSample = () => {
      const r = this.sql('SELECT * FROM credentials LIMIT 1').get() as CredRow | undefined;
      if (!r) return undefined;
      try {
        this.key.open({ nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag }, credentialAad(r.address, r.credential_id));
        return true;
      } catch {
        return false;
      }
    };
    this.db
      .transaction(() => {
        checkNoRotation(this.#meta(KEY_CHECK_NEXT), rotating, `the state store ${this.file}`);
        if (checkKey(this.key, this.#meta(KEY_CHECK), opensSample, `the state store ${this.file}`) === 'write') {
          this.sql('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(KEY_CHECK, this.key.keyCheck());
        }
        if (this.#meta(INSTALLATION) === undefined) this.sql('INSERT INTO meta (key, value) VALUES (?, ?)').run(INSTALLATION, newInstallationId());
      })
      .immediate();
  }

  async installation(): Promise<string> {
    return this.#meta(INSTALLATION)!;
  }

  async setInstallation(id: string): Promise<void> {
    checkInstallationId(id);
    this.db
      .transaction(() => {
        if (this.#meta(INSTALLATION) === id) return;
        const used = (this.sql('SELECT (SELECT count(*) FROM credentials) + (SELECT count(*) FROM applied) AS n').get() as { n: number }).n;
        if (used > 0)
          throw new StoreError(
            `this state already manages objects as installation ${this.#meta(INSTALLATION)}; an installation id can only be given to a fresh state`,
          );
        this.sql('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(INSTALLATION, id);
      })
      .immediate();
  }

  async backends(): Promise<StoredBackend[]> {
    const rows = this.sql('SELECT name, type, settings FROM backends ORDER BY name').all() as { name: string; type: string; settings: string }[];
    return rows.map((r) => ({ name: r.name, type: r.type, settings: JSON.parse(r.settings) as { [key: string]: Json } }));
  }

  async rememberBackend(b: StoredBackend): Promise<void> {
    this.sql('INSERT OR REPLACE INTO backends (name, type, settings) VALUES (?, ?, ?)').run(b.name, b.type, JSON.stringify(b.settings));
  }

  async forgetBackend(name: string): Promise<void> {
    this.db.transaction(() => {
      this.sql('DELETE FROM backends WHERE name = ?').run(name);
      this.sql('DELETE FROM credentials WHERE backend = ?').run(name);
      this.sql("DELETE FROM applied WHERE substr(address, 1, length(?) + 1) = ? || ':'").run(name, name);
      this.sql('DELETE FROM sessions WHERE backend = ?').run(name);
    })();
  }

  async recordSession(r: SessionRecord): Promise<void> {
    const [issued, expires] = [instant(r.lastIssuedAt), instant(r.expiresAt)];
    this.sql(
      `INSERT INTO sessions (backend, principal, target, last_issued_at, expires_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (backend, principal, target) DO UPDATE SET
         last_issued_at = max(last_issued_at, excluded.last_issued_at), expires_at = max(expires_at, excluded.expires_at)`,
    ).run(r.backend, r.principal, r.target, issued, expires);
  }

  async sessions(): Promise<SessionRecord[]> {
    const rows = this.sql('SELECT * FROM sessions ORDER BY backend, principal, target').all() as SessionRow[];
    return rows.map(toSession);
  }

  async pruneSessions(now: string): Promise<number> {
    return this.sql('DELETE FROM sessions WHERE expires_at <= ?').run(instant(now)).changes;
  }

  async credentials(): Promise<CredentialRow[]> {
    const rows = this.sql('SELECT * FROM credentials ORDER BY address, created_at').all() as CredRow[];
    return rows.map(toCredential);
  }

  async saveCredential(row: Omit<CredentialRow, 'state' | 'retireAt'>, secret: Record<string, string>, retireAt?: string): Promise<void> {
    const sealed = this.key.seal(JSON.stringify(secret), credentialAad(row.address, row.credentialId));
    this.db
      .transaction(() => {
        this.#assertKey(this.key);
        if (retireAt) {
          this.sql("UPDATE credentials SET state = 'retiring', retire_at = ? WHERE address = ? AND state = 'current'").run(retireAt, row.address);
        } else {
          this.sql("DELETE FROM credentials WHERE address = ? AND state = 'current'").run(row.address);
        }
        this.sql(
          `INSERT OR REPLACE INTO credentials (address, credential_id, backend, principal, state, created_at, retire_at, nonce, ciphertext, tag)
         VALUES (?, ?, ?, ?, 'current', ?, NULL, ?, ?, ?)`,
        ).run(row.address, row.credentialId, row.backend, row.principal, row.createdAt, sealed.nonce, sealed.ciphertext, sealed.tag);
      })
      .immediate();
  }

  async revealCredential(address: string): Promise<{ row: CredentialRow; secret: Record<string, string> } | undefined> {
    const r = this.sql("SELECT * FROM credentials WHERE address = ? AND state = 'current'").get(address) as CredRow | undefined;
    if (!r) return undefined;
    const secret = JSON.parse(this.key.open({ nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag }, credentialAad(r.address, r.credential_id))) as Record<
      string,
      string
    >;
    return { row: toCredential(r), secret };
  }

  async eraseCredential(address: string, credentialId: string): Promise<void> {
    this.sql('DELETE FROM credentials WHERE address = ? AND credential_id = ?').run(address, credentialId);
  }

  async retireCredential(address: string, credentialId: string, retireAt: string): Promise<void> {
    this.sql("UPDATE credentials SET state = 'retiring', retire_at = ? WHERE address = ? AND credential_id = ?").run(retireAt, address, credentialId);
  }

  async applied(): Promise<Record<string, string>> {
    const rows = this.sql('SELECT address, attrs_hash FROM applied').all() as { address: string; attrs_hash: string }[];
    return Object.fromEntries(rows.map((r) => [r.address, r.attrs_hash]));
  }

  async setApplied(address: string, hash: string | null): Promise<void> {
    if (hash === null) this.sql('DELETE FROM applied WHERE address = ?').run(address);
    else this.sql('INSERT OR REPLACE INTO applied (address, attrs_hash) VALUES (?, ?)').run(address, hash);
  }

  async journalBegin(runId: string, change: Change, at: string, afterHash: string | null = null): Promise<number> {
    // Only the address, action and a hash of the attributes: a change never carries a secret, and the journal stays so.
    // The intent is journaled before the side effect: a process left running through a rekey
    // stops here, before the backend call whose result it could not record.
    return this.db
      .transaction(() => {
        this.#assertKey(this.key);
        const r = this.sql("INSERT INTO journal (run_id, address, action, started_at, outcome, after_hash) VALUES (?, ?, ?, ?, 'pending', ?)").run(
          runId,
          change.address,
          change.action,
          at,
          afterHash,
        );
        return Number(r.lastInsertRowid);
      })
      .immediate();
  }

  async journalPending(): Promise<JournalEntry[]> {
    return (this.sql("SELECT * FROM journal WHERE outcome = 'pending' ORDER BY id").all() as Record<string, unknown>[]).map(toJournal);
  }

  async journaled(addresses: string[]): Promise<Set<string>> {
    const out = new Set<string>();
    const stmt = this.sql('SELECT 1 FROM journal WHERE address = ? LIMIT 1');
    for (const a of addresses) if (stmt.get(a)) out.add(a);
    return out;
  }

  async journalEnd(id: number, outcome: 'ok' | 'failed', at: string, detail?: string): Promise<void> {
    this.sql('UPDATE journal SET outcome = ?, finished_at = ?, detail = ? WHERE id = ?').run(outcome, at, detail ?? null, id);
  }

  async recoverJournal(): Promise<JournalEntry[]> {
    return this.db.transaction(() => {
      const rows = this.sql("SELECT * FROM journal WHERE outcome = 'pending' ORDER BY id").all() as Record<string, unknown>[];
      this.sql("UPDATE journal SET outcome = 'interrupted' WHERE outcome = 'pending'").run();
      return rows.map(toJournal);
    })();
  }

  async journal(limit = 1000): Promise<JournalEntry[]> {
    return (this.sql('SELECT * FROM journal ORDER BY id DESC LIMIT ?').all(limit) as Record<string, unknown>[]).map(toJournal);
  }

  async audit(entry: AuditInput, at: string): Promise<void> {
    // IMMEDIATE: the write lock before the head is read. Another connection (serve's reconciler
    // thread, a CLI command) may append meanwhile; a deferred transaction would then fail with
    // SQLITE_BUSY_SNAPSHOT at its first write instead of waiting its turn.
    this.db.transaction(() => this.#append(entry, at)).immediate();
  }

  /** Appends one entry; only inside an IMMEDIATE transaction (see audit). Returns its seq. */
  #append(entry: AuditInput, at: string, key = this.key): number {
    this.#assertKey(key);
    const head = this.sql('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
    const e = { seq: (head?.seq ?? 0) + 1, at, ...entry, prevHash: head?.hash ?? GENESIS };
    const hash = entryMac(key, e);
    this.sql('INSERT INTO audit (seq, at, actor, event, address, outcome, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
      e.seq,
      e.at,
      e.actor,
      e.event,
      e.address,
      e.outcome,
      e.detail,
      e.prevHash,
      hash,
    );
    this.sql('INSERT OR REPLACE INTO audit_head (id, seq, hash, mac) VALUES (1, ?, ?, ?)').run(e.seq, hash, headMac(key, e.seq, hash));
    return e.seq;
  }

  async auditHead(): Promise<{ seq: number; hash: string } | undefined> {
    return this.sql('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
  }

  async auditEntries(): Promise<AuditEntry[]> {
    return this.auditRows();
  }

  async auditTail(limit: number): Promise<AuditEntry[]> {
    return this.auditRows(limit);
  }

  private auditRows(tail?: number): AuditEntry[] {
    const rows = (
      tail === undefined
        ? this.sql('SELECT * FROM audit ORDER BY seq').all()
        : this.sql('SELECT * FROM audit ORDER BY seq DESC LIMIT ?').all(Math.max(0, Math.floor(tail)))
    ) as Record<string, unknown>[];
    return rows.map((r) => ({
      seq: r.seq as number,
      at: r.at as string,
      actor: r.actor as string,
      event: r.event as string,
      address: (r.address as string | null) ?? null,
      outcome: r.outcome as string,
      detail: (r.detail as string | null) ?? null,
      prevHash: r.prev_hash as string,
      hash: r.hash as string,
    }));
  }

  async verifyAudit(): Promise<AuditVerdict> {
    // One read transaction: an append by another process in between must not look like a cut.
    return this.db.transaction(() => {
      const entries = this.auditRows();
      const head = this.sql('SELECT seq, hash, mac FROM audit_head WHERE id = 1').get() as AuditHead | undefined;
      return verifyChain(this.key, entries, head);
    })();
  }

  async rotationTarget(): Promise<string | undefined> {
    return this.#meta(KEY_CHECK_NEXT);
  }

  async beginRotation(next: MasterKey): Promise<void> {
    this.db
      .transaction(() => {
        const pending = this.#meta(KEY_CHECK_NEXT);
        if (pending !== undefined && pending !== next.keyCheck()) throw rotationElsewhere(pending);
        this.sql('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(KEY_CHECK_NEXT, next.keyCheck());
      })
      .immediate();
    this.#rotating = true;
  }

  async resealAll(next: MasterKey, after?: (address: string) => void): Promise<number> {
    const ids = this.sql('SELECT address, credential_id FROM credentials ORDER BY address, credential_id').all() as {
      address: string;
      credential_id: string;
    }[];
    let moved = 0;
    for (const id of ids) {
      const done = this.db
        .transaction(() => {
          const r = this.sql('SELECT * FROM credentials WHERE address = ? AND credential_id = ?').get(id.address, id.credential_id) as CredRow | undefined;
          if (!r) return false;
          const resealed = reseal(this.key, next, r);
          if (!resealed) return false;
          this.sql('UPDATE credentials SET nonce = ?, ciphertext = ?, tag = ? WHERE address = ? AND credential_id = ?').run(
            resealed.nonce,
            resealed.ciphertext,
            resealed.tag,
            r.address,
            r.credential_id,
          );
          return true;
        })
        .immediate();
      if (done) {
        moved++;
        after?.(id.address);
      }
    }
    return moved;
  }

  async finishRotation(next: MasterKey, actor: string, at: string): Promise<void> {
    this.db
      .transaction(() => {
        const pending = this.#meta(KEY_CHECK_NEXT);
        if (pending !== next.keyCheck()) throw rotationElsewhere(pending);
        for (const r of this.sql('SELECT * FROM credentials').all() as CredRow[]) opensUnder(next, r);
        const entries = this.auditRows();
        const head = this.sql('SELECT seq, hash, mac FROM audit_head WHERE id = 1').get() as AuditHead | undefined;
        refuseBrokenChain(verifyChain(this.key, entries, head));
        this.sql('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(KEY_CHECK, next.keyCheck());
        this.sql('DELETE FROM meta WHERE key = ?').run(KEY_CHECK_NEXT);
        this.#append({ actor, event: KEY_ROTATED, address: null, outcome: 'ok', detail: rotationDetail(this.key, next, entries) }, at, next);
      })
      .immediate();
  }

  async startReview(review: Omit<Review, 'decisions' | 'closedAt' | 'closedBy'>, audit: AuditInput): Promise<void> {
    this.db
      .transaction(() => {
        const taken = this.sql('SELECT * FROM reviews WHERE name = ?').get(review.name) as ReviewRow | undefined;
        if (taken) throw reviewTaken(taken);
        this.sql(
          `INSERT INTO reviews (name, started_at, started_by, manifest, population, population_rows, emails)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          review.name,
          review.startedAt,
          review.startedBy,
          JSON.stringify(review.manifest),
          JSON.stringify(review.population),
          review.population.length,
          JSON.stringify(review.emails),
        );
        this.#append(audit, review.startedAt);
      })
      .immediate();
  }

  async reviews(): Promise<ReviewSummary[]> {
    const rows = this.sql(
      `SELECT r.name, r.started_at, r.started_by, r.closed_at, r.population_rows,
         (SELECT count(DISTINCT d.row_id) FROM review_decisions d WHERE d.review = r.name) AS decided
       FROM reviews r ORDER BY r.started_at, r.name`,
    ).all() as { name: string; started_at: string; started_by: string; closed_at: string | null; population_rows: number; decided: number }[];
    return rows.map((r) => ({
      name: r.name,
      startedAt: r.started_at,
      startedBy: r.started_by,
      closedAt: r.closed_at,
      rows: r.population_rows,
      decided: r.decided,
    }));
  }

  async review(name: string): Promise<Review | undefined> {
    return this.db.transaction(() => {
      const r = this.sql('SELECT * FROM reviews WHERE name = ?').get(name) as ReviewRow | undefined;
      if (!r) return undefined;
      const decisions = this.sql('SELECT * FROM review_decisions WHERE review = ? ORDER BY row_id, reviewer').all(name) as DecisionRow[];
      return toReview(r, decisions);
    })();
  }

  async recordDecisions(name: string, decisions: Omit<ReviewDecision, 'auditSeq'>[], audits: AuditInput[]): Promise<ReviewDecision[]> {
    if (decisions.length !== audits.length) throw new TypeError('one audit entry per decision');
    return this.db
      .transaction(() => {
        const r = this.sql('SELECT name, closed_at, closed_by FROM reviews WHERE name = ?').get(name) as ReviewRow | undefined;
        if (!r) throw reviewUnknown(name);
        if (r.closed_at) throw reviewClosed(r);
        return decisions.map((d, i) => {
          const auditSeq = this.#append(audits[i]!, d.decidedAt);
          this.sql(
            `INSERT OR REPLACE INTO review_decisions (review, row_id, reviewer, actor, decision, reason, decided_at, self_review, audit_seq)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          ).run(name, d.rowId, d.reviewer, d.actor, d.decision, d.reason, d.decidedAt, d.selfReview ? 1 : 0, auditSeq);
          return { ...d, auditSeq };
        });
      })
      .immediate();
  }

  async closeReview(name: string, at: string, by: string, audit: AuditInput): Promise<void> {
    this.db
      .transaction(() => {
        const r = this.sql('SELECT name, closed_at, closed_by FROM reviews WHERE name = ?').get(name) as ReviewRow | undefined;
        if (!r) throw reviewUnknown(name);
        if (r.closed_at) throw reviewClosed(r);
        this.sql('UPDATE reviews SET closed_at = ?, closed_by = ? WHERE name = ?').run(at, by, name);
        this.#append(audit, at);
      })
      .immediate();
  }

  async createRequest(r: NewRequest, audit: (id: number) => AuditInput): Promise<AccessRequest> {
    return this.db
      .transaction(() => {
        const id = Number(
          this.sql(
            `INSERT INTO requests (requester, dataset, level, duration, reason, state, requested_at, requested_via, audit_seq)
             VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, 0)`,
          ).run(r.requester, r.dataset, r.level, r.duration, r.reason, instant(r.requestedAt), r.requestedVia).lastInsertRowid,
        );
        const seq = this.#append(audit(id), instant(r.requestedAt));
        this.sql('UPDATE requests SET audit_seq = ? WHERE id = ?').run(seq, id);
        return toRequest(this.sql('SELECT * FROM requests WHERE id = ?').get(id) as RequestRow);
      })
      .immediate();
  }

  async request(id: number): Promise<AccessRequest | undefined> {
    const r = this.sql('SELECT * FROM requests WHERE id = ?').get(id) as RequestRow | undefined;
    return r ? toRequest(r) : undefined;
  }

  async requests(filter: { states?: readonly RequestState[]; requester?: string } = {}): Promise<AccessRequest[]> {
    const rows = this.sql(
      `SELECT * FROM requests WHERE (? IS NULL OR state IN (SELECT value FROM json_each(?))) AND (? IS NULL OR requester = ?) ORDER BY id`,
    ).all(filter.states ? 1 : null, JSON.stringify(filter.states ?? []), filter.requester ?? null, filter.requester ?? null) as RequestRow[];
    return rows.map(toRequest);
  }

  async changeRequest(id: number, t: RequestTransition, audit: AuditInput): Promise<AccessRequest> {
    const at = t.to === 'cancelled' ? t.closed.at : t.decision.at;
    return this.db
      .transaction(() => {
        const r = this.sql('SELECT * FROM requests WHERE id = ?').get(id) as RequestRow | undefined;
        if (!r) throw requestUnknown(id);
        const refusal = transitionRefusal(r, t);
        if (refusal) throw refusal;
        const seq = this.#append(audit, instant(at));
        this.sql(
          `UPDATE requests SET state = ?, decided_by = coalesce(?, decided_by), decided_at = coalesce(?, decided_at),
             decision_reason = coalesce(?, decision_reason), decided_via = coalesce(?, decided_via), ends_at = coalesce(?, ends_at),
             closed_at = ?, closed_by = ?, close_reason = ?, closed_via = ?, audit_seq = ? WHERE id = ?`,
        ).run(...transitionColumns(t), seq, id);
        return toRequest(this.sql('SELECT * FROM requests WHERE id = ?').get(id) as RequestRow);
      })
      .immediate();
  }

  async expireRequests(o: { now: string; pendingBefore: string; via: string }, audit: (r: AccessRequest) => AuditInput): Promise<AccessRequest[]> {
    const [now, before] = [instant(o.now), instant(o.pendingBefore)];
    const due = `SELECT * FROM requests WHERE (state = 'approved' AND ends_at <= ?) OR (state = 'pending' AND requested_at < ?) ORDER BY id`;
    // Most runs find nothing: no write transaction (and no wait for the write lock) then.
    if (!this.sql(due).get(now, before)) return [];
    return this.db
      .transaction(() =>
        (this.sql(due).all(now, before) as RequestRow[]).map((row) => {
          const reason = row.state === 'approved' ? `its access ended at ${row.ends_at}` : `nobody approved or denied it by ${before}`;
          const closed: RequestRow = { ...row, state: 'expired', closed_at: now, closed_by: null, close_reason: reason, closed_via: o.via };
          const seq = this.#append(audit(toRequest(closed)), now);
          this.sql("UPDATE requests SET state = 'expired', closed_at = ?, close_reason = ?, closed_via = ?, audit_seq = ? WHERE id = ?").run(
            now,
            reason,
            o.via,
            seq,
            row.id,
          );
          return toRequest({ ...closed, audit_seq: seq });
        }),
      )
      .immediate();
  }

  async requestsVersion(): Promise<number> {
    return (this.sql('SELECT coalesce(max(audit_seq), 0) AS v FROM requests').get() as { v: number }).v;
  }

  async acquireLock(holder: string, waitMs = 0): Promise<void> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const current = this.tryLock(holder);
      if (!current) break;
      if (Date.now() >= deadline) {
        throw new LockError(
          `the state is locked by ${current.holder} (pid ${current.pid} on ${current.host}, since ${current.acquiredAt}); wait for it to finish, or pass --lock-timeout to wait`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    // Taken again by its holder (a new holder name): one heartbeat, not one per acquire.
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => {
      this.sql('UPDATE locks SET heartbeat_at = ? WHERE name = ? AND pid = ?').run(Date.now(), LOCK_NAME, process.pid);
    }, LOCK_HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  /**
   * Returns the other holder when the lock is taken, undefined when we now hold it. A process
   * that opened the state before a rekey is refused here, before its run reads or changes any
   * backend (the keys it would make could not be stored, nor its changes audited).
   */
  private tryLock(holder: string): LockHolder | undefined {
    return this.db
      .transaction(() => {
        this.#assertKey(this.key, 'mine');
        const row = this.sql('SELECT * FROM locks WHERE name = ?').get(LOCK_NAME) as
          { holder: string; pid: number; host: string; acquired_at: string; heartbeat_at: number } | undefined;
        if (row) {
          const sameHost = row.host === hostname();
          const dead = sameHost ? !pidAlive(row.pid) || row.pid === process.pid : Date.now() - row.heartbeat_at > LOCK_STALE_MS;
          if (!dead) return { holder: row.holder, pid: row.pid, host: row.host, acquiredAt: row.acquired_at };
        }
        this.sql('INSERT OR REPLACE INTO locks (name, holder, pid, host, acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)').run(
          LOCK_NAME,
          holder,
          process.pid,
          hostname(),
          new Date().toISOString(),
          Date.now(),
        );
        return undefined;
      })
      .immediate();
  }

  async releaseLock(): Promise<void> {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    this.sql('DELETE FROM locks WHERE name = ? AND pid = ?').run(LOCK_NAME, process.pid);
  }

  async lockHolder(): Promise<LockHolder | undefined> {
    const row = this.sql('SELECT * FROM locks WHERE name = ?').get(LOCK_NAME) as { holder: string; pid: number; host: string; acquired_at: string } | undefined;
    return row ? { holder: row.holder, pid: row.pid, host: row.host, acquiredAt: row.acquired_at } : undefined;
  }

  async close(): Promise<void> {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.db.close();
  }
}

function toJournal(r: Record<string, unknown>): JournalEntry {
  return {
    id: r.id as number,
    runId: r.run_id as string,
    address: r.address as string,
    action: r.action as string,
    startedAt: r.started_at as string,
    finishedAt: (r.finished_at as string | null) ?? null,
    outcome: r.outcome as JournalEntry['outcome'],
    detail: (r.detail as string | null) ?? null,
    afterHash: (r.after_hash as string | null) ?? null,
  };
}
