// A real OpenID Provider (oidc-provider 9) on a free loopback port, for the credential endpoint's
// tests. ID tokens come out of the provider's own authorization-code flow, driven with fetch: the
// authorization request (with PKCE and a login_hint naming the account), the provider's
// interaction, which this helper finishes as the provider's API intends a login page to (login
// plus a saved grant for the requested scopes, so no consent screen), the redirect back with a
// code, and the token request authenticated with the client secret. So every token is minted,
// signed and shaped by the provider exactly as it would be for a browser; nothing is hand-made
// except where a test forges one on purpose.
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
  /** An ID token for the account `login` (a key of `accounts`), issued to `client` (default datagrant). */
  idToken(login: string, client?: 'datagrant' | 'other-app'): Promise<string>;
  close(): Promise<void>;
}

const REDIRECT_URI = 'http://127.0.0.1:9/cb';

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

export async function startIdp(opts: { accounts: Record<string, IdpAccount>; idTokenTtlSeconds?: number }): Promise<TestIdp> {
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
  const provider = new Provider(issuer, {
    adapter: memoryAdapter(),
    clients: Object.values(clients).map((c) => ({
      client_id: c.clientId,
      client_secret: c.clientSecret,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
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
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    ttl: { IdToken: opts.idTokenTtlSeconds ?? 300, AccessToken: 300, AuthorizationCode: 60, Interaction: 300, Session: 600, Grant: 600 },
  });
  // The provider reports server errors as events; a test helper must not hide them.
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error', err));
  const handle = provider.callback();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if ((req.url ?? '/').startsWith('/interaction/')) return void finishInteraction(provider, opts.accounts, req, res);
    handle(req, res);
  });

  return {
    issuer,
    clients,
    async idToken(login, client = 'datagrant') {
      return authorizationCodeFlow(issuer, clients[client], login);
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
    const account = accounts[String(details.params.login_hint)];
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

/** A browser's part in the flow: follow redirects by hand, carrying the provider's cookies. */
async function authorizationCodeFlow(issuer: string, client: IdpClient, login: string): Promise<string> {
  const jar = new Map<string, string>();
  const get = async (url: string): Promise<string> => {
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
    const location = res.headers.get('location');
    await res.body?.cancel();
    if (res.status < 300 || res.status >= 400 || !location) throw new Error(`${url} answered ${res.status}, not a redirect`);
    return new URL(location, issuer).href;
  };

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
  let url = auth.href;
  for (let i = 0; i < 5 && !url.startsWith(REDIRECT_URI); i++) url = await get(url);
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
