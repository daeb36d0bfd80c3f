// What IAM holds → datagrant's resources. Pure: the driver passes in what it read
// (GetAccountAuthorizationDetails, access keys) and gets back the actual state inside the
// ownership boundary, with addresses, attrs and deps exactly as src/compile/aws/compile.ts makes
// them, so that a second plan after apply is empty.
import type { KnownCredential } from '../backend.js';
import {
  attachmentResource,
  awsAddress,
  groupResource,
  inlinePolicyResource,
  INSTALLATION_TAG,
  keyResource,
  membershipResource,
  policyResource,
  DATAGRANT_TRUST,
  roleResource,
  userResource,
  type AwsResource,
  type Entity,
  type KeyStatus,
} from '../../model/aws.js';
import { normalizePolicy } from '../../model/aws-policy.js';
import type { ForeignObject, Json } from '../../core/types.js';
import { canonicalJson } from '../../core/canonical.js';

export interface AttachedPolicy {
  PolicyName?: string;
  PolicyArn?: string;
}
export interface InlinePolicy {
  PolicyName?: string;
  PolicyDocument?: string;
}
/** The managed policy that bounds what a user's or role's identity policies may allow. */
export interface PermissionsBoundary {
  PermissionsBoundaryArn?: string;
}
export interface UserDetail {
  UserName?: string;
  Path?: string;
  Arn?: string;
  GroupList?: string[];
  AttachedManagedPolicies?: AttachedPolicy[];
  UserPolicyList?: InlinePolicy[];
  Tags?: { Key?: string; Value?: string }[];
  PermissionsBoundary?: PermissionsBoundary;
}
export interface GroupDetail {
  GroupName?: string;
  Path?: string;
  Arn?: string;
  AttachedManagedPolicies?: AttachedPolicy[];
  GroupPolicyList?: InlinePolicy[];
}
/**
 * GetAccountAuthorizationDetails' RoleDetail, with what only ListRoles tells (Description,
 * MaxSessionDuration), joined by the reader.
 */
export interface RoleDetail {
  RoleName?: string;
  Path?: string;
  Arn?: string;
  AssumeRolePolicyDocument?: string;
  Description?: string;
  MaxSessionDuration?: number;
  AttachedManagedPolicies?: AttachedPolicy[];
  RolePolicyList?: InlinePolicy[];
  Tags?: { Key?: string; Value?: string }[];
  PermissionsBoundary?: PermissionsBoundary;
}
export interface PolicyDetail {
  PolicyName?: string;
  Description?: string;
  Arn?: string;
  Path?: string;
  DefaultVersionId?: string;
  PolicyVersionList?: { Document?: string; VersionId?: string; IsDefaultVersion?: boolean }[];
}
export interface AccountDetails {
  users: UserDetail[];
  groups: GroupDetail[];
  /** Absent where a caller read no roles. */
  roles?: RoleDetail[];
  policies: PolicyDetail[];
}

export interface AccessKeyFact {
  accessKeyId: string;
  status: KeyStatus;
  createdAt: string;
  /** From the credential report: the key's last use (ISO), null if never; absent when not read. */
  lastUsedAt?: string | null;
}

/**
 * `/datagrant/` owns objects at exactly `/datagrant/`: a nested path (`/datagrant/team-b/`) is
 * another boundary, perhaps another installation's, and never datagrant's to change.
 */
export const isUnder = (path: string | undefined, iamPath: string) => (path ?? '/') === iamPath;

/** The description datagrant gives the managed policies it creates (IAM cannot tag them in bulk reads). */
export const policyDescription = (installation: string) => `datagrant installation ${installation}`;
const installationOfPolicy = (description: string | undefined) => /^datagrant installation (\S+)$/.exec(description ?? '')?.[1];

/** The name in a policy ARN: `arn:aws:iam::123:policy/datagrant/dg-x` → `dg-x` (moto omits PolicyName). */
export const policyNameOf = (arn: string) => arn.slice(arn.lastIndexOf('/') + 1);

/**
 * Policy documents arrive URL-encoded from AWS and plain from moto: try the text as it is, then
 * decoded. Something that is not JSON at all is kept verbatim so it differs and shows as drift.
 */
