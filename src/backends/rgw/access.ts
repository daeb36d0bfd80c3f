// Effective access on a RADOS gateway, read through the admin API: every user (one list per 1,000
// uids, then one metadata read per user: its settings, keys, subusers and policies at once — RGW
// has nothing like IAM's account-wide summary), and per dataset bucket its owner and policy (bucket
// and bucket-instance metadata) and its ACL (`/admin/bucket?policy`). What cannot be read is named
// in `failures`, never left out silently. effective.ts turns it into access. Reads only.
import type { AccessDataset, AccessQuery, AccessReading } from '../../model/access.js';
import { eachLimited } from '../aws/read.js';
import type { S3AccessDataset } from '../aws/effective.js';
import type { RgwConnection } from './connection.js';
import { effectiveAccess, type RgwAclGrant, type RgwBucketFact, type RgwUserFact } from './effective.js';
import { rgwErrorCode, unlessGone } from './errors.js';
import { fetchUserByUid, listUids } from './read.js';
import { ownerOf } from './state.js';

const isS3 = (d: AccessDataset): d is S3AccessDataset => 'bucket' in d;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): Record<string, unknown>[] => (Array.isArray(v) ? v.filter(isObject) : []);

/** Why a request failed, in a word or two (the gateway's code, or the message of a missed deadline). */
const why = (rgw: RgwConnection, e: unknown) => rgwErrorCode(e) ?? rgw.error(e).message;

export async function readAccess(rgw: RgwConnection, query: AccessQuery, now: Date): Promise<AccessReading> {
  const before = rgw.stats().requests;
  const datasets = query.datasets.filter(isS3);
  const failures: string[] = [];

  const users: RgwUserFact[] = [];
  let uids: string[] = [];
  try {
    uids = await listUids(rgw);
  } catch (e) {
    failures.push(`the gateway's users could not be listed (${why(rgw, e)}): no user's access is reported`);
  }
  await eachLimited(uids, rgw.opts.concurrency ?? 8, async (uid) => {
    try {
      const got = await fetchUserByUid(rgw, uid);
      // Removed since the list: it holds nothing.
      if (!got) return;
      const { record, body } = got;
      const data = (JSON.parse(body) as { data?: unknown }).data;
      const whose = ownerOf(record, rgw.opts.userPrefix, rgw.opts.installation);
      const principal = whose.owner === 'ours' ? rgw.principalOf(uid) : undefined;
      users.push({
        uid,
        system: record.system,
        suspended: record.suspended,
        caps: record.caps,
        keys: record.keys,
        policies: record.policies,
        subusers: list(isObject(data) ? data.subusers : undefined).map((s) => ({ id: String(s.id), permissions: String(s.permissions) })),
        ours: principal !== undefined,
        ...(principal !== undefined ? { principal } : {}),
      });
    } catch (e) {
      failures.push(`user ${uid} could not be read (${why(rgw, e)}): access it holds is not reported`);
    }
  });
  users.sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));

  const buckets: RgwBucketFact[] = [];
  for (const bucket of [...new Set(datasets.map((d) => d.bucket))].sort()) {
    try {
      const got = await readBucket(rgw, bucket, failures);
      if (got) buckets.push(got);
      else for (const d of datasets.filter((x) => x.bucket === bucket)) failures.push(`dataset ${d.name}: bucket ${bucket} does not exist`);
    } catch (e) {
      failures.push(`bucket ${bucket} could not be read (${why(rgw, e)}): access to it is not reported`);
    }
  }

  const reading = effectiveAccess({ backend: rgw.name, users, buckets, datasets, now });
  return { ...reading, failures: [...failures, ...reading.failures], requests: rgw.stats().requests - before };
}

/** A bucket's owner, policy and ACL; undefined when there is no such bucket. */
async function readBucket(rgw: RgwConnection, bucket: string, failures: string[]): Promise<RgwBucketFact | undefined> {
  const meta = await unlessGone(() => rgw.admin('GET', '/admin/metadata/bucket', { key: bucket }, `reading bucket ${bucket}`));
  if (meta === undefined) return undefined;
  const data = (JSON.parse(meta) as { data?: { owner?: unknown; bucket?: { bucket_id?: unknown } } }).data;
  const owner = typeof data?.owner === 'string' ? data.owner : '';
  const id = data?.bucket?.bucket_id;

  let policy: string | null | undefined;
  try {
    if (typeof id !== 'string') throw new Error('its metadata names no instance');
    const instance = await rgw.admin('GET', '/admin/metadata/bucket.instance', { key: `${bucket}:${id}` }, `reading bucket ${bucket}`);
    const attrs = list((JSON.parse(instance) as { data?: { attrs?: unknown } }).data?.attrs);
    const attr = attrs.find((a) => a.key === 'user.rgw.iam-policy');
    policy = typeof attr?.val === 'string' ? Buffer.from(attr.val, 'base64').toString('utf8') : null;
  } catch (e) {
    failures.push(`bucket ${bucket}: its bucket policy could not be read (${why(rgw, e)}): access it grants is not reported`);
  }

  let acl: RgwAclGrant[] | undefined;
  try {
    const answer = JSON.parse(await rgw.admin('GET', '/admin/bucket', { bucket, policy: '' }, `reading the ACL of bucket ${bucket}`)) as {
      acl?: { grant_map?: unknown };
    };
    acl = list(answer.acl?.grant_map).flatMap((entry): RgwAclGrant[] => {
      const g = isObject(entry.grant) ? entry.grant : {};
      const type = isObject(g.type) ? Number(g.type.type) : -1;
      const flags = isObject(g.permission) ? Number(g.permission.flags) : 0;
      // ACL grantee types: 0 a user, 1 an e-mail address, 2 a group (1 AllUsers, 2 AuthenticatedUsers).
      if (type === 0 && typeof g.id === 'string') return [{ user: g.id, flags }];
      if (type === 2 && (g.group === 1 || g.group === 2)) return [{ group: g.group === 1 ? 'AllUsers' : 'AuthenticatedUsers', flags }];
      return [];
    });
  } catch (e) {
    failures.push(`bucket ${bucket}: its ACL could not be read (${why(rgw, e)}): access it grants is not reported`);
  }
  return { bucket, owner, policy, acl };
}
