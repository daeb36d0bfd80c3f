// A pure evaluator for IAM identity policies: does this set of documents allow this action on
// this resource, given this request context? It follows AWS's documented logic for a single
// account (an explicit Deny wins; otherwise any Allow allows; otherwise the request is implicitly
// denied), with wildcard matching of actions (case-insensitive) and resources (case-sensitive),
// NotAction/NotResource, and the condition operators datagrant compiles or meets in accounts it
// reads. It exists to prove what an emulator does not enforce (moto ignores most conditions and
// every session policy) and to compute effective access from documents read from a real account.
//
// Three-valued: a condition whose operator it does not know, or whose key the caller could not
// supply and marked as unknown, makes the answer `unknown` where it matters, and says which.

/** A statement as found in any real document: single strings or lists, Not* forms, any condition. */
export interface AnyStatement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: Record<string, Record<string, string | string[] | boolean | number>>;
  /** Resource-based policies only; identity policies have none. */
  Principal?: unknown;
}

export interface AnyPolicy {
  Version?: string;
  Statement: AnyStatement | AnyStatement[];
}

export interface EvalRequest extends ConditionContext {
  /** `service:Action`, e.g. `s3:GetObject`. */
  action: string;
  /** The resource ARN, e.g. `arn:aws:s3:::bucket/prefix/key`. */
  resource: string;
}

/** What conditions are evaluated against. */
export interface ConditionContext {
  /**
   * Condition keys (case-insensitive names, as AWS treats them) and their values for this request.
   * A key listed in `unknownKeys` is one whose value cannot be known statically (it depends on the
   * request): a condition on it evaluates to unknown rather than false.
   */
  context?: Record<string, string | string[]>;
  unknownKeys?: string[];
  /**
   * Every key absent from `context` is unknown rather than absent: a reading of documents with no
   * request at hand (effective access), where only what the caller supplies (the clock) is known.
   */
  otherKeysUnknown?: boolean;
}

export type Decision = 'allow' | 'explicit-deny' | 'implicit-deny' | 'unknown';

export interface EvalResult {
  decision: Decision;
  /** Statements (by Sid, or index `policy#statement`) that allowed or denied. */
  allowedBy: string[];
  deniedBy: string[];
  /** Why the answer is unknown: the operators or keys that could not be evaluated. */
  unknown: string[];
}

export type Tri = true | false | 'unknown';

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function globToRegExp(pattern: string, caseInsensitive: boolean): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, caseInsensitive ? 'si' : 's');
}

const cache = new Map<string, RegExp>();
function glob(pattern: string, value: string, caseInsensitive: boolean): boolean {
  const k = `${caseInsensitive ? 'i' : 's'}:${pattern}`;
  let re = cache.get(k);
  if (!re) {
    re = globToRegExp(pattern, caseInsensitive);
    if (cache.size > 10_000) cache.clear();
    cache.set(k, re);
  }
  return re.test(value);
}

/** Action names are case-insensitive in IAM; `*` and `?` are wildcards. */
export const actionMatches = (pattern: string, action: string): boolean => glob(pattern, action, true);
/** Resource ARNs are case-sensitive; `*` and `?` are wildcards (also across `/`). */
export const resourceMatches = (pattern: string, resource: string): boolean => glob(pattern, resource, false);

function statementApplies(s: AnyStatement, req: EvalRequest): boolean {
  const action =
    s.Action !== undefined ? list(s.Action).some((p) => actionMatches(p, req.action)) : !list(s.NotAction).some((p) => actionMatches(p, req.action));
  if (!action) return false;
  return s.Resource !== undefined
    ? list(s.Resource).some((p) => resourceMatches(p, req.resource))
    : !list(s.NotResource).some((p) => resourceMatches(p, req.resource));
}

function lookup(req: ConditionContext, key: string): { values: string[] | undefined; unknown: boolean } {
  const lower = key.toLowerCase();
  if (req.unknownKeys?.some((k) => k.toLowerCase() === lower)) return { values: undefined, unknown: true };
  for (const [k, v] of Object.entries(req.context ?? {})) if (k.toLowerCase() === lower) return { values: list(v), unknown: false };
  return { values: undefined, unknown: req.otherKeysUnknown === true };
}

const time = (v: string): number => (/^\d+$/.test(v) ? Number(v) * 1000 : Date.parse(v));

type Compare = (actual: string, expected: string) => boolean | undefined;

