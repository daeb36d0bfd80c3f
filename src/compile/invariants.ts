// Invariants (issue 13): statements in the spec about who holds access that must never become
// false. One pure checker judges facts of one neutral shape, which both sides produce: the spec's
// intended access (validate, plan, apply, serve's reconciles) and the access the backends hold
// (`datagrant access`), where a holder datagrant does not manage is a fact like any other.
import { DatagrantError } from '../core/errors.js';
import type { Level } from '../core/types.js';
import {
  atLeast,
  LEVELS,
  type AccessHolder,
  type AccessPath,
  type AccessReportRow,
  type ActualAccess,
  type HolderKind,
  type InvariantViolation,
} from '../model/access.js';
import type { PathKey, SpecPositions } from '../spec/load.js';
import { durationSeconds, type Grant, type RequirableField, type Spec } from '../spec/schema.js';
import { intendedAccess, requestPath } from './access.js';

/** Whoever holds access, as invariants see it: a spec principal, or a holder a backend named. */
export interface FactHolder {
  /** What facts refer to it by: `principal:<name>`, or `<kind>:<id>` for any other holder. */
  id: string;
  /** How a message names it first: `principal bob`, `IAM user etl (not managed by datagrant)`. */
  label: string;
  /** How a message names it again: `bob`, `etl`. */
  short: string;
  /** The spec principal it is. */
  principal?: string;
  /** Absent for a holder that is no principal: it is then of no type a selector names. */
  type?: 'person' | 'service';
  email?: string;
  description?: string;
  /** The spec groups it is a member of; none for a holder that is no principal. */
  groups: string[];
  /**
   * Its path in the spec (`['principals', 'bob']`): messages say where the file defines it, or
   * that it is a SCIM person when the file does not.
   */
  specPath?: PathKey[];
}

/** One way one holder gets access to one dataset at one level (cumulative: write includes read). */
export interface AccessFact {
  holder: string;
  backend: string;
  dataset: string;
  level: Level;
  /** When it ends by itself (ISO instant); absent: it does not. */
  expires?: string;
  /** The grant or path that gives it: `principals.bob.grants[0]`, `inline policy p of user etl`. */
  through: string;
  /** The grant's path in the spec (`principals.bob.grants[0]`), for its position in messages. */
  grant?: string;
}

export interface AccessFacts {
  /** The spec's intended access, or what the backends hold. */
  source: 'intended' | 'actual';
  /** Every holder a rule may select (intended: every principal, with access or not). */
  holders: FactHolder[];
  access: AccessFact[];
  /**
   * Where the spec file holds each value. Asked only for the messages of violations: finding
   * positions can cost a parse of the whole file, which a plan without violations never pays.
   */
  positions?: SpecPositions;
}

/** The spec breaks an invariant. */
export class InvariantError extends DatagrantError {
  override name = 'InvariantError';
  constructor(readonly violations: readonly InvariantViolation[]) {
    super(violations.map((v) => v.message).join('\n'));
  }
}

const principalId = (name: string) => `principal:${name}`;

/** A grant's path from `intendedAccess` (`principals.<name>.grants[<i>]`; names may hold dots). */
function grantPath(path: string): PathKey[] | undefined {
  const m = /^(principals|groups)\.(.+)\.grants\[(\d+)\]$/.exec(path);
  return m ? [m[1]!, m[2]!, 'grants', Number(m[3])] : undefined;
}

const at = (positions: SpecPositions, path: readonly PathKey[], key = false) => {
  const pos = positions.position(path, key);
  return `${positions.file}:${pos.line}:${pos.column}`;
};

/**
 * The access the spec intends, as facts: every live grant of every principal (SCIM people merged
 * in are principals too). `positions` places each grant in the file for messages; a principal the
 * file does not hold came from SCIM.
 */
