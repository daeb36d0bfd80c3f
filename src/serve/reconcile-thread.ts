// The main thread's handle on the reconciler thread (reconcile-worker.ts): start it, pass it SCIM
// change triggers, wait for it to settle, stop it. If the thread dies, it is started again.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DatagrantError, StoreError, UsageError } from '../core/errors.js';
import type { StatePaths } from '../store/open.js';
import type { ReconcileLogger } from './reconcile.js';
import { ZERO_METRICS, type ReconcileMetrics } from './reconcile-metrics.js';

export interface ReconcilerConfig {
  specFile: string;
  paths: StatePaths;
  env: Record<string, string | undefined>;
  debounceMs: number;
  intervalMs: number;
  /** How often the SCIM store's pending work is polled. */
  pollMs: number;
  actor: string;
}

export type ToReconciler = { type: 'trigger'; full?: boolean } | { type: 'wake'; at: string } | { type: 'settle'; id: number } | { type: 'stop' };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type FromReconciler =
  | { type: 'ready' }
  | { type: 'fatal'; name: string; message: string }
  | { type: 'log'; level: LogLevel; obj: object; msg: string }
  | { type: 'metrics'; metrics: ReconcileMetrics }
  | { type: 'settled'; id: number }
  | { type: 'stopped' };

export interface ReconcilerThreadOptions {
  config: ReconcilerConfig;
  logger: ReconcileLogger;
  /** Told after every reconcile, skips too: the thread's counters now and before. */
  onMetrics?: (now: ReconcileMetrics, before: ReconcileMetrics) => void;
  /** Wait this long before starting a thread that died. Default 1 s. */
  restartDelayMs?: number;
}

/** The worker's module: compiled JavaScript next to this file, or TypeScript when running from sources. */
function spawn(config: ReconcilerConfig): Worker {
  const fromSources = import.meta.url.endsWith('.ts');
  const entry = new URL(fromSources ? './reconcile-worker.ts' : './reconcile-worker.js', import.meta.url);
  const options = { workerData: config, env: config.env };
  if (!fromSources) return new Worker(entry, options);
  // From sources (tests, `node --import tsx`), the thread needs tsx to load TypeScript too.
  // Its ESM API (register) by the package's own exports map: require.resolve would give the CommonJS build.
  const require = createRequire(import.meta.url);
  const pkg = require.resolve('tsx/package.json');
  const api = (require(pkg) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']!.import.default;
  const tsx = pathToFileURL(join(dirname(pkg), api)).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`, { ...options, eval: true });
}

export class ReconcilerThread {
  /** The running thread's counters (a thread started again counts from zero). */
  metrics: ReconcileMetrics = { ...ZERO_METRICS };
  #worker: Worker | undefined;
  #nextId = 0;
  #settling = new Map<number, () => void>();
  #stopping = false;
  #stopped: (() => void) | undefined;
  #restart: NodeJS.Timeout | undefined;
  #triggerQueued = false;
  #fullQueued = false;

  constructor(private readonly opts: ReconcilerThreadOptions) {}

  /** Starts the thread; resolves once it has opened the stores (rejects with why it could not). */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const worker = spawn(this.opts.config);
      this.#worker = worker;
      let ready = false;
      worker.on('message', (m: FromReconciler) => {
        switch (m.type) {
          case 'ready':
            ready = true;
            resolve();
            break;
          case 'fatal':
            void worker.terminate();
            reject(m.name === 'StoreError' ? new StoreError(m.message) : m.name === 'UsageError' ? new UsageError(m.message) : new DatagrantError(m.message));
            break;
          case 'log':
            this.opts.logger[m.level](m.obj, m.msg);
            break;
          case 'metrics':
            this.opts.onMetrics?.(m.metrics, this.metrics);
            this.metrics = m.metrics;
            break;
          case 'settled':
            this.#settling.get(m.id)?.();
            this.#settling.delete(m.id);
            break;
          case 'stopped':
            void worker.terminate();
            break;
        }
      });
      worker.on('error', (e: Error) => {
        this.opts.logger.error({ err: { name: e.name, message: e.message } }, 'the reconciler thread failed');
        if (!ready) reject(new DatagrantError(`the reconciler thread could not start: ${e.message}`));
      });
      worker.on('exit', () => {
        if (this.#worker === worker) this.#worker = undefined;
        // Nobody waits for a reconcile of a thread that is gone.
        for (const done of this.#settling.values()) done();
        this.#settling.clear();
        if (this.#stopping) return this.#stopped?.();
        if (!ready) return reject(new DatagrantError('the reconciler thread stopped while starting'));
        this.opts.logger.error({}, 'the reconciler thread stopped; starting it again');
        this.metrics = { ...ZERO_METRICS };
        this.#restart = setTimeout(() => {
          this.#restart = undefined;
          this.start().catch((e: Error) =>
            this.opts.logger.error({ err: { name: e.name, message: e.message } }, 'the reconciler thread could not be started again'),
          );
        }, this.opts.restartDelayMs ?? 1000);
      });
    });
  }

  /**
   * Ask for a reconcile soon (debounced in the thread). Under load many SCIM writes land in one
   * turn of the event loop; they make one message, sent once the turn's work is done.
   */
  trigger(opts: { full?: boolean } = {}): void {
    // A full run reads the backends whatever the SCIM work says: a decision on a request is no
    // SCIM write, and a run that only looks at SCIM's pending work would skip it.
    if (opts.full) this.#fullQueued = true;
    if (this.#triggerQueued) return;
    this.#triggerQueued = true;
    setImmediate(() => this.#flushTrigger());
  }

  /**
   * Run in full at `at` (ISO), or earlier: a session issued on the main thread ends then, and what
   * it leaves (a PostgreSQL login's open connections) must go with it, not at the next interval.
   * The earliest asked for is sent once per turn of the event loop.
   */
  wake(at: string): void {
    if (this.#wakeQueued !== undefined) {
      if (Date.parse(at) < Date.parse(this.#wakeQueued)) this.#wakeQueued = at;
      return;
    }
    this.#wakeQueued = at;
    setImmediate(() => {
      const when = this.#wakeQueued!;
      this.#wakeQueued = undefined;
      this.#post({ type: 'wake', at: when });
    });
  }

  #wakeQueued: string | undefined;

  #flushTrigger(): void {
    if (!this.#triggerQueued) return;
    this.#triggerQueued = false;
    const full = this.#fullQueued;
    this.#fullQueued = false;
    this.#post({ type: 'trigger', ...(full ? { full } : {}) });
  }

  /**
   * Resolves once no reconcile is running or scheduled. A trigger sent before this call is
   * seen first by the thread, so this waits for the reconcile a SCIM write asked for.
   */
  settled(): Promise<void> {
    if (!this.#worker) return Promise.resolve();
    this.#flushTrigger(); // a trigger asked for before this call goes first
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#settling.set(id, resolve);
      this.#post({ type: 'settle', id });
    });
  }

  /** Lets a running reconcile finish, then ends the thread. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restart) clearTimeout(this.#restart);
    const worker = this.#worker;
    if (!worker) return;
    await new Promise<void>((resolve) => {
      this.#stopped = resolve;
      worker.postMessage({ type: 'stop' } satisfies ToReconciler);
    });
  }

  #post(m: ToReconciler): void {
    this.#worker?.postMessage(m);
  }
}
