// Requests for access (issue 15): a person asks for a dataset at a level for a while, with a
// reason; an approver the spec names approves or denies it, with a reason; an approved request is
// a time-bound grant until it ends. Plain, serialisable data shared by the store, the app, the CLI
// and serve's API.
import type { Level } from '../core/types.js';

/**
 * `pending` → `approved` | `denied` | `cancelled` | `expired` (nobody decided in time);
 * `approved` → `expired` (its end passed) | `cancelled` (ended early by the requester).
 */
export type RequestState = 'pending' | 'approved' | 'denied' | 'cancelled' | 'expired';
export const REQUEST_STATES: readonly RequestState[] = ['pending', 'approved', 'denied', 'cancelled', 'expired'];

export interface AccessRequest {
  /** Given by the store, in order of creation. */
  id: number;
  /** The principal who asks, and who gets the access. */
  requester: string;
  dataset: string;
  level: Level;
  /** How long the access lasts once approved, as written (`7d`, `12h`). */
  duration: string;
  reason: string;
  state: RequestState;
  requestedAt: string;
  /** Who made the request: the CLI's actor (`alice@cli`), or `oidc:<issuer>:<sub>` through serve. */
  requestedVia: string;
  /** Approved or denied: by which principal, when, why, and through whom (the CLI's actor, or the token's). */
  decision?: { by: string; at: string; reason: string; via: string };
  /** Approved: when the access ends (approval time + duration). */
  endsAt?: string;
  /** Cancelled or expired: when, by which principal (none for an expiry), and why. */
  closed?: { at: string; by?: string; reason: string; via: string };
  /** The audit entry of the request's last change. */
  auditSeq: number;
}

/** A new request as the store takes it. */
export type NewRequest = Pick<AccessRequest, 'requester' | 'dataset' | 'level' | 'duration' | 'reason' | 'requestedAt' | 'requestedVia'>;

/** One state change of a request. */
export type RequestTransition =
  | { to: 'approved'; decision: NonNullable<AccessRequest['decision']>; endsAt: string }
  | { to: 'denied'; decision: NonNullable<AccessRequest['decision']> }
  | { to: 'cancelled'; closed: NonNullable<AccessRequest['closed']> };

/** The states a request must be in for each change: a decision is taken once, on a pending request. */
export const TRANSITION_FROM: Record<RequestTransition['to'], readonly RequestState[]> = {
  approved: ['pending'],
  denied: ['pending'],
  cancelled: ['pending', 'approved'],
};

/** How the audit chain names a request (its entries' address). */
export const requestAddress = (id: number) => `request/${id}`;
