// A user's policies: one per group it is in, one for its direct grants; any other that is read is
// drift, and its change is a delete. Putting or deleting a policy is no change to the user in
// RGW's sense (its other policies and its keys stay): only its queue is waited for.
import { DeleteUserPolicyCommand } from '@aws-sdk/client-iam';
import { subjectOf } from '../../../model/rgw.js';
import { unlessGone } from '../errors.js';
import type { Handler } from './handler.js';

export const inlinePolicies: Handler<'inline-policy'> = {
  async execute(rgw, c) {
    const { name, attrs } = subjectOf(c);
    await rgw.withUser(attrs.user, async () => {
      if (c.action === 'delete') {
        await unlessGone(() => rgw.iam.send(new DeleteUserPolicyCommand({ UserName: rgw.uid(attrs.user), PolicyName: name })));
        return;
      }
      await rgw.putUserPolicy(attrs.user, name, JSON.stringify(c.after.attrs.document));
    });
    return {};
  },
};
