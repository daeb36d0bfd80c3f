// Opening the pieces a command needs: spec, store, backends.
import { userInfo } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import type { Backend } from '../backends/backend.js';
import { closeBackends, makeBackends, type BackendOptions } from '../backends/factory.js';
import { loadSpec, readSpecFile } from './engine.js';
import { openStore, statePaths, type StatePaths } from '../store/open.js';
import type { RequestStore, StateStore } from '../store/store.js';
import { openScimStoreAt } from '../scim/store/open.js';
import type { Notice } from '../core/types.js';
import type { Spec } from '../spec/schema.js';
import type { Io } from './io.js';
import { mergedSpec } from './requests.js';

export interface CommonOptions {
  spec?: string;
  stateDir?: string;
}

export const DEFAULT_SPEC = 'datagrant.yaml';

export function specPath(io: Io, opts: CommonOptions): string {
  const f = opts.spec ?? io.env.DATAGRANT_SPEC ?? DEFAULT_SPEC;
  return isAbsolute(f) ? f : resolve(io.cwd, f);
}

export function pathsFor(io: Io, opts: CommonOptions): StatePaths {
  const dir = opts.stateDir ?? io.env.DATAGRANT_STATE_DIR ?? '.datagrant';
  return statePaths(isAbsolute(dir) ? dir : resolve(io.cwd, dir));
}

/** Display name of the spec file: relative to the working directory when it is below it. */
export function displayPath(io: Io, file: string): string {
  return file.startsWith(`${io.cwd}/`) ? file.slice(io.cwd.length + 1) : file;
}

export function loadSpecFor(io: Io, opts: CommonOptions, now: Date) {
  const file = specPath(io, opts);
  const src = readSpecFile(file);
  return loadSpec({ file: displayPath(io, file), text: src.text }, io.env, now);
}

export function actorOf(io: Io): string {
  return io.env.DATAGRANT_ACTOR ?? `${io.env.USER ?? io.env.LOGNAME ?? userInfo().username}@cli`;
}

/** Runs `fn` with the store open, and closes it however `fn` ends. */
export async function withStore<T>(io: Io, opts: CommonOptions, fn: (store: StateStore) => Promise<T>): Promise<T> {
  const store = await openStore(pathsFor(io, opts), io.env);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * The spec as plan, apply, drift, access and serve all see it (mergedSpec): with a `scim:`
 * section, the people the identity provider pushed to `datagrant serve` are principals too, and
 * live approved requests are grants that end by themselves, each with a notice. The CLI then
 * agrees with serve instead of planning to tear its users and approved access down. `store` is
 * the state store when the caller has it open; otherwise it is opened to read the requests.
 */
export async function withMerged<L extends { spec: Spec; notices: Notice[] }>(io: Io, opts: CommonOptions, loaded: L, store?: RequestStore): Promise<L> {
  const scim = loaded.spec.scim ? await openScimStoreAt(pathsFor(io, opts), io.env) : undefined;
  try {
    const merge = (requests: RequestStore) => mergedSpec(loaded.spec, { ...(scim ? { scim } : {}), requests }, io.now());
    const merged = store ? await merge(store) : await withStore(io, opts, merge);
    return { ...loaded, spec: merged.spec, notices: [...loaded.notices, ...merged.notices] };
  } finally {
    await scim?.close();
  }
}

export async function withBackends<T>(backends: Record<string, Backend>, fn: (b: Record<string, Backend>) => Promise<T>): Promise<T> {
  try {
    return await fn(backends);
  } finally {
    await closeBackends(backends);
  }
}

export { makeBackends, type BackendOptions };
