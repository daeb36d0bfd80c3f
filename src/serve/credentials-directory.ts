// The credential endpoint's view of the spec in `serve`: the trusted issuers, the backends and
// which principal each claim value names, the SCIM people and approved requests merged in exactly
// as reconciles merge them; the session broker reads the same spec. Built again only when the spec
// file, the SCIM identities (any replica's write moves the SCIM store's change counter) or the
// requests change, so a person deactivated in the IdP names no principal from the next request
// on, and a request otherwise costs a stat and two small reads.
import { statSync } from 'node:fs';
import { loadSpec, readSpecFile } from '../app/engine.js';
import { mergedSpec, requestsWorld } from '../app/requests.js';
import type { ScimStore } from '../scim/store/store.js';
import { oidcIndex } from '../spec/oidc.js';
import type { Spec } from '../spec/schema.js';
import type { RequestStore } from '../store/store.js';
import type { CredentialDirectory } from './credentials.js';
import type { RequestsDirectory } from './requests.js';

export interface DirectorySource {
  specFile: string;
  /** How the spec file is named in messages. */
  displayFile: string;
  env: NodeJS.ProcessEnv;
  scim: ScimStore;
  /** The state store, whose approved requests are merged too (without it, none are). */
  requests?: () => Promise<Pick<RequestStore, 'requests' | 'requestsVersion'>>;
  now: () => Date;
}

/**
 * The spec as serve sees it now, the SCIM people and approved requests merged in as reconciles
 * merge them (mergedSpec; a spec principal of the same name as a SCIM person is refused). The
 * credential endpoint's directory and the session broker both read it, so the two never disagree
 * on who is a principal or what it may reach.
 */
/** Which spec file is there now, cheaply: a changed file has another stamp. */
function specStamp(file: string): string {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return 'unreadable';
  }
}

export function serveSpec(src: DirectorySource): () => Promise<Spec> {
  let cached: { key: string; spec: Promise<Spec> } | undefined;
  return async () => {
    const stamp = specStamp(src.specFile);
    // A request's end needs no key of its own: its grant carries the end, and an ended grant
    // grants nothing (sessions are cut at it, the backends refuse after it).
    const key = `${stamp}/${(await src.scim.work()).changed}/${src.requests ? await (await src.requests()).requestsVersion() : 0}`;
    if (cached?.key !== key) {
      const spec = load(src);
      cached = { key, spec };
      // A failure is not kept: the next request tries again (the store may answer by then).
      spec.catch(() => {
        if (cached?.spec === spec) cached = undefined;
      });
    }
    return cached.spec;
  };
}

export function credentialDirectory(src: DirectorySource, spec: () => Promise<Spec> = serveSpec(src)): () => Promise<CredentialDirectory> {
  // Rebuilt only when the spec is another (serveSpec keeps one per spec file and SCIM change).
  let cached: { spec: Spec; dir: CredentialDirectory } | undefined;
  return async () => {
    const now = await spec();
    if (cached?.spec !== now) cached = { spec: now, dir: directoryOf(now) };
    return cached.dir;
  };
}

async function load(src: DirectorySource): Promise<Spec> {
  const text = readSpecFile(src.specFile).text;
  const { spec } = loadSpec({ file: src.displayFile, text }, src.env, src.now());
  const requests = src.requests ? await src.requests() : undefined;
  return (await mergedSpec(spec, { scim: src.scim, ...(requests ? { requests } : {}) }, src.now())).spec;
}

function directoryOf(spec: Spec): CredentialDirectory {
  const issuers = spec.settings?.oidc ?? [];
  if (issuers.length === 0) return { issuers, backends: new Set(), index: new Map() };
  return { issuers, backends: new Set(Object.keys(spec.backends)), index: oidcIndex(issuers, spec.principals) };
}

/**
 * The requests API's view: the spec with the SCIM people, every principal there is (SCIM people in
 * no mapped group may ask too) and which one each token claim names. Built again when the spec
 * file or the SCIM identities change; the requests themselves are read for each call.
 */
export function requestsDirectory(src: DirectorySource): () => Promise<RequestsDirectory> {
  let cached: { key: string; dir: Promise<RequestsDirectory> } | undefined;
  return async () => {
    const key = `${specStamp(src.specFile)}/${(await src.scim.work()).changed}`;
    if (cached?.key !== key) {
      const dir = (async (): Promise<RequestsDirectory> => {
        const loaded = loadSpec({ file: src.displayFile, text: readSpecFile(src.specFile).text }, src.env, src.now());
        const world = await requestsWorld(loaded.spec, src.scim, loaded.source);
        const issuers = loaded.spec.settings?.oidc ?? [];
        return { issuers, index: oidcIndex(issuers, world.people), world };
      })();
      cached = { key, dir };
      dir.catch(() => {
        if (cached?.dir === dir) cached = undefined;
      });
    }
    return cached.dir;
  };
}
