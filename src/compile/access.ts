// The access the spec intends (issue 13): every live grant of every principal, direct, through a
// group or from an approved request merged in, with where it comes from. Pure: `now` is passed
// in. It is what the compiled desired state grants, by construction of the compilers (each grant
// compiles to exactly its level's privileges on its dataset); invariants and the access report
// read it.
import type { IntendedAccess } from '../model/access.js';
import { expiresInstant, type Grant, type Spec } from '../spec/schema.js';

/** How a grant merged in from an approved request is named where a spec grant has its path. */
export const requestPath = (id: number) => `requests.${id}`;

const live = (g: Grant, now: Date) => !g.expires || expiresInstant(g.expires).getTime() > now.getTime();

/** One entry per live grant that reaches a principal; expired grants grant nothing. */
export function intendedAccess(spec: Spec, now: Date): IntendedAccess[] {
  const out: IntendedAccess[] = [];
  const add = (principal: string, g: Grant, via: string, path: string) => {
    const ds = spec.datasets[g.dataset];
    if (!ds || !live(g, now)) return;
    out.push({
      backend: ds.backend,
      dataset: g.dataset,
      level: g.access,
      principal,
      via,
      path,
      ...(g.expires ? { expires: expiresInstant(g.expires).toISOString() } : {}),
      ...(g.origin ? { request: g.origin.request } : {}),
    });
  };
  for (const [name, p] of Object.entries(spec.principals)) {
    p.grants.forEach((g: Grant, i) =>
      g.origin
        ? add(name, g, `request #${g.origin.request} (approved by ${g.origin.approvedBy})`, requestPath(g.origin.request))
        : add(name, g, 'direct grant', `principals.${name}.grants[${i}]`),
    );
    for (const group of p.groups) {
      spec.groups[group]?.grants.forEach((g, i) => add(name, g, `group ${group}`, `groups.${group}.grants[${i}]`));
    }
  }
  return out;
}
