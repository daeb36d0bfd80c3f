// Retrying as a decorator around any Backend: throttling, 5xx and network faults are retried with
// exponential backoff and full jitter (delay drawn uniformly from [0, min(maxMs, baseMs·2^n))),
// so that many clients backing off at once spread out instead of retrying in lock-step.
// Drivers only classify errors (BackendError.retryable); they never retry transient faults
// themselves, so every retry is counted here. (The AWS driver paces and repeats throttled
// requests one by one, per API action, below this: see aws/limiter.ts.)
//
// Throttling (AWS's rate limits, PostgreSQL's "too many connections") is not a fault of the
// change: it spends no attempts, and while it lasts, fewer calls run at once (halved on a
// throttle, one more per `limit` calls that succeed). A throttled call is given up only once
// nothing of this backend has succeeded for `throttlePatienceMs`: slow progress never fails a
// change; a backend that lets nothing through does, with a message that says so.
import type { Backend, BackendStats, ExecuteResult, IssuedBackendSession, ReadOptions, SessionIssueRequest } from './backend.js';
import { BackendError } from '../core/errors.js';
import type { ActualState, Change } from '../core/types.js';
import type { AccessQuery, AccessReading } from '../model/access.js';

export interface RetryOptions {
  /** Attempts in all, the first one included. */
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
  /** Uniform in [0, 1); injectable for tests. */
  random?: () => number;
  /** Injectable for tests. */
  sleep?: (ms: number) => Promise<void>;
  /** Called before each retry (for logs). */
  onRetry?: (info: { attempt: number; delayMs: number; error: Error; address?: string }) => void;
  /** Give a throttled call up once no call of this backend has succeeded for this long. */
  throttlePatienceMs?: number;
  /** Milliseconds, monotonic; injectable for tests. */
  now?: () => number;
}

export const DEFAULT_RETRY: RetryOptions = { maxAttempts: 6, baseMs: 100, maxMs: 10_000, throttlePatienceMs: 120_000 };

// Faults are classified here, once, for every driver: a driver turns its client's errors into
// BackendErrors with these (AWS: aws/errors.ts), and the decorator below goes by them.

// 53300: PostgreSQL's too_many_connections (for the server, or for the role); ER_CON_COUNT_ERROR and
// ER_TOO_MANY_USER_CONNECTIONS / ER_USER_LIMIT_REACHED: MariaDB's (the server's, an account's).
const THROTTLE_CODE =
  /^(Throttl\w*|RequestLimitExceeded|TooManyRequests\w*|SlowDown|RequestThrottled\w*|ProvisionedThroughputExceeded|53300|ER_CON_COUNT_ERROR|ER_TOO_MANY_USER_CONNECTIONS|ER_USER_LIMIT_REACHED)$/;
// Node's and undici's codes for a connection that could not be made, or broke half-way.
const NETWORK_CODE = /^(ECONNRESET|ECONNREFUSED|ECONNABORTED|ETIMEDOUT|EPIPE|EAI_AGAIN|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|UND_ERR_\w+)$/;
// What clients say of such a connection when they give no code (pg's "Connection terminated").
const NETWORK_MESSAGE = /socket hang up|ECONNRESET|ECONNREFUSED|ETIMEDOUT|network|fetch failed|Connection terminated/i;

/** A backend's code for "too many requests" (an `Exception` suffix aside): nothing was done, so any request may be repeated. */
export function isThrottleCode(code: string): boolean {
  return THROTTLE_CODE.test(code.replace(/Exception$/, ''));
}

/** The code of a connection that could not be made or broke (`ECONNRESET`, `UND_ERR_SOCKET`, …); undefined for anything else. */
export function networkErrorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && NETWORK_CODE.test(code) ? code : undefined;
}

/**
 * A connection that could not be made or broke, by its code or, from a client that gives none, by
 * its message: the request may be sent again. A driver that has the server's answer (an HTTP
 * status, an SQLSTATE) goes by that answer first; the message is only for when there is none.
 */
export function isNetworkFault(e: unknown): boolean {
  if (networkErrorCode(e) !== undefined) return true;
  const err = e as { code?: unknown; message?: unknown } | null | undefined;
  // A code of another kind (an SQLSTATE, a service's error code) is the server's answer.
  if (err?.code !== undefined) return false;
  return typeof err?.message === 'string' && NETWORK_MESSAGE.test(err.message);
}

/** Throttling: the request was refused before it did anything, so even a non-idempotent one may be repeated. */
export function isThrottle(e: unknown): boolean {
  const code = e instanceof BackendError ? e.code : (e as { code?: unknown; name?: string })?.name;
  return typeof code === 'string' && isThrottleCode(code);
}

export function isTransient(e: unknown): boolean {
  if (e instanceof BackendError) return e.retryable;
  return isNetworkFault(e);
}

/**
 * How many calls may run at once: unbounded until a throttle, then halved (once per throttled
 * round: calls started before the cut say nothing new), and grown back by one per `limit` calls
 * that succeed, as TCP's congestion window does.
 */
class AdaptiveConcurrency {
  #limit = Infinity;
  #running = 0;
  #round = 0;
  #waiting: (() => void)[] = [];

  get limit(): number {
    return this.#limit;
  }

