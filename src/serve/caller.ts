// Who calls serve's own endpoints (/v1/credentials, /v1/requests): the principal an OpenID Connect
// ID token names. The token is verified against the issuers of `settings.oidc` (oidc.ts), its claim
// is matched to exactly one principal (src/spec/oidc.ts), and the audit log names the caller
// `oidc:<issuer>:<sub>`. Each endpoint answers the failures in its own words and audits what it
// must; the JSON shape and headers of the answers are shared.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { matchPrincipal, type OidcIndex } from '../spec/oidc.js';
import type { OidcIssuerSpec } from '../spec/schema.js';
import { claimValueOf, InvalidTokenError, IssuerUnavailableError, type OidcVerifier } from './oidc.js';

/** A `sub` is bounded in the audit log; real ones are far shorter (RFC 7519 sets no limit). */
const MAX_SUBJECT = 255;
/** Seconds a client should wait before asking again when an issuer or the spec is unavailable. */
export const RETRY_AFTER_SECONDS = 5;

/** The bearer token of the Authorization header, or undefined when there is none. */
export function bearer(req: FastifyRequest): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m?.[1];
}

/** How the audit log names the holder of a verified token: one line, whatever the IdP's subject holds. */
export function oidcActor(issuer: string, subject: string): string {
  // eslint-disable-next-line no-control-regex
  return `oidc:${issuer}:${subject.slice(0, MAX_SUBJECT).replace(/[\u0000-\u001f\u007f]/g, '?')}`;
}

/** A JSON answer that no cache keeps (sessions, and who may see which request, are per caller and per moment). */
export function answer(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply
    .code(status)
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .header('content-type', 'application/json; charset=utf-8')
    .send(JSON.stringify(body));
}

export type CallerResult =
  /** The token names this principal. */
  | { kind: 'ok'; principal: string; actor: string; issuer: OidcIssuerSpec; subject: string }
  /** No Authorization: Bearer header. */
  | { kind: 'no-token' }
  | { kind: 'invalid-token'; error: InvalidTokenError }
  /** The issuer cannot be reached to check the token: the token may be fine. */
  | { kind: 'unavailable'; error: IssuerUnavailableError }
  /**
   * A valid token that names no principal, or several: `message` is for the caller (never who
   * else is named), `detail` for the audit log, `principals` (ambiguous) for the server's log.
   */
  | { kind: 'no-principal'; actor: string; issuer: OidcIssuerSpec; subject: string; message: string; detail: string; principals?: string[] };

/** The principal the request's ID token names among `index` (principals per issuer). */
export async function callerOf(req: FastifyRequest, issuers: readonly OidcIssuerSpec[], index: OidcIndex, verifier: OidcVerifier): Promise<CallerResult> {
  const token = bearer(req);
  if (token === undefined) return { kind: 'no-token' };
  let verified;
  try {
    verified = await verifier.verify(token, issuers);
  } catch (e) {
    if (e instanceof InvalidTokenError) return { kind: 'invalid-token', error: e };
    if (e instanceof IssuerUnavailableError) return { kind: 'unavailable', error: e };
    throw e;
  }
  const { issuer, subject } = verified;
  const actor = oidcActor(issuer.name, subject);
  const claim = claimValueOf(issuer, verified.payload);
  if ('problem' in claim) return { kind: 'no-principal', actor, issuer, subject, message: `${claim.problem}, so it names no principal`, detail: claim.problem };
  const match = matchPrincipal(index, issuer, claim.value);
  if (match.ok) return { kind: 'ok', principal: match.principal, actor, issuer, subject };
  if (match.reason === 'ambiguous') {
    return {
      kind: 'no-principal',
      actor,
      issuer,
      subject,
      message: 'the token names more than one principal; an administrator has to resolve that',
      detail: `the ${issuer.claim} names ${match.principals.join(', ')}`,
      principals: match.principals,
    };
  }
  return {
    kind: 'no-principal',
    actor,
    issuer,
    subject,
    message: `no principal is named by this token's ${issuer.claim}`,
    detail: `no principal has this ${issuer.claim}`,
  };
}

/**
 * The answer to a caller without a usable token (no token, a bad one, an issuer that cannot be
 * reached), as RFC 6750 has it; logged without the token.
 */
export function refuseToken(
  reply: FastifyReply,
  result: Extract<CallerResult, { kind: 'no-token' | 'invalid-token' | 'unavailable' }>,
  log: FastifyRequest['log'],
  what: string,
): FastifyReply {
  switch (result.kind) {
    case 'no-token':
      reply.header('www-authenticate', 'Bearer realm="datagrant"');
      return answer(reply, 401, { error: 'invalid_request', message: 'an Authorization: Bearer <ID token> header is required' });
    case 'invalid-token': {
      const e = result.error;
      log.info({ reason: e.reason, ...(e.detail ? { detail: e.detail } : {}) }, `${what}: token refused`);
      reply.header('www-authenticate', `Bearer realm="datagrant", error="invalid_token", error_description="${e.message}"`);
      return answer(reply, 401, { error: 'invalid_token', message: e.message });
    }
    case 'unavailable':
      log.warn({ issuer: result.error.issuer, problem: result.error.message }, `${what}: issuer unavailable`);
      reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      return answer(reply, 503, { error: 'temporarily_unavailable', message: 'the token issuer cannot be reached to check the token; try again shortly' });
  }
}
