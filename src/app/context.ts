// Opening the pieces a command needs: spec, store, backends.
import { userInfo } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import type { Backend } from '../backends/backend.js';
import { closeBackends, makeBackends, type BackendOptions } from '../backends/factory.js';
import { loadSpec, readSpecFile } from './engine.js';
import { openStore, statePaths, type StatePaths } from '../store/open.js';
import type { StateStore } from '../store/store.js';
import { scimPeople } from '../scim/identities.js';
import { openScimStoreAt } from '../scim/store/open.js';
import type { Spec } from '../spec/schema.js';
import type { Io } from './io.js';

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
 * With a `scim:` section in the spec, the people the identity provider pushed to `datagrant serve`
 * are principals too, merged exactly as serve merges them: plan, apply and drift from the CLI
 * then agree with serve instead of planning to tear its users down.
 */
export async function withScimPeople<L extends { spec: Spec }>(io: Io, opts: CommonOptions, loaded: L): Promise<L> {
  if (!loaded.spec.scim) return loaded;
  const scim = await openScimStoreAt(pathsFor(io, opts), io.env);
  try {
    const people = await scimPeople(scim, loaded.spec);
    return { ...loaded, spec: { ...loaded.spec, principals: { ...people, ...loaded.spec.principals } } };
  } finally {
    await scim.close();
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
