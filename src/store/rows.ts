// Row shapes shared by the SQLite and PostgreSQL stores: the two keep the same columns.
import { RequestError, ReviewError } from '../core/errors.js';
import type { Level } from '../core/types.js';
import type { AccessReportRow } from '../model/access.js';
import { TRANSITION_FROM, type AccessRequest, type RequestState, type RequestTransition } from '../model/request.js';
import type { Review, ReviewDecision, ReviewManifest, ReviewVerdict } from '../model/review.js';
import type { AuditEntry, CredentialRow, SessionRecord } from './store.js';

export interface CredRow {
  address: string;
  credential_id: string;
  backend: string;
  principal: string;
  state: 'current' | 'retiring';
  created_at: string;
  retire_at: string | null;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export function toCredential(r: CredRow): CredentialRow {
  return {
    address: r.address,
    credentialId: r.credential_id,
    backend: r.backend,
    principal: r.principal,
    state: r.state,
    createdAt: r.created_at,
    ...(r.retire_at ? { retireAt: r.retire_at } : {}),
  };
}

/** Associated data of a sealed secret: a ciphertext only opens in its own row. */
export const credentialAad = (address: string, credentialId: string) => `${address}#${credentialId}`;

export interface SessionRow {
  backend: string;
  principal: string;
  target: string;
  last_issued_at: string;
  expires_at: string;
}

export function toSession(r: SessionRow): SessionRecord {
  return { backend: r.backend, principal: r.principal, target: r.target, lastIssuedAt: r.last_issued_at, expiresAt: r.expires_at };
}

/**
 * One spelling for every instant the stores compare as text (`2026-11-30T12:00:00.000Z`), so that
 * text order is time order. Refuses what is not an instant.
 */
export function instant(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new TypeError(`not an ISO instant: ${JSON.stringify(iso)}`);
  return new Date(t).toISOString();
}

export interface ReviewRow {
  name: string;
  started_at: string;
  started_by: string;
  manifest: string;
  population: string;
  emails: string;
  closed_at: string | null;
  closed_by: string | null;
}

export interface DecisionRow {
  row_id: string;
  reviewer: string;
  actor: string;
  decision: ReviewVerdict;
  reason: string;
  decided_at: string;
  /** 0/1 in SQLite, a boolean in PostgreSQL. */
  self_review: number | boolean;
  /** BIGINT comes back from PostgreSQL as a string. */
  audit_seq: number | string;
}

export function toDecision(r: DecisionRow): ReviewDecision {
  return {
    rowId: r.row_id,
    decision: r.decision,
    reason: r.reason,
    reviewer: r.reviewer,
    actor: r.actor,
    decidedAt: r.decided_at,
    selfReview: Boolean(r.self_review),
    auditSeq: Number(r.audit_seq),
  };
}

export function toReview(r: ReviewRow, decisions: DecisionRow[]): Review {
  return {
    name: r.name,
    startedAt: r.started_at,
    startedBy: r.started_by,
    manifest: JSON.parse(r.manifest) as ReviewManifest,
    population: JSON.parse(r.population) as AccessReportRow[],
    emails: JSON.parse(r.emails) as Record<string, string>,
    decisions: decisions.map(toDecision),
    closedAt: r.closed_at,
    closedBy: r.closed_by,
  };
}

export const reviewTaken = (r: Pick<ReviewRow, 'name' | 'started_at' | 'started_by'>) =>
  new ReviewError(
    `a review named ${JSON.stringify(r.name)} already exists (started ${r.started_at} by ${r.started_by}); review names are never reused, so that evidence always names one review: choose another name`,
  );

export const reviewUnknown = (name: string) => new ReviewError(`there is no review named ${JSON.stringify(name)}; \`datagrant review list\` shows them`);

export const reviewClosed = (r: Pick<ReviewRow, 'name' | 'closed_at' | 'closed_by'>) =>
  new ReviewError(`the review ${JSON.stringify(r.name)} was closed ${r.closed_at} by ${r.closed_by}; a closed review takes no more decisions`);

export interface RequestRow {
  /** BIGINT comes back from PostgreSQL as a string. */
  id: number | string;
  requester: string;
  dataset: string;
  level: Level;
  duration: string;
  reason: string;
  state: RequestState;
  requested_at: string;
  requested_via: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_reason: string | null;
  decided_via: string | null;
  ends_at: string | null;
  closed_at: string | null;
  closed_by: string | null;
  close_reason: string | null;
  closed_via: string | null;
  audit_seq: number | string;
}

export function toRequest(r: RequestRow): AccessRequest {
  return {
    id: Number(r.id),
    requester: r.requester,
    dataset: r.dataset,
    level: r.level,
    duration: r.duration,
    reason: r.reason,
    state: r.state,
    requestedAt: r.requested_at,
    requestedVia: r.requested_via,
    ...(r.decided_at !== null ? { decision: { by: r.decided_by!, at: r.decided_at, reason: r.decision_reason!, via: r.decided_via! } } : {}),
    ...(r.ends_at !== null ? { endsAt: r.ends_at } : {}),
    ...(r.closed_at !== null
      ? { closed: { at: r.closed_at, ...(r.closed_by !== null ? { by: r.closed_by } : {}), reason: r.close_reason!, via: r.closed_via! } }
      : {}),
    auditSeq: Number(r.audit_seq),
  };
}

/** The columns a change writes, in this order: state, decided_*, ends_at, closed_*. */
export function transitionColumns(t: RequestTransition): (string | null)[] {
  const d = t.to === 'cancelled' ? undefined : t.decision;
  const c = t.to === 'cancelled' ? t.closed : undefined;
  return [
    t.to,
    d?.by ?? null,
    d ? instant(d.at) : null,
    d?.reason ?? null,
    d?.via ?? null,
    t.to === 'approved' ? instant(t.endsAt) : null,
    c ? instant(c.at) : null,
    c?.by ?? null,
    c?.reason ?? null,
    c?.via ?? null,
  ];
}

export const requestUnknown = (id: number) => new RequestError('not-found', `there is no request #${id}; \`datagrant requests list\` shows them`);

/**
 * Why `r` cannot take change `t`, or undefined when it can: a decision is taken once, on a pending
 * request; an approved one can be cancelled only while its access lasts.
 */
export function transitionRefusal(
  r: Pick<RequestRow, 'id' | 'state' | 'ends_at' | 'decided_by' | 'decided_at' | 'closed_at'>,
  t: RequestTransition,
): RequestError | undefined {
  const id = Number(r.id);
  if (!TRANSITION_FROM[t.to].includes(r.state)) {
    const when = r.state === 'approved' || r.state === 'denied' ? ` by ${r.decided_by} at ${r.decided_at}` : r.closed_at ? ` at ${r.closed_at}` : '';
    const verb = { approved: 'approved', denied: 'denied', cancelled: 'cancelled' }[t.to];
    return new RequestError('conflict', `request #${id} was already ${r.state}${when}; a request that is ${r.state} cannot be ${verb}`);
  }
  if (t.to === 'cancelled' && r.state === 'approved' && r.ends_at !== null && r.ends_at <= instant(t.closed.at)) {
    return new RequestError('conflict', `request #${id} ended at ${r.ends_at}; there is nothing left to cancel`);
  }
  return undefined;
}

/** An audit row as either database returns it (PostgreSQL gives BIGINT as a string). */
export interface AuditRow {
  seq: number | string;
  at: string;
  actor: string;
  event: string;
  address: string | null;
  outcome: string;
  detail: string | null;
  prev_hash: string;
  hash: string;
}

export function toAudit(r: AuditRow): AuditEntry {
  return {
    // BIGINT comes back as a string; the MAC covers the number.
    seq: Number(r.seq),
    at: r.at,
    actor: r.actor,
    event: r.event,
    address: r.address ?? null,
    outcome: r.outcome,
    detail: r.detail ?? null,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}
