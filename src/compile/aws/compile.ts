// Spec → desired IAM state for one aws backend. Pure.
import { sha256 } from '../../core/canonical.js';
import { CompileError } from '../../core/errors.js';
import type { Notice, Resource } from '../../core/types.js';
import {
  credentialsOf,
  durationSeconds,
  expiresInstant,
  isS3Dataset,
  maxSessionSeconds,
  type AwsBackendSpec,
  type Grant,
  type Spec,
} from '../../spec/schema.js';
import type { SessionFact } from '../../model/session.js';
import { awsAccessSet, awsSessionRoleName } from '../sessions.js';
import { S3_LEVELS } from '../../model/aws-levels.js';
import { accountObjects, quotaProblems, quotasOf } from './quotas.js';
import {
  mergeStatements,
  packStatements,
  policySize,
  ROLE_INLINE_POLICIES_MAX_CHARS,
  USER_INLINE_POLICIES_MAX_CHARS,
  type PolicyDocument,
  type Statement,
} from '../../model/aws-policy.js';
import {
  attachmentResource,
  awsAddress,
  DEFAULT_IAM_PATH,
  groupResource,
  inlinePolicyResource,
  INSTALLATION_TAG,
  keyResource,
  MANAGED_TAG,
  membershipResource,
  policyResource,
  DATAGRANT_TRUST,
  DIRECT_GRANTS_POLICY,
  groupPolicyName,
  REVOKED_POLICY,
  roleResource,
  SHARED_DIGEST_LENGTH,
  sharedPolicyName,
  userPolicyName,
  userResource,
  type Entity,
} from '../../model/aws.js';

export { DEFAULT_IAM_PATH, INSTALLATION_TAG, MANAGED_TAG } from '../../model/aws.js';

export const DEFAULT_ROTATION_GRACE = '24h';

/** IAM limits per user and group that AWS enforces and moto does not (the account's are in quotas.ts). */
export const IAM_QUOTAS = { policiesPerEntity: 10, groupsPerUser: 10 } as const;

/** IAM's shortest and longest role MaxSessionDuration, in seconds. */
export const ROLE_SESSION_SECONDS = { min: 3600, max: 43200 } as const;

/** Statements for one grant on one S3 dataset. */
export function grantStatements(bucket: string, prefix: string | undefined, grant: Grant): Statement[] {
  const actions = S3_LEVELS[grant.access];
  const bucketArn = `arn:aws:s3:::${bucket}`;
  const condition: Statement['Condition'] = grant.expires
    ? { DateLessThan: { 'aws:CurrentTime': [expiresInstant(grant.expires).toISOString().replace('.000Z', 'Z')] } }
    : undefined;
  const withCond = (extra?: Statement['Condition']): Pick<Statement, 'Condition'> => {
    const c = { ...(condition ?? {}), ...(extra ?? {}) };
    return Object.keys(c).length ? { Condition: c } : {};
  };
  const out: Statement[] = [
    { Effect: 'Allow', Action: [...actions.object], Resource: [`${bucketArn}/${prefix ?? ''}*`], ...withCond() },
    { Effect: 'Allow', Action: [...actions.bucket, ...(prefix ? [] : actions.wholeBucketOnly)], Resource: [bucketArn], ...withCond() },
    {
      Effect: 'Allow',
      Action: [...actions.listing],
      Resource: [bucketArn],
      ...withCond(prefix ? { StringLike: { 's3:prefix': [`${prefix}*`] } } : undefined),
    },
  ];
  return out.filter((s) => s.Action.length > 0);
}

export interface CompileContext {
  now: Date;
  installation?: string;
  /** What the state recorded of issued sessions, for the revocation of those that outlive their access. */
  sessions?: readonly SessionFact[];
  /** Key principals whose grants expired for want of use (src/compile/unused.ts): user kept, key deactivated. */
  idle?: ReadonlySet<string>;
}

/** Grants still in force at `now`; expired ones grant nothing. */
function live(grants: Grant[], now: Date): Grant[] {
  return grants.filter((g) => !g.expires || expiresInstant(g.expires).getTime() > now.getTime());
}

