// IAM groups: one per spec group that grants something on the backend.
import { CreateGroupCommand, DeleteGroupCommand, GetGroupCommand, UpdateGroupCommand } from '@aws-sdk/client-iam';
import { subjectOf } from '../../../model/aws.js';
import { awsErrorCode, tolerate } from '../errors.js';
import { notOurs } from '../ownership.js';
import { isUnder } from '../state.js';
import { unlessDelete, type Handler } from './handler.js';

export const groups: Handler<'group'> = {
  repeatable: unlessDelete,
  async execute(aws, c) {
    const group = subjectOf(c).name;
    if (c.action === 'delete') {
      await tolerate(['NoSuchEntity'], () => aws.iam.send(new DeleteGroupCommand({ GroupName: group })));
      return {};
    }
    const { path } = c.after.attrs;
    if (c.action === 'update') {
      await aws.iam.send(new UpdateGroupCommand({ GroupName: group, NewPath: path }));
      return {};
    }
    try {
      await aws.iam.send(new CreateGroupCommand({ GroupName: group, Path: path }));
      return {};
    } catch (e) {
      if (awsErrorCode(e) !== 'EntityAlreadyExists') throw e;
    }
    const existing = (await aws.iam.send(new GetGroupCommand({ GroupName: group, MaxItems: 1 }))).Group;
    if (!isUnder(existing?.Path, aws.opts.iamPath)) throw notOurs(aws, 'group', group, existing?.Path, c.address);
    if (existing?.Path !== path) await aws.iam.send(new UpdateGroupCommand({ GroupName: group, NewPath: path }));
    return {};
  },
};