export function intendedFacts(spec: Spec, now: Date, positions?: SpecPositions): AccessFacts {
  const holders: FactHolder[] = Object.entries(spec.principals).map(([name, p]) => ({
    id: principalId(name),
    label: `principal ${name}`,
    short: name,
    principal: name,
    type: p.type,
    ...(p.email !== undefined ? { email: p.email } : {}),
    ...(p.description !== undefined ? { description: p.description } : {}),
    groups: p.groups,
    specPath: ['principals', name],
  }));
  // Built plainly (no spreads): a large spec has tens of thousands of these per plan.
  const access = intendedAccess(spec, now).map((a): AccessFact => {
    const f: AccessFact = {
      holder: principalId(a.principal),
      backend: a.backend,
      dataset: a.dataset,
      level: a.level,
      // A request's grant is not in the file: its id and approver say where it comes from.
      through: a.via === 'direct grant' ? a.path : a.request !== undefined ? a.via : `${a.via}: ${a.path}`,
      grant: a.path,
    };
    if (a.expires) f.expires = a.expires;
    return f;
  });
  return { source: 'intended', holders, access, ...(positions ? { positions } : {}) };
}

const KIND_WORDS: Record<HolderKind, string> = {
  'aws-user': 'IAM user',
  'aws-role': 'IAM role',
  'aws-account': 'AWS account',
  'aws-service': 'AWS service principal',
  'aws-anyone': 'anyone',
  'pg-role': 'PostgreSQL role',
  'pg-public': 'PUBLIC',
  'mysql-account': 'MariaDB account',
  'mysql-role': 'MariaDB role',
  'mysql-anonymous': 'anonymous MariaDB account',
  'mysql-public': 'PUBLIC',
  'rgw-user': 'RGW user',
  'rgw-authenticated': 'every RGW user',
};

/** A holder that is no spec principal: it has no type, no fields, and is in no group. */
function otherHolder(h: AccessHolder, spec: Spec): FactHolder {
  const id = `${h.kind}:${h.id}`;
  if (h.kind === 'aws-anyone') return { id, label: 'anyone (Principal "*")', short: 'anyone', groups: [] };
  if (h.kind === 'pg-public') return { id, label: 'PUBLIC (every PostgreSQL role, present and future)', short: 'PUBLIC', groups: [] };
  if (h.kind === 'mysql-public') return { id, label: 'PUBLIC (every MariaDB account, present and future)', short: 'PUBLIC', groups: [] };
  // A spec group's own PostgreSQL role holds its grants for its members.
  if (h.managed && h.kind === 'pg-role' && Object.prototype.hasOwnProperty.call(spec.groups, h.name)) {
    return { id, label: `the role of group ${h.name}`, short: h.name, groups: [h.name] };
  }
  // An access-set role, say: fail closed, as a holder of no group, until the report names who it is.
  const whose = h.managed ? 'made by datagrant, not for a single principal' : 'not managed by datagrant';
  return { id, label: `${KIND_WORDS[h.kind]} ${h.name} (${whose})`, short: h.name, groups: [] };
}

function describePath(p: AccessPath): string {
  const when = p.conditions?.length ? ` (only when ${p.conditions.join('; ')})` : '';
  return `${p.via}${when}${p.partial ? ', on part of the dataset' : ''}`;
}

/**
 * The access the backends hold, as facts: one per holder, dataset and path, at the highest level
 * the path gives (a reader's cumulative rows collapse). Rows only the spec has give none. A
 * holder that is a spec principal has the principal's type, fields and groups as the spec says;
 * any other — an unmanaged IAM user or role, a hand-made PostgreSQL role, PUBLIC, `*` — has
 * none of them, so `onlyMembersOf` never admits it. Pass the spec with SCIM people merged in (as
 * plan merges them), or their rows read as principals no longer in the spec.
 */