export function parsePolicyDocument(raw: string | undefined): Json {
  if (raw === undefined) return null;
  let decoded = raw;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    // not URL-encoded (a stray %): the raw text is all there is
  }
  for (const text of [raw, decoded]) {
    try {
      return normalizePolicy(JSON.parse(text));
    } catch {
      // try the next form
    }
  }
  return raw;
}

export interface MapInput {
  backend: string;
  iamPath: string;
  details: AccountDetails;
  /** Access keys per owned user name. */
  keys: Map<string, AccessKeyFact[]>;
  credentials: KnownCredential[];
  /** This state's installation id: objects carrying another one are reported as foreign, never as resources. */
  installation?: string;
  /** The trust policy datagrant renders for its roles (trust.ts): a role's that says the same reads as `'datagrant'`. */
  trust?: Json;
}

export interface MappedState {
  resources: AwsResource[];
  /** Objects inside the boundary that carry another installation's id. */
  foreign: ForeignObject[];
}

export function resourcesFromDetails(input: MapInput): MappedState {
  const { backend, iamPath, details, installation } = input;
  const out: AwsResource[] = [];
  const foreign: ForeignObject[] = [];
  const otherInstallation = (id: string | undefined) => installation !== undefined && id !== undefined && id !== installation;

  const foreignUsers = new Set<string>();
  for (const u of details.users) {
    if (!u.UserName || !isUnder(u.Path, iamPath)) continue;
    const id = u.Tags?.find((t) => t.Key === INSTALLATION_TAG)?.Value;
    if (otherInstallation(id)) {
      foreignUsers.add(u.UserName);
      foreign.push({ address: awsAddress.user(backend, u.UserName), installation: id! });
    }
  }
  const foreignGroups = new Set<string>();
  for (const u of details.users) {
    if (!u.UserName || !foreignUsers.has(u.UserName)) continue;
    for (const g of u.GroupList ?? []) foreignGroups.add(g);
  }

  const ownedPolicyByArn = new Map<string, string>();
  for (const p of details.policies) {
    if (!p.Arn || !isUnder(p.Path, iamPath)) continue;
    const name = p.PolicyName ?? policyNameOf(p.Arn);
    const id = installationOfPolicy(p.Description);
    if (otherInstallation(id)) {
      foreign.push({ address: awsAddress.policy(backend, name), installation: id! });
      continue;
    }
    ownedPolicyByArn.set(p.Arn, name);
    const versions = p.PolicyVersionList ?? [];
    const def = versions.find((v) => v.IsDefaultVersion) ?? versions.find((v) => v.VersionId === p.DefaultVersionId);
    out.push(policyResource(backend, name, { path: p.Path ?? '/', document: parsePolicyDocument(def?.Document) }, { arn: p.Arn, versions: versions.length }));
  }

  const inline = (entity: Entity, entityName: string, list: InlinePolicy[] | undefined, deps: string[]): string[] =>
    (list ?? [])
      .filter((p) => p.PolicyName)
      .map((p) => {
        const r = inlinePolicyResource(backend, p.PolicyName!, { entity, entityName, document: parsePolicyDocument(p.PolicyDocument) }, deps);
        out.push(r);
        return r.address;
      });

  /** Managed policies attached to an owned entity; foreign ones are addressed by their ARN. */
  const attachments = (entity: Entity, entityName: string, list: AttachedPolicy[] | undefined, deps: string[]): string[] =>
    (list ?? [])
      .filter((p) => p.PolicyArn)
      .map((p) => {
        const r = attachmentResource(backend, { entity, entityName, policy: ownedPolicyByArn.get(p.PolicyArn!) ?? p.PolicyArn! }, deps);
        out.push(r);
        return r.address;
      });

  for (const g of details.groups) {
    if (!g.GroupName || !isUnder(g.Path, iamPath)) continue;
    if (foreignGroups.has(g.GroupName)) {
      const by = details.users.find((u) => u.UserName && foreignUsers.has(u.UserName) && u.GroupList?.includes(g.GroupName!));
      foreign.push({ address: awsAddress.group(backend, g.GroupName), installation: by?.Tags?.find((t) => t.Key === INSTALLATION_TAG)?.Value ?? '?' });
      continue;
    }
    out.push(groupResource(backend, g.GroupName, { path: g.Path ?? '/' }, g.Arn ? { arn: g.Arn } : undefined));
    const inl = inline('group', g.GroupName, g.GroupPolicyList, []);
    attachments('group', g.GroupName, g.AttachedManagedPolicies, inl);
  }

  const datagrantTrust = input.trust === undefined ? undefined : canonicalJson(normalizePolicy(input.trust));
  for (const r of details.roles ?? []) {
    if (!r.RoleName || !isUnder(r.Path, iamPath)) continue;
    const tags: Record<string, string> = {};
    for (const t of r.Tags ?? []) if (t.Key !== undefined) tags[t.Key] = t.Value ?? '';
    if (otherInstallation(tags[INSTALLATION_TAG])) {
      foreign.push({ address: awsAddress.role(backend, r.RoleName), installation: tags[INSTALLATION_TAG]! });
      continue;
    }
    const trust = parsePolicyDocument(r.AssumeRolePolicyDocument);
    out.push(
      roleResource(
        backend,
        r.RoleName,
        {
          path: r.Path ?? '/',
          tags,
          description: r.Description ?? '',
          maxSessionDuration: Number(r.MaxSessionDuration ?? 3600),
          trust: datagrantTrust !== undefined && canonicalJson(trust) === datagrantTrust ? DATAGRANT_TRUST : trust,
        },
        r.Arn ? { arn: r.Arn } : undefined,
      ),
    );
    // Teardown order: inline policies and attachments before the role.
    inline('role', r.RoleName, r.RolePolicyList, []);
    attachments('role', r.RoleName, r.AttachedManagedPolicies, []);
  }

  const known = new Map<string, KnownCredential>();
  for (const c of input.credentials) known.set(c.credentialId, c);

  const ownedGroups = new Set(out.filter((r) => r.kind === 'group').map((r) => r.name));
  for (const u of details.users) {
    if (!u.UserName) continue;
    if (!isUnder(u.Path, iamPath) || foreignUsers.has(u.UserName)) {
      // Someone else's user in one of datagrant's groups holds that group's grants: the membership
      // is drift, to report and remove (the user itself is never touched).
      if (foreignUsers.has(u.UserName)) continue;
      for (const group of u.GroupList ?? []) {
        if (!ownedGroups.has(group)) continue;
        out.push(membershipResource(backend, { group, user: u.UserName }, { foreignUser: true }));
      }
      continue;
    }
    const user = u.UserName;
    const tags: Record<string, string> = {};
    for (const t of u.Tags ?? []) if (t.Key !== undefined) tags[t.Key] = t.Value ?? '';
    out.push(userResource(backend, user, { path: u.Path ?? '/', tags }, u.Arn ? { arn: u.Arn } : undefined));
    // Teardown order, expressed as deps (a delete waits for the deletes of its dependents):
    // keys → detach managed policies → inline policies → group memberships → user.
    const memberships = [...(u.GroupList ?? [])].sort().map((group) => {
      const r = membershipResource(backend, { group, user });
      out.push(r);
      return r.address;
    });
    const inl = inline('user', user, u.UserPolicyList, memberships);
    const att = attachments('user', user, u.AttachedManagedPolicies, [...inl, ...memberships]);

    const slot = awsAddress.key(backend, user);
    for (const k of input.keys.get(user) ?? []) {
      const cred = known.get(k.accessKeyId);
      const mine = cred !== undefined && cred.address === slot;
      const current = mine && cred.state === 'current';
      out.push(
        keyResource(
          backend,
          { user, status: k.status },
          {
            deps: [...memberships, ...att, ...inl],
            ...(current ? {} : { accessKeyId: k.accessKeyId }),
            meta: { accessKeyId: k.accessKeyId, createdAt: k.createdAt },
            ...(mine && cred.state === 'retiring' && cred.retireAt ? { lifecycle: { retireAt: cred.retireAt } } : {}),
          },
        ),
      );
    }
  }
  return { resources: out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0)), foreign };
}

