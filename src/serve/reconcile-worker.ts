// The reconciler's own thread. `datagrant serve` answers SCIM on the main thread and reconciles
// here, so that reading the spec, the identities and the backends, planning and applying never
// hold up a SCIM request. This thread opens its own connections to the state store and the SCIM
// tables; the main thread sends it triggers and settle requests, and it sends back what each
// reconcile did and its log lines (the main thread's logger writes them).
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { makeBackends } from '../backends/factory.js';
import { mergedSpec } from '../app/requests.js';
import type { ScimStore } from '../scim/store/store.js';
import { SqliteScimStore } from '../scim/store/sqlite.js';
import { openScimStoreAt } from '../scim/store/open.js';
import { openStore } from '../store/open.js';
import type { StateStore } from '../store/store.js';
import { Reconciler, type ReconcileLogger } from './reconcile.js';
import type { ToReconciler, FromReconciler, ReconcilerConfig } from './reconcile-thread.js';

// As bin/datagrant.js does for the main thread (a thread has its own process.emitWarning).
// Reconciles are background work: where a thread has a nice value of its own (Linux), this one
// yields the CPU to the thread answering SCIM requests when both want it. Elsewhere, no change.
try {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  if (Number.isInteger(tid) && tid > 0) setPriority(tid, 10);
} catch {
  // not Linux, or not allowed: same priority as the server
}
const port = parentPort;
if (!port) throw new Error('reconcile-worker.ts runs as a worker thread of `datagrant serve`');
const config = workerData as ReconcilerConfig;
const post = (m: FromReconciler) => port.postMessage(m);

const logger: ReconcileLogger = {
  debug: (obj, msg) => post({ type: 'log', level: 'debug', obj, msg }),
  info: (obj, msg) => post({ type: 'log', level: 'info', obj, msg }),
  warn: (obj, msg) => post({ type: 'log', level: 'warn', obj, msg }),
  error: (obj, msg) => post({ type: 'log', level: 'error', obj, msg }),
};

let store: StateStore | undefined;
let scim: ScimStore | undefined;
try {
  store = await openStore(config.paths, config.env);
  scim = await openScimStoreAt(config.paths, config.env);
} catch (e) {
  await store?.close();
  post({ type: 'fatal', name: (e as Error).name, message: (e as Error).message });
  port.close();
}

/** How often this thread moves the SCIM store's write-ahead log into the database (serve.ts says why). */
const CHECKPOINT_MS = 200;

if (store && scim) {
  const identities = scim;
  const scimDb = scim instanceof SqliteScimStore ? scim.db : undefined;
  // PASSIVE: never waits for the serving thread's readers or writers, and costs nothing when
  // there is nothing to copy.
  const checkpoints = scimDb
    ? setInterval(() => {
        try {
          scimDb.pragma('wal_checkpoint(PASSIVE)');
        } catch (e) {
          logger.warn({ err: e }, 'SCIM store checkpoint failed');
        }
      }, CHECKPOINT_MS)
    : undefined;
  const stateStore = store;
  const reconciler = new Reconciler({
    specFile: config.specFile,
    env: config.env,
    store,
    merge: (spec, now) => mergedSpec(spec, { scim: identities, requests: stateStore }, now),
    pending: identities,
    pollMs: config.pollMs,
    makeBackends: (backends, installation) => makeBackends({ backends }, { installation }),
    logger,
    debounceMs: config.debounceMs,
    intervalMs: config.intervalMs,
    actor: config.actor,
    onDone: (metrics) => post({ type: 'metrics', metrics }),
  });

  port.on('message', (m: ToReconciler) => {
    switch (m.type) {
      case 'trigger':
        reconciler.trigger({ full: m.full === true });
        break;
      case 'wake':
        reconciler.wakeBy(new Date(m.at));
        break;
      case 'settle':
        void reconciler.settled().then(() => post({ type: 'settled', id: m.id }));
        break;
      case 'stop':
        void (async () => {
          clearInterval(checkpoints);
          await reconciler.stop();
          await identities.close();
          await stateStore.close();
          post({ type: 'stopped' });
          port.close();
        })();
        break;
    }
  });
  reconciler.start();
  post({ type: 'ready' });
}
