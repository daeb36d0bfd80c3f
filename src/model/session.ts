// Short-lived sessions (issue 12) as the pure core sees them: why one is refused, and what the
// state remembers of those issued (to revoke them), as plain data the compiler can take.

/**
 * Why no session is issued:
 * - `unknown-principal`: no such principal (any longer);
 * - `unknown-backend`: no such backend in the spec;
 * - `not-temporary`: the principal has keys (`credentials: key`), not sessions;
 * - `no-access`: the principal has no unexpired grant on that backend.
 */
export type SessionRefusal = 'unknown-principal' | 'unknown-backend' | 'not-temporary' | 'no-access';

/** What the session log holds per (backend, principal, target): see `SessionLog` in src/store. */
export interface SessionFact {
  backend: string;
  principal: string;
  /** The AWS role, or the PostgreSQL login role, the sessions ran as. */
  target: string;
  /** ISO instant the latest session was issued. */
  lastIssuedAt: string;
  /** ISO instant the last of them ends. */
  expiresAt: string;
}
