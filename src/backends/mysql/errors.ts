// mysql2's errors → BackendError: which are worth retrying, which are throttling, and which were
// a missed deadline. Network faults and throttles are classified by src/backends/retry.ts.
import { BackendError } from '../../core/errors.js';
import { deadlineError, type DeadlineKind, type Deadlines } from '../deadline.js';
import { urlWithoutPassword } from '../redact.js';
import { isNetworkFault } from '../retry.js';

/**
 * Server errors worth retrying: a deadlock, a lock wait that timed out, the server shutting down,
 * a connection that dropped (mysql2 says so in its own code), and the too-many-connections family,
 * which retry.ts treats as throttling.
 */
const RETRYABLE = new Set([
  'ER_LOCK_DEADLOCK',
  'ER_LOCK_WAIT_TIMEOUT',
  'ER_SERVER_SHUTDOWN',
  'ER_CON_COUNT_ERROR',
  'ER_TOO_MANY_USER_CONNECTIONS',
  'ER_USER_LIMIT_REACHED',
  'PROTOCOL_CONNECTION_LOST',
  'ER_CONNECTION_KILLED',
]);

/** mysql2's code of a server error (`ER_…`) or a client one (`PROTOCOL_…`, `ECONNREFUSED`). */
export const errorCode = (e: unknown): string | undefined => {
  const code = (e as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
};

/** MariaDB's error number (1396, 1141, …). */
export const errno = (e: unknown): number | undefined => {
  const n = (e as { errno?: unknown } | null | undefined)?.errno;
  return typeof n === 'number' ? n : undefined;
};

export function isRetryable(e: unknown): boolean {
  if (isNetworkFault(e)) return true;
  const code = errorCode(e);
  return code !== undefined && RETRYABLE.has(code);
}

const DEADLINE = Symbol('datagrant.deadline');

/**
 * Marks `e` if it is a missed deadline: mysql2's connect timeout (ETIMEDOUT from `connect`), its
 * per-query timeout (PROTOCOL_SEQUENCE_TIMEOUT: the server did not answer), or the server's own
 * max_statement_time (ER_STATEMENT_TIMEOUT).
 */
export function tagDeadline(e: unknown, phase: DeadlineKind): unknown {
  if (!e || typeof e !== 'object' || e instanceof BackendError) return e;
  const code = errorCode(e);
  const kind =
    phase === 'connect' && code === 'ETIMEDOUT' ? 'connect' : code === 'PROTOCOL_SEQUENCE_TIMEOUT' || code === 'ER_STATEMENT_TIMEOUT' ? 'request' : undefined;
  if (kind) Object.defineProperty(e, DEADLINE, { value: kind, enumerable: false });
  return e;
}

export const isReadTimeout = (e: unknown) => errorCode(e) === 'PROTOCOL_SEQUENCE_TIMEOUT';

/** The driver's error for `e`: a missed deadline says which; anything else keeps mysql2's code. */
export function toBackendError(e: unknown, backend: string, deadlines: Deadlines, url: string, address?: string): BackendError {
  if (e instanceof BackendError) return e;
  const missed = e && typeof e === 'object' ? (e as { [DEADLINE]?: DeadlineKind })[DEADLINE] : undefined;
  if (missed) return deadlineError(backend, urlWithoutPassword(url), missed, missed === 'connect' ? deadlines.connectMs : deadlines.requestMs, address);
  const err = e as Error;
  return new BackendError(`${backend}: ${err.message}`, backend, errorCode(e), isRetryable(e), address);
}
