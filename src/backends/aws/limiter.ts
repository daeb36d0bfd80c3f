// Client-side rate limiting per AWS API action, learned from the throttles AWS answers with.
//
// AWS throttles each API action of an account on its own token bucket (IAM: per action, shared
// by every client of the account), and says so only by refusing requests. Retrying each refused
// request on its own backoff wastes half the requests and fails changes once a budget of attempts
// is spent, however much progress the apply makes elsewhere. Instead every request waits its turn
// at the action's pace, and the pace follows what the action lets through:
//  - an action starts unpaced: most never meet their limit;
//  - a throttle paces it at BETA × the rate that got through in the last second (or BETA × its
//    pace), once per pace: requests already sent at the old pace say nothing new;
//  - while requests get through, the pace grows back along a cubic (as TCP CUBIC does): quickly
//    back to just under the rate that was throttled, flat around it, then probing beyond, so a
//    limit that was raised is found again. Near the limit the server's own bucket absorbs the
//    probe and one throttle ends it;
//  - a rate measured before a full second had passed may be far too low (a server with little
//    burst lets few through at first): until a throttle comes later than that, the pace doubles
//    every second instead.
// A throttled request is sent again at the head of the queue: throttling means IAM refused it
// before doing anything, so repeating one request is always safe (repeating a whole change is
// not). It is given up only when nothing of its action has got through for `patienceMs`: slow
// progress is never a failure, an endpoint that lets nothing through is.
//
// The limiters live as long as the process, one set per endpoint, so that `serve`'s reconciles
// start at the pace the previous one learned instead of learning it again by being refused.
import { isThrottling } from './errors.js';

// Tuned in a simulation (400 requests of one action against a token bucket, 30 ms round trips):
// within 5 % of requests ÷ rate (or under it, thanks to the burst) when the server's burst holds
// a second's worth of requests or more, 1.05–1.2× at a quarter second's worth, 1.5–2× with no
// burst at all; 2–10 % of requests throttled, the most at low rates, where a probe costs more.
/** Multiplicative decrease on a throttle. */
const BETA = 0.85;
/** Cubic growth, relative to the throttled rate: back at it after cbrt((1 - BETA) / C) ≈ 2.9 s. */
const C = 0.006;
const K = Math.cbrt((1 - BETA) / C);
/** The rate that got through is counted over this window. */
const WINDOW_MS = 1000;
/** Never slower than this (requests per second), however often throttled. */
const MIN_RATE = 0.5;

export interface LimiterClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: LimiterClock = { now: () => performance.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

interface Ticket {
  epoch: number;
}

/** One action's pace: a queue released at `rate` requests per second (unpaced until first throttled). */
export class ActionLimiter {
  #rate = Infinity;
  /** The rate that was throttled last, the centre of the cubic. */
  #ceiling = Infinity;
  #decreasedAt = 0;
  /** The ceiling was measured before a full window had passed: possibly far too low. */
  #provisional = false;
  #firstAdmitted = -Infinity;
  /** Bumped on every decrease; a throttle of a request sent before it says nothing new. */
  #epoch = 0;
  #next = 0;
  #queue: (() => void)[] = [];
  #pumping = false;
  #admitted: number[] = [];
  #lastAdmitted = -Infinity;
  readonly #clock: LimiterClock;

  constructor(clock: LimiterClock = realClock) {
    this.#clock = clock;
  }

  /** Requests per second this action is paced at (Infinity: not paced). */
  get rate(): number {
    return this.#rate;
  }

  /** When a request of this action last got through (clock ms; -Infinity: never). */
  get lastAdmitted(): number {
    return this.#lastAdmitted;
  }