export function compileAws(spec: Spec, backendName: string, ctx: CompileContext): { resources: Resource[]; notices: Notice[] } {
  const backend = spec.backends[backendName] as AwsBackendSpec;
  const path = backend.iamPath ?? DEFAULT_IAM_PATH;
  const problems: string[] = [];
  const notices: Notice[] = [];
  const resources: Resource[] = [];

  const onBackend = (grants: Grant[]) =>
    live(grants, ctx.now).filter((g) => {
      const ds = spec.datasets[g.dataset];
      return ds !== undefined && ds.backend === backendName && isS3Dataset(ds);
    });

  const statementsFor = (grants: Grant[]) =>
    grants.flatMap((g) => {
      const ds = spec.datasets[g.dataset]!;
      if (!isS3Dataset(ds)) return [];
      return grantStatements(ds.bucket, ds.prefix, g);
    });

  const policyOwners = new Map<string, string>();
  const policies = (owner: string, statements: Statement[], nameFor: (part: number) => string): string[] => {
    if (statements.length === 0) return [];
    let docs;
    try {
      docs = packStatements(statements);
    } catch (e) {
      problems.push(`${owner}: ${(e as Error).message}`);
      return [];
    }
    return docs.map((doc, i) => {
      const name = nameFor(i + 1);
      // `dg-group-x-2` is both part 2 of group x and the policy of a group named x-2; IAM policy
      // names ignore case. Two owners of one name would silently share (and fight over) a policy.
      const clash = policyOwners.get(name.toLowerCase());
      if (clash !== undefined) {
        problems.push(`${owner}: needs a policy named ${name}, which ${clash} also needs; rename one of them`);
        return name;
      }
      policyOwners.set(name.toLowerCase(), `${owner}${i > 0 ? ` (part ${i + 1})` : ''}`);
      resources.push(policyResource(backendName, name, { path, document: doc }));
      return name;
    });
  };

  const attach = (entity: Entity, entityName: string, policy: string, supersedes?: string) => {
    const r = attachmentResource(backendName, { entity, entityName, policy });
    resources.push(supersedes ? { ...r, supersedes: [supersedes] } : r);
    return r.address;
  };

  // Managed policies by whom they serve, for the message when there are too many.
  let groupPolicies = 0;
  let sharedPolicies = 0;
  // Shared policies by the digest of the document they hold: the digest names the policy, so two
  // documents with one digest would silently share it.
  const shared = new Map<string, { text: string; names: string[]; first: string }>();
  /**
   * Direct grants of a user (a key principal) or an access-set role: inline when they fit a user's
   * inline budget, else attached shared policies. The form depends on the document alone, so adding
   * or removing someone else never moves it. Returns the addresses that give the entity its access,
   * for the key to wait on, and the inline document's size (a role's revocations share its budget).
   */
  const directGrants = (entity: 'user' | 'role', owner: string, grants: Grant[], deps: string[]): { addresses: string[]; inlineChars: number } => {
    if (grants.length === 0) return { addresses: [], inlineChars: 0 };
    const who = entity === 'user' ? `principal ${owner}` : `access-set role ${owner}`;
    const statements = mergeStatements(statementsFor(grants));
    const document: PolicyDocument = { Version: '2012-10-17', Statement: statements };
    const text = JSON.stringify(document);
    const legacy = (part: number) => awsAddress.attachment(backendName, 'user', owner, userPolicyName(owner, part));
    const supersedes = (part: number) => (entity === 'user' ? legacy(part) : undefined);
    if (text.length <= USER_INLINE_POLICIES_MAX_CHARS) {
      const r = inlinePolicyResource(backendName, DIRECT_GRANTS_POLICY, { entity, entityName: owner, document }, deps);
      resources.push(entity === 'user' ? { ...r, supersedes: [legacy(1)] } : r);
      return { addresses: [r.address], inlineChars: text.length };
    }
    const digest = sha256(text).slice(0, SHARED_DIGEST_LENGTH);
    let entry = shared.get(digest);
    if (!entry) {
      entry = { text, names: [], first: who };
      shared.set(digest, entry);
      entry.names = policies(who, statements, (part) => sharedPolicyName(digest, part));
      sharedPolicies += entry.names.length;
    } else if (entry.text !== text) {
      problems.push(
        `${who}: its direct grants and those of ${entry.first} differ, yet their documents share the digest ${digest} that names their shared policy; change either's grants`,
      );
      return { addresses: [], inlineChars: 0 };
    }
    if (entity === 'user' && entry.names.length > IAM_QUOTAS.policiesPerEntity) {
      problems.push(`${who}: needs ${entry.names.length} managed policies; IAM allows ${IAM_QUOTAS.policiesPerEntity} per user`);
    }
    // Packing is deterministic, so an unchanged document was split into the same parts before.
    return { addresses: entry.names.map((policy, i) => attach(entity, owner, policy, supersedes(i + 1))), inlineChars: 0 };
  };

  // Groups that grant something on this backend become IAM groups.
  const iamGroups = new Set<string>();
  const groupAttachments = new Map<string, string[]>();
  const groupPolicyNames = new Map<string, string[]>();
  for (const [name, group] of Object.entries(spec.groups).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const grants = onBackend(group.grants);
    const everGrants = group.grants.some((g) => spec.datasets[g.dataset]?.backend === backendName);
    if (!everGrants) continue;
    iamGroups.add(name);
    resources.push(groupResource(backendName, name, { path }));
    const names = policies(`group ${name}`, statementsFor(grants), (part) => groupPolicyName(name, part));
    groupPolicies += names.length;
    groupPolicyNames.set(name, names);
    groupAttachments.set(
      name,
      names.map((p) => awsAddress.attachment(backendName, 'group', name, p)),
    );
    if (names.length > IAM_QUOTAS.policiesPerEntity) {
      problems.push(`group ${name}: needs ${names.length} managed policies; IAM allows ${IAM_QUOTAS.policiesPerEntity} per group`);
    }
    for (const p of names) attach('group', name, p);
  }

  const rotateDefault = spec.settings?.rotate;
  const graceSeconds = durationSeconds(spec.settings?.rotationGrace ?? DEFAULT_ROTATION_GRACE);

  /** Access-set roles by name: the set, its temporary principals, and their direct grants. */
  const roles = new Map<string, { groups: string[]; direct: Grant[]; set: string; principals: string[]; maxSeconds: number }>();

  for (const [name, p] of Object.entries(spec.principals).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const groups = p.groups.filter((g) => iamGroups.has(g)).sort();
    const direct = onBackend(p.grants);
    const everDirect = p.grants.some((g) => spec.datasets[g.dataset]?.backend === backendName);
    const groupGrants = groups.some((g) => onBackend(spec.groups[g]!.grants).length > 0);
    if (!everDirect && groups.length === 0) continue;
    if (direct.length === 0 && !groupGrants) {
      // Every grant on this backend has expired: the user and its key are removed.
      continue;
    }
    if (credentialsOf(spec, p) === 'temporary') {
      // No user, no key: its sessions run as the role of its access set, named exactly as the
      // broker's sessionTarget names it.
      const set = awsAccessSet(spec, backendName, name, ctx.now);
      const role = awsSessionRoleName(set);
      const entry = roles.get(role) ?? { groups: set.groups, direct, set: JSON.stringify(set), principals: [], maxSeconds: ROLE_SESSION_SECONDS.min };
      // The name is a digest of the access set: two different sets with one digest would share a
      // role, and one of them would get the other's access.
      if (entry.set !== JSON.stringify(set)) {
        problems.push(`principal ${name}: its access differs from principal ${entry.principals[0]}'s, yet both name the role ${role}; change either's grants`);
        continue;
      }
      entry.principals.push(name);
      entry.maxSeconds = Math.min(ROLE_SESSION_SECONDS.max, Math.max(entry.maxSeconds, maxSessionSeconds(spec, p)));
      roles.set(role, entry);
      continue;
    }
    const tags: Record<string, string> = { [MANAGED_TAG]: 'true', 'datagrant:type': p.type };
    if (ctx.installation) tags[INSTALLATION_TAG] = ctx.installation;
    if (p.email) tags['datagrant:email'] = p.email;
    resources.push(userResource(backendName, name, { path, tags }));

    if (ctx.idle?.has(name)) {
      // Unused past settings.expireUnused: no grants, and the key kept but deactivated (not
      // rotated), so nobody can bring the access back by using it; see compile/unused.ts.
      resources.push(keyResource(backendName, { user: name, status: 'Inactive' }, { deps: [], lifecycle: { graceSeconds } }));
      continue;
    }

    if (groups.length > IAM_QUOTAS.groupsPerUser) {
      problems.push(`principal ${name}: is in ${groups.length} groups on backend ${backendName}; IAM allows ${IAM_QUOTAS.groupsPerUser} per user`);
    }
    const memberships = groups.map((g) => {
      const m = membershipResource(backendName, { group: g, user: name });
      resources.push(m);
      return m.address;
    });
    const own = directGrants('user', name, direct, memberships).addresses;

    const rotate = p.rotate ?? rotateDefault;
    // The key is issued last, so that it works the moment it is handed out: after the user's
    // own attachments and after the policies of its groups are attached to those groups.
    resources.push(
      keyResource(
        backendName,
        { user: name, status: 'Active' },
        {
          deps: [...memberships, ...groups.flatMap((g) => groupAttachments.get(g) ?? []), ...own],
          lifecycle: { ...(rotate ? { rotateAfterSeconds: durationSeconds(rotate) } : {}), graceSeconds },
        },
      ),
    );
  }

  const revoked = revocations(backendName, roles, ctx);
  for (const [role, set] of roles) {
    const tags: Record<string, string> = { [MANAGED_TAG]: 'true' };
    if (ctx.installation) tags[INSTALLATION_TAG] = ctx.installation;
    resources.push(
      roleResource(backendName, role, {
        path,
        tags,
        description: roleDescription(set.groups, set.direct.length ? statementsFor(set.direct) : []),
        maxSessionDuration: set.maxSeconds,
        trust: DATAGRANT_TRUST,
      }),
    );
    const managed = set.groups.flatMap((g) => groupPolicyNames.get(g) ?? []);
    for (const policy of managed) attach('role', role, policy);
    const { addresses, inlineChars } = directGrants('role', role, set.direct, []);
    const sharedParts = addresses.length && !inlineChars ? addresses.length : 0;
    if (managed.length + sharedParts > IAM_QUOTAS.policiesPerEntity) {
      problems.push(
        `access-set role ${role} (principals ${set.principals.join(', ')}): needs ${managed.length + sharedParts} managed policies (those of groups ${set.groups.join(', ') || 'none'}${sharedParts ? ` and ${sharedParts} for direct grants` : ''}); IAM allows ${IAM_QUOTAS.policiesPerEntity} per role: grant through fewer groups`,
      );
    }
    const denied = revoked.get(role);
    if (denied) {
      const doc = revokedDocument(denied, ROLE_INLINE_POLICIES_MAX_CHARS - inlineChars);
      if (doc.collapsed) {
        notices.push({
          level: 'warning',
          message: `backend ${backendName}: role ${role}: the sessions of ${denied.length} principals no longer in its access set do not fit one deny each in its inline policies; every session of the role issued at or before ${doc.collapsed} is denied, and its remaining principals need a new session`,
        });
      }
      resources.push(inlinePolicyResource(backendName, REVOKED_POLICY, { entity: 'role', entityName: role, document: doc.document }));
    }
  }

  if (!problems.length) {
    const n = (x: number) => x.toLocaleString('en-US');
    const policies = `${n(groupPolicies)} for groups, ${n(sharedPolicies)} shared by principals whose direct grants are too large for an inline policy`;
    problems.push(...quotaProblems(accountObjects(resources), quotasOf(backend), { policies }));
  }
  if (problems.length) throw new CompileError(problems.map((m) => `backend ${backendName}: ${m}`));
  return { resources, notices };
}

