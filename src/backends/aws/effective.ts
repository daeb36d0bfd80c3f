// Effective access to S3 datasets from what IAM and S3 hold (issue 13). Pure: access.ts reads the
// documents in bulk (GetAccountAuthorizationDetails, each dataset bucket's policy, the credential
// report) and passes them in with `now`; this works out who can read, write and administer each
// dataset, datagrant's principals or not, and through what.
//
// The question is about sets: may this holder do the level's object action (levels.ts) on *some*
// object of the dataset, `arn:aws:s3:::bucket/prefix*`? Where it cannot be decided, the answer
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
import type { Level } from '../../core/types.js';
import { LEVELS, type AccessHolder, type AccessPath, type ActualAccess, type CredentialUsage, type HolderKind } from '../../model/access.js';
import { S3_LEVEL_ACTION } from '../../model/aws-levels.js';
import {
  actionMatches,
  conditionHolds,
  hasPolicyVariable,
  reachOfPrefix,
  type AnyPolicy,
  type AnyStatement,
  type ConditionContext,
} from '../../model/iam-eval.js';
import { credentialReportRows, policyNameOf, type AccountDetails, type AttachedPolicy, type InlinePolicy } from './state.js';

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
  /** Users and roles inside this backend's ownership boundary (ownership.ts), by name. */
  owned: { users: ReadonlySet<string>; roles: ReadonlySet<string> };
  datasets: readonly S3AccessDataset[];
  /** Each read bucket's policy: its text, or null when it has none. A bucket absent here could not be read. */
  bucketPolicies: ReadonlyMap<string, string | null>;
  now: Date;
}

export interface EffectiveAccess {
  rows: ActualAccess[];
  limits: string[];
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

/** Datasets by the ARN prefix of their objects, for the statements whose resources may meet them. */
class DatasetIndex {
  /** Per dataset: `arn:aws:s3:::bucket/prefix`, every object of the dataset starts with it. */
  readonly literals: string[];
  readonly #sorted: { literal: string; i: number }[];
  readonly #byLiteral = new Map<string, number[]>();
  /** The distinct lengths of the literals, ascending. */
  readonly #lengths: number[];

