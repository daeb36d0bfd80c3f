// Sessions from `datagrant serve` for the person logged in with `datagrant login`: the stored ID
// token goes to POST /v1/credentials/:backend (src/serve/credentials.ts) and the answer is the
// principal's session. The token is renewed with the refresh token when it is (nearly) expired,
// or when serve refuses it as expired (clocks differ); otherwise the person is told to log in.
//
// A workload has no person to log in: `--id-token-file` names the file its platform keeps a
// fresh OIDC token in (a Kubernetes projected service-account token, a CI job's token), read
// anew for every session.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { IssuedSession } from '../../app/sessions-port.js';
import type { Io } from '../../app/io.js';
import { UsageError } from '../../core/errors.js';
import { LoginError, remoteText } from './errors.js';
import { LoginStore, loginFilePath, type StoredLogin } from './login-store.js';
import { discover, idTokenFacts, networkProblem, realDeps, refresh, RefreshRefusedError, type HttpDeps } from './oidc-client.js';
import type { SessionSource, SessionWanted } from './source.js';

/** serve's route (CREDENTIALS_PATH in src/serve/credentials.ts), without importing serve into the CLI's start-up. */
const CREDENTIALS_PATH = '/v1/credentials/';
/** A token this close to its expiry is renewed first: it must still be valid when serve checks it. */
const RENEW_MARGIN_MS = 60_000;
export const DEFAULT_TIMEOUT_MS = 60_000;

export interface RemoteOptions {
  /** Deadline for serve's answer (which includes the backend confirming the new session works). */
  timeoutMs?: number;
  store?: LoginStore;
  deps?: HttpDeps;
  /** A workload's token file, instead of the person's stored login. */
  idTokenFile?: string;
}

/** Far above any real ID token; a file this large is not one. */
const MAX_TOKEN_FILE = 64 * 1024;

export class RemoteSessions implements SessionSource {
  readonly #io: Io;
  readonly #timeoutMs: number;
  readonly #store: LoginStore;
  readonly #deps: HttpDeps;
  readonly #idTokenFile: string | undefined;

  constructor(
    io: Io,
    readonly server: string,
    opts: RemoteOptions = {},
  ) {
    this.#io = io;
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#store = opts.store ?? new LoginStore(loginFilePath(io.env));
    this.#deps = opts.deps ?? realDeps(io.now);
    this.#idTokenFile = opts.idTokenFile !== undefined ? resolve(io.cwd, opts.idTokenFile) : undefined;
  }

  /** The command gets its session, never the keys to the state (not needed here). */
  readonly withheldEnv = ['DATAGRANT_MASTER_KEY', 'DATAGRANT_MASTER_KEY_KMS', 'DATAGRANT_STORE_URL'] as const;
  readonly renews = true;

