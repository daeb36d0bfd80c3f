// Checks that need the whole spec: references, duplicates, names a backend cannot hold, and
// expiry dates. Pure; `now` is passed in.
import type { SpecProblem } from '../core/errors.js';
import type { Notice } from '../core/types.js';
import type { SourceMap } from './load.js';
import { expiresInstant, isRealInstant, type Grant, type Spec } from './schema.js';

const PG_IDENTIFIER_MAX_BYTES = 63;

function list(names: Iterable<string>): string {
  const all = [...names].sort();
  if (all.length === 0) return '(none defined)';
  return all.length > 12 ? `${all.slice(0, 12).join(', ')}, …` : all.join(', ');
}

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/**
 * Also runs on a spec whose shape is wrong (salvaged raw data, see `load.ts`), so that every
 * problem is reported at once: anything that is not the expected kind of value is skipped here,
 * because the schema has already reported it.
 */
export function validateReferences(spec: Spec, src: SourceMap, now: Date, notices: Notice[]): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const backendNames = Object.keys(spec.backends);

  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (typeof ds.backend !== 'string' || ds.backend === '') continue;
    const backend = has(spec.backends, ds.backend) ? spec.backends[ds.backend] : undefined;
    if (!backend) {
      problems.push(src.problem(['datasets', name, 'backend'], `backend ${JSON.stringify(ds.backend)} is not defined; defined backends: ${list(backendNames)}`));
      continue;
    }
    if (has(ds, 'bucket') && backend.type === 'postgres') {
      problems.push(src.problem(['datasets', name, 'backend'], `dataset ${JSON.stringify(name)} has a bucket, so it needs an aws backend, but backend ${JSON.stringify(ds.backend)} is postgres; use an aws backend, or give database and schema instead of bucket`));
    }
    if (has(ds, 'database') && !has(ds, 'bucket') && backend.type === 'aws') {
      problems.push(src.problem(['datasets', name, 'backend'], `dataset ${JSON.stringify(name)} has a database, so it needs a postgres backend, but backend ${JSON.stringify(ds.backend)} is aws; use a postgres backend, or give bucket (and prefix) instead of database`));
    }
  }

  const checkGrants = (grants: Grant[], base: (string | number)[]) => {
    const seen = new Map<string, number>();
    grants.forEach((g, i) => {
      const at = [...base, i];
      if (typeof g.dataset !== 'string' || g.dataset === '') return;
      if (!has(spec.datasets, g.dataset)) {
        problems.push(src.problem([...at, 'dataset'], `dataset ${JSON.stringify(g.dataset)} is not defined; defined datasets: ${list(Object.keys(spec.datasets))}`));
      }
      const prev = seen.get(g.dataset);
      if (prev !== undefined) {
        const line = src.position([...base, prev]).line;
        problems.push(src.problem([...at, 'dataset'], `dataset ${JSON.stringify(g.dataset)} is granted twice in this list (also on line ${line}); keep one grant with the level you mean`));
      }
      seen.set(g.dataset, i);
      // A malformed date has been reported by the schema.
      if (typeof g.expires === 'string' && isRealInstant(g.expires)) {
        const at2 = [...at, 'expires'];
        const instant = expiresInstant(g.expires);
        if (instant.getTime() <= now.getTime()) {
          // Not an error: the first apply after expiry must be able to remove the access.
          const pos = src.position(at2);
          const who = base[0] === 'groups' ? `group ${String(base[1])}` : `principal ${String(base[1])}`;
          notices.push({
            level: 'warning',
            message: `${src.file}:${pos.line}:${pos.column}: ${who}: ${String(g.access)} access to ${g.dataset} expired at ${instant.toISOString()}; it grants nothing now and apply removes it (delete the grant from the spec to silence this warning)`,
          });
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
    if (clash) problems.push(src.problem(['principals', name], `principal ${JSON.stringify(name)} differs from ${JSON.stringify(clash)} only in case; AWS IAM treats them as the same user, so rename one`, true));
    lowerNames.set(lower, name);
    if (Buffer.byteLength(name) > PG_IDENTIFIER_MAX_BYTES && usesBackendType(spec, p.grants, p.groups, 'postgres')) {
      problems.push(src.problem(['principals', name], `principal name is longer than PostgreSQL's ${PG_IDENTIFIER_MAX_BYTES}-byte role names`, true));
    }
    const seenGroups = new Set<string>();
    p.groups.forEach((g, i) => {
      if (typeof g !== 'string' || g === '') return;
      if (!has(spec.groups, g)) {
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
    if (clash) problems.push(src.problem(['groups', name], `group ${JSON.stringify(name)} differs from ${JSON.stringify(clash)} only in case; AWS IAM treats them as the same group, so rename one`, true));
    lowerGroups.set(name.toLowerCase(), name);
  }

  for (const [idpGroup, group] of Object.entries(spec.scim?.groups ?? {})) {
    if (typeof group !== 'string' || group === '') continue;
    if (!has(spec.groups, group)) {
      problems.push(src.problem(['scim', 'groups', idpGroup], `group ${JSON.stringify(group)} is not defined; defined groups: ${list(Object.keys(spec.groups))}`));
    }
  }
  return problems;
}

function usesBackendType(spec: Spec, grants: Grant[], groups: string[], type: 'aws' | 'postgres'): boolean {
  const all = [...grants, ...groups.flatMap((g) => (has(spec.groups, g) ? spec.groups[g]!.grants : []))];
  return all.some((g) => {
    const ds = has(spec.datasets, g.dataset) ? spec.datasets[g.dataset] : undefined;
    return ds !== undefined && has(spec.backends, ds.backend) && spec.backends[ds.backend]?.type === type;
  });
}