  constructor(datasets: readonly S3AccessDataset[], partition: string) {
    this.literals = datasets.map((d) => `arn:${partition}:s3:::${d.bucket}/${d.prefix ?? ''}`);
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

/** One statement's effect on one dataset at one level. */
interface Hit {
  dataset: number;
  level: Level;
  allow: boolean;
  /** Covers every object of the dataset, or only some. */
  all: boolean;
  /** Its conditions hold now (true), or depend on the request (the names in `unknown`). */
  certain: boolean;
  unknown: string[];
  expires?: string;
  /** Index of the statement in its document, and its Sid or index for display. */
  index: number;
  statement: string;
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

/** Every statement of `doc` that reaches a dataset, level by level. */
function analyze(doc: AnyPolicy, index: DatasetIndex, clock: ConditionContext, nowMs: number): Hit[] {
  const hits: Hit[] = [];
  const all = Array.from({ length: index.size }, (_, i) => i);
  list(doc.Statement).forEach((s, si) => {
    if (!s || typeof s !== 'object' || (s.Effect !== 'Allow' && s.Effect !== 'Deny')) return;
    if ((s.Resource === undefined && s.NotResource === undefined) || (s.Action === undefined && s.NotAction === undefined)) return;
    const levels = LEVELS.filter((l) => actionApplies(s, S3_LEVEL_ACTION[l]));
    if (levels.length === 0) return;
    const why: string[] = [];
    const holds = conditionHolds(s, clock, why);
    if (holds === false) return;
    const allow = s.Effect === 'Allow';
    const unknown = holds === true ? [] : uniq(why.map(conditionName));
    const negated = s.Resource === undefined;
    const patterns = list(negated ? s.NotResource : s.Resource).map(String);
    // An Allow's resources are read as wide as a policy variable may make them, a Deny's as narrow
    // (reachOfPrefix): both over-report.
    const variables = allow !== negated ? 'widen' : 'narrow';
    if (allow && !negated) for (const p of patterns.filter(hasPolicyVariable)) unknown.push(`a policy variable in resource ${p}`);
    const candidates = negated ? all : new Set(patterns.flatMap((p) => index.candidates(headOf(p))));
    const expires = expiryOf(s, nowMs);
    for (const d of candidates) {
      let reach = reachOfPrefix(patterns, index.literals[d]!, variables);
      if (negated) reach = reach === 'all' ? 'none' : reach === 'none' ? 'all' : 'some';
      if (reach === 'none') continue;
      for (const level of levels) {
        hits.push({
          dataset: d,
          level,
          allow,
          all: reach === 'all',
          certain: holds === true,
          unknown,
          ...(expires ? { expires } : {}),
          index: si,
          statement: s.Sid ?? String(si),
        });
      }
    }
  });
  return hits;
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

const factsOf = (h: Hit): PathFacts => ({ partial: !h.all, ...(h.expires ? { expires: h.expires } : {}), conditions: h.unknown });

/** What the policies of one kind say about one holder on one dataset at one level. */
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

interface Holder {
  holder: AccessHolder;
  /** The account its ARN names (for a Deny of a whole account). */
  account?: string;
  /** Identity policies, then resource (bucket) policies, per cell `dataset × level`. */
  identity: Map<number, Verdict>;
  resource: Map<number, Verdict>;
  /** The permissions boundary's verdicts; undefined without one. */
  boundary?: Map<number, Verdict>;
  /** Appended to each path of a role: who may assume it. */
  suffix?: string;
}

const cellOf = (dataset: number, level: Level) => dataset * LEVELS.length + LEVELS.indexOf(level);

function add(cells: Map<number, Verdict>, h: Hit, via: string): void {
  const k = cellOf(h.dataset, h.level);
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

// ---------------------------------------------------------------- the reading

export function effectiveAccess(input: EffectiveInput): EffectiveAccess {
  const { backend, account, partition, details, owned, datasets, now } = input;
  const limits: string[] = [...UNSEEN];
  const index = new DatasetIndex(datasets, partition);
  const nowMs = now.getTime();
  const clock: ConditionContext = {
    context: { 'aws:CurrentTime': now.toISOString(), 'aws:EpochTime': String(Math.floor(nowMs / 1000)) },
    otherKeysUnknown: true,
  };

  const cache = new Map<string, Hit[] | undefined>();
  /** The hits of a document's text, worked out once; undefined when it is not a policy document. */
  const hitsOf = (raw: string | undefined): Hit[] | undefined => {
    if (raw === undefined) return undefined;
    if (!cache.has(raw)) {
      const doc = parseDocument(raw);
      cache.set(raw, doc ? analyze(doc, index, clock, nowMs) : undefined);
    }
    return cache.get(raw);
  };

  const managed = new Map<string, string | undefined>();
  for (const p of details.policies) {
    if (!p.Arn) continue;
    const versions = p.PolicyVersionList ?? [];
    managed.set(p.Arn, (versions.find((v) => v.IsDefaultVersion) ?? versions.find((v) => v.VersionId === p.DefaultVersionId))?.Document);
  }
  const unreadable = (what: string) => limits.push(`${what}: not a readable policy document, not evaluated: access it grants is not reported`);
  const inline = (cells: Map<number, Verdict>, policies: InlinePolicy[] | undefined, via: (name: string) => string) => {
    for (const p of policies ?? []) {
      const hits = hitsOf(p.PolicyDocument);
      if (!hits) unreadable(via(p.PolicyName ?? '?'));
      for (const h of hits ?? []) add(cells, h, via(p.PolicyName ?? '?'));
    }
  };
  const attached = (cells: Map<number, Verdict>, policies: AttachedPolicy[] | undefined, via: (name: string) => string) => {
    for (const p of policies ?? []) {
      if (!p.PolicyArn) continue;
      const name = p.PolicyName ?? policyNameOf(p.PolicyArn);
      const hits = hitsOf(managed.get(p.PolicyArn));
      if (!hits) unreadable(via(`${name} (${p.PolicyArn})`));
      for (const h of hits ?? []) add(cells, h, via(name));
    }
  };
  const boundaryOf = (arn: string | undefined, who: string): Map<number, Verdict> | undefined => {
    if (!arn) return undefined;
    const hits = hitsOf(managed.get(arn));
    if (!hits) {
      // Without its document a boundary is read as allowing everything: over-reports.
      limits.push(`permissions boundary ${arn} of ${who}: not readable, so read as allowing everything`);
      return undefined;
    }
    const cells = new Map<number, Verdict>();
    for (const h of hits) add(cells, h, `permissions boundary ${policyNameOf(arn)}`);
    return cells;
  };

  const holders = new Map<string, Holder>();
  const groups = new Map(details.groups.filter((g) => g.GroupName).map((g) => [g.GroupName!, g]));
  for (const u of details.users) {
    if (!u.UserName || !u.Arn) continue;
    const name = u.UserName;
    const mine = owned.users.has(name);
    const h: Holder = {
      holder: { id: u.Arn, kind: 'aws-user', name, managed: mine, ...(mine ? { principal: name } : {}) },
      account,
      identity: new Map(),
      resource: new Map(),
    };
    inline(h.identity, u.UserPolicyList, (p) => `inline policy ${p} of user ${name}`);
    attached(h.identity, u.AttachedManagedPolicies, (p) => `managed policy ${p} attached to user ${name}`);
    for (const gname of u.GroupList ?? []) {
      const g = groups.get(gname);
      if (!g) continue;
      inline(h.identity, g.GroupPolicyList, (p) => `group ${gname} (inline policy ${p})`);
      attached(h.identity, g.AttachedManagedPolicies, (p) => `group ${gname} (managed policy ${p})`);
    }
    const boundary = boundaryOf(u.PermissionsBoundary?.PermissionsBoundaryArn, `user ${name}`);
    if (boundary) h.boundary = boundary;
    holders.set(u.Arn, h);
  }
  for (const r of details.roles ?? []) {
    if (!r.RoleName || !r.Arn) continue;
    const name = r.RoleName;
    // A managed role is an access-set role (dg-s-…), shared by principals: the lead's report maps it.
    const h: Holder = {
      holder: { id: r.Arn, kind: 'aws-role', name: `role/${name}`, managed: owned.roles.has(name) },
      account,
      identity: new Map(),
      resource: new Map(),
      suffix: assumableBy(r.AssumeRolePolicyDocument),
    };
    inline(h.identity, r.RolePolicyList, (p) => `inline policy ${p} of role ${name}`);
    attached(h.identity, r.AttachedManagedPolicies, (p) => `managed policy ${p} attached to role ${name}`);
    const boundary = boundaryOf(r.PermissionsBoundary?.PermissionsBoundaryArn, `role ${name}`);
    if (boundary) h.boundary = boundary;
    holders.set(r.Arn, h);
  }

  // Bucket policies: Allows give their principals paths; Denies are kept per cell, with whom they name.
  interface BucketDeny {
    hit: Hit;
    via: string;
    /** Principal ids named, `*` for everyone; accounts named whole (their roots). */
    ids: Set<string>;
    accounts: Set<string>;
  }
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
      const acct = accountOfArn(holder.id);
      h = { holder, ...(acct ? { account: acct } : {}), identity: new Map(), resource: new Map() };
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
    for (const hit of hitsOf(text) ?? []) {
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
      const k = cellOf(hit.dataset, hit.level);
      bucketDenies.set(k, [...(bucketDenies.get(k) ?? []), { hit, via, ids, accounts }]);
    }
  }
  if (crossAccount)
    limits.push(
      "principals of other accounts named in bucket policies also need their own account's policies to allow the access; those are not readable here, so their access is reported as the bucket policy grants it",
    );

  const rows: ActualAccess[] = [];
  for (const h of holders.values()) {
    for (const k of new Set([...h.identity.keys(), ...h.resource.keys()])) {
      const dataset = Math.floor(k / LEVELS.length);
      const level = LEVELS[k % LEVELS.length]!;
      const paths = settle(h, k, bucketDenies.get(k) ?? []);
      if (paths.length === 0) continue;
      rows.push({ backend, dataset: datasets[dataset]!.name, level, holder: h.holder, paths });
    }
  }
  const order = (r: ActualAccess) => `${r.dataset}\u0000${LEVELS.indexOf(r.level)}\u0000${r.holder.id}`;
  rows.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
  return { rows, limits: uniq(limits) };
}

/** The paths by which holder `h` has cell `k`, after boundaries and every Deny. */
function settle(h: Holder, k: number, denies: { hit: Hit; via: string; ids: Set<string>; accounts: Set<string> }[]): AccessPath[] {
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
  return out
    .map(([via, f]) => {
      const conditions = uniq([...f.conditions, ...when]);
      return {
        via: h.suffix ? `${via} (${h.suffix})` : via,
        ...(f.expires ? { expires: f.expires } : {}),
        ...(conditions.length ? { conditions } : {}),
        ...(f.partial || denied.deniedPart ? { partial: true } : {}),
      };
    })
    .sort((a, b) => (a.via < b.via ? -1 : a.via > b.via ? 1 : 0));
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
