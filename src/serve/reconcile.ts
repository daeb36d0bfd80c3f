// The long-running reconciler behind `datagrant serve`: on every SCIM change (debounced), every
// decision on a request, and on an interval, the spec plus the SCIM identities and approved
// requests are planned and applied with the same engine as the CLI. Only the holder of the state
// lock reconciles; other replicas skip and serve SCIM.
//
// A change is not this replica's alone: the SCIM store counts every write as pending work (see
// scim/store/store.ts), and every replica polls that marker, so a change accepted by a replica that
// died before reconciling it is picked up by another within a poll. A run records the work it
// covered once it succeeded; a run that failed is retried with backoff until one succeeds, and at
// once when the store answers again after it could not be reached.
import type { Backend } from '../backends/backend.js';
import { converge } from '../app/converge.js';
import { loadSpec, readSpecFile } from '../app/engine.js';
import { compile, nextChangeAt } from '../compile/index.js';
import { hashJson, sha256 } from '../core/canonical.js';
import { ApplyError, KeyChangedError, LockError } from '../core/errors.js';
import { summarize } from '../plan/diff.js';
import type { ScimWork } from '../scim/store/store.js';
import type { BackendSpec, Spec } from '../spec/schema.js';
import type { Notice } from '../core/types.js';
import { expireDue } from '../app/requests.js';
import type { AppliedStore, CredentialStore, StateStore } from '../store/store.js';
import { ZERO_METRICS, type ReconcileMetrics } from './reconcile-metrics.js';

export type { ReconcileMetrics } from './reconcile-metrics.js';

/** How soon a run that found the state lock taken tries again. */
const LOCK_RETRY_MS = 500;
/**
 * The wait before retry number `failures` (1, 2, …) of a failed run: from `firstMs` (0.5 s),
 * doubling up to `maxMs` (30 s), the second half of it random, so that replicas that failed
 * together (the store went away under all of them) do not come back in step.
 */
export function retryDelayMs(failures: number, backoff: { firstMs?: number; maxMs?: number } = {}, random: () => number = Math.random): number {
  const base = Math.min(backoff.maxMs ?? 30_000, (backoff.firstMs ?? 500) * 2 ** Math.max(0, failures - 1));
  return base / 2 + (random() * base) / 2;
}

/** What the store says is applied, and which credentials it holds (no secrets). */
async function appliedState(store: AppliedStore & CredentialStore): Promise<string> {
  const credentials = (await store.credentials()).map((c) => [c.address, c.credentialId, c.state]);
  return sha256(`${hashJson(await store.applied())}\n${hashJson(credentials)}`);
}

const yieldToRequests = () => new Promise<void>((r) => setImmediate(r));

/** What the reconciler logs through: a pino logger, or the reconciler thread's relay to one. */
export interface ReconcileLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** The SCIM store's pending-work marker, shared by all replicas (ScimStore implements it). */
export interface PendingWork {
  work(): Promise<ScimWork>;
  markReconciled(seq: number, actor: string): Promise<void>;
}

/**
 * How one run ended: what the loop does next depends on it. `refused`: the state moved to
 * another master key since this process opened it, which no retry cures.
 */
export type RunOutcome = 'applied' | 'skipped' | 'locked' | 'failed' | 'refused';

export interface ReconcilerOptions {
  specFile: string;
  env: NodeJS.ProcessEnv;
  store: StateStore;
  /**
   * The spec as every run must see it: SCIM people and approved requests merged in (mergedSpec),
   * with notices for what was merged.
   */
  merge: (spec: Spec, now: Date) => Promise<{ spec: Spec; notices: Notice[] }>;
  /** The SCIM store's pending work; without it, only this replica's triggers and the interval run. */
  pending?: PendingWork;
  /** How often the pending work is polled. Default 300 ms. */
  pollMs?: number;
  /** Backoff between retries of a failed run (retryDelayMs): first 0.5 s, at most 30 s by default. */
  retry?: { firstMs?: number; maxMs?: number };
  makeBackends: (backends: Record<string, BackendSpec>, installation: string) => Record<string, Backend>;
  logger: ReconcileLogger;
  debounceMs?: number;
  intervalMs?: number;
  concurrency?: number;
  actor?: string;
  now?: () => Date;
  /** Told the counters after every reconcile, whatever it did (skips too). */
  onDone?: (metrics: ReconcileMetrics) => void;
}

