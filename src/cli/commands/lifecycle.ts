// plan, apply, destroy, drift: the commands that compare the spec with the backends.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadSpec, makePlan, pruneStore, readActual, readSpecFile } from '../../app/engine.js';
import { applyPlan, type ApplyEvent, type ApplyResult } from '../../apply/apply.js';
import { actualHash, summarize } from '../../plan/diff.js';
import { ApplyError, StalePlanError, UsageError } from '../../core/errors.js';
import type { Plan } from '../../core/types.js';
import { renderPlanJson, renderPlanText } from '../../render/text.js';
import type { StateStore } from '../../store/store.js';
import {
  actorOf,
  displayPath,
  loadSpecFor,
  makeBackends,
  specPath,
  withBackends,
  withScimPeople,
  withStore,
  type BackendOptions,
  type CommonOptions,
} from '../context.js';
import type { Io } from '../io.js';

export interface PlanOptions extends CommonOptions {
  json?: boolean;
  detailedExitcode?: boolean;
  out?: string;
  /** Read every credential with one call per user instead of the bulk summary. */
  exact?: boolean;
  color?: boolean;
  backendOptions?: BackendOptions;
}

/** `datagrant plan`: exit 0 (no changes, or any result without --detailed-exitcode), 2 (changes), 1 (error). */
export async function planCommand(io: Io, opts: PlanOptions): Promise<number> {
  const now = io.now();
  const loaded = loadSpecFor(io, opts, now);
  const plan = await withStore(io, opts, async (store) =>
    withBackends(makeBackends(loaded.spec, opts.backendOptions), async (backends) => {
      const actual = await readActual(backends, store, { exact: opts.exact ?? false });
      return makePlan({ ...(await withScimPeople(io, opts, loaded)), actual, store, now });
    }),
  );
  if (opts.out) writeFileSync(resolve(io.cwd, opts.out), renderPlanJson(plan), { mode: 0o600 });
  io.stdout(opts.json ? renderPlanJson(plan) : renderPlanText(plan, { color: opts.color ?? false }));
  if (opts.out && !opts.json) io.stdout(`\nSaved the plan to ${opts.out}. To perform exactly these actions, run: datagrant apply ${opts.out}\n`);
  return opts.detailedExitcode && plan.changes.length > 0 ? 2 : 0;
}

export interface ApplyOptions extends CommonOptions {
  planFile?: string;
  autoApprove?: boolean;
  concurrency?: number;
  lockTimeoutMs?: number;
  destroy?: boolean;
  json?: boolean;
  color?: boolean;
  /** Credential slots to rotate regardless of age. */
  forceRotate?: string[];
  /** Apply only the changes to these addresses (and superseded credentials of these slots). */
  only?: string[];
  backendOptions?: BackendOptions;
}

function progress(io: Io, total: number): (e: ApplyEvent) => void {
  let finished = 0;
  return (e) => {
    if (e.type === 'start') return;
    finished++;
    const n = `[${finished}/${total}]`;
    if (e.type === 'failed') io.stderr(`${n} ${e.change.address}: ${e.change.action} failed: ${e.message}\n`);
    else if (e.type === 'skipped') io.stderr(`${n} ${e.change.address}: skipped (depends on ${e.because}, which did not complete)\n`);
    else if (io.isTTY) io.stderr(`${n} ${e.change.address}: ${e.change.action} done (${e.ms} ms)\n`);
  };
}

function readPlanFile(file: string): Plan {
  let plan: Plan;
  try {
    plan = JSON.parse(readFileSync(file, 'utf8')) as Plan;
  } catch (e) {
    throw new UsageError(`cannot read the plan file ${file}: ${(e as Error).message}`);
  }
  if (plan?.formatVersion !== 1 || !Array.isArray(plan.changes)) {
    throw new UsageError(`${file} is not a datagrant plan (made by \`datagrant plan --out FILE\`)`);
  }
  return plan;
}

