// What datagrant remembers between runs: encrypted credentials, what it last applied (to tell
// drift from spec changes), the journal of intents and outcomes, the audit chain and the lock.
import type { KnownCredential } from '../model/credential.js';
import type { Change, Json } from '../core/types.js';
import type { AccessRequest, NewRequest, RequestState, RequestTransition } from '../model/request.js';
import type { Review, ReviewDecision, ReviewSummary } from '../model/review.js';
import type { MasterKey } from './crypto.js';

export interface CredentialRow extends KnownCredential {
  backend: string;
  /** Principal the credential belongs to (the spec's name). */
  principal: string;
}

export interface JournalEntry {
  id: number;
  runId: string;
  address: string;
  action: string;
  startedAt: string;
  finishedAt: string | null;
  outcome: 'pending' | 'ok' | 'failed' | 'interrupted';
  detail: string | null;
  /**
   * Hash of the attributes the change set out to make (null for a delete): a change interrupted by
   * a crash whose object is found with exactly these attributes took effect and is recorded as
   * applied, instead of looking like something datagrant did not make.
   */
  afterHash: string | null;
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  /** What happened: `change.create`, `credential.issue`, `credential.reveal`, … */
  event: string;
  address: string | null;
  outcome: string;
  detail: string | null;
  prevHash: string;
  hash: string;
}

export type AuditInput = Pick<AuditEntry, 'actor' | 'event' | 'address' | 'outcome' | 'detail'>;

export interface AuditVerdict {
  ok: boolean;
  entries: number;
  /** The first entry that does not fit the chain, and why. */
  firstBad?: { seq: number; reason: string };
  /** The entries where the master key changed (`datagrant rekey`), oldest first. */
  keyChanges?: { seq: number; at: string }[];
}

export interface LockHolder {
  holder: string;
  pid: number;
  host: string;
  acquiredAt: string;
}

/**
 * A backend datagrant has applied to, as the spec described it then, without secrets: a backend
 * that disappears from the spec is still reached (to tear down what datagrant made there).
 */
export interface StoredBackend {
  name: string;
  type: string;
  settings: { [key: string]: Json };
}

// The store is one object with one contract, but no caller needs all of it: each port below is
// what some caller does with the state, and a caller asks for the ports it uses (apply records
// outcomes; it never takes the lock or forgets a backend).

/** This installation's identity, carried by every object datagrant makes. */
export interface InstallationIdentity {
  /**
   * This installation's id: made when the state was created (or given to `init --installation`),
   * carried by every object datagrant makes, so that two states never take each other's objects.
   */
  installation(): Promise<string>;
  /** Give a fresh state (no credentials, nothing applied) the id of an existing installation. */
  setInstallation(id: string): Promise<void>;
}

/** The backends datagrant has applied to, so that one removed from the spec is still torn down. */
export interface BackendRegistry {
  backends(): Promise<StoredBackend[]>;
  rememberBackend(b: StoredBackend): Promise<void>;
  /** Forget a backend and everything recorded for it (applied state, credentials). */
  forgetBackend(name: string): Promise<void>;
}

/** Issued credentials, sealed under the master key and bound to their address. */
export interface CredentialStore {
  /** Every stored credential, without its secret, ordered by address (byte order), then creation. */
  credentials(): Promise<CredentialRow[]>;
  /**
   * Store a newly issued credential as the current one for its address. Any previous current
   * credential becomes `retiring` until `retireAt`, or is erased when no `retireAt` is given.
   * One transaction: there is never a moment with two current credentials or none stored.
   */
  saveCredential(row: Omit<CredentialRow, 'state' | 'retireAt'>, secret: Record<string, string>, retireAt?: string): Promise<void>;
  /** The current credential with its secret, for `credentials show --reveal` and `export`. */
  revealCredential(address: string): Promise<{ row: CredentialRow; secret: Record<string, string> } | undefined>;
  eraseCredential(address: string, credentialId: string): Promise<void>;
  retireCredential(address: string, credentialId: string, retireAt: string): Promise<void>;
}

/** What was last applied at each address (a hash of its attributes): tells drift from spec changes. */
export interface AppliedStore {
  applied(): Promise<Record<string, string>>;
  setApplied(address: string, hash: string | null): Promise<void>;
}

/** Intent before every side effect, outcome after it: what a crash left half done. */
export interface JournalStore {
  journalBegin(runId: string, change: Change, at: string, afterHash?: string | null): Promise<number>;
  journalEnd(id: number, outcome: 'ok' | 'failed', at: string, detail?: string): Promise<void>;
  /** Entries left `pending` by a run that died; marks them `interrupted` and returns them. */
  recoverJournal(): Promise<JournalEntry[]>;
  /** The newest `limit` entries, newest first. */
  journal(limit?: number): Promise<JournalEntry[]>;
  /** Entries still `pending` (a run in progress, or one that died), without marking them: for plan. */
  journalPending(): Promise<JournalEntry[]>;
  /** Which of these addresses the journal has ever seen a change for. */
  journaled(addresses: string[]): Promise<Set<string>>;
}

/** The audit log: a hash chain MAC'd under the master key, so an edit, cut or insertion shows. */
export interface AuditLog {
  audit(entry: AuditInput, at: string): Promise<void>;
  auditEntries(): Promise<AuditEntry[]>;
  /** The newest `limit` entries, newest first: for pages that show recent history without reading it all. */
  auditTail(limit: number): Promise<AuditEntry[]>;
  verifyAudit(): Promise<AuditVerdict>;
  /** The last entry's seq and hash (its MAC), without reading the chain; undefined when empty. */
  auditHead(): Promise<{ seq: number; hash: string } | undefined>;
}

