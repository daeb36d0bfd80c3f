// The credential endpoint's view of the spec in `serve`: the trusted issuers, the backends and
// which principal each claim value names, the SCIM people merged in exactly as reconciles merge
// them. Built again only when the spec file or the SCIM identities change (any replica's write
// moves the SCIM store's change counter), so a person deactivated in the IdP names no principal
// from the next request on, and a request otherwise costs a stat and one small read.
import { statSync } from 'node:fs';
import { loadSpec, readSpecFile } from '../app/engine.js';
import { scimPeople } from '../scim/identities.js';
import type { ScimStore } from '../scim/store/store.js';
import { oidcIndex } from '../spec/oidc.js';
import type { CredentialDirectory } from './credentials.js';

export interface DirectorySource {
  specFile: string;
  /** How the spec file is named in messages. */
  displayFile: string;
  env: NodeJS.ProcessEnv;
  scim: ScimStore;
  now: () => Date;
}

export function credentialDirectory(src: DirectorySource): () => Promise<CredentialDirectory> {
  let cached: { key: string; dir: Promise<CredentialDirectory> } | undefined;
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
      const dir = build(src);
      cached = { key, dir };
      // A failure is not kept: the next request tries again (the store may answer by then).
      dir.catch(() => {
        if (cached?.dir === dir) cached = undefined;
      });
    }
    return cached.dir;
  };
}

async function build(src: DirectorySource): Promise<CredentialDirectory> {
  const text = readSpecFile(src.specFile).text;
  const { spec } = loadSpec({ file: src.displayFile, text }, src.env, src.now());
  const issuers = spec.settings?.oidc ?? [];
  if (issuers.length === 0) return { issuers, backends: new Set(), index: new Map() };
  const people = await scimPeople(src.scim, spec);
  // As reconciles merge them: a spec principal of the same name wins (scimPeople refuses that case).
  const principals = { ...people, ...spec.principals };
  return { issuers, backends: new Set(Object.keys(spec.backends)), index: oidcIndex(issuers, principals) };
}
