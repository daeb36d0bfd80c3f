// Verifies OpenID Connect ID tokens against the issuers of `settings.oidc`, with `jose`. The
// token's unverified `iss` only picks which configured issuer to check it against; everything
// that counts is then verified: the signature with a key from that issuer's JWKS (found through
// its discovery document, whose `issuer` must be the configured one), one of the issuer's
// allowed algorithms, `iss`, `aud`, `exp` (required), `iat` and `nbf`, with at most 30 s of clock
// skew. Every call to an issuer has a deadline; an issuer that cannot be reached makes the request
// fail as unavailable (503), never as a bad token.
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { DatagrantError } from '../core/errors.js';
import { DEFAULT_OIDC_ALGORITHMS, isLoopbackHost, type OidcIssuerSpec } from '../spec/schema.js';

/** Why a token is refused, in words fit for the caller (fixed texts: nothing from the token). */
export const INVALID_TOKEN = {
  'not-jwt': 'the bearer token is not a signed JWT',
  'untrusted-issuer': 'the token was not issued by an issuer trusted here',
  algorithm: 'the token is not signed with an algorithm accepted for its issuer',
  expired: 'the token has expired',
  signature: 'the token signature does not verify',
  'unknown-key': "the token is signed with a key its issuer's JWKS does not hold",
  claims: 'the token claims are not accepted (issuer, audience, issue or start time)',
} as const;
export type InvalidTokenReason = keyof typeof INVALID_TOKEN;

/** The token is not one datagrant accepts: a 401 with `error="invalid_token"`. */
export class InvalidTokenError extends DatagrantError {
  override name = 'InvalidTokenError';
  constructor(
    readonly reason: InvalidTokenReason,
    /** For the log only: which claim failed, jose's code. Never the token or its claims' values. */
    readonly detail?: string,
  ) {
    super(INVALID_TOKEN[reason]);
  }
}

/** The issuer's discovery document or keys cannot be had now: a 503, the token may be fine. */
export class IssuerUnavailableError extends DatagrantError {
  override name = 'IssuerUnavailableError';
  constructor(
    readonly issuer: string,
    message: string,
  ) {
    super(message);
  }
}

export interface VerifiedToken {
  issuer: OidcIssuerSpec;
  /** `sub`: required, so that the audit log always names who asked. */
  subject: string;
  payload: JWTPayload;
}

export interface OidcVerifierOptions {
  /** Deadline of each call to an issuer (discovery, JWKS). Default 5 s. */
  timeoutMs?: number;
  /** Clock skew accepted on exp, nbf and iat; at most (and by default) 30 s. */
  clockToleranceSeconds?: number;
  /** A discovery document is used this long before it is fetched again. Default 1 h. */
  discoveryMaxAgeMs?: number;
  /** After discovery failed, requests fail at once for this long instead of asking again. Default 5 s. */
  failureCooldownMs?: number;
  /** Shortest wait between two JWKS fetches triggered by a key the set does not hold. Default 30 s. */
  jwksCooldownMs?: number;
  /** The clock tokens are checked against (tests verify real tokens later than they were minted). */
  now?: () => Date;
}

export const MAX_CLOCK_TOLERANCE_SECONDS = 30;
/** Larger discovery documents are refused: real ones are a few kilobytes. */
const MAX_DISCOVERY_BYTES = 256 * 1024;

type KeySet = ReturnType<typeof createRemoteJWKSet>;

/** Where a browser signs in, and where its authorization code is exchanged for tokens. */
export interface IssuerEndpoints {
  authorization: string;
  token: string;
}

interface IssuerKeys {
  keys?: KeySet;
  jwksUri?: string;
  endpoints?: IssuerEndpoints;
  /** When discovery is next asked again (after the document's age, or a failure's cooldown). */
  refreshAt: number;
  pending?: Promise<KeySet>;
  failure?: IssuerUnavailableError;
}

export class OidcVerifier {
  readonly #timeoutMs: number;
  readonly #tolerance: number;
  readonly #maxAgeMs: number;
  readonly #cooldownMs: number;
  readonly #jwksCooldownMs: number;
  readonly #now: () => Date;
  /** By issuer URL: what discovery found, shared by every configuration of that issuer. */
  readonly #issuers = new Map<string, IssuerKeys>();

  constructor(opts: OidcVerifierOptions = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#tolerance = Math.min(opts.clockToleranceSeconds ?? MAX_CLOCK_TOLERANCE_SECONDS, MAX_CLOCK_TOLERANCE_SECONDS);
    this.#maxAgeMs = opts.discoveryMaxAgeMs ?? 3_600_000;
    this.#cooldownMs = opts.failureCooldownMs ?? 5000;
    this.#jwksCooldownMs = opts.jwksCooldownMs ?? 30_000;
    this.#now = opts.now ?? (() => new Date());
  }