/** `datagrant apply [PLANFILE]` and `datagrant destroy`. */
export async function applyCommand(io: Io, opts: ApplyOptions): Promise<number> {
  const now = io.now();
  const saved = opts.planFile ? readPlanFile(resolve(io.cwd, opts.planFile)) : undefined;
  const file = specPath(io, opts);
  const src = readSpecFile(file);
  const loaded = loadSpec({ file: displayPath(io, file), text: src.text }, io.env, now);
  if (saved && saved.specHash !== loaded.specHash) {
    throw new StalePlanError(`the spec ${displayPath(io, file)} changed since the plan ${opts.planFile} was made; run plan again`);
  }
  const actor = actorOf(io);

  return withStore(io, opts, async (store) => {
    await store.acquireLock(`${actor} (${opts.destroy ? 'destroy' : 'apply'})`, opts.lockTimeoutMs ?? 0);
    try {
      const interrupted = await store.recoverJournal();
      if (interrupted.length) {
        io.stderr(`Recovering from an interrupted run: ${interrupted.length} change(s) were in flight (${interrupted.slice(0, 3).map((j) => j.address).join(', ')}${interrupted.length > 3 ? ', …' : ''}); the backends are read afresh and the plan below completes or undoes them.\n`);
        await store.audit({ actor, event: 'apply.recover', address: null, outcome: 'ok', detail: `${interrupted.length} interrupted change(s)` }, now.toISOString());
      }
      return await withBackends(makeBackends(loaded.spec, opts.backendOptions), async (backends) => {
        let actual = await readActual(backends, store);
        const pruned = await pruneStore(actual, store, actor, now);
        if (pruned) actual = await readActual(backends, store);
        let plan: Plan;
        if (saved) {
          for (const [name, state] of Object.entries(actual)) {
            if (saved.actualHashes[name] !== actualHash(state)) {
              throw new StalePlanError(`backend ${name} changed since the plan ${opts.planFile} was made (someone else applied, or an object was edited); run plan again`);
            }
          }
          plan = saved;
        } else {
          plan = await makePlan({ ...(await withScimPeople(io, opts, loaded)), actual, store, now, destroy: opts.destroy ?? false, ...(opts.forceRotate ? { forceRotate: opts.forceRotate } : {}) });
          const only = opts.only;
          if (only) plan = { ...plan, changes: plan.changes.filter((c) => only.some((a) => c.address === a || c.address.startsWith(`${a}~`))) };
        }
        if (!opts.json) io.stdout(renderPlanText(plan, { color: opts.color ?? false }));
        if (plan.changes.length === 0) {
          if (opts.json) io.stdout(`${JSON.stringify({ applied: 0, failed: [], skipped: [], summary: summarize(plan) })}\n`);
          return 0;
        }
        if (!saved && !opts.autoApprove) {
          if (!io.confirm) throw new UsageError('apply needs confirmation: run it in a terminal, pass --auto-approve, or apply a saved plan file (plan --out FILE)');
          const ok = await io.confirm(`\nDo you want to perform these actions? Only 'yes' will be accepted: `);
          if (!ok) {
            io.stderr('Apply cancelled.\n');
            return 1;
          }
        }
        return runApply(io, plan, store, backends, opts, actor);
      });
    } finally {
      await store.releaseLock();
    }
  });
}

async function runApply(io: Io, plan: Plan, store: StateStore, backends: Parameters<typeof applyPlan>[1]['backends'], opts: ApplyOptions, actor: string): Promise<number> {
  const started = Date.now();
  let result: ApplyResult;
  let code = 0;
  try {
    result = await applyPlan(plan, { backends, store, actor, concurrency: opts.concurrency ?? 8, onEvent: progress(io, plan.changes.length), clock: io.now });
  } catch (e) {
    if (!(e instanceof ApplyError)) throw e;
    result = (e as ApplyError & { result: ApplyResult }).result;
    code = 1;
  }
  const retries = Object.values(backends).reduce((n, b) => n + b.stats().retries, 0);
  const s = summarize(plan);
  const issued = plan.changes.filter((c) => (c.kind === 'key' || c.kind === 'password') && (c.action === 'create' || c.action === 'replace') && !result.failed.some((f) => f.address === c.address) && !result.skipped.includes(c.address));
  if (opts.json) {
    io.stdout(`${JSON.stringify({ ...result, retries, seconds: (Date.now() - started) / 1000, summary: s }, null, 2)}\n`);
    return code;
  }
  io.stdout(
    code === 0
      ? `\nApply complete! Changes: ${s.add} added, ${s.change} changed, ${s.destroy} destroyed (${((Date.now() - started) / 1000).toFixed(1)} s${retries ? `, ${retries} transient error(s) retried` : ''}).\n`
      : `\nApply failed: ${result.failed.length} change(s) failed, ${result.skipped.length} skipped, ${result.applied} applied. Run apply again to retry; nothing applied is lost.\n`,
  );
  if (issued.length) {
    io.stdout(`New credentials are stored encrypted for: ${issued.map((c) => c.after?.name ?? c.address).join(', ')}.\nHand one out with: datagrant credentials export NAME --format env\n`);
  }
  return code;
}

/** `datagrant drift`: exact read; exit 0 when the backends hold what datagrant applied, 2 on drift. */
export async function driftCommand(io: Io, opts: PlanOptions): Promise<number> {
  const now = io.now();
  const loaded = loadSpecFor(io, opts, now);
  const plan = await withStore(io, opts, async (store) =>
    withBackends(makeBackends(loaded.spec, opts.backendOptions), async (backends) => {
      const actual = await readActual(backends, store, { exact: true });
      return makePlan({ ...(await withScimPeople(io, opts, loaded)), actual, store, now });
    }),
  );
  const drift = { ...plan, changes: plan.changes.filter((c) => c.drift), notices: [] };
  if (opts.json) io.stdout(renderPlanJson(drift));
  else if (drift.changes.length === 0) io.stdout(`No drift. ${plan.changes.length ? `(${plan.changes.length} change(s) pending from the spec; see plan.)` : ''}\n`);
  else io.stdout(renderPlanText(drift, { color: opts.color ?? false }) + 'Run `datagrant apply` to revert the drift.\n');
  return drift.changes.length ? 2 : 0;
}
