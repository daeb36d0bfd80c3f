// The I/O shell around the pure core: read the spec file, build backends, read actual state,
// diff. Shared by the CLI and `serve`.
import { readFileSync } from 'node:fs';
import type { SessionFact } from '../model/session.js';
import type { Backend } from '../backends/backend.js';
import { compile } from '../compile/index.js';
import { idlePrincipals } from '../compile/unused.js';
import { sha256 } from '../core/canonical.js';
import { SpecError } from '../core/errors.js';
import type { ActualState, Notice, Plan } from '../core/types.js';
import { diff } from '../plan/diff.js';
import { parseSpec, type LoadedSpec } from '../spec/load.js';
import type { Spec } from '../spec/schema.js';
import type { CredentialRow, CredentialStore } from '../store/store.js';

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
  store: CredentialStore,
  opts: { exact?: boolean; usage?: boolean } = {},
): Promise<Record<string, ActualState>> {
  const credentials = await store.credentials();
  const entries = await Promise.all(
    Object.entries(backends).map(async ([name, b]) => {
      const mine = credentials.filter((c) => c.backend === name);
      return [name, await b.read({ credentials: mine, exact: opts.exact ?? false, usage: opts.usage ?? false })] as const;
    }),
  );
  return Object.fromEntries(entries);
}

export interface PlanInput {
  spec: Spec;
  specHash: string;
  notices: Notice[];
  actual: Record<string, ActualState>;
  /** What the store says datagrant applied (address → attributes hash). */
  applied: Record<string, string>;
  /** Credentials the store holds (no secrets). */
  credentials: CredentialRow[];
  now: Date;
  /** This state's installation id, carried by the objects that can hold it. */
  installation?: string;
  /** Backends whose every object is to be removed (destroy; a backend gone from the spec). */
  destroyBackends?: string[];
  /** Credential slots to rotate now, whatever their age. */
  forceRotate?: string[];
  /** Credentials to delete now, grace or not (a slot, or `slot~id`): DiffOptions.revoke. */
  revoke?: string[];
  /** Short-lived sessions issued so far (the store's session log): kept alive, or revoked. */
  sessions?: readonly SessionFact[];
}

export async function makePlan(input: PlanInput): Promise<Plan> {
  const gone = new Set(input.destroyBackends ?? []);
  // A backend being torn down is not compiled: a limit its spec exceeds (a quota lowered) must not
  // stop the teardown.
  const kept = Object.fromEntries(Object.entries(input.spec.backends).filter(([b]) => !gone.has(b)));
  // Slots rotated now are exempt: their fresh key is the way back from expireUnused.
  const rotating = new Set((input.forceRotate ?? []).map((slot) => slot.slice(slot.lastIndexOf('/') + 1)));
  const unused = idlePrincipals(input.spec, Object.fromEntries(Object.entries(input.actual).map(([b, a]) => [b, a.usage])), input.now, rotating);
  const compiled = compile({ ...input.spec, backends: kept }, input.now, {
    ...(input.installation ? { installation: input.installation } : {}),
    ...(input.sessions ? { sessions: input.sessions } : {}),
    idle: unused.idle,
  });
  const desired = Object.fromEntries(Object.keys(input.spec.backends).map((b) => [b, compiled.desired[b] ?? { resources: [], notices: [] }]));
  const destroyAll = Object.keys(input.spec.backends).every((b) => gone.has(b));
  const notices = destroyAll ? [] : compiled.notices;
  return diff(desired, input.actual, {
    ...(input.forceRotate ? { forceRotate: input.forceRotate } : {}),
    ...(input.revoke?.length ? { revoke: input.revoke } : {}),
    now: input.now,
    specHash: input.specHash,
    applied: input.applied,
    credentials: input.credentials,
    // Access ending for want of use is said before anything else the plan says.
    notices: [...unused.notices, ...input.notices, ...notices],
  });
}
