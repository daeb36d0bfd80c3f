// Effective access, intended against actual (issue 13): what every backend's access reader found,
// set beside what the spec grants, one row per holder × dataset × level. Pure, like the plan's
// diff: the readings, the session log and `now` are passed in.
import { awsAccessSet, awsSessionRoleName } from '../compile/sessions.js';
import { intendedAccess } from '../compile/access.js';
import { actualFacts, checkInvariants } from '../compile/invariants.js';
import type { Level } from '../core/types.js';
import {
  LEVELS,
  type AccessPath,
  type AccessReading,
  type AccessReport,
  type AccessReportRow,
  type ActualAccess,
  type CredentialUsage,
} from '../model/access.js';
import type { SessionFact } from '../model/session.js';
import { knownAccessOf } from '../spec/known-access.js';
import { credentialsOf, durationSeconds, type Spec } from '../spec/schema.js';

export interface AccessFilters {
  /** A principal's name, or a holder's name or id (an unmanaged IAM user's ARN, a role). */
  principal?: string;
  dataset?: string;
  /** A duration (`90d`): only rows whose credentials were not used for that long. */
  unused?: string;
}

export interface AccessInput {
  spec: Spec;
  specHash: string;
  specFile: string;
  now: Date;
  /** Each backend's reading, by backend name. */
  readings: Record<string, AccessReading>;
  /** The store's session log: temporary principals' sessions and their last issue. */
  sessions: readonly SessionFact[];
  /** Principals whose grants settings.expireUnused takes away, per backend: not intended there. */
  idle?: Record<string, ReadonlySet<string>>;
  filters?: AccessFilters;
}

const rowKey = (backend: string, dataset: string, level: Level, who: string) => `${backend}|${dataset}|${level}|${who}`;

/**
 * Which spec principals an AWS access-set role serves: the temporary principals whose access set
 * it is. Its access is theirs (each assumes it for a session), so rows name them, not the role.
 */
function sessionRoles(spec: Spec, now: Date): Map<string, Map<string, string[]>> {
  const byBackend = new Map<string, Map<string, string[]>>();
  for (const [backend, b] of Object.entries(spec.backends)) {
    if (b.type !== 'aws') continue;
    const roles = new Map<string, string[]>();
    for (const [name, p] of Object.entries(spec.principals)) {
      if (credentialsOf(spec, p) !== 'temporary') continue;
      const set = awsAccessSet(spec, backend, name, now);
      if (!set.groups.length && !set.direct) continue;
      const role = awsSessionRoleName(set);
      roles.set(role, [...(roles.get(role) ?? []), name]);
    }
    byBackend.set(backend, roles);
  }
  return byBackend;
}

/** The actual rows as the report counts them: a principal's access under its name. */
function attribute(
  spec: Spec,
  rows: readonly ActualAccess[],
  roles: Map<string, Map<string, string[]>>,
  sessions: readonly SessionFact[],
): { who: string; row: ActualAccess }[] {
  const out: { who: string; row: ActualAccess }[] = [];
  // The session logins the session log vouches for: backend, principal, login role.
  const logged = new Set(sessions.map((s) => `${s.backend}\0${s.principal}\0${s.target}`));
  for (const original of rows) {
    let row = original;
    let h = row.holder;
    if (h.managed && h.kind === 'pg-role' && h.principal === undefined) {
      // PostgreSQL's marker is a comment any role with CREATEROLE can copy: a role counts as
      // datagrant's only where the spec or the session log says it is — named after a principal
      // or group, or a session login the log recorded. Any other is someone else's, shown so.
      const claimed = h.sessionOf;
      if (claimed !== undefined && logged.has(`${row.backend}\0${claimed}\0${h.name}`)) {
        out.push({ who: `p:${claimed}`, row: { ...row, holder: { ...h, principal: claimed } } });
        continue;
      }
      if (!Object.hasOwn(spec.principals, h.name) && !Object.hasOwn(spec.groups, h.name)) {
        h = { ...h, managed: false };
        const why =
          claimed !== undefined
            ? `claims to be a session login of ${claimed}, which the session log does not record`
            : 'carries the marker but is no principal or group of the spec';
        row = { ...row, holder: h, paths: row.paths.map(({ managed: _mine, ...p }) => ({ ...p, via: `${p.via} (role ${h.name} ${why})` })) };
        out.push({ who: `h:${h.id}`, row });
        continue;
      }
    }
    if (h.managed && h.principal !== undefined) {
      out.push({ who: `p:${h.principal}`, row });
      continue;
    }
    // A managed PostgreSQL role is named after its principal or group (one namespace, which the
    // compiler keeps unique), even where the catalog alone cannot tell which it is.
    if (h.managed && h.kind === 'pg-role' && Object.hasOwn(spec.principals, h.name)) {
      out.push({ who: `p:${h.name}`, row: { ...row, holder: { ...h, principal: h.name } } });
      continue;
    }
    // The reader names a role by its ARN's last segment (`role/dg-s-…`, a path before it perhaps).
    const served = h.managed && h.kind === 'aws-role' ? roles.get(row.backend)?.get(h.id.slice(h.id.lastIndexOf('/') + 1)) : undefined;
    if (served) {
      for (const principal of served) {
        out.push({
          who: `p:${principal}`,
          row: {
            ...row,
            holder: { ...h, principal },
            paths: row.paths.map((p) => ({ ...p, via: `sessions of ${h.name}: ${p.via}` })),
          },
        });
      }
      continue;
    }
    // A managed group's own rows repeat what its members' rows say (each member's row names the
    // group); a managed role no principal is served by any longer still holds access: shown.
    // MariaDB: a principal's own role too, which its account's rows name as its default role.
    if (h.managed && h.kind === 'pg-role' && Object.hasOwn(spec.groups, h.name)) continue;
    if (h.managed && h.kind === 'mysql-role' && (Object.hasOwn(spec.groups, h.name) || Object.hasOwn(spec.principals, h.name))) continue;
    out.push({ who: `h:${h.id}`, row });
  }
  return out;
}

