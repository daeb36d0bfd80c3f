// withRetry: throttling, 5xx and network faults are retried with full-jitter backoff and counted;
// everything else fails at once; a new credential is never re-issued after an ambiguous fault.
// Throttling spends no attempts and lowers the calls in flight, until nothing has got through
// for the patience.
import { describe, expect, test } from 'vitest';
import type { Backend, BackendStats, ExecuteResult, ReadOptions } from '../../src/backends/backend.js';
import { isNetworkFault, isThrottle, isThrottleCode, isTransient, networkErrorCode, withRetry, RetryingBackend } from '../../src/backends/retry.js';
import { BackendError } from '../../src/core/errors.js';
import type { ActualState, Change } from '../../src/core/types.js';

/** Fails the first `failures` calls with the given errors, then succeeds; counts its requests. */
class FlakyBackend implements Backend {
  readonly name = 'flaky';
  readonly type = 'fake';
  calls = 0;
  constructor(private readonly errors: unknown[]) {}
  async #call<T>(value: T): Promise<T> {
    this.calls++;
    const e = this.errors.shift();
    // The faults are SDK-shaped objects, as the AWS SDK throws them.
    if (e) throw e as Error;
    return value;
  }
  read(_opts: ReadOptions): Promise<ActualState> {
    return this.#call({ backend: this.name, resources: [] });
  }
  execute(_c: Change): Promise<ExecuteResult> {
    return this.#call({ meta: { ok: true } });
  }
  stats(): BackendStats {
    return { requests: this.calls, retries: 0 };
  }
  async close() {}
}

const throttled = (code = 'Throttling') => new BackendError(`flaky: ${code}: Rate exceeded`, 'flaky', code, true);
const change = (kind: string, action: Change['action'] = 'create'): Change => ({
  address: `flaky:${kind}/x`,
  backend: 'flaky',
  kind,
  action,
  before: null,
  after: null,
  drift: false,
  reason: 'test',
});

