// Checks that need the whole spec: references, duplicates, names a backend cannot hold, and
// expiry dates. Pure; `now` is passed in.
import type { SpecProblem } from '../core/errors.js';
import type { Notice } from '../core/types.js';
import { mysqlAccountNameProblem, pgRoleNameProblem } from './limits.js';
import type { SourceMap } from './load.js';
import { approverProblems } from './approvers.js';
import { knownAccessProblems } from './known-access.js';
import { oidcProblems } from './oidc.js';
import { credentialsOf, expiresInstant, isRealInstant, type Grant, type Spec } from './schema.js';

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

  for (const [name, b] of Object.entries(spec.backends)) {
    const url = (b as { url?: unknown }).url;
    if (b.type !== 'postgres' || typeof url !== 'string' || url === '') continue;
    const problem = postgresUrlProblem(url);
    if (problem) problems.push(src.problem(['backends', name, 'url'], problem));
  }

  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (typeof ds.backend !== 'string' || ds.backend === '') continue;
    const backend = has(spec.backends, ds.backend) ? spec.backends[ds.backend] : undefined;
    if (!backend) {
      problems.push(
        src.problem(['datasets', name, 'backend'], `backend ${JSON.stringify(ds.backend)} is not defined; defined backends: ${list(backendNames)}`),
      );
      continue;
    }
    if (has(ds, 'bucket') && backend.type === 'postgres') {
      problems.push(
        src.problem(
          ['datasets', name, 'backend'],
          `dataset ${JSON.stringify(name)} has a bucket, so it needs an aws or rgw backend, but backend ${JSON.stringify(ds.backend)} is postgres; use an aws or rgw backend, or give database and schema instead of bucket`,
        ),
      );
    }
    if (has(ds, 'database') && !has(ds, 'bucket') && (backend.type === 'aws' || backend.type === 'rgw')) {
      problems.push(
        src.problem(
          ['datasets', name, 'backend'],
          `dataset ${JSON.stringify(name)} has a database, so it needs a postgres backend, but backend ${JSON.stringify(ds.backend)} is ${backend.type}; use a postgres backend, or give bucket (and prefix) instead of database`,
        ),
      );
    }
    const prefix = (ds as { prefix?: unknown }).prefix;
    if (typeof prefix === 'string' && prefix !== '' && !prefix.endsWith('/')) {
      // Allowed (a prefix of names can be meant), but a folder is the usual intent.
      const pos = src.position(['datasets', name, 'prefix']);
      const q = JSON.stringify;
      notices.push({
        level: 'warning',
        message: `${src.file}:${pos.line}:${pos.column}: dataset ${name}: prefix ${q(prefix)} does not end with "/", so it also matches ${q(`${prefix}-old/`)} and ${q(`${prefix}X`)}; write ${q(`${prefix}/`)} for a folder`,
      });
    }
  }

  const checkGrants = (grants: Grant[], base: (string | number)[]) => {
    const seen = new Map<string, number>();
    grants.forEach((g, i) => {
      const at = [...base, i];
      if (typeof g.dataset !== 'string' || g.dataset === '') return;
      if (!has(spec.datasets, g.dataset)) {
        problems.push(
          src.problem([...at, 'dataset'], `dataset ${JSON.stringify(g.dataset)} is not defined; defined datasets: ${list(Object.keys(spec.datasets))}`),
        );
      }
      const prev = seen.get(g.dataset);
      if (prev !== undefined) {
        const line = src.position([...base, prev]).line;
        problems.push(
          src.problem(
            [...at, 'dataset'],
            `dataset ${JSON.stringify(g.dataset)} is granted twice in this list (also on line ${line}); keep one grant with the level you mean`,
          ),
        );
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

  /** IAM names are case-insensitive: Alice and alice would be one user (or group). */
  const caseClashes = (what: 'principal' | 'group', names: string[]) => {
    const lower = new Map<string, string>();
    for (const name of names) {
      const clash = lower.get(name.toLowerCase());
      if (clash) {
        const [section, object] = what === 'group' ? ['groups', 'group'] : ['principals', 'user'];
        problems.push(
          src.problem(
            [section, name],
            `${what} ${JSON.stringify(name)} differs from ${JSON.stringify(clash)} only in case; AWS IAM treats them as the same ${object}, so rename one`,
            true,
          ),
        );
      }
      lower.set(name.toLowerCase(), name);
    }
  };
  caseClashes('principal', Object.keys(spec.principals));
  for (const [name, p] of Object.entries(spec.principals)) {
    const seenGroups = new Set<string>();
    p.groups.forEach((g, i) => {
      if (typeof g !== 'string' || g === '') return;
      if (!has(spec.groups, g)) {
        problems.push(
          src.problem(['principals', name, 'groups', i], `group ${JSON.stringify(g)} is not defined; defined groups: ${list(Object.keys(spec.groups))}`),
        );
      }
      if (seenGroups.has(g)) problems.push(src.problem(['principals', name, 'groups', i], `group ${JSON.stringify(g)} is listed twice`));
      seenGroups.add(g);
    });
    checkGrants(p.grants, ['principals', name, 'grants']);
    if (typeof p.rotate === 'string' && (p.credentials ?? spec.settings?.credentials) === 'temporary') {
      problems.push(
        src.problem(
          ['principals', name, 'rotate'],
          `principal ${JSON.stringify(name)} has temporary credentials${p.credentials ? '' : ' (settings.credentials)'}, which are never rotated: each session ends by itself after maxSession; remove rotate, or set credentials: key`,
        ),
      );
    }
    if (typeof p.maxSession === 'string' && (p.credentials ?? spec.settings?.credentials ?? 'key') === 'key') {
      problems.push(
        src.problem(
          ['principals', name, 'maxSession'],
          `principal ${JSON.stringify(name)} has a long-lived key, so maxSession means nothing for it; set credentials: temporary, or remove maxSession`,
        ),
      );
    }
  }

  caseClashes('group', Object.keys(spec.groups));

  problems.push(...invariantProblems(spec, src, notices));
  problems.push(...pgRoleProblems(spec, src));
  problems.push(...mysqlProblems(spec, src));
  problems.push(...oidcProblems(spec, src));
  problems.push(...knownAccessProblems(spec, src));
  problems.push(...approverProblems(spec, src, notices));

  // IdP group names are matched case-insensitively (as Okta and Entra compare them).
  const lowerIdp = new Map<string, string>();
  for (const [idpGroup, group] of Object.entries(spec.scim?.groups ?? {})) {
    const clash = lowerIdp.get(idpGroup.toLowerCase());
    if (clash !== undefined) {
      problems.push(
        src.problem(
          ['scim', 'groups', idpGroup],
          `IdP group ${JSON.stringify(idpGroup)} differs from ${JSON.stringify(clash)} only in case; IdP groups are matched ignoring case, so only one of the two mappings would apply: keep one`,
          true,
        ),
      );
    }
    lowerIdp.set(idpGroup.toLowerCase(), idpGroup);
    if (typeof group !== 'string' || group === '') continue;
    if (!has(spec.groups, group)) {
      problems.push(
        src.problem(['scim', 'groups', idpGroup], `group ${JSON.stringify(group)} is not defined; defined groups: ${list(Object.keys(spec.groups))}`),
      );
    }
  }
  return problems;
}

/**
 * Checked after `${VAR}` substitution. The value is never shown (it may hold a password, and it
 * may come from the environment); its scheme is, for it is what is wrong.
 */
function postgresUrlProblem(url: string): string | undefined {
  const allowed = 'a postgres:// or postgresql:// URL such as postgres://datagrant@db.example:5432/postgres (or ${VAR} to read it from the environment)';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `url is not a URL; it must be ${allowed}`;
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    const scheme = /^[A-Za-z][A-Za-z0-9+.-]{0,20}:\/\//.exec(url)?.[0];
    return `url must be ${allowed}${scheme ? ` (got a URL starting with ${scheme.toLowerCase()})` : ''}`;
  }
  return undefined;
}

/**
 * Every group and principal with a grant on a postgres dataset becomes a role on that dataset's
 * backend, so its name must be one PostgreSQL holds as written, and groups and principals share
 * one role namespace there. Expired grants count: renewing one must not then fail.
 */
function pgRoleProblems(spec: Spec, src: SourceMap): SpecProblem[] {
  return roleNamespaceProblems(spec, src, { type: 'postgres', role: 'role', system: 'PostgreSQL', nameProblem: pgRoleNameProblem });
}

/**
 * On a backend where groups and principals become roles of their names (postgres, mysql): each
 * name the server must hold as written, and a group and a principal never one role. `principal`
 * adds a backend type's own problems about each principal, given its backends of that type.
 */
function roleNamespaceProblems(
  spec: Spec,
  src: SourceMap,
  kind: { type: 'postgres' | 'mysql'; role: string; system: string; nameProblem: (name: string) => string | undefined },
  principal?: (name: string, p: Spec['principals'][string], backends: Set<string>) => SpecProblem[],
): SpecProblem[] {
  const problems: SpecProblem[] = [];
  if (!Object.values(spec.backends).some((b) => b.type === kind.type)) return problems;
  const backendOf = (g: Grant): string | undefined => {
    if (typeof g.dataset !== 'string' || !has(spec.datasets, g.dataset)) return undefined;
    const ds = spec.datasets[g.dataset]!;
    if (has(ds, 'bucket') || typeof ds.backend !== 'string' || !has(spec.backends, ds.backend)) return undefined;
    return spec.backends[ds.backend]!.type === kind.type ? ds.backend : undefined;
  };
  const backendsOf = (grants: Grant[]) => new Set(grants.map(backendOf).filter((b): b is string => b !== undefined));

  /** A group or principal becomes a role on each of `backends`: its name must fit. */
  const checkRoleName = (what: 'group' | 'principal', name: string, backends: Set<string>) => {
    const problem = kind.nameProblem(name);
    if (!problem) return;
    problems.push(
      src.problem(
        [what === 'group' ? 'groups' : 'principals', name],
        `${what} name ${JSON.stringify(name)} ${problem}; it would be a ${kind.role} on backend ${[...backends].sort().join(', ')}: rename the ${what}`,
        true,
      ),
    );
  };
  const groupBackends = new Map<string, Set<string>>();
  for (const [name, group] of Object.entries(spec.groups)) {
    const backends = backendsOf(group.grants);
    if (backends.size === 0) continue;
    groupBackends.set(name, backends);
    checkRoleName('group', name, backends);
  }
  for (const [name, p] of Object.entries(spec.principals)) {
    const backends = backendsOf(p.grants);
    for (const g of p.groups) for (const b of (typeof g === 'string' && groupBackends.get(g)) || []) backends.add(b);
    if (backends.size === 0) continue;
    checkRoleName('principal', name, backends);
    const shared = [...(groupBackends.get(name) ?? [])].filter((b) => backends.has(b)).sort();
    if (shared.length) {
      problems.push(
        src.problem(
          ['principals', name],
          `principal ${JSON.stringify(name)} and group ${JSON.stringify(name)} would be one ${kind.system} role on backend ${shared.join(', ')} (groups and principals share one role namespace there): rename one`,
          true,
        ),
      );
    }
    problems.push(...(principal?.(name, p, backends) ?? []));
  }
  return problems;
}

/**
 * What an invariant names must exist: a misspelt dataset would select nothing and a misspelt group
 * would let no one in, so the invariant would hold, or fail, for the wrong reason. Principals are
 * the exception in a spec with a `scim:` section: SCIM people are principals the file does not
 * list, so a name it does not know is a warning there (the rule then admits no one by that name).
 */
function invariantProblems(spec: Spec, src: SourceMap, notices: Notice[]): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const names = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  for (const [name, inv] of Object.entries(spec.invariants ?? {})) {
    if (inv === null || typeof inv !== 'object') continue;
    const base = ['invariants', name];
    names(inv.datasets).forEach((d, i) => {
      if (typeof d !== 'string' || d === '' || has(spec.datasets, d)) return;
      problems.push(
        src.problem([...base, 'datasets', i], `dataset ${JSON.stringify(d)} is not defined; defined datasets: ${list(Object.keys(spec.datasets))}`),
      );
    });
    names(inv.onlyMembersOf).forEach((g, i) => {
      if (typeof g !== 'string' || g === '' || has(spec.groups, g)) return;
      problems.push(src.problem([...base, 'onlyMembersOf', i], `group ${JSON.stringify(g)} is not defined; defined groups: ${list(Object.keys(spec.groups))}`));
    });
    names(inv.onlyPrincipals).forEach((p, i) => {
      if (typeof p !== 'string' || p === '' || has(spec.principals, p)) return;
      const at = [...base, 'onlyPrincipals', i];
      if (spec.scim) {
        const pos = src.position(at);
        notices.push({
          level: 'warning',
          message: `${src.file}:${pos.line}:${pos.column}: invariant ${name}: principal ${JSON.stringify(p)} is not in the file; unless it is the name of a SCIM person, no principal of that name can hold the access`,
        });
        return;
      }
      problems.push(src.problem(at, `principal ${JSON.stringify(p)} is not defined; defined principals: ${list(Object.keys(spec.principals))}`));
    });
  }
  return problems;
}

/**
 * What a mysql backend needs of the spec: a mysql:// URL, datasets of its own shape (a database,
 * no schema), names MariaDB holds as accounts and roles, and long-lived passwords only. Every group
 * and principal with a grant there becomes a role of that name (a principal also an account
 * `'name'@'<host>'`): groups and principals share one role namespace, as on PostgreSQL.
 */
function mysqlProblems(spec: Spec, src: SourceMap): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const mysqlBackends = new Set(
    Object.entries(spec.backends)
      .filter(([, b]) => b.type === 'mysql')
      .map(([name]) => name),
  );
  for (const [name, b] of Object.entries(spec.backends)) {
    const url = (b as { url?: unknown }).url;
    if (b.type !== 'mysql' || typeof url !== 'string' || url === '') continue;
    const problem = mysqlUrlProblem(url);
    if (problem) problems.push(src.problem(['backends', name, 'url'], problem));
  }
  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (typeof ds.backend !== 'string' || !has(spec.backends, ds.backend)) continue;
    const type = spec.backends[ds.backend]!.type;
    const q = JSON.stringify;
    if (type === 'mysql' && has(ds, 'bucket')) {
      problems.push(
        src.problem(
          ['datasets', name, 'backend'],
          `dataset ${q(name)} has a bucket, so it needs an aws backend, but backend ${q(ds.backend)} is mysql; give database (and tables) instead of bucket`,
        ),
      );
    } else if (type === 'mysql' && has(ds, 'schema')) {
      problems.push(
        src.problem(
          ['datasets', name, 'schema'],
          `dataset ${q(name)} is on backend ${q(ds.backend)}, which is mysql: a MariaDB database has no schemas; remove schema (a mysql dataset is a database, optionally some of its tables)`,
        ),
      );
    } else if (type === 'postgres' && has(ds, 'database') && !has(ds, 'schema') && !has(ds, 'bucket')) {
      problems.push(
        src.problem(['datasets', name], `dataset ${q(name)} is on backend ${q(ds.backend)}, which is postgres: it needs a schema as well as a database`, true),
      );
    }
  }
  if (mysqlBackends.size === 0) return problems;
  problems.push(
    ...roleNamespaceProblems(
      spec,
      src,
      { type: 'mysql', role: 'MariaDB role', system: 'MariaDB', nameProblem: mysqlAccountNameProblem },
      (name, p, backends) =>
        credentialsOf(spec, p) !== 'temporary'
          ? []
          : [
              src.problem(
                ['principals', name, ...(p.credentials ? ['credentials'] : [])],
                `principal ${JSON.stringify(name)} has temporary credentials${p.credentials ? '' : ' (settings.credentials)'}, but backend ${[...backends].sort().join(', ')} is mysql, which issues long-lived passwords only; set credentials: key for this principal`,
                !p.credentials,
              ),
            ],
    ),
  );
  return problems;
}

/** As for postgres: the URL's value is never shown, only its scheme. */
function mysqlUrlProblem(url: string): string | undefined {
  const allowed = 'a mysql:// URL such as mysql://datagrant@db.example:3306 (or ${VAR} to read it from the environment)';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `url is not a URL; it must be ${allowed}`;
  }
  if (parsed.protocol !== 'mysql:') {
    const scheme = /^[A-Za-z][A-Za-z0-9+.-]{0,20}:\/\//.exec(url)?.[0];
    return `url must be ${allowed}${scheme ? ` (got a URL starting with ${scheme.toLowerCase()})` : ''}`;
  }
  if (!parsed.hostname) return `url names no host; it must be ${allowed}`;
  return undefined;
}
