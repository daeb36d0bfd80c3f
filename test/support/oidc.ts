// A real OpenID Provider (oidc-provider 9) on a free loopback port, for the credential endpoint's
// tests. ID tokens come out of the provider's own authorization-code flow, driven with fetch: the
// authorization request (with PKCE and a login_hint naming the account), the provider's
// interaction, which this helper finishes as the provider's API intends a login page to (login
// plus a saved grant for the requested scopes, so no consent screen), the redirect back with a
// code, and the token request authenticated with the client secret. So every token is minted,
// signed and shaped by the provider exactly as it would be for a browser; nothing is hand-made
// except where a test forges one on purpose.
//
// For `datagrant login` the provider also runs the device flow (RFC 8628) and takes a public,
// native client (`datagrant-cli`) with a loopback redirect (RFC 8252); `approveDevice` and
// `browse` are the person at the browser, going through the provider's own pages.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import { Provider } from 'oidc-provider';

export interface IdpAccount {
  /** The `sub` the provider issues for it. */
  sub: string;
  email?: string;
  emailVerified?: boolean;
}

export interface IdpClient {
  clientId: string;
  clientSecret: string;
}

export interface TestIdp {
  issuer: string;
  /** The clients registered: `datagrant` (the audience serve expects) and `other-app`. */
  clients: Record<'datagrant' | 'other-app', IdpClient>;
  /** The public client for `datagrant login`: device flow, refresh tokens, loopback redirects. */
  cliClientId: string;
  /** An ID token for the account `login` (a key of `accounts`), issued to `client` (default datagrant). */
  idToken(login: string, client?: 'datagrant' | 'other-app'): Promise<string>;
  /**
   * The person's side of the device flow: open the verification page, enter `userCode`, confirm,
   * sign in as `login` (or press abort with `deny`). Resolves once the provider shows its success
   * (or aborted) page.
   */
  approveDevice(userCode: string, login: string, opts?: { deny?: boolean }): Promise<void>;
  /**
   * A browser at the provider: opens `url` (an authorization request), signs in as `login`, and
   * returns where the provider sends it back to (the client's redirect URI with code and state).
   */
  authorize(url: string, login: string): Promise<string>;
  /** A browser that opens `url` (an authorization request), signs in as `login` and follows redirects to the loopback. */
  browse(url: string, login: string): Promise<void>;
  /**
   * Registers the web console as a public client (PKCE, no secret) redirecting to `redirectUri`,
   * or as a confidential one when `secret` is given; returns its client id.
   */
  registerConsole(redirectUri: string, opts?: { clientId?: string; secret?: string }): string;
  /** Answer the next `n` token requests with `slow_down`, as a provider does when polled too fast. */
  slowDown(n: number): void;
  /** The token requests answered, each `<grant type> <ok | error code>` (`device_code authorization_pending`). */
  tokenRequests: string[];
  close(): Promise<void>;
}

const REDIRECT_URI = 'http://127.0.0.1:9/cb';
const CLI_CLIENT_ID = 'datagrant-cli';
/** Registered without a port: a native client's loopback redirect may use any port (RFC 8252 §7.3). */
const CLI_REDIRECT_URI = 'http://127.0.0.1/callback';
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/**
 * The provider's storage (sessions, interactions, codes, grants) in a Map of this provider's own:
 * the same as its built-in development adapter, without its warning on every start.
 */
function memoryAdapter() {
  const rows = new Map<string, { payload: Record<string, unknown>; expiresAt: number }>();
  const live = (key: string) => {
    const row = rows.get(key);
    if (row && row.expiresAt <= Date.now()) rows.delete(key);
    return rows.get(key)?.payload;
  };
  return class {
    /** Registers a client after the provider started (its redirect URI may name a port known only then). */
    static register(client: Record<string, unknown>) {
      rows.set(`Client:${String(client.client_id)}`, { payload: client, expiresAt: Infinity });
    }
    constructor(readonly model: string) {}
    key(id: string) {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: Record<string, unknown>, expiresIn: number) {
      rows.set(this.key(id), { payload, expiresAt: Date.now() + expiresIn * 1000 });
    }
    async find(id: string) {
      return live(this.key(id));
    }
    async findByUid(uid: string) {
      for (const k of rows.keys()) if (k.startsWith(`${this.model}:`) && live(k)?.uid === uid) return live(k);
      return undefined;
    }
    async findByUserCode(userCode: string) {
      for (const k of rows.keys()) if (k.startsWith(`${this.model}:`) && live(k)?.userCode === userCode) return live(k);
      return undefined;
    }
    async consume(id: string) {
      const p = live(this.key(id));
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      rows.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string) {
      for (const [k, row] of rows) if (row.payload.grantId === grantId) rows.delete(k);
    }
  };
}

