// Access-set roles: what the sessions of temporary principals run as (issue 12). The trust policy
// is rendered here from datagrant's own identity (trust.ts). One found at the name when creating
// is taken over only if it lies inside the boundary and belongs to no other installation.
import {
  CreateRoleCommand,
  DeleteRoleCommand,
  GetRoleCommand,
  TagRoleCommand,
  UntagRoleCommand,
  UpdateAssumeRolePolicyCommand,
  UpdateRoleCommand,
} from '@aws-sdk/client-iam';
import { BackendError } from '../../../core/errors.js';
import { DATAGRANT_TRUST, INSTALLATION_TAG, subjectOf, type AwsChangeOf, type RoleAttrs } from '../../../model/aws.js';
import type { AwsConnection } from '../connection.js';
import { awsErrorCode, tolerate } from '../errors.js';
import { notOurs } from '../ownership.js';
import { isUnder } from '../state.js';
import { trustDocument, trustedPrincipal } from '../trust.js';
import { unlessDelete, type Handler } from './handler.js';

export const roles: Handler<'role'> = {
  repeatable: unlessDelete,
  async execute(aws, c) {
    const role = subjectOf(c).name;
    if (c.action === 'delete' || c.action === 'replace') {
      // Deleting the role ends every session of it: its attachments and inline policies went first.
      await tolerate(['NoSuchEntity'], () => aws.iam.send(new DeleteRoleCommand({ RoleName: role })));
      if (c.action === 'delete') return {};
    }
    const after = c.after.attrs;
    const trust = await renderTrust(aws, c);
    if (c.action === 'update') {
      await updateRole(aws, role, c.before.attrs, after, trust);
      return {};
    }
    try {
      await aws.iam.send(
        new CreateRoleCommand({
          RoleName: role,
          Path: after.path,
          AssumeRolePolicyDocument: trust,
          Description: after.description,
          MaxSessionDuration: after.maxSessionDuration,
          Tags: Object.entries(after.tags).map(([Key, Value]) => ({ Key, Value })),
        }),
      );
      return {};
    } catch (e) {
      if (awsErrorCode(e) !== 'EntityAlreadyExists') throw e;
    }
    const existing = (await aws.iam.send(new GetRoleCommand({ RoleName: role }))).Role;
    if (!isUnder(existing?.Path, aws.opts.iamPath)) throw notOurs(aws, 'role', role, existing?.Path, c.address);
    const tags: Record<string, string> = {};
    for (const t of existing?.Tags ?? []) if (t.Key) tags[t.Key] = t.Value ?? '';
    const theirs = tags[INSTALLATION_TAG];
    if (aws.opts.installation && theirs && theirs !== aws.opts.installation) {
      throw new BackendError(
        `${aws.name}: ${c.address}: IAM role ${role} belongs to another datagrant installation (${theirs}); datagrant will not take it over`,
        aws.name,
        'NotOwned',
        false,
        c.address,
      );
    }
    const before: RoleAttrs = {
      path: existing?.Path ?? '/',
      tags,
      description: existing?.Description ?? '',
      maxSessionDuration: existing?.MaxSessionDuration ?? 3600,
      // Rewritten whatever it is: taking a role over includes its trust.
      trust: null,
    };
    await updateRole(aws, role, before, after, trust);
    return {};
  },
};

/** Only datagrant's own trust policy is ever written; a plan asking for another is refused. */
async function renderTrust(aws: AwsConnection, c: AwsChangeOf<'role'>): Promise<string> {
  if (c.after?.attrs.trust !== DATAGRANT_TRUST) {
    throw new BackendError(
      `${aws.name}: ${c.address}: refused: a role's trust can only be datagrant's own ("${DATAGRANT_TRUST}"); datagrant makes no such change: make the plan again`,
      aws.name,
      'MalformedResource',
      false,
      c.address,
    );
  }
  return JSON.stringify(trustDocument(await trustedPrincipal(aws)));
}

async function updateRole(aws: AwsConnection, role: string, before: RoleAttrs, after: RoleAttrs, trust: string) {
  if (before.description !== after.description || before.maxSessionDuration !== after.maxSessionDuration) {
    await aws.iam.send(new UpdateRoleCommand({ RoleName: role, Description: after.description, MaxSessionDuration: after.maxSessionDuration }));
  }
  if (before.trust !== after.trust) await aws.iam.send(new UpdateAssumeRolePolicyCommand({ RoleName: role, PolicyDocument: trust }));
  const removed = Object.keys(before.tags).filter((k) => !(k in after.tags));
  const changed = Object.entries(after.tags).filter(([k, v]) => before.tags[k] !== v);
  if (removed.length) await aws.iam.send(new UntagRoleCommand({ RoleName: role, TagKeys: removed }));
  if (changed.length) await aws.iam.send(new TagRoleCommand({ RoleName: role, Tags: changed.map(([Key, Value]) => ({ Key, Value })) }));
}
