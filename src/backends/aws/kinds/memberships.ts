// A user in a group: how a principal receives its groups' grants.
import { AddUserToGroupCommand, RemoveUserFromGroupCommand } from '@aws-sdk/client-iam';
import { tolerate } from '../errors.js';
import { unlessDelete, type Handler } from './handler.js';

export const memberships: Handler<'membership'> = {
  repeatable: unlessDelete,
  async execute(aws, c) {
    if (c.action === 'delete' || c.action === 'replace') {
      const { group, user } = c.before.attrs;
      await tolerate(['NoSuchEntity'], () => aws.iam.send(new RemoveUserFromGroupCommand({ GroupName: group, UserName: user })));
      if (c.action === 'delete') return {};
    }
    await aws.iam.send(new AddUserToGroupCommand({ GroupName: c.after.attrs.group, UserName: c.after.attrs.user }));
    return {};
  },
};
