// Which of pg's errors the postgres driver marks worth retrying: network faults as the retry
// decorator classifies them for every backend, and the SQLSTATEs of a busy or restarting server.
import { describe, expect, test } from 'vitest';
import { isRetryable, missingMembership, toBackendError } from '../../src/backends/postgres/errors.js';
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

describe('a missing membership', () => {
  const DEADLINES = { connectMs: 1000, requestMs: 1000 };
  const urlOf = (db: string) => `postgres://dg@127.0.0.1:5432/${db}`;

  test.each([
    ['15', 'must be member of role "migrator"'],
    ['16 and later', 'must be able to SET ROLE "migrator"'],
  ])('PostgreSQL %s: the error says what to grant to the connecting role', (_, message) => {
    const e = toBackendError(pgError('42501', message), 'wh', DEADLINES, urlOf, 'wh:grant/ada/wh.features/read', 'datagrant_admin');
    expect(e.message).toContain(`datagrant's role datagrant_admin is not a member of role migrator (PostgreSQL: ${message})`);
    expect(e.message).toContain('As a superuser, run: GRANT "migrator" TO "datagrant_admin";');
    expect(e.code).toBe('42501');
    expect(e.retryable).toBe(false);
    expect(e.address).toBe('wh:grant/ada/wh.features/read');
  });

  test('a quoted owner name is unquoted in words and quoted again in the GRANT', () => {
    expect(missingMembership({ code: '42501', message: 'must be member of role "etl ""prod"""' }, 'dg')).toContain('GRANT "etl ""prod""" TO "dg"');
  });

  test('without a user in the URL it names the role datagrant connects as', () => {
    expect(missingMembership({ code: '42501', message: 'must be member of role "m"' })).toContain('GRANT "m" TO <the role datagrant connects as>;');
  });

  test('any other permission error keeps PostgreSQL’s words', () => {
    expect(missingMembership({ code: '42501', message: 'permission denied to create role' }, 'dg')).toBeUndefined();
    expect(toBackendError(pgError('42501', 'permission denied for schema s'), 'wh', DEADLINES, urlOf, undefined, 'dg').message).toBe(
      'wh: permission denied for schema s',
    );
  });
});
