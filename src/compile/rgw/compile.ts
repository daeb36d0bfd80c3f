// Spec → desired Ceph RGW state for one rgw backend. Pure.
//
// RGW (16.2) has no IAM groups and no managed policies: every principal is a user holding its
// grants as inline policies, one per group it is in (`dg-group-<group>`, so the plan says where
// each statement comes from) and one for its direct grants (`dg-direct-grants`). A policy larger
// than RGW_POLICY_MAX_CHARS is split into parts (`-2`, `-3`, …). Statements and levels are those
// of the aws backend: RGW evaluates the same S3 actions, resources and conditions, so expiry is
// enforced by the gateway itself (aws:CurrentTime) as well as by removal at the next apply.
import { CompileError } from '../../core/errors.js';
import type { Json, Notice, Resource } from '../../core/types.js';
import { normalizePolicy, packStatements, type PolicyDocument, type Statement } from '../../model/aws-policy.js';
import {
  DEFAULT_USER_PREFIX,
  inlinePolicyResource,
  keyResource,
  NO_BUCKETS,
  RGW_POLICY_MAX_CHARS,
  RGW_POLICY_NAME_RE,
  rgwMarker,
  userResource,
} from '../../model/rgw.js';
import { s3PrefixProblem } from '../../spec/limits.js';
import { credentialsOf, durationSeconds, expiresInstant, isS3Dataset, type Grant, type RgwBackendSpec, type Spec } from '../../spec/schema.js';
import { DIRECT_GRANTS_POLICY } from '../../model/aws.js';
import { DEFAULT_ROTATION_GRACE, grantStatements } from '../aws/compile.js';

export { DIRECT_GRANTS_POLICY };

/**
 * The policy that gives a principal the grants of `group`. RGW refuses `_` and `+` in a policy
 * name, and no spec name holds a `:`, which RGW allows: each becomes `:`. Two groups whose names
 * differ only there would need one name; the compiler refuses that.
 */
export const rgwGroupPolicyName = (group: string, part = 1) => `dg-group-${group.replace(/[_+]/g, ':')}${part > 1 ? `-${part}` : ''}`;
export const rgwDirectPolicyName = (part = 1) => `${DIRECT_GRANTS_POLICY}${part > 1 ? `-${part}` : ''}`;

export interface CompileContext {
  now: Date;
  installation?: string;
}

const live = (grants: Grant[], now: Date) => grants.filter((g) => !g.expires || expiresInstant(g.expires).getTime() > now.getTime());

/**
 * Every user's own boundary. RGW falls back to an object's ACL when no policy statement matches,
 * and the uploader owns what it uploads: without this, a user kept what it had written to a
 * dataset after its grant there ended (expired, or taken away while other grants kept the user),
 * could make it public with an ACL, and a later user of the same uid inherited it. So: no ACL or
 * bucket-policy changes at all; nothing outside the datasets the user is granted now; and for a
 * grant that ends by itself, nothing on its data from that instant (the gateway enforces it before
 * the next apply), unless another grant of the user reaches the same bucket, whose access a
 * time-bound deny would cut too.
 */
export const RGW_BOUNDARY_POLICY = 'dg-boundary';

