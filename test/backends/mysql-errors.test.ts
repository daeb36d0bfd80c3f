// mysql2's errors → BackendError, through retry.ts's one classification: what is retried, what is
// throttling (fewer changes at once, no attempt spent), and which missed deadline is named. Pure.
import { describe, expect, test } from 'vitest';
import { tagDeadline, toBackendError } from '../../src/backends/mysql/errors.js';
import { isThrottle } from '../../src/backends/retry.js';

const DEADLINES = { connectMs: 2000, requestMs: 30_000 };
const URL = 'mysql://datagrant:s3cret@db.example:3306';
const err = (code: string, message = code, errno?: number) => Object.assign(new Error(message), { code, ...(errno ? { errno } : {}) });
const backendError = (e: unknown, phase?: 'connect' | 'request') => toBackendError(phase ? tagDeadline(e, phase) : e, 'db', DEADLINES, URL, 'db:role/x');

describe('mysql errors', () => {
  test.each([
    ['ER_LOCK_DEADLOCK', true, false],
    ['ER_LOCK_WAIT_TIMEOUT', true, false],
    ['PROTOCOL_CONNECTION_LOST', true, false],
    ['ECONNRESET', true, false],
    ['ER_CON_COUNT_ERROR', true, true],
    ['ER_TOO_MANY_USER_CONNECTIONS', true, true],
    ['ER_DBACCESS_DENIED_ERROR', false, false],
    ['ER_CANNOT_USER', false, false],
  ])('%s: retryable %s, throttling %s', (code, retryable, throttle) => {
    const e = backendError(err(code));
    expect(e.retryable).toBe(retryable);
    expect(isThrottle(e)).toBe(throttle);
    expect(e.address).toBe('db:role/x');
  });

  test('a connect timeout, a statement without an answer and the server’s max_statement_time each name their deadline, never the password', () => {
    const connect = backendError(err('ETIMEDOUT', 'connect ETIMEDOUT'), 'connect');
    expect(connect.message).toBe(
      'db: no answer from mysql://datagrant@db.example:3306 within 2 s (connect timeout); check the address, and that the server is up and reachable from here, or raise backends.db.timeouts.connect',
    );
    expect(connect.retryable).toBe(true);
    for (const code of ['PROTOCOL_SEQUENCE_TIMEOUT', 'ER_STATEMENT_TIMEOUT']) {
      const request = backendError(err(code), 'request');
      expect(request.message).toMatch(/within 30 s \(request timeout\)/);
      expect(request.retryable).toBe(false);
      expect(request.message).not.toContain('s3cret');
    }
    // a timeout of another phase is not the connect deadline
    expect(backendError(err('ETIMEDOUT'), 'request').code).toBe('ETIMEDOUT');
  });
});
