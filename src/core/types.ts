// Shared, JSON-serialisable data types. Everything here is plain data: a plan written to disk
// with `plan --out` and read back by `apply FILE` must mean exactly the same thing.

export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export type Level = 'read' | 'write' | 'admin';
export const LEVELS: readonly Level[] = ['read', 'write', 'admin'];

/**
 * The one key shared by diff, journal, store and audit: `<backend>:<kind>/<name>[/<name>…]`,
 * for example `aws:user/alice`, `aws:policy/dg-group-ml-researchers`, `warehouse:role/alice`.
 * The prefix is the backend's name in the spec, so two AWS accounts never collide.
 */
export type Address = string;

/** Lifecycle hints that drive time-based changes; never compared as attributes. */
export interface Lifecycle {
  /** Replace the object (issue a new credential) once it is older than this many seconds. */
  rotateAfterSeconds?: number;
  /** Grace period in seconds before a superseded credential is deleted. */
  graceSeconds?: number;
  /** Instant (ISO 8601) after which a superseded credential may be deleted. Set on actual state only. */
  retireAt?: string;
}

/**
 * One object inside a backend's ownership boundary, as desired (compiled from the spec) or as
 * actual (read from the backend). `attrs` is what the diff compares; `meta` carries facts the
 * backend computed (ids, creation dates) that are shown but never cause a change.
 */
export interface Resource {
  address: Address;
  backend: string;
  kind: string;
  /** Backend-native name(s) needed to execute changes (user name, policy name, …). */
  name: string;
  attrs: { [key: string]: Json };
  /** Attributes whose change cannot be applied in place: the diff plans `replace`. */
  immutable?: string[];
  /** Addresses that must exist before this one is created, and outlive it when it is deleted. */
  deps: Address[];
  /**
   * Objects this one takes over from: the same access held in another form (an inline policy in
   * place of a managed one). Deleting any of them waits until this one exists, so the access is
   * never absent in between. Desired state only.
   */
  supersedes?: Address[];
  meta?: { [key: string]: Json };
  lifecycle?: Lifecycle;
}

export type Action = 'create' | 'update' | 'delete' | 'replace';

/**
 * One change. `before` is the actual object (null for create); `after` the desired one (null for
 * delete). For `replace` both are set and the object is deleted then created (credentials:
 * created first, the old one retired after its grace period). `reason` is for display only.
 */
export interface Change {
  address: Address;
  backend: string;
  kind: string;
  action: Action;
  before: Resource | null;
  after: Resource | null;
  /** True when the change reverts a modification made outside datagrant. */
  drift: boolean;
  reason: string;
}

export interface Notice {
  level: 'info' | 'warning';
  address?: Address;
  message: string;
}

export interface DesiredState {
  resources: Resource[];
  notices: Notice[];
}

/** An object inside a backend's boundary that belongs to another datagrant installation. */
export interface ForeignObject {
  address: Address;
  installation: string;
}

export interface ActualState {
  backend: string;
  resources: Resource[];
  /**
   * Objects of another installation found inside this one's boundary: never planned for change or
   * deletion; converge stops and names them.
   */
  foreign?: ForeignObject[];
  /**
   * The last use of the principals' credentials, where the read learnt it at no extra cost (the
   * AWS credential report). Never compared by the diff; `settings.expireUnused` reads it.
   */
  usage?: CredentialUse[];
}

/** One credential's last use: ISO instant, null when never used, absent when the read could not tell. */
export interface CredentialUse {
  principal: string;
  credential: string;
  createdAt: string;
  lastUsedAt?: string | null;
}

export interface Plan {
  formatVersion: 1;
  /** ISO instant the plan was computed for (the injected clock). */
  createdAt: string;
  /** Hash of the spec the plan was made from. */
  specHash: string;
  /** Per backend: hash of the actual state the plan was diffed against; apply refuses a moved state. */
  actualHashes: Record<string, string>;
  changes: Change[];
  notices: Notice[];
  /** Set on a plan saved with `plan --out`: a MAC under the master key over everything else. */
  mac?: string;
}

export function addressOf(backend: string, kind: string, ...names: string[]): Address {
  return `${backend}:${kind}/${names.join('/')}`;
}