/** A seeded generator, so the jitter is reproducible. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const recordSleeps = () => {
  const sleeps: number[] = [];
  return { sleeps, sleep: async (ms: number) => void sleeps.push(ms) };
};

describe('withRetry', () => {
  test.each(['Throttling', 'RequestLimitExceeded', 'TooManyRequests', 'SlowDown'])('retries %s and counts the retries', async (code) => {
    // GIVEN
    const inner = new FlakyBackend([throttled(code), throttled(code), throttled(code)]);
    const { sleeps, sleep } = recordSleeps();
    const b = withRetry(inner, { maxAttempts: 5, baseMs: 100, maxMs: 1000, random: seeded(42), sleep });
    // WHEN
    const res = await b.execute(change('policy'));
    // THEN
    expect(res).toEqual({ meta: { ok: true } });
    expect(inner.calls).toBe(4);
    expect(b.stats()).toEqual({ requests: 4, retries: 3 });
    expect(sleeps).toHaveLength(3);
  });

  test('full jitter: each delay is uniform below min(maxMs, baseMs·2^n)', async () => {
    const random = seeded(7);
    const b = new RetryingBackend(new FlakyBackend([]), { maxAttempts: 10, baseMs: 100, maxMs: 1000, random });
    const caps = [100, 200, 400, 800, 1000, 1000, 1000];
    const delays = caps.map((_, i) => b.delay(i + 1));
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(caps[i]!);
    });
    // always the top of the range with random → 1
    const top = new RetryingBackend(new FlakyBackend([]), { maxAttempts: 10, baseMs: 100, maxMs: 1000, random: () => 0.999999 });
    expect(caps.map((_, i) => top.delay(i + 1))).toEqual(caps.map((c) => c - 1));
  });

  test('5xx and network errors are retried; a plain failure is not', async () => {
    const fiveHundred = new BackendError('flaky: ServiceUnavailable', 'flaky', 'ServiceUnavailable', true);
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const ok = new FlakyBackend([fiveHundred, reset]);
    const { sleep } = recordSleeps();
    await expect(withRetry(ok, { maxAttempts: 3, baseMs: 1, maxMs: 1, sleep }).read({ credentials: [] })).resolves.toEqual({ backend: 'flaky', resources: [] });
    expect(ok.calls).toBe(3);

    const denied = new BackendError('flaky: AccessDenied', 'flaky', 'AccessDenied', false);
    const bad = new FlakyBackend([denied]);
    const b = withRetry(bad, { maxAttempts: 5, baseMs: 1, maxMs: 1, sleep });
    await expect(b.execute(change('user'))).rejects.toBe(denied);
    expect(bad.calls).toBe(1);
    expect(b.stats().retries).toBe(0);
  });

  test('gives up after maxAttempts with the last error', async () => {
    const fault = (n: number) => new BackendError(`flaky: InternalFailure ${n}`, 'flaky', 'InternalFailure', true);
    const errors = [fault(1), fault(2), fault(3)];
    const inner = new FlakyBackend([...errors]);
    const { sleep } = recordSleeps();
    const b = withRetry(inner, { maxAttempts: 3, baseMs: 1, maxMs: 1, sleep });
    await expect(b.execute(change('user'))).rejects.toBe(errors[2]);
    expect(inner.calls).toBe(3);
    expect(b.stats()).toEqual({ requests: 3, retries: 2 });
  });

  test('throttling spends no attempts: a change throttled many times over still lands', async () => {
    // GIVEN 20 throttles with a fault among them, and 2 attempts allowed
    const errors: unknown[] = Array.from({ length: 20 }, (_, i) => throttled(i % 2 ? 'Throttling' : '53300'));
    errors.splice(10, 0, new BackendError('flaky: ServiceUnavailable', 'flaky', 'ServiceUnavailable', true));
    const inner = new FlakyBackend(errors);
    const { sleeps, sleep } = recordSleeps();
    const b = withRetry(inner, { maxAttempts: 2, baseMs: 100, maxMs: 1000, random: () => 0.999, sleep });
    // WHEN the change runs
    const res = await b.execute(change('membership'));
    // THEN it lands, every retry counted, the backoff capped at maxMs
    expect(res).toEqual({ meta: { ok: true } });
    expect(inner.calls).toBe(22);
    expect(b.stats().retries).toBe(21);
    expect(Math.max(...sleeps)).toBeLessThan(1000);
  });

  test('a throttled call gives up once nothing of the backend got through for the patience, and not while others progress', async () => {
    // GIVEN a clock moved by the backoff, and a backend that throttles one address for ever
    let now = 0;
    const sleep = async (ms: number) => {
      now += ms;
      await new Promise((r) => setImmediate(r));
    };
    const inner: Backend = {
      name: 'flaky',
      type: 'fake',
      read: async () => ({ backend: 'flaky', resources: [] }),
      execute: async (c) => {
        if (c.address.endsWith('/stuck')) throw throttled();
        return {};
      },
      stats: () => ({ requests: 0, retries: 0 }),
      close: async () => undefined,
    };
    const b = withRetry(inner, { maxAttempts: 3, baseMs: 100, maxMs: 1000, random: () => 0.5, sleep, now: () => now, throttlePatienceMs: 60_000 });
    const stuck: Change = { ...change('membership'), address: 'flaky:membership/stuck' };
    // WHEN it is tried alone
    const err = (await b.execute(stuck).catch((e: unknown) => e)) as BackendError;
    // THEN it fails after the patience, not retryable, with a message that says why
    expect(now).toBeGreaterThanOrEqual(60_000);
    expect(now).toBeLessThan(62_000);
    expect(err).toBeInstanceOf(BackendError);
    expect(err).toMatchObject({ code: 'Throttling', retryable: false, address: 'flaky:membership/stuck' });
    expect(err.message).toMatch(
      /^flaky: flaky:membership\/stuck: throttled \d+ time\(s\), and nothing of flaky got through for 60 s; giving up\. Last answer: flaky: Throttling: Rate exceeded$/,
    );

    // WHEN other calls of the backend keep succeeding meanwhile
    now = 0;
    let progressing = true;
    const others = (async () => {
      while (progressing) {
        await b.execute(change('user'));
        await sleep(1000);
      }
    })();
    const outcome = await Promise.race([
      b.execute(stuck).then(
        () => 'landed',
        () => 'failed',
      ),
      (async () => {
        while (now < 300_000) await new Promise((r) => setImmediate(r));
        return 'still retrying';
      })(),
    ]);
    progressing = false;
    await others;
    // THEN it keeps retrying well past the patience
    expect(outcome).toBe('still retrying');
  });

  test('on "too many connections" (53300) fewer calls run at once, and every one lands', async () => {
    // GIVEN a server that refuses a connection beyond 3 at once, and 40 changes sent at once
    const limit = 3;
    let open = 0;
    let refusals = 0;
    const inner: Backend = {
      name: 'pg',
      type: 'fake',
      read: async () => ({ backend: 'pg', resources: [] }),
      execute: async () => {
        if (open >= limit) {
          refusals++;
          throw new BackendError('pg: sorry, too many clients already', 'pg', '53300', true);
        }
        open++;
        await new Promise((r) => setTimeout(r, 2));
        open--;
        return {};
      },
      stats: () => ({ requests: 0, retries: 0 }),
      close: async () => undefined,
    };
    const b = new RetryingBackend(inner, { maxAttempts: 2, baseMs: 1, maxMs: 5 });
    // WHEN they run
    await Promise.all(Array.from({ length: 40 }, (_, i) => b.execute(change(`role-${i}`))));
    // THEN all landed though refused, with two attempts each, and fewer calls are let through at once
    expect(refusals).toBeGreaterThan(0);
    expect(b.concurrency).toBeLessThan(40);
  });

  test('issuing a key is retried after throttling and after a 5xx (the driver undoes an ambiguous attempt)', async () => {
    const { sleep } = recordSleeps();
    const afterThrottle = new FlakyBackend([throttled()]);
    await withRetry(afterThrottle, { maxAttempts: 3, baseMs: 1, maxMs: 1, sleep }).execute(change('key', 'replace'));
    expect(afterThrottle.calls).toBe(2);

    const ambiguous = new BackendError('flaky: InternalFailure', 'flaky', 'InternalFailure', true);
    const afterFault = new FlakyBackend([ambiguous]);
    await withRetry(afterFault, { maxAttempts: 3, baseMs: 1, maxMs: 1, sleep }).execute(change('key'));
    expect(afterFault.calls).toBe(2);
    // a refusal that is not transient is never repeated
    const refused = new BackendError('flaky: LimitExceeded', 'flaky', 'LimitExceeded', false);
    const limit = new FlakyBackend([refused]);
    await expect(withRetry(limit, { maxAttempts: 3, baseMs: 1, maxMs: 1, sleep }).execute(change('key'))).rejects.toBe(refused);
    expect(limit.calls).toBe(1);
  });

  test('under seeded random throttling (30 % of calls) every change lands and every retry is counted', async () => {
    // GIVEN an inner backend throttling pseudo-randomly, reproducibly
    const coin = seeded(2026);
    let throttles = 0;
    let calls = 0;
    const inner: Backend = {
      name: 'flaky',
      type: 'fake',
      read: async () => ({ backend: 'flaky', resources: [] }),
      execute: async () => {
        calls++;
        if (coin() < 0.3) {
          throttles++;
          throw throttled(throttles % 2 ? 'Throttling' : 'RequestLimitExceeded');
        }
        return {};
      },
      stats: () => ({ requests: calls, retries: 0 }),
      close: async () => undefined,
    };
    const { sleeps, sleep } = recordSleeps();
    const b = withRetry(inner, { maxAttempts: 10, baseMs: 50, maxMs: 2000, random: seeded(1), sleep });
    // WHEN 200 changes run, 8 at a time
    const changes = Array.from({ length: 200 }, (_, i) => change(`user-${i}`));
    for (let i = 0; i < changes.length; i += 8) await Promise.all(changes.slice(i, i + 8).map((c) => b.execute(c)));
    // THEN
    expect(throttles).toBeGreaterThan(30);
    expect(b.stats()).toEqual({ requests: 200 + throttles, retries: throttles });
    expect(sleeps).toHaveLength(throttles);
    expect(Math.max(...sleeps)).toBeLessThan(2000);
  });

  test('passes name, type and close through', async () => {
    const inner = new FlakyBackend([]);
    const b = withRetry(inner, { maxAttempts: 2, baseMs: 1, maxMs: 1 });
    expect([b.name, b.type]).toEqual(['flaky', 'fake']);
    await b.close();
  });
});

// Every driver classifies its client's faults with these; a fault one driver retries, the other does too.
describe('the one fault classification', () => {
  const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

  test.each([
    ['ECONNRESET', withCode('ECONNRESET', 'socket hang up'), 'ECONNRESET'],
    ['ENOTFOUND', withCode('ENOTFOUND', 'getaddrinfo ENOTFOUND iam.example'), 'ENOTFOUND'],
    ['undici socket', withCode('UND_ERR_SOCKET', 'other side closed'), 'UND_ERR_SOCKET'],
    ['a PostgreSQL SQLSTATE', withCode('42501', 'permission denied'), undefined],
    ['no code', new Error('socket hang up'), undefined],
  ])('networkErrorCode: %s', (_, e, code) => {
    expect(networkErrorCode(e)).toBe(code);
  });

  test.each([
    ['a code', withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'), true],
    ['socket hang up', new Error('socket hang up'), true],
    ["pg's dropped connection", new Error('Connection terminated unexpectedly'), true],
    ['fetch failed', new TypeError('fetch failed'), true],
    ['a refusal', new Error('AccessDenied: not authorized'), false],
    // The server answered (an SQLSTATE): its answer decides, whatever the words say.
    ['an SQLSTATE whose message names the network', withCode('08P01', 'network protocol violation'), false],
    ['not an error', undefined, false],
  ])('isNetworkFault: %s → %s; a raw client error is transient exactly then', (_, e, fault) => {
    expect(isNetworkFault(e)).toBe(fault);
    expect(isTransient(e)).toBe(fault);
  });

  test.each([
    ['Throttling', true],
    ['ThrottlingException', true],
    ['RequestLimitExceeded', true],
    ['TooManyRequestsException', true],
    ['SlowDown', true],
    ['ProvisionedThroughputExceededException', true],
    ['53300', true],
    ['LimitExceeded', false],
    ['53200', false],
  ])('isThrottleCode(%s) → %s', (code, throttle) => {
    expect(isThrottleCode(code)).toBe(throttle);
    expect(isThrottle(new BackendError('b: x', 'b', code, true))).toBe(throttle);
  });
});
