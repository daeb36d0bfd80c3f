// pg's errors → BackendError: which are worth retrying, and which were a missed deadline.
import { BackendError } from '../../core/errors.js';
import { deadlineError, type DeadlineKind, type Deadlines } from '../deadline.js';
import { urlWithoutPassword } from '../redact.js';
import { isNetworkFault } from '../retry.js';

/**
 * SQLSTATEs worth retrying: serialization failure, deadlock, too many connections, the server
 * shutting down or starting, a lock not available, any connection exception (class 08), and the
 * catalog's "tuple concurrently updated" (two sessions changing one role or ACL at once).
 */
function retryableState(code: string, message: string): boolean {
  return ['40001', '40P01', '53300', '57P01', '57P03', '55P03'].includes(code) || code.startsWith('08') || (code === 'XX000' && /concurrently/.test(message));
}

/** An error of the server (a SQLSTATE) or of the connection to it, worth trying again. */
export function isRetryable(e: unknown): boolean {
  if (isNetworkFault(e)) return true;
  const { code, message } = (e ?? {}) as { code?: unknown; message?: unknown };
  return typeof code === 'string' && retryableState(code, typeof message === 'string' ? message : '');
}

export const isReadTimeout = (e: unknown) => (e as Error | undefined)?.message === 'Query read timeout';

/** Where a missed deadline happened: pg's own errors say neither which deadline nor which database. */
const DEADLINE = Symbol('datagrant.deadline');
type Missed = { kind: DeadlineKind; database: string };

/**
 * Marks `e` if it is one of pg's messages for a deadline: the client's connection timeout
 * ("timeout expired", or the pool's "Connection terminated due to connection timeout"), its read
 * timeout ("Query read timeout"), or the server's statement_timeout (SQLSTATE 57014 "canceling
 * statement due to statement timeout"; a cancel for any other reason is not a deadline).
 */
export function tagDeadline(e: unknown, database: string, phase: DeadlineKind): unknown {
  if (!e || typeof e !== 'object' || e instanceof BackendError) return e;
  const err = e as Error & { code?: string };
  const kind =
    phase === 'connect' && /timeout expired|connection timeout/i.test(err.message)
      ? 'connect'
      : isReadTimeout(err) || (err.code === '57014' && /statement timeout/.test(err.message))
        ? 'request'
        : undefined;
  if (kind) Object.defineProperty(err, DEADLINE, { value: { kind, database } satisfies Missed, enumerable: false });
  return err;
}

const missedDeadline = (e: unknown): Missed | undefined => (e && typeof e === 'object' ? (e as { [DEADLINE]?: Missed })[DEADLINE] : undefined);

/**
 * The driver's error for `e`: a missed deadline says which and where; a missing membership says
 * what to grant to `connectingRole` (the URL's user, if it names one); anything else keeps its SQLSTATE.
 */
export function toBackendError(
  e: unknown,
  backend: string,
  deadlines: Deadlines,
  urlOf: (database: string) => string,
  address?: string,
  connectingRole?: string,
): BackendError {
  if (e instanceof BackendError) return e;
  const missed = missedDeadline(e);
  if (missed) {
    const ms = missed.kind === 'connect' ? deadlines.connectMs : deadlines.requestMs;
    return deadlineError(backend, urlWithoutPassword(urlOf(missed.database)), missed.kind, ms, address);
  }
  const err = e as Error & { code?: string };
  const membership = missingMembership(err, connectingRole);
  if (membership) return new BackendError(`${backend}: ${membership}`, backend, err.code, false, address);
  return new BackendError(`${backend}: ${err.message}`, backend, err.code, isRetryable(err), address);
}

/**
 * PostgreSQL's words when the connecting role must be a member of another (15: "must be member of
 * role", 16 and later: "must be able to SET ROLE"), as the fix. Datagrant meets it setting default
 * privileges FOR ROLE the owner of a dataset's schema or tables: only that owner's members may.
 */
export function missingMembership(e: { code?: string; message: string }, connectingRole?: string): string | undefined {
  if (e.code !== '42501') return undefined;
  const m = /^(?:must be member of role|must be able to SET ROLE) "((?:[^"]|"")+)"$/.exec(e.message);
  if (!m) return undefined;
  const target = m[1]!.replace(/""/g, '"');
  const quote = (n: string) => `"${n.replace(/"/g, '""')}"`;
  const me = connectingRole ? quote(connectingRole) : '<the role datagrant connects as>';
  const who = connectingRole ? `datagrant's role ${connectingRole}` : 'the role datagrant connects as';
  // With INHERIT (the default): a privilege such a default gave is recorded as granted by the
  // owner, and only a role with the owner's privileges can revoke it later.
  return (
    `${who} is not a member of role ${target} (PostgreSQL: ${e.message}). ${target} owns a dataset's schema or tables, and only a role ` +
    `acting with its privileges may set the default privileges of the tables it creates later, and revoke what they gave. ` +
    `As a superuser, run: GRANT ${quote(target)} TO ${me}; (or run the SQL \`datagrant pg-setup\` prints). Then apply again.`
  );
}

/** The SQLSTATE of a pg error, if it has one. */
export const sqlState = (e: unknown): string | undefined => {
  const code = (e as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
};
