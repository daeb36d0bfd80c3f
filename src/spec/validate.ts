// Checks that need the whole spec: references, duplicates, names a backend cannot hold, and
// expiry dates. Pure; `now` is passed in.
import type { SpecProblem } from '../core/errors.js';
import type { Notice } from '../core/types.js';
import type { SourceMap } from './load.js';
import { expiresInstant, isS3Dataset, type Grant, type Spec } from './schema.js';

const PG_IDENTIFIER_MAX_BYTES = 63;

function list(names: Iterable<string>): string {
  const all = [...names].sort();
  if (all.length === 0) return '(none defined)';
  return all.length > 12 ? `${all.slice(0, 12).join(', ')}, …` : all.join(', ');
}

export function validateReferences(spec: Spec, src: SourceMap, now: Date, notices: Notice[]): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const backendNames = Object.keys(spec.backends);

  for (const [name, ds] of Object.entries(spec.datasets)) {
    const backend = spec.backends[ds.backend];
    if (!backend) {
      problems.push(src.problem(['datasets', name, 'backend'], `backend ${JSON.stringify(ds.backend)} is not defined; defined backends: ${list(backendNames)}`));
      continue;
    }
    if (isS3Dataset(ds) && backend.type !== 'aws') {
      problems.push(src.problem(['datasets', name, 'bucket'], `a bucket dataset needs an aws backend, but ${JSON.stringify(ds.backend)} is ${backend.type}`));
    }
    if (!isS3Dataset(ds) && backend.type !== 'postgres') {
      problems.push(src.problem(['datasets', name, 'database'], `a database dataset needs a postgres backend, but ${JSON.stringify(ds.backend)} is ${backend.type}`));
    }
  }

  const checkGrants = (grants: Grant[], base: (string | number)[]) => {
    const seen = new Map<string, number>();
    grants.forEach((g, i) => {
      const at = [...base, i];
      if (!spec.datasets[g.dataset]) {
        problems.push(src.problem([...at, 'dataset'], `dataset ${JSON.stringify(g.dataset)} is not defined; defined datasets: ${list(Object.keys(spec.datasets))}`));
      }
      const prev = seen.get(g.dataset);
      if (prev !== undefined) {
        problems.push(src.problem([...at, 'dataset'], `dataset ${JSON.stringify(g.dataset)} is granted twice in this list (also at index ${prev}); keep one grant with the level you mean`));
      }
      seen.set(g.dataset, i);
      if (g.expires !== undefined) {
        const at2 = [...at, 'expires'];
        const instant = expiresInstant(g.expires);
        if (Number.isNaN(instant.getTime())) {
          problems.push(src.problem(at2, `${JSON.stringify(g.expires)} is not a real date`));
        } else if (instant.getTime() <= now.getTime()) {
          // Not an error: the first apply after expiry must be able to remove the access.
          notices.push({ level: 'warning', message: `${src.file}:${src.position(at2).line}: grant of ${g.dataset} expired at ${instant.toISOString()}; it grants nothing and its access is removed on apply` });
        }
      }
    });
  };

  for (const [name, group] of Object.entries(spec.groups)) checkGrants(group.grants, ['groups', name, 'grants']);

  const lowerNames = new Map<string, string>();
  for (const [name, p] of Object.entries(spec.principals)) {
    // IAM user names are case-insensitive: Alice and alice would be the same user.
    const lower = name.toLowerCase();
    const clash = lowerNames.get(lower);
    if (clash) problems.push(src.problem(['principals', name], `principal ${JSON.stringify(name)} differs from ${JSON.stringify(clash)} only in case; AWS IAM treats them as the same user`, true));
    lowerNames.set(lower, name);
    if (Buffer.byteLength(name) > PG_IDENTIFIER_MAX_BYTES && usesBackendType(spec, p.grants, p.groups, 'postgres')) {
      problems.push(src.problem(['principals', name], `principal name is longer than PostgreSQL's ${PG_IDENTIFIER_MAX_BYTES}-byte role names`, true));
    }
    const seenGroups = new Set<string>();
    p.groups.forEach((g, i) => {
      if (!spec.groups[g]) {
        problems.push(src.problem(['principals', name, 'groups', i], `group ${JSON.stringify(g)} is not defined; defined groups: ${list(Object.keys(spec.groups))}`));
      }
      if (seenGroups.has(g)) problems.push(src.problem(['principals', name, 'groups', i], `group ${JSON.stringify(g)} is listed twice`));
      seenGroups.add(g);
    });
    checkGrants(p.grants, ['principals', name, 'grants']);
  }

  const lowerGroups = new Map<string, string>();
  for (const name of Object.keys(spec.groups)) {
    const clash = lowerGroups.get(name.toLowerCase());
    if (clash) problems.push(src.problem(['groups', name], `group ${JSON.stringify(name)} differs from ${JSON.stringify(clash)} only in case; AWS IAM treats them as the same group`, true));
    lowerGroups.set(name.toLowerCase(), name);
  }

  for (const [idpGroup, group] of Object.entries(spec.scim?.groups ?? {})) {
    if (!spec.groups[group]) {
      problems.push(src.problem(['scim', 'groups', idpGroup], `group ${JSON.stringify(group)} is not defined; defined groups: ${list(Object.keys(spec.groups))}`));
    }
  }
  return problems;
}

function usesBackendType(spec: Spec, grants: Grant[], groups: string[], type: 'aws' | 'postgres'): boolean {
  const all = [...grants, ...groups.flatMap((g) => spec.groups[g]?.grants ?? [])];
  return all.some((g) => {
    const ds = spec.datasets[g.dataset];
    return ds !== undefined && spec.backends[ds.backend]?.type === type;
  });
}
