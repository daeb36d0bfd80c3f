// Row shapes shared by the SQLite and PostgreSQL stores: the two keep the same columns.
import { ReviewError } from '../core/errors.js';
import type { AccessReportRow } from '../model/access.js';
import type { Review, ReviewDecision, ReviewManifest, ReviewVerdict } from '../model/review.js';
import type { CredentialRow, SessionRecord } from './store.js';

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
