// Spec → desired IAM state for one aws backend. Pure.
import { sha256 } from '../../core/canonical.js';
import { CompileError } from '../../core/errors.js';
import type { Notice, Resource } from '../../core/types.js';
import { durationSeconds, expiresInstant, isS3Dataset, type AwsBackendSpec, type Grant, type Spec } from '../../spec/schema.js';
import { S3_LEVELS } from './levels.js';
import { accountObjects, quotaProblems, quotasOf } from './quotas.js';
import { mergeStatements, packStatements, USER_INLINE_POLICIES_MAX_CHARS, type PolicyDocument, type Statement } from '../../model/aws-policy.js';
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
  userResource,
  type Entity,
} from '../../model/aws.js';

export { DEFAULT_IAM_PATH, INSTALLATION_TAG, MANAGED_TAG } from '../../model/aws.js';

export const DEFAULT_ROTATION_GRACE = '24h';

/** IAM limits per user and group that AWS enforces and moto does not (the account's are in quotas.ts). */
export const IAM_QUOTAS = { policiesPerEntity: 10, groupsPerUser: 10 } as const;

export const groupPolicyName = (group: string, part = 1) => `dg-group-${group}${part > 1 ? `-${part}` : ''}`;
/**
 * A principal's direct grants, when they fit IAM's 2,048 characters of inline policy per user: an
 * inline policy of that user, which no account quota counts.
 */
export const DIRECT_GRANTS_POLICY = 'dg-direct-grants';
/**
 * Direct grants too large to be inline: one managed policy per distinct document, named by its
 * hash, attached to every principal with exactly those grants (one policy, not one per principal).
 */
export const sharedPolicyName = (digest: string, part = 1) => `dg-shared-${digest}${part > 1 ? `-${part}` : ''}`;
/** Hex digits of the document's sha256 in a shared policy's name. */
export const SHARED_DIGEST_LENGTH = 12;
/**
 * Each principal's own managed policy, as earlier versions made it: the form the two above take
 * over from, so that an upgrade creates the new form before it deletes this one.
 */
export const userPolicyName = (user: string, part = 1) => `dg-user-${user}${part > 1 ? `-${part}` : ''}`;

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
   * A principal's direct grants: inline when they fit, else attached shared policies. The form
   * depends on the document alone, so adding or removing someone else never moves it. Returns the
   * addresses that give the user its access, for the key to wait on.
   */
  const directGrants = (user: string, grants: Grant[], memberships: string[]): string[] => {
    if (grants.length === 0) return [];
    const statements = mergeStatements(statementsFor(grants));
    const document: PolicyDocument = { Version: '2012-10-17', Statement: statements };
    const text = JSON.stringify(document);
    const legacy = (part: number) => awsAddress.attachment(backendName, 'user', user, userPolicyName(user, part));
    if (text.length <= USER_INLINE_POLICIES_MAX_CHARS) {
      const r = inlinePolicyResource(backendName, DIRECT_GRANTS_POLICY, { entity: 'user', entityName: user, document }, memberships);
      resources.push({ ...r, supersedes: [legacy(1)] });
      return [r.address];
    }
    const digest = sha256(text).slice(0, SHARED_DIGEST_LENGTH);
    let entry = shared.get(digest);
    if (!entry) {
      entry = { text, names: [], first: user };
      shared.set(digest, entry);
      entry.names = policies(`principal ${user}`, statements, (part) => sharedPolicyName(digest, part));
      sharedPolicies += entry.names.length;
    } else if (entry.text !== text) {
      problems.push(
        `principal ${user}: its direct grants and those of principal ${entry.first} differ, yet their documents share the digest ${digest} that names their shared policy; change either's grants`,
      );
      return [];
    }
    if (entry.names.length > IAM_QUOTAS.policiesPerEntity) {
      problems.push(`principal ${user}: needs ${entry.names.length} managed policies; IAM allows ${IAM_QUOTAS.policiesPerEntity} per user`);
    }
    // Packing is deterministic, so an unchanged document was split into the same parts before.
    return entry.names.map((policy, i) => attach('user', user, policy, legacy(i + 1)));
  };

  // Groups that grant something on this backend become IAM groups.
  const iamGroups = new Set<string>();
  const groupAttachments = new Map<string, string[]>();
  for (const [name, group] of Object.entries(spec.groups).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const grants = onBackend(group.grants);
    const everGrants = group.grants.some((g) => spec.datasets[g.dataset]?.backend === backendName);
    if (!everGrants) continue;
    iamGroups.add(name);
    resources.push(groupResource(backendName, name, { path }));
    const names = policies(`group ${name}`, statementsFor(grants), (part) => groupPolicyName(name, part));
    groupPolicies += names.length;
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
    const tags: Record<string, string> = { [MANAGED_TAG]: 'true', 'datagrant:type': p.type };
    if (ctx.installation) tags[INSTALLATION_TAG] = ctx.installation;
    if (p.email) tags['datagrant:email'] = p.email;
    resources.push(userResource(backendName, name, { path, tags }));

    if (groups.length > IAM_QUOTAS.groupsPerUser) {
      problems.push(`principal ${name}: is in ${groups.length} groups on backend ${backendName}; IAM allows ${IAM_QUOTAS.groupsPerUser} per user`);
    }
    const memberships = groups.map((g) => {
      const m = membershipResource(backendName, { group: g, user: name });
      resources.push(m);
      return m.address;
    });
    const own = directGrants(name, direct, memberships);

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

  if (!problems.length) {
    const n = (x: number) => x.toLocaleString('en-US');
    const policies = `${n(groupPolicies)} for groups, ${n(sharedPolicies)} shared by principals whose direct grants are too large for an inline policy`;
    problems.push(...quotaProblems(accountObjects(resources), quotasOf(backend), { policies }));
  }
  if (problems.length) throw new CompileError(problems.map((m) => `backend ${backendName}: ${m}`));
  return { resources, notices };
}
