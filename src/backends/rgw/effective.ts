// Effective access to datasets on a RADOS gateway, from what its admin API holds (access.ts reads
// it). Pure. RGW evaluates S3 requests as AWS does within one account — an explicit Deny in the
// user's policies or the bucket policy wins, else an Allow allows — so user policies and bucket
// policies go through the AWS reader's evaluation (src/backends/aws/effective.ts, on the IAM
// evaluator), with RGW's users in place of IAM's. What RGW adds is read here:
//  - when no policy statement decides, the bucket's ACL does: its owner has full control, and
//    a grant of WRITE or WRITE_ACP to a user, to every user or to anyone gives write and admin;
//  - caps (users, user-policy, buckets, metadata with write) and the system flag let a user act
//    as any user or take any bucket: admin on every dataset;
//  - a subuser acts with its user's access, up to its permissions;
//  - a suspended user's keys are refused: its access holds only once it is enabled again.
// Object ACLs (the uploader owns each object) take a request per object and are not read: limits.
//
// A path is datagrant's (`managed`) when it is one of its grant policies (dg-direct-grants,
// dg-group-*) on one of its users: the AWS reader decides it, told those names.
import type { Level } from '../../core/types.js';
import { LEVELS, type AccessHolder, type AccessPath, type ActualAccess, type CredentialUsage } from '../../model/access.js';
import { effectiveAccess as evaluate, type S3AccessDataset } from '../aws/effective.js';
import type { AccountDetails } from '../aws/state.js';

export interface RgwUserFact {
  uid: string;
  system: boolean;
  suspended: boolean;
  /** `type=perm`. */
  caps: string[];
  keys: string[];
  /** Name → document; undefined when they could not be read. */
  policies: Record<string, string> | undefined;
  subusers: { id: string; permissions: string }[];
  /** Carries datagrant's mark for this backend (and installation). */
  ours: boolean;
  /** The spec principal its uid stands for, when ours. */
  principal?: string;
}

/** A grant of a bucket's ACL: to a user (its uid), or to a group. */
export interface RgwAclGrant {
  user?: string;
  group?: 'AllUsers' | 'AuthenticatedUsers';
  /** READ 1, WRITE 2, READ_ACP 4, WRITE_ACP 8 (FULL_CONTROL is all four). */
  flags: number;
}

export interface RgwBucketFact {
  bucket: string;
  owner: string;
  /** Its bucket policy's text, null when it has none; undefined when it could not be read. */
  policy: string | null | undefined;
  /** Its ACL's grants; undefined when it could not be read. */
  acl: RgwAclGrant[] | undefined;
}

export interface RgwAccessFacts {
  backend: string;
  users: RgwUserFact[];
  /** The datasets' buckets that exist. */
  buckets: RgwBucketFact[];
  datasets: S3AccessDataset[];
  now: Date;
}

/** What no reading of a gateway's admin API sees. */
export const RGW_UNSEEN: readonly string[] = [
  "object ACLs are not read (a request per object): an object's uploader owns it and may read it through its ACL, and what object ACLs grant to others is not reported; datagrant's own users may set no ACL (dg-boundary)",
];

export const NO_KEY_RECORD = 'RGW records no last use of a key; its ops log (rgw_enable_ops_log) does';

const READ = 1;
const WRITE = 2;
const WRITE_ACP = 8;

/** Caps that let a user give itself any access, and how. */
const CAP_ESCALATION: Record<string, string> = {
  users: 'may make keys for any user and act as it',
  'user-policy': "may write any user's policies, its own included",
  buckets: 'may link any bucket to itself and so own it',
  metadata: 'may rewrite any user or bucket',
};

/** A user's ARN, as bucket policies name it (`tenant$uid` is the tenant's). */
export function rgwUserArn(uid: string): string {
  const at = uid.indexOf('$');
  return at < 0 ? `arn:aws:iam:::user/${uid}` : `arn:aws:iam::${uid.slice(0, at)}:user/${uid.slice(at + 1)}`;
}