export function accessReport(input: AccessInput): AccessReport {
  const { spec, now } = input;
  const rows = new Map<string, AccessReportRow>();
  const get = (backend: string, dataset: string, level: Level, who: string, init: () => Omit<AccessReportRow, 'id' | 'status' | 'intended' | 'actual'>) => {
    const id = rowKey(backend, dataset, level, who);
    let row = rows.get(id);
    if (!row) {
      row = { id, ...init(), status: 'intended', intended: [], actual: [] };
      rows.set(id, row);
    }
    return row;
  };

  for (const g of intendedAccess(spec, now)) {
    if (input.idle?.[g.backend]?.has(g.principal)) continue;
    for (const level of LEVELS.slice(0, LEVELS.indexOf(g.level) + 1)) {
      const row = get(g.backend, g.dataset, level, `p:${g.principal}`, () => ({
        backend: g.backend,
        dataset: g.dataset,
        level,
        who: g.principal,
        principal: g.principal,
        managed: true,
      }));
      row.intended.push({ via: g.via, path: g.path, ...(g.expires ? { expires: g.expires } : {}) });
    }
  }

  const roles = sessionRoles(spec, now);
  const limits: string[] = [];
  const incomplete: string[] = [];
  const requests: Record<string, number> = {};
  for (const [backend, reading] of Object.entries(input.readings)) {
    requests[backend] = reading.requests;
    for (const l of reading.limits) limits.push(`${backend}: ${l}`);
    for (const f of reading.failures ?? []) incomplete.push(`${backend}: ${f}`);
    for (const { who, row } of attribute(spec, reading.rows, roles, input.sessions)) {
      const h = row.holder;
      const r = get(row.backend, row.dataset, row.level, who, () => ({
        backend: row.backend,
        dataset: row.dataset,
        level: row.level,
        who: h.principal ?? h.name,
        ...(h.principal !== undefined ? { principal: h.principal } : {}),
        managed: h.managed,
      }));
      r.holder ??= h;
      r.actual.push(...dedupe(r.actual, row.paths));
    }
  }

  const usage = new UsageIndex(input);
  for (const row of rows.values()) {
    row.status = row.intended.length && row.actual.length ? 'both' : row.actual.length ? 'actual' : 'intended';
    if (row.status === 'actual' && !row.managed && row.holder) {
      const known = knownAccessOf(spec, row.backend, row.dataset, row.level, row.holder);
      if (known) row.known = known;
    }
    const used = usage.lastUse(row);
    if (used !== undefined) row.lastUsedAt = used;
  }

  // Invariants hold for the whole of the access, whatever the filters show: checked before them.
  // Access the spec's knownAccess accepts is reviewed already, and breaks none.
  const invariants = checkInvariants(
    spec,
    actualFacts(
      spec,
      [...rows.values()].filter((r) => r.known === undefined),
    ),
    now,
  );

  const filters = input.filters ?? {};
  let selected = [...rows.values()];
  if (filters.dataset !== undefined) selected = selected.filter((r) => r.dataset === filters.dataset);
  if (filters.principal !== undefined) {
    const p = filters.principal;
    selected = selected.filter((r) => r.principal === p || r.who === p || r.holder?.id === p || r.holder?.name === p);
  }
  if (filters.unused !== undefined) {
    const cutoff = now.getTime() - durationSeconds(filters.unused) * 1000;
    selected = selected.filter((r) => usage.unusedSince(r, cutoff));
  }
  selected.sort(
    (a, b) =>
      a.dataset.localeCompare(b.dataset) ||
      a.backend.localeCompare(b.backend) ||
      LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level) ||
      a.who.localeCompare(b.who) ||
      a.id.localeCompare(b.id),
  );

  return {
    generatedAt: now.toISOString(),
    specHash: input.specHash,
    specFile: input.specFile,
    filters: { ...filters },
    rows: selected,
    limits: [...new Set(limits)],
    incomplete: [...new Set(incomplete)],
    invariants,
    requests,
  };
}