export function actualFacts(spec: Spec, rows: readonly (AccessReportRow | ActualAccess)[]): AccessFacts {
  const holders = new Map<string, FactHolder>();
  const facts = new Map<string, AccessFact>();
  for (const row of rows) {
    const h = row.holder;
    const paths = 'paths' in row ? row.paths : row.actual;
    if (!h || paths.length === 0) continue;
    const principal = ('principal' in row ? row.principal : undefined) ?? h.principal;
    let holder: FactHolder;
    if (principal !== undefined) {
      const p = Object.prototype.hasOwnProperty.call(spec.principals, principal) ? spec.principals[principal] : undefined;
      holder = {
        id: principalId(principal),
        label: p ? `principal ${principal}` : `principal ${principal} (no longer in the spec)`,
        short: principal,
        principal,
        ...(p ? { type: p.type, groups: p.groups } : { groups: [] }),
        ...(p?.email !== undefined ? { email: p.email } : {}),
        ...(p?.description !== undefined ? { description: p.description } : {}),
      };
    } else {
      holder = otherHolder(h, spec);
    }
    holders.set(holder.id, holder);
    for (const path of paths) {
      const through = describePath(path);
      const key = `${holder.id}\0${row.backend}\0${row.dataset}\0${through}`;
      const known = facts.get(key);
      if (known && atLeast(known.level, row.level)) continue;
      facts.set(key, {
        holder: holder.id,
        backend: row.backend,
        dataset: row.dataset,
        level: row.level,
        ...(path.expires ? { expires: path.expires } : {}),
        through,
      });
    }
  }
  return { source: 'actual', holders: [...holders.values()], access: [...facts.values()] };
}

/** `bob is not in group hr`, `bob is neither in group hr nor principal auditor`. */
function outsiders(short: string, groups: readonly string[] | undefined, principals: readonly string[] | undefined): string {
  const g = groups?.length ? (groups.length === 1 ? `in group ${groups[0]}` : `in any of the groups ${groups.join(', ')}`) : undefined;
  const p = principals?.length ? (principals.length === 1 ? `principal ${principals[0]}` : `one of the principals ${principals.join(', ')}`) : undefined;
  return g && p ? `${short} is neither ${g} nor ${p}` : `${short} is not ${g ?? p}`;
}

/**
 * Every way `facts` break the spec's invariants, in the spec's order of invariants, each naming
 * the invariant and the grant (or path) that breaks it. Pure: `now` is passed in.
 */
