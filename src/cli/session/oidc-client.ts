// The client side of OpenID Connect for `datagrant login`: discovery, the device authorization
// grant (RFC 8628), the authorization code flow with PKCE on a loopback redirect (RFC 8252), and
// refreshing. datagrant is a public client here (a CLI cannot keep a client secret): the IdP's
// registration for it has no secret and allows these grants.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { LoginError, remoteText } from './errors.js';

export interface OidcEndpoints {
  issuer: string;
  tokenEndpoint: string;
  deviceAuthorizationEndpoint?: string;
  authorizationEndpoint?: string;
}

/** What the client reads of the world, passed in so tests can run the flows without waiting. */
export interface HttpDeps {
  now: () => Date;
  sleep: (ms: number) => Promise<void>;
  /** Deadline of each request to the issuer. */
  timeoutMs: number;
}

export const realDeps = (now: () => Date): HttpDeps => ({ now, sleep: (ms) => new Promise((r) => setTimeout(r, ms)), timeoutMs: 15_000 });

export interface TokenSet {
  idToken: string;
  refreshToken?: string;
}

/** What a stored login needs to know of an ID token, from the token the issuer itself just sent. */
export interface IdTokenFacts {
  expiresAt: Date;
  who: string;
}

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** RFC 8628 §3.2: the interval when the response names none; §3.5: slow_down adds 5 s. */
const DEFAULT_INTERVAL_S = 5;
const SLOW_DOWN_S = 5;
/** RFC 8628 §3.5: back off on timeouts and failed connections, up to a minute. */
const MAX_BACKOFF_MS = 60_000;

/** http only to the machine itself: tokens and codes travel in these requests. */
function checkUrl(url: string, what: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new LoginError(`${what} ${JSON.stringify(remoteText(url, 200))} is not a URL`);
  }
  const loopback = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i.test(u.hostname);
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) {
    throw new LoginError(`${what} ${u.origin} must be https:// (http:// only on localhost, 127.0.0.1 or [::1]): tokens are sent there`);
  }
  return u.href;
}

/** A serve URL as logins are keyed by: no trailing slash, no query, no credentials in it. */
export function normaliseServer(url: string): string {
  const href = checkUrl(url, 'the server');
  const u = new URL(href);
  if (u.username || u.password || u.search || u.hash)
    throw new LoginError(`the server URL must be plain, such as https://datagrant.example.com (no user, query or fragment)`);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function request(url: string, init: RequestInit, deps: HttpDeps, what: string): Promise<Answer> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(deps.timeoutMs) });
  } catch (e) {
    throw new LoginError(`${what}: ${networkProblem(e, deps.timeoutMs)}`);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    if (res.ok) throw new LoginError(`${what}: the answer is not a JSON object (HTTP ${res.status})`);
    body = {};
  }
  return { status: res.status, body: body as Record<string, unknown> };
}

/** Why a request got no answer, in words (no URL query, no token: only the cause). */
export function networkProblem(e: unknown, timeoutMs: number): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer within ${Math.round(timeoutMs / 1000)} s`;
  const cause = err.cause?.code ?? err.cause?.message ?? err.message;
  return `cannot connect (${remoteText(cause, 120)})`;
}

const form = (fields: Record<string, string>): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
  body: new URLSearchParams(fields).toString(),
});

const oauthError = (a: Answer) =>
  `${remoteText(a.body.error ?? `HTTP ${a.status}`, 80)}${a.body.error_description ? ` (${remoteText(a.body.error_description)})` : ''}`;

/** OpenID Connect Discovery: the issuer's endpoints, from a document that must name that very issuer. */
export async function discover(issuer: string, deps: HttpDeps): Promise<OidcEndpoints> {
  checkUrl(issuer, 'the issuer');
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const a = await request(url, { headers: { accept: 'application/json' } }, deps, `the issuer's discovery document ${url}`);
  if (a.status !== 200) throw new LoginError(`the issuer's discovery document ${url} answered HTTP ${a.status}; is --issuer-url right?`);
  const doc = a.body;
  // Discovery §4.3: the document's issuer is exactly the URL it was fetched for.
  if (doc.issuer !== issuer) {
    throw new LoginError(`${url} names the issuer ${JSON.stringify(remoteText(doc.issuer, 200))}, not ${issuer}; pass that exact URL as --issuer-url`);
  }
  if (typeof doc.token_endpoint !== 'string') throw new LoginError(`${url} names no token_endpoint`);
  const optional = (key: string) => (typeof doc[key] === 'string' ? checkUrl(doc[key], `the issuer's ${key}`) : undefined);
  const device = optional('device_authorization_endpoint');
  const authorization = optional('authorization_endpoint');
  return {
    issuer,
    tokenEndpoint: checkUrl(doc.token_endpoint, "the issuer's token_endpoint"),
    ...(device ? { deviceAuthorizationEndpoint: device } : {}),
    ...(authorization ? { authorizationEndpoint: authorization } : {}),
  };
}

