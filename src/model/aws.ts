// The AWS resource model, shared by the compiler (which builds the desired resources) and the
// driver's reader (which builds the actual ones in exactly the same shapes, so that a second plan
// after an apply is empty). A change read back from a saved plan file is data: the driver narrows
// it here before acting on it, and refuses a kind or an attribute this model does not know.
//
// Resources (all addresses prefixed by the backend's name):
//  user/<name>                                  an IAM user: a principal
//  group/<name>                                 an IAM group
//  policy/<name>                                a customer managed policy
//  attachment/<user|group|role>/<entity>/<policy>  a managed policy attached to a user, group or role;
//                                               <policy> is the ARN of one datagrant did not make
//  membership/<group>/<user>                    a user in a group
//  role/<name>                                  an access-set role: the sessions of temporary
//                                               principals with the same access run as it
//  inline-policy/<user|group|role>/<entity>/<name>  an inline policy: a principal's or a role's
//                                               direct grants, a role's revocations; any other is
//                                               drift, to remove
//  key/<user>[~<access key id>]                 the slot's current access key, or (with its id)
//                                               another key of the user: superseded, or unknown
import { BackendError } from '../core/errors.js';
import { addressOf, type Address, type Change, type Json, type Lifecycle, type Resource } from '../core/types.js';

/** The IAM path that is datagrant's ownership boundary unless the backend names another. */
export const DEFAULT_IAM_PATH = '/datagrant/';
/** Tag on every IAM user datagrant makes. */
export const MANAGED_TAG = 'datagrant:managed';
/** The tag naming the installation (state) an IAM user belongs to. */
export const INSTALLATION_TAG = 'datagrant:installation';

export type Entity = 'user' | 'group' | 'role';
/** IAM's states of an access key (its StatusType). */
export type KeyStatus = 'Active' | 'Inactive' | 'Expired';

// `type`, not `interface`: attributes stay assignable to Resource's JSON `attrs`.
export type UserAttrs = { path: string; tags: Record<string, string> };
export type GroupAttrs = { path: string };
/**
 * `trust`: `'datagrant'` for the trust policy letting only datagrant's own identity assume the role
 * (the driver renders it from its caller identity, which the pure compiler cannot know); any other
 * document as read, canonical, so that it differs and shows as drift.
 */
export type RoleAttrs = { path: string; tags: Record<string, string>; description: string; maxSessionDuration: number; trust: Json };
/** Access-set roles are `dg-s-` and this many hex digits of the set's digest (compile/sessions.ts names them). */
export const SESSION_ROLE_PREFIX = 'dg-s-';
export const SESSION_ROLE_DIGEST_LENGTH = 12;
/** Whether `name` is an access-set role's name: the only roles sessions are issued for. */
export const isSessionRoleName = (name: string) => name.length === SESSION_ROLE_PREFIX.length + SESSION_ROLE_DIGEST_LENGTH && /^dg-s-[0-9a-f]+$/.test(name);
/** The trust attribute of a role whose trust policy is the one datagrant renders. */
export const DATAGRANT_TRUST = 'datagrant';
// The policies datagrant names (the compiler makes them; the access reader knows them as its own).
/**
 * The inline policy of an access-set role that denies the live sessions of principals no longer in
 * its set (issue 12): one statement per principal, on its SourceIdentity and the time its latest
 * session was issued, so a later session of someone else, or of that principal in another role, is
 * untouched.
 */
export const REVOKED_POLICY = 'dg-revoked';
/** A group's managed policies, one per part its grants need. */
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
/** Whether a managed policy's name is one of those datagrant grants through (a group's, shared, or the old per-user form). */
export const isGrantPolicyName = (name: string) => /^dg-(group|shared|user)-/.test(name);

/** `document`: the canonical policy (model/aws-policy.ts), or as read when it is not JSON (drift). */
export type PolicyAttrs = { path: string; document: Json };
/** `policy`: the name of datagrant's managed policy, or the ARN of another. */
export type AttachmentAttrs = { entity: Entity; entityName: string; policy: string };
export type MembershipAttrs = { group: string; user: string };
export type InlinePolicyAttrs = { entity: Entity; entityName: string; document: Json };
/** `status` is absent only where the plan stands in for a recorded key the read did not find (plan/diff.ts). */
export type KeyAttrs = { user: string; status?: KeyStatus };