  exportArgs(): string[] {
    return [
      '--server',
      this.server,
      ...(this.#idTokenFile ? ['--id-token-file', this.#idTokenFile] : []),
      ...(this.#timeoutMs !== DEFAULT_TIMEOUT_MS ? ['--timeout', String(this.#timeoutMs / 1000)] : []),
    ];
  }

  async obtain(req: SessionWanted): Promise<IssuedSession> {
    if (!req.backend) throw new UsageError(`--backend is required with --server: name the spec's backend to get a session on (for example --backend aws)`);
    if (this.#idTokenFile) {
      const answer = await this.#ask(req.backend, this.#readTokenFile(this.#idTokenFile));
      if (answer.status === 401) {
        const said = typeof answer.body.message === 'string' ? remoteText(answer.body.message) : 'HTTP 401';
        throw new LoginError(`${this.server} refused the ID token in ${this.#idTokenFile} (${said}); the platform that writes that file renews it`);
      }
      return this.#session(answer, req.backend);
    }
    const first = await this.#freshLogin();
    let answer = await this.#ask(req.backend, first.login.idToken);
    if (answer.status === 401 && !first.renewed && first.login.refreshToken) {
      // Valid by this machine's clock, expired by serve's: renew once and ask again.
      const again = await this.#freshLogin(first.login.idToken);
      answer = await this.#ask(req.backend, again.login.idToken);
    }
    return this.#session(answer, req.backend);
  }

  /**
   * The stored login, renewed first when it expires within a minute, or when `rejected` (a
   * token serve refused) is still the stored one.
   */
  async #freshLogin(rejected?: string): Promise<{ login: StoredLogin; renewed: boolean }> {
    const stored = this.#store.get(this.server);
    if (!stored) {
      throw new LoginError(
        `you are not logged in to ${this.server}: run \`datagrant login --server ${this.server} --issuer-url <your IdP> --client-id <datagrant's client id there>\``,
      );
    }
    if (!this.#stale(stored, rejected)) return { login: stored, renewed: false };
    if (!stored.refreshToken) {
      throw new LoginError(
        rejected
          ? `your login to ${this.server} was refused as expired: run \`datagrant login --server ${this.server}\``
          : `your login to ${this.server} expired at ${stored.expiresAt}: run \`datagrant login --server ${this.server}\``,
      );
    }
    let renewed = false;
    const login = await this.#store.update(this.server, async (current) => {
      // Another process may have renewed it while this one waited for the file.
      if (!current || !this.#stale(current, rejected)) return undefined;
      if (!current.refreshToken) throw new LoginError(`your login to ${this.server} expired: run \`datagrant login --server ${this.server}\``);
      try {
        const ep = await discover(current.issuer, this.#deps);
        const tokens = await refresh(ep, current.clientId, current.refreshToken, this.#deps);
        const facts = idTokenFacts(tokens.idToken, ep, current.clientId);
        renewed = true;
        return {
          ...current,
          idToken: tokens.idToken,
          ...(tokens.refreshToken ? { refreshToken: tokens.refreshToken } : {}),
          expiresAt: facts.expiresAt.toISOString(),
          who: facts.who,
        };
      } catch (e) {
        if (e instanceof RefreshRefusedError) {
          throw new LoginError(`your login to ${this.server} expired and cannot be renewed (${e.message}): run \`datagrant login --server ${this.server}\``);
        }
        if (e instanceof LoginError) throw new LoginError(`your login to ${this.server} expired and renewing it failed: ${e.message}`);
        throw e;
      }
    });
    if (!login) throw new LoginError(`you are not logged in to ${this.server}: run \`datagrant login --server ${this.server}\``);
    return { login, renewed };
  }

  #readTokenFile(file: string): string {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new LoginError(`cannot read the ID token file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const token = text.trim();
    if (!token || token.length > MAX_TOKEN_FILE || /\s/.test(token)) throw new LoginError(`${file} does not hold one ID token (a JWT on its own)`);
    return token;
  }

  #stale(login: StoredLogin, rejected?: string): boolean {
    if (rejected !== undefined && login.idToken === rejected) return true;
    return new Date(login.expiresAt).getTime() - this.#io.now().getTime() < RENEW_MARGIN_MS;
  }

  async #ask(backend: string, idToken: string): Promise<{ status: number; body: Record<string, unknown>; retryAfter?: string }> {
    let res: Response;
    try {
      res = await fetch(`${this.server}${CREDENTIALS_PATH}${encodeURIComponent(backend)}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${idToken}`, accept: 'application/json' },
        redirect: 'error',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (e) {
      throw new LoginError(`datagrant serve at ${this.server}: ${networkProblem(e, this.#timeoutMs)}`);
    }
    let body: unknown;
    try {
      body = JSON.parse(await res.text());
    } catch {
      body = undefined;
    }
    const retryAfter = res.headers.get('retry-after');
    return {
      status: res.status,
      body: typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {},
      ...(retryAfter ? { retryAfter: remoteText(retryAfter, 20) } : {}),
    };
  }

  #session(a: { status: number; body: Record<string, unknown>; retryAfter?: string }, backend: string): IssuedSession {
    const said = typeof a.body.message === 'string' ? remoteText(a.body.message) : `HTTP ${a.status}`;
    switch (a.status) {
      case 200:
        return sessionOf(a.body, this.server);
      case 401:
        throw new LoginError(`your login expired or was refused by ${this.server} (${said}): run \`datagrant login --server ${this.server}\``);
      case 403:
        throw new LoginError(`${this.server} refused a session on backend ${backend}: ${said}`);
      case 404:
        throw new LoginError(`${this.server}: ${said}`);
      case 503:
        throw new LoginError(`${this.server} cannot issue sessions now: ${said}${a.retryAfter ? `; try again in ${a.retryAfter} s` : ''}`);
      default:
        throw new LoginError(`${this.server} did not issue a session (HTTP ${a.status}): ${said}`);
    }
  }
}

/** serve's 200 answer: for AWS the credential_process shape, for PostgreSQL the login's fields. */
function sessionOf(b: Record<string, unknown>, server: string): IssuedSession {
  const str = (k: string) => (typeof b[k] === 'string' && b[k] !== '' ? b[k] : undefined);
  if (b.Version === 1) {
    const [accessKeyId, secretAccessKey, sessionToken, expiration] = [str('AccessKeyId'), str('SecretAccessKey'), str('SessionToken'), str('Expiration')];
    if (accessKeyId && secretAccessKey && sessionToken && expiration) return { kind: 'aws', accessKeyId, secretAccessKey, sessionToken, expiration };
  } else {
    const [user, password, validUntil] = [str('user'), str('password'), str('validUntil')];
    if (user && password && validUntil) {
      const host = str('host');
      const database = str('database');
      return {
        kind: 'postgres',
        user,
        password,
        validUntil,
        ...(host ? { host } : {}),
        ...(typeof b.port === 'number' ? { port: b.port } : {}),
        ...(database ? { database } : {}),
      };
    }
  }
  // Never echo the body: it may hold part of a secret.
  throw new LoginError(`${server} answered 200 with something that is not a session; is --server the URL of datagrant serve?`);
}
