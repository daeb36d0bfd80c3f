// The principal names the spec file defines, for `serve` to name new SCIM users around them. Read
// as plain YAML, not validated: a spec that fails validation (a typo in a grant, an unset
// variable) still names its principals, and those are names a new user must not take for good.
// Parsed again only when the file changes, since every user creation asks.
import { statSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';

export function specPrincipalNames(file: string): () => string[] {
  let seen: string | undefined;
  let names: string[] = [];
  return () => {
    let stamp: string;
    let text: string;
    try {
      const st = statSync(file);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (stamp === seen) return names;
      text = readFileSync(file, 'utf8');
    } catch {
      // Unreadable now (being replaced?): the names it had.
      return names;
    }
    seen = stamp;
    try {
      const doc = parse(text, { uniqueKeys: false }) as unknown;
      const principals = doc !== null && typeof doc === 'object' ? (doc as Record<string, unknown>).principals : undefined;
      names = principals !== null && typeof principals === 'object' && !Array.isArray(principals) ? Object.keys(principals) : [];
    } catch {
      // Not YAML at all: the names it had.
    }
    return names;
  };
}