export function checkInvariants(spec: Pick<Spec, 'invariants'>, facts: AccessFacts, now: Date): InvariantViolation[] {
  const out: InvariantViolation[] = [];
  const holders = new Map(facts.holders.map((h) => [h.id, h]));
  const verb = facts.source === 'intended' ? 'gets' : 'holds';
  // Positions are looked up only here, for the violations found.
  const positions = facts.positions;
  const inFile = (h: FactHolder) => !positions || !h.specPath || positions.has(h.specPath);
  const label = (h: FactHolder) => (inFile(h) ? h.label : `${h.label} (a SCIM person)`);
  const through = (f: AccessFact) => {
    const path = positions && f.grant !== undefined ? grantPath(f.grant) : undefined;
    return path ? `${f.through} (${at(positions!, path)})` : f.through;
  };
  // Each fact's holder, looked up once for every invariant.
  const holderOf = facts.access.map((f) => holders.get(f.holder));
  for (const [name, inv] of Object.entries(spec.invariants ?? {})) {
    const level = inv.access ?? 'read';
    // A holder a backend named (no spec principal) is of unknown type: it may be a person, so a
    // type selector takes it in rather than letting it slip past the rule.
    const ofType = (h: FactHolder) => !inv.type || h.type === inv.type || h.type === undefined;
    const datasets = inv.datasets && new Set(inv.datasets);
    const levels = new Set(LEVELS.filter((l) => atLeast(l, level)));
    const selected = facts.access.filter((f, i) => {
      const h = holderOf[i];
      return h !== undefined && levels.has(f.level) && (!datasets || datasets.has(f.dataset)) && ofType(h);
    });
    const violation = (h: FactHolder, message: string, f?: Pick<AccessFact, 'dataset' | 'level' | 'grant'>): InvariantViolation => ({
      invariant: name,
      message: `invariant ${name}: ${message}`,
      ...(h.principal !== undefined ? { principal: h.principal } : {}),
      ...(f ? { dataset: f.dataset, level: f.level } : {}),
      ...(f?.grant !== undefined ? { grant: f.grant } : {}),
      source: facts.source,
    });
    const grants = (h: FactHolder, f: AccessFact) => `${label(h)} ${verb} ${f.level} on ${f.dataset} through ${through(f)}`;

    if (inv.onlyMembersOf || inv.onlyPrincipals) {
      const groups = new Set(inv.onlyMembersOf);
      const principals = new Set(inv.onlyPrincipals);
      for (const f of selected) {
        const h = holders.get(f.holder)!;
        const admitted = h.groups.some((g) => groups.has(g)) || (h.principal !== undefined && principals.has(h.principal));
        if (!admitted) out.push(violation(h, `${grants(h, f)}, and ${outsiders(h.short, inv.onlyMembersOf, inv.onlyPrincipals)}`, f));
      }
    } else if (inv.expiresWithin) {
      const by = new Date(now.getTime() + durationSeconds(inv.expiresWithin) * 1000);
      for (const f of selected) {
        const h = holders.get(f.holder)!;
        if (f.expires === undefined) {
          out.push(violation(h, `${grants(h, f)}, which does not expire; it must end within ${inv.expiresWithin} (by ${by.toISOString()})`, f));
        } else if (new Date(f.expires).getTime() > by.getTime()) {
          out.push(violation(h, `${grants(h, f)}, which ends ${f.expires}, later than ${inv.expiresWithin} from now (${by.toISOString()})`, f));
        }
      }
    } else if (inv.maxDatasets !== undefined) {
      const perHolder = new Map<string, Map<string, AccessFact>>();
      for (const f of selected) {
        let held = perHolder.get(f.holder);
        if (!held) perHolder.set(f.holder, (held = new Map<string, AccessFact>()));
        if (!held.has(f.dataset)) held.set(f.dataset, f);
      }
      for (const [id, held] of perHolder) {
        if (held.size <= inv.maxDatasets) continue;
        const h = holders.get(id)!;
        const each = [...held.values()].map((f) => `${f.dataset} through ${through(f)}`).join('; ');
        const n = held.size;
        out.push(
          violation(
            h,
            `${label(h)} ${verb} ${level}${level === 'admin' ? '' : ' or more'} on ${n} dataset${n === 1 ? '' : 's'}, more than the ${inv.maxDatasets} allowed: ${each}`,
          ),
        );
      }
    } else if (inv.require) {
      // With a dataset or level named, only the holders of that access; else every holder.
      const narrowed = inv.datasets !== undefined || inv.access !== undefined;
      const holding = new Set(selected.map((f) => f.holder));
      for (const h of facts.holders) {
        if (!ofType(h) || (narrowed && !holding.has(h.id))) continue;
        const missing = inv.require.filter((field) => !hasField(h, field));
        if (missing.length === 0) continue;
        const where = positions && h.specPath && inFile(h) ? ` (${at(positions, h.specPath, true)})` : '';
        out.push(violation(h, `${label(h)}${where} has no ${missing.join(' and no ')}`));
      }
    }
  }
  return out;
}

const hasField = (h: FactHolder, field: RequirableField) => {
  const v = h[field];
  return typeof v === 'string' && v.trim() !== '';
};

/**
 * Throws InvariantError when the spec's own grants break one of its invariants: what validate,
 * plan, apply and serve's reconciles refuse, before any backend is read.
 */
export function assertSpecInvariants(spec: Spec, now: Date, source?: SpecPositions): void {
  if (Object.keys(spec.invariants ?? {}).length === 0) return;
  const violations = checkInvariants(spec, intendedFacts(spec, now, source), now);
  if (violations.length) throw new InvariantError(violations);
}