function dedupe(have: readonly AccessPath[], add: readonly AccessPath[]): AccessPath[] {
  const seen = new Set(have.map((p) => JSON.stringify(p)));
  return add.filter((p) => {
    const k = JSON.stringify(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * Last use, indexed once: the credentials of a principal on a backend, or of an unmanaged holder,
 * and the sessions of temporary principals (a report holds tens of thousands of rows).
 */
class UsageIndex {
  readonly #credentials = new Map<string, CredentialUsage[]>();
  readonly #sessions = new Map<string, string[]>();

  constructor(input: AccessInput) {
    for (const [backend, reading] of Object.entries(input.readings)) {
      for (const u of reading.usage) {
        const k = u.principal !== undefined ? `${backend}\0p:${u.principal}` : `${backend}\0h:${u.holder}`;
        const list = this.#credentials.get(k);
        if (list) list.push(u);
        else this.#credentials.set(k, [u]);
      }
    }
    for (const s of input.sessions) {
      const k = `${s.backend}\0p:${s.principal}`;
      this.#sessions.set(k, [...(this.#sessions.get(k) ?? []), s.lastIssuedAt]);
    }
  }

  #key(row: AccessReportRow): string {
    return row.principal !== undefined ? `${row.backend}\0p:${row.principal}` : `${row.backend}\0h:${row.holder?.id ?? ''}`;
  }

  /** The credentials behind a row: a principal's on that backend, or an unmanaged holder's own. */
  credentials(row: AccessReportRow): readonly CredentialUsage[] {
    return this.#credentials.get(this.#key(row)) ?? [];
  }

  /**
   * The last use of the row's credentials: the latest of its keys' last use and (temporary
   * principals) the latest session issued. null: never used; undefined: not known.
   */
  lastUse(row: AccessReportRow): string | null | undefined {
    const times: string[] = [];
    let known = false;
    for (const u of this.credentials(row)) {
      if (u.lastUsedAt === undefined) continue;
      known = true;
      if (u.lastUsedAt !== null) times.push(u.lastUsedAt);
    }
    if (row.principal !== undefined) {
      const sessions = this.#sessions.get(this.#key(row));
      if (sessions) {
        known = true;
        times.push(...sessions);
      }
    }
    if (!known) return undefined;
    return times.length ? times.reduce((a, b) => (Date.parse(a) >= Date.parse(b) ? a : b)) : null;
  }

  /**
   * Unused for the whole window: last used before the cutoff, or never used by a credential that
   * existed before it. A row whose use cannot be known is not counted unused (the report's limits
   * say why); a credential younger than the window has not had the chance to be used.
   */
  unusedSince(row: AccessReportRow, cutoff: number): boolean {
    if (row.lastUsedAt === undefined) return false;
    if (row.lastUsedAt !== null) return Date.parse(row.lastUsedAt) < cutoff;
    const created = this.credentials(row)
      .map((u) => (u.createdAt ? Date.parse(u.createdAt) : NaN))
      .filter((t) => !Number.isNaN(t));
    return created.length > 0 && Math.max(...created) < cutoff;
  }
}
