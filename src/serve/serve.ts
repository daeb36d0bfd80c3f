// `datagrant serve`: the SCIM 2.0 service provider plus the reconciler, in one process: SCIM on
// the main thread, reconciles in a thread of their own (reconcile-worker.ts).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { hostname, userInfo } from 'node:os';
import { pino, type Logger } from 'pino';
import { UsageError } from '../core/errors.js';
import type { Io } from '../app/io.js';
import { displayPath, pathsFor, specPath, type CommonOptions } from '../app/context.js';
import { previewPlan, readEffectiveAccess, type ReadOptions } from '../app/console.js';
import { loadSpec, readSpecFile } from '../app/engine.js';
import { mergedSpec } from '../app/requests.js';
import { createSessionBroker } from '../app/sessions.js';
import type { SessionBroker } from '../app/sessions-port.js';
import { makeBackends } from '../backends/factory.js';
import { MetricsRegistry } from '../scim/metrics.js';
import { buildScimServer } from '../scim/server.js';
import type { ScimStore } from '../scim/store/store.js';
import { SqliteScimStore } from '../scim/store/sqlite.js';
import { openScimStoreAt } from '../scim/store/open.js';
import { openStore } from '../store/open.js';
import type { StateStore } from '../store/store.js';
import { adminTokenHashes, registerConsole } from './console.js';
import { registerCredentialsRoute } from './credentials.js';
import { credentialDirectory, requestsDirectory, serveSpec } from './credentials-directory.js';
import { registerRequestRoutes } from './requests.js';
import { ReconcilerThread } from './reconcile-thread.js';
import { specPrincipalNames } from './spec-names.js';

/** Pages of the SCIM store's log past which the serving connection checkpoints itself (SQLite's default: 1,000). */
const SCIM_WAL_FALLBACK_PAGES = 10_000;

export interface ServeOptions extends CommonOptions {
  host?: string;
  port?: number;
  tlsCert?: string;
  tlsKey?: string;
  /** Reconcile at least this often, in seconds, even without SCIM changes. */
  intervalSeconds?: number;
  /** Wait this long after a SCIM change for more before reconciling. */
  debounceMs?: number;
  /** Look for SCIM changes pending in the store (any replica's) this often. Default 300 ms. */
  pollMs?: number;
  /** Names this replica in the audit log and the lock: default `DATAGRANT_REPLICA_ID`, else `<hostname>:<pid>`. */
  replicaId?: string;
  /** Trust X-Forwarded-* from a TLS-terminating proxy in front. */
  trustProxy?: boolean;
  /** pino level: fatal, error, warn, info (default; one line per request), debug, trace, silent. */
  logLevel?: string;
  logger?: Logger;
  /** The web console's URL as browsers reach it (its sign-in redirect URI); default: from each request. */
  publicUrl?: string;
  /** Issues the sessions of POST /v1/credentials/:backend (with settings.oidc in the spec). */
  sessionBroker?: SessionBroker;
}

export interface RunningServer {
  url: string;
  reconciler: ReconcilerThread;
  scim: ScimStore;
  close(): Promise<void>;
}

/** Token hashes from `DATAGRANT_SCIM_TOKEN_SHA256` (comma-separated sha256 hex); tokens are never configured in clear. */
export function tokenHashes(env: NodeJS.ProcessEnv): string[] {
  const raw = env.DATAGRANT_SCIM_TOKEN_SHA256 ?? '';
  const hashes = raw
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  if (hashes.length === 0) {
    throw new UsageError(
      'no SCIM bearer token configured: set DATAGRANT_SCIM_TOKEN_SHA256 to the sha256 (hex) of each accepted token, comma-separated; `datagrant scim-token` makes one',
    );
  }
  for (const h of hashes)
    if (!/^[0-9a-f]{64}$/i.test(h))
      throw new UsageError(
        `DATAGRANT_SCIM_TOKEN_SHA256 holds ${JSON.stringify(h.slice(0, 12))}…, which is not a sha256 in hex (64 hex digits); configure the hash of the token, never the token itself`,
      );
  return hashes;
}

