// The model behind the adversarial test (aws-fuzz.test.ts): what the spec and the SCIM identities
// say each principal may do, worked out here from the README's rules and not by datagrant's
// compiler or planner, so that a fault in either, or in a driver, shows up as a difference. Only
// the list of candidate names for a SCIM user is datagrant's own; which one a new user must get
// is the model's.
import { principalNameCandidates } from '../../src/scim/identities.js';

export type Level = 'read' | 'write' | 'admin';
export const LEVELS: readonly Level[] = ['read', 'write', 'admin'];
const RANK: Record<Level, number> = { read: 1, write: 2, admin: 3 };

export interface Grant {
  access: Level;
  /** An ISO instant; the grant gives nothing from then on. */
  expires?: string;
}
/** dataset → grant: the spec allows one grant per dataset in a list. */
export type Grants = Record<string, Grant>;

/** Three datasets on one bucket (two prefixes side by side, and the whole bucket), two buckets whole. */
export const DATASETS: Record<string, { bucket: string; prefix?: string }> = {
  train: { bucket: 'ai-model-data', prefix: 'training/' },
  eval: { bucket: 'ai-model-data', prefix: 'eval/' },
  'all-data': { bucket: 'ai-model-data' },
  artifacts: { bucket: 'ai-model-artifacts' },
  other: { bucket: 'other-bucket' },
};
export const DATASET_NAMES = Object.keys(DATASETS);

export const GROUPS = ['ml', 'evalers', 'ops'] as const;
/** IdP group → datagrant group; `Everyone` is deliberately unmapped (it grants nothing). */
export const IDP_MAPPING: Record<string, string> = { 'ML Research': 'ml', 'Eval Team': 'evalers' };
export const IDP_GROUPS = ['ML Research', 'Eval Team', 'Everyone'];

/** Spec principal names; alice, bob and carol are also wanted by SCIM users. */
export const SPEC_NAMES = ['alice', 'bob', 'carol', 'dave', 'svc-train', 'svc-eval'];
/** SCIM userNames: three people who all want `alice`, and two who want a spec principal's name. */
export const SCIM_NAMES = ['alice@a.example', 'alice@b.example', 'alice@c.example', 'bob@corp.example', 'carol@corp.example'];

/**
 * Where probes go. A `dir` of '' is the whole bucket. `training-old/` sits next to `training/`:
 * only the whole-bucket dataset may reach it, so a prefix that leaked past its `/` shows.
 * `existing` is a sample object (test/support/moto.ts); elsewhere a read of a missing object is
 * allowed (NoSuchKey) or denied (AccessDenied), which tells the same.
 */
export const LOCATIONS: { bucket: string; dir: string; existing?: string }[] = [
  { bucket: 'ai-model-data', dir: 'training/', existing: 'training/a.txt' },
  { bucket: 'ai-model-data', dir: 'eval/', existing: 'eval/c.txt' },
  { bucket: 'ai-model-data', dir: 'training-old/' },
  { bucket: 'ai-model-artifacts', dir: '', existing: 'model.bin' },
  { bucket: 'other-bucket', dir: '', existing: 'secret.txt' },
];
export const BUCKETS = [...new Set(LOCATIONS.map((l) => l.bucket))];

export type Op = 'GetObject' | 'PutObject' | 'DeleteObject' | 'ListBucket';
export interface Probe {
  op: Op;
  bucket: string;
  key?: string;
  allowed: boolean;
}

/** Every operation on every location, and whether `access` (dataset → level) allows it. */
export function probesFor(principal: string, access: ReadonlyMap<string, Level>): Probe[] {
  const out: Probe[] = [];
  for (const loc of LOCATIONS) {
    let best = 0;
    for (const [ds, level] of access) {
      const d = DATASETS[ds]!;
      if (d.bucket === loc.bucket && (d.prefix === undefined || loc.dir.startsWith(d.prefix))) best = Math.max(best, RANK[level]);
    }
    const mine = `${loc.dir}fuzz-${principal}.txt`;
    out.push({ op: 'GetObject', bucket: loc.bucket, key: loc.existing ?? `${loc.dir}absent.txt`, allowed: best >= RANK.read });
    out.push({ op: 'PutObject', bucket: loc.bucket, key: mine, allowed: best >= RANK.write });
    out.push({ op: 'DeleteObject', bucket: loc.bucket, key: mine, allowed: best >= RANK.admin });
  }
  // moto ignores the s3:prefix condition that keeps a listing inside a prefix (DESIGN.md), so any
  // read on a bucket lists all of it there; the compiler tests prove the condition instead.
  for (const bucket of BUCKETS) {
    out.push({ op: 'ListBucket', bucket, allowed: [...access.keys()].some((ds) => DATASETS[ds]!.bucket === bucket) });
  }
  return out;
}

export interface SpecPrincipal {
  type: 'person' | 'service';
  groups: string[];
  grants: Grants;
}

export interface ScimUser {
  id: string;
  principal: string;
  active: boolean;
}

