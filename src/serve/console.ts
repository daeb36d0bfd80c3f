// The web console under /ui: server-rendered pages (src/render/console.ts) over the same spec,
// state and request rules as the CLI and /v1/requests, for people who never open a terminal.
//
// Sign-in: people through the organisation's OpenID provider (settings.console names one of
// settings.oidc) with the authorization-code flow and PKCE, serve being the client; operators
// with an admin token whose sha256 is in DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256. Sessions are sealed
// cookies (console-session.ts). Every change is a POST carrying the session's CSRF token, from a
// page of this origin (Origin checked when the browser sends it). Every page and every data
// answer needs a session, except the sign-in page and the static assets (public code and style).
//
// Who sees what: anyone signed in sees the matrix, datasets and principals' access (what the
// reviewed spec says anyway); a person's credentials (never a secret: ids, ages, last use), requests
// and history only they and operators see; plan and audit log are for operators. Only approvers the
// spec names approve, never the requester, and operators are no approvers: an operator's token is
// not a way around the spec's four-eyes rule.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { approveRequest, cancelRequest, createRequest, denyRequest, listRequests, requestable, type RequestsWorld } from '../app/requests.js';
import { intendedAccess } from '../compile/access.js';
import { RequestError } from '../core/errors.js';
import type { Plan } from '../core/types.js';
import type { AccessReport, IntendedAccess } from '../model/access.js';
import type { AccessRequest } from '../model/request.js';
import { requestAddress } from '../model/request.js';
import {
  auditPage,
  datasetPage,
  errorPage,
  matrixData,
  matrixPage,
  overviewPage,
  planPage,
  principalPage,
  requestsPage,
  signInPage,
  type AuditRowView,
  type Flash,
  type Viewer,
} from '../render/console.js';
import { renderPlanText } from '../render/text.js';
import { matchPrincipal } from '../spec/oidc.js';
import { isPgDataset, isS3Dataset, type OidcIssuerSpec, type Spec } from '../spec/schema.js';
import type { AuditEntry, AuditVerdict, StateStore } from '../store/store.js';
import { oidcActor } from './caller.js';
import { ConsoleCookies, csrfMatches, type ConsoleSession } from './console-session.js';
import { claimValueOf, InvalidTokenError, IssuerUnavailableError, OidcVerifier } from './oidc.js';
import type { RequestsDirectory } from './requests.js';

export const CONSOLE_PATH = '/ui';
/** The static files of the console, by the name they are asked for. */
const ASSETS: Record<string, string> = {
  'console.css': 'text/css; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'matrix.js': 'text/javascript; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};
/** A console form is small: a reason, a duration, a token. */
const FORM_LIMIT = 16 * 1024;
/** Deadline of the token request to the IdP. */
const TOKEN_TIMEOUT_MS = 10_000;
const AUDIT_PAGE = 500;
/** The newest entries the audit page searches, and a principal's history is found among. */
const AUDIT_SCAN = 20_000;
const HISTORY_SCAN = 5_000;
const HISTORY_SHOWN = 100;
/** Wrong admin tokens one address may send per window before it must wait. */
const GUESS_LIMIT = 10;
const GUESS_WINDOW_SECONDS = 60;

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export interface ConsoleReads {
  /** The plan a reconcile would make now (reads the backends). */
  plan(): Promise<Plan>;
  /** Effective access as the backends hold it (reads the backends). */
  access(): Promise<AccessReport>;
}

export interface ConsoleOptions {
  /** The spec as serve sees it now: SCIM people and approved requests merged in. */
  spec: () => Promise<Spec>;
  /** Every principal there is and which one each token claim names (as /v1/requests). */
  directory: () => Promise<RequestsDirectory>;
  store: () => Promise<StateStore>;
  /** Told when access changed (an approval, an approved request given up): serve reconciles at once. */
  onAccessChanged?: () => void;
  reads?: ConsoleReads;
  /** sha256 of each admin token (DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256). */
  adminTokenHashes: readonly Buffer[];
  /** The console's client secret at the IdP, when it is a confidential client (DATAGRANT_CONSOLE_CLIENT_SECRET). */
  clientSecret?: string;
  /** The console's own URL as browsers reach it (the redirect URI's base); default: from each request. */
  publicUrl?: string;
  /** Where console.css, console.js and matrix.js are. */
  assetsDir: string;
  verifier?: OidcVerifier;
  now?: () => Date;
}

/** sha256 hashes from DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256 (comma-separated hex); none: no operator sign-in. */
export function adminTokenHashes(raw: string | undefined): Buffer[] {
  const hashes = (raw ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  for (const h of hashes)
    if (!/^[0-9a-f]{64}$/i.test(h))
      throw new Error(
        `DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256 holds ${JSON.stringify(h.slice(0, 12))}…, which is not a sha256 in hex (64 hex digits); configure the hash of the token, never the token itself`,
      );
  return hashes.map((h) => Buffer.from(h, 'hex'));
}

type Form = Record<string, string>;

interface Ctx {
  viewer: Viewer;
  session: ConsoleSession;
  dir: RequestsDirectory;
  store: StateStore;
  now: Date;
}

class PageError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
  ) {
    super(message);
  }
}