/**
 * Access reviews. Every write appends its audit entry in the same transaction, so a review and
 * the chain never disagree about what was decided (a crash leaves both or neither).
 */
export interface ReviewStore {
  /** Store a new review. A name already taken (by an open or closed review) is a ReviewError. */
  startReview(review: Omit<Review, 'decisions' | 'closedAt' | 'closedBy'>, audit: AuditInput): Promise<void>;
  /** Every review, oldest first. */
  reviews(): Promise<ReviewSummary[]>;
  /** One review with its decisions (ordered by row id, then reviewer), or undefined. */
  review(name: string): Promise<Review | undefined>;
  /**
   * Record decisions, each with its audit entry (`audits[i]` for `decisions[i]`), all or none. A
   * reviewer's later decision on a row replaces their earlier one (the audit chain keeps both).
   * An unknown or closed review is a ReviewError. Returns the decisions with their audit seqs.
   */
  recordDecisions(name: string, decisions: Omit<ReviewDecision, 'auditSeq'>[], audits: AuditInput[]): Promise<ReviewDecision[]>;
  /** Close a review: no decision is taken after this. Closing an unknown or closed one is a ReviewError. */
  closeReview(name: string, at: string, by: string, audit: AuditInput): Promise<void>;
}

/**
 * Requests for access. Every change appends its audit entry in the same transaction, so a request
 * and the chain never disagree (a crash leaves both or neither); each request names its last
 * entry (`auditSeq`).
 */
export interface RequestStore {
  /** Store a new pending request; its audit entry is made from the id it is given. */
  createRequest(r: NewRequest, audit: (id: number) => AuditInput): Promise<AccessRequest>;
  request(id: number): Promise<AccessRequest | undefined>;
  /** Requests in these states (default all) of this requester (default anyone), by id. */
  requests(filter?: { states?: readonly RequestState[]; requester?: string }): Promise<AccessRequest[]>;
  /**
   * One change, with its audit entry, all or nothing. A RequestError: `not-found` for an unknown
   * id; `conflict` when the request is no longer in a state the change may leave
   * (TRANSITION_FROM: another decision came first), or is an approved one whose end has passed.
   */
  changeRequest(id: number, t: RequestTransition, audit: AuditInput): Promise<AccessRequest>;
  /**
   * Expire, each with its audit entry: approved requests whose end is at or before `now`, and
   * pending ones made before `pendingBefore`. Returns them (as they are now).
   */
  expireRequests(o: { now: string; pendingBefore: string; via: string }, audit: (r: AccessRequest) => AuditInput): Promise<AccessRequest[]>;
  /** Changes with every change of any request (the newest audit entry of one; 0 for none): for caches. */
  requestsVersion(): Promise<number>;
}

/** One applying run at a time per state. */
export interface StateLock {
  /** Take the state lock or throw LockError naming the holder. A dead holder's lock is taken over. */
  acquireLock(holder: string, waitMs?: number): Promise<void>;
  releaseLock(): Promise<void>;
  lockHolder(): Promise<LockHolder | undefined>;
}

/**
 * Short-lived sessions datagrant has issued, per (backend, principal, target) — the target is the
 * role (AWS) or login role (PostgreSQL) the session runs as. Secrets are never kept: only when the
 * latest session was issued and when the last one ends, which is what revoking them needs
 * (deny sessions of this principal issued until then, for as long as any may still be alive).
 */
export interface SessionRecord {
  backend: string;
  principal: string;
  target: string;
  /** ISO instant the latest session was issued. */
  lastIssuedAt: string;
  /** ISO instant the last of them expires. */
  expiresAt: string;
}

export interface SessionLog {
  /** Record one issued session: keeps the latest issue instant and the latest expiry. */
  recordSession(s: SessionRecord): Promise<void>;
  /** Every record, ordered by backend, principal, target (byte order). */
  sessions(): Promise<SessionRecord[]>;
  /** Forget records whose sessions have all expired at `now` (ISO); returns how many. */
  pruneSessions(now: string): Promise<number>;
}

/** The whole state, as `converge` uses it; test/store/store-contract.ts is its contract. */
/**
 * Moving every sealed secret and the audit chain to a new master key (`datagrant rekey`), in steps
 * a crash may interrupt anywhere: each credential is sealed under exactly one of the two keys at
 * every moment, and a store whose rotation is unfinished opens only for the rotation.
 */
export interface KeyRotationPort {
  /** The key check of the key an unfinished rotation moves to; undefined when none is. */
  rotationTarget(): Promise<string | undefined>;
  /** Records that the state moves to `next` (idempotent for the same key). */
  beginRotation(next: MasterKey): Promise<void>;
  /**
   * Seals under `next`, one transaction each, every credential still sealed under the current key;
   * `after` runs after each. A credential neither key opens stops it.
   */
  resealAll(next: MasterKey, after?: (address: string) => void): Promise<number>;
  /**
   * In one transaction: checks every credential opens under `next` and the audit chain verifies
   * under the current key, appends the `key.rotated` entry MACed under `next` (see
   * audit-chain.ts), and makes `next` the state's key.
   */
  finishRotation(next: MasterKey, actor: string, at: string): Promise<void>;
}

export interface StateStore
  extends InstallationIdentity, BackendRegistry, CredentialStore, AppliedStore, JournalStore, AuditLog, StateLock, SessionLog, ReviewStore, RequestStore {
  /** The master key this store was opened with (already checked against the store's key-check value). */
  readonly masterKey: MasterKey;
  close(): Promise<void>;
}
