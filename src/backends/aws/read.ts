// Reading IAM, mapped into resources by state.ts (pure).
//
// A read costs a constant number of requests however many principals there are: one STS call (the
// account id, cached), GetAccountAuthorizationDetails (1,000 items a page) and the IAM credential
// report, and ListRoles under the backend's path (the bulk read lacks a role's description and
// session length). The report has no key ids, so it is compared with what the store knows; only users whose
// keys disagree with the store (or every user, with `exact`) cost one ListAccessKeys each. The
// report is regenerated at most every four hours by AWS: a key deleted by hand since then shows up
// at the latest when the report is renewed, or at once with `exact`.
import {
  GenerateCredentialReportCommand,
  GetAccountAuthorizationDetailsCommand,
  GetAccessKeyLastUsedCommand,
  GetCredentialReportCommand,
  ListAccessKeysCommand,
  ListRolesCommand,
} from '@aws-sdk/client-iam';
import type { KnownCredential, ReadOptions } from '../backend.js';
import type { ActualState, CredentialUse } from '../../core/types.js';
import { awsAddress } from '../../model/aws.js';
import type { AwsConnection } from './connection.js';
import { awsErrorCode, tolerate } from './errors.js';
import { ownershipOf, type Ownership } from './ownership.js';
import {
  isUnder,
  keysFromStore,
  parseCredentialReport,
  resourcesFromDetails,
  type AccessKeyFact,
  type AccountDetails,
  type ReportKey,
  type RoleDetail,
} from './state.js';
import { trustDocument, trustedPrincipal } from './trust.js';

/** Everything inside the boundary, and the ownership sets execute checks changes against. */
export async function readActual(aws: AwsConnection, opts: ReadOptions): Promise<{ state: ActualState; ownership: Ownership }> {
  await aws.caller();
  const details = await accountDetails(aws);
  const owned = details.users.filter((u) => u.UserName && isUnder(u.Path, aws.opts.iamPath)).map((u) => u.UserName!);
  const keys = await accessKeys(aws, owned, opts.credentials, opts.exact ?? false, opts.usage ?? false);
  const trust = (details.roles ?? []).some((r) => isUnder(r.Path, aws.opts.iamPath)) ? trustDocument(await trustedPrincipal(aws)) : undefined;
  const { resources, foreign } = resourcesFromDetails({
    backend: aws.name,
    ...(trust ? { trust } : {}),
    iamPath: aws.opts.iamPath,
    details,
    keys,
    credentials: opts.credentials,
    ...(aws.opts.installation ? { installation: aws.opts.installation } : {}),
  });
  const usage: CredentialUse[] = [];
  for (const [user, facts] of keys) {
    for (const k of facts) {
      // Every key, its use unknown where the read could not tell (a key newer than a cached report).
      usage.push({ principal: user, credential: k.accessKeyId, createdAt: k.createdAt, ...(k.lastUsedAt !== undefined ? { lastUsedAt: k.lastUsedAt } : {}) });
    }
  }
  return {
    state: { backend: aws.name, resources, ...(foreign.length ? { foreign } : {}), ...(usage.length ? { usage } : {}) },
    ownership: ownershipOf(details, resources),
  };
}

/** The ownership sets alone (no keys): for a change executed before any read. */
export async function readOwnership(aws: AwsConnection): Promise<Ownership> {
  return ownershipFromDetails(aws, await accountDetails(aws));
}

/** The ownership sets of what a bulk read found. */
export function ownershipFromDetails(aws: AwsConnection, details: AccountDetails): Ownership {
  const { resources } = resourcesFromDetails({
    backend: aws.name,
    iamPath: aws.opts.iamPath,
    details,
    keys: new Map(),
    credentials: [],
    ...(aws.opts.installation ? { installation: aws.opts.installation } : {}),
  });
  return ownershipOf(details, resources);
}

export interface DetailsOptions {
  /**
   * AWS managed policies too, with their default versions (effective access: one attached to
   * anyone grants like any other). Plan needs none of them.
   */
  awsManagedPolicies?: boolean;
  /** Join what only ListRoles tells of datagrant's roles (plan compares it; effective access does not). Default true. */
  roleSettings?: boolean;
}

