// The ownership boundary, checked again for every change before any request (a saved plan may
// have been edited). Only users, groups, roles and policies at exactly the backend's IAM path (default
// /datagrant/) exist for datagrant; a pre-existing user elsewhere in the account is invisible to
// read and refused here, even when named alike. Roles likewise. One rule per kind, in a table the compiler holds
// to every kind.
import { BackendError } from '../../core/errors.js';
import type { Resource } from '../../core/types.js';
import { subjectOf, type AwsChange, type AwsChangeOf, type AwsKind, type Entity } from '../../model/aws.js';
import type { AwsConnection } from './connection.js';
import { policyNameOf, type AccountDetails } from './state.js';

/**
 * What the last read found: datagrant's own users, groups and policies, and every other user,
 * group and policy that exists in the account.
 */
export interface Ownership {
  users: Set<string>;
  groups: Set<string>;
  roles: Set<string>;
  policies: Set<string>;
  otherUsers: Set<string>;
  otherGroups: Set<string>;
  otherRoles: Set<string>;
  otherPolicies: Set<string>;
}

export function ownershipOf(details: AccountDetails, resources: Resource[]): Ownership {
  const names = (kind: AwsKind) => new Set(resources.filter((r) => r.kind === kind).map((r) => r.name));
  const users = names('user');
  const groups = names('group');
  const roles = names('role');
  const policies = names('policy');
  const other = (all: (string | undefined)[], mine: Set<string>) => new Set(all.filter((n): n is string => n !== undefined && !mine.has(n)));
  return {
    users,
    groups,
    roles,
    policies,
    otherUsers: other(
      details.users.map((u) => u.UserName),
      users,
    ),
    otherGroups: other(
      details.groups.map((g) => g.GroupName),
      groups,
    ),
    otherRoles: other(
      (details.roles ?? []).map((r) => r.RoleName),
      roles,
    ),
    otherPolicies: other(
      details.policies.map((p) => p.PolicyName ?? (p.Arn ? policyNameOf(p.Arn) : undefined)),
      policies,
    ),
  };
}

/** Keeps the ownership sets true as the driver creates and deletes. */
export function recordChange(o: Ownership | undefined, c: AwsChange): void {
  if (!o) return;
  const set = c.kind === 'user' ? o.users : c.kind === 'group' ? o.groups : c.kind === 'role' ? o.roles : c.kind === 'policy' ? o.policies : undefined;
  if (!set) return;
  const { name } = subjectOf(c);
  if (c.action === 'delete') set.delete(name);
  else set.add(name);
}

/** The checks a rule is made of; each throws NotOwned. */
interface Boundary {
  readonly owned: Ownership;
  /** `mustOwn`: the user must be datagrant's; otherwise it may also not exist at all. */
  user(name: string, mustOwn: boolean): void;
  group(name: string, mustOwn: boolean): void;
  role(name: string, mustOwn: boolean): void;
  entity(entity: Entity, name: string, mustOwn: boolean): void;
  refuse(what: string): never;
}

type Rule<K extends AwsKind> = (is: Boundary, c: AwsChangeOf<K>) => void;

/**
 * A change may only grant to, or change, an object datagrant owns, or remove from something that
 * is either datagrant's or does not exist (idempotent). A plan file edited to give an unmanaged
 * user a key, or to attach a policy datagrant did not make, stops here.
 */
const RULES: { [K in AwsKind]: Rule<K> } = {
  user: (is, c) => {
    if (c.action !== 'create') is.user(subjectOf(c).name, false);
  },
  group: (is, c) => {
    if (c.action !== 'create') is.group(subjectOf(c).name, false);
  },
  role: (is, c) => {
    if (c.action !== 'create') is.role(subjectOf(c).name, false);
  },
  policy: (is, c) => {
    const { name } = subjectOf(c);
    if (c.action !== 'create' && !is.owned.policies.has(name) && is.owned.otherPolicies.has(name)) is.refuse(`managed policy ${name}`);
  },
  key: (is, c) => is.user(subjectOf(c).attrs.user, c.action !== 'delete'),
  'inline-policy': (is, c) => {
    const { entity, entityName } = subjectOf(c).attrs;
    is.entity(entity, entityName, c.action !== 'delete');
  },
  membership: (is, c) => {
    if (c.action !== 'delete') {
      is.user(c.after.attrs.user, true);
      is.group(c.after.attrs.group, true);
    }
    // Removing anyone from datagrant's group, or datagrant's user from any group, is
    // datagrant's business; a membership between two objects of others is not.
    if (c.action === 'delete' || c.action === 'replace') {
      const { group, user } = c.before.attrs;
      const o = is.owned;
      if (!o.groups.has(group) && !o.users.has(user) && (o.otherGroups.has(group) || o.otherUsers.has(user)))
        is.refuse(`the membership of ${user} in ${group}`);
    }
  },
  attachment: (is, c) => {
    if (c.action !== 'delete') {
      const { entity, entityName, policy } = c.after.attrs;
      is.entity(entity, entityName, true);
      if (policy.startsWith('arn:') || !is.owned.policies.has(policy)) is.refuse(`managed policy ${policy}`);
    }
    if (c.action === 'delete' || c.action === 'replace') is.entity(c.before.attrs.entity, c.before.attrs.entityName, false);
  },
};

function check<K extends AwsKind>(is: Boundary, kind: K, c: AwsChangeOf<K>): void {
  RULES[kind](is, c);
}

/** Throws NotOwned unless everything `c` touches is datagrant's (or, for a removal, gone). */
export function checkOwnership(aws: AwsConnection, owned: Ownership, c: AwsChange): void {
  const { name, opts } = aws;
  const is: Boundary = {
    owned,
    refuse(what) {
      throw new BackendError(
        `${name}: ${c.address}: refused: ${what} is not datagrant's (outside ${opts.iamPath}${opts.installation ? ` or another installation's` : ''}); datagrant never changes what it does not own`,
        name,
        'NotOwned',
        false,
        c.address,
      );
    },
    user(user, mustOwn) {
      if (owned.users.has(user)) return;
      if (mustOwn || owned.otherUsers.has(user)) is.refuse(`IAM user ${user}`);
    },
    group(group, mustOwn) {
      if (owned.groups.has(group)) return;
      if (mustOwn || owned.otherGroups.has(group)) is.refuse(`IAM group ${group}`);
    },
    role(role, mustOwn) {
      if (owned.roles.has(role)) return;
      if (mustOwn || owned.otherRoles.has(role)) is.refuse(`IAM role ${role}`);
    },
    entity(entity, entityName, mustOwn) {
      if (entity === 'group') is.group(entityName, mustOwn);
      else if (entity === 'role') is.role(entityName, mustOwn);
      else is.user(entityName, mustOwn);
    },
  };
  check(is, c.kind, c);
}

/** An object of that name exists outside the boundary: creating ours would take it over. */
export function notOurs(aws: AwsConnection, what: string, name: string, path: string | undefined, address: string): BackendError {
  return new BackendError(
    `${aws.name}: ${address}: an IAM ${what} named ${name} already exists ${path ? `at path ${path}` : 'elsewhere in the account'}, outside datagrant's path ${aws.opts.iamPath}; datagrant will not take over an object it does not own — rename the ${what} in the spec, or remove or move the existing one by hand`,
    aws.name,
    'NotOwned',
    false,
    address,
  );
}