/** Each kind's attributes: the one list of AWS kinds. */
export type AwsAttrs = {
  user: UserAttrs;
  group: GroupAttrs;
  role: RoleAttrs;
  policy: PolicyAttrs;
  attachment: AttachmentAttrs;
  membership: MembershipAttrs;
  'inline-policy': InlinePolicyAttrs;
  key: KeyAttrs;
};
export type AwsKind = keyof AwsAttrs;

export type AwsResourceOf<K extends AwsKind> = Resource & { kind: K; attrs: AwsAttrs[K] };
/** One of the AWS kinds, with that kind's attributes. */
export type AwsResource = { [K in AwsKind]: AwsResourceOf<K> }[AwsKind];

/** What each action has: a create only the desired object, a delete only the actual one. */
type Sides<R> =
  { action: 'create'; before: null; after: R } | { action: 'delete'; before: R; after: null } | { action: 'update' | 'replace'; before: R; after: R };
export type AwsChangeOf<K extends AwsKind> = Omit<Change, 'kind' | 'action' | 'before' | 'after'> & { kind: K } & Sides<AwsResourceOf<K>>;
export type AwsChange = { [K in AwsKind]: AwsChangeOf<K> }[AwsKind];

/** The object a change is about: the desired one, or for a delete the actual one. */
export const subjectOf = <K extends AwsKind>(c: AwsChangeOf<K>): AwsResourceOf<K> => (c.action === 'delete' ? c.before : c.after);

// ---------------------------------------------------------------- addresses and builders

export const awsAddress = {
  user: (backend: string, name: string) => addressOf(backend, 'user', name),
  group: (backend: string, name: string) => addressOf(backend, 'group', name),
  role: (backend: string, name: string) => addressOf(backend, 'role', name),
  policy: (backend: string, name: string) => addressOf(backend, 'policy', name),
  attachment: (backend: string, entity: Entity, entityName: string, policy: string) => addressOf(backend, 'attachment', entity, entityName, policy),
  membership: (backend: string, group: string, user: string) => addressOf(backend, 'membership', group, user),
  inlinePolicy: (backend: string, entity: Entity, entityName: string, name: string) => addressOf(backend, 'inline-policy', entity, entityName, name),
  /** The user's key slot; with an access key id, another key of the user. */
  key: (backend: string, user: string, accessKeyId?: string) => `${addressOf(backend, 'key', user)}${accessKeyId ? `~${accessKeyId}` : ''}`,
};

type Meta = { [key: string]: Json };
const withMeta = (meta: Meta | undefined) => (meta ? { meta } : {});
/** Policy names cannot hold a colon, so an ARN is never the name of datagrant's own policy. */
const isArn = (policy: string) => policy.startsWith('arn:');

export function userResource(backend: string, name: string, attrs: UserAttrs, meta?: Meta): AwsResourceOf<'user'> {
  return { address: awsAddress.user(backend, name), backend, kind: 'user', name, attrs, immutable: [], deps: [], ...withMeta(meta) };
}

export function groupResource(backend: string, name: string, attrs: GroupAttrs, meta?: Meta): AwsResourceOf<'group'> {
  return { address: awsAddress.group(backend, name), backend, kind: 'group', name, attrs, immutable: [], deps: [], ...withMeta(meta) };
}

/** IAM cannot move a role to another path: a role at another path is another role. */
export function roleResource(backend: string, name: string, attrs: RoleAttrs, meta?: Meta): AwsResourceOf<'role'> {
  return { address: awsAddress.role(backend, name), backend, kind: 'role', name, attrs, immutable: ['path'], deps: [], ...withMeta(meta) };
}

export function policyResource(backend: string, name: string, attrs: PolicyAttrs, meta?: Meta): AwsResourceOf<'policy'> {
  return { address: awsAddress.policy(backend, name), backend, kind: 'policy', name, attrs, immutable: ['path'], deps: [], ...withMeta(meta) };
}

/** `deps`: what the attachment's removal also waits for, besides its entity and datagrant's policy. */
export function attachmentResource(backend: string, attrs: AttachmentAttrs, deps: Address[] = []): AwsResourceOf<'attachment'> {
  const { entity, entityName, policy } = attrs;
  return {
    address: awsAddress.attachment(backend, entity, entityName, policy),
    backend,
    kind: 'attachment',
    name: policy,
    attrs,
    immutable: ['entity', 'entityName', 'policy'],
    deps: [awsAddress[entity](backend, entityName), ...(isArn(policy) ? [] : [awsAddress.policy(backend, policy)]), ...deps],
  };
}