/** Every user, group, role and managed policy of the account: GetAccountAuthorizationDetails, page by page. */
export async function accountDetails(aws: AwsConnection, opts: DetailsOptions = {}): Promise<AccountDetails> {
  const out: AccountDetails & { roles: RoleDetail[] } = { users: [], groups: [], roles: [], policies: [] };
  let marker: string | undefined;
  do {
    const page = await aws.iam.send(
      new GetAccountAuthorizationDetailsCommand({
        Filter: ['User', 'Group', 'Role', 'LocalManagedPolicy', ...(opts.awsManagedPolicies ? (['AWSManagedPolicy'] as const) : [])],
        MaxItems: 1000,
        ...(marker ? { Marker: marker } : {}),
      }),
    );
    out.users.push(...(page.UserDetailList ?? []));
    out.groups.push(...(page.GroupDetailList ?? []));
    out.roles.push(...(page.RoleDetailList ?? []));
    out.policies.push(...(page.Policies ?? []));
    marker = page.IsTruncated ? page.Marker : undefined;
  } while (marker);
  if ((opts.roleSettings ?? true) && out.roles.some((r) => isUnder(r.Path, aws.opts.iamPath))) {
    const listed = new Map<string, { Description?: string; MaxSessionDuration?: number }>();
    let next: string | undefined;
    do {
      const page = await aws.iam.send(new ListRolesCommand({ PathPrefix: aws.opts.iamPath, MaxItems: 1000, ...(next ? { Marker: next } : {}) }));
      for (const r of page.Roles ?? []) if (r.RoleName) listed.set(r.RoleName, r);
      next = page.IsTruncated ? page.Marker : undefined;
    } while (next);
    out.roles = out.roles.map((r) => {
      const l = r.RoleName ? listed.get(r.RoleName) : undefined;
      return l
        ? {
            ...r,
            ...(l.Description !== undefined ? { Description: l.Description } : {}),
            ...(l.MaxSessionDuration !== undefined ? { MaxSessionDuration: l.MaxSessionDuration } : {}),
          }
        : r;
    });
  }
  return out;
}

/** The IAM credential report's CSV: generated if need be, waited for within `reportWaitMs`. */
export async function credentialReport(aws: AwsConnection): Promise<string> {
  const deadline = Date.now() + (aws.opts.reportWaitMs ?? 120_000);
  let generate = true;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    if (generate) await aws.iam.send(new GenerateCredentialReportCommand({}));
    try {
      const r = await aws.iam.send(new GetCredentialReportCommand({}));
      return Buffer.from(r.Content ?? new Uint8Array()).toString('utf8');
    } catch (e) {
      const code = awsErrorCode(e);
      if (
        ![
          'ReportInProgress',
          'ReportNotPresent',
          'ReportExpired',
          'CredentialReportNotPresent',
          'CredentialReportNotReady',
          'CredentialReportExpired',
        ].includes(code ?? '')
      )
        throw e;
      if (Date.now() + delay > deadline) throw e;
      generate = code !== 'ReportInProgress' && code !== 'CredentialReportNotReady';
      await aws.backoff(delay);
    }
  }
}

async function accessKeys(
  aws: AwsConnection,
  users: string[],
  credentials: KnownCredential[],
  exact: boolean,
  usage: boolean,
): Promise<Map<string, AccessKeyFact[]>> {
  const keys = new Map<string, AccessKeyFact[]>();
  let unsure = users;
  let report = new Map<string, ReportKey[]>();
  if (!exact && users.length > 0) {
    let csv: string;
    try {
      csv = await credentialReport(aws);
    } catch (e) {
      // Without iam:GenerateCredentialReport the read still works, one ListAccessKeys per user.
      if (awsErrorCode(e) !== 'AccessDenied') throw e;
      csv = '';
    }
    report = parseCredentialReport(csv);
    unsure = [];
    for (const user of users) {
      const known = keysFromStore(user, awsAddress.key(aws.name, user), report, credentials);
      if (known) keys.set(user, known);
      else unsure.push(user);
    }
  }
  await eachLimited(unsure, aws.opts.concurrency ?? 8, async (user) => {
    const listed = await listKeys(aws, user);
    // The report has no key ids: a listed key is the reported one created in the same second.
    const reported = report.get(user);
    const withUse = reported
      ? listed.map((k) => {
          const sec = Math.floor(Date.parse(k.createdAt) / 1000);
          const used = reported.find((r) => Math.abs(r.createdSec - sec) <= 1)?.lastUsedAt;
          return used === undefined ? k : { ...k, lastUsedAt: used };
        })
      : exact && usage
        ? await withLastUse(aws, listed)
        : listed;
    keys.set(user, withUse);
  });
  return keys;
}

/** Runs `fn` on every item, at most `limit` at once. */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Each key's last use, one GetAccessKeyLastUsed per key (an exact read for expireUnused). */
async function withLastUse(aws: AwsConnection, keys: AccessKeyFact[]): Promise<AccessKeyFact[]> {
  return Promise.all(
    keys.map(async (k) => {
      const r = await tolerate(['NoSuchEntity'], () => aws.iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: k.accessKeyId })));
      if (!r) return k;
      const at = r.AccessKeyLastUsed?.LastUsedDate;
      return { ...k, lastUsedAt: at ? new Date(Math.floor(at.getTime() / 1000) * 1000).toISOString() : null };
    }),
  );
}

/** The access keys of `user`, one request; none when the user is gone. */
export async function listKeys(aws: AwsConnection, user: string): Promise<AccessKeyFact[]> {
  const r = await tolerate(['NoSuchEntity'], () => aws.iam.send(new ListAccessKeysCommand({ UserName: user })));
  return (r?.AccessKeyMetadata ?? []).map((k) => ({
    accessKeyId: k.AccessKeyId!,
    status: k.Status ?? 'Active',
    createdAt: (k.CreateDate ?? new Date(0)).toISOString(),
  }));
}
