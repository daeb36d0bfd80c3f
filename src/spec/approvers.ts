// `approvers:` — who may approve requests for access to a dataset (`datagrant requests`, serve's
// /v1/requests), on the dataset itself or in top-level rules for several datasets. Its references
// are checked here, and `approversOf` says who may approve what: the requests module
// (src/plan/requests.ts) decides with it.
import type { SpecProblem } from '../core/errors.js';
import type { Level, Notice } from '../core/types.js';
import type { PathKey, SourceMap } from './load.js';
import type { PrincipalSpec, Spec } from './schema.js';

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
const LEVELS: readonly Level[] = ['read', 'write', 'admin'];
const list = (names: Iterable<string>) => [...names].sort().join(', ') || '(none defined)';

/** One rule that lets principals approve requests for a dataset, and where the spec says so. */
export interface ApproverRule {
  /** `datasets.<name>.approvers` or `approvers[<i>]`. */
  path: PathKey[];
  principals: string[];
  groups: string[];
  /** The highest level it lets them approve. */
  access: Level;
}

/** Every rule that covers `dataset`: its own `approvers`, then the top-level rules naming it (or every dataset). */
export function approverRules(spec: Pick<Spec, 'datasets' | 'approvers'>, dataset: string): ApproverRule[] {
  const out: ApproverRule[] = [];
  const own = has(spec.datasets, dataset) ? spec.datasets[dataset]?.approvers : undefined;
  if (own) out.push({ path: ['datasets', dataset, 'approvers'], principals: own.principals ?? [], groups: own.groups ?? [], access: own.access ?? 'read' });
  (spec.approvers ?? []).forEach((r, i) => {
    if (r.datasets && !r.datasets.includes(dataset)) return;
    out.push({ path: ['approvers', i], principals: r.principals ?? [], groups: r.groups ?? [], access: r.access ?? 'read' });
  });
  return out;
}

export interface Approvers {
  /** Principals who may approve `level` on the dataset: named, or members of a named group. Sorted. */
  principals: string[];
  /** The rules that allow `level` (those that cover the dataset at a lower level are left out). */
  rules: ApproverRule[];
  /** The highest level any rule lets be approved on the dataset; undefined: no rule covers it. */
  maxLevel: Level | undefined;
}

/**
 * Who may approve a request for `level` on `dataset`. `principals` are every principal there is
 * (the spec's, SCIM people, and SCIM people in no mapped group): a group's members are those whose
 * `groups` hold it, and a principal a rule names counts only while it exists.
 */
export function approversOf(
  spec: Pick<Spec, 'datasets' | 'approvers'>,
  principals: Readonly<Record<string, Pick<PrincipalSpec, 'groups'>>>,
  dataset: string,
  level: Level,
): Approvers {
  const all = approverRules(spec, dataset);
  const rank = (l: Level) => LEVELS.indexOf(l);
  const maxLevel = all.reduce<Level | undefined>((m, r) => (m === undefined || rank(r.access) > rank(m) ? r.access : m), undefined);
  const rules = all.filter((r) => rank(r.access) >= rank(level));
  const who = new Set<string>();
  for (const r of rules) {
    for (const p of r.principals) if (has(principals, p)) who.add(p);
    if (r.groups.length === 0) continue;
    const groups = new Set(r.groups);
    for (const [name, p] of Object.entries(principals)) if (p.groups.some((g) => groups.has(g))) who.add(name);
  }
  return { principals: [...who].sort(), rules, maxLevel };
}

/**
 * What approver rules name must exist: a misspelt group would let no one approve, a misspelt
 * dataset would leave the one meant without approvers. A principal the file does not define is a
 * warning in a spec with a `scim:` section (it may be a SCIM person's name), as for invariants.
 */
export function approverProblems(spec: Spec, src: SourceMap, notices: Notice[]): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const names = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const check = (base: PathKey[], label: string, a: unknown) => {
    if (a === null || typeof a !== 'object') return;
    const rule = a as Record<string, unknown>;
    names(rule.principals).forEach((p, i) => {
      if (typeof p !== 'string' || p === '' || has(spec.principals, p)) return;
      const at = [...base, 'principals', i];
      if (spec.scim) {
        const pos = src.position(at);
        notices.push({
          level: 'warning',
          message: `${src.file}:${pos.line}:${pos.column}: ${label}: principal ${JSON.stringify(p)} is not in the file; unless it is the name of a SCIM person, no one of that name can approve`,
        });
        return;
      }
      problems.push(src.problem(at, `principal ${JSON.stringify(p)} is not defined; defined principals: ${list(Object.keys(spec.principals))}`));
    });
    names(rule.groups).forEach((g, i) => {
      if (typeof g !== 'string' || g === '' || has(spec.groups, g)) return;
      problems.push(src.problem([...base, 'groups', i], `group ${JSON.stringify(g)} is not defined; defined groups: ${list(Object.keys(spec.groups))}`));
    });
  };
  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (ds && typeof ds === 'object') check(['datasets', name, 'approvers'], `approvers of dataset ${name}`, (ds as { approvers?: unknown }).approvers);
  }
  names(spec.approvers).forEach((r, i) => {
    check(['approvers', i], `approvers[${i}]`, r);
    if (r === null || typeof r !== 'object') return;
    names((r as { datasets?: unknown }).datasets).forEach((d, j) => {
      if (typeof d !== 'string' || d === '' || has(spec.datasets, d)) return;
      problems.push(
        src.problem(['approvers', i, 'datasets', j], `dataset ${JSON.stringify(d)} is not defined; defined datasets: ${list(Object.keys(spec.datasets))}`),
      );
    });
  });
  return problems;
}
