// POST /v1/credentials/:backend — a session for the caller's own principal, in exchange for an
// OpenID Connect ID token (issue 12, item 5). Authenticated by the token alone: the SCIM bearer
// tokens are no use here, and an ID token is no use on SCIM. The token names exactly one principal
// (settings.oidc and the principals' `oidc` entries or emails, src/spec/oidc.ts); the session
// broker decides whether that principal may have a session on the backend and issues it.
//
// Every answer is `Cache-Control: no-store`. A bad token is a 401 with `WWW-Authenticate: Bearer
// error="invalid_token"` and a fixed description; the token is never echoed, logged or audited.
// Issues and refusals of a verified token are audited with the actor `oidc:<issuer>:<sub>`.
import type { FastifyInstance } from 'fastify';
import { SessionRefusedError, SessionsUnsupportedError, type IssuedSession, type SessionBroker } from '../app/sessions-port.js';
import type { MetricsRegistry } from '../scim/metrics.js';
import type { OidcIndex } from '../spec/oidc.js';
import type { OidcIssuerSpec } from '../spec/schema.js';
import type { AuditInput } from '../store/store.js';
import { answer, callerOf, refuseToken, RETRY_AFTER_SECONDS } from './caller.js';
import { OidcVerifier } from './oidc.js';

export const CREDENTIALS_PATH = '/v1/credentials/:backend';

/** What the endpoint needs to know of the spec, as it stands now (SCIM people merged in). */
export interface CredentialDirectory {
  /** settings.oidc; none: the endpoint is off (404). */
  issuers: readonly OidcIssuerSpec[];
  backends: ReadonlySet<string>;
  index: OidcIndex;
}

export interface CredentialsRouteOptions {
  /** The directory now; throws when the spec cannot be loaded (the endpoint then answers 503). */
  directory: () => Promise<CredentialDirectory>;
  /** Issues the sessions; without one, the endpoint answers 501 to a verified caller. */
  broker?: SessionBroker;
  audit: (entry: AuditInput, at: string) => Promise<void>;
  verifier?: OidcVerifier;
  now?: () => Date;
  metrics?: MetricsRegistry;
}

type Outcome = 'issued' | 'refused' | 'invalid_token' | 'unavailable' | 'failed';

