// Effective access to S3 datasets from what IAM and S3 hold (issue 13). Pure: access.ts reads the
// documents in bulk (GetAccountAuthorizationDetails, each dataset bucket's policy, the credential
// report) and passes them in with `now`; this works out who can read, write and administer each
// dataset, datagrant's principals or not, and through what.
//
// The question is about sets: may this holder do any of the level's actions (S3_LEVEL_ACTIONS) on
// *some* object of the dataset, `arn:aws:s3:::bucket/prefix*` (or, for an action on the bucket, on
// `arn:aws:s3:::bucket`)? Each action is decided by itself, Denies included, and a level is held
// through any of its actions. A holder that can give itself any access through IAM (IAM_ESCALATION)
// is admin on every dataset, with a path saying how. Where it cannot be decided, the answer
// errs on one side only, towards reporting access: a false alarm costs a reviewer a minute, a
// path left out hides access from the very review that should find it. So:
//  - an Allow counts as soon as its resources meet the dataset (partial when they do not cover
//    it), and a condition that cannot be evaluated without a request keeps the access and is
//    named on its path;
//  - a Deny removes access only when it certainly applies now (its conditions hold) and covers
//    the whole dataset; a Deny of part of it marks the access partial, and one under conditions
//    that cannot be evaluated is named (`denied when …`) but removes nothing;
//  - what cannot be seen from the account at all (SCPs, RCPs, session policies, ACLs) is said
//    once in `limits`.
// The clock is the one condition key known here: `aws:CurrentTime` decides, and a future bound on
// it (datagrant's expiring grants) becomes the path's `expires`.
//
// Speed: a document's effect on the datasets is worked out once per distinct text (a group's or a
// shared managed policy serves every member), and a statement meets only the datasets whose ARN
// prefix agrees with its resource's literal head (an index sorted by prefix), never every dataset.
// IAM statements are kept aside with the document and looked at only for the holders they belong to.
//
// Each path says whether it is datagrant's own (AccessPath.managed): through one of its grant
// policies, on its user, or on its access-set role while the role trusts only datagrant.
import { canonicalJson } from '../../core/canonical.js';
import type { Json } from '../../core/types.js';
import { LEVELS, type AccessHolder, type AccessPath, type ActualAccess, type CredentialUsage, type HolderKind } from '../../model/access.js';
import { IAM_ESCALATION, RUN_CODE_ACTIONS, S3_LEVEL_ACTIONS, type EscalationTarget } from '../../model/aws-levels.js';
import { normalizePolicy } from '../../model/aws-policy.js';
import { DIRECT_GRANTS_POLICY, isGrantPolicyName } from '../../model/aws.js';
import {
  actionMatches,
  conditionHolds,
  hasPolicyVariable,
  matchesAny,
  reachOfPrefix,
  withVariables,
  type AnyPolicy,
  type AnyStatement,
  type ConditionContext,
} from '../../model/iam-eval.js';
import { credentialReportRows, parsePolicyDocument, policyNameOf, type AccountDetails, type AttachedPolicy, type InlinePolicy } from './state.js';

/** A spec dataset on S3, named. */
export interface S3AccessDataset {
  name: string;
  bucket: string;
  prefix?: string;
}

export interface EffectiveInput {
  backend: string;
  /** The account read (its users and roles are GAAD's) and its ARN partition. */
  account: string;
  partition: string;
  /** Users, groups, roles, and the managed policies (customer and AWS) with their default versions. */
  details: AccountDetails;
  /**
   * Users, roles, groups and customer managed policies inside this backend's ownership boundary
   * (ownership.ts), by name. Without groups and policies, no group or attached policy is datagrant's.
   */
  owned: { users: ReadonlySet<string>; roles: ReadonlySet<string>; groups?: ReadonlySet<string>; policies?: ReadonlySet<string> };
  /** The trust policy datagrant writes on its access-set roles (trust.ts); without it, no role's paths are datagrant's. */
  trust?: Json;
  datasets: readonly S3AccessDataset[];
  /** Each read bucket's policy: its text, or null when it has none. A bucket absent here could not be read. */
  bucketPolicies: ReadonlyMap<string, string | null>;
  now: Date;
  /** What this kind of reading never sees (default UNSEEN: AWS's); the RGW reader names its own. */
  unseen?: readonly string[];
  /** Which inline policies of a managed user are datagrant's grants (default: dg-direct-grants). */
  ownInline?: (policy: string) => boolean;
}

export interface EffectiveAccess {
  rows: ActualAccess[];
  limits: string[];
  /** Documents that could not be read or parsed this time: the access they grant is not reported. */
  failures: string[];
}

/** What no reader of one account's IAM and bucket policies can see, said once per reading. */
export const UNSEEN: readonly string[] = [
  'service control policies (AWS Organizations) are not readable from the account: access they deny is still reported',
  'resource control policies (AWS Organizations) are not readable from the account: access they deny is still reported',
  'session policies are passed when a role is assumed and stored nowhere: a session may have less access than its role, never more',
  'S3 access control lists (bucket and object ACLs) and access points are not read: access granted through them is not reported',
];

const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const uniq = (xs: Iterable<string>) => [...new Set(xs)];

