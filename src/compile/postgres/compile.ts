// Spec → desired PostgreSQL state for one postgres backend. Pure.
//
// Resources (all addresses prefixed by the backend's name):
//  role/<name>                               group roles (NOLOGIN) and principals' login roles
//  membership/<group>/<principal>            GRANT group TO principal
//  connect/<role>/<database>                 CONNECT on a database (shared by its schemas)
//  grant/<role>/<database>.<schema>/<level>  the privileges <level> adds to the level below it,
//                                            so a write grant is the read and write resources;
//                                            "%", "." and "/" inside a name are written %25, %2E,
//                                            %2F, so that distinct schemas never share an address
//  password/<role>                           the login role's password (a credential slot)
//  session-login/<principal>/<suffix>        a temporary principal's live session (from the
//                                            session log): kept while it may run, else dropped
import { CompileError } from '../../core/errors.js';
import type { Level, Notice, Resource } from '../../core/types.js';
import { credentialsOf, durationSeconds, expiresInstant, isPgDataset, type Grant, type PgDatasetSpec, type Spec } from '../../spec/schema.js';
import { pgIdentifierProblem, pgRoleNameProblem } from '../../spec/limits.js';
import { levelIncrement, levelsUpTo } from '../../model/postgres-levels.js';
import {
  connectResource,
  grantPrivileges,
  grantResource,
  membershipResource,
  passwordResource,
  roleResource,
  sessionLoginResource,
  sessionSuffix,
  type TableScope,
} from '../../model/postgres.js';
import type { SessionFact } from '../../model/session.js';
import { sessionTarget } from '../sessions.js';

const sorted = <T extends string>(xs: Iterable<T>): T[] => [...new Set(xs)].sort();

export { grantPrivileges, pgAddress, type GrantAttrs, type GrantPrivileges, type RoleAttrs, type TableScope } from '../../model/postgres.js';

export interface CompileContext {
  now: Date;
  /** Sessions the store logged: a session login is kept while its session may run, else dropped. */
  sessions?: readonly SessionFact[];
}

const isLive = (g: Grant, now: Date) => !g.expires || expiresInstant(g.expires).getTime() > now.getTime();