export interface IdpOptions {
  accounts: Record<string, IdpAccount>;
  idTokenTtlSeconds?: number;
  /** The `interval` the device authorization response advertises (oidc-provider sends none: clients then wait 5 s). */
  deviceInterval?: number;
  /** How long a device code lives (the response's `expires_in`); default 600 s. */
  deviceCodeTtlSeconds?: number;
}

export async function startIdp(opts: IdpOptions): Promise<TestIdp> {
  const clients = {
    datagrant: { clientId: 'datagrant', clientSecret: randomBytes(24).toString('base64url') },
    'other-app': { clientId: 'other-app', clientSecret: randomBytes(24).toString('base64url') },
  };
  // Requests are taken once the provider exists, and it needs the port for its issuer URL.
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const rsa = await generateKeyPair('RS256', { extractable: true });
  const ec = await generateKeyPair('ES256', { extractable: true });
  const adapter = memoryAdapter();
  const provider = new Provider(issuer, {
    adapter,
    clients: [
      ...Object.values(clients).map((c) => ({
        client_id: c.clientId,
        client_secret: c.clientSecret,
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
      {
        client_id: CLI_CLIENT_ID,
        application_type: 'native',
        redirect_uris: [CLI_REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      },
    ],
    jwks: {
      keys: [
        { ...(await exportJWK(rsa.privateKey)), kid: 'rsa-1', use: 'sig', alg: 'RS256' },
        { ...(await exportJWK(ec.privateKey)), kid: 'ec-1', use: 'sig', alg: 'ES256' },
      ],
    },
    async findAccount(_ctx: unknown, sub: string) {
      const account = Object.values(opts.accounts).find((a) => a.sub === sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            ...(account.email !== undefined ? { email: account.email, email_verified: account.emailVerified ?? true } : {}),
          };
        },
      };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    // As the IdPs in use do: the scope's claims in the ID token, not only at the userinfo endpoint.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      // The provider's default pages carry its forms; these plain ones carry the same forms
      // without the default pages' notice that a real deployment should restyle them.
      deviceFlow: {
        enabled: true,
        userCodeInputSource: async (ctx: { body: string }, form: string) => void (ctx.body = `<html><body>${form}</body></html>`),
        userCodeConfirmSource: async (ctx: { body: string }, form: string) => void (ctx.body = `<html><body>${form}</body></html>`),
        successSource: async (ctx: { body: string }) => void (ctx.body = '<html><body>signed in</body></html>'),
      },
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    ttl: {
      IdToken: opts.idTokenTtlSeconds ?? 300,
      AccessToken: 300,
      AuthorizationCode: 60,
      Interaction: 300,
      Session: 600,
      Grant: 600,
      DeviceCode: opts.deviceCodeTtlSeconds ?? 600,
      RefreshToken: 3600,
    },
  });
  // The provider reports server errors as events; a test helper must not hide them.
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error', err));
  const tokenRequests: string[] = [];
  if (opts.deviceInterval !== undefined) {
    const interval = opts.deviceInterval;
    // The event carries the response body before it is sent: the interval becomes part of it.
    provider.on('device_authorization.success', (_ctx, body) => void ((body as Record<string, unknown>).interval = interval));
  }
  // Each token request as `<grant type> <outcome>`: `…device_code ok`, `…device_code authorization_pending`.
  const grantOf = (ctx: unknown) => String((ctx as { oidc?: { params?: { grant_type?: string } } }).oidc?.params?.grant_type).replace(/^.*:/, '');
  provider.on('grant.success', (ctx) => void tokenRequests.push(`${grantOf(ctx)} ok`));
  provider.on('grant.error', (ctx, err) => void tokenRequests.push(`${grantOf(ctx)} ${(err as { error?: string }).error}`));
  let slowDowns = 0;
  const handle = provider.callback();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url.startsWith('/interaction/')) return void finishInteraction(provider, opts.accounts, req, res);
    if (req.method === 'POST' && url === '/token' && slowDowns > 0) {
      slowDowns--;
      tokenRequests.push('(any) slow_down');
      req.resume();
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'slow_down', error_description: 'you are polling too quickly' }));
      return;
    }
    handle(req, res);
  });

  return {
    issuer,
    clients,
    cliClientId: CLI_CLIENT_ID,
    tokenRequests,
    async idToken(login, client = 'datagrant') {
      return authorizationCodeFlow(issuer, clients[client], login);
    },
    approveDevice: (userCode, login, o = {}) => approveDevice(issuer, userCode, login, o.deny ?? false),
    async authorize(url, login) {
      const browser = new Browser(issuer);
      let next = url;
      for (let i = 0; i < 6; i++) {
        if (new URL(next).origin !== issuer) return next;
        if (new URL(next).pathname.startsWith('/interaction/')) next = withLogin(next, login);
        const res = await browser.request(next);
        if (!res.location) throw new Error(`the provider answered ${res.status} without sending the browser back: ${res.body.slice(0, 300)}`);
        next = res.location;
      }
      throw new Error(`too many redirects from ${url}`);
    },
    async browse(url, login) {
      const browser = new Browser(issuer);
      // The login page submits the account (a `login` parameter on the interaction); then
      // redirects lead back to the client's loopback, which the browser opens last.
      let next = url;
      for (let i = 0; i < 6; i++) {
        if (new URL(next).pathname.startsWith('/interaction/')) next = withLogin(next, login);
        const res = await browser.request(next);
        if (!res.location) return;
        next = res.location;
      }
      throw new Error(`too many redirects from ${url}`);
    },
    slowDown(n) {
      slowDowns += n;
    },
    registerConsole(redirectUri, o = {}) {
      const clientId = o.clientId ?? 'datagrant-console';
      adapter.register({
        client_id: clientId,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        ...(o.secret ? { client_secret: o.secret, token_endpoint_auth_method: 'client_secret_basic' } : { token_endpoint_auth_method: 'none' }),
      });
      return clientId;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}

/**
 * The provider's interaction (where a login page would be): the account the login_hint names
 * signs in, and a grant of the requested scopes is saved, so the provider needs no consent.
 */
async function finishInteraction(provider: Provider, accounts: Record<string, IdpAccount>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const details = await provider.interactionDetails(req, res);
    // The account the login page was submitted for, else the one the authorization request hinted.
    const submitted = new URL(req.url ?? '/', 'http://x').searchParams.get('login');
    if (submitted === null && details.params.login_hint === undefined) {
      // A person at a browser: the provider's login page, a form naming the account.
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end(
          `<!doctype html><html lang="en"><head><title>Test IdP sign-in</title></head><body><h1>Test IdP</h1><form method="get" action="/interaction/${details.uid}"><label for="login">Username</label><input id="login" name="login" autocomplete="username"><button type="submit">Sign in</button></form></body></html>`,
        );
      return;
    }
    const account = accounts[submitted ?? String(details.params.login_hint)];
    if (!account) {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'no such account' }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = new provider.Grant({ accountId: account.sub, clientId: String(details.params.client_id) });
    grant.addOIDCScope(String(details.params.scope));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { login: { accountId: account.sub }, consent: { grantId } }, { mergeWithLastSubmission: false });
  } catch (e) {
    res.writeHead(500).end(String((e as Error).message));
  }
}

