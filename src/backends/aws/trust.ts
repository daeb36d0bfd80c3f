// The trust policy of datagrant's access-set roles: only the identity datagrant runs as may assume
// them, and only naming a SourceIdentity (the principal, so that CloudTrail names the person). The
// pure compiler cannot know that identity, so desired roles say `trust: 'datagrant'`; the driver
// renders the document here when it writes a role, and the reader maps a document equal to it back.
import { GetRoleCommand } from '@aws-sdk/client-iam';
import { BackendError } from '../../core/errors.js';
import type { Json } from '../../core/types.js';
import type { AwsConnection } from './connection.js';
import { tolerate } from './errors.js';

const principals = new WeakMap<AwsConnection, Promise<string>>();

/**
 * The ARN a trust policy names for the caller. An assumed-role caller (`arn:aws:sts::1:assumed-role/
 * NAME/session`) is named by its role's ARN, path included, which only IAM knows: a trust policy
 * cannot name a session, and the session's ARN changes with every session.
 */
export function trustedPrincipal(aws: AwsConnection): Promise<string> {
  let p = principals.get(aws);
  if (!p) {
    p = aws.caller().then(async ({ arn, account, partition }) => {
      // The account root as Principal means every identity in the account that may call
      // sts:AssumeRole (and names any SourceIdentity it likes, dodging the per-principal deny).
      if (/^arn:[^:]+:iam::\d+:root$/.test(arn)) {
        throw new BackendError(
          `${aws.name}: datagrant runs as the account root (${arn}); the roles of temporary principals would trust everyone in the account who may assume roles. Run datagrant as an IAM user or role of its own`,
          aws.name,
          'RootCaller',
          false,
        );
      }
      const assumed = /^arn:[^:]+:sts::\d+:assumed-role\/([^/]+)\//.exec(arn);
      if (!assumed) return arn;
      const role = await tolerate(['NoSuchEntity', 'AccessDenied'], () => aws.iam.send(new GetRoleCommand({ RoleName: assumed[1]! })));
      return role?.Role?.Arn ?? `arn:${partition}:iam::${account}:role/${assumed[1]!}`;
    });
    p.catch(() => principals.delete(aws));
    principals.set(aws, p);
  }
  return p;
}

/** The document as written to IAM (not normalised: a trust policy must have no Resource, not even an empty one). */
export function trustDocument(principal: string): Json {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: { AWS: principal },
        Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
        // A session without a SourceIdentity would name no principal in CloudTrail.
        Condition: { Null: { 'sts:SourceIdentity': 'false' } },
      },
    ],
  };
}
