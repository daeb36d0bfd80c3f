// The SCIM store's contract (test/scim/store-contract.ts runs it on both stores).
//
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
import type { JsonObject, ResourceType } from '../schemas.js';

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
