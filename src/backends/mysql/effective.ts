// Effective access to MariaDB datasets, from the grant tables (access.ts reads them). Pure, so every
// way an account reaches a database — a global privilege, a database grant (exact or a pattern),
// a table or column grant, its default role and the roles that role holds, a role it may SET,
// PUBLIC, an anonymous account, PROXY — is testable without a server.
//
// What counts, per dataset and level: a privilege the model's levels hold (mysqlAccessLevel: read
// = SELECT, write = any of INSERT/UPDATE/DELETE, admin = any of the admin increment or GRANT
// OPTION). Rows are per level actually held (INSERT without SELECT: a write row and no read row;
// datagrant's own grants always include SELECT, so its principals' rows are cumulative).
//
// MariaDB looks privileges up separately for the account, for its active role (with every role
// that role holds, merged) and for PUBLIC, and adds them up. Within each lookup, of the database
// grants whose pattern matches the database only the most specific one counts (an exact name
// before `ana%`): a pattern grant shadowed that way is no access, and `limits` says so.
//
// A session has one active role: its default role at login, or one granted role by SET ROLE.
// A path is datagrant's (`managed`) exactly when it is the kind of object datagrant makes: a grant
// on an exact database or table to one of its roles, an account of its own whose default role is
// its own role of the same name, and roles of its own granted to its roles.
import type { Level } from '../../core/types.js';
import { LEVELS, type AccessHolder, type AccessPath, type ActualAccess, type CredentialUsage } from '../../model/access.js';
import { mysqlAccessLevel } from '../../model/mysql-levels.js';
import { account as accountSql, exactDatabase, ident, onTable } from './sql.js';

/** An account or role (mysql.global_priv), as the access reader needs it. */
export interface MysqlObjectFact {
  user: string;
  /** '' for a role. */
  host: string;
  isRole: boolean;
  /** Carries this installation's marker. */
  ours: boolean;
  /** The marker's creation time, for a credential's age. */
  createdAt?: string;
  locked: boolean;
  /** The password is expired: a login may only set a new one. */
  passwordExpired: boolean;
  defaultRole: string | null;
  /** Global privileges, as GRANT names them. */
  global: string[];
}

/** `role` granted to the account `user@host`, or to the role `user` (host ''). */
export interface MysqlMappingFact {
  user: string;
  host: string;
  role: string;
}

/** A row of mysql.db (`db` is the pattern as stored), tables_priv (`table`) or columns_priv (`column`). */
export interface MysqlPrivilegeFact {
  user: string;
  host: string;
  db: string;
  table?: string;
  column?: string;
  privileges: string[];
}

/** `user@host` may log in as `proxiedUser@proxiedHost` (mysql.proxies_priv); '' proxied user: any. */
export interface MysqlProxyFact {
  user: string;
  host: string;
  proxiedUser: string;
  proxiedHost: string;
}

export interface MysqlAccessFacts {
  backend: string;
  objects: MysqlObjectFact[];
  mappings: MysqlMappingFact[];
  /** Every row of mysql.db. */
  databaseRows: MysqlPrivilegeFact[];
  /** tables_priv and columns_priv rows on the datasets' databases. */
  tableRows: MysqlPrivilegeFact[];
  columnRows: MysqlPrivilegeFact[];
  proxies: MysqlProxyFact[];
  /** The datasets' databases that exist, with their tables. */
  databases: Record<string, string[]>;
}

export interface MysqlAccessDataset {
  name: string;
  database: string;
  tables?: string[];
}

export const NO_LOGIN_RECORD = 'MariaDB keeps no record of logins; enable the audit plugin (server_audit) to see them in its log';

const PUBLIC_USER = 'PUBLIC';

/** An account's or role's key in the maps below. */
const keyOf = (user: string, host: string) => `${user}\0${host}`;
const PUBLIC = keyOf(PUBLIC_USER, '');

/** At most this many names in one path; the rest are counted. */
const LIST_MAX = 10;
const list = (names: string[]) => (names.length <= LIST_MAX ? names.join(', ') : `${names.slice(0, LIST_MAX).join(', ')} and ${names.length - LIST_MAX} more`);

const uniqueSorted = (privileges: Iterable<string>) => [...new Set(privileges)].sort();

