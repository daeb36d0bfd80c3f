// SCIM users and groups → `principals` entries of a spec. The reconciler reads the store, calls
// scimPeople, merges the result into the loaded spec and plans as usual. A user that is inactive
// or deleted is simply absent, so the plan deprovisions it; reactivation brings it back (with new
// credentials, since the old ones were torn down).
//
// Principal names. AWS IAM user names allow [A-Za-z0-9+=,.@_-] (64 max, case-insensitive);
// PostgreSQL role names are at most 63 bytes, must not start with pg_, and are only safe unquoted
// as [a-z_][a-z0-9_]*. The one rule satisfying both, lossy but readable:
//   1. take userName's local part (before the last @), lowercase, NFKD with accents dropped;
//   2. replace every run of characters outside [a-z0-9_] with one _, trim _ from both ends;
//   3. if it is empty, does not start with a letter, starts with pg_, or is a reserved name
//      (public, none, …), prefix `u_`;
//   4. cut to 48 characters.
// A name is given once, when the store creates the user, and is the user's for ever: renaming the
// user, deactivating or deleting it, or any other user coming or going never changes it, and no
// other identity ever gets it (deleted users' names stay reserved). Were names recomputed from who
// is active, a leaver's IAM user and key would pass to whoever inherits the name. At creation the
// first candidate (principalNameCandidates) that no user ever had and the spec does not define
// wins: the base name, then `_` + the first 8, 12, … hex digits of sha256(lowercased userName).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { PrincipalNameConflictError } from '../core/errors.js';
import type { JsonObject } from './schemas.js';
import type { PrincipalSpec, Spec } from '../spec/schema.js';
import type { ScimRecord, ScimStore } from './store/store.js';
import { textOf } from '../core/canonical.js';

export interface ScimPrincipal {
  type: 'person';
  email?: string;
  groups: string[];
  grants: [];
}