/** `foreignUser`: a user outside datagrant's boundary in one of its groups, whose membership is drift. */
export function membershipResource(backend: string, attrs: MembershipAttrs, opts: { foreignUser?: boolean } = {}): AwsResourceOf<'membership'> {
  const group = awsAddress.group(backend, attrs.group);
  return {
    address: awsAddress.membership(backend, attrs.group, attrs.user),
    backend,
    kind: 'membership',
    name: attrs.user,
    attrs,
    immutable: ['group', 'user'],
    deps: opts.foreignUser ? [group] : [awsAddress.user(backend, attrs.user), group],
    ...withMeta(opts.foreignUser ? { foreignUser: true } : undefined),
  };
}

export function inlinePolicyResource(backend: string, name: string, attrs: InlinePolicyAttrs, deps: Address[] = []): AwsResourceOf<'inline-policy'> {
  return {
    address: awsAddress.inlinePolicy(backend, attrs.entity, attrs.entityName, name),
    backend,
    kind: 'inline-policy',
    name,
    attrs,
    immutable: ['entity', 'entityName'],
    deps: [awsAddress[attrs.entity](backend, attrs.entityName), ...deps],
  };
}

/**
 * `deps`: what the key waits for besides its user (it is issued last, so that it works the moment
 * it is handed out); `accessKeyId`: a key other than the slot's current one.
 */
export function keyResource(
  backend: string,
  attrs: KeyAttrs,
  opts: { deps: Address[]; accessKeyId?: string; meta?: Meta; lifecycle?: Lifecycle },
): AwsResourceOf<'key'> {
  return {
    address: awsAddress.key(backend, attrs.user, opts.accessKeyId),
    backend,
    kind: 'key',
    name: attrs.user,
    attrs,
    immutable: ['user'],
    deps: [awsAddress.user(backend, attrs.user), ...opts.deps],
    ...withMeta(opts.meta),
    ...(opts.lifecycle ? { lifecycle: opts.lifecycle } : {}),
  };
}

// ---------------------------------------------------------------- narrowing what was read back

/** One attribute's allowed values: the test, and how a refusal names them. */
type Rule<T extends Json | undefined> = { allowed: string; test: (v: Json | undefined) => v is T };
type RuleFor<T> = [T] extends [Json | undefined] ? Rule<T> : never;