export interface ScimGroup {
  id: string;
  /** userNames */
  members: Set<string>;
}

export class World {
  backendOn = true;
  groups: Record<string, Grants> = Object.fromEntries(GROUPS.map((g) => [g, {}]));
  principals: Record<string, SpecPrincipal> = {};
  /** By userName; a deleted user is gone from here, its name stays in `everGiven`. */
  scimUsers = new Map<string, ScimUser>();
  /** By displayName. */
  scimGroups = new Map<string, ScimGroup>();
  /** Every principal name ever given to a SCIM user (they are never given again). */
  everGiven = new Set<string>();

  constructor(public now: number) {}

  /**
   * The spec file. JSON is YAML; key and list order come from `shuffle`, since the order of a
   * spec must never change what is planned. With the backend removed the principals stay, without
   * grants: their names are the operator's, and new SCIM users must still not take them.
   */
  specText(shuffle: <T>(xs: T[]) => T[]): string {
    const grantList = (g: Grants) =>
      shuffle(Object.entries(g)).map(([dataset, v]) => ({ dataset, access: v.access, ...(v.expires ? { expires: v.expires } : {}) }));
    const on = this.backendOn;
    const spec = {
      version: 1,
      backends: on ? { aws: { type: 'aws', region: 'us-east-1' } } : {},
      datasets: on ? Object.fromEntries(shuffle(Object.entries(DATASETS)).map(([n, d]) => [n, { backend: 'aws', ...d }])) : {},
      groups: on ? Object.fromEntries(shuffle(Object.entries(this.groups)).map(([n, g]) => [n, { grants: grantList(g) }])) : {},
      principals: Object.fromEntries(
        shuffle(Object.entries(this.principals)).map(([n, p]) => [
          n,
          { type: p.type, ...(on ? { groups: shuffle([...p.groups]), grants: grantList(p.grants) } : {}) },
        ]),
      ),
      scim: { groups: on ? IDP_MAPPING : {} },
    };
    return `${JSON.stringify(spec, null, 1)}\n`;
  }

  /** Spec principals whose name a SCIM user owns: plan and apply must refuse while there are any. */
  conflicts(): string[] {
    return Object.keys(this.principals).filter((n) => this.everGiven.has(n.toLowerCase()));
  }

  /** The name a SCIM user created now must get: the first candidate never given and not the spec's. */
  scimNameFor(userName: string): string {
    const reserved = new Set(Object.keys(this.principals).map((n) => n.toLowerCase()));
    for (const c of principalNameCandidates(userName)) if (!reserved.has(c) && !this.everGiven.has(c)) return c;
    throw new Error('unreachable: the candidates never end');
  }

  /** IdP groups that hold `userName`, mapped to datagrant groups (unmapped ones grant nothing). */
  scimGroupsOf(userName: string): string[] {
    if (!this.backendOn) return [];
    const out = new Set<string>();
    for (const [display, g] of this.scimGroups) {
      const dg = IDP_MAPPING[display];
      if (dg && g.members.has(userName)) out.add(dg);
    }
    return [...out].sort();
  }

  /** Principals the desired state includes: the spec's and every active SCIM user in a mapped group. */
  merged(): Record<string, { groups: string[]; grants: Grants }> {
    const out: Record<string, { groups: string[]; grants: Grants }> = {};
    for (const [userName, u] of this.scimUsers) {
      const groups = this.scimGroupsOf(userName);
      if (u.active && groups.length) out[u.principal] = { groups, grants: {} };
    }
    for (const [n, p] of Object.entries(this.principals)) out[n] = this.backendOn ? { groups: p.groups, grants: p.grants } : { groups: [], grants: {} };
    return out;
  }

  live(g: Grant): boolean {
    return g.expires === undefined || Date.parse(g.expires) > this.now;
  }

  /** principal → dataset → level, for every principal that may reach anything (and so has a key). */
  access(): Map<string, Map<string, Level>> {
    const out = new Map<string, Map<string, Level>>();
    if (!this.backendOn) return out;
    for (const [name, p] of Object.entries(this.merged())) {
      const acc = new Map<string, Level>();
      const add = (grants: Grants) => {
        for (const [ds, g] of Object.entries(grants)) {
          if (!this.live(g)) continue;
          const had = acc.get(ds);
          if (!had || RANK[g.access] > RANK[had]) acc.set(ds, g.access);
        }
      };
      add(p.grants);
      for (const g of p.groups) add(this.groups[g] ?? {});
      if (acc.size) out.set(name, acc);
    }
    return out;
  }

  /** Principals counted against the size cap: the spec's and the active SCIM users. */
  population(): number {
    return Object.keys(this.principals).length + [...this.scimUsers.values()].filter((u) => u.active).length;
  }
}

export function describeAccess(access: ReadonlyMap<string, Level>): string {
  return (
    [...access]
      .map(([ds, l]) => `${ds}:${l}`)
      .sort()
      .join(',') || '-'
  );
}
