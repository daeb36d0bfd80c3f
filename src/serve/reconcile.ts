// The long-running reconciler behind `datagrant serve`: on every SCIM change (debounced) and on
// an interval, the spec plus the SCIM identities are planned and applied with the same engine as
// the CLI. Only the holder of the state lock reconciles; other replicas skip and serve SCIM.
import type { Backend } from '../backends/backend.js';
import { converge } from '../app/converge.js';
import { loadSpec, readSpecFile } from '../app/engine.js';
import { compile } from '../compile/index.js';
import { hashJson, sha256 } from '../core/canonical.js';
import { ApplyError, LockError } from '../core/errors.js';
import { summarize } from '../plan/diff.js';
import type { BackendSpec, PrincipalSpec, Spec } from '../spec/schema.js';
import type { StateStore } from '../store/store.js';

/** How soon a run that found the state lock taken tries again. */
const LOCK_RETRY_MS = 500;

/** What the store says is applied, and which credentials it holds (no secrets). */
async function appliedState(store: StateStore): Promise<string> {
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

export interface ReconcileMetrics {
  runs: number;
  failures: number;
  skippedLocked: number;
  /** Runs asked for by a SCIM change that found nothing changed since the last good run. */
  skippedUnchanged: number;
  changesApplied: number;
  /** Runs that found a mass deprovisioning and held its irreversible deletions for a person. */
  massEvents: number;
  /** Deletions held right now, waiting for `datagrant apply --allow-mass-destroy`. */
  heldDeletions: number;
  lastDurationSeconds: number;
  durationSecondsSum: number;
}

export interface ReconcilerOptions {
  specFile: string;
  env: NodeJS.ProcessEnv;
  store: StateStore;
  /** People known from SCIM, as spec principals (active users only). */
  identities: (spec: Spec) => Promise<Record<string, PrincipalSpec>>;
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
  readonly metrics: ReconcileMetrics = { runs: 0, failures: 0, skippedLocked: 0, skippedUnchanged: 0, changesApplied: 0, massEvents: 0, heldDeletions: 0, lastDurationSeconds: 0, durationSecondsSum: 0 };
  #timer: NodeJS.Timeout | undefined;
  #interval: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  /** The next run is a full one (start, interval), not only a SCIM change's. */
  #full = false;
  /** Fingerprint of the desired and the applied state at the end of the last run that succeeded. */
  #lastGood: string | undefined;
  /** The last run found the state lock taken. */
  #lockedOut = false;
  #stopped = false;
  /** Resolved when nothing is running or scheduled. */
  #idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: ReconcilerOptions) {}

  start(): void {
    const every = this.opts.intervalMs ?? 300_000;
    this.#interval = setInterval(() => this.trigger({ full: true }), every);
    this.#interval.unref();
    this.trigger({ full: true });
  }

  /**
   * Ask for a reconcile soon; many triggers within the debounce window make one run. A SCIM
   * change's trigger (the default) may find nothing to do; `full` always reads the backends.
   */
  trigger(opts: { full?: boolean } = {}): void {
    if (this.#stopped) return;
    if (opts.full) this.#full = true;
    this.#schedule(this.opts.debounceMs ?? 100);
  }

  #schedule(delayMs: number): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#kick();
    }, delayMs);
  }

  /**
   * Resolves once no reconcile is running or scheduled: after a SCIM write returns, its
   * reconcile has been scheduled, so this waits for it (tests, benchmarks, shutdown).
   */
  settled(): Promise<void> {
    if (this.#idle()) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  #idle(): boolean {
    return !this.#timer && !this.#running && !this.#again;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#interval) clearInterval(this.#interval);
    this.#timer = undefined;
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
    this.#running = this.runOnce({ full }).finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        void this.#kick();
        return;
      }
      this.#again = false;
      if (this.#lockedOut) {
        // Another replica (or a CLI apply) held the lock: its run may have started before this
        // change arrived, so try again shortly rather than leave the change for the interval.
        this.#lockedOut = false;
        if (full) this.#full = true;
        this.#schedule(LOCK_RETRY_MS);
      }
      if (this.#idle()) for (const w of this.#idleWaiters.splice(0)) w();
    });
    await this.#running;
  }

  /**
   * One reconcile: read the spec and the identities, lock, plan, apply. Never throws; failures
   * are logged and counted. A run asked for by a SCIM change (not `full`) whose spec and desired
   * state are those of the last successful run has nothing to do and stops there, without
   * touching the backends; drift and key rotation are the interval's (full) runs.
   */
  async runOnce(opts: { full?: boolean } = {}): Promise<void> {
    const { store, logger } = this.opts;
    const now = (this.opts.now ?? (() => new Date()))();
    const started = performance.now();
    const actor = this.opts.actor ?? 'serve';
    let ran = false;
    let failed = false;
    try {
      // Yield between the CPU-heavy steps so that whatever shares this event loop (the
      // thread's messages; SCIM requests when run in the server's thread) is served in between.
      const loaded = loadSpec(readSpecFile(this.opts.specFile), this.opts.env, now);
      await yieldToRequests();
      const people = await this.opts.identities(loaded.spec);
      await yieldToRequests();
      const spec: Spec = { ...loaded.spec, principals: { ...people, ...loaded.spec.principals } };
      // What this run would make the backends hold; unchanged since the last good run, a SCIM
      // change (a user outside every mapped group, a no-op PATCH) has nothing to apply.
      // With it, what the store says was applied: another replica's or a CLI apply since then
      // changes that, and this run goes ahead.
      const desired = sha256(`${loaded.specHash}\n${hashJson(compile(spec, now).desired)}`);
      if (opts.full === false && `${desired}\n${await appliedState(store)}` === this.#lastGood) {
        this.metrics.skippedUnchanged++;
        return;
      }
      let out;
      try {
        out = await converge({
          mode: 'apply',
          spec,
          specHash: loaded.specHash,
          notices: loaded.notices,
          templates: loaded.templates,
          env: this.opts.env,
          store,
          makeBackends: this.opts.makeBackends,
          actor,
          now,
          onMassEvent: 'hold',
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
        this.#lockedOut = true;
        logger.debug({ reason: e.message }, 'reconcile skipped: another replica holds the state lock');
        return;
      }
      ran = true;
      this.metrics.runs++;
      if (out.held.length) {
        if (this.metrics.heldDeletions === 0) this.metrics.massEvents++;
        logger.warn(
          { held: out.held.length, events: out.mass.map((m) => ({ backend: m.backend, removed: m.removed, managed: m.managed })) },
          'mass deprovisioning: access revoked reversibly (keys inactive, memberships and policies removed, logins disabled); deletions held until a person runs `datagrant apply --allow-mass-destroy`',
        );
      }
      this.metrics.heldDeletions = out.held.length;
      if (out.result) this.metrics.changesApplied += out.result.applied;
      if (out.error) throw out.error;
      this.#lastGood = `${desired}\n${await appliedState(store)}`;
    } catch (e) {
      failed = true;
      this.#lastGood = undefined;
      if (!ran) this.metrics.runs++;
      this.metrics.failures++;
      const failures = e instanceof ApplyError ? e.failures : undefined;
      logger.error({ err: { name: (e as Error).name, message: (e as Error).message }, ...(failures ? { failures } : {}) }, 'reconcile failed');
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