  /** Waits for this request's turn; `again` (a throttled request) goes to the head of the queue. */
  acquire(again = false): Promise<Ticket> {
    if (this.#rate === Infinity && this.#queue.length === 0) return Promise.resolve({ epoch: this.#epoch });
    return new Promise((resolve) => {
      const go = () => resolve({ epoch: this.#epoch });
      if (again) this.#queue.unshift(go);
      else this.#queue.push(go);
      void this.#pump();
    });
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#queue.length) {
        const wait = this.#next - this.#clock.now();
        if (wait > 0) {
          await this.#clock.sleep(wait);
          continue; // the rate may have changed meanwhile
        }
        const now = this.#clock.now();
        const interval = this.#rate === Infinity ? 0 : 1000 / this.#rate;
        // A timer that fires late costs no throughput: up to one interval is made up.
        this.#next = Math.max(this.#next, now - interval) + interval;
        this.#queue.shift()!();
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** The request got an answer other than a throttle: it passed the server's limiter. */
  admitted(_ticket: Ticket): void {
    const now = this.#clock.now();
    this.#lastAdmitted = now;
    if (this.#firstAdmitted === -Infinity) this.#firstAdmitted = now;
    this.#admitted.push(now);
    this.#prune(now);
    if (this.#rate === Infinity) return;
    const t = (now - this.#decreasedAt) / 1000;
    const grown = this.#provisional ? BETA * this.#ceiling * 2 ** t : this.#ceiling * (1 + C * (t - K) ** 3);
    // Grow only while used: an idle action keeps the pace it learned instead of drifting to "unpaced".
    const cap = Math.max(this.#ceiling, 2 * this.#measured());
    this.#rate = Math.max(MIN_RATE, Math.min(grown, cap));
  }

  throttled(ticket: Ticket): void {
    if (ticket.epoch !== this.#epoch) return;
    const now = this.#clock.now();
    this.#prune(now);
    const measured = this.#measured();
    // Unpaced, what got through is all there is to go by; paced, the pace itself, unless much
    // less got through (demand was low, or others share the limit).
    this.#provisional = now - this.#firstAdmitted < WINDOW_MS;
    const base = this.#rate === Infinity ? measured : Math.min(this.#rate, Math.max(measured, this.#rate / 2));
    this.#ceiling = Math.max(MIN_RATE, base);
    this.#rate = Math.max(MIN_RATE, BETA * this.#ceiling);
    this.#decreasedAt = now;
    this.#epoch++;
    // The server's bucket is empty now: the next request waits a full interval.
    this.#next = Math.max(this.#next, now + 1000 / this.#rate);
  }

  #measured(): number {
    return (this.#admitted.length * 1000) / WINDOW_MS;
  }

  #prune(now: number) {
    let i = 0;
    while (i < this.#admitted.length && this.#admitted[i]! <= now - WINDOW_MS) i++;
    if (i) this.#admitted.splice(0, i);
  }
}

export interface LimiterOptions {
  /** Give a throttled request up once nothing of its action got through for this long. */
  patienceMs?: number;
  clock?: LimiterClock;
}

export const DEFAULT_PATIENCE_MS = 120_000;

/** The limiters of one endpoint, by action. */
export class ActionLimiters {
  readonly #actions = new Map<string, ActionLimiter>();
  readonly #clock: LimiterClock;
  readonly patienceMs: number;

  constructor(opts: LimiterOptions = {}) {
    this.#clock = opts.clock ?? realClock;
    this.patienceMs = opts.patienceMs ?? DEFAULT_PATIENCE_MS;
  }

  for(action: string): ActionLimiter {
    let l = this.#actions.get(action);
    if (!l) this.#actions.set(action, (l = new ActionLimiter(this.#clock)));
    return l;
  }

  /**
   * Sends one request of `action` at its pace, sending it again while it is throttled and the
   * action makes progress; `onThrottled` is told of each throttle (to count the retries).
   */
  async send<T>(action: string, request: () => Promise<T>, onThrottled?: () => void): Promise<T> {
    const limiter = this.for(action);
    const started = this.#clock.now();
    for (let again = false; ; again = true) {
      const ticket = await limiter.acquire(again);
      try {
        const out = await request();
        limiter.admitted(ticket);
        return out;
      } catch (e) {
        if (!isThrottling(e)) {
          // Refused for another reason, or no answer: either way not by the rate limit.
          if ((e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode !== undefined) limiter.admitted(ticket);
          throw e;
        }
        limiter.throttled(ticket);
        onThrottled?.();
        const stalled = this.#clock.now() - Math.max(started, limiter.lastAdmitted);
        if (stalled >= this.patienceMs) throw stalledError(action, stalled, e);
      }
    }
  }
}

function stalledError(action: string, stalledMs: number, cause: unknown): Error {
  const err = new Error(
    `AWS throttled every ${action} request for ${Math.round(stalledMs / 1000)} s, none got through (last answer: ${(cause as Error)?.message ?? String(cause)}); ` +
      `other clients may be using up the account's limit for ${action}: try again later`,
    { cause },
  );
  // Not AWS's throttling code: this is the end of retrying it, not one more throttle.
  err.name = 'RateLimitStalled';
  return err;
}

// Process-wide, per endpoint (see the head comment).
const shared = new Map<string, ActionLimiters>();

export function sharedLimiters(endpoint: string): ActionLimiters {
  let l = shared.get(endpoint);
  if (!l) shared.set(endpoint, (l = new ActionLimiters()));
  return l;
}

/** The SDK's finalize-step middleware, as far as it is used here. */
type Middleware = (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => (args: unknown) => Promise<unknown>;
interface MiddlewareStack {
  addRelativeTo(middleware: Middleware, options: { relation: 'before'; toMiddleware: string; name: string }): void;
}

/**
 * Paces every command `client` sends by its action's limiter: per attempt, below the (disabled)
 * SDK retry and above signing, so that a request sent again is signed afresh and counted again.
 */
export function limitActions(client: { middlewareStack: object }, limiters: ActionLimiters, onThrottled?: () => void): void {
  // Each client's stack is typed by its own commands' inputs and outputs; this middleware passes
  // them through untouched, so it fits every client.
  (client.middlewareStack as MiddlewareStack).addRelativeTo(
    (next, context) => (args) => limiters.send((context.commandName ?? 'unknown').replace(/Command$/, ''), () => next(args), onThrottled),
    { relation: 'before', toMiddleware: 'httpSigningMiddleware', name: 'datagrantActionLimiter' },
  );
}