/** A policy document as AWS returns it (URL-encoded) or moto does (plain); undefined when it is not one. */
export function parseDocument(raw: string | undefined): AnyPolicy | undefined {
  if (raw === undefined) return undefined;
  let decoded = raw;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    // not URL-encoded (a stray %): the raw text is all there is
  }
  for (const text of [raw, decoded]) {
    try {
      const d = JSON.parse(text) as unknown;
      if (d && typeof d === 'object' && 'Statement' in d) return d as AnyPolicy;
    } catch {
      // try the next form
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- datasets, indexed by ARN prefix

/** Datasets by an ARN every resource of theirs starts with, for the statements whose resources may meet them. */
class DatasetIndex {
  /** Per dataset: its objects' `arn:aws:s3:::bucket/prefix`, or its bucket's `arn:aws:s3:::bucket`. */
  readonly literals: string[];
  readonly #sorted: { literal: string; i: number }[];
  readonly #byLiteral = new Map<string, number[]>();
  /** The distinct lengths of the literals, ascending. */
  readonly #lengths: number[];

  constructor(literals: string[]) {
    this.literals = literals;
    this.#sorted = this.literals.map((literal, i) => ({ literal, i })).sort((a, b) => (a.literal < b.literal ? -1 : a.literal > b.literal ? 1 : 0));
    this.literals.forEach((l, i) => this.#byLiteral.set(l, [...(this.#byLiteral.get(l) ?? []), i]));
    this.#lengths = [...new Set(this.literals.map((l) => l.length))].sort((a, b) => a - b);
  }

  get size(): number {
    return this.literals.length;
  }

  /**
   * The datasets a pattern whose literal head (the text before its first wildcard) is `head` may
   * meet: those whose literal starts with the head, and those whose literal the head starts with.
   */
  candidates(head: string): number[] {
    const sorted = this.#sorted;
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid]!.literal < head) lo = mid + 1;
      else hi = mid;
    }
    const out: number[] = [];
    for (let k = lo; k < sorted.length && sorted[k]!.literal.startsWith(head); k++) out.push(sorted[k]!.i);
    for (const len of this.#lengths) {
      if (len >= head.length) break;
      const same = this.#byLiteral.get(head.slice(0, len));
      if (same) out.push(...same);
    }
    return out;
  }
}

