// SCIM users and groups → `principals` entries of a spec. Pure: the reconciler reads the store,
// calls this, merges the result into the loaded spec and plans as usual. A user that is inactive
// or deleted is simply absent, so the plan deprovisions it; reactivation brings it back (with new
// credentials, since the old ones were torn down).
//
// Principal names. AWS IAM user names allow [A-Za-z0-9+=,.@_-] (64 max, case-insensitive);
// PostgreSQL role names are at most 63 bytes, must not start with pg_, and are only safe unquoted
// as [a-z_][a-z0-9_]*. The one rule satisfying both, lossy but readable:
//   1. take userName's local part (before the last @), lowercase, NFKD with accents dropped;
//   2. replace every run of characters outside [a-z0-9_] with one _, trim _ from both ends;
//   3. if it is empty, does not start with a letter, starts with pg_, or is a reserved name
//      (public, none, or a name `taken` by the spec), prefix `u_`;
//   4. cut to 48 characters.
// Collisions (two users with the same result, or a name the spec already uses) are resolved
// deterministically and stably: users are ordered by creation (then id); the first keeps the name,
// each later one gets `_` + the first 8 hex digits of sha256(lowercased userName). A user keeps
// its name as long as the users created before it keep theirs.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Json } from '../core/types.js';
import type { JsonObject } from './schemas.js';
import type { PrincipalSpec, Spec } from '../spec/schema.js';
import type { ScimRecord, ScimStore } from './store.js';

export interface ScimPrincipal {
  type: 'person';
  email?: string;
  groups: string[];
  grants: [];
}

export interface ScimPrincipalOptions {
  /** Principal names the spec already defines; a SCIM user never takes one of them. */
  taken?: Iterable<string>;
  /**
   * Only users in at least one mapped group (the only ones that compile to anything). Names are
   * still given over all active users, so that each user's name is the same either way.
   */
  withAccessOnly?: boolean;
}

const RESERVED = new Set(['public', 'none', 'current_user', 'session_user', 'current_role', 'user', 'all']);
const MAX_BASE = 48;
// The spec's own check, so that every email given here passes spec validation.
const EMAIL = z.string().email();

export function principalBaseName(userName: string): string {
  const at = userName.lastIndexOf('@');
  const local = at > 0 ? userName.slice(0, at) : userName;
  let n = local
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^_+|_+$/g, '');
  if (!/^[a-z]/.test(n) || n.startsWith('pg_') || RESERVED.has(n)) n = `u_${n}`.replace(/_+$/, '');
  return n.slice(0, MAX_BASE).replace(/_+$/, '');
}

// principalBaseName is pure and reconciles ask it for every user every time: remember answers
// (forgotten wholesale past a bound, so memory stays flat however many users come and go).
const baseNames = new Map<string, string>();
function cachedBaseName(userName: string): string {
  let n = baseNames.get(userName);
  if (n === undefined) {
    if (baseNames.size >= 200_000) baseNames.clear();
    n = principalBaseName(userName);
    baseNames.set(userName, n);
  }
  return n;
}

const suffix = (userName: string) => createHash('sha256').update(userName.toLowerCase()).digest('hex').slice(0, 8);

function emailOf(attrs: JsonObject): string | undefined {
  const emails = Array.isArray(attrs.emails) ? (attrs.emails as Json[]).filter((e): e is JsonObject => typeof e === 'object' && e !== null && !Array.isArray(e)) : [];
  const pick = emails.find((e) => e.primary === true) ?? emails.find((e) => String(e.type ?? '').toLowerCase() === 'work') ?? emails[0];
  const candidates = [pick?.value, attrs.userName];
  for (const c of candidates) if (typeof c === 'string' && EMAIL.safeParse(c).success) return c;
  return undefined;
}

/**
 * The `principals` to merge into a spec: one `person` per active SCIM user, in the datagrant groups
 * its IdP groups map to (`mapping`: IdP group displayName, matched case-insensitively → datagrant
 * group). Unmapped IdP groups grant nothing; members that are not users (nested groups) are ignored.
 */
export function scimPrincipals(
  users: readonly ScimRecord[],
  groups: readonly ScimRecord[],
  mapping: Record<string, string>,
  opts: ScimPrincipalOptions = {},
): Record<string, ScimPrincipal> {
  const mapped = new Map(Object.entries(mapping).map(([idp, dg]) => [idp.toLowerCase(), dg]));
  const groupsOf = new Map<string, Set<string>>();
  for (const g of groups) {
    const dg = mapped.get(String(g.attrs.displayName ?? '').toLowerCase());
    if (!dg || !Array.isArray(g.attrs.members)) continue;
    for (const m of g.attrs.members) {
      if (typeof m !== 'object' || m === null || Array.isArray(m) || typeof m.value !== 'string') continue;
      if (m.type !== undefined && m.type !== 'User') continue;
      let set = groupsOf.get(m.value);
      if (!set) groupsOf.set(m.value, (set = new Set()));
      set.add(dg);
    }
  }
  const taken = new Set([...(opts.taken ?? [])].map((t) => t.toLowerCase()));
  const active = users
    .filter((u) => u.type === 'User' && u.attrs.active !== false && typeof u.attrs.userName === 'string')
    .sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const out: Record<string, ScimPrincipal> = {};
  for (const u of active) {
    const userName = u.attrs.userName as string;
    const base = cachedBaseName(userName);
    let name = base;
    if (taken.has(name)) name = `${base}_${suffix(userName)}`;
    // A second collision (two userNames whose hashes share 8 digits) lengthens the suffix.
    for (let n = 12; taken.has(name) && n <= 64; n += 4) name = `${base}_${createHash('sha256').update(userName.toLowerCase()).digest('hex').slice(0, n)}`.slice(0, 63);
    taken.add(name);
    const groups = groupsOf.get(u.id);
    if (opts.withAccessOnly && !groups?.size) continue;
    const email = emailOf(u.attrs);
    out[name] = { type: 'person', ...(email ? { email } : {}), groups: [...(groups ?? [])].sort(), grants: [] };
  }
  return out;
}

/**
 * The principals the SCIM users of `store` add to `spec` (none without a `scim:` section).
 * `datagrant serve` and the CLI's plan, apply and drift merge them alike, so that both see the
 * same desired state.
 */
export async function scimPeople(store: ScimStore, spec: Spec): Promise<Record<string, PrincipalSpec>> {
  if (!spec.scim) return {};
  const users = await store.list('User');
  const groups = await store.list('Group');
  // A person in no mapped group has no grants and compiles to nothing: leaving them out changes
  // no desired state and spares compiling thousands of them on every reconcile.
  return scimPrincipals(users, groups, spec.scim.groups ?? {}, { taken: Object.keys(spec.principals), withAccessOnly: true });
}

