// The credential endpoint's view of the spec in `serve`: the trusted issuers, the backends and
// which principal each claim value names, the SCIM people merged in exactly as reconciles merge
// them; the session broker reads the same spec. Built again only when the spec file or the SCIM
// identities change (any replica's write moves the SCIM store's change counter), so a person
// deactivated in the IdP names no principal from the next request on, and a request otherwise
// costs a stat and one small read.
import { statSync } from 'node:fs';
import { loadSpec, readSpecFile } from '../app/engine.js';
import { scimPeople } from '../scim/identities.js';
import type { ScimStore } from '../scim/store/store.js';
import { oidcIndex } from '../spec/oidc.js';
import type { Spec } from '../spec/schema.js';
import type { CredentialDirectory } from './credentials.js';

export interface DirectorySource {
  specFile: string;
  /** How the spec file is named in messages. */
  displayFile: string;
  env: NodeJS.ProcessEnv;
  scim: ScimStore;
  now: () => Date;
}

/**
 * The spec as serve sees it now, the SCIM people merged in as reconciles merge them (a spec
 * principal of the same name wins; scimPeople refuses that case). The credential endpoint's
 * directory and the session broker both read it, so the two never disagree on who is a principal.
 */
export function serveSpec(src: DirectorySource): () => Promise<Spec> {
  let cached: { key: string; spec: Promise<Spec> } | undefined;
  return async () => {
    let stamp: string;
    try {
      const st = statSync(src.specFile);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      stamp = 'unreadable';
    }
    const key = `${stamp}/${(await src.scim.work()).changed}`;
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
  const people = await scimPeople(src.scim, spec);
  return { ...spec, principals: { ...people, ...spec.principals } };
}

function directoryOf(spec: Spec): CredentialDirectory {
  const issuers = spec.settings?.oidc ?? [];
  if (issuers.length === 0) return { issuers, backends: new Set(), index: new Map() };
  return { issuers, backends: new Set(Object.keys(spec.backends)), index: oidcIndex(issuers, spec.principals) };
}