export interface DevicePrompt {
  verificationUri: string;
  verificationUriComplete?: string;
  userCode: string;
  expiresInSeconds: number;
}

/**
 * RFC 8628: ask for a device code, show the person where to enter the user code, and poll the
 * token endpoint every `interval` seconds (5 s more after each slow_down, backing off on network
 * failures) until they have signed in, refused, or the code expired.
 */
export async function deviceFlow(
  ep: OidcEndpoints,
  client: { clientId: string; scope: string },
  prompt: (p: DevicePrompt) => void,
  deps: HttpDeps,
): Promise<TokenSet> {
  if (!ep.deviceAuthorizationEndpoint) {
    throw new LoginError(`the issuer ${ep.issuer} offers no device flow (its discovery document names no device_authorization_endpoint); use --browser`);
  }
  const start = await request(
    ep.deviceAuthorizationEndpoint,
    form({ client_id: client.clientId, scope: client.scope }),
    deps,
    'the device authorization request',
  );
  if (start.status !== 200) throw new LoginError(`the issuer refused to start a device sign-in for client ${client.clientId}: ${oauthError(start)}`);
  const b = start.body;
  // Some IdPs (Google) say verification_url, as drafts of RFC 8628 did.
  const uri = b.verification_uri ?? b.verification_url;
  if (typeof b.device_code !== 'string' || typeof b.user_code !== 'string' || typeof uri !== 'string') {
    throw new LoginError('the device authorization answer lacks device_code, user_code or verification_uri');
  }
  const expiresIn = typeof b.expires_in === 'number' && b.expires_in > 0 ? b.expires_in : 600;
  let intervalMs = (typeof b.interval === 'number' && b.interval > 0 ? b.interval : DEFAULT_INTERVAL_S) * 1000;
  const deadline = deps.now().getTime() + expiresIn * 1000;
  prompt({
    verificationUri: remoteText(uri, 500),
    ...(typeof b.verification_uri_complete === 'string' ? { verificationUriComplete: remoteText(b.verification_uri_complete, 500) } : {}),
    userCode: remoteText(b.user_code, 64),
    expiresInSeconds: expiresIn,
  });

  let backoffMs = 0;
  for (;;) {
    await deps.sleep(intervalMs + backoffMs);
    if (deps.now().getTime() >= deadline) throw expired(expiresIn);
    let a: Answer;
    try {
      a = await request(ep.tokenEndpoint, form({ grant_type: DEVICE_GRANT, device_code: b.device_code, client_id: client.clientId }), deps, 'polling');
    } catch (e) {
      if (!(e instanceof LoginError)) throw e;
      backoffMs = Math.min(Math.max(backoffMs * 2, intervalMs), MAX_BACKOFF_MS);
      continue;
    }
    backoffMs = 0;
    if (a.status === 200) return tokenSet(a, 'the device sign-in');
    switch (a.body.error) {
      case 'authorization_pending':
        continue;
      case 'slow_down':
        intervalMs += SLOW_DOWN_S * 1000;
        continue;
      case 'access_denied':
        throw new LoginError('the sign-in was declined at the identity provider; nothing was stored');
      case 'expired_token':
        throw expired(expiresIn);
      default:
        throw new LoginError(`the issuer refused the device sign-in: ${oauthError(a)}`);
    }
  }
}

const expired = (s: number) =>
  new LoginError(`the code expired before the sign-in finished (it was valid for ${Math.round(s / 60)} min); run \`datagrant login\` again`);

function tokenSet(a: Answer, what: string): TokenSet {
  const { id_token: idToken, refresh_token: refreshToken } = a.body;
  if (typeof idToken !== 'string') {
    throw new LoginError(`${what} returned no ID token: the client's registration at the IdP must allow the openid scope`);
  }
  return { idToken, ...(typeof refreshToken === 'string' ? { refreshToken } : {}) };
}

/**
 * A token straight from the issuer's token endpoint over TLS: OpenID Connect Core §3.1.3.7 lets
 * TLS stand for the signature check here, and serve checks the signature when the token is used.
 * What is checked is what keeps a mix-up from being stored: issuer, audience, expiry, nonce.
 */
