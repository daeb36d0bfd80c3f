// Customer managed policies: datagrant's grants, one or more per group or principal. A changed
// document is a new default version; a changed path is a new ARN, so the policy is re-created and
// re-attached where it was.
import {
  AttachGroupPolicyCommand,
  AttachUserPolicyCommand,
  CreatePolicyCommand,
  CreatePolicyVersionCommand,
  DeletePolicyCommand,
  DeletePolicyVersionCommand,
  DetachGroupPolicyCommand,
  DetachUserPolicyCommand,
  GetPolicyCommand,
  GetPolicyVersionCommand,
  ListEntitiesForPolicyCommand,
  ListPolicyVersionsCommand,
} from '@aws-sdk/client-iam';
import type { ExecuteResult } from '../../backend.js';
import { canonicalJson } from '../../../core/canonical.js';
import type { AwsResourceOf } from '../../../model/aws.js';
import type { AwsConnection } from '../connection.js';
import { awsErrorCode, tolerate } from '../errors.js';
import { notOurs } from '../ownership.js';
import { isUnder, parsePolicyDocument } from '../state.js';
import type { Handler } from './handler.js';

export const policies: Handler<'policy'> = {
  // Re-creating a policy at a new path must not run twice: it waits for each attachment inside.
  repeatable: (action) => action !== 'delete' && action !== 'replace',
  async execute(aws, c) {
    if (c.action === 'delete') {
      await deletePolicy(aws, await aws.policyArn(c.before.name, c.before.attrs.path));
      return {};
    }
    const { name, attrs } = c.after;
    const document = JSON.stringify(attrs.document);
    const arn = await aws.policyArn(name, attrs.path);
    if (c.action === 'update') {
      await newPolicyVersion(aws, arn, document);
      return { meta: { arn } };
    }
    if (c.action === 'replace') return replacePolicy(aws, c.before, c.after, document);
    try {
      await aws.iam.send(new CreatePolicyCommand({ PolicyName: name, Path: attrs.path, PolicyDocument: document, ...aws.description() }));
      return { meta: { arn } };
    } catch (e) {
      if (awsErrorCode(e) !== 'EntityAlreadyExists') throw e;
    }
    // Policy names are unique in an account: ours at `arn`, or someone else's elsewhere.
    const existing = await tolerate(['NoSuchEntity'], () => aws.iam.send(new GetPolicyCommand({ PolicyArn: arn })));
    if (!existing?.Policy || !isUnder(existing.Policy.Path, aws.opts.iamPath)) throw notOurs(aws, 'policy', name, existing?.Policy?.Path, c.address);
    const version = await aws.iam.send(new GetPolicyVersionCommand({ PolicyArn: arn, VersionId: existing.Policy.DefaultVersionId }));
    const same = canonicalJson(parsePolicyDocument(version.PolicyVersion?.Document)) === canonicalJson(parsePolicyDocument(document));
    if (!same) await newPolicyVersion(aws, arn, document);
    return { meta: { arn } };
  },
};

/** CreatePolicyVersion as default; IAM keeps five versions, so the oldest non-default one makes room. */
async function newPolicyVersion(aws: AwsConnection, arn: string, document: string) {
  try {
    await aws.iam.send(new CreatePolicyVersionCommand({ PolicyArn: arn, PolicyDocument: document, SetAsDefault: true }));
    return;
  } catch (e) {
    if (awsErrorCode(e) !== 'LimitExceeded') throw e;
  }
  const versions = (await aws.iam.send(new ListPolicyVersionsCommand({ PolicyArn: arn }))).Versions ?? [];
  const oldest = versions.filter((v) => !v.IsDefaultVersion).sort((a, b) => (a.CreateDate?.getTime() ?? 0) - (b.CreateDate?.getTime() ?? 0))[0];
  if (oldest) await tolerate(['NoSuchEntity'], () => aws.iam.send(new DeletePolicyVersionCommand({ PolicyArn: arn, VersionId: oldest.VersionId })));
  await aws.iam.send(new CreatePolicyVersionCommand({ PolicyArn: arn, PolicyDocument: document, SetAsDefault: true }));
}

/** DeletePolicy first; AWS refuses while non-default versions exist, which are then removed. */
async function deletePolicy(aws: AwsConnection, arn: string) {
  try {
    await tolerate(['NoSuchEntity'], () => aws.iam.send(new DeletePolicyCommand({ PolicyArn: arn })));
    return;
  } catch (e) {
    if (awsErrorCode(e) !== 'DeleteConflict') throw e;
  }
  const versions = (await tolerate(['NoSuchEntity'], () => aws.iam.send(new ListPolicyVersionsCommand({ PolicyArn: arn }))))?.Versions ?? [];
  for (const v of versions.filter((x) => !x.IsDefaultVersion)) {
    await tolerate(['NoSuchEntity'], () => aws.iam.send(new DeletePolicyVersionCommand({ PolicyArn: arn, VersionId: v.VersionId })));
  }
  await tolerate(['NoSuchEntity'], () => aws.iam.send(new DeletePolicyCommand({ PolicyArn: arn })));
}

/** A new path means a new ARN: detach from everyone, delete, create at the new path, re-attach. */
async function replacePolicy(aws: AwsConnection, before: AwsResourceOf<'policy'>, after: AwsResourceOf<'policy'>, document: string): Promise<ExecuteResult> {
  const { name, attrs } = after;
  const oldArn = await aws.policyArn(before.name, before.attrs.path);
  const entities = await tolerate(['NoSuchEntity'], () => aws.iam.send(new ListEntitiesForPolicyCommand({ PolicyArn: oldArn })));
  const users = (entities?.PolicyUsers ?? []).map((u) => u.UserName!);
  const groups = (entities?.PolicyGroups ?? []).map((g) => g.GroupName!);
  for (const u of users) await tolerate(['NoSuchEntity'], () => aws.iam.send(new DetachUserPolicyCommand({ UserName: u, PolicyArn: oldArn })));
  for (const g of groups) await tolerate(['NoSuchEntity'], () => aws.iam.send(new DetachGroupPolicyCommand({ GroupName: g, PolicyArn: oldArn })));
  await deletePolicy(aws, oldArn);
  const arn = await aws.policyArn(name, attrs.path);
  await aws.iam.send(new CreatePolicyCommand({ PolicyName: name, Path: attrs.path, PolicyDocument: document, ...aws.description() }));
  for (const u of users) await aws.consistent(() => aws.iam.send(new AttachUserPolicyCommand({ UserName: u, PolicyArn: arn })));
  for (const g of groups) await aws.consistent(() => aws.iam.send(new AttachGroupPolicyCommand({ GroupName: g, PolicyArn: arn })));
  return { meta: { arn } };
}