/** datagrant's grant policies on its users (RGW has no groups: a group is a policy on each member). */
export const isRgwGrantPolicy = (name: string) => /^dg-direct-grants(-\d+)?$/.test(name) || name.startsWith('dg-group-');

/**
 * A document as IAM would write it: RGW takes `NotResource` beside an empty `Resource` (datagrant's
 * dg-boundary has that form) and applies the NotResource, where IAM allows only one of the two.
 * Text that is not JSON is kept as it is, for the evaluation to name it unreadable.
 */
function asIam(text: string): string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return text;
  }
  const statements = (doc as { Statement?: unknown }).Statement;
  if (!Array.isArray(statements)) return text;
  for (const st of statements as Record<string, unknown>[]) {
    if (st && st.NotResource !== undefined && Array.isArray(st.Resource) && st.Resource.length === 0) delete st.Resource;
  }
  return JSON.stringify(doc);
}

const ANYONE: AccessHolder = { id: '*', kind: 'aws-anyone', name: 'anyone', managed: false };
const AUTHENTICATED: AccessHolder = { id: 'AuthenticatedUsers', kind: 'rgw-authenticated', name: 'every RGW user', managed: false };

export function effectiveAccess(facts: RgwAccessFacts): { rows: ActualAccess[]; usage: CredentialUsage[]; limits: string[]; failures: string[] } {
  const { backend, datasets } = facts;
  const users = new Map(facts.users.map((u) => [u.uid, u]));
  const byArn = new Map(facts.users.map((u) => [rgwUserArn(u.uid), u]));
  const holderOf = (u: RgwUserFact): AccessHolder => ({
    id: u.uid,
    kind: 'rgw-user',
    name: u.uid,
    managed: u.ours,
    ...(u.principal !== undefined ? { principal: u.principal } : {}),
  });
  const buckets = new Map(facts.buckets.map((b) => [b.bucket, b]));
  const present = datasets.filter((d) => buckets.has(d.bucket));

  const details: AccountDetails = {
    users: facts.users.map((u) => ({
      UserName: u.uid,
      Arn: rgwUserArn(u.uid),
      UserPolicyList: Object.entries(u.policies ?? {}).map(([PolicyName, PolicyDocument]) => ({ PolicyName, PolicyDocument: asIam(PolicyDocument) })),
      GroupList: [],
    })),
    groups: [],
    roles: [],
    policies: [],
  };
  const bucketPolicies = new Map<string, string | null>();
  for (const b of facts.buckets) if (b.policy !== undefined) bucketPolicies.set(b.bucket, b.policy);
  const evaluated = evaluate({
    backend,
    account: '',
    partition: 'aws',
    details,
    owned: { users: new Set(facts.users.filter((u) => u.ours).map((u) => u.uid)), roles: new Set() },
    datasets: present,
    bucketPolicies,
    now: facts.now,
    unseen: RGW_UNSEEN,
    ownInline: isRgwGrantPolicy,
  });

  // Rows by dataset, level and holder, so that what RGW adds joins the evaluated paths.
  const rows = new Map<string, ActualAccess>();
  const put = (dataset: string, level: Level, holder: AccessHolder, paths: AccessPath[]) => {
    const k = JSON.stringify([dataset, level, holder.id]);
    const had = rows.get(k);
    if (had) had.paths.push(...paths);
    else rows.set(k, { backend, dataset, level, holder, paths: [...paths] });
  };
  for (const r of evaluated.rows) {
    const u = r.holder.kind === 'aws-user' ? byArn.get(r.holder.id) : undefined;
    put(r.dataset, r.level, u ? holderOf(u) : r.holder, r.paths);
  }

  const all = (holder: AccessHolder, dataset: string, levels: readonly Level[], path: AccessPath) => {
    for (const l of levels) put(dataset, l, holder, [path]);
  };
  for (const d of present) {
    const b = buckets.get(d.bucket)!;
    const owner = users.get(b.owner);
    if (owner) all(holderOf(owner), d.name, LEVELS, { via: `owner of bucket ${b.bucket} (full control; may rewrite its policy and ACL)` });
    for (const g of b.acl ?? []) {
      if (g.user !== undefined && g.user === b.owner) continue;
      const holder = g.group === 'AllUsers' ? ANYONE : g.group === 'AuthenticatedUsers' ? AUTHENTICATED : users.get(g.user ?? '');
      if (!holder) continue;
      const h = 'uid' in holder ? holderOf(holder) : holder;
      const on = `ACL of bucket ${b.bucket}`;
      if (g.flags & WRITE) all(h, d.name, ['write', 'admin'], { via: `${on}: WRITE (may write and delete its objects)` });
      if (g.flags & WRITE_ACP) all(h, d.name, ['admin'], { via: `${on}: WRITE_ACP (may rewrite the ACL)` });
    }
  }

  for (const u of facts.users) {
    const ways = [
      ...(u.system ? ['system user: may act as any user'] : []),
      ...u.caps.flatMap((c) => {
        const [type, perm] = c.split('=') as [string, string | undefined];
        const what = CAP_ESCALATION[type];
        return what && (perm === '*' || perm === 'write') ? [`caps ${c}: ${what}`] : [];
      }),
    ];
    for (const via of ways) for (const d of present) all(holderOf(u), d.name, ['admin'], { via });
  }

  // Subusers: their user's access, up to their permissions (read; write; readwrite; full-control).
  const withSubusers: ActualAccess[] = [...rows.values()];
  for (const r of [...rows.values()]) {
    const u = r.holder.kind === 'rgw-user' ? users.get(r.holder.id) : undefined;
    for (const s of u?.subusers ?? []) {
      const may =
        s.permissions === 'full-control' ||
        s.permissions === 'readwrite' ||
        (s.permissions === 'read' ? r.level === 'read' : s.permissions === 'write' && r.level !== 'read');
      if (!may) continue;
      withSubusers.push({
        ...r,
        holder: { id: s.id, kind: 'rgw-user', name: s.id, managed: false },
        paths: [
          {
            via: `subuser of ${u!.uid} (permissions ${s.permissions}), with its user's access`,
            ...(r.paths.every((p) => p.partial) ? { partial: true } : {}),
          },
        ],
      });
    }
  }

  const out = withSubusers.map((r) => {
    const u = r.holder.kind === 'rgw-user' ? (users.get(r.holder.id) ?? users.get(r.holder.id.split(':')[0]!)) : undefined;
    const sorted = [...r.paths].sort((a, b) => (a.via < b.via ? -1 : a.via > b.via ? 1 : 0));
    const paths = u?.suspended
      ? sorted.map((p) => ({ ...p, conditions: [...(p.conditions ?? []), 'the user is suspended: its keys are refused until it is enabled'] }))
      : sorted;
    return { ...r, paths };
  });
  const order = (r: ActualAccess) => `${r.dataset}\u0000${LEVELS.indexOf(r.level)}\u0000${r.holder.id}`;
  out.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));

  const limits = [...evaluated.limits];
  const readOnly = facts.buckets.flatMap((b) => (b.acl ?? []).filter((g) => g.flags === READ).map((g) => `${b.bucket} (${g.group ?? g.user})`));
  if (readOnly.length)
    limits.push(
      `bucket ACL grants of READ let their grantees list the keys of a bucket, not read its objects, and are not shown: ${readOnly.sort().join(', ')}`,
    );

  const usage: CredentialUsage[] = facts.users
    .filter((u) => u.ours)
    .flatMap((u) =>
      u.keys.map((k) => ({ backend, holder: u.uid, ...(u.principal !== undefined ? { principal: u.principal } : {}), credential: k, unknown: NO_KEY_RECORD })),
    );
  return { rows: out, usage, limits, failures: evaluated.failures };
}