const COMPARES: Record<string, Compare> = {
  StringEquals: (a, e) => a === e,
  StringEqualsIgnoreCase: (a, e) => a.toLowerCase() === e.toLowerCase(),
  StringLike: (a, e) => glob(e, a, false),
  ArnEquals: (a, e) => a === e,
  ArnLike: (a, e) => glob(e, a, false),
  NumericEquals: (a, e) => Number(a) === Number(e),
  NumericLessThan: (a, e) => Number(a) < Number(e),
  NumericLessThanEquals: (a, e) => Number(a) <= Number(e),
  NumericGreaterThan: (a, e) => Number(a) > Number(e),
  NumericGreaterThanEquals: (a, e) => Number(a) >= Number(e),
  DateEquals: (a, e) => time(a) === time(e),
  DateLessThan: (a, e) => time(a) < time(e),
  DateLessThanEquals: (a, e) => time(a) <= time(e),
  DateGreaterThan: (a, e) => time(a) > time(e),
  DateGreaterThanEquals: (a, e) => time(a) >= time(e),
  Bool: (a, e) => a.toLowerCase() === e.toLowerCase(),
  IpAddress: () => undefined,
};
// Negated operators: true when no expected value matches (AWS: "not equal to any").
const NEGATED: Record<string, string> = {
  StringNotEquals: 'StringEquals',
  StringNotEqualsIgnoreCase: 'StringEqualsIgnoreCase',
  StringNotLike: 'StringLike',
  ArnNotEquals: 'ArnEquals',
  ArnNotLike: 'ArnLike',
  NumericNotEquals: 'NumericEquals',
  DateNotEquals: 'DateEquals',
  NotIpAddress: 'IpAddress',
};

/** One operator/key pair: AWS ORs the expected values and (for a multi-valued key) the set operator decides. */
function evalCondition(rawOp: string, key: string, expectedRaw: string | string[] | boolean | number, req: ConditionContext, unknown: string[]): Tri {
  const expected = (Array.isArray(expectedRaw) ? expectedRaw : [expectedRaw]).map(String);
  let op = rawOp;
  let set: 'any' | 'all' | undefined;
  if (op.startsWith('ForAnyValue:')) [set, op] = ['any', op.slice('ForAnyValue:'.length)];
  else if (op.startsWith('ForAllValues:')) [set, op] = ['all', op.slice('ForAllValues:'.length)];
  const ifExists = op.endsWith('IfExists');
  if (ifExists) op = op.slice(0, -'IfExists'.length);

  const { values, unknown: isUnknown } = lookup(req, key);
  if (isUnknown) {
    unknown.push(`${rawOp} on ${key} (depends on the request)`);
    return 'unknown';
  }
  if (op === 'Null') {
    const wantsAbsent = expected.some((e) => e.toLowerCase() === 'true');
    return (values === undefined) === wantsAbsent;
  }
  const negated = NEGATED[op];
  const compare = COMPARES[negated ?? op];
  if (!compare) {
    unknown.push(`operator ${rawOp}`);
    return 'unknown';
  }
  // AWS: an absent key matches nothing, so a positive operator is false and a negated one true;
  // `…IfExists` passes when the key is absent, as does `ForAllValues` (all of no values).
  if (values === undefined) return set === 'all' || ifExists || negated !== undefined;

  const one = (v: string): Tri => {
    let any: Tri = false;
    for (const e of expected) {
      const r = compare(v, e);
      if (r === undefined) {
        unknown.push(`operator ${rawOp}`);
        return 'unknown';
      }
      if (r) any = true;
    }
    return negated ? !any : any;
  };
  const results = values.map(one);
  if (results.includes('unknown')) return 'unknown';
  if (set === 'all') return results.every((r) => r === true);
  // Single-valued keys and ForAnyValue: any value that satisfies the condition.
  return results.some((r) => r === true);
}

/** Whether a statement's condition block holds for the request (action and resource are not looked at). */
export function conditionHolds(s: AnyStatement, req: ConditionContext, unknown: string[]): Tri {
  let result: Tri = true;
  for (const [op, keys] of Object.entries(s.Condition ?? {})) {
    for (const [key, expected] of Object.entries(keys)) {
      const r = evalCondition(op, key, expected, req, unknown);
      if (r === false) return false;
      if (r === 'unknown') result = 'unknown';
    }
  }
  return result;
}

