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
  throw new UsageError(
    'sessions without --server come from the session broker on this state, which this build does not have yet; use --server URL (or set DATAGRANT_SERVER) after `datagrant login`',
  );
}