/**
 * For `serve`, which nobody watches at a prompt: the spec without the access that breaks its
 * invariants, and the violations it withheld. Refusing the whole reconcile instead would also hold
 * up every removal (a leaver keeps access because someone else broke a rule); withholding fails
 * closed for the breaking grant only:
 * - a violation that names its grant withholds that grant: a principal's own is dropped; one of a
 *   group is withheld from this member alone, whose membership becomes direct grants of the
 *   group's other grants (the member keeps the rest of what the group gives);
 * - `maxDatasets` withholds the principal's grants on the datasets past the limit (by name);
 * - a rule about the principal alone (`require`) withholds all its grants and memberships.
 * Repeats until nothing breaks; a violation that names no principal cannot be withheld, and throws.
 */
export function withholdBreaking(spec: Spec, now: Date, positions?: SpecPositions): { spec: Spec; withheld: InvariantViolation[] } {
  if (Object.keys(spec.invariants ?? {}).length === 0) return { spec, withheld: [] };
  let current = spec;
  const withheld: InvariantViolation[] = [];
  // A principal left with no grant and no group holds nothing: a rule it still breaks (`require`
  // asks every person, access or not) is no access to withhold.
  const bare = (name: string) => current.principals[name]!.grants.length === 0 && current.principals[name]!.groups.length === 0;
  for (let round = 0; round <= Object.keys(spec.principals).length + 1; round++) {
    const violations = checkInvariants(current, intendedFacts(current, now, positions), now).filter(
      (v) => !(v.principal !== undefined && Object.hasOwn(current.principals, v.principal) && bare(v.principal)),
    );
    if (violations.length === 0) return { spec: current, withheld };
    const principals = { ...current.principals };
    for (const v of violations) {
      if (v.principal === undefined || !Object.hasOwn(principals, v.principal)) throw new InvariantError([v]);
      principals[v.principal] = withholdOne(current, principals[v.principal]!, v, now);
      withheld.push(v);
    }
    current = { ...current, principals };
  }
  throw new InvariantError(withheld);
}

type PrincipalOf = Spec['principals'][string];
type GrantOf = PrincipalOf['grants'][number];

/** The principal without the access of one violation (see withholdBreaking). */
function withholdOne(spec: Spec, p: PrincipalOf, v: InvariantViolation, now: Date): PrincipalOf {
  const inv = spec.invariants?.[v.invariant];
  // Drops the grants `drop` selects, from the principal's own and (for this member) its groups';
  // `from` is a group grant's path in the spec, undefined for the principal's own.
  const without = (drop: (g: GrantOf, from?: string) => boolean): PrincipalOf => {
    const grants = p.grants.filter((g) => !drop(g));
    const groups: string[] = [];
    for (const name of p.groups) {
      const group = spec.groups[name];
      const all = group?.grants ?? [];
      const kept = all.filter((g, i) => !drop(g, `groups.${name}.grants[${i}]`));
      if (kept.length === all.length) groups.push(name);
      else grants.push(...kept);
    }
    return { ...p, grants, groups };
  };
  const grantPath = v.grant;
  if (grantPath !== undefined) {
    const requested = p.grants.findIndex((g: Grant) => g.origin !== undefined && requestPath(g.origin.request) === grantPath);
    if (requested >= 0) return { ...p, grants: p.grants.filter((_, i) => i !== requested) };
    const own = /^principals\.(.+)\.grants\[(\d+)\]$/.exec(grantPath);
    if (own) {
      const index = Number(own[2]);
      return { ...p, grants: p.grants.filter((_, i) => i !== index) };
    }
    return without((_, from) => from === grantPath);
  }
  if (inv?.maxDatasets !== undefined && v.principal !== undefined) {
    const level = inv.access ?? 'read';
    const held = [
      ...new Set(
        intendedAccess({ ...spec, principals: { [v.principal]: p } }, now)
          .filter((a) => atLeast(a.level, level))
          .map((a) => a.dataset),
      ),
    ].sort();
    const past = new Set(held.slice(inv.maxDatasets));
    return without((g) => past.has(g.dataset) && atLeast(g.access, level));
  }
  return { ...p, grants: [], groups: [] };
}