/** Evaluate identity policies (and, for a session, its role's policies) for one request. */
export function evaluate(policies: readonly AnyPolicy[], req: EvalRequest): EvalResult {
  const allowedBy: string[] = [];
  const deniedBy: string[] = [];
  const unknownAllow: string[] = [];
  const unknownDeny: string[] = [];
  policies.forEach((p, pi) => {
    const statements = Array.isArray(p.Statement) ? p.Statement : [p.Statement];
    statements.forEach((s, si) => {
      if (!statementApplies(s, req)) return;
      const id = s.Sid ?? `${pi}#${si}`;
      const why: string[] = [];
      const holds = conditionHolds(s, req, why);
      if (holds === false) return;
      if (s.Effect === 'Deny') {
        if (holds === true) deniedBy.push(id);
        else unknownDeny.push(...why.map((w) => `${id}: ${w}`));
      } else if (holds === true) allowedBy.push(id);
      else unknownAllow.push(...why.map((w) => `${id}: ${w}`));
    });
  });
  let decision: Decision;
  let unknown: string[] = [];
  if (deniedBy.length) decision = 'explicit-deny';
  else if (unknownDeny.length && (allowedBy.length || unknownAllow.length)) [decision, unknown] = ['unknown', [...unknownDeny, ...unknownAllow]];
  else if (allowedBy.length) decision = 'allow';
  else if (unknownAllow.length) [decision, unknown] = ['unknown', unknownAllow];
  else decision = 'implicit-deny';
  return { decision, allowedBy, deniedBy, unknown };
}

/**
 * A session's effective permissions: what the role's policies allow, intersected with its session
 * policies when there are any (AWS: "the intersection of the role's identity-based policies and
 * the session policies"); an explicit deny in either wins.
 */
export function evaluateSession(rolePolicies: readonly AnyPolicy[], sessionPolicies: readonly AnyPolicy[], req: EvalRequest): EvalResult {
  const role = evaluate(rolePolicies, req);
  if (sessionPolicies.length === 0 || role.decision === 'explicit-deny') return role;
  const session = evaluate(sessionPolicies, req);
  if (session.decision === 'explicit-deny') return session;
  if (role.decision === 'allow' && session.decision === 'allow') return { ...role, allowedBy: [...role.allowedBy, ...session.allowedBy] };
  if (role.decision === 'implicit-deny' || session.decision === 'implicit-deny') {
    return { decision: 'implicit-deny', allowedBy: [], deniedBy: [], unknown: [] };
  }
  return { decision: 'unknown', allowedBy: [], deniedBy: [], unknown: [...role.unknown, ...session.unknown] };
}

// ---------------------------------------------------------------- resource patterns over a prefix

/**
 * How much of a set of objects — every ARN that starts with `literal`, as `arn:aws:s3:::bucket/prefix*`
 * names a dataset — some resource patterns reach: none of it, some of it, or all of it. Matching one
 * probe key cannot answer this (`bucket/train/sub/*` reaches part of `train/`, `bucket/*` all of it,
 * `bucket/other/*` none), so the patterns are run as automata: reading `literal` decides whether they
 * can meet the set at all, and whether every continuation is then accepted decides whether they
 * cover it (a subset construction, over the characters the patterns name plus one for any other).
 *
 * IAM policy variables (`${aws:username}`) depend on who asks: `widen` reads one as `*` (a pattern
 * reaching more), `narrow` drops a pattern that has one (reaching less); `${*}`, `${?}` and `${$}`
 * are the literal characters. Each caller picks the side that over-reports access.
 */
export type Reach = 'none' | 'some' | 'all';

type Token = { t: 'star' } | { t: 'one' } | { t: 'char'; c: string };

/** Tokens of one pattern; undefined when `narrow` drops it for a policy variable. */
function tokensOf(pattern: string, variables: 'widen' | 'narrow'): Token[] | undefined {
  const out: Token[] = [];
  const star = () => {
    if (out[out.length - 1]?.t !== 'star') out.push({ t: 'star' });
  };
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '$' && pattern[i + 1] === '{') {
      const end = pattern.indexOf('}', i + 2);
      if (end > 0) {
        const inner = pattern.slice(i + 2, end);
        if (inner === '*' || inner === '?' || inner === '$') out.push({ t: 'char', c: inner });
        else if (variables === 'narrow') return undefined;
        else star();
        i = end;
        continue;
      }
    }
    if (ch === '*') star();
    else if (ch === '?') out.push({ t: 'one' });
    else out.push({ t: 'char', c: ch });
  }
  return out;
}

