// The Ceph RGW resource model, shared by the compiler (the desired resources) and the driver's
// reader (the actual ones, in exactly the same shapes, so that a second plan after an apply is
// empty). A change read back from a saved plan file is data: the driver narrows it here first.
//
// Resources (all addresses prefixed by the backend's name; names are the spec's principals, the
// RGW uid is the backend's user prefix and the principal):
//  user/<principal>                    an RGW user: a principal
//  inline-policy/<principal>/<name>    one of the user's policies: `dg-group-<group>` per group
//                                      (RGW has no groups: each member holds its groups' grants),
//                                      `dg-direct-grants`; any other that is read is drift
//  key/<principal>[~<access key id>]   the slot's current S3 key, or (with its id) another key of
//                                      the user: superseded, or unknown
//
// Any change to an RGW user (a key made or removed, a suspension, any modify) deletes all its
// inline policies (Ceph bug 48761): the driver puts them back within the same change. So that
// issuing a principal's first key never has policies to put back, the policies wait for the key.
import { z } from 'zod';
import { BackendError } from '../core/errors.js';
import { addressOf, type Change, type Json, type Lifecycle, type Resource } from '../core/types.js';

/** The uid prefix that is datagrant's ownership boundary unless the backend names another. */
export const DEFAULT_USER_PREFIX = 'dg-';
/** RGW's max-buckets that forbids creating buckets (a new user may create 1,000 by default). */
export const NO_BUCKETS = -1;
/** What RGW accepts as a user policy's name. */
export const RGW_POLICY_NAME_RE = /^[A-Za-z0-9:=,.@-]{1,128}$/;
/**
 * What datagrant puts in one user policy. RGW sets no limit of its own but refuses a request
 * parameter over 1 MiB (rgw_max_put_param_size), and a document is sent URL-encoded, twice over
 * for `%` and `+` (see the driver): 64 KiB stays far below that however it is encoded.
 */
export const RGW_POLICY_MAX_CHARS = 65_536;

/** The uid of a principal's user. */
export const rgwUid = (prefix: string, principal: string) => `${prefix}${principal}`;

/**
 * The display name of every user datagrant makes: its mark. It names the prefix, so that a user of
 * a nested prefix (`dg-team-` inside `dg-`) is never taken for one of `dg-`'s, and the installation.
 */
export function rgwMarker(prefix: string, installation?: string): string {
  return `datagrant prefix=${prefix}${installation ? ` installation=${installation}` : ''}`;
}

/** The prefix and installation a display name marks, or undefined when it is not datagrant's mark. */
export function parseRgwMarker(displayName: string): { prefix: string; installation?: string } | undefined {
  const m = /^datagrant prefix=(\S+)(?: installation=(\S+))?$/.exec(displayName);
  if (!m) return undefined;
  return { prefix: m[1]!, ...(m[2] ? { installation: m[2] } : {}) };
}

const attrsSchemas = {
  user: z.strictObject({
    /** datagrant's mark (rgwMarker); as read when someone changed it. */
    displayName: z.string(),
    maxBuckets: z.number().int(),
    /** Admin capabilities, `type=perm`, sorted; datagrant grants none, so any is drift. */
    caps: z.array(z.string()),
    /** A system user bypasses every policy; datagrant's never are. */
    system: z.boolean(),
  }),
  'inline-policy': z.strictObject({ user: z.string().min(1), document: z.custom<Json>((v) => v !== undefined, 'a policy document') }),
  /**
   * `status`: RGW keys have none of their own; a suspended user's keys are all refused, which reads
   * `Inactive`. Absent only where the plan stands in for a recorded key the read did not find.
   */
  key: z.strictObject({ user: z.string().min(1), status: z.enum(['Active', 'Inactive']).optional() }),
};

export type RgwAttrs = { [K in keyof typeof attrsSchemas]: z.infer<(typeof attrsSchemas)[K]> };
export type RgwKind = keyof RgwAttrs;
export const RGW_KINDS = Object.keys(attrsSchemas) as RgwKind[];
export type KeyStatus = NonNullable<RgwAttrs['key']['status']>;

export type RgwResourceOf<K extends RgwKind> = Omit<Resource, 'kind' | 'attrs'> & { kind: K; attrs: RgwAttrs[K] };
export type RgwResource = { [K in RgwKind]: RgwResourceOf<K> }[RgwKind];

/** What each action has: a create only the desired object, a delete only the actual one. */
type Sides<R> =
  { action: 'create'; before: null; after: R } | { action: 'delete'; before: R; after: null } | { action: 'update' | 'replace'; before: R; after: R };
export type RgwChangeOf<K extends RgwKind> = Omit<Change, 'kind' | 'action' | 'before' | 'after'> & { kind: K } & Sides<RgwResourceOf<K>>;
export type RgwChange = { [K in RgwKind]: RgwChangeOf<K> }[RgwKind];

