// Where `credentials export` (of a session) and `exec` get a session from. Two sources, one shape:
// - remote (`--server URL` or DATAGRANT_SERVER): serve's POST /v1/credentials/:backend with the
//   person's stored login (src/cli/session/remote.ts); no state, no master key;
// - local (no server): the session broker on this state, with the master key (src/app/sessions.ts;
//   wired in by the broker's change).
import type { CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';
import type { IssuedSession } from '../../app/sessions-port.js';
import { UsageError } from '../../core/errors.js';

export interface SessionWanted {
  principal: string;
  /** The spec's backend name; a remote source needs it, a local one may find the only one. */
  backend?: string;
}

export interface SessionSource {
  /** A new session for the principal on the backend; throws with a message for the person. */
  obtain(req: SessionWanted): Promise<IssuedSession>;
  /**
   * The options of `datagrant credentials export` that reach this same source again, for a
   * `credential_process` that a command's AWS SDK calls whenever its session runs out.
   */
  exportArgs(): string[];
  /** Variables of datagrant's environment a command run with the session must not inherit. */
  readonly withheldEnv: readonly string[];
  /**
   * Whether a command's SDK can renew through `credential_process` (`exportArgs`). The local
   * source cannot: renewing needs datagrant's own AWS credentials and master key, which the
   * command must not inherit, so `exec` hands it one session in its environment instead.
   */
  readonly renews: boolean;
}

export interface RemoteSourceOptions {
  /** serve's URL; else DATAGRANT_SERVER. */
  server?: string;
  timeoutMs?: number;
  /** A workload's OIDC token file; else DATAGRANT_ID_TOKEN_FILE; else the stored login. */
  idTokenFile?: string;
}

/** The remote source when a server is named (option, else DATAGRANT_SERVER); else the local one. */
export async function sessionSource(io: Io, opts: CommonOptions & RemoteSourceOptions): Promise<SessionSource> {
  const server = opts.server ?? io.env.DATAGRANT_SERVER;
  const idTokenFile = opts.idTokenFile ?? io.env.DATAGRANT_ID_TOKEN_FILE;
  if (server) {
    const { RemoteSessions } = await import('./remote.js');
    const { normaliseServer } = await import('./oidc-client.js');
    return new RemoteSessions(io, normaliseServer(server), {
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(idTokenFile ? { idTokenFile } : {}),
    });
  }
  if (opts.idTokenFile) throw new UsageError('--id-token-file goes with --server: the token is for datagrant serve');
  return new LocalSessions(io, opts);
}

/** The broker on this machine's state, with its master key: for operators and automation that hold it. */
class LocalSessions implements SessionSource {
  readonly #io: Io;
  readonly #opts: CommonOptions;
  /** The command gets its session, never the keys to the state. */
  readonly withheldEnv = ['DATAGRANT_MASTER_KEY', 'DATAGRANT_MASTER_KEY_KMS', 'DATAGRANT_STORE_URL'] as const;

  constructor(io: Io, opts: CommonOptions) {
    this.#io = io;
    this.#opts = opts;
  }

  async obtain(req: SessionWanted): Promise<IssuedSession> {
    const { issueLocalSession } = await import('../commands/sessions.js');
    const got = await issueLocalSession(this.#io, { ...this.#opts, name: req.principal, ...(req.backend ? { backend: req.backend } : {}) });
    return got.session;
  }

  readonly renews = false;

  exportArgs(): string[] {
    throw new UsageError(
      'a session from this state cannot renew inside the command (that would need the master key there); exec gives it one session in its environment',
    );
  }
}
