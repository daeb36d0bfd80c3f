// Which of pg's errors the postgres driver marks worth retrying: network faults as the retry
// decorator classifies them for every backend, and the SQLSTATEs of a busy or restarting server.
import { describe, expect, test } from 'vitest';
import { isRetryable } from '../../src/backends/postgres/errors.js';
import { isNetworkFault, isTransient } from '../../src/backends/retry.js';

const pgError = (code: string | undefined, message: string) => Object.assign(new Error(message), code === undefined ? {} : { code });

describe('pg errors', () => {
  test.each([
    [undefined, 'Connection terminated unexpectedly', true],
    ['ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432', true],
    ['ECONNRESET', 'read ECONNRESET', true],
    ['40001', 'could not serialize access due to concurrent update', true],
    ['40P01', 'deadlock detected', true],
    ['53300', 'sorry, too many clients already', true],
    ['57P01', 'terminating connection due to administrator command', true],
    ['08006', 'connection failure', true],
    ['XX000', 'tuple concurrently updated', true],
    ['XX000', 'cache lookup failed for role 1234', false],
    ['42501', 'permission denied to create role', false],
    ['42710', 'role "alice" already exists', false],
    [undefined, 'some other failure', false],
  ])('%s %s: retryable %s', (code, message, retryable) => {
    expect(isRetryable(pgError(code, message))).toBe(retryable);
  });

  test('network faults are the retry decorator’s, whichever driver meets them', () => {
    for (const e of [pgError('ECONNREFUSED', 'connect ECONNREFUSED'), pgError(undefined, 'Connection terminated unexpectedly')]) {
      expect(isNetworkFault(e)).toBe(true);
      expect(isTransient(e)).toBe(true);
      expect(isRetryable(e)).toBe(true);
    }
    expect(isNetworkFault(pgError('42501', 'permission denied'))).toBe(false);
  });
});