export class Reconciler {
  readonly metrics: ReconcileMetrics = { ...ZERO_METRICS };
  #timer: NodeJS.Timeout | undefined;
  /** The timer is the backoff after a failed run: settled() does not wait for it… */
  #timerIsRetry = false;
  /** …unless a trigger asked for a run meanwhile. */
  #askedDuringBackoff = false;
  #interval: NodeJS.Timeout | undefined;
  /** A full run when the desired state next changes by itself (a grant's expiry, a session's end). */
  #due: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #polling = false;
  #running: Promise<void> | undefined;
  #again = false;
  /** The next run is a full one (start, interval), not only a SCIM change's. */
  #full = false;
  /** Fingerprint of the desired and the applied state at the end of the last run that succeeded. */
  #lastGood: string | undefined;
  /** Failed runs in a row. */
  #failures = 0;
  /** The key change was logged: every later run is refused alike, and counted, not logged again. */
  #toldKeyChanged = false;
  /** The last poll could not reach the store. */
  #storeDown = false;
  /** Addresses of the deletions the last run held after a mass event. */
  #held = new Set<string>();
  #stopped = false;
  /** Resolved when nothing is running or scheduled. */
  #idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: ReconcilerOptions) {}

  start(): void {
    const every = this.opts.intervalMs ?? 300_000;
    this.#interval = setInterval(() => this.trigger({ full: true }), every);
    this.#interval.unref();
    if (this.opts.pending) this.#poll = setInterval(() => void this.#pollPending(), this.opts.pollMs ?? 300);
    this.trigger({ full: true });
  }

  /**
   * Ask for a reconcile soon; many triggers within the debounce window make one run. A SCIM
   * change's trigger (the default) may find nothing to do; `full` always reads the backends.
   * During the backoff after a failure, a trigger waits for the retry.
   */
  trigger(opts: { full?: boolean } = {}): void {
    if (this.#stopped) return;
    if (opts.full) this.#full = true;
    if (this.#timer && this.#timerIsRetry) this.#askedDuringBackoff = true;
    this.#schedule(this.opts.debounceMs ?? 100);
  }

  #schedule(delayMs: number, retry = false): void {
    if (this.#timer || this.#stopped) return;
    this.#timerIsRetry = retry;
    this.#askedDuringBackoff = false;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerIsRetry = false;
      this.#askedDuringBackoff = false;
      void this.#kick();
    }, delayMs);
  }