const html = (reply: FastifyReply, status: number, body: string) => reply.code(status).header('content-type', 'text/html; charset=utf-8').send(body);
const json = (reply: FastifyReply, status: number, body: unknown) =>
  reply.code(status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(body));

/** A path of the console to go back to after signing in: never another site. */
function localNext(raw: unknown): string {
  if (typeof raw !== 'string' || raw.length > 2000) return CONSOLE_PATH;
  let u: URL;
  try {
    // Resolved as a browser would (`..`, `//host`, `javascript:`), then held to this site's /ui.
    u = new URL(raw, 'http://console.invalid');
  } catch {
    return CONSOLE_PATH;
  }
  if (u.origin !== 'http://console.invalid' || raw.includes('\\')) return CONSOLE_PATH;
  return u.pathname === CONSOLE_PATH || u.pathname.startsWith(`${CONSOLE_PATH}/`) ? `${u.pathname}${u.search}` : CONSOLE_PATH;
}

export function registerConsole(app: FastifyInstance, opts: ConsoleOptions): void {
  const verifier = opts.verifier ?? new OidcVerifier();
  const now = opts.now ?? (() => new Date());
  const cookies = new ConsoleCookies(async () => (await opts.store()).masterKey.consoleSessionKey(), opts.publicUrl?.startsWith('https://') ?? false);
  const adminHex = new Set(opts.adminTokenHashes.map((h) => h.toString('hex')));
  const guesses = new GuessLimiter();
  const assets = new Map<string, Promise<Buffer>>();
  /** The last effective-access reading, kept for the dataset and principal pages. */
  let reading: AccessReport | undefined;
  let readingNow: Promise<AccessReport> | undefined;
  /** The plan being made for an operator's page: several at once share it. */
  let planNow: Promise<Plan> | undefined;
  /** The chain's verdict as of its head: verified again only when an entry was added. */
  let verdictAt: { head: string; verdict: Promise<AuditVerdict> } | undefined;

  void app.register(
    async (scope) => {
      // Forms only: a JSON body (which SCIM's parser would read, up to its limit, before any
      // session is checked) is refused unread.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_LIMIT }, (_req, body, done) => {
        // No prototype: a field named __proto__ or constructor is just a field nobody reads.
        const form = Object.create(null) as Form;
        for (const [k, v] of new URLSearchParams(body as string)) if (!Object.hasOwn(form, k)) form[k] = v;
        done(null, form);
      });

      scope.addHook('onSend', async (_req, reply, payload) => {
        reply
          .header('content-security-policy', CSP)
          .header('x-content-type-options', 'nosniff')
          // The Origin header must still name this site on a form's POST (no-referrer would make it "null").
          .header('referrer-policy', 'same-origin')
          .header('x-frame-options', 'DENY')
          .header('cross-origin-opener-policy', 'same-origin')
          .header('permissions-policy', 'camera=(), microphone=(), geolocation=()');
        if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
        return payload;
      });

      scope.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, req, reply) => {
        const viewer = await viewerOf(req).catch(() => undefined);
        if (err instanceof PageError) return html(reply, err.status, errorPage(viewer, err.status, err.title, err.message));
        const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
        if (status === 500) req.log.error({ err: { name: err.name, message: err.message } }, 'console: request failed');
        const message =
          status === 500
            ? 'Something went wrong on the server; its log has the details.'
            : err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
              ? 'The form is larger than the console takes.'
              : err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
                ? 'The console takes forms (application/x-www-form-urlencoded) only.'
                : err.message;
        return html(reply, status, errorPage(viewer, status, status === 500 ? 'Server error' : 'Bad request', message));
      });

      scope.setNotFoundHandler(async (req, reply) => {
        const viewer = await viewerOf(req).catch(() => undefined);
        if (!viewer) return toSignIn(req, reply);
        return html(reply, 404, errorPage(viewer, 404, 'Not found', `There is no page ${req.url.split('?')[0]} in the console.`));
      });

      // ---- who is asking ----------------------------------------------------------------------

      /** The session's viewer now, or undefined (no session, or its principal is gone). */
      async function viewerOf(req: FastifyRequest): Promise<Viewer | undefined> {
        const ctx = await contextOf(req);
        return ctx?.viewer;
      }

      async function contextOf(req: FastifyRequest): Promise<Ctx | undefined> {
        const session = await cookies.session(req);
        if (!session) return undefined;
        const [dir, store] = await Promise.all([opts.directory(), opts.store()]);
        if (session.kind === 'admin') {
          // A token no longer configured ends the sessions made with it.
          if (!adminHex.has(session.token)) return undefined;
          return { session, dir, store, now: now(), viewer: { kind: 'admin', name: 'operator', actor: session.actor, csrf: session.csrf } };
        }
        // Named again from today's spec and IdP people: whoever is no longer one is signed out;
        // so is everyone, when the console's issuer is no longer the one they signed in with.
        if (dir.world.base.settings?.console?.oidc !== session.issuer) return undefined;
        const issuer = dir.issuers.find((i) => i.name === session.issuer);
        const match = issuer ? matchPrincipal(dir.index, issuer, session.value) : undefined;
        if (!match?.ok || match.principal !== session.principal) return undefined;
        return { session, dir, store, now: now(), viewer: { kind: 'person', name: session.principal, actor: session.actor, csrf: session.csrf } };
      }

      function toSignIn(req: FastifyRequest, reply: FastifyReply) {
        const next = req.method === 'GET' ? req.url : CONSOLE_PATH;
        return reply
          .code(303)
          .header('location', `${CONSOLE_PATH}/signin?next=${encodeURIComponent(localNext(next))}`)
          .send();
      }

      /** The origin the browser should be on: the configured public URL, else this request's. */
      const originOf = (req: FastifyRequest) => (opts.publicUrl ? new URL(opts.publicUrl).origin : `${req.protocol}://${req.host}`);

      /** A POST from another site is refused whatever it carries (when the browser names its origin). */
      function sameOrigin(req: FastifyRequest): boolean {
        const origin = req.headers.origin;
        return origin === undefined || origin === originOf(req);
      }

      type Handler = (ctx: Ctx, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

      /** A page: signed in, else to the sign-in page. */
      const page =
        (fn: Handler, o: { admin?: boolean } = {}) =>
        async (req: FastifyRequest, reply: FastifyReply) => {
          const ctx = await contextOf(req);
          if (!ctx) return toSignIn(req, reply);
          if (o.admin && ctx.viewer.kind !== 'admin')
            throw new PageError(403, 'Operators only', 'This page is for operators: sign in with the admin token to see it.');
          return fn(ctx, req, reply);
        };

      /** A change: signed in, from this site, with the session's CSRF token. */
      const change =
        (fn: (ctx: Ctx, form: Form, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>, o: { admin?: boolean } = {}) =>
        async (req: FastifyRequest, reply: FastifyReply) => {
          const ctx = await contextOf(req);
          if (!ctx) return html(reply, 401, signInPage(await signInView(req, CONSOLE_PATH, 'Your session has ended; sign in again.')));
          const form = (req.body ?? {}) as Form;
          if (!sameOrigin(req) || !csrfMatches(ctx.session, form._csrf)) {
            req.log.warn({ path: req.url.split('?')[0], origin: req.headers.origin }, 'console: change refused (CSRF token or origin)');
            throw new PageError(
              403,
              'Refused',
              'This form did not come from your console session (its security token is missing or wrong). Reload the page and try again.',
            );
          }
          if (o.admin && ctx.viewer.kind !== 'admin') throw new PageError(403, 'Operators only', 'Only operators may do this.');
          return fn(ctx, form, req, reply);
        };

      // ---- assets and sign-in -----------------------------------------------------------------

      scope.get('/assets/:file', { config: { ownAuth: true } }, async (req, reply) => {
        const file = (req.params as { file: string }).file;
        const type = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined;
        if (!type) throw new PageError(404, 'Not found', 'No such file.');
        let body = assets.get(file);
        if (!body) {
          body = readFile(join(opts.assetsDir, file));
          assets.set(file, body);
          body.catch(() => assets.delete(file));
        }
        const bytes = await body.catch(() => {
          throw new Error(`the console's ${file} is not in ${opts.assetsDir}: run \`npm run build\``);
        });
        return reply.header('content-type', type).header('cache-control', 'no-cache').send(bytes);
      });

      async function signInView(req: FastifyRequest, next: string, error?: string) {
        const dir = await opts.directory();
        const settings = dir.world.base.settings?.console;
        return {
          ...(settings ? { issuer: { name: settings.oidc, href: `${CONSOLE_PATH}/signin/oidc?next=${encodeURIComponent(next)}` } } : {}),
          admin: opts.adminTokenHashes.length > 0,
          next,
          ...(error ? { error } : {}),
        };
      }

      scope.get('/signin', { config: { ownAuth: true } }, async (req, reply) => {
        const next = localNext((req.query as { next?: string }).next);
        if (await viewerOf(req).catch(() => undefined)) return reply.code(303).header('location', next).send();
        return html(reply, 200, signInPage(await signInView(req, next)));
      });

      /** The issuer and client id people sign in with, or a page saying why there is none. */
      function consoleIssuer(dir: RequestsDirectory): { issuer: OidcIssuerSpec; clientId: string } {
        const settings = dir.world.base.settings?.console;
        const issuer = settings && dir.issuers.find((i) => i.name === settings.oidc);
        if (!settings || !issuer) throw new PageError(404, 'No sign-in configured', 'The spec names no issuer for the console (settings.console).');
        const clientId = settings.clientId ?? issuer.audience;
        // The console's ID tokens are for its own client id.
        return { issuer: { ...issuer, audience: clientId }, clientId };
      }

      scope.get('/signin/oidc', { config: { ownAuth: true } }, async (req, reply) => {
        const dir = await opts.directory();
        const { issuer, clientId } = consoleIssuer(dir);
        const endpoints = await verifier.endpoints(issuer.issuer).catch((e: unknown) => {
          if (e instanceof IssuerUnavailableError) throw new PageError(503, 'Sign-in unavailable', `${issuer.name} cannot be reached now; try again shortly.`);
          throw e;
        });
        if (!endpoints)
          throw new PageError(503, 'Sign-in unavailable', `${issuer.name}'s discovery document names no authorization and token endpoints over https.`);
        const pending = {
          state: randomBytes(16).toString('base64url'),
          nonce: randomBytes(16).toString('base64url'),
          verifier: randomBytes(32).toString('base64url'),
          redirectUri: `${originOf(req)}${CONSOLE_PATH}/callback`,
          next: localNext((req.query as { next?: string }).next),
        };
        await cookies.startLogin(req, reply, pending);
        const url = new URL(endpoints.authorization);
        for (const [k, v] of Object.entries({
          response_type: 'code',
          client_id: clientId,
          redirect_uri: pending.redirectUri,
          scope: 'openid email',
          state: pending.state,
          nonce: pending.nonce,
          code_challenge: createHash('sha256').update(pending.verifier).digest('base64url'),
          code_challenge_method: 'S256',
        }))
          url.searchParams.set(k, v);
        return reply.code(302).header('location', url.href).send();
      });

      scope.get('/callback', { config: { ownAuth: true } }, async (req, reply) => {
        const q = req.query as Record<string, string | undefined>;
        const pending = await cookies.pendingLogin(req);
        cookies.endLogin(req, reply);
        const again = async (status: number, error: string) => html(reply, status, signInPage(await signInView(req, pending?.next ?? CONSOLE_PATH, error)));
        if (!pending || typeof q.state !== 'string' || q.state !== pending.state)
          return again(400, 'The sign-in expired or did not start here; sign in again.');
        if (q.error)
          return again(
            403,
            `The identity provider refused the sign-in: ${String(q.error).slice(0, 100)}${q.error_description ? ` (${String(q.error_description).slice(0, 200)})` : ''}.`,
          );
        if (typeof q.code !== 'string' || q.code === '') return again(400, 'The identity provider sent no authorization code; sign in again.');
        const dir = await opts.directory();
        const { issuer, clientId } = consoleIssuer(dir);
        const endpoints = await verifier.endpoints(issuer.issuer);
        if (!endpoints) throw new PageError(503, 'Sign-in unavailable', `${issuer.name} cannot be reached now; try again shortly.`);
        const idToken = await exchange(endpoints.token, { code: q.code, redirectUri: pending.redirectUri, verifier: pending.verifier, clientId });
        let verified;
        try {
          verified = await verifier.verify(idToken, [issuer]);
        } catch (e) {
          if (e instanceof InvalidTokenError) {
            req.log.info({ reason: e.reason }, 'console: ID token refused');
            return again(403, `The identity provider's token was refused: ${e.message}.`);
          }
          throw e;
        }
        if (verified.payload.nonce !== pending.nonce) return again(403, 'The token was not issued for this sign-in (nonce); sign in again.');
        const actor = oidcActor(issuer.name, verified.subject);
        const claim = claimValueOf(issuer, verified.payload);
        const store = await opts.store();
        const refuse = async (message: string, detail: string) => {
          await store.audit({ actor, event: 'console.signin', address: null, outcome: 'refused', detail }, now().toISOString());
          return again(403, message);
        };
        if ('problem' in claim) return refuse(`Your sign-in names no principal: ${claim.problem}.`, claim.problem);
        const match = matchPrincipal(dir.index, issuer, claim.value);
        if (!match.ok)
          return match.reason === 'ambiguous'
            ? refuse(
                'Your sign-in names more than one principal; an administrator has to resolve that.',
                `the ${issuer.claim} names ${match.principals.join(', ')}`,
              )
            : refuse(`No principal of datagrant has your ${issuer.claim}; ask an administrator to add you.`, `no principal has this ${issuer.claim}`);
        await store.audit(
          { actor, event: 'console.signin', address: null, outcome: 'ok', detail: `${match.principal} signed in to the console` },
          now().toISOString(),
        );
        await cookies.startSession(req, reply, { kind: 'person', issuer: issuer.name, value: claim.value, principal: match.principal, actor });
        return reply.code(303).header('location', pending.next).send();
      });

      /** The code for tokens at the IdP (RFC 6749 §4.1.3 with PKCE); the ID token, or a page saying why not. */
      async function exchange(tokenUrl: string, o: { code: string; redirectUri: string; verifier: string; clientId: string }): Promise<string> {
        const body = new URLSearchParams({ grant_type: 'authorization_code', code: o.code, redirect_uri: o.redirectUri, code_verifier: o.verifier });
        const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
        if (opts.clientSecret)
          headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(o.clientId)}:${encodeURIComponent(opts.clientSecret)}`).toString('base64')}`;
        else body.set('client_id', o.clientId);
        let res: Response;
        try {
          res = await fetch(tokenUrl, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS) });
        } catch (e) {
          const err = e as Error;
          throw new PageError(
            503,
            'Sign-in unavailable',
            err.name === 'TimeoutError'
              ? 'The identity provider did not answer in time; try again.'
              : 'The identity provider cannot be reached; try again shortly.',
          );
        }
        const text = (await res.text()).slice(0, 65536);
        let parsed: { id_token?: unknown; error?: unknown; error_description?: unknown } = {};
        try {
          parsed = JSON.parse(text) as typeof parsed;
        } catch {
          // reported below
        }
        if (!res.ok || typeof parsed.id_token !== 'string') {
          const why =
            typeof parsed.error === 'string'
              ? `${parsed.error}${typeof parsed.error_description === 'string' ? `: ${parsed.error_description}` : ''}`
              : `HTTP ${res.status}`;
          throw new PageError(403, 'Sign-in refused', `The identity provider did not issue a token (${why.slice(0, 300)}).`);
        }
        return parsed.id_token;
      }

      scope.post('/signin/admin', { config: { ownAuth: true } }, async (req, reply) => {
        const form = (req.body ?? {}) as Form;
        const next = localNext(form.next);
        if (!sameOrigin(req)) throw new PageError(403, 'Refused', 'This sign-in did not come from the console’s own page.');
        if (opts.adminTokenHashes.length === 0) throw new PageError(404, 'No operator sign-in', 'DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256 is not set.');
        if (!guesses.allow(req.ip, Date.now())) {
          req.log.warn({ ip: req.ip }, 'console: operator sign-in refused: too many wrong tokens');
          reply.header('retry-after', String(GUESS_WINDOW_SECONDS));
          return html(reply, 429, signInPage(await signInView(req, next, 'Too many wrong tokens from this address; wait a minute.')));
        }
        const digest = createHash('sha256')
          .update(form.token ?? '', 'utf8')
          .digest();
        let ok = false;
        for (const h of opts.adminTokenHashes) ok = timingSafeEqual(h, digest) || ok;
        if (!ok) {
          guesses.failed(req.ip, Date.now());
          req.log.warn({ ip: req.ip }, 'console: operator sign-in refused');
          return html(reply, 401, signInPage(await signInView(req, next, 'That admin token is not accepted.')));
        }
        // Which token (its hash's first characters: several operators may have one each), from where.
        const token = digest.toString('hex');
        const actor = `console-operator:${token.slice(0, 8)}@${req.ip}`;
        await (
          await opts.store()
        ).audit({ actor, event: 'console.signin', address: null, outcome: 'ok', detail: 'operator signed in to the console' }, now().toISOString());
        await cookies.startSession(req, reply, { kind: 'admin', actor, token });
        return reply.code(303).header('location', next).send();
      });

      scope.post(
        '/signout',
        { config: { ownAuth: true } },
        change(async (_ctx, _form, req, reply) => {
          cookies.endSession(req, reply);
          return reply.code(303).header('location', `${CONSOLE_PATH}/signin`).send();
        }),
      );

      // ---- pages ------------------------------------------------------------------------------

      scope.get(
        '/',
        { config: { ownAuth: true } },
        page(async ({ viewer, dir, store, now: at }, _req, reply) => {
          const spec = await opts.spec();
          const access = intendedAccess(spec, at);
          const creds = (await store.credentials()).filter((c) => viewer.kind === 'admin' || c.principal === viewer.name);
          const waiting =
            viewer.kind === 'person'
              ? (await listRequests(dir.world, store, at, { principal: viewer.name, pending: true })).filter((r) => r.approvers?.includes(viewer.name))
              : [];
          return html(
            reply,
            200,
            overviewPage(viewer, {
              now: at,
              principals: Object.keys(spec.principals).length,
              datasets: Object.keys(spec.datasets).length,
              grants: access.length,
              waiting: waiting.length,
              grantEnds: access.flatMap((a) => (a.expires ? [a.expires] : [])),
              keyCreated: creds.filter((c) => c.state === 'current').map((c) => c.createdAt),
              keysOf: viewer.kind === 'admin' ? 'all' : 'own',
            }),
          );
        }),
      );

      scope.get(
        '/matrix',
        { config: { ownAuth: true } },
        page(async ({ viewer }, _req, reply) => html(reply, 200, matrixPage(viewer))),
      );

      scope.get('/data/matrix', { config: { ownAuth: true } }, async (req, reply) => {
        const ctx = await contextOf(req);
        if (!ctx) return json(reply, 401, { error: 'unauthorized', message: 'sign in to the console first' });
        const spec = await opts.spec();
        const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
        return json(
          reply,
          200,
          matrixData(Object.keys(spec.principals).sort(byName), Object.keys(spec.datasets).sort(byName), intendedAccess(spec, ctx.now), ctx.now),
        );
      });

      scope.get(
        '/principals/:name',
        { config: { ownAuth: true } },
        page(async ({ viewer, dir, store, now: at }, req, reply) => {
          const name = (req.params as { name: string }).name;
          const spec = await opts.spec();
          const p = Object.hasOwn(spec.principals, name) ? spec.principals[name] : Object.hasOwn(dir.world.people, name) ? dir.world.people[name] : undefined;
          if (!p) throw new PageError(404, 'No such principal', `There is no principal ${JSON.stringify(name.slice(0, 100))}.`);
          const access = intendedAccess(spec, at).filter((a) => a.principal === name);
          const mayDetail = viewer.kind === 'admin' || viewer.name === name;
          let details = {};
          if (mayDetail) {
            const used = new Map<string, string | null>();
            for (const r of reading?.rows ?? []) if (r.principal === name && r.lastUsedAt !== undefined) used.set(r.backend, r.lastUsedAt);
            const credentials = (await store.credentials())
              .filter((c) => c.principal === name)
              .map((c) => ({
                backend: c.backend,
                address: c.address,
                id: c.credentialId,
                state: c.state,
                createdAt: c.createdAt,
                ageDays: Math.max(0, Math.floor((at.getTime() - Date.parse(c.createdAt)) / 86_400_000)),
                ...(used.has(c.backend) ? { lastUsedAt: used.get(c.backend)! } : {}),
              }));
            const requests = (await store.requests({ requester: name })).reverse();
            const mine = new Set(requests.map((r) => requestAddress(r.id)));
            const audit = (await store.auditTail(HISTORY_SCAN))
              .filter(
                (e) =>
                  (e.address !== null && (addressOfPrincipal(e.address, name) || mine.has(e.address))) ||
                  (e.event === 'console.signin' && e.detail === `${name} signed in to the console`),
              )
              .slice(0, HISTORY_SHOWN)
              .map(auditRow);
            details = { credentials, requests, audit, ...(reading ? { readAt: reading.generatedAt } : {}) };
          }
          return html(reply, 200, principalPage(viewer, { name, type: p.type, ...(p.email ? { email: p.email } : {}), groups: p.groups, access, ...details }));
        }),
      );

      scope.get(
        '/datasets/:name',
        { config: { ownAuth: true } },
        page(async ({ viewer, dir, now: at }, req, reply) => {
          const name = (req.params as { name: string }).name;
          const spec = await opts.spec();
          const ds = Object.hasOwn(spec.datasets, name) ? spec.datasets[name] : undefined;
          if (!ds) throw new PageError(404, 'No such dataset', `There is no dataset ${JSON.stringify(name.slice(0, 100))}.`);
          const backend = spec.backends[ds.backend];
          const location = isS3Dataset(ds)
            ? `s3://${ds.bucket}/${ds.prefix ?? ''}`
            : isPgDataset(ds)
              ? `${ds.database}.${ds.schema}${ds.tables ? ` (${ds.tables.join(', ')})` : ''}`
              : `${ds.database}${ds.tables ? ` (${ds.tables.join(', ')})` : ''}`;
          const approvers = [
            ...new Set(
              requestable(dir.world, '')
                .datasets.filter((d) => d.dataset === name)
                .flatMap((d) => d.levels.flatMap((l) => l.approvers)),
            ),
          ].sort();
          return html(
            reply,
            200,
            datasetPage(viewer, {
              name,
              backend: ds.backend,
              backendType: backend?.type ?? 'unknown',
              location,
              ...(ds.description ? { description: ds.description } : {}),
              approvers,
              access: intendedAccess(spec, at).filter((a) => a.dataset === name),
              // The backend's own view names holders datagrant does not manage and how they hold
              // access (policies, roles): an operator's to see, not everyone's.
              ...(reading && viewer.kind === 'admin'
                ? {
                    effective: {
                      readAt: reading.generatedAt,
                      rows: reading.rows.filter((r) => r.dataset === name),
                      incomplete: reading.incomplete,
                    },
                  }
                : {}),
            }),
          );
        }),
      );

      // ---- requests -----------------------------------------------------------------------------

      const DONE: Record<string, (id: string) => string> = {
        made: (id) => `Request #${id} is made; its approvers see it now.`,
        approved: (id) => `Request #${id} is approved; the access is being granted now.`,
        denied: (id) => `Request #${id} is denied.`,
        cancelled: (id) => `Request #${id} is withdrawn.`,
      };

      async function requestsView(ctx: Ctx, flash: Flash, dataset?: string) {
        const { viewer, dir, store, now: at } = ctx;
        if (viewer.kind === 'admin') {
          const all = (await listRequests(dir.world, store, at)).reverse();
          return requestsPage(viewer, { waiting: [], mine: [], others: all.map(asOf), flash });
        }
        const listed = (await listRequests(dir.world, store, at, { principal: viewer.name })).reverse();
        const options = requestable(dir.world, viewer.name);
        return requestsPage(viewer, {
          options: {
            datasets: options.datasets.map((d) => ({
              name: d.dataset,
              levels: d.levels.map((l) => l.level),
              approvers: [...new Set(d.levels.flatMap((l) => l.approvers))],
            })),
            maxDuration: options.maxDuration,
          },
          ...(dataset ? { dataset } : {}),
          waiting: listed.filter((r) => r.stateNow === 'pending' && r.requester !== viewer.name && r.approvers?.includes(viewer.name)).map(asOf),
          mine: listed.filter((r) => r.requester === viewer.name).map(asOf),
          others: listed.filter((r) => r.requester !== viewer.name && r.decision?.by === viewer.name).map(asOf),
          flash,
        });
      }

      scope.get(
        '/requests',
        { config: { ownAuth: true } },
        page(async (ctx, req, reply) => {
          const q = req.query as Record<string, string | undefined>;
          const done = Object.keys(DONE).find((k) => q[k] !== undefined && /^[0-9]{1,16}$/.test(q[k]));
          return html(reply, 200, await requestsView(ctx, done ? { kind: 'ok', text: DONE[done]!(q[done]!) } : undefined, q.dataset));
        }),
      );

      /** A refused request change as the page with the reason, nothing changed. */
      async function refusedChange(ctx: Ctx, reply: FastifyReply, e: unknown) {
        if (!(e instanceof RequestError)) throw e;
        const status = { invalid: 400, forbidden: 403, 'not-found': 404, conflict: 409 }[e.kind];
        const text = e.violations.length ? `${e.message} ${e.violations.join(' ')}` : e.message;
        return html(reply, status, await requestsView(ctx, { kind: 'error', text }));
      }

      scope.post(
        '/requests',
        { config: { ownAuth: true } },
        change(async (ctx, form, req, reply) => {
          if (ctx.viewer.kind !== 'person')
            throw new PageError(403, 'Operators do not ask', 'Operators are not principals of the spec; sign in as yourself to ask for access.');
          try {
            const { request } = await createRequest(ctx.dir.world, ctx.store, {
              requester: ctx.viewer.name,
              dataset: form.dataset ?? '',
              access: form.access ?? '',
              duration: form.duration ?? '',
              reason: form.reason ?? '',
              via: ctx.viewer.actor,
              now: ctx.now,
            });
            req.log.info({ request: request.id, principal: ctx.viewer.name, dataset: request.dataset, level: request.level }, 'console: request made');
            return reply.code(303).header('location', `${CONSOLE_PATH}/requests?made=${request.id}`).send();
          } catch (e) {
            return refusedChange(ctx, reply, e);
          }
        }),
      );

      const idOf = (req: FastifyRequest) => {
        const raw = (req.params as { id: string }).id;
        if (!/^[1-9][0-9]{0,15}$/.test(raw)) throw new PageError(404, 'No such request', `There is no request ${JSON.stringify(raw.slice(0, 20))}.`);
        return Number(raw);
      };

      scope.post(
        '/requests/:id/decide',
        { config: { ownAuth: true } },
        change(async (ctx, form, req, reply) => {
          if (ctx.viewer.kind !== 'person')
            throw new PageError(403, 'Operators do not decide', 'Only the approvers the spec names approve or deny requests; an operator is not one of them.');
          const verb = form.decision;
          if (verb !== 'approve' && verb !== 'deny') throw new PageError(400, 'Bad request', 'Choose approve or deny.');
          try {
            const decide = verb === 'approve' ? approveRequest : denyRequest;
            const r = await decide(ctx.dir.world, ctx.store, {
              id: idOf(req),
              as: ctx.viewer.name,
              reason: form.reason ?? '',
              via: ctx.viewer.actor,
              now: ctx.now,
            });
            req.log.info({ request: r.id, by: ctx.viewer.name, state: r.state }, `console: request ${r.state}`);
            if (r.state === 'approved') opts.onAccessChanged?.();
            return reply.code(303).header('location', `${CONSOLE_PATH}/requests?${r.state}=${r.id}`).send();
          } catch (e) {
            return refusedChange(ctx, reply, e);
          }
        }),
      );

      scope.post(
        '/requests/:id/cancel',
        { config: { ownAuth: true } },
        change(async (ctx, _form, req, reply) => {
          if (ctx.viewer.kind !== 'person') throw new PageError(403, 'Operators do not cancel', 'Only the person who asked may withdraw a request.');
          try {
            const r = await cancelRequest(ctx.dir.world, ctx.store, { id: idOf(req), as: ctx.viewer.name, via: ctx.viewer.actor, now: ctx.now });
            if (r.decision) opts.onAccessChanged?.();
            return reply.code(303).header('location', `${CONSOLE_PATH}/requests?cancelled=${r.id}`).send();
          } catch (e) {
            return refusedChange(ctx, reply, e);
          }
        }),
      );

      // ---- operators ----------------------------------------------------------------------------

      scope.get(
        '/plan',
        { config: { ownAuth: true } },
        page(
          async ({ viewer, now: at }, req, reply) => {
            if (!opts.reads) throw new PageError(404, 'Not available', 'This server does not preview plans.');
            try {
              planNow ??= opts.reads.plan().finally(() => (planNow = undefined));
              const plan = await planNow;
              return html(
                reply,
                200,
                planPage(viewer, {
                  text: renderPlanText(plan, { color: false }),
                  changes: plan.changes.length,
                  drift: plan.changes.filter((c) => c.drift).length,
                  at: at.toISOString(),
                }),
              );
            } catch (e) {
              req.log.warn({ err: { name: (e as Error).name, message: (e as Error).message } }, 'console: plan preview failed');
              return html(
                reply,
                502,
                planPage(viewer, { text: '', changes: 0, drift: 0, at: at.toISOString(), error: `The plan could not be made: ${(e as Error).message}` }),
              );
            }
          },
          { admin: true },
        ),
      );

      scope.post(
        '/access/refresh',
        { config: { ownAuth: true } },
        change(
          async (_ctx, form, req, reply) => {
            if (!opts.reads) throw new PageError(404, 'Not available', 'This server does not read effective access.');
            // One reading at a time: a second click waits for the one in flight.
            readingNow ??= opts.reads.access().finally(() => (readingNow = undefined));
            try {
              reading = await readingNow;
            } catch (e) {
              req.log.warn({ err: { name: (e as Error).name, message: (e as Error).message } }, 'console: effective access read failed');
              throw new PageError(502, 'Could not read effective access', (e as Error).message);
            }
            return reply.code(303).header('location', localNext(form.next)).send();
          },
          { admin: true },
        ),
      );

      scope.get(
        '/audit',
        { config: { ownAuth: true } },
        page(
          async ({ viewer, store }, req, reply) => {
            const q = String((req.query as { q?: string }).q ?? '').slice(0, 200);
            const head = await store.auditHead();
            const headKey = head ? `${head.seq}:${head.hash}` : '';
            if (verdictAt?.head !== headKey) {
              const verdict = store.verifyAudit();
              verdictAt = { head: headKey, verdict };
              verdict.catch(() => {
                if (verdictAt?.verdict === verdict) verdictAt = undefined;
              });
            }
            const [verdict, entries] = await Promise.all([verdictAt.verdict, store.auditTail(AUDIT_SCAN)]);
            const needle = q.toLowerCase();
            const matching = needle
              ? entries.filter((e) => [e.actor, e.event, e.address ?? '', e.detail ?? '', e.outcome].some((f) => f.toLowerCase().includes(needle)))
              : entries;
            return html(
              reply,
              200,
              auditPage(viewer, {
                ok: verdict.ok,
                entries: verdict.entries,
                ...(verdict.firstBad ? { firstBad: verdict.firstBad } : {}),
                rows: matching.slice(0, AUDIT_PAGE).map(auditRow),
                query: q,
                truncated: matching.length > AUDIT_PAGE,
                scanned: entries.length,
              }),
            );
          },
          { admin: true },
        ),
      );
    },
    { prefix: CONSOLE_PATH },
  );
}