/** The text before a pattern's first wildcard or policy variable. */
const headOf = (pattern: string) => {
  const m = /[*?]|\$\{/.exec(pattern);
  return m ? pattern.slice(0, m.index) : pattern;
};

// ---------------------------------------------------------------- one document's effect

/** Every action a level is held through, once, with its level: the cells of a reading are dataset × action. */
const ACTIONS = LEVELS.flatMap((level) => S3_LEVEL_ACTIONS[level].map((a) => ({ ...a, level })));
const NA = ACTIONS.length;

/** What one statement says, whatever it meets: effect, conditions, expiry, where it is. */
interface Said {
  allow: boolean;
  /** Its conditions hold now (true), or depend on the request (the names in `unknown`). */
  certain: boolean;
  unknown: string[];
  expires?: string;
  /** Index of the statement in its document, and its Sid or index for display. */
  index: number;
  statement: string;
}

/** One statement's effect on one dataset for one action (an index of ACTIONS). */
interface Hit extends Said {
  dataset: number;
  action: number;
  /** Covers every object of the dataset, or only some. */
  all: boolean;
}

/** A statement about IAM actions that let a holder give itself access (indexes of IAM_ESCALATION). */
interface IamSaid extends Said {
  escalations: number[];
  patterns: string[];
  negated: boolean;
}

/** What a document says about the datasets, and what it says about IAM, for the holders it belongs to. */
interface Analysis {
  hits: Hit[];
  iam: IamSaid[];
  /** Allows of an action that runs code (RUN_CODE_ACTIONS), for iam:PassRole. */
  runsCode: Said[];
}

const actionApplies = (s: AnyStatement, action: string): boolean =>
  s.Action !== undefined
    ? list(s.Action).some((p) => actionMatches(p, action))
    : s.NotAction !== undefined && !list(s.NotAction).some((p) => actionMatches(p, action));

const timeOf = (v: string) => (/^\d+$/.test(v) ? Number(v) * 1000 : Date.parse(v));

/**
 * The instant a statement stops holding by itself: a `DateLessThan(Equals)` bound on
 * `aws:CurrentTime` still in the future (the values of one key are ORed: the latest; several
 * bounds are ANDed: the earliest of those).
 */
function expiryOf(s: AnyStatement, nowMs: number): string | undefined {
  let earliest: number | undefined;
  for (const [op, keys] of Object.entries(s.Condition ?? {})) {
    if (!/^DateLessThan(Equals)?(IfExists)?$/.test(op)) continue;
    for (const [key, values] of Object.entries(keys)) {
      if (key.toLowerCase() !== 'aws:currenttime') continue;
      const future = list(values as string | string[])
        .map((v) => timeOf(String(v)))
        .filter((t) => t > nowMs);
      if (future.length === 0) continue;
      const latest = Math.max(...future);
      earliest = earliest === undefined ? latest : Math.min(earliest, latest);
    }
  }
  return earliest === undefined ? undefined : new Date(earliest).toISOString();
}

const conditionName = (why: string) => why.replace(/ \(depends on the request\)$/, '');

/** The indexes of `xs` whose action the statement applies to. */
const applying = (s: AnyStatement, actions: readonly string[]) => actions.flatMap((a, i) => (actionApplies(s, a) ? [i] : []));
const S3_ACTIONS = ACTIONS.map((a) => a.action);
const ESCALATION_ACTIONS = IAM_ESCALATION.map((e) => e.action);

/** Every statement of `doc` that reaches a dataset, action by action, and its statements about IAM. */
function analyze(doc: AnyPolicy, objects: DatasetIndex, buckets: DatasetIndex, clock: ConditionContext, nowMs: number): Analysis {
  const out: Analysis = { hits: [], iam: [], runsCode: [] };
  const every = Array.from({ length: objects.size }, (_, i) => i);
  list(doc.Statement).forEach((s, si) => {
    if (!s || typeof s !== 'object' || (s.Effect !== 'Allow' && s.Effect !== 'Deny')) return;
    if ((s.Resource === undefined && s.NotResource === undefined) || (s.Action === undefined && s.NotAction === undefined)) return;
    const acts = applying(s, S3_ACTIONS);
    const escalations = applying(s, ESCALATION_ACTIONS);
    const runs = s.Effect === 'Allow' && RUN_CODE_ACTIONS.some((a) => actionApplies(s, a));
    if (acts.length === 0 && escalations.length === 0 && !runs) return;
    const why: string[] = [];
    const holds = conditionHolds(s, clock, why);
    if (holds === false) return;
    const allow = s.Effect === 'Allow';
    const unknown = holds === true ? [] : uniq(why.map(conditionName));
    const negated = s.Resource === undefined;
    const patterns = list(negated ? s.NotResource : s.Resource).map(String);
    const expires = expiryOf(s, nowMs);
    const said: Said = { allow, certain: holds === true, unknown, ...(expires ? { expires } : {}), index: si, statement: s.Sid ?? String(si) };
    if (escalations.length) out.iam.push({ ...said, unknown: [...unknown], escalations, patterns, negated });
    if (runs) out.runsCode.push(said);
    if (acts.length === 0) return;
    // An Allow's resources are read as wide as a policy variable may make them, a Deny's as narrow
    // (reachOfPrefix): both over-report.
    const variables = allow !== negated ? 'widen' : 'narrow';
    if (allow && !negated) for (const p of patterns.filter(hasPolicyVariable)) unknown.push(`a policy variable in resource ${p}`);
    const push = (dataset: number, action: number, all: boolean) => out.hits.push({ ...said, dataset, action, all });
    const onObjects = acts.filter((a) => ACTIONS[a]!.on === 'object');
    if (onObjects.length) {
      const candidates = negated ? every : new Set(patterns.flatMap((p) => objects.candidates(headOf(p))));
      for (const d of candidates) {
        let reach = reachOfPrefix(patterns, objects.literals[d]!, variables);
        if (negated) reach = reach === 'all' ? 'none' : reach === 'none' ? 'all' : 'some';
        if (reach !== 'none') for (const a of onObjects) push(d, a, reach === 'all');
      }
    }
    const onBucket = acts.filter((a) => ACTIONS[a]!.on === 'bucket');
    if (onBucket.length) {
      // One resource, the bucket: matched or not, and a dataset in it is reached whole.
      const candidates = negated ? every : new Set(patterns.flatMap((p) => buckets.candidates(headOf(p))));
      for (const d of candidates) {
        if (matchesAny(patterns, buckets.literals[d]!, variables) !== negated) for (const a of onBucket) push(d, a, true);
      }
    }
  });
  return out;
}

// ---------------------------------------------------------------- holders and their cells

interface PathFacts {
  partial: boolean;
  expires?: string;
  conditions: string[];
}

/** Two statements giving one path: it holds as the stronger does (wider, later, fewer conditions). */
function either(a: PathFacts, b: PathFacts): PathFacts {
  const expires = a.expires && b.expires ? (a.expires > b.expires ? a.expires : b.expires) : undefined;
  const conditions = a.conditions.length && b.conditions.length ? uniq([...a.conditions, ...b.conditions]) : [];
  return { partial: a.partial && b.partial, ...(expires ? { expires } : {}), conditions };
}

/** A path and a boundary that must both allow: it holds as the weaker does. */
function both(a: PathFacts, b: PathFacts): PathFacts {
  const expires = a.expires && b.expires ? (a.expires < b.expires ? a.expires : b.expires) : (a.expires ?? b.expires);
  return { partial: a.partial || b.partial, ...(expires ? { expires } : {}), conditions: uniq([...a.conditions, ...b.conditions]) };
}

const factsOf = (h: Said & { all?: boolean }): PathFacts => ({ partial: h.all === false, ...(h.expires ? { expires: h.expires } : {}), conditions: h.unknown });

/** What the policies of one kind say about one holder on one dataset for one action. */
interface Verdict {
  paths: Map<string, PathFacts>;
  /** A Deny that certainly applies covers the whole dataset, or part of it. */
  deniedAll: boolean;
  deniedPart: boolean;
  /** Denies under conditions that cannot be evaluated, in words. */
  deniedWhen: string[];
}

const verdict = (): Verdict => ({ paths: new Map(), deniedAll: false, deniedPart: false, deniedWhen: [] });

function record(v: Verdict, h: Hit, via: string): void {
  if (h.allow) {
    const facts = factsOf(h);
    const had = v.paths.get(via);
    v.paths.set(via, had ? either(had, facts) : facts);
  } else if (!h.certain) v.deniedWhen.push(`denied when ${h.unknown.join(' and ')} (${via})`);
  else if (h.all) v.deniedAll = true;
  else v.deniedPart = true;
}

/** A document of a holder's, by the words that name it on a path. */
interface Source {
  via: string;
  analysis: Analysis;
}

interface Holder {
  holder: AccessHolder;
  /** The account its ARN names (for a Deny of a whole account). */
  account?: string;
  /** Identity policies, then resource (bucket) policies, per cell `dataset × action`. */
  identity: Map<number, Verdict>;
  resource: Map<number, Verdict>;
  /** The permissions boundary's verdicts; undefined without one. */
  boundary?: Map<number, Verdict>;
  /** Appended to each path of a role: who may assume it. */
  suffix?: string;
  /** The paths (by `via`) that are datagrant's own. */
  ours: Set<string>;
  /** Paths that say the holder can give itself any access (never datagrant's): the policy, and what it lets one do. */
  escalation: Map<string, { via: string; says: string }>;
  /** Identity documents (and the boundary's), for what they say about IAM. */
  sources: Source[];
  boundarySource?: Analysis;
}

const cellOf = (dataset: number, action: number) => dataset * NA + action;

function add(cells: Map<number, Verdict>, h: Hit, via: string): void {
  const k = cellOf(h.dataset, h.action);
  let v = cells.get(k);
  if (!v) cells.set(k, (v = verdict()));
  record(v, h, via);
}

const accountOfArn = (arn: string) => /^arn:[^:]+:(?:iam|sts)::(\d{12}):/.exec(arn)?.[1];

/** A trust policy's principals, in words: `ec2.amazonaws.com`, `account 111122223333`, `anyone`. */
function assumableBy(raw: string | undefined): string {
  const doc = parseDocument(raw);
  if (!doc) return 'assumable by an unreadable trust policy';
  const who: string[] = [];
  for (const s of list(doc.Statement)) {
    if (!s || s.Effect !== 'Allow' || !list(s.Action).some((a) => /^sts:(AssumeRole|\*)/i.test(String(a)) || a === '*')) continue;
    const cond = s.Condition ? ' (under conditions)' : '';
    for (const { type, value } of principalValues(s.Principal)) who.push(`${principalWords(type, value)}${cond}`);
  }
  const names = uniq(who);
  if (names.length === 0) return 'assumable by no one';
  return names.length <= 3 ? `assumable by ${names.join(', ')}` : `assumable by ${names.length} principals`;
}

/** The values of a Principal element: `*`, or `{ AWS | Service | Federated | CanonicalUser: string | string[] }`. */
function principalValues(p: unknown): { type: string; value: string }[] {
  if (p === '*') return [{ type: 'AWS', value: '*' }];
  if (!p || typeof p !== 'object') return [];
  return Object.entries(p as Record<string, unknown>).flatMap(([type, v]) => list(v as string | string[]).map((value) => ({ type, value: String(value) })));
}

function principalWords(type: string, value: string): string {
  if (value === '*') return 'anyone';
  if (type !== 'AWS') return value;
  if (/^\d{12}$/.test(value)) return `account ${value}`;
  const root = /^arn:[^:]+:iam::(\d{12}):root$/.exec(value);
  return root ? `account ${root[1]}` : value;
}

// ---------------------------------------------------------------- IAM: giving oneself access

/** What an IAM statement may be asked about: the account's principals, by kind, as ARNs. */
interface Account {
  partition: string;
  account: string;
  users: string[];
  roles: string[];
  groups: string[];
  /** The same, as sets, for patterns that name one ARN. */
  sets: Record<'users' | 'roles' | 'groups', Set<string>>;
}

/** Who is asking: its ARN, name, groups' ARNs and the customer managed policies attached to it or them. */
interface Asker {
  kind: 'user' | 'role';
  arn: string;
  name: string;
  groups: string[];
  policies: string[];
}

const ARN_FIELDS = ['arn', 'partition', 'iam', '', 'account'] as const;

/**
 * A pattern for an IAM ARN of this account with the account fields written out when they match it
 * (`arn:aws:iam::*:user/bob` → `arn:aws:iam::123456789012:user/bob`), so that it names one ARN
 * where it can; undefined when it cannot match any ARN of this account. IAM ARNs hold exactly five
 * colons, so a pattern with five keeps each wildcard inside its field.
 */
function pinned(pattern: string, acct: Account): string | undefined {
  const fields = pattern.split(':');
  if (fields.length !== 6) return pattern;
  const actual = ARN_FIELDS.map((f) => (f === 'partition' ? acct.partition : f === 'account' ? acct.account : f));
  for (let i = 0; i < 5; i++) if (!matchesAny([fields[i]!], actual[i]!, 'widen')) return undefined;
  return [...actual, fields[5]].join(':');
}

const hasWildcard = (p: string) => /[*?]|\$\{/.test(p);

/**
 * The first ARNs of `kind` (up to `enough`) that `patterns` match, `negated` for NotResource. Cached
 * by the patterns: a self-service policy (`user/${aws:username}`) comes pinned to one ARN per user
 * and is answered by one look-up, not by trying every user of the account.
 */
function matching(
  acct: Account,
  kind: 'users' | 'roles' | 'groups',
  patterns: string[],
  negated: boolean,
  variables: 'widen' | 'narrow',
  enough: number,
  cache: Map<string, string[]>,
): string[] {
  const key = JSON.stringify([kind, patterns, negated, variables, enough]);
  let found = cache.get(key);
  if (found) return found;
  found = [];
  const pins = patterns.map((p) => pinned(p, acct)).filter((p): p is string => p !== undefined);
  if (!negated && pins.every((p) => !hasWildcard(p))) found = pins.filter((p) => acct.sets[kind].has(p)).slice(0, enough);
  else
    for (const arn of acct[kind]) {
      if (matchesAny(pins, arn, variables) === negated) continue;
      found.push(arn);
      if (found.length >= enough) break;
    }
  cache.set(key, found);
  return found;
}

/** Whether an IAM statement reaches a target of `target` for the asker: its own, or another's. */
function reachesTarget(s: IamSaid, target: EscalationTarget, who: Asker, acct: Account, cache: Map<string, string[]>): boolean {
  const variables = s.allow !== s.negated ? 'widen' : 'narrow';
  // A user asking about itself: `${aws:username}` is its name. A role has none, so a pattern
  // with it matches nothing for a role (AWS: a missing key's variable matches nothing).
  const patterns = s.patterns.flatMap((p) => {
    const known = who.kind === 'user' ? withVariables(p, { 'aws:username': who.name }) : p;
    return who.kind === 'role' && /\$\{aws:username\}/i.test(known) ? [] : [known];
  });
  const mine = (arns: string[]) => arns.some((a) => matchesAny(patterns, a, variables) !== s.negated);
  switch (target) {
    case 'self':
      return mine([who.arn]);
    case 'own-groups':
      return mine(who.groups);
    case 'own-policies':
      return mine(who.policies);
    case 'other-users':
    case 'other-roles': {
      const found = matching(acct, target === 'other-users' ? 'users' : 'roles', patterns, s.negated, variables, 2, cache);
      return found.some((a) => a !== who.arn);
    }
    case 'other-groups': {
      const found = matching(acct, 'groups', patterns, s.negated, variables, who.groups.length + 1, cache);
      return found.some((a) => !who.groups.includes(a));
    }
  }
}

/** Whether a Deny certainly covers every target of `target` the asker has. */
function deniesAll(s: IamSaid, target: EscalationTarget, who: Asker, acct: Account): boolean {
  const patterns = s.patterns.map((p) => (who.kind === 'user' ? withVariables(p, { 'aws:username': who.name }) : p));
  const variables = s.negated ? 'widen' : 'narrow';
  const covers = (arns: string[]) => arns.every((a) => matchesAny(patterns, a, variables) !== s.negated);
  switch (target) {
    case 'self':
      return covers([who.arn]);
    case 'own-groups':
      return covers(who.groups);
    case 'own-policies':
      return covers(who.policies);
    default: {
      const prefix = `arn:${acct.partition}:iam::${acct.account}:${target === 'other-users' ? 'user' : target === 'other-roles' ? 'role' : 'group'}/`;
      const reach = reachOfPrefix(patterns, prefix, variables);
      return s.negated ? reach === 'none' : reach === 'all';
    }
  }
}

const CHANGES: ReadonlySet<EscalationTarget> = new Set(['self', 'own-groups', 'own-policies']);

/**
 * The paths by which a holder can give itself any access through IAM, in words, with what they
 * hold under; empty for almost everyone. An action counts when an identity policy allows it on a
 * target (IAM_ESCALATION), no Deny certainly covers its targets, and a permissions boundary (if
 * any) allows it too; iam:PassRole only beside an action that runs code.
 */
function escalationPaths(
  who: Asker,
  sources: Source[],
  boundary: Analysis | undefined,
  acct: Account,
  cache: Map<string, string[]>,
): { via: string; says: string; facts: PathFacts }[] {
  const allowed = new Map<number, Map<string, PathFacts>>();
  const denied = new Set<number>();
  const deniedWhen = new Map<number, string[]>();
  const fits = (e: number) => {
    const need = IAM_ESCALATION[e]!.holder;
    return need === undefined || need === who.kind;
  };
  for (const { via, analysis } of sources) {
    for (const s of analysis.iam) {
      for (const e of s.escalations) {
        if (!fits(e)) continue;
        const target = IAM_ESCALATION[e]!.target;
        if (s.allow) {
          if (!reachesTarget(s, target, who, acct, cache)) continue;
          const paths = allowed.get(e) ?? new Map<string, PathFacts>();
          allowed.set(e, paths);
          const had = paths.get(via);
          paths.set(via, had ? either(had, factsOf(s)) : factsOf(s));
        } else if (s.certain) {
          if (deniesAll(s, target, who, acct)) denied.add(e);
        } else if (reachesTarget({ ...s, allow: true, negated: s.negated }, target, who, acct, cache)) {
          deniedWhen.set(e, [...(deniedWhen.get(e) ?? []), `denied when ${s.unknown.join(' and ')} (${via})`]);
        }
      }
    }
  }
  const bounded = (e: number) =>
    boundary === undefined || boundary.iam.some((s) => s.allow && s.escalations.includes(e) && reachesTarget(s, IAM_ESCALATION[e]!.target, who, acct, cache));
  let runs: PathFacts | undefined;
  for (const { analysis } of sources) for (const s of analysis.runsCode) runs = runs ? either(runs, factsOf(s)) : factsOf(s);

  // Per path: the actions it gives, by kind of sentence.
  const out: { via: string; says: string; facts: PathFacts }[] = [];
  const byVia = new Map<string, { changes: string[]; others: string[]; facts: PathFacts }>();
  for (const [e, paths] of allowed) {
    if (denied.has(e) || !bounded(e)) continue;
    const { action, target } = IAM_ESCALATION[e]!;
    const needsCode = action === 'iam:PassRole';
    if (needsCode && !runs) continue;
    const when = deniedWhen.get(e) ?? [];
    for (const [via, facts] of paths) {
      let f: PathFacts = when.length ? { ...facts, conditions: uniq([...facts.conditions, ...when]) } : facts;
      if (needsCode) f = both(f, runs!);
      const entry = byVia.get(via) ?? { changes: [], others: [], facts: f };
      if (byVia.has(via)) entry.facts = either(entry.facts, f);
      (CHANGES.has(target) ? entry.changes : entry.others).push(needsCode ? `${action} with an action that runs code` : action);
      byVia.set(via, entry);
    }
  }
  for (const [via, { changes, others, facts }] of byVia) {
    if (changes.length) out.push({ via, says: `can change IAM policies (${changes.join(', ')}) and so grant itself any access`, facts });
    if (others.length) out.push({ via, says: `can act as other IAM principals (${others.join(', ')}) and so grant itself any access`, facts });
  }
  return out;
}

// ---------------------------------------------------------------- the reading

export function effectiveAccess(input: EffectiveInput): EffectiveAccess {
  const { backend, account, partition, details, owned, datasets, now } = input;
  const limits: string[] = [...(input.unseen ?? UNSEEN)];
  const ownInline = input.ownInline ?? ((p: string) => p === DIRECT_GRANTS_POLICY);
  const failures: string[] = [];
  const objects = new DatasetIndex(datasets.map((d) => `arn:${partition}:s3:::${d.bucket}/${d.prefix ?? ''}`));
  const buckets = new DatasetIndex(datasets.map((d) => `arn:${partition}:s3:::${d.bucket}`));
  const nowMs = now.getTime();
  const clock: ConditionContext = {
    context: { 'aws:CurrentTime': now.toISOString(), 'aws:EpochTime': String(Math.floor(nowMs / 1000)) },
    otherKeysUnknown: true,
  };

  const cache = new Map<string, Analysis | undefined>();
  /** What a document's text says, worked out once; undefined when it is not a policy document. */
  const analysisOf = (raw: string | undefined): Analysis | undefined => {
    if (raw === undefined) return undefined;
    if (!cache.has(raw)) {
      const doc = parseDocument(raw);
      cache.set(raw, doc ? analyze(doc, objects, buckets, clock, nowMs) : undefined);
    }
    return cache.get(raw);
  };

  const managed = new Map<string, string | undefined>();
  for (const p of details.policies) {
    if (!p.Arn) continue;
    const versions = p.PolicyVersionList ?? [];
    managed.set(p.Arn, (versions.find((v) => v.IsDefaultVersion) ?? versions.find((v) => v.VersionId === p.DefaultVersionId))?.Document);
  }
  // A customer managed policy of datagrant's, by its ARN (names are unique in an account, whatever the path).
  const ourPolicy = (arn: string) =>
    arn.includes(`:iam::${account}:policy/`) && owned.policies?.has(policyNameOf(arn)) === true && isGrantPolicyName(policyNameOf(arn));
  const unreadable = (what: string) => failures.push(`${what}: not a readable policy document, not evaluated: access it grants is not reported`);
  const inline = (h: Holder, policies: InlinePolicy[] | undefined, via: (name: string) => string, ours: (name: string) => boolean) => {
    for (const p of policies ?? []) {
      const name = p.PolicyName ?? '?';
      const analysis = analysisOf(p.PolicyDocument);
      if (!analysis) {
        unreadable(via(name));
        continue;
      }
      if (ours(name)) h.ours.add(via(name));
      for (const hit of analysis.hits) add(h.identity, hit, via(name));
      h.sources.push({ via: via(name), analysis });
    }
  };
  const attached = (h: Holder, policies: AttachedPolicy[] | undefined, via: (name: string) => string, ours: (arn: string) => boolean) => {
    for (const p of policies ?? []) {
      if (!p.PolicyArn) continue;
      const name = p.PolicyName ?? policyNameOf(p.PolicyArn);
      const analysis = analysisOf(managed.get(p.PolicyArn));
      if (!analysis) {
        unreadable(via(`${name} (${p.PolicyArn})`));
        continue;
      }
      if (ours(p.PolicyArn)) h.ours.add(via(name));
      for (const hit of analysis.hits) add(h.identity, hit, via(name));
      h.sources.push({ via: via(name), analysis });
    }
  };
  const boundaryOf = (h: Holder, arn: string | undefined, who: string): void => {
    if (!arn) return;
    const analysis = analysisOf(managed.get(arn));
    if (!analysis) {
      // Without its document a boundary is read as allowing everything: over-reports.
      failures.push(`permissions boundary ${arn} of ${who}: not readable, so read as allowing everything`);
      return;
    }
    const cells = new Map<number, Verdict>();
    for (const hit of analysis.hits) add(cells, hit, `permissions boundary ${policyNameOf(arn)}`);
    h.boundary = cells;
    h.boundarySource = analysis;
  };
  const blank = (holder: AccessHolder, acct: string | undefined): Holder => ({
    holder,
    ...(acct ? { account: acct } : {}),
    identity: new Map(),
    resource: new Map(),
    ours: new Set(),
    escalation: new Map(),
    sources: [],
  });

  const holders = new Map<string, Holder>();
  const askers = new Map<Holder, Asker>();
  const groups = new Map(details.groups.filter((g) => g.GroupName).map((g) => [g.GroupName!, g]));
  const customer = (list: AttachedPolicy[] | undefined) =>
    (list ?? []).map((p) => p.PolicyArn).filter((a): a is string => a !== undefined && !/^arn:[^:]+:iam::aws:/.test(a));
  for (const u of details.users) {
    if (!u.UserName || !u.Arn) continue;
    const name = u.UserName;
    const mine = owned.users.has(name);
    const h = blank({ id: u.Arn, kind: 'aws-user', name, managed: mine, ...(mine ? { principal: name } : {}) }, account);
    inline(
      h,
      u.UserPolicyList,
      (p) => `inline policy ${p} of user ${name}`,
      (p) => mine && ownInline(p),
    );
    attached(
      h,
      u.AttachedManagedPolicies,
      (p) => `managed policy ${p} attached to user ${name}`,
      (arn) => mine && ourPolicy(arn),
    );
    const policies = customer(u.AttachedManagedPolicies);
    const groupArns: string[] = [];
    for (const gname of u.GroupList ?? []) {
      const g = groups.get(gname);
      if (!g) continue;
      if (g.Arn) groupArns.push(g.Arn);
      policies.push(...customer(g.AttachedManagedPolicies));
      const ourGroup = mine && owned.groups?.has(gname) === true;
      // datagrant grants through a group's managed policies only, never an inline one.
      inline(
        h,
        g.GroupPolicyList,
        (p) => `group ${gname} (inline policy ${p})`,
        () => false,
      );
      attached(
        h,
        g.AttachedManagedPolicies,
        (p) => `group ${gname} (managed policy ${p})`,
        (arn) => ourGroup && ourPolicy(arn),
      );
    }
    boundaryOf(h, u.PermissionsBoundary?.PermissionsBoundaryArn, `user ${name}`);
    askers.set(h, { kind: 'user', arn: u.Arn, name, groups: groupArns, policies });
    holders.set(u.Arn, h);
  }
  const ourTrust = input.trust === undefined ? undefined : canonicalJson(normalizePolicy(input.trust));
  for (const r of details.roles ?? []) {
    if (!r.RoleName || !r.Arn) continue;
    const name = r.RoleName;
    const mine = owned.roles.has(name);
    // Its paths are datagrant's only while no one else may assume it.
    const ours = mine && ourTrust !== undefined && canonicalJson(parsePolicyDocument(r.AssumeRolePolicyDocument)) === ourTrust;
    // A managed role is an access-set role (dg-s-…), shared by principals: the lead's report maps it.
    const h = blank({ id: r.Arn, kind: 'aws-role', name: `role/${name}`, managed: mine }, account);
    h.suffix = assumableBy(r.AssumeRolePolicyDocument);
    inline(
      h,
      r.RolePolicyList,
      (p) => `inline policy ${p} of role ${name}`,
      (p) => ours && p === DIRECT_GRANTS_POLICY,
    );
    attached(
      h,
      r.AttachedManagedPolicies,
      (p) => `managed policy ${p} attached to role ${name}`,
      (arn) => ours && ourPolicy(arn),
    );
    boundaryOf(h, r.PermissionsBoundary?.PermissionsBoundaryArn, `role ${name}`);
    askers.set(h, { kind: 'role', arn: r.Arn, name, groups: [], policies: customer(r.AttachedManagedPolicies) });
    holders.set(r.Arn, h);
  }

  // IAM: holders that can give themselves any access are admin on every dataset, by the same
  // cells as any other path (so that Denies and a boundary still apply to what they would give).
  const acct: Account = {
    partition,
    account,
    users: details.users.flatMap((u) => (u.Arn ? [u.Arn] : [])),
    roles: (details.roles ?? []).flatMap((r) => (r.Arn ? [r.Arn] : [])),
    groups: details.groups.flatMap((g) => (g.Arn ? [g.Arn] : [])),
    sets: { users: new Set(), roles: new Set(), groups: new Set() },
  };
  for (const kind of ['users', 'roles', 'groups'] as const) acct.sets[kind] = new Set(acct[kind]);
  const matches = new Map<string, string[]>();
  const admin = ACTIONS.flatMap((a, i) => (a.level === 'admin' ? [i] : []));
  for (const [h, who] of askers) {
    if (!h.sources.some((s) => s.analysis.iam.length)) continue;
    for (const { via: policy, says, facts } of escalationPaths(who, h.sources, h.boundary ? h.boundarySource : undefined, acct, matches)) {
      const via = `${policy}: ${says}`;
      h.escalation.set(via, { via: policy, says });
      for (let d = 0; d < datasets.length; d++) {
        for (const a of admin) {
          const k = cellOf(d, a);
          let v = h.identity.get(k);
          if (!v) h.identity.set(k, (v = verdict()));
          const had = v.paths.get(via);
          v.paths.set(via, had ? either(had, facts) : facts);
        }
      }
    }
  }

  // Bucket policies: Allows give their principals paths; Denies are kept per cell, with whom they name.
  const bucketDenies = new Map<number, BucketDeny[]>();
  let crossAccount = false;
  // IAM names are unique in an account whatever their path: a bucket policy may name a user or role
  // by an ARN without it.
  const byName = new Map<string, Holder>();
  for (const h of holders.values()) byName.set(`${h.holder.kind === 'aws-user' ? 'user' : 'role'}/${h.holder.name.replace(/^role\//, '')}`, h);
  const ownName = (id: string) => {
    const m = /^arn:[^:]+:iam::(\d{12}):(user|role)\/(?:.*\/)?([^/]+)$/.exec(id);
    return m && m[1] === account ? byName.get(`${m[2]}/${m[3]}`) : undefined;
  };
  const foreign = (type: string, value: string): Holder => {
    const holder = holderOf(type, value, partition);
    let h = holders.get(holder.id) ?? ownName(holder.id);
    if (!h) {
      h = blank(holder, accountOfArn(holder.id));
      holders.set(holder.id, h);
    }
    if (h.account !== undefined && h.account !== account) crossAccount = true;
    return h;
  };
  for (const [bucket, text] of input.bucketPolicies) {
    if (text === null) continue;
    const doc = parseDocument(text);
    if (!doc) {
      unreadable(`bucket policy of ${bucket}`);
      continue;
    }
    const statements = list(doc.Statement);
    for (const hit of analysisOf(text)?.hits ?? []) {
      const s = statements[hit.index]!;
      const via = `bucket policy of ${bucket}, statement ${hit.statement}`;
      if (hit.allow) {
        if (s.Principal !== undefined) for (const { type, value } of principalValues(s.Principal)) add(foreign(type, value).resource, hit, via);
        else {
          const except = principalValues((s as { NotPrincipal?: unknown }).NotPrincipal).map((p) => principalWords(p.type, p.value));
          add(foreign('AWS', '*').resource, hit, `${via} (NotPrincipal: everyone except ${except.join(', ') || 'no one'})`);
        }
        continue;
      }
      if (s.Principal === undefined) {
        limits.push(`${via}: a Deny with NotPrincipal is not evaluated: access it may deny is still reported`);
        continue;
      }
      const ids = new Set<string>();
      const accounts = new Set<string>();
      for (const { type, value } of principalValues(s.Principal)) {
        const id = holderOf(type, value, partition).id;
        const root = /^arn:[^:]+:iam::(\d{12}):root$/.exec(id);
        if (root) accounts.add(root[1]!);
        else ids.add(ownName(id)?.holder.id ?? id);
      }
      const k = cellOf(hit.dataset, hit.action);
      bucketDenies.set(k, [...(bucketDenies.get(k) ?? []), { hit, via, ids, accounts }]);
    }
  }
  if (crossAccount)
    limits.push(
      "principals of other accounts named in bucket policies also need their own account's policies to allow the access; those are not readable here, so their access is reported as the bucket policy grants it",
    );

  const rows: ActualAccess[] = [];
  for (const h of holders.values()) {
    // The actions each dataset × level is asked through.
    const cells = new Map<number, number[]>();
    for (const k of new Set([...h.identity.keys(), ...h.resource.keys()])) {
      const d = Math.floor(k / NA);
      const key = d * LEVELS.length + LEVELS.indexOf(ACTIONS[k % NA]!.level);
      cells.set(key, [...(cells.get(key) ?? []), k]);
    }
    for (const [key, ks] of cells) {
      const dataset = datasets[Math.floor(key / LEVELS.length)]!;
      const paths = new Map<string, { facts: PathFacts; gives: Set<string> }>();
      for (const k of ks) {
        const gives = ACTIONS[k % NA]!.gives;
        for (const [via, facts] of settle(h, k, bucketDenies.get(k) ?? [])) {
          const had = paths.get(via);
          const entry = had ? { facts: either(had.facts, facts), gives: had.gives } : { facts, gives: new Set<string>() };
          // An escalation path says what it gives already.
          if (gives && !h.escalation.has(via)) entry.gives.add(gives(dataset.bucket));
          paths.set(via, entry);
        }
      }
      if (paths.size === 0) continue;
      const out: AccessPath[] = [...paths]
        .map(([via, { facts, gives }]) => {
          const escalation = h.escalation.get(via);
          const says = escalation ? [escalation.says] : [...gives];
          const base = escalation?.via ?? via;
          const text = `${h.suffix ? `${base} (${h.suffix})` : base}${says.length ? `: ${says.join(', ')}` : ''}`;
          return {
            via: text,
            ...(facts.expires ? { expires: facts.expires } : {}),
            ...(facts.conditions.length ? { conditions: facts.conditions } : {}),
            ...(facts.partial ? { partial: true } : {}),
            ...(h.ours.has(via) && gives.size === 0 ? { managed: true } : {}),
          };
        })
        .sort((a, b) => (a.via < b.via ? -1 : a.via > b.via ? 1 : 0));
      rows.push({ backend, dataset: dataset.name, level: LEVELS[key % LEVELS.length]!, holder: h.holder, paths: out });
    }
  }
  const order = (r: ActualAccess) => `${r.dataset}\u0000${LEVELS.indexOf(r.level)}\u0000${r.holder.id}`;
  rows.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
  return { rows, limits: uniq(limits), failures: uniq(failures) };
}

interface BucketDeny {
  hit: Hit;
  via: string;
  /** Principal ids named, `*` for everyone; accounts named whole (their roots). */
  ids: Set<string>;
  accounts: Set<string>;
}

/** The paths (by `via`, before the role's suffix) by which holder `h` has cell `k`, after boundaries and every Deny. */
function settle(h: Holder, k: number, denies: BucketDeny[]): [string, PathFacts][] {
  const identity = h.identity.get(k) ?? verdict();
  const resource = h.resource.get(k) ?? verdict();
  const bounded = h.boundary?.get(k);
  const gate = bounded ? [...bounded.paths.values()].reduce<PathFacts | undefined>((a, b) => (a ? either(a, b) : b), undefined) : undefined;
  const denied = verdict();
  for (const v of [identity, resource, ...(bounded ? [bounded] : [])]) {
    denied.deniedAll ||= v.deniedAll;
    denied.deniedPart ||= v.deniedPart;
    denied.deniedWhen.push(...v.deniedWhen);
  }
  for (const d of denies) {
    const named = d.ids.has('*') || d.ids.has(h.holder.id) || (h.account !== undefined && d.accounts.has(h.account));
    if (named) record(denied, d.hit, d.via);
  }
  if (denied.deniedAll) return [];

  const out: [string, PathFacts][] = [];
  // With a boundary, identity policies give only what it allows too. A bucket policy naming a user
  // is not limited by the user's boundary; one naming a role is (AWS's evaluation logic).
  const within = (facts: PathFacts): PathFacts | undefined => (h.boundary === undefined ? facts : gate ? both(facts, gate) : undefined);
  for (const [via, facts] of identity.paths) {
    const f = within(facts);
    if (f) out.push([via, f]);
  }
  for (const [via, facts] of resource.paths) {
    const f = h.holder.kind === 'aws-role' ? within(facts) : facts;
    if (f) out.push([via, f]);
  }
  const when = uniq(denied.deniedWhen);
  return out.map(([via, f]) => [via, { ...f, conditions: uniq([...f.conditions, ...when]), partial: f.partial || denied.deniedPart }]);
}

/** The holder a bucket policy's principal names. */
function holderOf(type: string, value: string, partition: string): AccessHolder {
  const unmanaged = { managed: false } as const;
  if (value === '*') return { id: '*', kind: 'aws-anyone', name: 'anyone', ...unmanaged };
  if (type === 'Service' || type === 'Federated') return { id: value, kind: 'aws-service', name: value, ...unmanaged };
  if (type === 'CanonicalUser') return { id: `canonical-user:${value}`, kind: 'aws-account', name: `canonical user ${value}`, ...unmanaged };
  const arn = /^\d{12}$/.test(value) ? `arn:${partition}:iam::${value}:root` : value;
  const m = /^arn:[^:]+:(iam|sts)::(\d{12}):(.*)$/.exec(arn);
  if (!m) {
    // A unique id (AIDA…, AROA…) stands where a principal was deleted after the policy named it.
    const kind: HolderKind = arn.startsWith('AIDA') ? 'aws-user' : arn.startsWith('AROA') ? 'aws-role' : 'aws-account';
    return { id: arn, kind, name: `unique id ${arn} (a deleted principal)`, ...unmanaged };
  }
  const [service, acct, rest] = [m[1]!, m[2]!, m[3]!];
  if (rest === 'root') return { id: arn, kind: 'aws-account', name: `account ${acct}`, ...unmanaged };
  const kind: HolderKind = service === 'sts' || rest.startsWith('role/') ? 'aws-role' : 'aws-user';
  return { id: arn, kind, name: `${acct}:${rest}`, ...unmanaged };
}

// ---------------------------------------------------------------- credential usage

/**
 * One entry per access key in the IAM credential report: when it was made and last used. The
 * report names keys by slot (`access_key_1`, `access_key_2`), not by id; ids would cost one
 * ListAccessKeys per user.
 */
export function credentialUsage(backend: string, csv: string, ownedUsers: ReadonlySet<string>): CredentialUsage[] {
  const out: CredentialUsage[] = [];
  for (const row of credentialReportRows(csv)) {
    const user = row.get('user');
    const arn = row.get('arn');
    if (!user || !arn) continue;
    for (const n of [1, 2]) {
      const created = Date.parse(row.get(`access_key_${n}_last_rotated`) ?? '');
      if (Number.isNaN(created)) continue;
      const used = row.get(`access_key_${n}_last_used_date`) ?? '';
      const usedAt = Date.parse(used);
      out.push({
        backend,
        holder: arn,
        ...(ownedUsers.has(user) ? { principal: user } : {}),
        credential: `access_key_${n}`,
        createdAt: new Date(created).toISOString(),
        ...(used === 'N/A'
          ? { lastUsedAt: null }
          : Number.isNaN(usedAt)
            ? { unknown: `the credential report says ${JSON.stringify(used)} (AWS records key use since April 2015)` }
            : { lastUsedAt: new Date(usedAt).toISOString() }),
      });
    }
  }
  return out;
}
