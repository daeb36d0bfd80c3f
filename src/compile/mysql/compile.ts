// Spec → desired MariaDB/MySQL state for one mysql backend. Pure. The shapes are the model's
// (src/model/mysql.ts); what each level grants is src/model/mysql-levels.ts.
//
// A principal's account `'name'@'<host>'` holds one thing: its own role `name`, as its default
// role. MariaDB activates exactly one default role at login (and the roles granted to it), so the
// principal's role carries its direct grants and has its groups' roles granted to it; a group is
// a role holding the group's grants. Groups and principals therefore share one role namespace.
//
// MariaDB has no VALID UNTIL: an expired grant is simply not compiled, so access ends at the
// first apply after it expires (serve wakes for it: src/compile/index.ts, nextChangeAt).
import { CompileError } from '../../core/errors.js';
import type { Level, Notice, Resource } from '../../core/types.js';
import { mysqlLevelsUpTo } from '../../model/mysql-levels.js';
import {
  desiredAccount,
  mysqlAccountResource,
  mysqlGrantPrivileges,
  mysqlGrantResource,
  mysqlMembershipResource,
  mysqlPasswordResource,
  mysqlRoleResource,
  type MysqlTableScope,
} from '../../model/mysql.js';
import { mysqlAccountNameProblem, mysqlIdentifierProblem } from '../../spec/limits.js';
import {
  credentialsOf,
  durationSeconds,
  expiresInstant,
  isMysqlDataset,
  type Grant,
  type MysqlBackendSpec,
  type MysqlDatasetSpec,
  type Spec,
} from '../../spec/schema.js';

const sorted = <T extends string>(xs: Iterable<T>): T[] => [...new Set(xs)].sort();

/** The host part of accounts when the spec names none: any host. */
export const DEFAULT_MYSQL_HOST = '%';

const isLive = (g: Grant, now: Date) => !g.expires || expiresInstant(g.expires).getTime() > now.getTime();

export function compileMysql(spec: Spec, backendName: string, ctx: { now: Date }): { resources: Resource[]; notices: Notice[] } {
  const problems: string[] = [];
  const resources: Resource[] = [];
  const host = (spec.backends[backendName] as MysqlBackendSpec).host ?? DEFAULT_MYSQL_HOST;

  const datasetOf = (g: Grant): MysqlDatasetSpec | undefined => {
    const ds = spec.datasets[g.dataset];
    return ds && ds.backend === backendName && isMysqlDataset(ds) ? ds : undefined;
  };
  const onBackend = (grants: Grant[]) => grants.filter((g) => datasetOf(g) !== undefined);
  const live = (grants: Grant[]) => onBackend(grants).filter((g) => isLive(g, ctx.now));

  // Validation rejects these with their position; this holds for a spec built another way.
  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (ds.backend !== backendName || !isMysqlDataset(ds)) continue;
    for (const [what, v] of [['database', ds.database] as const, ...(ds.tables ?? []).map((t) => ['table', t] as const)]) {
      const problem = mysqlIdentifierProblem(v, what);
      if (problem) problems.push(`dataset ${name}: ${what} ${JSON.stringify(v)} ${problem}`);
    }
  }

  const roleOwner = new Map<string, string>();
  // Validation rejects spec names MariaDB cannot hold; SCIM people reach here without it.
  const claimRole = (role: string, owner: string) => {
    const problem = mysqlAccountNameProblem(role);
    if (problem) problems.push(`${owner}: role name ${JSON.stringify(role)} ${problem}`);
    const other = roleOwner.get(role);
    if (other) problems.push(`${owner}: role name ${JSON.stringify(role)} is also used by ${other}; groups and principals share one role namespace in MariaDB`);
    else roleOwner.set(role, owner);
  };

  /** One grant resource per (database, level up to the granted one) for a role; their addresses. */
  const grantsFor = (role: string, grants: Grant[]): string[] => {
    const scopes = new Map<string, Map<Level, MysqlTableScope>>();
    for (const g of grants) {
      const ds = datasetOf(g)!;
      const levels = scopes.get(ds.database) ?? new Map<Level, MysqlTableScope>();
      scopes.set(ds.database, levels);
      for (const level of mysqlLevelsUpTo(g.access)) {
        const had = levels.get(level);
        const add: MysqlTableScope = ds.tables ? sorted(ds.tables) : '*';
        levels.set(level, had === '*' || add === '*' ? '*' : sorted([...(had ?? []), ...add]));
      }
    }
    const addresses: string[] = [];
    for (const [database, levels] of scopes) {
      for (const [level, tables] of levels) {
        const r = mysqlGrantResource(backendName, { role, database, level, tables, privileges: mysqlGrantPrivileges(level, tables) });
        resources.push(r);
        addresses.push(r.address);
      }
    }
    return addresses;
  };

  // Groups that ever grant something on this backend are roles, kept while their grants are
  // expired, so that memberships survive a renewal.
  const groupRoles = new Set<string>();
  const groupGrants = new Map<string, string[]>();
  for (const [name, group] of Object.entries(spec.groups)) {
    if (onBackend(group.grants).length === 0) continue;
    groupRoles.add(name);
    claimRole(name, `group ${name}`);
    resources.push(mysqlRoleResource(backendName, name));
    groupGrants.set(name, grantsFor(name, live(group.grants)));
  }

  const rotateDefault = spec.settings?.rotate;
  for (const [name, p] of Object.entries(spec.principals)) {
    const groups = p.groups.filter((g) => groupRoles.has(g)).sort();
    const direct = live(p.grants);
    const viaGroups = groups.flatMap((g) => live(spec.groups[g]!.grants));
    // No live grant here (never had one, or all expired): no account, so no login.
    if (direct.length + viaGroups.length === 0) continue;
    if (credentialsOf(spec, p) === 'temporary') {
      problems.push(`principal ${name}: temporary credentials are not issued by mysql backends (passwords only); set credentials: key`);
      continue;
    }
    claimRole(name, `principal ${name}`);
    resources.push(mysqlRoleResource(backendName, name));
    const memberships = groups.map((g) => {
      const r = mysqlMembershipResource(backendName, g, name);
      resources.push(r);
      return r.address;
    });
    const grants = grantsFor(name, direct);
    const account = mysqlAccountResource(backendName, name, desiredAccount(name, host));
    resources.push(account);
    const rotate = p.rotate ?? rotateDefault;
    // Set last, after every grant it leads to, so that it works the moment it is handed out. No
    // rotation grace: an account holds one password, and the old one stops when a new one is set.
    resources.push(
      mysqlPasswordResource(
        backendName,
        name,
        host,
        [account.address, ...memberships, ...grants, ...groups.flatMap((g) => groupGrants.get(g) ?? [])],
        rotate ? { rotateAfterSeconds: durationSeconds(rotate) } : undefined,
      ),
    );
  }

  if (problems.length) throw new CompileError(problems.map((m) => `backend ${backendName}: ${m}`));
  resources.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { resources, notices: [] };
}