export function compileRgw(spec: Spec, backendName: string, ctx: CompileContext): { resources: Resource[]; notices: Notice[] } {
  const backend = spec.backends[backendName] as RgwBackendSpec;
  const prefix = backend.userPrefix ?? DEFAULT_USER_PREFIX;
  const problems: string[] = [];
  const resources: Resource[] = [];

  const onBackend = (grants: Grant[]) => grants.filter((g) => spec.datasets[g.dataset]?.backend === backendName);
  const statementsFor = (grants: Grant[]): Statement[] =>
    live(grants, ctx.now).flatMap((g) => {
      const ds = spec.datasets[g.dataset];
      if (!ds || ds.backend !== backendName || !isS3Dataset(ds)) return [];
      return grantStatements(ds.bucket, ds.prefix, g);
    });

  // Validation refuses these with their position; this holds for a spec built another way. A
  // prefix RGW would read differently (it URL-decodes policies twice) would grant other objects.
  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (ds.backend !== backendName) continue;
    if (!isS3Dataset(ds)) problems.push(`dataset ${name}: an rgw backend holds buckets, not databases`);
    else if (ds.prefix !== undefined && s3PrefixProblem(ds.prefix))
      problems.push(`dataset ${name}: prefix ${JSON.stringify(ds.prefix)} ${s3PrefixProblem(ds.prefix)}`);
  }

  // Each group's policies, the same for every member. Two groups (or one group's part and another
  // group) needing one name would hand each member one of them only.
  const owners = new Map<string, string>();
  const groupPolicies = new Map<string, { name: string; document: PolicyDocument }[]>();
  const documents = (owner: string, statements: Statement[], nameFor: (part: number) => string, shared: boolean) => {
    if (statements.length === 0) return [];
    let docs;
    try {
      docs = packStatements(statements, RGW_POLICY_MAX_CHARS);
    } catch (e) {
      problems.push(`${owner}: ${(e as Error).message.replace('a managed policy', 'an RGW user policy')}`);
      return [];
    }
    return docs.map((doc, i) => {
      const name = nameFor(i + 1);
      const clash = shared ? owners.get(name) : undefined;
      if (clash !== undefined) problems.push(`${owner}: needs a user policy named ${name}, which ${clash} also needs; rename one of them`);
      if (shared) owners.set(name, `${owner}${i > 0 ? ` (part ${i + 1})` : ''}`);
      if (!RGW_POLICY_NAME_RE.test(name)) problems.push(`${owner}: its user policy would be named ${name}, longer than the 128 characters RGW allows`);
      return { name, document: doc };
    });
  };
  for (const [name, group] of Object.entries(spec.groups).sort(([a], [b]) => (a < b ? -1 : 1))) {
    groupPolicies.set(
      name,
      documents(`group ${name}`, statementsFor(group.grants), (part) => rgwGroupPolicyName(name, part), true),
    );
  }

  const arnsOf = (g: Grant): string[] => {
    const ds = spec.datasets[g.dataset];
    if (!ds || ds.backend !== backendName || !isS3Dataset(ds)) return [];
    return [`arn:aws:s3:::${ds.bucket}`, `arn:aws:s3:::${ds.bucket}/${ds.prefix ?? ''}*`];
  };
  const bucketOf = (g: Grant) => arnsOf(g)[0];
  const boundaryDocument = (grants: Grant[]): Json => {
    const current = live(onBackend(grants), ctx.now);
    const statements: Json[] = [
      {
        Effect: 'Deny',
        Action: ['s3:DeleteBucketPolicy', 's3:PutBucketAcl', 's3:PutBucketPolicy', 's3:PutObjectAcl', 's3:PutObjectVersionAcl'],
        Resource: ['*'],
      },
      // RGW takes NotResource beside an empty Resource: the form the reader's normalising yields.
      { Effect: 'Deny', Action: ['s3:*'], Resource: [], NotResource: [...new Set(current.flatMap(arnsOf))].sort() },
    ];
    for (const g of current) {
      if (!g.expires) continue;
      const end = expiresInstant(g.expires).getTime();
      const shared = current.some((o) => o !== g && bucketOf(o) === bucketOf(g) && (!o.expires || expiresInstant(o.expires).getTime() > end));
      if (shared) continue;
      statements.push({
        Effect: 'Deny',
        Action: ['s3:*'],
        Resource: arnsOf(g),
        Condition: { DateGreaterThanEquals: { 'aws:CurrentTime': [new Date(end).toISOString().replace('.000Z', 'Z')] } },
      });
    }
    return normalizePolicy({ Version: '2012-10-17', Statement: statements });
  };

  const rotateDefault = spec.settings?.rotate;
  const graceSeconds = durationSeconds(spec.settings?.rotationGrace ?? DEFAULT_ROTATION_GRACE);
  const displayName = rgwMarker(prefix, ctx.installation);

  for (const [name, p] of Object.entries(spec.principals).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const groups = p.groups.filter((g) => Object.hasOwn(spec.groups, g) && onBackend(spec.groups[g]!.grants).length > 0).sort();
    const everDirect = onBackend(p.grants).length > 0;
    if (!everDirect && groups.length === 0) continue;
    const policies = [
      ...groups.flatMap((g) => groupPolicies.get(g) ?? []),
      ...documents(`principal ${name}`, statementsFor(p.grants), (part) => rgwDirectPolicyName(part), false),
    ];
    // Every grant on this backend has expired: the user and its keys are removed.
    if (policies.length === 0) continue;
    if (credentialsOf(spec, p) === 'temporary') {
      problems.push(
        `principal ${name}: has temporary credentials, which an rgw backend cannot issue (RGW makes no sessions datagrant can scope); set credentials: key for it`,
      );
      continue;
    }
    resources.push(userResource(backendName, name, { displayName, maxBuckets: NO_BUCKETS, caps: [], system: false }));
    const rotate = p.rotate ?? rotateDefault;
    resources.push(
      keyResource(
        backendName,
        { user: name, status: 'Active' },
        { lifecycle: { ...(rotate ? { rotateAfterSeconds: durationSeconds(rotate) } : {}), graceSeconds } },
      ),
    );
    for (const policy of policies) {
      resources.push(inlinePolicyResource(backendName, policy.name, { user: name, document: policy.document }));
    }
    resources.push(
      inlinePolicyResource(backendName, RGW_BOUNDARY_POLICY, {
        user: name,
        document: boundaryDocument([...p.grants, ...groups.flatMap((g) => spec.groups[g]!.grants)]),
      }),
    );
  }

  if (problems.length) throw new CompileError([...new Set(problems)].map((m) => `backend ${backendName}: ${m}`));
  return { resources, notices: [] };
}