// ---------------------------------------------------------------- credential report

export interface ReportKey {
  active: boolean;
  /** Creation instant in whole seconds since the epoch. */
  createdSec: number;
  /** `access_key_N_last_used_date`: ISO; null for N/A (never used); absent when the column is not there. */
  lastUsedAt?: string | null;
}

/** One CSV line; fields may be quoted ("a,b" and "" for a quote). */
function csvCells(line: string): string[] {
  const cells: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      cells.push(cur);
      cur = '';
    } else cur += ch;
  }
  cells.push(cur);
  return cells;
}

/** The credential report's lines, each a map from column name to cell. */
export function credentialReportRows(csv: string): Map<string, string>[] {
  const lines = csv.split(/\r?\n/).filter((l) => l.length > 0);
  const header = csvCells(lines.shift() ?? '');
  const out: Map<string, string>[] = [];
  for (const line of lines) {
    let cells = csvCells(line);
    // IAM user names may contain commas; unquoted, such a name splits both the user and the arn
    // column by the same count, so the surplus tells how many cells to join back.
    const surplus = cells.length - header.length;
    if (surplus > 0 && surplus % 2 === 0) {
      const k = surplus / 2;
      cells = [cells.slice(0, k + 1).join(','), cells.slice(k + 1, 2 * k + 2).join(','), ...cells.slice(2 * k + 2)];
    } else if (surplus !== 0) continue; // unreadable: left out (the reader lists that user's keys one by one)
    out.push(new Map(header.map((h, i) => [h, cells[i] ?? ''])));
  }
  return out;
}