export function compilePostgres(spec: Spec, backendName: string, ctx: CompileContext): { resources: Resource[]; notices: Notice[] } {
  const problems: string[] = [];
  const notices: Notice[] = [];
  const resources: Resource[] = [];

  const pgDataset = (g: Grant): PgDatasetSpec | undefined => {
    const ds = spec.datasets[g.dataset];
    return ds && ds.backend === backendName && isPgDataset(ds) ? ds : undefined;
  };
  const onBackend = (grants: Grant[]) => grants.filter((g) => pgDataset(g) !== undefined);
  const live = (grants: Grant[]) => onBackend(grants).filter((g) => isLive(g, ctx.now));

  // Validation rejects these with their position; this holds for a spec built another way.
  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (ds.backend !== backendName || !isPgDataset(ds)) continue;
    for (const [what, v] of [['database', ds.database], ['schema', ds.schema], ...(ds.tables ?? []).map((t) => ['table', t] as const)] as const) {
      const problem = pgIdentifierProblem(v);
      if (problem) problems.push(`dataset ${name}: ${what} ${JSON.stringify(v)} ${problem}`);
    }
  }

  const roleOwner = new Map<string, string>();
  // Validation rejects spec names PostgreSQL cannot hold; SCIM people reach here without it.
  const claimRole = (role: string, owner: string) => {
    const problem = pgRoleNameProblem(role);
    if (problem) problems.push(`${owner}: role name ${JSON.stringify(role)} ${problem}`);
    const other = roleOwner.get(role);
    if (other)
      problems.push(`${owner}: role name ${JSON.stringify(role)} is also used by ${other}; groups and principals share one role namespace in PostgreSQL`);
    else roleOwner.set(role, owner);
  };

  /** Grant resources (one per level up to the granted one) plus CONNECT per database, for one role. */
  const grantsFor = (role: string, grants: Grant[]): string[] => {
    // (database, schema) → level → table scope, merged over datasets on the same schema.
    const scopes = new Map<string, { database: string; schema: string; levels: Map<Level, TableScope> }>();
    for (const g of grants) {
      const ds = pgDataset(g)!;
      const key = JSON.stringify([ds.database, ds.schema]);
      const entry = scopes.get(key) ?? { database: ds.database, schema: ds.schema, levels: new Map<Level, TableScope>() };
      scopes.set(key, entry);
      for (const level of levelsUpTo(g.access)) {
        const had = entry.levels.get(level);
        const add: TableScope = ds.tables ? sorted(ds.tables) : '*';
        entry.levels.set(level, had === '*' || add === '*' ? '*' : sorted([...(had ?? []), ...add]));
      }
    }
    const databases = new Set<string>();
    const addresses: string[] = [];
    for (const { database, schema, levels } of scopes.values()) {
      databases.add(database);
      for (const [level, tables] of levels) {
        const r = grantResource(backendName, { role, database, schema, level, tables, privileges: grantPrivileges(level, tables) });
        resources.push(r);
        addresses.push(r.address);
      }
    }
    for (const database of databases) {
      const r = connectResource(backendName, role, database, [...levelIncrement('read').database]);
      resources.push(r);
      addresses.push(r.address);
    }
    return addresses;
  };

  // Groups that ever grant something on this backend become NOLOGIN roles (kept while their grants
  // are expired, so memberships survive a renewal).
  const groupRoles = new Set<string>();
  const groupGrants = new Map<string, string[]>();
  for (const [name, group] of Object.entries(spec.groups)) {
    if (onBackend(group.grants).length === 0) continue;
    groupRoles.add(name);
    claimRole(name, `group ${name}`);
    resources.push(roleResource(backendName, name, { login: false, validUntil: null, flags: [] }));
    groupGrants.set(name, grantsFor(name, live(group.grants)));
  }

  const rotateDefault = spec.settings?.rotate;

  for (const [name, p] of Object.entries(spec.principals)) {
    const groups = p.groups.filter((g) => groupRoles.has(g)).sort();
    const direct = live(p.grants);
    const viaGroups = groups.flatMap((g) => live(spec.groups[g]!.grants));
    const effective = [...direct, ...viaGroups];
    // No live grant here (never had one, or all expired): no role, so no login.
    if (effective.length === 0) continue;
    claimRole(name, `principal ${name}`);

    // A temporary principal's role never logs in and has no password: its sessions' login roles
    // (made by the broker, members of this role) do, each until its session ends.
    if (credentialsOf(spec, p) === 'temporary') {
      resources.push(roleResource(backendName, name, { login: false, validUntil: null, flags: [] }));
      for (const g of groups) resources.push(membershipResource(backendName, g, name));
      grantsFor(name, direct);
      continue;
    }

    // The login ends when the last grant does; one grant without expiry keeps it open.
    const validUntil = effective.some((g) => !g.expires)
      ? null
      : new Date(Math.max(...effective.map((g) => expiresInstant(g.expires!).getTime()))).toISOString();
    resources.push(roleResource(backendName, name, { login: true, validUntil, flags: [] }));

    const memberships = groups.map((g) => {
      const r = membershipResource(backendName, g, name);
      resources.push(r);
      return r.address;
    });
    const grantAddresses = grantsFor(name, direct);

    const rotate = p.rotate ?? rotateDefault;
    // The password is set last (after the group roles' grants too), so that it works the moment
    // it is handed out. It has no rotation grace: a role holds one password, so the old one stops
    // the moment a new one is set, and must not be kept (or listed) as if it still worked.
    resources.push(
      passwordResource(
        backendName,
        name,
        [...memberships, ...grantAddresses, ...groups.flatMap((g) => groupGrants.get(g) ?? [])],
        rotate ? { rotateAfterSeconds: durationSeconds(rotate) } : undefined,
      ),
    );
  }

  // A session login stays while its session may still run and its principal still has sessions
  // with access here, through the same role; anything else found on the server is dropped
  // (expired, revoked, or never logged).
  for (const s of ctx.sessions ?? []) {
    if (s.backend !== backendName || Date.parse(s.expiresAt) <= ctx.now.getTime() || sessionSuffix(s.target) === undefined) continue;
    const target = sessionTarget(spec, backendName, s.principal, ctx.now);
    if ('refused' in target) continue;
    resources.push(sessionLoginResource(backendName, target.target, s.target));
  }

  if (problems.length) throw new CompileError(problems.map((m) => `backend ${backendName}: ${m}`));
  resources.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { resources, notices };
}