/** Whether `pattern` holds a policy variable (other than the escapes `${*}`, `${?}`, `${$}`). */
export const hasPolicyVariable = (pattern: string): boolean => /\$\{(?![*?$]\})[^}]*\}/.test(pattern);

/** Above this many sets of states, coverage is not proved (and reported as `some`). */
const MAX_SUBSETS = 4096;

export function reachOfPrefix(patterns: readonly string[], literal: string, variables: 'widen' | 'narrow'): Reach {
  const automata = patterns.map((p) => tokensOf(p, variables)).filter((t): t is Token[] => t !== undefined);
  if (automata.length === 0) return 'none';
  // A state is (automaton, position) packed in one number; a star is left by matching nothing.
  const WIDTH = Math.max(...automata.map((a) => a.length)) + 1;
  const close = (states: Set<number>): Set<number> => {
    for (const s of states) {
      const a = automata[Math.floor(s / WIDTH)]!;
      const k = s % WIDTH;
      if (a[k]?.t === 'star') states.add(s + 1);
    }
    return states;
  };
  const step = (states: Set<number>, c: string | undefined): Set<number> => {
    const next = new Set<number>();
    for (const s of states) {
      const tok = automata[Math.floor(s / WIDTH)]![s % WIDTH];
      if (!tok) continue;
      if (tok.t === 'star') next.add(s);
      else if (tok.t === 'one' || (c !== undefined && tok.c === c)) next.add(s + 1);
    }
    return close(next);
  };
  const accepting = (states: Set<number>) => [...states].some((s) => s % WIDTH === automata[Math.floor(s / WIDTH)]!.length);

  let states = close(new Set(automata.map((_, i) => i * WIDTH)));
  for (let i = 0; i < literal.length; i++) {
    states = step(states, literal[i]);
    if (states.size === 0) return 'none';
  }
  // Every character a pattern names, and `undefined` for all the others (they behave alike).
  const alphabet: (string | undefined)[] = [...new Set(automata.flat().flatMap((t) => (t.t === 'char' ? [t.c] : [])))];
  alphabet.push(undefined);
  const key = (s: Set<number>) => [...s].sort((a, b) => a - b).join(',');
  const seen = new Set([key(states)]);
  const queue = [states];
  while (queue.length) {
    const current = queue.shift()!;
    if (!accepting(current)) return 'some';
    for (const c of alphabet) {
      const next = step(current, c);
      if (next.size === 0) return 'some';
      const k = key(next);
      if (seen.has(k)) continue;
      if (seen.size >= MAX_SUBSETS) return 'some';
      seen.add(k);
      queue.push(next);
    }
  }
  return 'all';
}

/**
 * Whether some pattern matches `value` exactly (one resource, where `reachOfPrefix` answers for a
 * set of them), policy variables read as `reachOfPrefix` reads them.
 */
export function matchesAny(patterns: readonly string[], value: string, variables: 'widen' | 'narrow'): boolean {
  for (const p of patterns) {
    const tokens = tokensOf(p, variables);
    if (!tokens) continue;
    let states = new Set([0]);
    const close = (s: Set<number>) => {
      for (const k of s) if (tokens[k]?.t === 'star') s.add(k + 1);
      return s;
    };
    close(states);
    for (let i = 0; i < value.length && states.size; i++) {
      const next = new Set<number>();
      for (const k of states) {
        const tok = tokens[k];
        if (!tok) continue;
        if (tok.t === 'star') next.add(k);
        else if (tok.t === 'one' || tok.c === value[i]) next.add(k + 1);
      }
      states = close(next);
    }
    if (states.has(tokens.length)) return true;
  }
  return false;
}

/**
 * A pattern with the policy variables whose values are known put in (`${aws:username}` of a user
 * asking about itself); names are case-insensitive, as AWS reads them. The others stay.
 */
export function withVariables(pattern: string, known: Record<string, string>): string {
  if (!pattern.includes('${')) return pattern;
  const lower = new Map(Object.entries(known).map(([k, v]) => [k.toLowerCase(), v]));
  return pattern.replace(/\$\{([^}]*)\}/g, (all, name: string) => lower.get(name.toLowerCase()) ?? all);
}
