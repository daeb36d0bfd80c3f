// plan, apply, destroy, drift: the commands that compare the spec with the backends.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { converge, signPlan, type ConvergeGuards, type ConvergeOptions, type ConvergeResult } from '../../app/converge.js';
import type { ApplyEvent } from '../../apply/apply.js';
import { summarize } from '../../plan/diff.js';
import { UsageError } from '../../core/errors.js';
import type { Plan } from '../../core/types.js';
import { renderPlanJson, renderPlanText } from '../../render/text.js';
import type { StateStore } from '../../store/store.js';
import { actorOf, loadSpecFor, makeBackends, withMerged, withStore, type BackendOptions, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';
import { expireDue } from '../../app/requests.js';

export interface PlanOptions extends CommonOptions {
  json?: boolean;
  detailedExitcode?: boolean;
  out?: string;
  /** Read every credential with one call per user instead of the bulk summary. */
  exact?: boolean;
  color?: boolean;
  backendOptions?: BackendOptions;
}

type Loaded = ReturnType<typeof loadSpecFor>;

/**
 * The parts of a converge every command sets alike. The spec is loaded (and checked) by the
 * caller before the store is opened: bad input is reported before anything else is touched.
 */
async function convergeFor(
  io: Io,
  opts: CommonOptions & { backendOptions?: BackendOptions; exact?: boolean },
  store: StateStore,
  fromFile: Loaded,
  extra: Partial<ConvergeOptions> & Pick<ConvergeOptions, 'mode'>,
): Promise<ConvergeResult> {
  const now = io.now();
  const loaded = await withMerged(io, opts, fromFile, store);
  return converge({
    spec: loaded.spec,
    specHash: loaded.specHash,
    notices: loaded.notices,
    templates: loaded.templates,
    source: loaded.source,
    env: io.env,
    store,
    makeBackends: (backends, installation) => makeBackends({ backends }, { ...opts.backendOptions, installation }),
    actor: actorOf(io),
    now,
    exact: opts.exact ?? false,
    ...extra,
  });
}

/** `datagrant plan`: exit 0 (no changes, or any result without --detailed-exitcode), 2 (changes), 1 (error). */
export async function planCommand(io: Io, opts: PlanOptions): Promise<number> {
  const loaded = loadSpecFor(io, opts, io.now());
  const plan = await withStore(io, opts, async (store) => {
    const { plan } = await convergeFor(io, opts, store, loaded, { mode: 'plan' });
    if (opts.out) writeFileSync(resolve(io.cwd, opts.out), renderPlanJson(signPlan(plan, store)), { mode: 0o600 });
    return plan;
  });
  io.stdout(opts.json ? renderPlanJson(plan) : renderPlanText(plan, { color: opts.color ?? false }));
  if (opts.out && !opts.json) io.stdout(`\nSaved the plan to ${opts.out}. To perform exactly these actions, run: datagrant apply ${opts.out}\n`);
  return opts.detailedExitcode && plan.changes.length > 0 ? 2 : 0;
}

export interface ApplyOptions extends CommonOptions, ConvergeGuards {
  planFile?: string;
  autoApprove?: boolean;
  concurrency?: number;
  lockTimeoutMs?: number;
  destroy?: boolean;
  json?: boolean;
  color?: boolean;
  /** Credential slots to rotate regardless of age. */
  forceRotate?: string[];
  /** Credentials to delete now, grace or not (a slot: every one it holds). */
  revoke?: string[];
  /** Apply only the changes to these addresses (and superseded credentials of these slots). */
  only?: string[];
  backendOptions?: BackendOptions;
}

function progress(io: Io, total: () => number): (e: ApplyEvent) => void {
  let finished = 0;
  return (e) => {
    if (e.type === 'start') return;
    finished++;
    const n = `[${finished}/${total()}]`;
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
  // The summary is rendered for readers; the MAC covers the plan itself.
  delete (plan as Plan & { summary?: unknown }).summary;
  return plan;
}

/** `datagrant apply [PLANFILE]` and `datagrant destroy`. */
export async function applyCommand(io: Io, opts: ApplyOptions): Promise<number> {
  const saved = opts.planFile ? { plan: readPlanFile(resolve(io.cwd, opts.planFile)), file: opts.planFile } : undefined;
  const started = Date.now();
  let planned = 0;
  const loaded = loadSpecFor(io, opts, io.now());
  return withStore(io, opts, async (store) => {
    // Requests whose access has ended (or that nobody decided in time) are recorded as expired;
    // the plan no longer merges them, so this apply removes what they granted.
    if (!opts.destroy) await expireDue(store, loaded.spec, io.now(), actorOf(io));
    const out = await convergeFor(io, opts, store, loaded, {
      mode: 'apply',
      ...(saved ? { saved } : {}),
      destroy: opts.destroy ?? false,
      ...(opts.forceRotate ? { forceRotate: opts.forceRotate } : {}),
      ...(opts.revoke ? { revoke: opts.revoke } : {}),
      ...(opts.only ? { only: opts.only } : {}),
      allow: { massDestroy: opts.massDestroy ?? false, missingCredentials: opts.missingCredentials ?? false, adopt: opts.adopt ?? false },
      onMassEvent: 'refuse',
      lockTimeoutMs: opts.lockTimeoutMs ?? 0,
      concurrency: opts.concurrency ?? 8,
      clock: io.now,
      onRecover: (interrupted) =>
        io.stderr(
          `Recovering from an interrupted run: ${interrupted.length} change(s) were in flight (${interrupted
            .slice(0, 3)
            .map((j) => j.address)
            .join(', ')}${interrupted.length > 3 ? ', …' : ''}); the backends are read afresh and the plan below completes or undoes them.\n`,
        ),
      onPlan: (plan) => {
        planned = plan.changes.length;
        if (!opts.json) io.stdout(renderPlanText(plan, { color: opts.color ?? false }));
      },
      ...(opts.autoApprove
        ? {}
        : {
            confirm: async () => {
              if (!io.confirm)
                throw new UsageError('apply needs confirmation: run it in a terminal, pass --auto-approve, or apply a saved plan file (plan --out FILE)');
              return io.confirm(`\nDo you want to perform these actions? Only 'yes' will be accepted: `);
            },
          }),
      onEvent: progress(io, () => planned),
    });
    if (out.interrupted.length) {
      await store.audit(
        { actor: actorOf(io), event: 'apply.recover', address: null, outcome: 'ok', detail: `${out.interrupted.length} interrupted change(s)` },
        io.now().toISOString(),
      );
    }
    const { plan } = out;
    if (out.outcome === 'no-changes') {
      if (opts.json) io.stdout(`${JSON.stringify({ applied: 0, failed: [], skipped: [], summary: summarize(plan) })}\n`);
      return 0;
    }
    if (out.outcome === 'declined') {
      io.stderr('Apply cancelled.\n');
      return 1;
    }
    const result = out.result!;
    const code = out.outcome === 'applied' ? 0 : 1;
    return report(io, opts, plan, result, code, started, out.retries);
  });
}

function report(io: Io, opts: ApplyOptions, plan: Plan, result: NonNullable<ConvergeResult['result']>, code: number, started: number, retries: number): number {
  const s = summarize(plan);
  const issued = plan.changes.filter(
    (c) =>
      (c.kind === 'key' || c.kind === 'password') &&
      (c.action === 'create' || c.action === 'replace') &&
      !result.failed.some((f) => f.address === c.address) &&
      !result.skipped.includes(c.address),
  );
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
    io.stdout(
      `New credentials are stored encrypted for: ${issued.map((c) => c.after?.name ?? c.address).join(', ')}.\n${
        !result.ready
          ? ''
          : result.ready.notYet.length === 0
            ? `Each was confirmed usable before this report (the longest wait: ${(result.ready.maxMs / 1000).toFixed(1)} s).\n`
            : `Still refused by the backend after ${(result.ready.maxMs / 1000).toFixed(1)} s, so give them a little longer: ${result.ready.notYet.join(', ')}.\n`
      }Hand one out with: datagrant credentials export NAME --format env\n`,
    );
  }
  return code;
}

/** `datagrant drift`: exact read; exit 0 when the backends hold what datagrant applied, 2 on drift. */
export async function driftCommand(io: Io, opts: PlanOptions): Promise<number> {
  const loaded = loadSpecFor(io, opts, io.now());
  const plan = await withStore(io, opts, async (store) => (await convergeFor(io, { ...opts, exact: true }, store, loaded, { mode: 'plan' })).plan);
  const drift = { ...plan, changes: plan.changes.filter((c) => c.drift), notices: [] };
  if (opts.json) io.stdout(renderPlanJson(drift));
  else if (drift.changes.length === 0)
    io.stdout(`No drift. ${plan.changes.length ? `(${plan.changes.length} change(s) pending from the spec; see plan.)` : ''}\n`);
  else io.stdout(renderPlanText(drift, { color: opts.color ?? false }) + 'Run `datagrant apply` to revert the drift.\n');
  return drift.changes.length ? 2 : 0;
}