/**
 * What a role's description says of its access set: the groups and a digest of the direct grants,
 * never a principal's name or email (roles are listed to anyone who may read IAM).
 */
function roleDescription(groups: string[], direct: Statement[]): string {
  const grants = direct.length ? `direct grants ${sha256(JSON.stringify(mergeStatements(direct))).slice(0, SHARED_DIGEST_LENGTH)}` : 'no direct grants';
  const text = `datagrant access set: ${groups.length ? `groups ${groups.join(',')}` : 'no groups'} + ${grants}`;
  // IAM allows 1,000 characters of Latin-1; group names are spec keys.
  return text.replace(/[^\t\n\r\x20-\x7e\xa1-\xff]/g, '?').slice(0, 1000);
}

/** Per role still desired: who to deny, with the instant of their latest session there. */
function revocations(
  backend: string,
  roles: ReadonlyMap<string, { principals: string[] }>,
  ctx: CompileContext,
): Map<string, { principal: string; issuedAt: string }[]> {
  const out = new Map<string, { principal: string; issuedAt: string }[]>();
  for (const s of ctx.sessions ?? []) {
    if (s.backend !== backend || Date.parse(s.expiresAt) <= ctx.now.getTime()) continue;
    const role = roles.get(s.target);
    // A role no longer desired is deleted, which ends every session of it.
    if (!role || role.principals.includes(s.principal)) continue;
    const list = out.get(s.target) ?? [];
    const same = list.find((x) => x.principal === s.principal);
    if (same) same.issuedAt = Date.parse(s.lastIssuedAt) > Date.parse(same.issuedAt) ? s.lastIssuedAt : same.issuedAt;
    else list.push({ principal: s.principal, issuedAt: s.lastIssuedAt });
    out.set(s.target, list);
  }
  for (const list of out.values()) list.sort((a, b) => (a.principal < b.principal ? -1 : a.principal > b.principal ? 1 : 0));
  return out;
}

