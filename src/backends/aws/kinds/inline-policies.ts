// Inline policies of a user, a group or a role: a principal's or a role's direct grants when they
// fit, a role's revocations; any other that is read is drift, and its change is a delete.
import {
  DeleteGroupPolicyCommand,
  DeleteRolePolicyCommand,
  DeleteUserPolicyCommand,
  PutGroupPolicyCommand,
  PutRolePolicyCommand,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';
import { subjectOf } from '../../../model/aws.js';
import { tolerate } from '../errors.js';
import { unlessDelete, type Handler } from './handler.js';

export const inlinePolicies: Handler<'inline-policy'> = {
  repeatable: unlessDelete,
  async execute(aws, c) {
    const { name: PolicyName, attrs } = subjectOf(c);
    const { entity, entityName } = attrs;
    if (c.action === 'delete') {
      await tolerate(['NoSuchEntity'], () =>
        entity === 'group'
          ? aws.iam.send(new DeleteGroupPolicyCommand({ GroupName: entityName, PolicyName }))
          : entity === 'role'
            ? aws.iam.send(new DeleteRolePolicyCommand({ RoleName: entityName, PolicyName }))
            : aws.iam.send(new DeleteUserPolicyCommand({ UserName: entityName, PolicyName })),
      );
      return {};
    }
    const PolicyDocument = JSON.stringify(c.after.attrs.document);
    if (entity === 'group') await aws.iam.send(new PutGroupPolicyCommand({ GroupName: entityName, PolicyName, PolicyDocument }));
    else if (entity === 'role') await aws.iam.send(new PutRolePolicyCommand({ RoleName: entityName, PolicyName, PolicyDocument }));
    else await aws.iam.send(new PutUserPolicyCommand({ UserName: entityName, PolicyName, PolicyDocument }));
    return {};
  },
};