export function idTokenFacts(idToken: string, ep: OidcEndpoints, clientId: string, nonce?: string): IdTokenFacts {
  let claims: ReturnType<typeof decodeJwt>;
  try {
    claims = decodeJwt(idToken);
  } catch {
    throw new LoginError('the issuer returned an ID token that is not a JWT');
  }
  if (claims.iss !== ep.issuer) throw new LoginError(`the ID token was issued by ${remoteText(claims.iss, 200)}, not ${ep.issuer}`);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(clientId)) throw new LoginError(`the ID token is not for client ${clientId}`);
  if (typeof claims.exp !== 'number') throw new LoginError('the ID token has no expiry (exp)');
  if (nonce !== undefined && claims.nonce !== nonce) throw new LoginError('the ID token does not carry the nonce of this sign-in');
  const who = typeof claims.email === 'string' ? claims.email : String(claims.sub ?? '(unknown)');
  return { expiresAt: new Date(claims.exp * 1000), who: remoteText(who, 200) };
}

/** Refused refreshing: the refresh token is no longer good (expired, revoked, used). */
export class RefreshRefusedError extends LoginError {
  override name = 'RefreshRefusedError';
}

export async function refresh(ep: OidcEndpoints, clientId: string, refreshToken: string, deps: HttpDeps): Promise<TokenSet> {
  const a = await request(
    ep.tokenEndpoint,
    form({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }),
    deps,
    'renewing the login',
  );
  if (a.status === 200) {
    const got = tokenSet(a, 'renewing the login');
    // A rotating issuer sends a new refresh token; one that does not keeps the old one valid.
    return { idToken: got.idToken, refreshToken: got.refreshToken ?? refreshToken };
  }
  if (a.body.error === 'invalid_grant') throw new RefreshRefusedError(oauthError(a));
  throw new LoginError(`the issuer refused to renew the login: ${oauthError(a)}`);
}

/**
 * RFC 8252: the authorization code flow through the person's browser, with PKCE, to a one-use
 * listener on 127.0.0.1 at a port the system picks. `open` shows or opens the URL.
 */
export async function browserFlow(
  ep: OidcEndpoints,
  client: { clientId: string; scope: string },
  open: (url: string) => void,
  deps: HttpDeps & { waitMs: number },
): Promise<TokenSet & { nonce: string }> {
  if (!ep.authorizationEndpoint) throw new LoginError(`the issuer ${ep.issuer} names no authorization_endpoint; use the device flow (without --browser)`);
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const nonce = randomBytes(16).toString('base64url');

  let settle!: (r: { code: string } | { error: LoginError }) => void;
  const result = new Promise<{ code: string } | { error: LoginError }>((r) => (settle = r));
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/callback') return void res.writeHead(404).end();
    const page = (status: number, text: string) =>
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end(`${text}\n`);
    // Another tab or a stale redirect must not end this sign-in: only the answer to this request counts.
    if (url.searchParams.get('state') !== state) return void page(400, 'This sign-in answer is not for the datagrant login that is waiting.');
    const error = url.searchParams.get('error');
    if (error) {
      page(400, 'The sign-in was not completed. You can close this window.');
      const description = url.searchParams.get('error_description');
      return settle({
        error: new LoginError(
          error === 'access_denied'
            ? 'the sign-in was declined at the identity provider; nothing was stored'
            : `the identity provider refused the sign-in: ${remoteText(error, 80)}${description ? ` (${remoteText(description)})` : ''}`,
        ),
      });
    }
    const code = url.searchParams.get('code');
    if (!code) return void page(400, 'The answer holds no authorization code.');
    page(200, 'Signed in to datagrant. You can close this window.');
    settle({ code });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
  try {
    const auth = new URL(ep.authorizationEndpoint);
    auth.search = new URLSearchParams({
      ...Object.fromEntries(auth.searchParams),
      client_id: client.clientId,
      response_type: 'code',
      scope: client.scope,
      redirect_uri: redirectUri,
      state,
      nonce,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      // OpenID Connect Core §11: offline access (a refresh token) is granted on explicit consent.
      ...(client.scope.split(/\s+/).includes('offline_access') ? { prompt: 'consent' } : {}),
    }).toString();
    open(auth.href);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<{ error: LoginError }>((r) => {
      timer = setTimeout(
        () => r({ error: new LoginError(`no sign-in within ${Math.round(deps.waitMs / 60_000)} min; run \`datagrant login --browser\` again`) }),
        deps.waitMs,
      );
    });
    const got = await Promise.race([result, timeout]);
    clearTimeout(timer);
    if ('error' in got) throw got.error;
    const a = await request(
      ep.tokenEndpoint,
      form({ grant_type: 'authorization_code', code: got.code, redirect_uri: redirectUri, code_verifier: verifier, client_id: client.clientId }),
      deps,
      'exchanging the authorization code',
    );
    if (a.status !== 200) throw new LoginError(`the issuer refused the authorization code: ${oauthError(a)}`);
    return { ...tokenSet(a, 'the browser sign-in'), nonce };
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}