  /** Waits for a slot; returns the round the call starts in. */
  async enter(): Promise<number> {
    if (this.#running >= Math.floor(this.#limit)) await new Promise<void>((r) => this.#waiting.push(r));
    else this.#running++;
    return this.#round;
  }

  leave(round: number, outcome: 'ok' | 'throttled' | 'failed'): void {
    if (outcome === 'throttled' && round === this.#round) {
      this.#limit = Math.max(1, Math.floor(Math.min(this.#limit, this.#running) / 2));
      this.#round++;
    } else if (outcome === 'ok' && this.#limit !== Infinity) {
      this.#limit += 1 / this.#limit;
    }
    this.#running--;
    // A slot passes straight to the next waiter (counted as running), so none is taken twice.
    while (this.#waiting.length && this.#running < Math.floor(this.#limit)) {
      this.#running++;
      this.#waiting.shift()!();
    }
  }
}

export class RetryingBackend implements Backend {
  readonly #inner: Backend;
  readonly #opts: Required<Omit<RetryOptions, 'onRetry'>> & Pick<RetryOptions, 'onRetry'>;
  readonly #concurrency = new AdaptiveConcurrency();
  #retries = 0;
  /** When a call of this backend last succeeded. */
  #progress = -Infinity;

  constructor(inner: Backend, opts: RetryOptions) {
    if (opts.maxAttempts < 1) throw new RangeError('maxAttempts must be at least 1');
    this.#inner = inner;
    this.#opts = {
      random: Math.random,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      now: () => performance.now(),
      throttlePatienceMs: DEFAULT_RETRY.throttlePatienceMs!,
      ...opts,
    };
  }

  get name() {
    return this.#inner.name;
  }
  get type() {
    return this.#inner.type;
  }

  /** Calls allowed at once now (Infinity until throttled). */
  get concurrency(): number {
    return this.#concurrency.limit;
  }

  /** Backoff before retry number `n` (1-based): full jitter. */
  delay(n: number): number {
    const cap = Math.min(this.#opts.maxMs, this.#opts.baseMs * 2 ** (n - 1));
    return Math.floor(this.#opts.random() * cap);
  }

  async #attempt<T>(fn: () => Promise<T>, retryable: (e: unknown) => boolean, address?: string): Promise<T> {
    const started = this.#opts.now();
    let throttles = 0;
    let failures = 0;
    for (let attempt = 1; ; attempt++) {
      const round = await this.#concurrency.enter();
      let delayMs: number;
      try {
        const out = await fn();
        this.#concurrency.leave(round, 'ok');
        this.#progress = this.#opts.now();
        return out;
      } catch (e) {
        const throttled = isThrottle(e) && retryable(e);
        this.#concurrency.leave(round, throttled ? 'throttled' : 'failed');
        if (throttled) {
          const stalledMs = this.#opts.now() - Math.max(started, this.#progress);
          if (stalledMs >= this.#opts.throttlePatienceMs) throw stalled(e, this.#inner.name, stalledMs, throttles + 1, address);
          // Capped: past a few doublings the delay stays near maxMs rather than overflowing.
          delayMs = this.delay(Math.min(++throttles, 30));
        } else {
          // Only failures count against maxAttempts; throttles in between do not.
          if (++failures >= this.#opts.maxAttempts || !retryable(e)) throw e;
          delayMs = this.delay(failures);
        }
        this.#retries++;
        this.#opts.onRetry?.({ attempt, delayMs, error: e as Error, ...(address ? { address } : {}) });
      }
      await this.#opts.sleep(delayMs);
    }
  }

  read(opts: ReadOptions): Promise<ActualState> {
    return this.#attempt(() => this.#inner.read(opts), isTransient);
  }

  execute(change: Change): Promise<ExecuteResult> {
    // Issuing a credential is not idempotent, but the Backend contract makes repeating it safe: a
    // driver whose issuing attempt fails ambiguously (5xx, dropped connection) removes whatever
    // that attempt may have created before it throws (see backend.ts).
    return this.#attempt(() => this.#inner.execute(change), isTransient, change.address);
  }

  /**
   * Repeating an attempt that failed is safe: an STS session never handed out expires by itself,
   * and a PostgreSQL login left by a failed attempt expires too and is dropped by the next apply,
   * like any login past its end. So transient faults are retried.
   */
  get issueSession(): ((req: SessionIssueRequest) => Promise<IssuedBackendSession>) | undefined {
    const inner = this.#inner;
    if (!inner.issueSession) return undefined;
    return (req) => this.#attempt(() => inner.issueSession!(req), isTransient, `${inner.name}:session/${req.principal}`);
  }

  /** A read changes nothing: repeating it is always safe. */
  get readAccess(): ((query: AccessQuery) => Promise<AccessReading>) | undefined {
    const inner = this.#inner;
    if (!inner.readAccess) return undefined;
    return (query) => this.#attempt(() => inner.readAccess!(query), isTransient);
  }

  stats(): BackendStats {
    const s = this.#inner.stats();
    return { requests: s.requests, retries: s.retries + this.#retries };
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** A throttled call given up: the last error's code, no longer retryable, saying how long nothing got through. */
function stalled(e: unknown, backend: string, stalledMs: number, attempts: number, address?: string): BackendError {
  const last = (e as Error)?.message ?? String(e);
  const code = e instanceof BackendError ? e.code : (e as { name?: string })?.name;
  return new BackendError(
    `${backend}: ${address ? `${address}: ` : ''}throttled ${attempts} time(s), and nothing of ${backend} got through for ${Math.round(stalledMs / 1000)} s; giving up. Last answer: ${last}`,
    backend,
    code,
    false,
    address,
  );
}

export function withRetry(backend: Backend, opts: RetryOptions = DEFAULT_RETRY): Backend {
  return new RetryingBackend(backend, opts);
}
