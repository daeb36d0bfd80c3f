// Effective access (issue 13): the reads, in bulk, that effective.ts (pure) maps to who can reach
// each dataset. The whole account is read, not only datagrant's path: access datagrant does not
// manage is what this is for.
//
// Requests, whatever the number of principals and datasets:
//   1 GetCallerIdentity (cached for the driver's life)
//   + the GetAccountAuthorizationDetails pages (users, groups, roles, customer and AWS managed
//     policies with their default versions; up to 1,000 items a page)
//   + 2 for the credential report (generate, get; more only while AWS is still generating it)
//   + 1 GetBucketPolicy per distinct bucket of the query's datasets
//   + 2 (GetPolicy, GetPolicyVersion) per attached policy the bulk read did not carry, normally none
//   + 1 GetRole when datagrant runs as an assumed role and has roles of its own (cached).
// Nothing is read per user, group or role.
import { GetPolicyCommand, GetPolicyVersionCommand } from '@aws-sdk/client-iam';
import { GetBucketPolicyCommand } from '@aws-sdk/client-s3';
import type { AccessQuery, AccessReading } from '../../model/access.js';
import type { AwsConnection } from './connection.js';
import { credentialUsage, effectiveAccess, type S3AccessDataset } from './effective.js';
import { awsErrorCode } from './errors.js';
import { accountDetails, credentialReport, eachLimited, ownershipFromDetails } from './read.js';
import type { AccountDetails, PolicyDetail } from './state.js';
import { trustDocument, trustedPrincipal } from './trust.js';
import type { Json } from '../../core/types.js';

/** What effective.ts maps, as read: for the bench, which times the mapping on its own. */
export interface AccessDocuments {
  account: string;
  partition: string;
  details: AccountDetails;
  owned: { users: Set<string>; roles: Set<string>; groups: Set<string>; policies: Set<string> };
  /** The trust policy datagrant writes on its roles, when it has any. */
  trust?: Json;
  bucketPolicies: Map<string, string | null>;
  report: string | undefined;
  datasets: S3AccessDataset[];
  /** What could not be read, in words. */
  failures: string[];
}

export async function readAccessDocuments(aws: AwsConnection, query: AccessQuery): Promise<AccessDocuments> {
  const datasets = query.datasets.filter((d): d is S3AccessDataset => 'bucket' in d);
  const failures: string[] = [];
  const { account, partition } = await aws.caller();
  const details = await accountDetails(aws, { awsManagedPolicies: true, roleSettings: false });
  details.policies.push(...(await missingPolicies(aws, details)));
  const { users, roles, groups, policies } = ownershipFromDetails(aws, details);
  // Only a role trusting datagrant alone is wholly datagrant's (its caller is cached: no request, or one GetRole).
  let trust: Json | undefined;
  if (roles.size) {
    try {
      trust = trustDocument(await trustedPrincipal(aws));
    } catch (e) {
      failures.push(
        `the identity datagrant runs as could not be read (${awsErrorCode(e) ?? (e as Error).message}): no access-set role's access is shown as datagrant's`,
      );
    }
  }

  const bucketPolicies = new Map<string, string | null>();
  await eachLimited([...new Set(datasets.map((d) => d.bucket))].sort(), aws.opts.concurrency ?? 8, async (bucket) => {
    try {
      bucketPolicies.set(bucket, (await aws.s3.send(new GetBucketPolicyCommand({ Bucket: bucket }))).Policy ?? null);
    } catch (e) {
      const code = awsErrorCode(e);
      if (code === 'NoSuchBucketPolicy') bucketPolicies.set(bucket, null);
      // One bucket's policy unread leaves the rest of the reading good; the reader says what is missing.
      else failures.push(`bucket ${bucket}: its bucket policy could not be read (${code ?? (e as Error).message}): access it grants is not reported`);
    }
  });

  let report: string | undefined;
  try {
    report = await credentialReport(aws);
  } catch (e) {
    failures.push(`the IAM credential report could not be read (${awsErrorCode(e) ?? (e as Error).message}): when access keys were last used is not known`);
  }
  return { account, partition, details, owned: { users, roles, groups, policies }, ...(trust ? { trust } : {}), bucketPolicies, report, datasets, failures };
}

/** Effective access to the query's S3 datasets, and when each access key was last used. */
export async function readAccess(aws: AwsConnection, query: AccessQuery, now: Date): Promise<AccessReading> {
  const before = aws.stats().requests;
  const read = await readAccessDocuments(aws, query);
  const { rows, limits, failures } = effectiveAccess({ backend: aws.name, ...read, now });
  return {
    rows,
    usage: read.report === undefined ? [] : credentialUsage(aws.name, read.report, read.owned.users),
    limits,
    failures: [...failures, ...read.failures],
    requests: aws.stats().requests - before,
  };
}

/**
 * Managed policies attached to someone (or bounding someone) that the bulk read did not carry,
 * read one by one: an AWS managed policy is in GetAccountAuthorizationDetails' answer only when
 * asked for (moto returns all of them; AWS, those in use), and a policy left unread would hide
 * the access it grants. One that cannot be read is left out; effective.ts names it in `limits`.
 */
async function missingPolicies(aws: AwsConnection, details: AccountDetails): Promise<PolicyDetail[]> {
  const have = new Set(details.policies.filter((p) => p.PolicyVersionList?.some((v) => v.Document !== undefined)).map((p) => p.Arn));
  const wanted = new Set<string>();
  const want = (arn: string | undefined) => arn !== undefined && !have.has(arn) && wanted.add(arn);
  for (const e of [...details.users, ...details.groups, ...(details.roles ?? [])]) for (const p of e.AttachedManagedPolicies ?? []) want(p.PolicyArn);
  for (const e of [...details.users, ...(details.roles ?? [])]) want(e.PermissionsBoundary?.PermissionsBoundaryArn);
  const out: PolicyDetail[] = [];
  await eachLimited([...wanted].sort(), aws.opts.concurrency ?? 8, async (arn) => {
    try {
      const version = (await aws.iam.send(new GetPolicyCommand({ PolicyArn: arn }))).Policy?.DefaultVersionId;
      if (!version) return;
      const v = (await aws.iam.send(new GetPolicyVersionCommand({ PolicyArn: arn, VersionId: version }))).PolicyVersion;
      out.push({
        Arn: arn,
        DefaultVersionId: version,
        PolicyVersionList: [{ VersionId: version, IsDefaultVersion: true, ...(v?.Document ? { Document: v.Document } : {}) }],
      });
    } catch {
      // Named in the reading's limits as a policy that could not be read.
    }
  });
  return out;
}
