// Retrying as a decorator around any Backend: throttling, 5xx and network faults are retried with
// exponential backoff and full jitter (delay drawn uniformly from [0, min(maxMs, baseMs·2^n))),
// so that many clients backing off at once spread out instead of retrying in lock-step.
// Drivers only classify errors (BackendError.retryable); they never retry transient faults
// themselves, so every retry is counted here.
import type { Backend, BackendStats, ExecuteResult, ReadOptions } from './backend.js';
import { BackendError } from '../core/errors.js';
import type { ActualState, Change } from '../core/types.js';

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
}

export const DEFAULT_RETRY: RetryOptions = { maxAttempts: 6, baseMs: 100, maxMs: 10_000 };

const THROTTLE_CODE = /^(Throttl\w*|RequestLimitExceeded|TooManyRequests\w*|SlowDown|RequestThrottled\w*)$/;
const NETWORK_CODE = /^(ECONNRESET|ECONNREFUSED|ECONNABORTED|ETIMEDOUT|EPIPE|EAI_AGAIN|UND_ERR_\w+)$/;

/** Throttling: the request was refused before it did anything, so even a non-idempotent one may be repeated. */
export function isThrottle(e: unknown): boolean {
  const code = e instanceof BackendError ? e.code : (e as { code?: unknown; name?: string })?.name;
  return typeof code === 'string' && THROTTLE_CODE.test(code.replace(/Exception$/, ''));
}

export function isTransient(e: unknown): boolean {
  if (e instanceof BackendError) return e.retryable;
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && NETWORK_CODE.test(code);
}

export class RetryingBackend implements Backend {
  readonly #inner: Backend;
  readonly #opts: Required<Omit<RetryOptions, 'onRetry'>> & Pick<RetryOptions, 'onRetry'>;
  #retries = 0;

  constructor(inner: Backend, opts: RetryOptions) {
    if (opts.maxAttempts < 1) throw new RangeError('maxAttempts must be at least 1');
    this.#inner = inner;
    this.#opts = {
      random: Math.random,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      ...opts,
    };
  }

  get name() {
    return this.#inner.name;
  }
  get type() {
    return this.#inner.type;
  }

  /** Backoff before retry number `n` (1-based): full jitter. */
  delay(n: number): number {
    const cap = Math.min(this.#opts.maxMs, this.#opts.baseMs * 2 ** (n - 1));
    return Math.floor(this.#opts.random() * cap);
  }

  async #attempt<T>(fn: () => Promise<T>, retryable: (e: unknown) => boolean, address?: string): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (attempt >= this.#opts.maxAttempts || !retryable(e)) throw e;
        const delayMs = this.delay(attempt);
        this.#retries++;
        this.#opts.onRetry?.({ attempt, delayMs, error: e as Error, ...(address ? { address } : {}) });
        await this.#opts.sleep(delayMs);
      }
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

  stats(): BackendStats {
    const s = this.#inner.stats();
    return { requests: s.requests, retries: s.retries + this.#retries };
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

export function withRetry(backend: Backend, opts: RetryOptions = DEFAULT_RETRY): Backend {
  return new RetryingBackend(backend, opts);
}