/** Per user: the keys the IAM credential report lists (it has no key ids). */
export function parseCredentialReport(csv: string): Map<string, ReportKey[]> {
  const out = new Map<string, ReportKey[]>();
  for (const row of credentialReportRows(csv)) {
    const user = row.get('user');
    if (!user) continue;
    const keys: ReportKey[] = [];
    for (const n of [1, 2]) {
      const t = Date.parse(row.get(`access_key_${n}_last_rotated`) ?? '');
      if (Number.isNaN(t)) continue;
      const used = row.get(`access_key_${n}_last_used_date`);
      const usedAt = used === undefined ? undefined : Date.parse(used);
      keys.push({
        active: row.get(`access_key_${n}_active`) === 'true',
        createdSec: Math.floor(t / 1000),
        // N/A: never used. Anything else unreadable is unknown, never taken for "never used".
        ...(used === undefined
          ? {}
          : used === 'N/A'
            ? { lastUsedAt: null }
            : usedAt !== undefined && !Number.isNaN(usedAt)
              ? { lastUsedAt: new Date(usedAt).toISOString() }
              : {}),
      });
    }
    out.set(user, keys);
  }
  return out;
}

/**
 * Whether the report's keys are the expected ones: same count, same status, creation times within
 * a second. The slack is for SDKs that round a sub-second CreateDate (x.9995 s) up to the next
 * second while the report truncates it.
 */
function sameKeys(reported: ReportKey[], expected: ReportKey[]): boolean {
  if (reported.length !== expected.length) return false;
  const order = (a: ReportKey, b: ReportKey) => a.createdSec - b.createdSec;
  const r = [...reported].sort(order);
  const e = [...expected].sort(order);
  return r.every((k, i) => k.active === e[i]!.active && Math.abs(k.createdSec - e[i]!.createdSec) <= 1);
}

/**
 * The keys of `user` as the store knows them, if the report agrees with the store exactly
 * (count, all active, creation times to the second); undefined when only ListAccessKeys can tell.
 */
export function keysFromStore(user: string, slot: string, report: Map<string, ReportKey[]>, credentials: KnownCredential[]): AccessKeyFact[] | undefined {
  const reported = report.get(user);
  if (!reported) return undefined;
  const stored = credentials.filter((c) => c.address === slot);
  const expected = stored.map((c) => ({ active: true, createdSec: Math.floor(Date.parse(c.createdAt) / 1000) }));
  if (!sameKeys(reported, expected)) return undefined;
  return stored.map((c) => {
    // The report has no key ids: a key is the reported one created in the same second.
    const sec = Math.floor(Date.parse(c.createdAt) / 1000);
    const used = reported.find((k) => Math.abs(k.createdSec - sec) <= 1)?.lastUsedAt;
    return { accessKeyId: c.credentialId, status: 'Active' as const, createdAt: c.createdAt, ...(used !== undefined ? { lastUsedAt: used } : {}) };
  });
}