/** The object a change is about: the desired one, or for a delete the actual one. */
export const subjectOf = <K extends RgwKind>(c: RgwChangeOf<K>): RgwResourceOf<K> => (c.action === 'delete' ? c.before : c.after);

// ---------------------------------------------------------------- addresses and builders

export const rgwAddress = {
  user: (backend: string, principal: string) => addressOf(backend, 'user', principal),
  inlinePolicy: (backend: string, principal: string, name: string) => addressOf(backend, 'inline-policy', principal, name),
  /** The principal's key slot; with an access key id, another key of the user. */
  key: (backend: string, principal: string, accessKeyId?: string) => `${addressOf(backend, 'key', principal)}${accessKeyId ? `~${accessKeyId}` : ''}`,
};

type Meta = { [key: string]: Json };
const withMeta = (meta: Meta | undefined) => (meta ? { meta } : {});

export function userResource(backend: string, principal: string, attrs: RgwAttrs['user'], meta?: Meta): RgwResourceOf<'user'> {
  return { address: rgwAddress.user(backend, principal), backend, kind: 'user', name: principal, attrs, immutable: [], deps: [], ...withMeta(meta) };
}

/** Waits for the user and its key slot: issuing the key first leaves it no policy to put back. */
export function inlinePolicyResource(backend: string, name: string, attrs: RgwAttrs['inline-policy']): RgwResourceOf<'inline-policy'> {
  return {
    address: rgwAddress.inlinePolicy(backend, attrs.user, name),
    backend,
    kind: 'inline-policy',
    name,
    attrs,
    immutable: ['user'],
    deps: [rgwAddress.user(backend, attrs.user), rgwAddress.key(backend, attrs.user)],
  };
}

/** `accessKeyId`: a key other than the slot's current one. */
export function keyResource(
  backend: string,
  attrs: RgwAttrs['key'],
  opts: { accessKeyId?: string; meta?: Meta; lifecycle?: Lifecycle } = {},
): RgwResourceOf<'key'> {
  return {
    address: rgwAddress.key(backend, attrs.user, opts.accessKeyId),
    backend,
    kind: 'key',
    name: attrs.user,
    attrs,
    immutable: ['user'],
    deps: [rgwAddress.user(backend, attrs.user)],
    ...withMeta(opts.meta),
    ...(opts.lifecycle ? { lifecycle: opts.lifecycle } : {}),
  };
}

// ---------------------------------------------------------------- narrowing what was read back

const isKind = (kind: unknown): kind is RgwKind => typeof kind === 'string' && Object.hasOwn(attrsSchemas, kind);

/**
 * The change as an `RgwChange`, or a BackendError naming its address and what is wrong: an unknown
 * kind or action, a side of another kind, a side the action needs missing (or one it takes present),
 * or attributes not of the kind's shape. Nothing is sent to the gateway for such a change.
 */
export function asRgwChange(change: Change): RgwChange {
  const { backend, address } = change;
  const refuse = (problem: string, code = 'MalformedChange') =>
    new BackendError(`${backend}: ${address}: refused: ${problem}; datagrant makes no such change: make the plan again`, backend, code, false, address);
  const kind: unknown = change.kind;
  if (!isKind(kind)) throw refuse(`unknown kind ${JSON.stringify(kind)} (an rgw backend has: ${RGW_KINDS.join(', ')})`, 'UnknownKind');
  const needs = { create: ['after'], delete: ['before'], update: ['before', 'after'], replace: ['before', 'after'] }[change.action];
  if (!needs) throw refuse(`unknown action ${JSON.stringify(change.action)}`);
  for (const side of ['before', 'after'] as const) {
    const r = change[side] as unknown;
    if (!needs.includes(side)) {
      if (r !== null && r !== undefined) throw refuse(`a ${change.action} takes no "${side}"`);
      continue;
    }
    if (r === null || typeof r !== 'object') throw refuse(`a ${change.action} needs "${side}"`);
    const { kind: rkind, name, attrs } = r as { kind?: unknown; name?: unknown; attrs?: unknown };
    if (rkind !== kind) throw refuse(`the change is of kind ${kind}, its "${side}" of kind ${String(rkind)}`);
    if (typeof name !== 'string' || name === '') throw refuse(`the ${kind} in "${side}" has no name`, 'MalformedResource');
    const parsed = attrsSchemas[kind].safeParse(attrs);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${[side, 'attrs', ...i.path.map(String)].join('.')}: ${i.message}`);
      throw refuse(`the ${kind} in "${side}" is malformed (${problems.join('; ')})`, 'MalformedResource');
    }
  }
  return change as RgwChange;
}
