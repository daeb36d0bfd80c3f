// Sessions of temporary principals (issue 12): AssumeRole on the principal's access-set role, named
// after the principal (SourceIdentity survives role chaining and names the person in CloudTrail),
// then a bounded wait until AWS accepts the new credentials, so the first use never fails.
// Readiness is shared with new access keys (kinds/keys.ts). Secrets never enter a message.
import { GetRoleCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import type { IssuedBackendSession, SessionIssueRequest } from '../backend.js';
import { BackendError } from '../../core/errors.js';
import { isSessionRoleName, SESSION_ROLE_PREFIX } from '../../model/aws.js';
import type { AwsConnection } from './connection.js';
import { awsErrorCode } from './errors.js';

/** STS's shortest session, and IAM's longest role session. */
export const STS_SESSION_SECONDS = { min: 900, max: 43200 } as const;
/** How long new credentials may take to be accepted before issuing them fails (a session) or is reported (a key). */
export const READY_WAIT_MS = 10_000;

/** RoleSessionName: 2–64 of [\w+=,.@-]; anything else in a principal's name becomes `-`. */
export function roleSessionName(principal: string): string {
  const name = principal.replace(/[^\w+=,.@-]/g, '-').slice(0, 64);
  return name.length >= 2 ? name : `${name}--`.slice(0, 2);
}

export async function issueSession(aws: AwsConnection, req: SessionIssueRequest): Promise<IssuedBackendSession> {
  if (!isSessionRoleName(req.target)) {
    throw new BackendError(
      `${aws.name}: refused: ${JSON.stringify(req.target)} is not one of datagrant's access-set roles (${SESSION_ROLE_PREFIX}<digest>); sessions are only issued for those`,
      aws.name,
      'NotOwned',
      false,
    );
  }
  const { account, partition } = await aws.caller();
  const RoleArn = `arn:${partition}:iam::${account}:role${aws.opts.iamPath}${req.target}`;
  const assume = (seconds: number) =>
    aws.sts.send(
      new AssumeRoleCommand({
        RoleArn,
        RoleSessionName: roleSessionName(req.principal),
        SourceIdentity: req.principal,
        DurationSeconds: Math.max(STS_SESSION_SECONDS.min, Math.min(seconds, STS_SESSION_SECONDS.max)),
      }),
    );
  let out;
  try {
    out = await assume(req.durationSeconds);
  } catch (e) {
    // Longer than the role allows (the spec lengthened maxSession, not yet applied): the role's own.
    if (awsErrorCode(e) !== 'ValidationError' || !/DurationSeconds|MaxSessionDuration/i.test((e as Error).message)) throw e;
    const role = await aws.iam.send(new GetRoleCommand({ RoleName: req.target }));
    out = await assume(Math.min(req.durationSeconds, role.Role?.MaxSessionDuration ?? 3600));
  }
  const c = out.Credentials;
  if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
    throw new BackendError(`${aws.name}: STS AssumeRole on role ${req.target} returned no credentials`, aws.name, 'NoCredentials', false);
  }
  const secret = { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken };
  const ready = await waitAccepted(aws, secret);
  if (!ready.accepted) {
    throw new BackendError(
      `${aws.name}: the session for role ${req.target} was issued but AWS did not accept it within ${READY_WAIT_MS / 1000} s (last answer: ${ready.last}); try again`,
      aws.name,
      'NotReady',
      true,
    );
  }
  return { secret, expiresAt: c.Expiration.toISOString(), target: req.target, readyMs: ready.ms };
}

/**
 * Asks STS who the new credentials are (GetCallerIdentity needs no permission) until AWS accepts
 * them, with backoff, for at most READY_WAIT_MS. `last` is the last refusal's code, never a secret.
 */
export async function waitAccepted(
  aws: AwsConnection,
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
  budgetMs = READY_WAIT_MS,
): Promise<{ accepted: boolean; ms: number; last?: string }> {
  // A copy: the SDK marks the credentials object it is given (`$source`), and the caller's is the secret handed out.
  const sts = aws.stsAs({ ...credentials });
  const started = Date.now();
  let last: string | undefined;
  try {
    for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
      try {
        await sts.send(new GetCallerIdentityCommand({}));
        return { accepted: true, ms: Date.now() - started };
      } catch (e) {
        last = awsErrorCode(e) ?? (e as Error).name;
        if (Date.now() - started + delay > budgetMs) return { accepted: false, ms: Date.now() - started, last };
        await aws.backoff(delay);
      }
    }
  } finally {
    sts.destroy();
  }
}