  /** Verifies `token` against the one configured issuer its `iss` names. */
  async verify(token: string, issuers: readonly OidcIssuerSpec[]): Promise<VerifiedToken> {
    let alg: unknown;
    let iss: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
      iss = decodeJwt(token).iss;
    } catch {
      throw new InvalidTokenError('not-jwt');
    }
    const issuer = issuers.find((i) => i.issuer === iss);
    if (!issuer) throw new InvalidTokenError('untrusted-issuer');
    const algorithms = [...(issuer.algorithms ?? DEFAULT_OIDC_ALGORITHMS)];
    // Before any call to the issuer: an unsigned or HS256 token costs it nothing.
    if (typeof alg !== 'string' || !algorithms.includes(alg as (typeof algorithms)[number]))
      throw new InvalidTokenError('algorithm', `alg ${String(alg).slice(0, 20)}`);
    this.#forgetOthers(issuers);
    const keys = await this.#keys(issuer.issuer);
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: issuer.issuer,
        audience: issuer.audience,
        algorithms,
        clockTolerance: this.#tolerance,
        currentDate: this.#now(),
        requiredClaims: ['exp', 'iat', 'sub'],
      });
      if (typeof payload.sub !== 'string' || payload.sub === '') throw new InvalidTokenError('claims', 'sub is not a string');
      return { issuer, subject: payload.sub, payload };
    } catch (e) {
      throw this.#refusal(e, issuer.issuer);
    }
  }

  /** A jose failure as a refusal of the token, or as the issuer being unavailable. */
  #refusal(e: unknown, issuer: string): Error {
    if (e instanceof InvalidTokenError) return e;
    const code = (e as { code?: unknown }).code;
    switch (code) {
      case 'ERR_JWT_EXPIRED':
        return new InvalidTokenError('expired');
      case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
        return new InvalidTokenError('claims', `claim ${String((e as { claim?: unknown }).claim)}: ${String((e as { reason?: unknown }).reason)}`);
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
        return new InvalidTokenError('algorithm');
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return new InvalidTokenError('signature');
      case 'ERR_JWKS_NO_MATCHING_KEY':
      case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
        return new InvalidTokenError('unknown-key', String(code));
      case 'ERR_JWS_INVALID':
      case 'ERR_JWT_INVALID':
      case 'ERR_JOSE_NOT_SUPPORTED':
        return new InvalidTokenError('not-jwt', String(code));
      case 'ERR_JWKS_TIMEOUT':
        return new IssuerUnavailableError(issuer, `the JWKS of ${issuer} did not arrive within ${this.#timeoutMs / 1000} s`);
      default:
        // A JWKS that cannot be fetched or read (network error, non-200, not a key set).
        return new IssuerUnavailableError(issuer, `the JWKS of ${issuer} cannot be read: ${(e as Error).message}`);
    }
  }

  /** The key set of `issuer`, through its discovery document (cached; one fetch at a time). */
  async #keys(issuer: string): Promise<KeySet> {
    let state = this.#issuers.get(issuer);
    if (!state) this.#issuers.set(issuer, (state = { refreshAt: 0 }));
    const s = state;
    if (Date.now() < s.refreshAt) {
      if (s.keys) return s.keys;
      if (s.failure) throw s.failure;
    }
    s.pending ??= this.#discover(issuer)
      .then(
        ({ jwksUri, endpoints }) => {
          s.endpoints = endpoints;
          // The same key set as long as discovery names the same URI: the keys it holds stay.
          if (!s.keys || s.jwksUri !== jwksUri) {
            s.keys = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: this.#timeoutMs, cooldownDuration: this.#jwksCooldownMs });
            s.jwksUri = jwksUri;
          }
          s.failure = undefined;
          s.refreshAt = Date.now() + this.#maxAgeMs;
          return s.keys;
        },
        (e: unknown) => {
          s.failure = e instanceof IssuerUnavailableError ? e : new IssuerUnavailableError(issuer, `discovery of ${issuer} failed: ${(e as Error).message}`);
          s.refreshAt = Date.now() + this.#cooldownMs;
          // A key set already known stays in use while the document cannot be fetched again.
          if (s.keys) return s.keys;
          throw s.failure;
        },
      )
      .finally(() => {
        s.pending = undefined;
      });
    return s.pending;
  }

  /**
   * Where a browser signs in at `issuer` and where the code is exchanged (the web console), from
   * the same discovery document as the keys; undefined when it names no such endpoints.
   */
  async endpoints(issuer: string): Promise<IssuerEndpoints | undefined> {
    await this.#keys(issuer);
    return this.#issuers.get(issuer)?.endpoints;
  }

  /** The `jwks_uri` of `issuer`'s discovery document (OpenID Connect Discovery 1.0 §4), and its endpoints. */
  async #discover(issuer: string): Promise<{ jwksUri: string; endpoints?: IssuerEndpoints }> {
    const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const unavailable = (why: string) => new IssuerUnavailableError(issuer, `discovery of ${issuer}: ${why}`);
    let text: string;
    try {
      // No redirects: the document must come from the issuer's own URL.
      const res = await fetch(url, { signal: AbortSignal.timeout(this.#timeoutMs), redirect: 'manual', headers: { accept: 'application/json' } });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw unavailable(`${url} answered HTTP ${res.status}`);
      }
      if (Number(res.headers.get('content-length') ?? 0) > MAX_DISCOVERY_BYTES) {
        await res.body?.cancel();
        throw unavailable(`${url} is larger than ${MAX_DISCOVERY_BYTES} bytes`);
      }
      text = await res.text();
    } catch (e) {
      if (e instanceof IssuerUnavailableError) throw e;
      const err = e as Error;
      throw unavailable(err.name === 'TimeoutError' ? `${url} did not answer within ${this.#timeoutMs / 1000} s` : `${url}: ${err.message}${causeOf(err)}`);
    }
    if (text.length > MAX_DISCOVERY_BYTES) throw unavailable(`${url} is larger than ${MAX_DISCOVERY_BYTES} bytes`);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw unavailable(`${url} is not JSON`);
    }
    const {
      issuer: named,
      jwks_uri: jwksUri,
      authorization_endpoint: authorization,
      token_endpoint: token,
    } = (doc ?? {}) as { issuer?: unknown; jwks_uri?: unknown; authorization_endpoint?: unknown; token_endpoint?: unknown };
    // §4.3: the document must name exactly the issuer it was fetched for, or it is someone else's.
    if (named !== issuer) throw unavailable(`the document names issuer ${JSON.stringify(named)}, not ${JSON.stringify(issuer)}`);
    if (typeof jwksUri !== 'string') throw unavailable('the document has no jwks_uri');
    let parsed: URL;
    try {
      parsed = new URL(jwksUri);
    } catch {
      throw unavailable(`jwks_uri ${JSON.stringify(jwksUri)} is not a URL`);
    }
    if (!secure(parsed)) throw unavailable(`jwks_uri ${JSON.stringify(jwksUri)} is not https: keys fetched without TLS could be anyone's`);
    // A browser is sent to one and a code (with its verifier) to the other: both over TLS only.
    const endpoint = (v: unknown) => {
      try {
        const u = typeof v === 'string' ? new URL(v) : undefined;
        return u && secure(u) ? u.href : undefined;
      } catch {
        return undefined;
      }
    };
    const a = endpoint(authorization);
    const t = endpoint(token);
    return { jwksUri: parsed.href, ...(a && t ? { endpoints: { authorization: a, token: t } } : {}) };
  }

  /** Drops what was discovered for issuers no longer configured. */
  #forgetOthers(issuers: readonly OidcIssuerSpec[]): void {
    if (this.#issuers.size <= issuers.length) return;
    const configured = new Set(issuers.map((i) => i.issuer));
    for (const url of this.#issuers.keys()) if (!configured.has(url)) this.#issuers.delete(url);
  }
}

/** https, or http on a loopback host (local providers, tests). */
const secure = (u: URL) => u.protocol === 'https:' || (u.protocol === 'http:' && isLoopbackHost(u.hostname));

function causeOf(e: Error): string {
  const cause = (e as { cause?: unknown }).cause;
  return cause instanceof Error ? ` (${cause.message})` : '';
}

/**
 * The value of the issuer's claim that names a principal, or why the token names none. A token
 * names somebody by its email only when it says `email_verified: true` (or the issuer is trusted
 * with `unverifiedEmail: accept`): an IdP that lets a user type any address, and says nothing
 * about it, would otherwise let them be anyone (Entra's "nOAuth").
 */
export function claimValueOf(issuer: OidcIssuerSpec, payload: JWTPayload): { value: string } | { problem: string } {
  const value = payload[issuer.claim];
  if (typeof value !== 'string' || value === '') return { problem: `the token has no ${issuer.claim} claim (a non-empty string) to name a principal by` };
  if (issuer.claim === 'email' && payload.email_verified !== true && issuer.unverifiedEmail !== 'accept') {
    return { problem: 'the token does not say its email is verified (email_verified: true)' };
  }
  return { value };
}
