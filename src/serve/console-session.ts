// The web console's sessions: a cookie sealed (AES-256-GCM, as a JWE) under a key derived from the
// master key, so any replica opens it and no session table is needed; a new master key ends every
// session. `HttpOnly`, `SameSite=Lax` (the IdP's redirect back is a top-level GET that must carry
// the sign-in cookie), `Secure` and the `__Host-` prefix whenever the console is reached over TLS.
// Each session carries its own CSRF token, which every form that changes something must return.
//
// A person's session records how they signed in (issuer and the claim's value), not only the
// principal: each request names the principal again from the current spec and SCIM people, so a
// person deactivated in the IdP or removed from the spec is signed out at their next click.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { EncryptJWT, jwtDecrypt } from 'jose';

/** How long a console session lasts, whatever is done in it. */
export const SESSION_SECONDS = 8 * 3600;
/** How long a sign-in through the IdP may take, from the redirect to the return. */
export const LOGIN_SECONDS = 600;

export type ConsoleSession =
  | { kind: 'person'; issuer: string; value: string; principal: string; actor: string; csrf: string }
  /** `token`: the sha256 (hex) of the admin token signed in with; the session ends when it is no longer configured. */
  | { kind: 'admin'; actor: string; token: string; csrf: string };

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** What the sign-in cookie holds between the redirect to the IdP and the return. */
export interface PendingLogin {
  state: string;
  nonce: string;
  verifier: string;
  redirectUri: string;
  next: string;
}

const SESSION_AUD = 'datagrant/console/session';
const LOGIN_AUD = 'datagrant/console/login';

export class ConsoleCookies {
  /**
   * `secureSite`: the console's public URL is https (`serve --public-url https://…`), so its
   * cookies are Secure even when the proxy in front is not trusted to say so.
   */
  constructor(
    readonly key: () => Promise<Uint8Array>,
    readonly secureSite = false,
  ) {}

  /** Over TLS (directly, behind a proxy serve trusts, or an https public URL): Secure cookies with the __Host- prefix. */
  secure(req: FastifyRequest): boolean {
    return this.secureSite || req.protocol === 'https';
  }

  names(req: FastifyRequest): { session: string; login: string } {
    return this.secure(req) ? { session: '__Host-dg-session', login: '__Host-dg-login' } : { session: 'dg-session', login: 'dg-login' };
  }

  async seal(payload: Record<string, unknown>, audience: string, seconds: number): Promise<string> {
    return new EncryptJWT(payload)
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime(`${seconds}s`)
      .encrypt(await this.key());
  }

  async open<T>(token: string | undefined, audience: string): Promise<T | undefined> {
    if (!token || token.length > 8192) return undefined;
    try {
      const { payload } = await jwtDecrypt(token, await this.key(), { audience, keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] });
      return payload as T;
    } catch {
      return undefined;
    }
  }

  async session(req: FastifyRequest): Promise<ConsoleSession | undefined> {
    const s = await this.open<ConsoleSession & { kind?: unknown }>(cookie(req, this.names(req).session), SESSION_AUD);
    return s && (s.kind === 'person' || s.kind === 'admin') && typeof s.csrf === 'string' ? s : undefined;
  }

  async startSession(req: FastifyRequest, reply: FastifyReply, s: DistributiveOmit<ConsoleSession, 'csrf'>): Promise<void> {
    const sealed = await this.seal({ ...s, csrf: randomBytes(24).toString('base64url') }, SESSION_AUD, SESSION_SECONDS);
    this.#set(req, reply, this.names(req).session, sealed, SESSION_SECONDS);
  }

  endSession(req: FastifyRequest, reply: FastifyReply): void {
    this.#set(req, reply, this.names(req).session, '', 0);
  }

  async pendingLogin(req: FastifyRequest): Promise<PendingLogin | undefined> {
    return this.open<PendingLogin>(cookie(req, this.names(req).login), LOGIN_AUD);
  }

  async startLogin(req: FastifyRequest, reply: FastifyReply, p: PendingLogin): Promise<void> {
    this.#set(req, reply, this.names(req).login, await this.seal({ ...p }, LOGIN_AUD, LOGIN_SECONDS), LOGIN_SECONDS);
  }

  endLogin(req: FastifyRequest, reply: FastifyReply): void {
    this.#set(req, reply, this.names(req).login, '', 0);
  }

  #set(req: FastifyRequest, reply: FastifyReply, name: string, value: string, maxAge: number): void {
    const attrs = [`${name}=${value}`, 'Path=/', `Max-Age=${maxAge}`, 'HttpOnly', 'SameSite=Lax', ...(this.secure(req) ? ['Secure'] : [])];
    const prev = reply.getHeader('set-cookie');
    const list = Array.isArray(prev) ? prev.map(String) : prev !== undefined ? [String(prev)] : [];
    void reply.header('set-cookie', [...list, attrs.join('; ')]);
  }
}

/** The value of cookie `name` in the request, if any. */
export function cookie(req: FastifyRequest, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The form's CSRF token is this session's (compared in constant time). */
export function csrfMatches(session: ConsoleSession, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(session.csrf);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
