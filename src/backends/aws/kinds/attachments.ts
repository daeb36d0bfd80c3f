// A managed policy attached to a user, a group or an access-set role. The policy is datagrant's (by name) or, for one
// read from the account, another's (by ARN), which is only ever detached.
import {
  AttachGroupPolicyCommand,
  AttachRolePolicyCommand,
  AttachUserPolicyCommand,
  DetachGroupPolicyCommand,
  DetachRolePolicyCommand,
  DetachUserPolicyCommand,
} from '@aws-sdk/client-iam';
import { tolerate } from '../errors.js';
import { unlessDelete, type Handler } from './handler.js';

export const attachments: Handler<'attachment'> = {
  repeatable: unlessDelete,
  async execute(aws, c) {
    if (c.action === 'delete' || c.action === 'replace') {
      const { entity, entityName, policy } = c.before.attrs;
      const PolicyArn = await aws.policyArn(policy);
      await tolerate(['NoSuchEntity'], () =>
        entity === 'group'
          ? aws.iam.send(new DetachGroupPolicyCommand({ GroupName: entityName, PolicyArn }))
          : entity === 'role'
            ? aws.iam.send(new DetachRolePolicyCommand({ RoleName: entityName, PolicyArn }))
            : aws.iam.send(new DetachUserPolicyCommand({ UserName: entityName, PolicyArn })),
      );
      if (c.action === 'delete') return {};
    }
    const { entity, entityName, policy } = c.after.attrs;
    const PolicyArn = await aws.policyArn(policy);
    if (entity === 'group') await aws.iam.send(new AttachGroupPolicyCommand({ GroupName: entityName, PolicyArn }));
    else if (entity === 'role') await aws.iam.send(new AttachRolePolicyCommand({ RoleName: entityName, PolicyArn }));
    else await aws.iam.send(new AttachUserPolicyCommand({ UserName: entityName, PolicyArn }));
    return {};
  },
};
