// withRedaction: no error leaving a backend carries a secret it issued, an AWS secret key, or a
// password inside a postgres:// URL — not in the message, not in the stack, not in a cause.
import { describe, expect, test } from 'vitest';
import type { Backend, BackendStats, ExecuteResult, ReadOptions } from '../../src/backends/backend.js';
import { REDACTED, redactText, withRedaction } from '../../src/backends/redact.js';
import { BackendError } from '../../src/core/errors.js';
import type { ActualState, Change } from '../../src/core/types.js';

const ISSUED = { accessKeyId: 'AKIAQWERTYUIOPASDFGH', secretAccessKey: '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' };
const PASSWORD = 'tr0ub4dor&3-horse-battery';

/** Issues one key, then fails with whatever error it is given. */
class LeakyBackend implements Backend {
  readonly name = 'leaky';
  readonly type = 'fake';
  next: unknown;
  async read(_o: ReadOptions): Promise<ActualState> {
    throw this.next;
  }
  async execute(c: Change): Promise<ExecuteResult> {
    if (c.action === 'create')
      return { secret: { ...ISSUED, password: PASSWORD }, credential: { credentialId: ISSUED.accessKeyId, createdAt: '2026-01-01T00:00:00.000Z' } };
    throw this.next;
  }
  stats(): BackendStats {
    return { requests: 0, retries: 0 };
  }
  async close() {}
}

const change = (action: Change['action']): Change => ({
  address: 'leaky:key/alice',
  backend: 'leaky',
  kind: 'key',
  action,
  before: null,
  after: null,
  drift: false,
  reason: 'test',
});

describe('withRedaction', () => {
  test('an issued secret is removed from the message, the stack and the causes; the error keeps its class', async () => {
    // GIVEN a backend that issued a key and a password
    const inner = new LeakyBackend();
    const b = withRedaction(inner);
    const res = await b.execute(change('create'));
    expect(res.secret?.secretAccessKey).toBe(ISSUED.secretAccessKey); // results are untouched
    inner.next = new BackendError(
      `leaky: failed for ${ISSUED.secretAccessKey} (password ${PASSWORD}, url-encoded ${encodeURIComponent(PASSWORD)})`,
      'leaky',
      'X',
      false,
      'leaky:key/alice',
    );
    (inner.next as Error).cause = new Error(`inner: ${PASSWORD}`);
    // WHEN
    const err = (await b.execute(change('update')).catch((e: unknown) => e)) as BackendError;
    // THEN
    expect(err).toBeInstanceOf(BackendError);
    expect([err.code, err.address]).toEqual(['X', 'leaky:key/alice']);
    for (const text of [err.message, err.stack ?? '', (err.cause as Error).message, (err.cause as Error).stack ?? '']) {
      expect(text).not.toContain(ISSUED.secretAccessKey);
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain(encodeURIComponent(PASSWORD));
    }
    expect(err.message).toContain(REDACTED);
    // the key id identifies, it does not authenticate: kept for the operator
    inner.next = new Error(`key ${ISSUED.accessKeyId} is inactive`);
    await expect(b.read({ credentials: [] })).rejects.toThrow(`key ${ISSUED.accessKeyId} is inactive`);
  });

  test('secrets it never issued are still caught by shape', async () => {
    const inner = new LeakyBackend();
    const b = withRedaction(inner);
    const foreign = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    inner.next = new Error(`connect postgres://admin:s3cr3t-pw@db.example:5432/app failed; aws_secret_access_key=${foreign}`);
    const err = (await b.read({ credentials: [] }).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe(`connect postgres://admin:${REDACTED}@db.example:5432/app failed; aws_secret_access_key=${REDACTED}`);
    expect(err.stack).not.toContain('s3cr3t-pw');
    expect(err.stack).not.toContain(foreign);
  });

  test.each([
    ['a git or sha1 hash', 'commit 3f786850e387550fdab836ed7e6dc881de23001b broke it'],
    ['a file path', 'at /work/main/src/backends/aws/driver.ts:120:7'],
    ['a 40-character path run', 'at file:///work/main/node/modules/SomeLibrary/dist/index.js'],
    ['an access key id', 'AKIAIOSFODNN7EXAMPLE'],
    ['a URL without a password', 'postgres://admin@db.example/app'],
  ])('leaves %s alone', (_what, text) => {
    expect(redactText(text)).toBe(text);
  });

  test('postgresql:// URLs and empty user names too', () => {
    expect(redactText('postgresql://:pw123@h/db')).toBe(`postgresql://:${REDACTED}@h/db`);
  });
});
