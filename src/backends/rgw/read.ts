// Reading a RADOS gateway, mapped into resources by state.ts (pure).
//
// A read costs one request per 1,000 uids in the gateway (`/admin/metadata/user`, the list) and one
// per user under the prefix (`/admin/metadata/user?key=<uid>`): that answer holds the user's
// settings, its keys and its policies, so no IAM call is needed unless the policies' encoding is
// one this reader does not know (then ListUserPolicies and GetUserPolicy for that user).
import { GetUserPolicyCommand, ListUserPoliciesCommand } from '@aws-sdk/client-iam';
import type { ReadOptions } from '../backend.js';
import type { ActualState } from '../../core/types.js';
import { eachLimited } from '../aws/read.js';
import type { RgwConnection } from './connection.js';
import { unlessGone } from './errors.js';
import { resourcesFromUsers, parseUserMetadata, type UserRecord } from './state.js';

/** What the ownership checks go by: the principals whose users are datagrant's, and those that are not. */
export interface Ownership {
  owned: Set<string>;
  others: Set<string>;
}

const PAGE = 1000;

/** Every uid in the gateway, page by page. */
export async function listUids(rgw: RgwConnection): Promise<string[]> {
  const out: string[] = [];
  let marker: string | undefined;
  do {
    const body = await rgw.admin('GET', '/admin/metadata/user', { 'max-entries': String(PAGE), ...(marker ? { marker } : {}) }, 'listing users');
    const page = JSON.parse(body) as { keys?: unknown; truncated?: unknown; marker?: unknown };
    if (!Array.isArray(page.keys)) throw new Error('listing users: the answer has no keys');
    out.push(...page.keys.filter((k): k is string => typeof k === 'string'));
    const truncated = page.truncated === true || page.truncated === 'true';
    marker = truncated && typeof page.marker === 'string' && page.marker !== '' ? page.marker : undefined;
  } while (marker);
  return out;
}

/** A user of `principal` as the gateway holds it now, its policies included; undefined when there is none. */
export async function fetchUser(rgw: RgwConnection, principal: string): Promise<UserRecord | undefined> {
  return (await fetchUserByUid(rgw, rgw.uid(principal)))?.record;
}

/** Any user, by uid, with the answer's text (subusers are in it); undefined when there is none. */
export async function fetchUserByUid(rgw: RgwConnection, uid: string): Promise<{ record: UserRecord; body: string } | undefined> {
  const body = await unlessGone(() => rgw.admin('GET', '/admin/metadata/user', { key: uid }, `reading user ${uid}`));
  if (body === undefined) return undefined;
  return { record: await withPolicies(rgw, uid, parseUserMetadata(body)), body };
}

async function withPolicies(rgw: RgwConnection, uid: string, record: UserRecord): Promise<UserRecord> {
  if (record.policies !== undefined) return record;
  const names = (await unlessGone(() => rgw.iam.send(new ListUserPoliciesCommand({ UserName: uid }))))?.PolicyNames ?? [];
  const policies: Record<string, string> = {};
  for (const name of names) {
    const got = await unlessGone(() => rgw.iam.send(new GetUserPolicyCommand({ UserName: uid, PolicyName: name })));
    if (got?.PolicyDocument !== undefined) policies[name] = got.PolicyDocument;
  }
  return { ...record, policies };
}

/** Everything inside the boundary, and the ownership sets execute checks changes against. */
export async function readActual(rgw: RgwConnection, opts: Pick<ReadOptions, 'credentials'>): Promise<{ state: ActualState; ownership: Ownership }> {
  const principals = (await listUids(rgw)).map((uid) => rgw.principalOf(uid)).filter((p): p is string => p !== undefined);
  const users: { principal: string; record: UserRecord }[] = [];
  await eachLimited(principals, rgw.opts.concurrency ?? 8, async (principal) => {
    // A user deleted between the list and its read is simply not there.
    const record = await fetchUser(rgw, principal);
    if (record) users.push({ principal, record });
  });
  users.sort((a, b) => (a.principal < b.principal ? -1 : a.principal > b.principal ? 1 : 0));
  const { resources, foreign, owned, others } = resourcesFromUsers({
    backend: rgw.name,
    prefix: rgw.opts.userPrefix,
    ...(rgw.opts.installation ? { installation: rgw.opts.installation } : {}),
    users,
    credentials: opts.credentials,
  });
  return { state: { backend: rgw.name, resources, ...(foreign.length ? { foreign } : {}) }, ownership: { owned, others } };
}