export interface ScimPrincipalOptions {
  /** Only users in at least one mapped group (the only ones that compile to anything). */
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

/**
 * The names a new user may get, best first; the store gives the first one that is free. Endless:
 * past the longest hash suffix (the same userName deleted and created again many times, each time
 * a new identity with a name of its own) a counter follows.
 */
export function* principalNameCandidates(userName: string): Generator<string, never> {
  const base = principalBaseName(userName);
  const hash = createHash('sha256').update(userName.toLowerCase()).digest('hex');
  yield base;
  // Cut to 63 bytes, the longest suffixes of a long base come out the same: each once.
  let last = base;
  for (let n = 8; n <= 64; n += 4) {
    const name = `${base}_${hash.slice(0, n)}`.slice(0, 63);
    if (name !== last) yield (last = name);
  }
  for (let k = 2; ; k++) yield `${base}_${hash.slice(0, 8)}_${k}`;
}

function emailOf(attrs: JsonObject): string | undefined {
  const emails = Array.isArray(attrs.emails) ? attrs.emails.filter((e): e is JsonObject => typeof e === 'object' && e !== null && !Array.isArray(e)) : [];
  const pick = emails.find((e) => e.primary === true) ?? emails.find((e) => textOf(e.type).toLowerCase() === 'work') ?? emails[0];
  const candidates = [pick?.value, attrs.userName];
  for (const c of candidates) if (typeof c === 'string' && EMAIL.safeParse(c).success) return c;
  return undefined;
}

/**
 * The `principals` to merge into a spec: one `person` per active SCIM user, under the principal
 * name the store gave it, in the datagrant groups its IdP groups map to (`mapping`: IdP group
 * displayName, matched case-insensitively → datagrant group). Unmapped IdP groups grant nothing;
 * members that are not users (nested groups) are ignored.
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
    const dg = mapped.get(textOf(g.attrs.displayName).toLowerCase());
    if (!dg || !Array.isArray(g.attrs.members)) continue;
    for (const m of g.attrs.members) {
      if (typeof m !== 'object' || m === null || Array.isArray(m) || typeof m.value !== 'string') continue;
      if (m.type !== undefined && m.type !== 'User') continue;
      let set = groupsOf.get(m.value);
      if (!set) groupsOf.set(m.value, (set = new Set()));
      set.add(dg);
    }
  }
  const out: Record<string, ScimPrincipal> = {};
  for (const u of users) {
    if (u.type !== 'User' || u.attrs.active === false || typeof u.attrs.userName !== 'string') continue;
    // Only a store that has not yet named its older rows (assignPrincipalNames) gets here; guessing
    // a name could hand someone else's.
    if (u.principal === undefined) throw new Error(`SCIM user ${u.id} has no principal name yet`);
    const groups = groupsOf.get(u.id);
    if (opts.withAccessOnly && !groups?.size) continue;
    const email = emailOf(u.attrs);
    out[u.principal] = { type: 'person', ...(email ? { email } : {}), groups: [...(groups ?? [])].sort(), grants: [] };
  }
  return out;
}

/**
 * The principals the SCIM users of `store` add to `spec` (none without a `scim:` section).
 * `datagrant serve` and the CLI's plan, apply and drift merge them alike, so that both see the
 * same desired state. Throws PrincipalNameConflictError when the spec defines a principal whose
 * name a SCIM identity owns (deleted ones included): merged, the spec's principal would take over
 * the person's IAM user, key and role.
 */
export async function scimPeople(store: ScimStore, spec: Spec): Promise<Record<string, PrincipalSpec>> {
  if (!spec.scim) return {};
  const specNames = Object.keys(spec.principals);
  // Rows from before names were stored: named once, in creation order, around the spec's names.
  if (await store.hasUnnamedUsers()) await store.assignPrincipalNames(specNames);
  const owners = await store.principalOwners(specNames);
  if (owners.size) {
    const byId = new Map((await store.getMany('User', [...owners.values()])).map((u) => [u.id, u]));
    throw new PrincipalNameConflictError(
      specNames
        .filter((n) => owners.has(n.toLowerCase()))
        .map((n) => {
          const id = owners.get(n.toLowerCase())!;
          const userName = byId.get(id)?.attrs.userName;
          return { principal: n, scimId: id, ...(typeof userName === 'string' ? { scimUserName: userName } : {}) };
        }),
    );
  }
  const groups = await store.list('Group');
  // A person in no mapped group has no grants and compiles to nothing: only the mapped groups'
  // members are read (names are stored, so the others are not needed), which keeps a reconcile's
  // cost to the people who can have access however many users the IdP pushes.
  const mapped = new Set(Object.keys(spec.scim.groups ?? {}).map((g) => g.toLowerCase()));
  const members = new Set<string>();
  for (const g of groups) {
    if (!mapped.has(textOf(g.attrs.displayName).toLowerCase()) || !Array.isArray(g.attrs.members)) continue;
    for (const m of g.attrs.members) if (m && typeof m === 'object' && !Array.isArray(m) && typeof m.value === 'string') members.add(m.value);
  }
  const users = await store.getMany('User', [...members]);
  return scimPrincipals(users, groups, spec.scim.groups ?? {}, { withAccessOnly: true });
}

/**
 * The active SCIM users named `names` (principal names, compared ignoring case), as principals in
 * no group: requesters of approved requests who are in no mapped group, which scimPeople leaves
 * out. A name the spec defines, or that no active user has, gives nothing.
 */
export async function scimPeopleNamed(store: ScimStore, spec: Spec, names: Iterable<string>): Promise<Record<string, PrincipalSpec>> {
  const wanted = [...new Set(names)].filter((n) => !Object.hasOwn(spec.principals, n));
  if (!spec.scim || wanted.length === 0) return {};
  const owners = await store.principalOwners(wanted);
  const users = await store.getMany('User', [...new Set(owners.values())]);
  return scimPrincipals(users, [], {});
}

/**
 * Every active SCIM user as a principal, in the groups its IdP groups map to: who may ask for
 * access and who may approve it, including people in no mapped group (scimPeople leaves them out,
 * since they compile to nothing). Reads every user: for requests, not for reconciles.
 */
export async function allScimPeople(store: ScimStore, spec: Spec): Promise<Record<string, PrincipalSpec>> {
  if (!spec.scim) return {};
  if (await store.hasUnnamedUsers()) await store.assignPrincipalNames(Object.keys(spec.principals));
  const people = scimPrincipals(await store.list('User'), await store.list('Group'), spec.scim.groups ?? {});
  for (const name of Object.keys(spec.principals)) delete people[name];
  return people;
}
