// The I/O shell around the pure core: read the spec file, build backends, read actual state,
// diff. Shared by the CLI and `serve`.
import { readFileSync } from 'node:fs';
import type { Backend } from '../backends/backend.js';
import { compile } from '../compile/index.js';
import { sha256 } from '../core/canonical.js';
import { SpecError } from '../core/errors.js';
import type { ActualState, Notice, Plan } from '../core/types.js';
import { diff } from '../plan/diff.js';
import { parseSpec, type LoadedSpec } from '../spec/load.js';
import type { Spec } from '../spec/schema.js';
import type { StateStore } from '../store/store.js';

export interface SpecSource {
  file: string;
  text: string;
}

export function readSpecFile(file: string): SpecSource {
  try {
    return { file, text: readFileSync(file, 'utf8') };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new SpecError([{ file, line: 0, column: 0, path: '', message: `cannot read the spec: ${why}` }]);
  }
}

export function loadSpec(src: SpecSource, env: NodeJS.ProcessEnv, now: Date): LoadedSpec & { specHash: string } {
  const loaded = parseSpec(src.text, { file: src.file, env, now });
  return { ...loaded, specHash: sha256(src.text) };
}

export async function readActual(
  backends: Record<string, Backend>,
  store: StateStore,
  opts: { exact?: boolean } = {},
): Promise<Record<string, ActualState>> {
  const credentials = await store.credentials();
  const entries = await Promise.all(
    Object.entries(backends).map(async ([name, b]) => {
      const mine = credentials.filter((c) => c.backend === name);
      return [name, await b.read({ credentials: mine, exact: opts.exact ?? false })] as const;
    }),
  );
  return Object.fromEntries(entries);
}

export interface PlanInput {
  spec: Spec;
  specHash: string;
  notices: Notice[];
  actual: Record<string, ActualState>;
  store: StateStore;
  now: Date;
  /** Plan the removal of everything datagrant owns on the spec's backends. */
  destroy?: boolean;
  /** Credential slots to rotate now, whatever their age. */
  forceRotate?: string[];
}

export async function makePlan(input: PlanInput): Promise<Plan> {
  const compiled = compile(input.spec, input.now);
  const desired = input.destroy
    ? Object.fromEntries(Object.keys(compiled.desired).map((b) => [b, { resources: [], notices: [] }]))
    : compiled.desired;
  const notices = input.destroy ? [] : compiled.notices;
  return diff(desired, input.actual, {
    ...(input.forceRotate ? { forceRotate: input.forceRotate } : {}),
    now: input.now,
    specHash: input.specHash,
    applied: await input.store.applied(),
    notices: [...input.notices, ...notices],
  });
}

/**
 * Credentials the store holds for keys that no longer exist in the backend (deleted outside
 * datagrant, or a run died between deleting a key and erasing it): erase them, so the store
 * never holds a secret for a key that does not exist.
 */
export async function pruneStore(
  actual: Record<string, ActualState>,
  store: StateStore,
  actor: string,
  now: Date,
): Promise<number> {
  const present = new Set<string>();
  for (const state of Object.values(actual)) {
    for (const r of state.resources) {
      const id = r.meta?.credentialId ?? r.meta?.accessKeyId;
      if (typeof id === 'string') present.add(`${r.backend}#${id}`);
    }
  }
  let erased = 0;
  for (const c of await store.credentials()) {
    if (!(c.backend in actual)) continue;
    if (present.has(`${c.backend}#${c.credentialId}`)) continue;
    await store.eraseCredential(c.address, c.credentialId);
    await store.audit({ actor, event: 'credential.erase', address: c.address, outcome: 'ok', detail: `id ${c.credentialId} no longer exists in the backend` }, now.toISOString());
    erased++;
  }
  return erased;
}
