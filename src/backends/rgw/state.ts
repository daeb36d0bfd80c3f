// What a RADOS gateway holds → datagrant's resources. Pure: the reader passes in what it read (one
// `/admin/metadata/user?key=<uid>` answer per user under the prefix) and gets back the actual
// state inside the ownership boundary, with addresses, attrs and deps exactly as
// src/compile/rgw/compile.ts makes them, so that a second plan after apply is empty.
import type { KnownCredential } from '../backend.js';
import type { ForeignObject, Json } from '../../core/types.js';
import { normalizePolicy } from '../../model/aws-policy.js';
import { inlinePolicyResource, keyResource, parseRgwMarker, rgwAddress, userResource, type RgwResource } from '../../model/rgw.js';

/** One RGW user as the reader needs it. Its keys' secrets are never kept. */
export interface UserRecord {
  uid: string;
  displayName: string;
  maxBuckets: number;
  /** `type=perm`, sorted. */
  caps: string[];
  system: boolean;
  suspended: boolean;
  /** Its S3 access key ids. */
  keys: string[];
  /** Its user policies, name → document as the gateway holds it; undefined when the answer did not say. */
  policies: Record<string, string> | undefined;
}

/** The attribute in which RGW keeps a user's policies. */
const POLICY_ATTR = 'user.rgw.user-policy';

/**
 * RGW's encoding of the policy map (Ceph's `encode(map<string, string>)`, base64 in JSON): a
 * little-endian u32 count, then per entry a u32 length and the name, a u32 length and the
 * document. Undefined unless it reads exactly so; the reader then asks the IAM API instead.
 */
export function decodePolicyMap(base64: string): Record<string, string> | undefined {
  const buf = Buffer.from(base64, 'base64');
  let at = 0;
  const u32 = (): number | undefined => {
    if (at + 4 > buf.length) return undefined;
    const v = buf.readUInt32LE(at);
    at += 4;
    return v;
  };
  const text = (): string | undefined => {
    const n = u32();
    if (n === undefined || at + n > buf.length) return undefined;
    const s = buf.toString('utf8', at, at + n);
    at += n;
    return s;
  };
  const count = u32();
  if (count === undefined || count > buf.length) return undefined;
  const out: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    const name = text();
    const document = text();
    if (name === undefined || document === undefined) return undefined;
    out[name] = document;
  }
  return at === buf.length ? out : undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * An answer of `GET /admin/metadata/user?key=<uid>`. Throws a plain Error naming the field that is
 * missing (never the answer itself: it holds the user's secret keys).
 */
export function parseUserMetadata(body: string): UserRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new Error('the user metadata answer is not JSON');
  }
  const data = isObject(parsed) && isObject(parsed.data) ? parsed.data : undefined;
  if (!data || typeof data.user_id !== 'string') throw new Error('the user metadata answer has no data.user_id');
  const list = (v: unknown): Record<string, unknown>[] => (Array.isArray(v) ? v.filter(isObject) : []);
  const attr = list(data.attrs).find((a) => a.key === POLICY_ATTR);
  const policies = attr === undefined ? {} : typeof attr.val === 'string' ? decodePolicyMap(attr.val) : undefined;
  return {
    uid: data.user_id,
    displayName: typeof data.display_name === 'string' ? data.display_name : '',
    maxBuckets: typeof data.max_buckets === 'number' ? data.max_buckets : Number(data.max_buckets ?? 0),
    caps: list(data.caps)
      .map((c) => `${String(c.type)}=${String(c.perm)}`)
      .sort(),
    system: data.system === true || data.system === 'true',
    suspended: data.suspended === 1 || data.suspended === true || data.suspended === '1',
    keys: list(data.keys)
      .map((k) => k.access_key)
      .filter((k): k is string => typeof k === 'string')
      .sort(),
    policies,
  };
}

/** A document as read: canonical when it is JSON, else kept verbatim so that it differs and shows as drift. */
export function parsePolicyText(text: string): Json {
  try {
    return normalizePolicy(JSON.parse(text));
  } catch {
    return text;
  }
}

export type Owner = 'ours' | 'foreign' | 'other';

/**
 * Whose a user under the prefix is, by its mark: datagrant's own, another installation's (same
 * prefix), or neither (no mark, or the mark of a nested prefix) — never touched.
 */
export function ownerOf(u: Pick<UserRecord, 'displayName'>, prefix: string, installation: string | undefined): { owner: Owner; installation?: string } {
  const mark = parseRgwMarker(u.displayName);
  if (!mark || mark.prefix !== prefix) return { owner: 'other' };
  if (installation !== undefined && mark.installation !== undefined && mark.installation !== installation) {
    return { owner: 'foreign', installation: mark.installation };
  }
  return { owner: 'ours' };
}

export interface MapInput {
  backend: string;
  prefix: string;
  installation?: string;
  /** Each user read under the prefix, with the principal its uid stands for. */
  users: { principal: string; record: UserRecord }[];
  credentials: KnownCredential[];
}

export interface MappedState {
  resources: RgwResource[];
  foreign: ForeignObject[];
  /** Principals whose users are datagrant's. */
  owned: Set<string>;
  /** Principals whose uids exist under the prefix but are not datagrant's (or are another installation's). */
  others: Set<string>;
}

export function resourcesFromUsers(input: MapInput): MappedState {
  const { backend, prefix, installation } = input;
  const out: RgwResource[] = [];
  const foreign: ForeignObject[] = [];
  const owned = new Set<string>();
  const others = new Set<string>();
  const known = new Map(input.credentials.map((c) => [c.credentialId, c]));

  for (const { principal, record: u } of input.users) {
    const whose = ownerOf(u, prefix, installation);
    if (whose.owner !== 'ours') {
      others.add(principal);
      if (whose.owner === 'foreign') foreign.push({ address: rgwAddress.user(backend, principal), installation: whose.installation! });
      continue;
    }
    owned.add(principal);
    out.push(userResource(backend, principal, { displayName: u.displayName, maxBuckets: u.maxBuckets, caps: u.caps, system: u.system }, { uid: u.uid }));
    for (const [name, text] of Object.entries(u.policies ?? {})) {
      out.push(inlinePolicyResource(backend, name, { user: principal, document: parsePolicyText(text) }));
    }
    const slot = rgwAddress.key(backend, principal);
    for (const id of u.keys) {
      const cred = known.get(id);
      const mine = cred !== undefined && cred.address === slot;
      const current = mine && cred.state === 'current';
      out.push(
        keyResource(
          backend,
          { user: principal, status: u.suspended ? 'Inactive' : 'Active' },
          {
            ...(current ? {} : { accessKeyId: id }),
            // RGW records no creation time: the store's, for the keys datagrant issued.
            meta: { accessKeyId: id, ...(mine ? { createdAt: cred.createdAt } : {}) },
            ...(mine && cred.state === 'retiring' && cred.retireAt ? { lifecycle: { retireAt: cred.retireAt } } : {}),
          },
        ),
      );
    }
  }
  return { resources: out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0)), foreign, owned, others };
}
