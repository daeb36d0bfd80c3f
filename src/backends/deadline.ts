// Every backend call has a deadline: a server that accepts a connection and never answers must
// fail the call, not stall plan, apply or serve's reconciles for ever. Both drivers take their
// deadlines from here and report a missed one with the same message.
import { BackendError } from '../core/errors.js';
import { durationSeconds, type TimeoutsSpec } from '../spec/schema.js';

export interface Deadlines {
  /** Until a connection is ready for requests: TCP, TLS and (PostgreSQL) start-up and login. */
  connectMs: number;
  /** For one request (an AWS API call, an SQL statement) to be answered in full. */
  requestMs: number;
}

export const DEFAULT_DEADLINES: Deadlines = { connectMs: 10_000, requestMs: 60_000 };

export function deadlinesOf(t: TimeoutsSpec | undefined): Deadlines {
  return {
    connectMs: t?.connect ? durationSeconds(t.connect) * 1000 : DEFAULT_DEADLINES.connectMs,
    requestMs: t?.request ? durationSeconds(t.request) * 1000 : DEFAULT_DEADLINES.requestMs,
  };
}

export type DeadlineKind = 'connect' | 'request';

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(3))} s`;

/**
 * A missed deadline. A connection that could not be made sent nothing, so it is retried like any
 * other network fault. A request without an answer is not: the server has it and may still act on
 * it, and one that stalled for the whole deadline is not helped by a second copy within this run
 * (the next run, or serve's next reconcile, asks again).
 */
export function deadlineError(backend: string, endpoint: string, kind: DeadlineKind, ms: number, address?: string): BackendError {
  const hint =
    kind === 'connect'
      ? `check the address, and that the server is up and reachable from here, or raise backends.${backend}.timeouts.connect`
      : `the server took the request but did not answer it; check that it is the right server and that it is not overloaded or blocked, or raise backends.${backend}.timeouts.request`;
  return new BackendError(
    `${backend}: no answer from ${endpoint} within ${seconds(ms)} (${kind} timeout); ${hint}`,
    backend,
    `${kind}-timeout`,
    kind === 'connect',
    address,
  );
}