  #cancelTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerIsRetry = false;
    this.#askedDuringBackoff = false;
  }

  /**
   * Another replica may have taken a SCIM write and died before reconciling it: work pending in
   * the store is this replica's too. A poll that reaches the store after polls that could not
   * ends the backoff of a run that failed meanwhile: the store was most likely why.
   */
  async #pollPending(): Promise<void> {
    const pending = this.opts.pending;
    if (!pending || this.#polling || this.#stopped || this.#running) return;
    this.#polling = true;
    try {
      let work: ScimWork;
      try {
        work = await pending.work();
      } catch (e) {
        if (this.#stopped) return; // the store was closed under this poll
        if (!this.#storeDown)
          this.opts.logger.warn(
            { err: { name: (e as Error).name, message: (e as Error).message } },
            'the SCIM store cannot be reached; pending work waits for it',
          );
        this.#storeDown = true;
        return;
      }
      // A run that started meanwhile may yet fail and back off: the next poll acts then.
      if (this.#stopped || this.#running) return;
      const cameBack = this.#storeDown;
      this.#storeDown = false;
      if (cameBack) this.opts.logger.info({}, 'the SCIM store answers again');
      if (cameBack && this.#timerIsRetry) {
        this.#cancelTimer();
        this.#schedule(0);
      } else if (work.reconciled < work.changed) {
        this.#schedule(this.opts.debounceMs ?? 100);
      }
    } finally {
      this.#polling = false;
    }
  }

  /**
   * Resolves once no reconcile is running or scheduled, a failed run's backoff aside unless a
   * trigger came during it: after a SCIM write returns, its reconcile has been scheduled, so this
   * waits for it (tests, benchmarks, shutdown).
   */
  settled(): Promise<void> {
    if (this.#idle()) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  #idle(): boolean {
    return (!this.#timer || (this.#timerIsRetry && !this.#askedDuringBackoff)) && !this.#running && !this.#again;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#cancelTimer();
    if (this.#interval) clearInterval(this.#interval);
    if (this.#due) clearTimeout(this.#due);
    if (this.#poll) clearInterval(this.#poll);
    await this.#running;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  async #kick(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return;
    }
    const full = this.#full;
    this.#full = false;
    this.#running = this.runOnce({ full }).then((outcome) => {
      this.#running = undefined;
      if (this.#stopped) return;
      if (outcome === 'failed' || outcome === 'locked' || outcome === 'refused') {
        // The same run again, later: after a backoff that grows with each failure; or, when
        // another replica (or a CLI apply) held the lock, shortly, since its run may have read
        // the identities before this change arrived.
        this.#again = false;
        if (full) this.#full = true;
        this.#cancelTimer();
        if (outcome === 'refused') {
          // Refused until a restart with the new key: tried again (and counted) at the longest
          // backoff, so the failure metric keeps rising for an alert, without a log line each time.
          this.#schedule(retryDelayMs(Infinity, this.opts.retry), true);
        } else if (outcome === 'failed') {
          const delay = retryDelayMs(++this.#failures, this.opts.retry);
          this.opts.logger.info({ failuresInARow: this.#failures, retryInSeconds: Math.round(delay) / 1000 }, 'reconcile will be retried');
          this.#schedule(delay, true);
        } else {
          this.#schedule(LOCK_RETRY_MS);
        }
      } else {
        this.#failures = 0;
        if (this.#again) {
          this.#again = false;
          this.#schedule(0);
        }
      }
      if (this.#idle()) for (const w of this.#idleWaiters.splice(0)) w();
    });
    await this.#running;
  }

  /**
   * Access that ends at an instant must end then, not at the next interval: on PostgreSQL an
   * expired grant, or a session login's open connection, lasts until a run removes it.
   */
  #wakeAt(at: Date | undefined, now: Date): void {
    if (this.#due) clearTimeout(this.#due);
    this.#due = undefined;
    this.#dueAt = undefined;
    if (!at || this.#stopped) return;
    this.#dueAt = at.getTime();
    // A second late, so that the run sees the instant passed; setTimeout's limit is ~24.8 days.
    const ms = Math.min(at.getTime() - now.getTime() + 1000, 2 ** 31 - 1);
    this.#due = setTimeout(() => {
      this.#due = undefined;
      this.#dueAt = undefined;
      this.trigger({ full: true });
    }, ms);
    this.#due.unref();
  }

  /** Run in full by `at` at the latest (a session issued since the last run ends then). */
  wakeBy(at: Date): void {
    if (this.#dueAt !== undefined && this.#dueAt <= at.getTime()) return;
    this.#wakeAt(at, (this.opts.now ?? (() => new Date()))());
  }

  #dueAt: number | undefined;

  /**
   * One reconcile: read the spec and the identities, lock, plan, apply. Never throws; failures
   * are logged and counted. A run asked for by a SCIM change (not `full`) stops early when
   * another run covered every pending SCIM write, or when its spec and desired state are those of
   * the last successful run, without touching the backends; drift and key rotation are the
   * interval's (full) runs.
   */
  async runOnce(opts: { full?: boolean } = {}): Promise<RunOutcome> {
    const { store, logger, pending } = this.opts;
    const now = (this.opts.now ?? (() => new Date()))();
    const started = performance.now();
    const actor = this.opts.actor ?? 'serve';
    let ran = false;
    let failed = false;
    try {
      // How far SCIM writes had got before the identities are read: the identities this run
      // reads hold every write up to there, so its success covers them.
      const work = pending ? await pending.work() : undefined;
      if (work && opts.full === false && work.reconciled >= work.changed) {
        this.metrics.skippedCovered++;
        return 'skipped';
      }
      const covered = async () => {
        if (work) await pending!.markReconciled(work.changed, actor);
      };
      // Yield between the CPU-heavy steps so that whatever shares this event loop (the
      // thread's messages; SCIM requests when run in the server's thread) is served in between.
      const loaded = loadSpec(readSpecFile(this.opts.specFile), this.opts.env, now);
      // Requests whose access has ended, or that nobody decided in time, are recorded as such
      // (the merge below leaves them out either way).
      await expireDue(store, loaded.spec, now, actor);
      await yieldToRequests();
      const merged = await this.opts.merge(loaded.spec, now);
      await yieldToRequests();
      const spec: Spec = merged.spec;
      // What this run would make the backends hold; unchanged since the last good run, a SCIM
      // change (a user outside every mapped group, a no-op PATCH) has nothing to apply.
      // With it, what the store says was applied: another replica's or a CLI apply since then
      // changes that, and this run goes ahead.
      // Sessions count: one ending (or one issued since) changes what the backends must hold.
      const sessions = await store.sessions();
      const desired = sha256(`${loaded.specHash}\n${hashJson(compile(spec, now, { sessions }).desired)}`);
      this.#wakeAt(nextChangeAt(spec, sessions, now), now);
      if (opts.full === false && `${desired}\n${await appliedState(store)}` === this.#lastGood) {
        await covered();
        this.metrics.skippedUnchanged++;
        return 'skipped';
      }
      let out;
      try {
        out = await converge({
          mode: 'apply',
          spec,
          specHash: loaded.specHash,
          notices: [...loaded.notices, ...merged.notices],
          templates: loaded.templates,
          source: loaded.source,
          env: this.opts.env,
          store,
          makeBackends: this.opts.makeBackends,
          actor,
          now,
          onMassEvent: 'hold',
          // Nobody is at a prompt: the access that breaks an invariant is withheld, the rest
          // (removals above all) applied, and the breach logged for a person to fix.
          onInvariantBroken: 'withhold',
          onWithheld: (violations) => {
            this.metrics.invariantsWithheld += violations.length;
            logger.error({ violations: violations.map((v) => v.message) }, 'reconcile: access that breaks an invariant withheld');
          },
          concurrency: this.opts.concurrency ?? 8,
          onPlan: (plan) => {
            if (plan.changes.length) {
              const s = summarize(plan);
              logger.info({ add: s.add, change: s.change, destroy: s.destroy }, 'reconcile: applying changes');
            }
          },
        });
      } catch (e) {
        if (!(e instanceof LockError)) throw e;
        this.metrics.skippedLocked++;
        logger.debug({ reason: e.message }, 'reconcile skipped: another replica holds the state lock');
        return 'locked';
      }
      ran = true;
      this.metrics.runs++;
      if (out.held.length) {
        // A new event is one that holds deletions not held before (more leavers while some wait).
        if (out.held.some((c) => !this.#held.has(c.address))) this.metrics.massEvents++;
        logger.warn(
          { held: out.held.length, events: out.mass.map((m) => ({ backend: m.backend, removed: m.removed, managed: m.managed })) },
          'mass deprovisioning: access revoked reversibly (keys inactive, memberships and policies removed, logins disabled); deletions held until a person runs `datagrant apply --allow-mass-destroy`',
        );
      }
      this.metrics.heldDeletions = out.held.length;
      this.#held = new Set(out.held.map((c) => c.address));
      if (out.result) this.metrics.changesApplied += out.result.applied;
      if (out.error) throw out.error;
      this.#lastGood = `${desired}\n${await appliedState(store)}`;
      // Held deletions wait for a person, not for another run: the work is done as far as serve goes.
      await covered();
      return 'applied';
    } catch (e) {
      failed = true;
      this.#lastGood = undefined;
      if (!ran) this.metrics.runs++;
      this.metrics.failures++;
      if (e instanceof KeyChangedError) {
        if (!this.#toldKeyChanged) {
          logger.error(
            { err: { name: e.name, message: e.message } },
            'reconcile refused: the state was moved to another master key (`datagrant rekey`) after serve started; no backend is read or changed until serve is restarted with the new key',
          );
        }
        this.#toldKeyChanged = true;
        return 'refused';
      }
      const failures = e instanceof ApplyError ? e.failures : undefined;
      logger.error({ err: { name: (e as Error).name, message: (e as Error).message }, ...(failures ? { failures } : {}) }, 'reconcile failed');
      return 'failed';
    } finally {
      if (ran || failed) {
        const seconds = (performance.now() - started) / 1000;
        this.metrics.lastDurationSeconds = seconds;
        this.metrics.durationSecondsSum += seconds;
      }
      this.opts.onDone?.({ ...this.metrics });
    }
  }
}
