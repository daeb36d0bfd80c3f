// The session broker as its callers see it (issue 12): `datagrant credentials export` / `exec`
// and serve's POST /v1/credentials/:backend ask it for a short-lived session of one principal on
// one backend. The broker (src/app/sessions.ts) decides whether that principal may have one,
// issues it (STS AssumeRole, or a PostgreSQL login role VALID UNTIL the end), records it for
// revocation and returns it once the backend accepts it.
//
// Auditing is the caller's: only the caller knows who asked (the CLI's actor, or
// `oidc:<issuer>:<subject>`), and it must also audit the refusals that never reach the broker
// (a token that names no principal).
import { DatagrantError } from '../core/errors.js';
import type { SessionRefusal } from '../model/session.js';

export interface SessionRequest {
  /** The backend's name in the spec. */
  backend: string;
  /** The principal's name (the spec's, or a SCIM person's). */
  principal: string;
  source: 'cli' | 'oidc';
  /** With `oidc`: the verified token's `sub`. */
  subject?: string;
  /** With `oidc`: the name of the issuer (settings.oidc) that signed the token. */
  issuer?: string;
}

export interface AwsSession {
  kind: 'aws';
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  /** ISO 8601 instant the session ends. */
  expiration: string;
}

export interface PostgresSession {
  kind: 'postgres';
  user: string;
  password: string;
  host?: string;
  port?: number;
  database?: string;
  /** ISO 8601 instant the login stops working (its VALID UNTIL). */
  validUntil: string;
}

export type IssuedSession = AwsSession | PostgresSession;

export interface SessionBroker {
  /** Throws SessionRefusedError when the principal may not have a session there; anything else is a failure to issue. */
  issue(req: SessionRequest): Promise<IssuedSession>;
}

export type { SessionRefusal };

/**
 * A refusal, not a failure. The message is for the principal who asked: it speaks of that
 * principal and the backend it named, and never of any other principal.
 */
export class SessionRefusedError extends DatagrantError {
  override name = 'SessionRefusedError';
  constructor(
    readonly reason: SessionRefusal,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The backend exists and the principal may have a session, but this backend's driver cannot issue
 * one. Not a refusal of the principal: the server lacks the capability (serve answers 501).
 */
export class SessionsUnsupportedError extends DatagrantError {
  override name = 'SessionsUnsupportedError';
  constructor(
    readonly backend: string,
    readonly backendType: string,
  ) {
    super(`temporary credentials are not supported on backend type ${backendType} (backend ${JSON.stringify(backend)})`);
  }
}
