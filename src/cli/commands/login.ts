// `datagrant login`: sign in at the organisation's IdP once, so `credentials export --server` and
// `exec --server` (and every credential_process that calls them) get sessions from serve without
// the master key. The device flow by default: it works over ssh and in containers, where no
// browser can reach a loopback port; `--browser` uses the browser on this machine instead.
import { spawn } from 'node:child_process';
import type { Io } from '../../app/io.js';
import { UsageError } from '../../core/errors.js';
import { LoginStore, loginFilePath } from '../session/login-store.js';
import { browserFlow, deviceFlow, discover, idTokenFacts, normaliseServer, realDeps, type HttpDeps, type TokenSet } from '../session/oidc-client.js';

export interface LoginOptions {
  server?: string;
  issuerUrl?: string;
  clientId?: string;
  scope?: string;
  browser?: boolean;
}

export const DEFAULT_SCOPE = 'openid email';
/** How long `--browser` waits for the person to finish signing in. */
const BROWSER_WAIT_MS = 5 * 60_000;

export async function loginCommand(io: Io, opts: LoginOptions, deps: HttpDeps = realDeps(io.now)): Promise<number> {
  const serverOpt = opts.server ?? io.env.DATAGRANT_SERVER;
  if (!serverOpt) throw new UsageError('name the datagrant serve to log in to: --server URL (or set DATAGRANT_SERVER)');
  const server = normaliseServer(serverOpt);
  const store = new LoginStore(loginFilePath(io.env));
  // Read first: a login file open to others is refused before anyone signs in.
  const previous = store.get(server);
  const issuer = opts.issuerUrl ?? previous?.issuer;
  const clientId = opts.clientId ?? previous?.clientId;
  if (!issuer || !clientId) {
    throw new UsageError(
      `the first login to ${server} needs --issuer-url (your organisation's OpenID Connect issuer) and --client-id (datagrant's client id there); later ones reuse them`,
    );
  }
  const scope = opts.scope ?? DEFAULT_SCOPE;
  if (!scope.split(/\s+/).includes('openid'))
    throw new UsageError(`--scope must include openid (an ID token is what serve takes); got ${JSON.stringify(scope)}`);

  const ep = await discover(issuer, deps);
  let tokens: TokenSet;
  let nonce: string | undefined;
  if (opts.browser) {
    const got = await browserFlow(
      ep,
      { clientId, scope },
      (url) => {
        io.stderr(`Opening your browser to sign in. If it does not open, visit:\n  ${url}\n`);
        if (io.isTTY) openBrowser(url);
      },
      { ...deps, waitMs: BROWSER_WAIT_MS },
    );
    ({ nonce, ...tokens } = got);
  } else {
    tokens = await deviceFlow(
      ep,
      { clientId, scope },
      (p) =>
        io.stderr(
          `To sign in, open ${p.verificationUri} and enter the code ${p.userCode}\n` +
            (p.verificationUriComplete ? `  (or open ${p.verificationUriComplete})\n` : '') +
            `Waiting for you to sign in (the code is valid for ${Math.max(1, Math.round(p.expiresInSeconds / 60))} min)...\n`,
        ),
      deps,
    );
  }
  const facts = idTokenFacts(tokens.idToken, ep, clientId, nonce);
  await store.update(server, async () => ({
    server,
    issuer,
    clientId,
    idToken: tokens.idToken,
    ...(tokens.refreshToken ? { refreshToken: tokens.refreshToken } : {}),
    expiresAt: facts.expiresAt.toISOString(),
    who: facts.who,
    loggedInAt: io.now().toISOString(),
  }));
  io.stdout(
    `Logged in to ${server} as ${facts.who}. ` +
      (tokens.refreshToken
        ? 'The login is renewed as needed until your identity provider ends it.\n'
        : `The ID token is valid until ${facts.expiresAt.toISOString()}; then run \`datagrant login\` again (the identity provider issued no refresh token${scope.includes('offline_access') ? '' : '; many issue one for --scope "openid email offline_access"'}).\n`),
  );
  return 0;
}

/** Best effort: the login URL is on stderr whatever happens here. */
function openBrowser(url: string): void {
  const command = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  try {
    const child = spawn(command, [url], { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No opener on this machine: the person opens the printed URL.
  }
}
