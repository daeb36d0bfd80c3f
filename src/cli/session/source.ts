// Where `credentials export` (of a session) and `exec` get a session from. Two sources, one shape:
// - remote (`--server URL` or DATAGRANT_SERVER): serve's POST /v1/credentials/:backend with the
//   person's stored login (src/cli/session/remote.ts); no state, no master key;
// - local (no server): the session broker on this state, with the master key (src/app/sessions.ts;
//   wired in by the broker's change).
import { pathsFor, specPath, type CommonOptions } from '../../app/context.js';
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
  readonly withheldEnv = ['DATAGRANT_MASTER_KEY', 'DATAGRANT_STORE_URL'] as const;

  constructor(io: Io, opts: CommonOptions) {
    this.#io = io;
    this.#opts = opts;
  }

  async obtain(req: SessionWanted): Promise<IssuedSession> {
    const { issueLocalSession } = await import('../commands/sessions.js');
    const got = await issueLocalSession(this.#io, { ...this.#opts, name: req.principal, ...(req.backend ? { backend: req.backend } : {}) });
    return got.session;
  }

  exportArgs(): string[] {
    // The command's SDK runs `credentials export` again to renew, so that must reach the state
    // without what the command is denied: a key or store URL given only in the environment would
    // have to be handed to the command itself.
    for (const v of this.withheldEnv) {
      if (this.#io.env[v]) {
        throw new UsageError(
          `${v} is set: a command run with a renewing session would need it too, and it must not have it; use --env (one session, not renewed), keep the master key in the state directory (datagrant init), or use --server`,
        );
      }
    }
    return ['--spec', specPath(this.#io, this.#opts), '--state-dir', pathsFor(this.#io, this.#opts).dir];
  }
}
