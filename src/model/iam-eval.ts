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

export interface EvalRequest {
  /** `service:Action`, e.g. `s3:GetObject`. */
  action: string;
  /** The resource ARN, e.g. `arn:aws:s3:::bucket/prefix/key`. */
  resource: string;
  /**
   * Condition keys (case-insensitive names, as AWS treats them) and their values for this request.
   * A key listed in `unknownKeys` is one whose value cannot be known statically (it depends on the
   * request): a condition on it evaluates to unknown rather than false.
   */
  context?: Record<string, string | string[]>;
  unknownKeys?: string[];
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

type Tri = true | false | 'unknown';

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

function lookup(req: EvalRequest, key: string): { values: string[] | undefined; unknown: boolean } {
  const lower = key.toLowerCase();
  if (req.unknownKeys?.some((k) => k.toLowerCase() === lower)) return { values: undefined, unknown: true };
  for (const [k, v] of Object.entries(req.context ?? {})) if (k.toLowerCase() === lower) return { values: list(v), unknown: false };
  return { values: undefined, unknown: false };
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
function evalCondition(rawOp: string, key: string, expectedRaw: string | string[] | boolean | number, req: EvalRequest, unknown: string[]): Tri {
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

function conditionHolds(s: AnyStatement, req: EvalRequest, unknown: string[]): Tri {
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
