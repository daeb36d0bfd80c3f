// What the web console (serve, /ui) reads beyond the spec and the state: a plan that is only shown
// (converge in plan mode, as `datagrant plan` runs it, invariants judged as serve judges them) and
// an effective-access reading (as `datagrant access`). Both call the backends, so serve runs them
// only when an operator asks, one at a time, and keeps the last reading.
import type { Plan } from '../core/types.js';
import type { AccessReport } from '../model/access.js';
import type { Spec } from '../spec/schema.js';
import type { StateStore } from '../store/store.js';
import { runAccessReport } from './access.js';
import { makeBackends } from './context.js';
import { converge } from './converge.js';
import type { LoadedSpec } from '../spec/load.js';

export interface ReadOptions {
  /** The spec as loaded from the file (its hash, notices, templates, positions). */
  loaded: LoadedSpec & { specHash: string };
  /** The same spec with SCIM people and approved requests merged in (mergedSpec). */
  merged: Spec;
  specFile: string;
  env: NodeJS.ProcessEnv;
  store: StateStore;
  actor: string;
  now: Date;
}

/** The plan a reconcile would make now; nothing is applied. */
export async function previewPlan(o: ReadOptions): Promise<Plan> {
  const { plan } = await converge({
    mode: 'plan',
    spec: o.merged,
    specHash: o.loaded.specHash,
    notices: o.loaded.notices,
    templates: o.loaded.templates,
    source: o.loaded.source,
    env: o.env,
    store: o.store,
    makeBackends: (backends, installation) => makeBackends({ backends }, { installation }),
    actor: o.actor,
    now: o.now,
    // As serve's reconciles judge it: what breaks an invariant is left out, and shown as such.
    onInvariantBroken: 'withhold',
  });
  return plan;
}

/** Effective access as the backends hold it, beside the spec (the access report, unfiltered). */
export async function readEffectiveAccess(o: ReadOptions): Promise<AccessReport> {
  return runAccessReport({
    spec: o.merged,
    specHash: o.loaded.specHash,
    specFile: o.specFile,
    store: o.store,
    makeBackends: (backends, installation) => makeBackends({ backends }, { installation }),
    now: o.now,
    filters: {},
  });
}