/** A browser: requests by hand (no redirects followed), carrying the cookies it was given. */
class Browser {
  readonly #jar = new Map<string, string>();
  constructor(readonly base: string) {}

  async request(url: string, form?: Record<string, string>): Promise<{ status: number; location?: string; body: string }> {
    const res = await fetch(url, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: {
        cookie: [...this.#jar].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(form ? { body: new URLSearchParams(form) } : {}),
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      this.#jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
    const location = res.headers.get('location');
    const body = await res.text();
    return { status: res.status, body, ...(location && res.status >= 300 && res.status < 400 ? { location: new URL(location, url).href } : {}) };
  }

  /** GET `url` and follow redirects; returns the URL that answered without one. */
  async follow(url: string, until: (url: string) => boolean = () => false): Promise<string> {
    let next = url;
    for (let i = 0; i < 6 && !until(next); i++) {
      const res = await this.request(next);
      if (!res.location) return next;
      next = res.location;
    }
    return next;
  }
}

/** The value of a hidden form field in the provider's page. */
function hidden(html: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!m) throw new Error(`no ${name} field in the page: ${html.slice(0, 300)}`);
  return m[1]!;
}

/** As a login page would: the account is submitted with the interaction. */
function withLogin(url: string, login: string): string {
  const u = new URL(url);
  u.searchParams.set('login', login);
  return u.href;
}

async function approveDevice(issuer: string, userCode: string, login: string, deny: boolean): Promise<void> {
  const browser = new Browser(issuer);
  const device = new URL('/device', issuer).href;
  const input = await browser.request(device);
  const confirm = await browser.request(device, { xsrf: hidden(input.body, 'xsrf'), user_code: userCode });
  if (confirm.status !== 200) throw new Error(`the provider did not take the user code ${userCode}: ${confirm.status} ${confirm.body.slice(0, 300)}`);
  const decided = await browser.request(device, {
    xsrf: hidden(confirm.body, 'xsrf'),
    user_code: hidden(confirm.body, 'user_code'),
    ...(deny ? { abort: 'yes' } : { confirm: 'yes' }),
  });
  if (deny) return;
  if (!decided.location) throw new Error(`confirming the code led nowhere: ${decided.status} ${decided.body.slice(0, 300)}`);
  // confirmation → interaction (the login page, submitted for `login`) → device resume → success page
  let next = decided.location;
  for (let i = 0; i < 6; i++) {
    if (new URL(next).pathname.startsWith('/interaction/')) next = withLogin(next, login);
    const res = await browser.request(next);
    if (!res.location) {
      if (res.status !== 200 || !res.body.includes('signed in')) throw new Error(`the device sign-in did not finish: ${res.status} ${res.body.slice(0, 300)}`);
      return;
    }
    next = res.location;
  }
  throw new Error('too many redirects in the device sign-in');
}

/** A browser's part in the code flow, for a confidential client with a fixed redirect. */
async function authorizationCodeFlow(issuer: string, client: IdpClient, login: string): Promise<string> {
  const browser = new Browser(issuer);
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(8).toString('hex');
  const auth = new URL('/auth', issuer);
  auth.search = new URLSearchParams({
    client_id: client.clientId,
    response_type: 'code',
    scope: 'openid email',
    redirect_uri: REDIRECT_URI,
    state,
    nonce: randomBytes(8).toString('hex'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    login_hint: login,
  }).toString();

  // authorization request → interaction → resumed authorization → redirect_uri with the code
  const url = await browser.follow(auth.href, (u) => u.startsWith(REDIRECT_URI));
  const back = new URL(url);
  if (back.searchParams.get('error'))
    throw new Error(`the provider refused: ${back.searchParams.get('error')} ${back.searchParams.get('error_description') ?? ''}`);
  if (back.searchParams.get('state') !== state) throw new Error('the provider returned another state');
  const code = back.searchParams.get('code');
  if (!code) throw new Error(`no code in ${url}`);

  const res = await fetch(new URL('/token', issuer), {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier }),
  });
  const body = (await res.json()) as { id_token?: string; error?: string; error_description?: string };
  if (!res.ok || !body.id_token) throw new Error(`token request failed: ${res.status} ${body.error ?? ''} ${body.error_description ?? ''}`);
  return body.id_token;
}