export async function startServe(io: Io, opts: ServeOptions): Promise<RunningServer> {
  const hashes = tokenHashes(io.env);
  let adminHashes: Buffer[];
  try {
    adminHashes = adminTokenHashes(io.env.DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (opts.publicUrl !== undefined && !/^https?:\/\/[^/?#]+\/?$/.test(opts.publicUrl))
    throw new UsageError(`--public-url ${JSON.stringify(opts.publicUrl)} is not a site's URL; use one such as https://datagrant.example.com (no path)`);
  const paths = pathsFor(io, opts);
  // Log lines are written asynchronously (batched while a write is in flight), never by a SCIM
  // request's own thread waiting on a write(2); pino flushes what is left when the process exits.
  const logger =
    opts.logger ??
    pino(
      { name: 'datagrant', level: opts.logLevel ?? 'info', redact: ['req.headers.authorization', 'headers.authorization'] },
      pino.destination({ dest: 1, sync: false }),
    );
  const https = opts.tlsCert || opts.tlsKey ? loadTls(opts) : undefined;
  const metrics = new MetricsRegistry();
  const duration = metrics.histogram('datagrant_reconcile_duration_seconds', 'Time one reconcile took (read, plan and apply).');
  const applied = metrics.counter('datagrant_changes_applied_total', 'Changes applied by reconciles.');
  const failures = metrics.counter('datagrant_reconcile_failures_total', 'Reconciles that failed.');
  const massEvents = metrics.counter(
    'datagrant_mass_deprovisioning_events_total',
    'Mass deprovisioning events: access was revoked reversibly and the deletions held for a person to confirm.',
  );
  const held = metrics.gauge(
    'datagrant_held_deletions',
    'Deletions held by a mass deprovisioning event until `datagrant apply --allow-mass-destroy` confirms them.',
  );
  const withheld = metrics.counter(
    'datagrant_invariant_withheld_total',
    "Grants a reconcile withheld because they break one of the spec's invariants (the rest of the reconcile applied); the log names each.",
  );
  const skipped = metrics.counter(
    'datagrant_reconcile_skipped_total',
    'Reconciles that stopped early: another replica or a CLI apply held the lock (retried), a SCIM change left the desired and applied state as they were, or another run had covered every pending SCIM change.',
  );

  // Reconciles run in a thread of their own, so that SCIM requests never wait behind one.
  const reconciler = new ReconcilerThread({
    config: {
      specFile: specPath(io, opts),
      paths,
      // The backends' SDKs read credentials from the environment: the process's, plus what the caller passed.
      env: { ...process.env, ...io.env },
      debounceMs: opts.debounceMs ?? 100,
      intervalMs: (opts.intervalSeconds ?? 300) * 1000,
      pollMs: opts.pollMs ?? 300,
      actor: serveActor(io, opts.replicaId),
    },
    logger,
    // One message per reconcile: what moved since the previous one is what that reconcile did.
    onMetrics: (now, before) => {
      if (now.runs > before.runs) duration.observe(now.lastDurationSeconds);
      const count = (c: typeof applied, by: number, labels = {}) => {
        if (by > 0) c.inc(labels, by);
      };
      count(applied, now.changesApplied - before.changesApplied);
      count(failures, now.failures - before.failures);
      count(skipped, now.skippedLocked - before.skippedLocked, { reason: 'locked' });
      count(skipped, now.skippedUnchanged - before.skippedUnchanged, { reason: 'unchanged' });
      count(skipped, now.skippedCovered - before.skippedCovered, { reason: 'covered' });
      count(massEvents, now.massEvents - before.massEvents);
      count(withheld, now.invariantsWithheld - before.invariantsWithheld);
      held.set(now.heldDeletions);
    },
  });
  // The thread opens the state store first: a missing master key or store is reported from there.
  let scim: ScimStore;
  try {
    await reconciler.start();
    scim = await openScimStoreAt(paths, io.env);
    // SQLite copies its write-ahead log back into the database (and syncs it to disk) inside
    // whichever commit crosses a threshold: every few hundred writes, one SCIM request waited
    // for it (p99.9 of an INSERT 7.5 ms, against 0.02 ms typical). The reconciler thread does
    // that work instead (reconcile-worker.ts); this connection only does it itself if the log
    // grows far past the default, should that thread fall behind.
    if (scim instanceof SqliteScimStore) scim.db.pragma(`wal_autocheckpoint = ${SCIM_WAL_FALLBACK_PAGES}`);
  } catch (e) {
    await reconciler.stop();
    throw e;
  }

  const app = buildScimServer({
    store: scim,
    tokenHashes: hashes,
    logger,
    metrics,
    onChange: () => reconciler.trigger(),
    // The console answers for all of /ui, its not-found pages too (registerConsole).
    ownAuthPrefixes: ['/ui'],
    // A new user's principal name is its own for good: never one the spec defines now.
    reservedNames: specPrincipalNames(specPath(io, opts)),
    ...(opts.trustProxy ? { trustProxy: true } : {}),
    ...(https ? { https } : {}),
  });
  // The credential and requests endpoints write the state (audit, sessions, requests) through a
  // connection of their own, opened when first needed: the reconciler thread's is on another thread.
  let state: Promise<StateStore> | undefined;
  const stateStore = () =>
    (state ??= openStore(paths, io.env).catch((e: unknown) => {
      state = undefined;
      throw e;
    }));
  const specSource = {
    specFile: specPath(io, opts),
    displayFile: displayPath(io, specPath(io, opts)),
    // As the reconciler reads the spec: ${VAR} from the process's environment plus the caller's.
    env: { ...process.env, ...io.env },
    scim,
    requests: stateStore,
    now: io.now,
  };
  const specNow = serveSpec(specSource);
  // The broker records sessions through that connection too, and keeps its drivers open between
  // requests. Each replica records its own; the session log keeps the latest of every field.
  const ownBroker = opts.sessionBroker
    ? undefined
    : createSessionBroker({
        spec: specNow,
        store: stateStore,
        makeBackend: (name, spec, installation) => makeBackends({ backends: { [name]: spec } }, { installation })[name]!,
        now: io.now,
      });
  registerCredentialsRoute(app, {
    directory: credentialDirectory(specSource, specNow),
    audit: async (entry, at) => (await stateStore()).audit(entry, at),
    metrics,
    now: io.now,
    broker: wakingBroker(opts.sessionBroker ?? ownBroker, reconciler),
  });
  const directory = requestsDirectory(specSource);
  registerRequestRoutes(app, {
    directory,
    store: stateStore,
    // A decision is no SCIM write: the reconcile it needs reads the backends whatever SCIM says.
    onAccessChanged: () => reconciler.trigger({ full: true }),
    now: io.now,
  });
  // What the console's operator pages read from the backends: the spec as a reconcile reads it.
  const readOptions = async (): Promise<ReadOptions> => {
    const at = io.now();
    const loaded = loadSpec({ file: specSource.displayFile, text: readSpecFile(specSource.specFile).text }, specSource.env, at);
    const store = await stateStore();
    const merged = await mergedSpec(loaded.spec, { scim, requests: store }, at);
    return { loaded, merged: merged.spec, specFile: specSource.displayFile, env: specSource.env, store, actor: serveActor(io, opts.replicaId), now: at };
  };
  registerConsole(app, {
    spec: specNow,
    directory,
    store: stateStore,
    onAccessChanged: () => reconciler.trigger({ full: true }),
    reads: { plan: async () => previewPlan(await readOptions()), access: async () => readEffectiveAccess(await readOptions()) },
    adminTokenHashes: adminHashes,
    ...(io.env.DATAGRANT_CONSOLE_CLIENT_SECRET ? { clientSecret: io.env.DATAGRANT_CONSOLE_CLIENT_SECRET } : {}),
    ...(opts.publicUrl ? { publicUrl: opts.publicUrl.replace(/\/$/, '') } : {}),
    // Built next to the server's code: dist/ui (see ui/tsconfig.json), from src/serve and dist/serve alike.
    assetsDir: fileURLToPath(new URL('../../dist/ui/', import.meta.url)),
    now: io.now,
  });
  const closeState = async () => {
    await ownBroker?.close();
    const s = await state?.catch(() => undefined);
    await s?.close();
  };
  // /healthz answers 503, with the reason, while the store cannot be reached: SCIM writes would
  // fail, and a load balancer should send the IdP to a replica that can take them.
  app.addHook('onRequest', async (req, reply) => {
    if (req.url !== '/healthz' && !req.url.startsWith('/healthz?')) return;
    const problem = await storeProblem(scim, logger);
    if (problem)
      return reply
        .code(503)
        .header('content-type', 'application/json')
        .send(JSON.stringify({ status: 'unavailable', reason: problem }));
  });
  let address: string;
  try {
    address = await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8080 });
  } catch (e) {
    await reconciler.stop();
    await scim.close();
    await closeState();
    throw new UsageError(`cannot listen on ${opts.host ?? '127.0.0.1'}:${opts.port ?? 8080}: ${(e as Error).message}`);
  }
  logger.info({ url: address, spec: specPath(io, opts), store: io.env.DATAGRANT_STORE_URL ? 'postgres' : paths.dir }, 'datagrant serve is listening');
  return {
    url: address,
    reconciler,
    scim,
    close: async () => {
      await app.close();
      await reconciler.stop();
      await scim.close();
      await closeState();
    },
  };
}

/** How long /healthz waits for the store before it counts as unreachable. */
const HEALTH_TIMEOUT_MS = 2000;

/**
 * Why the store cannot serve SCIM now, or undefined when it answers. /healthz needs no token, so
 * its answer names the error's code only; the message (hosts, ports) goes to the log.
 */
async function storeProblem(scim: ScimStore, logger: Logger): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`the store did not answer within ${HEALTH_TIMEOUT_MS / 1000} s`), HEALTH_TIMEOUT_MS);
  });
  try {
    return await Promise.race([
      scim.work().then(
        () => undefined,
        (e: Error & { code?: unknown }) => {
          logger.warn({ err: { name: e.name, message: e.message } }, 'health check: the store cannot be reached');
          return `the store cannot be reached${typeof e.code === 'string' ? ` (${e.code})` : ''}`;
        },
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Who applies this replica's changes, in the audit log and the lock: the user (DATAGRANT_ACTOR, or
 * the account serve runs as) at this replica, so that an entry says which replica made it.
 */
export function serveActor(io: Io, replicaId?: string): string {
  const who = io.env.DATAGRANT_ACTOR ?? io.env.USER ?? io.env.LOGNAME ?? userInfo().username;
  const replica = replicaId ?? io.env.DATAGRANT_REPLICA_ID ?? `${hostname()}:${process.pid}`;
  return `${who}@${replica} (serve)`;
}

function loadTls(opts: ServeOptions): { key: Buffer; cert: Buffer } {
  if (!opts.tlsCert || !opts.tlsKey) throw new UsageError('TLS needs both --tls-cert and --tls-key');
  try {
    return { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) };
  } catch (e) {
    throw new UsageError(`cannot read the TLS certificate or key: ${(e as Error).message}`);
  }
}

/**
 * The broker as the endpoint uses it: each session issued tells the reconciler when it ends, so
 * that what it leaves behind (a PostgreSQL login's open connections) goes then, not at the next
 * interval.
 */
function wakingBroker(broker: SessionBroker | undefined, reconciler: Pick<ReconcilerThread, 'wake'>): SessionBroker | undefined {
  if (!broker) return undefined;
  return {
    issue: async (req) => {
      const session = await broker.issue(req);
      reconciler.wake(session.kind === 'aws' ? session.expiration : session.validUntil);
      return session;
    },
  };
}