/** IAM's date form: whole seconds, rounded up so that the session issued within that second is covered. */
const issuedBy = (iso: string) => new Date(Math.ceil(Date.parse(iso) / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/**
 * What the host's clock may lag AWS's without anything else failing (SigV4 tolerates 5 minutes):
 * a bound on issue times taken from datagrant's clock is moved this far forward.
 */
const CLOCK_MARGIN_MS = 5 * 60_000;

/**
 * The deny of revoked sessions. A principal that has left the role's access set may hold no
 * session of the role at all, so its sessions are denied by `aws:SourceIdentity` alone, whenever
 * issued: no bound taken from datagrant's clock (which may lag AWS's) or from a session log read
 * while another session was being issued can let its newest one through. All of them in one
 * statement (the values of one key are ORed). When even that does not fit the role's inline
 * budget, one statement denies every session of the role issued up to the latest recorded issue,
 * plus the clock margin (`collapsed` says until when): the others get new sessions after it.
 */
export function revokedDocument(
  denied: readonly { principal: string; issuedAt: string }[],
  maxChars: number,
): { document: PolicyDocument; collapsed?: string } {
  const deny = (condition: Statement['Condition']): Statement => ({ Effect: 'Deny', Action: ['*'], Resource: ['*'], Condition: condition });
  const each: PolicyDocument = {
    Version: '2012-10-17',
    Statement: [deny({ StringEquals: { 'aws:SourceIdentity': [...new Set(denied.map((d) => d.principal))].sort() } })],
  };
  if (policySize(each) <= maxChars) return { document: each };
  const latest = issuedBy(new Date(Math.max(...denied.map((d) => Date.parse(d.issuedAt))) + CLOCK_MARGIN_MS).toISOString());
  return { document: { Version: '2012-10-17', Statement: [deny({ DateLessThanEquals: { 'aws:TokenIssueTime': [latest] } })] }, collapsed: latest };
}
