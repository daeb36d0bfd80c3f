// The per-action rate limiter against simulated AWS token buckets, on a simulated clock (so the
// figures are those of the algorithm, not of the machine's load): it learns an action's rate from
// throttles and keeps to it, sends a throttled request again, and gives up only on an action that
// lets nothing through.
import { describe, expect, test } from 'vitest';
import { ActionLimiters, type LimiterClock } from '../../src/backends/aws/limiter.js';

/** Simulated time: sleeps resolve in order of their deadline once everything else has settled. */
class SimClock implements LimiterClock {
  t = 0;
  #timers: { at: number; seq: number; resolve: () => void }[] = [];
  #seq = 0;
  now() {
    return this.t;
  }
  sleep(ms: number) {
    return new Promise<void>((resolve) => this.#timers.push({ at: this.t + Math.max(0, ms), seq: this.#seq++, resolve }));
  }
  /** Runs until `work` settles. */
  async run<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    const out = work.finally(() => (settled = true));
    out.catch(() => undefined);
    for (;;) {
      await new Promise((r) => setImmediate(r));
      if (settled) return out;
      if (!this.#timers.length) throw new Error('nothing left to run, and the work has not settled');
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers.shift()!;
      this.t = Math.max(this.t, next.at);
      next.resolve();
    }
  }
}

const throttling = () => Object.assign(new Error('Rate exceeded'), { name: 'Throttling', $metadata: { httpStatusCode: 400 } });

/** An AWS action behind a token bucket, 30 ms away. */
function server(clock: SimClock, rate: number, burst = rate) {
  let tokens = burst;
  let at = 0;
  const s = {
    sent: 0,
    throttled: 0,
    async call(): Promise<string> {
      s.sent++;
      await clock.sleep(15);
      tokens = Math.min(burst, tokens + ((clock.now() - at) / 1000) * rate);
      at = clock.now();
      const ok = tokens >= 1;
      if (ok) tokens -= 1;
      else s.throttled++;
      await clock.sleep(15);
      if (!ok) throw throttling();
      return 'ok';
    },
  };
  return s;
}

/** `n` requests through `limiters`, `workers` at a time (an apply's concurrent changes). */
async function load(limiters: ActionLimiters, action: string, call: () => Promise<string>, n: number, workers: number) {
  let next = 0;
  const results: string[] = [];
  const worker = async () => {
    while (next < n) {
      next++;
      results.push(await limiters.send(action, call));
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  return results;
}

describe('ActionLimiters', () => {
  test.each([
    { rate: 20, burst: 20, workers: 8 },
    { rate: 20, burst: 5, workers: 8 },
    { rate: 5, burst: 10, workers: 4 },
    { rate: 100, burst: 100, workers: 16 },
  ])('learns a bucket of $rate/s (burst $burst) and keeps near it: every request lands, few are refused', async ({ rate, burst, workers }) => {
    // GIVEN an action throttled above `rate`, and 300 requests with `workers` in flight
    const clock = new SimClock();
    const iam = server(clock, rate, burst);
    const limiters = new ActionLimiters({ clock });
    // WHEN they are sent
    const results = await clock.run(load(limiters, 'AddUserToGroup', () => iam.call(), 300, workers));
    // THEN all landed, in close to the time the bucket allows, with few throttled on the way
    expect(results).toHaveLength(300);
    const bound = ((300 - burst) / rate) * 1000;
    expect(clock.t).toBeLessThan(1.25 * bound);
    expect(iam.throttled / iam.sent).toBeLessThan(0.1);
    // and the action is paced near its rate
    expect(limiters.for('AddUserToGroup').rate).toBeGreaterThan(0.7 * rate);
    expect(limiters.for('AddUserToGroup').rate).toBeLessThan(1.5 * rate);
  });

  test('each action keeps its own pace; one that is never throttled is never slowed', async () => {
    const clock = new SimClock();
    const slow = server(clock, 5);
    const fast = server(clock, 1000);
    const limiters = new ActionLimiters({ clock });
    await clock.run(Promise.all([load(limiters, 'CreateUser', () => slow.call(), 60, 4), load(limiters, 'GetUser', () => fast.call(), 60, 4)]));
    expect(slow.throttled).toBeGreaterThan(0);
    expect(fast.throttled).toBe(0);
    expect(limiters.for('GetUser').rate).toBe(Infinity);
  });

  test('what an action learned holds through an idle spell', async () => {
    const clock = new SimClock();
    const iam = server(clock, 10);
    const limiters = new ActionLimiters({ clock });
    await clock.run(load(limiters, 'CreateAccessKey', () => iam.call(), 100, 8));
    const learned = limiters.for('CreateAccessKey').rate;
    // WHEN nothing is sent for ten minutes, then one more request
    await clock.run(clock.sleep(600_000));
    await clock.run(limiters.send('CreateAccessKey', () => iam.call()));
    // THEN the pace is what it was, not unbounded again
    expect(learned).toBeLessThan(20);
    expect(limiters.for('CreateAccessKey').rate).toBeLessThan(2 * learned);
  });

  test('slow but steady progress never fails a request, however long it waits in line', async () => {
    // GIVEN an action that lets one request a second through, and a patience of 3 s
    const clock = new SimClock();
    const iam = server(clock, 1, 1);
    const limiters = new ActionLimiters({ clock, patienceMs: 3000 });
    // WHEN 15 requests are sent at once
    const results = await clock.run(load(limiters, 'CreateUser', () => iam.call(), 15, 15));
    // THEN all land, long after the patience
    expect(results).toHaveLength(15);
    expect(clock.t).toBeGreaterThan(10_000);
  });

  test('an action that lets nothing through fails after the patience, with a message naming it', async () => {
    const clock = new SimClock();
    const limiters = new ActionLimiters({ clock, patienceMs: 30_000 });
    let calls = 0;
    const err = await clock.run(
      limiters
        .send('ListUsers', async () => {
          calls++;
          await clock.sleep(30);
          throw throttling();
        })
        .catch((e: unknown) => e as Error),
    );
    expect(err).toMatchObject({ name: 'RateLimitStalled' });
    expect(err.message).toMatch(
      /^AWS throttled every ListUsers request for 3\d s, none got through \(last answer: Rate exceeded\); other clients may be using up the account's limit for ListUsers: try again later$/,
    );
    expect(clock.t).toBeGreaterThanOrEqual(30_000);
    expect(calls).toBeGreaterThan(1);
  });

  test('a throttled request is sent again; any other error is passed on at once', async () => {
    const clock = new SimClock();
    const limiters = new ActionLimiters({ clock });
    const answers: unknown[] = [throttling(), throttling(), 'ok'];
    const sent = await clock.run(
      limiters.send('TagUser', async () => {
        const a = answers.shift();
        if (a instanceof Error) throw a;
        return a;
      }),
    );
    expect(sent).toBe('ok');
    expect(answers).toEqual([]);

    const denied = Object.assign(new Error('not allowed'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    let calls = 0;
    const failed = clock.run(
      limiters.send('TagUser', async () => {
        calls++;
        throw denied;
      }),
    );
    await expect(failed).rejects.toBe(denied);
    expect(calls).toBe(1);
  });
});