/** Registers the endpoint on `app` (in an encapsulated context: its own error handler). */
export function registerCredentialsRoute(app: FastifyInstance, opts: CredentialsRouteOptions): void {
  const verifier = opts.verifier ?? new OidcVerifier();
  const now = opts.now ?? (() => new Date());
  const sessions = opts.metrics?.counter('datagrant_session_requests_total', 'Requests for a session at the credential endpoint, by outcome.');

  void app.register(async (scope) => {
    scope.setErrorHandler(async (err: Error & { statusCode?: number }, req, reply) => {
      const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
      if (status === 500) req.log.error({ err: { name: err.name, message: err.message } }, 'credential request failed');
      return answer(reply, status, {
        error: status === 500 ? 'server_error' : 'invalid_request',
        message: status === 500 ? 'internal error; the server log has the details' : err.message,
      });
    });

    scope.post(CREDENTIALS_PATH, { config: { ownAuth: true } }, async (req, reply) => {
      const { backend } = req.params as { backend: string };
      const count = (outcome: Outcome) => sessions?.inc({ outcome });
      const log = req.log;

      let dir: CredentialDirectory;
      try {
        dir = await opts.directory();
      } catch (e) {
        log.error({ err: { name: (e as Error).name, message: (e as Error).message } }, 'credential endpoint: the spec cannot be loaded');
        count('unavailable');
        reply.header('retry-after', String(RETRY_AFTER_SECONDS));
        return answer(reply, 503, { error: 'temporarily_unavailable', message: 'the spec cannot be loaded now; no session is issued until it can' });
      }
      if (dir.issuers.length === 0) return answer(reply, 404, { error: 'not_found', message: 'no OpenID Connect issuer is configured (settings.oidc)' });

      const caller = await callerOf(req, dir.issuers, dir.index, verifier);
      if (caller.kind === 'no-token' || caller.kind === 'invalid-token' || caller.kind === 'unavailable') {
        count(caller.kind === 'unavailable' ? 'unavailable' : 'invalid_token');
        return refuseToken(reply, caller, log, 'credential endpoint');
      }
      const { actor, issuer } = caller;
      const at = () => now().toISOString();
      const refuse = async (status: 403 | 404, message: string, detail: string, principal?: string) => {
        count('refused');
        await opts.audit({ actor, event: 'session.refused', address: null, outcome: 'refused', detail: describe(backend, principal, detail) }, at());
        log.info({ issuer: issuer.name, backend, ...(principal ? { principal } : {}), problem: detail }, 'credential endpoint: session refused');
        return answer(reply, status, { error: status === 404 ? 'not_found' : 'access_denied', message });
      };

      if (caller.kind === 'no-principal') {
        // The caller learns that its token names no one (or no one alone), never who else is named.
        if (caller.principals) {
          log.warn(
            { issuer: issuer.name, principals: caller.principals },
            'credential endpoint: one claim value names several principals (a SCIM person and a spec principal?); refused until the spec names one',
          );
        }
        return refuse(403, caller.message, caller.detail);
      }
      const { principal, subject } = caller;
      if (!dir.backends.has(backend)) return refuse(404, `there is no backend ${JSON.stringify(backend)}`, 'no such backend', principal);

      if (!opts.broker) {
        count('failed');
        return answer(reply, 501, { error: 'not_implemented', message: 'this server issues no sessions (no session broker is configured)' });
      }
      let session: IssuedSession;
      try {
        session = await opts.broker.issue({ backend, principal, source: 'oidc', subject, issuer: issuer.name });
      } catch (e) {
        if (e instanceof SessionRefusedError) return refuse(e.reason === 'unknown-backend' ? 404 : 403, e.message, e.reason, principal);
        if (e instanceof SessionsUnsupportedError) {
          // Not the caller's doing (403) nor a fault (500): this server cannot do it for that backend.
          count('failed');
          log.warn({ backend, backendType: e.backendType, principal }, 'credential endpoint: the backend issues no sessions');
          await opts.audit({ actor, event: 'session.issue', address: null, outcome: 'failed', detail: describe(backend, principal, e.name) }, at());
          return answer(reply, 501, { error: 'not_implemented', message: e.message });
        }
        count('failed');
        log.error(
          { err: { name: (e as Error).name, message: (e as Error).message }, backend, principal },
          'credential endpoint: the session could not be issued',
        );
        await opts.audit({ actor, event: 'session.issue', address: null, outcome: 'failed', detail: describe(backend, principal, (e as Error).name) }, at());
        return answer(reply, 500, { error: 'server_error', message: 'the session could not be issued; the server log has the details' });
      }
      // Audited before the answer: a session nobody can find in the audit log is never handed out.
      await opts.audit(
        {
          actor,
          event: 'session.issue',
          address: null,
          outcome: 'ok',
          detail: describe(backend, principal, `until ${session.kind === 'aws' ? session.expiration : session.validUntil}`),
        },
        at(),
      );
      count('issued');
      log.info({ issuer: issuer.name, backend, principal }, 'credential endpoint: session issued');
      return answer(reply, 200, sessionBody(session));
    });
  });
}

function describe(backend: string, principal: string | undefined, what: string): string {
  return `${principal ? `principal ${principal}, ` : ''}backend ${backend}: ${what}`;
}

/** AWS: the `credential_process` shape, so a profile can call serve (through a helper) directly. */
export function sessionBody(s: IssuedSession): Record<string, unknown> {
  if (s.kind === 'aws')
    return { Version: 1, AccessKeyId: s.accessKeyId, SecretAccessKey: s.secretAccessKey, SessionToken: s.sessionToken, Expiration: s.expiration };
  const { kind: _kind, ...rest } = s;
  return rest;
}