/**
 * Whether an audit entry's address is one of `principal`'s own objects: its user, key, password,
 * login account or role (and that role's grants and connections), its membership in a group, a
 * policy on its user. Groups' objects are not (roles share one namespace with principals, which
 * validation keeps apart).
 */
export function addressOfPrincipal(address: string, principal: string): boolean {
  const colon = address.indexOf(':');
  const [kind, ...rest] = address.slice(colon + 1).split('/');
  const seg = rest.map((s) => s.replace(/~.*$/, ''));
  switch (kind) {
    case 'user':
    case 'key':
    case 'password':
    case 'account':
    case 'role':
    case 'grant':
    case 'pattern-grant':
    case 'connect':
    case 'session-login':
      return seg[0] === principal;
    case 'membership':
      return seg[1] === principal;
    case 'attachment':
    case 'inline-policy':
      return seg[0] === 'user' && seg[1] === principal;
    default:
      return false;
  }
}

/** Wrong admin tokens per address, in fixed windows: a guesser waits, an operator with a typo does not notice. */
class GuessLimiter {
  readonly #failures = new Map<string, { count: number; since: number }>();

  allow(ip: string, at: number): boolean {
    const f = this.#failures.get(ip);
    return !f || at - f.since > GUESS_WINDOW_SECONDS * 1000 || f.count < GUESS_LIMIT;
  }

  failed(ip: string, at: number): void {
    const f = this.#failures.get(ip);
    if (!f || at - f.since > GUESS_WINDOW_SECONDS * 1000) this.#failures.set(ip, { count: 1, since: at });
    else f.count++;
    // Bounded: old windows are forgotten once the map grows.
    if (this.#failures.size > 10_000) for (const [k, v] of this.#failures) if (at - v.since > GUESS_WINDOW_SECONDS * 1000) this.#failures.delete(k);
  }
}

const auditRow = (e: AuditEntry): AuditRowView => ({
  seq: e.seq,
  at: e.at,
  actor: e.actor,
  event: e.event,
  address: e.address,
  outcome: e.outcome,
  detail: e.detail,
});

/** A listed request as the page shows it: in its state at `now`. */
const asOf = (r: AccessRequest & { stateNow?: AccessRequest['state'] }): AccessRequest => ({ ...r, state: r.stateNow ?? r.state });

export type { IntendedAccess, RequestsWorld };