const isObject = (v: Json | undefined): v is { [key: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v);
const KEY_STATUSES: readonly KeyStatus[] = ['Active', 'Inactive', 'Expired'];

const text: Rule<string> = { allowed: 'a non-empty string', test: (v): v is string => typeof v === 'string' && v !== '' };
const iamPath: Rule<string> = { allowed: 'an IAM path, /…/', test: (v): v is string => typeof v === 'string' && v.startsWith('/') && v.endsWith('/') };
const entity: Rule<Entity> = { allowed: '"user", "group" or "role"', test: (v): v is Entity => v === 'user' || v === 'group' || v === 'role' };
const seconds: Rule<number> = {
  allowed: 'whole seconds, 3600 to 43200',
  test: (v): v is number => Number.isInteger(v) && (v as number) >= 3600 && (v as number) <= 43200,
};
const description: Rule<string> = { allowed: 'a string', test: (v): v is string => typeof v === 'string' };
const tags: Rule<Record<string, string>> = {
  allowed: 'an object of strings',
  test: (v): v is Record<string, string> => isObject(v) && Object.values(v).every((t) => typeof t === 'string'),
};
const document: Rule<Json> = { allowed: 'a policy document', test: (v): v is Json => v !== undefined };
const keyStatus: Rule<KeyStatus | undefined> = {
  allowed: `${KEY_STATUSES.map((s) => JSON.stringify(s)).join(', ')} or none`,
  test: (v): v is KeyStatus | undefined => v === undefined || KEY_STATUSES.some((s) => s === v),
};

/** Every attribute of every kind has its rule: a new kind or attribute without one does not compile. */
const SHAPES = {
  user: { path: iamPath, tags },
  group: { path: iamPath },
  role: { path: iamPath, tags, description, maxSessionDuration: seconds, trust: document },
  policy: { path: iamPath, document },
  attachment: { entity, entityName: text, policy: text },
  membership: { group: text, user: text },
  'inline-policy': { entity, entityName: text, document },
  key: { user: text, status: keyStatus },
} satisfies { [K in AwsKind]: { [A in keyof AwsAttrs[K]]-?: RuleFor<AwsAttrs[K][A]> } };

export function isAwsKind(kind: string): kind is AwsKind {
  return Object.hasOwn(SHAPES, kind);
}

export const AWS_KINDS: readonly AwsKind[] = Object.keys(SHAPES).filter(isAwsKind);

const shown = (v: Json) => {
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

function attrProblems(kind: AwsKind, attrs: Resource['attrs']): string[] {
  const rules: { [attr: string]: Rule<Json | undefined> } = SHAPES[kind];
  const problems: string[] = [];
  for (const [attr, rule] of Object.entries(rules)) {
    const value = attrs[attr];
    if (!rule.test(value)) problems.push(`${value === undefined ? `no ${attr}` : `${attr} ${shown(value)}`} (allowed: ${rule.allowed})`);
  }
  for (const attr of Object.keys(attrs)) if (!Object.hasOwn(rules, attr)) problems.push(`attribute ${attr}, which no ${kind} has`);
  return problems;
}

function hasShape<K extends AwsKind>(kind: K, attrs: Resource['attrs']): attrs is AwsAttrs[K] {
  return attrProblems(kind, attrs).length === 0;
}

const refusal = (backend: string, address: string, code: string, why: string) =>
  new BackendError(`${backend}: ${address}: refused: ${why}; datagrant makes no such change: make the plan again`, backend, code, false, address);

const unknownKind = (backend: string, address: string, kind: string) =>
  refusal(backend, address, 'UnknownKind', `unknown kind ${JSON.stringify(kind)} (an aws backend has: ${AWS_KINDS.join(', ')})`);

/** `where`: which side of a change the resource is, for the message. */
function shaped<K extends AwsKind>(r: Resource, kind: K, where?: 'before' | 'after'): AwsResourceOf<K> {
  const { attrs } = r;
  if (!hasShape(kind, attrs))
    throw refusal(r.backend, r.address, 'MalformedResource', `the ${kind}${where ? ` in "${where}"` : ''} has ${attrProblems(kind, attrs).join('; ')}`);
  return { ...r, kind, attrs };
}

function changeOf<K extends AwsKind>(c: Change, kind: K): AwsChangeOf<K> {
  const side = (r: Resource | null, which: 'before' | 'after'): AwsResourceOf<K> => {
    if (r === null) throw refusal(c.backend, c.address, 'MalformedChange', `a ${c.action} needs "${which}"`);
    if (r.kind !== kind) throw refusal(c.backend, c.address, 'MalformedChange', `the change is of kind ${kind}, its "${which}" of kind ${r.kind}`);
    return shaped(r, kind, which);
  };
  const none = (r: Resource | null, which: 'before' | 'after'): null => {
    if (r !== null) throw refusal(c.backend, c.address, 'MalformedChange', `a ${c.action} takes no "${which}"`);
    return null;
  };
  const { before, after, ...rest } = c;
  switch (c.action) {
    case 'create':
      return { ...rest, kind, action: c.action, before: none(before, 'before'), after: side(after, 'after') };
    case 'delete':
      return { ...rest, kind, action: c.action, before: side(before, 'before'), after: none(after, 'after') };
    case 'update':
    case 'replace':
      return { ...rest, kind, action: c.action, before: side(before, 'before'), after: side(after, 'after') };
    default:
      throw refusal(c.backend, c.address, 'MalformedChange', `unknown action ${JSON.stringify(c.action)}`);
  }
}

type Narrower<K extends AwsKind> = { resource: (r: Resource) => AwsResourceOf<K>; change: (c: Change) => AwsChangeOf<K> };
const narrower = <K extends AwsKind>(kind: K): Narrower<K> => ({ resource: (r) => shaped(r, kind), change: (c) => changeOf(c, kind) });

// One per kind, so that looking one up by a kind read from the plan yields the union of the kinds.
const NARROW = {
  user: narrower('user'),
  group: narrower('group'),
  role: narrower('role'),
  policy: narrower('policy'),
  attachment: narrower('attachment'),
  membership: narrower('membership'),
  'inline-policy': narrower('inline-policy'),
  key: narrower('key'),
} satisfies { [K in AwsKind]: Narrower<K> };

/** A resource as the AWS model has it; an unknown kind or a malformed attribute is refused, naming the address. */
export function asAwsResource(r: Resource): AwsResource {
  if (!isAwsKind(r.kind)) throw unknownKind(r.backend, r.address, r.kind);
  return NARROW[r.kind].resource(r);
}

/** A change as the AWS model has it: known kind and action, and before and after of that kind and shape. */
export function asAwsChange(c: Change): AwsChange {
  if (!isAwsKind(c.kind)) throw unknownKind(c.backend, c.address, c.kind);
  return NARROW[c.kind].change(c);
}