/** Whether a mysql.db pattern matches a database: `_` one character, `%` any, `\` escapes either. */
export function databasePatternMatches(pattern: string, database: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (c === '%') re += '.*';
    else if (c === '_') re += '.';
    else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 's').test(database);
}
const escapeRe = (c: string) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * How specific a mysql.db pattern is, as the server sorts its grants: a name without wildcards
 * first, then by where the first wildcard is (later: more specific). The first match wins.
 */
export function databasePatternRank(pattern: string): number {
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) i++;
    else if (c === '%' || c === '_') return Math.min(i + 1, 127);
  }
  return pattern.length ? 128 : 0;
}

/** A privilege source one grantee holds on a dataset at a level. */
interface Held {
  key: string;
  level: Level;
  via: string;
  covers: 'all' | Set<string>;
  managed: boolean;
}

/** Effective access to `datasets`, what was left out (`limits`), what could not be read (`failures`), and the (unknowable) last logins. */
export function effectiveAccess(
  facts: MysqlAccessFacts,
  datasets: MysqlAccessDataset[],
): { rows: ActualAccess[]; usage: CredentialUsage[]; limits: string[]; failures: string[] } {
  const b = facts.backend;
  const objects = new Map(facts.objects.map((o) => [keyOf(o.user, o.isRole ? '' : o.host), o]));
  const roles = new Map(facts.objects.filter((o) => o.isRole && o.user !== PUBLIC_USER).map((o) => [o.user, o]));
  const accounts = facts.objects.filter((o) => !o.isRole);
  const isOurRole = (key: string) => {
    const o = objects.get(key);
    return o !== undefined && o.isRole && o.ours && key !== PUBLIC;
  };
  const grantee = (key: string) => {
    if (key === PUBLIC) return 'PUBLIC';
    const [user, host] = key.split('\0') as [string, string];
    return objects.get(key)?.isRole ? ident(user) : accountSql(user, host);
  };

  // Roles each role (host '') and each account holds, in the order MariaDB keeps them.
  const granted = new Map<string, string[]>();
  for (const m of facts.mappings) {
    if (!roles.has(m.role)) continue;
    const k = keyOf(m.user, m.host);
    granted.set(k, [...(granted.get(k) ?? []), m.role]);
  }
  /** A role and every role it holds, at any depth, with the roles in between (nearest first). */
  const closure = (role: string): Map<string, string[]> => {
    const out = new Map<string, string[]>([[role, []]]);
    const queue = [role];
    while (queue.length) {
      const at = queue.shift()!;
      for (const r of granted.get(keyOf(at, '')) ?? []) {
        if (out.has(r)) continue;
        out.set(r, at === role ? [] : [...out.get(at)!, at]);
        queue.push(r);
      }
    }
    return out;
  };

  const byKey = <T extends { user: string; host: string }>(rows: T[]) => {
    const m = new Map<string, T[]>();
    for (const r of rows) {
      const k = keyOf(r.user, r.host);
      m.set(k, [...(m.get(k) ?? []), r]);
    }
    return m;
  };
  const dbRows = byKey(facts.databaseRows);
  const tableRows = byKey(facts.tableRows);
  const columnRows = byKey(facts.columnRows);

  const rows: ActualAccess[] = [];
  const limits: string[] = [];
  const failures: string[] = [];

  for (const ds of datasets) {
    const existing = facts.databases[ds.database];
    if (existing === undefined) {
      failures.push(`dataset ${ds.name}: database ${ds.database} does not exist (or the account datagrant connects as has no privilege on it, which hides it)`);
      continue;
    }
    const missing = (ds.tables ?? []).filter((t) => !existing.includes(t));
    if (missing.length) failures.push(`dataset ${ds.name}: ${missing.map((t) => onTable(ds.database, t)).join(', ')} not found`);
    const names = ds.tables ? ds.tables.filter((t) => existing.includes(t)) : existing;
    const whole = ds.tables === undefined;
    const inDataset = new Set(names);
    const shadowed = new Set<string>();

    /**
     * What one lookup finds: the grants of `keys` (one account, PUBLIC, or a role with the roles it
     * holds, which MariaDB merges into one set), per level.
     */
    const looked = new Map<string, Map<Level, Held[]>>();
    const lookup = (keys: string[]): Map<Level, Held[]> => {
      // Every account of a group holds the same roles: each set is looked up once per dataset.
      const memo = keys.join('\u0001');
      const seen = looked.get(memo);
      if (seen) return seen;
      const out = new Map<Level, Held[]>();
      looked.set(memo, out);
      const add = (h: Held) => out.set(h.level, [...(out.get(h.level) ?? []), h]);
      const grouped = (key: string, privileges: Iterable<string>) => {
        const byLevel = new Map<Level, string[]>();
        for (const p of privileges) {
          const l = mysqlAccessLevel(p);
          if (l) byLevel.set(l, [...(byLevel.get(l) ?? []), p]);
        }
        return [...byLevel].map(([level, ps]) => ({ key, level, privileges: uniqueSorted(ps) }));
      };
      for (const key of keys) {
        const o = objects.get(key);
        for (const g of grouped(key, o?.global ?? []))
          add({ key, level: g.level, via: `GRANT ${g.privileges.join(', ')} ON *.* TO ${grantee(key)}`, covers: 'all', managed: false });
      }
      // Database grants: the most specific matching pattern of the merged set, and only it.
      const patterns = new Map<string, Map<string, string[]>>();
      for (const key of keys)
        for (const r of dbRows.get(key) ?? []) {
          if (!databasePatternMatches(r.db, ds.database)) continue;
          const byGrantee = patterns.get(r.db) ?? new Map<string, string[]>();
          patterns.set(r.db, byGrantee.set(key, [...(byGrantee.get(key) ?? []), ...r.privileges]));
        }
      const best = Math.max(-1, ...[...patterns.keys()].map(databasePatternRank));
      for (const [pattern, byGrantee] of patterns) {
        const exact = exactDatabase(pattern) === ds.database;
        if (databasePatternRank(pattern) < best) {
          for (const [key, ps] of byGrantee) if (grouped(key, ps).length) shadowed.add(`GRANT … ON ${ident(pattern)}.* TO ${grantee(key)}`);
          continue;
        }
        for (const [key, ps] of byGrantee)
          for (const g of grouped(key, ps))
            add({
              key,
              level: g.level,
              via: `GRANT ${g.privileges.join(', ')} ON ${ident(pattern)}.* TO ${grantee(key)}${exact ? '' : ` (a pattern matching ${ds.database})`}`,
              covers: 'all',
              managed: exact && isOurRole(key),
            });
      }
      // Table grants: per grantee and level, the tables grouped by the privileges they hold.
      const tableLevel = new Map<string, Set<string>>();
      for (const key of keys) {
        const groups = new Map<string, { level: Level; privileges: string[]; tables: string[] }>();
        for (const r of tableRows.get(key) ?? []) {
          if (r.db !== ds.database || !inDataset.has(r.table!)) continue;
          for (const g of grouped(key, r.privileges)) {
            for (const p of g.privileges) tableLevel.set(JSON.stringify([key, r.table, p]), new Set());
            const k = JSON.stringify([g.level, g.privileges]);
            const e = groups.get(k) ?? { level: g.level, privileges: g.privileges, tables: [] };
            groups.set(k, { ...e, tables: [...e.tables, r.table!] });
          }
        }
        for (const g of groups.values()) {
          const covers = new Set(g.tables);
          const all = whole && names.every((n) => covers.has(n));
          add({
            key,
            level: g.level,
            via: `GRANT ${g.privileges.join(', ')} ON ${all ? `every table of ${ident(ds.database)}` : list(g.tables.sort().map((t) => onTable(ds.database, t)))} TO ${grantee(key)}`,
            covers,
            managed: isOurRole(key),
          });
        }
      }
      // Column grants, where the grantee does not hold the privilege on the whole table as well.
      for (const key of keys) {
        const cols = new Map<string, { level: Level; privilege: string; table: string; columns: string[] }>();
        for (const r of columnRows.get(key) ?? []) {
          if (r.db !== ds.database || !inDataset.has(r.table!)) continue;
          for (const p of r.privileges) {
            const level = mysqlAccessLevel(p);
            if (!level || tableLevel.has(JSON.stringify([key, r.table, p]))) continue;
            const k = JSON.stringify([r.table, p]);
            const e = cols.get(k) ?? { level, privilege: p, table: r.table!, columns: [] };
            cols.set(k, { ...e, columns: [...e.columns, r.column!] });
          }
        }
        for (const c of cols.values())
          add({
            key,
            level: c.level,
            via: `GRANT ${c.privilege} (${c.columns.sort().map(ident).join(', ')}) ON ${onTable(ds.database, c.table)} TO ${grantee(key)}`,
            covers: new Set(),
            managed: false,
          });
      }
      return out;
    };

    const fullyCovers = (held: Held[]) => {
      if (held.some((h) => h.covers === 'all')) return true;
      const covered = new Set(held.flatMap((h) => (h.covers === 'all' ? [] : [...h.covers])));
      return held.length > 0 && names.every((n) => covered.has(n));
    };
    const partial = (held: Held[]): Pick<AccessPath, 'partial'> => (fullyCovers(held) ? {} : { partial: true });
    const own = (held: Held[]): AccessPath[] => held.map((h) => ({ via: h.via, ...partial([h]), ...(h.managed ? { managed: true } : {}) }));

    /**
     * What a role gives whoever has it active, at a level: per role of its closure (itself first)
     * that holds something, with the roles in between. One lookup over the closure, as MariaDB
     * merges it.
     */
    const throughRole = (role: string, level: Level): { role: string; chain: string[]; held: Held[] }[] => {
      const reach = closure(role);
      const found = lookup([...reach.keys()].map((r) => keyOf(r, ''))).get(level) ?? [];
      return [...reach].map(([r, chain]) => ({ role: r, chain, held: found.filter((h) => h.key === keyOf(r, '')) })).filter((x) => x.held.length > 0);
    };
    /** Roles all datagrant's, and what they hold through its grants only. */
    const oursAll = (x: { role: string; chain: string[]; held: Held[] }, ...more: string[]) =>
      [x.role, ...x.chain, ...more].every((r) => isOurRole(keyOf(r, ''))) && x.held.every((h) => h.managed);
    const chainWords = (chain: string[]) => (chain.length ? `, through ${chain.map(ident).join(', ')}` : '');

    const out: ActualAccess[] = [];
    const holderOf = (o: MysqlObjectFact | undefined, key: string): AccessHolder => {
      if (key === PUBLIC) return { id: 'PUBLIC', kind: 'mysql-public', name: 'PUBLIC', managed: false };
      const [user, host] = key.split('\0') as [string, string];
      if (o?.isRole) return { id: user, kind: 'mysql-role', name: user, managed: o.ours };
      const id = accountSql(user, host);
      if (user === '') return { id, kind: 'mysql-anonymous', name: `''@${host}`, managed: false };
      return { id, kind: 'mysql-account', name: `${user}@${host}`, managed: o?.ours === true, ...(o?.ours ? { principal: user } : {}) };
    };
    const row = (key: string, level: Level, paths: AccessPath[], conditions: string[] = []) => {
      if (paths.length === 0) return;
      const sorted = [...paths].sort((x, y) => (x.via < y.via ? -1 : x.via > y.via ? 1 : 0));
      out.push({
        backend: b,
        dataset: ds.name,
        level,
        holder: holderOf(objects.get(key), key),
        paths: conditions.length ? sorted.map((p) => ({ ...p, conditions: [...(p.conditions ?? []), ...conditions] })) : sorted,
      });
    };

    // PUBLIC: its own row, not repeated in every account's.
    const publicHeld = lookup([PUBLIC]);
    for (const l of LEVELS) row(PUBLIC, l, own(publicHeld.get(l) ?? []));

    /** An account's paths at a level: its own grants, its default role, the roles it may SET. */
    const accountPaths = (a: MysqlObjectFact, level: Level): AccessPath[] => {
      const key = keyOf(a.user, a.host);
      const paths = own(lookup([key]).get(level) ?? []);
      const mine = granted.get(key) ?? [];
      const def = a.defaultRole !== null && mine.includes(a.defaultRole) ? a.defaultRole : undefined;
      if (def !== undefined)
        for (const x of throughRole(def, level))
          paths.push({
            via: x.role === def ? `default role ${ident(def)}` : `default role ${ident(def)}, which holds role ${ident(x.role)}${chainWords(x.chain)}`,
            ...partial(x.held),
            ...(a.ours && def === a.user && oursAll(x, def) ? { managed: true } : {}),
          });
      for (const r of mine) {
        if (r === def) continue;
        const through = throughRole(r, level);
        if (through.length) paths.push({ via: `can SET ROLE ${ident(r)}`, ...partial(through.flatMap((x) => x.held)) });
      }
      return paths;
    };

    for (const a of accounts) {
      const conditions = [
        ...(a.locked ? [`the account is locked (ACCOUNT LOCK): nobody logs in as it until it is unlocked`] : []),
        ...(a.passwordExpired ? ['the password is expired: a login may only set a new one'] : []),
      ];
      const proxied = facts.proxies.filter((p) => p.user === a.user && p.host === a.host && p.proxiedUser !== '');
      for (const level of LEVELS) {
        const paths = accountPaths(a, level);
        for (const p of proxied) {
          const target = objects.get(keyOf(p.proxiedUser, p.proxiedHost));
          if (!target || target.isRole || accountPaths(target, level).length === 0) continue;
          paths.push({
            via: `PROXY ON ${accountSql(p.proxiedUser, p.proxiedHost)}`,
            conditions: ['it logs in through an authentication plugin that proxies (PAM, GSSAPI with a mapping)'],
            ...(accountPaths(target, level).every((x) => x.partial) ? { partial: true } : {}),
          });
        }
        row(keyOf(a.user, a.host), level, paths, conditions);
      }
    }
    for (const r of roles.values()) {
      for (const level of LEVELS)
        row(
          keyOf(r.user, ''),
          level,
          throughRole(r.user, level).flatMap((x) =>
            x.role === r.user
              ? own(x.held)
              : [{ via: `holds role ${ident(x.role)}${chainWords(x.chain)}`, ...partial(x.held), ...(oursAll(x, r.user) ? { managed: true } : {}) }],
          ),
        );
    }
    rows.push(...out);
    if (shadowed.size)
      limits.push(
        `dataset ${ds.name}: ${list([...shadowed].sort())} match database ${ds.database} but give nothing there: MariaDB uses only the most specific database grant that matches (per account, per role with the roles it holds), and a more specific one exists`,
      );
  }

  // Ways to any access at all, which this report does not follow as paths.
  const definers = accounts.filter((a) => a.global.includes('SUPER') || a.global.includes('SET USER')).map((a) => accountSql(a.user, a.host));
  if (definers.length)
    limits.push(
      `accounts with SUPER or SET USER can create views and routines that run as any account (DEFINER), and so reach what any account reaches, which is not shown as theirs: ${list(definers.sort())}`,
    );
  const writesGrants = facts.objects
    .filter(
      (o) =>
        o.global.some((p) => p === 'INSERT' || p === 'UPDATE') ||
        (dbRows.get(keyOf(o.user, o.isRole ? '' : o.host)) ?? []).some(
          (r) => databasePatternMatches(r.db, 'mysql') && r.privileges.some((p) => p === 'INSERT' || p === 'UPDATE'),
        ),
    )
    .map((o) => (o.isRole ? (o.user === PUBLIC_USER ? 'PUBLIC' : `role ${ident(o.user)}`) : accountSql(o.user, o.host)));
  if (writesGrants.length)
    limits.push(
      `who may change the grant tables (INSERT or UPDATE on database mysql) can give themselves any access, which is not shown as theirs: ${list(writesGrants.sort())}`,
    );
  const anyProxy = facts.proxies.filter((p) => p.proxiedUser === '' && objects.has(keyOf(p.user, p.host))).map((p) => accountSql(p.user, p.host));
  if (anyProxy.length)
    limits.push(
      `accounts that may proxy any account (PROXY ON ''@'%'), through an authentication plugin that proxies, reach what that account reaches, which is not shown as theirs: ${list([...new Set(anyProxy)].sort())}`,
    );

  const usage: CredentialUsage[] = accounts
    .filter((a) => a.ours)
    .map((a) => ({
      backend: b,
      holder: accountSql(a.user, a.host),
      principal: a.user,
      credential: `${a.user}@${a.host}`,
      ...(a.createdAt ? { createdAt: a.createdAt } : {}),
      unknown: NO_LOGIN_RECORD,
    }))
    .sort((x, y) => (x.holder < y.holder ? -1 : 1));

  rows.sort((x, y) => {
    const a = [x.dataset, LEVELS.indexOf(x.level), x.holder.kind === 'mysql-public' ? '' : x.holder.id];
    const c = [y.dataset, LEVELS.indexOf(y.level), y.holder.kind === 'mysql-public' ? '' : y.holder.id];
    for (let i = 0; i < a.length; i++) if (a[i]! !== c[i]!) return a[i]! < c[i]! ? -1 : 1;
    return 0;
  });
  return { rows, usage, limits, failures };
}
