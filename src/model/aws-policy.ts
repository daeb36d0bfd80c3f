// IAM policy documents: build statements from grants, merge them only where evaluation cannot
// change, and emit one canonical form so a reordered spec yields a byte-identical document.
import type { Json } from '../core/types.js';
import { textOf } from '../core/canonical.js';

// Types, not interfaces: a document is plain JSON, and is stored as a resource's attribute as it is.
export type Statement = {
  Effect: 'Allow' | 'Deny';
  Action: string[];
  Resource: string[];
  Condition?: Record<string, Record<string, string[]>>;
};

export type PolicyDocument = {
  Version: '2012-10-17';
  Statement: Statement[];
};

/** AWS's limit for a customer managed policy, counted without white space. */
export const MANAGED_POLICY_MAX_CHARS = 6144;
/** AWS's limit for all inline policies of one IAM user together, counted without white space. */
export const USER_INLINE_POLICIES_MAX_CHARS = 2048;
/** AWS's limit for all inline policies of one IAM role together, counted without white space. */
export const ROLE_INLINE_POLICIES_MAX_CHARS = 10240;

const uniqSorted = (xs: Iterable<string>) => [...new Set(xs)].sort();

function canonicalCondition(c: Statement['Condition']): Statement['Condition'] | undefined {
  if (!c) return undefined;
  const out: Record<string, Record<string, string[]>> = {};
  for (const op of Object.keys(c).sort()) {
    const inner: Record<string, string[]> = {};
    for (const key of Object.keys(c[op]!).sort()) inner[key] = uniqSorted(c[op]![key]!);
    if (Object.keys(inner).length) out[op] = inner;
  }
  return Object.keys(out).length ? out : undefined;
}

function canonicalStatement(s: Statement): Statement {
  const cond = canonicalCondition(s.Condition);
  return {
    Effect: s.Effect,
    Action: uniqSorted(s.Action),
    Resource: uniqSorted(s.Resource),
    ...(cond ? { Condition: cond } : {}),
  };
}

const key = (s: Statement) => JSON.stringify(s);

/**
 * Merge statements whose union is equivalent: same effect and condition, and either the same
 * actions (union the resources) or the same resources (union the actions). Repeated to a fixpoint.
 * Statements with different conditions are never merged, since the condition applies to all.
 */
export function mergeStatements(statements: Statement[]): Statement[] {
  let current = statements.map(canonicalStatement);
  for (;;) {
    const before = current.length;
    current = mergeOnce(current, 'Action', 'Resource');
    current = mergeOnce(current, 'Resource', 'Action');
    if (current.length === before) break;
  }
  return current.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function mergeOnce(statements: Statement[], same: 'Action' | 'Resource', union: 'Action' | 'Resource'): Statement[] {
  const groups = new Map<string, Statement>();
  for (const s of statements) {
    const k = JSON.stringify([s.Effect, s.Condition ?? null, s[same]]);
    const existing = groups.get(k);
    if (existing) {
      groups.set(k, canonicalStatement({ ...existing, [union]: [...existing[union], ...s[union]] }));
    } else {
      groups.set(k, s);
    }
  }
  return [...groups.values()];
}

export function policyDocument(statements: Statement[]): PolicyDocument {
  return { Version: '2012-10-17', Statement: mergeStatements(statements) };
}

/** Characters AWS counts against the size limit (white space outside strings excluded). */
export function policySize(doc: PolicyDocument): number {
  return JSON.stringify(doc).length;
}

const asList = (v: unknown): string[] => (Array.isArray(v) ? v.map(textOf) : v === undefined ? [] : [textOf(v)]);

/**
 * Normalise a document read from AWS (strings or arrays, any order) into the canonical shape,
 * without merging: two documents normalise equal only if they say the same thing statement by
 * statement. Documents datagrant cannot express (Sid, NotAction, Principal…) are kept so that
 * they differ from the desired document and show as drift.
 */
export function normalizePolicy(doc: unknown): Json {
  if (!doc || typeof doc !== 'object') return doc as Json;
  const d = doc as Record<string, unknown>;
  const statements = Array.isArray(d.Statement) ? d.Statement : d.Statement ? [d.Statement] : [];
  const out = statements.map((raw) => {
    const s = raw as Record<string, unknown>;
    const known = new Set(['Effect', 'Action', 'Resource', 'Condition']);
    const extra = Object.keys(s).filter((k) => !known.has(k));
    const cond = s.Condition as Record<string, Record<string, unknown>> | undefined;
    const canon = canonicalStatement({
      Effect: s.Effect as 'Allow',
      Action: asList(s.Action),
      Resource: asList(s.Resource),
      ...(cond
        ? {
            Condition: Object.fromEntries(Object.entries(cond).map(([op, kv]) => [op, Object.fromEntries(Object.entries(kv).map(([k, v]) => [k, asList(v)]))])),
          }
        : {}),
    });
    return extra.length ? { ...canon, ...Object.fromEntries(extra.sort().map((k) => [k, s[k]])) } : canon;
  });
  out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  return { Version: textOf(d.Version), Statement: out };
}

const alone = (s: Statement) => policySize({ Version: '2012-10-17', Statement: [s] });

/**
 * Merging unions resources (and actions), so one statement can outgrow a whole policy, for example
 * a group reading 250 buckets. Splitting it again by resources, then by actions, cannot change
 * evaluation: the same effect and condition apply to every part.
 */
function splitToFit(s: Statement, maxChars: number): Statement[] {
  if (alone(s) <= maxChars) return [s];
  for (const field of ['Resource', 'Action'] as const) {
    if (s[field].length < 2) continue;
    const parts: Statement[] = [];
    let current: string[] = [];
    for (const item of s[field]) {
      if (current.length && alone({ ...s, [field]: [...current, item] }) > maxChars) {
        parts.push({ ...s, [field]: current });
        current = [];
      }
      current.push(item);
    }
    parts.push({ ...s, [field]: current });
    return parts.flatMap((part) => (part[field].length < s[field].length ? splitToFit(part, maxChars) : [part]));
  }
  return [s];
}

/**
 * Split statements into as few documents as fit the managed-policy size limit (first fit, in
 * canonical order so the split is stable). Throws when one statement alone is too large.
 */
export function packStatements(statements: Statement[], maxChars = MANAGED_POLICY_MAX_CHARS): PolicyDocument[] {
  const merged = mergeStatements(statements);
  const whole = policyDocument(merged);
  if (policySize(whole) <= maxChars) return [whole];
  const docs: Statement[][] = [];
  for (const s of merged.flatMap((m) => splitToFit(m, maxChars))) {
    const fits = docs.find((d) => policySize({ Version: '2012-10-17', Statement: [...d, s] }) <= maxChars);
    if (fits) fits.push(s);
    else if (policySize({ Version: '2012-10-17', Statement: [s] }) <= maxChars) docs.push([s]);
    else
      throw new RangeError(
        `a single statement is ${policySize({ Version: '2012-10-17', Statement: [s] })} characters, over the ${maxChars}-character limit of a managed policy`,
      );
  }
  return docs.map((d) => ({ Version: '2012-10-17', Statement: d }));
}
