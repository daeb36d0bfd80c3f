// Access keys: the credential of each principal. A new key's secret is returned once, to be stored
// at once; a key is deactivated before it is deleted. Rotation creates a new key and leaves the old
// one to a later delete, once its grace has passed.
import { CreateAccessKeyCommand, DeleteAccessKeyCommand, UpdateAccessKeyCommand } from '@aws-sdk/client-iam';
import { BackendError } from '../../../core/errors.js';
import { subjectOf } from '../../../model/aws.js';
import type { AwsConnection } from '../connection.js';
import { awsErrorCode, isRetryable, isThrottling, tolerate } from '../errors.js';
import { listKeys } from '../read.js';
import { waitAccepted } from '../sessions.js';
import type { Handler } from './handler.js';

export const keys: Handler<'key'> = {
  // Issuing a key must not run twice: it waits for its user inside, and cleans up after itself.
  repeatable: () => false,
  async execute(aws, c) {
    const { user } = subjectOf(c).attrs;
    const id = c.before?.meta?.accessKeyId;
    const beforeId = typeof id === 'string' ? id : '';
    if (c.action === 'delete') {
      if (!beforeId) throw new BackendError(`${aws.name}: ${c.address}: no access key id to delete`, aws.name, 'MissingKeyId', false, c.address);
      // Deactivated first, so that a key whose deletion fails half-way no longer opens anything.
      await tolerate(['NoSuchEntity'], () => aws.iam.send(new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: beforeId, Status: 'Inactive' })));
      await tolerate(['NoSuchEntity'], () => aws.iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: beforeId })));
      return {};
    }
    const inactive = c.after.attrs.status === 'Inactive';
    if (c.action === 'update') {
      await aws.iam.send(new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: beforeId, Status: inactive ? 'Inactive' : 'Active' }));
      return {};
    }
    // create, or replace (rotation): a new key; the old one stays until its grace ends and a later
    // delete change removes it.
    let created;
    const attemptStart = Date.now();
    try {
      created = (await aws.consistent(() => aws.iam.send(new CreateAccessKeyCommand({ UserName: user })))).AccessKey;
    } catch (e) {
      if (isRetryable(e) && !isThrottling(e)) {
        // Ambiguous: AWS may have created a key whose secret we never received. Such a key is
        // useless and must not linger, so delete any key of this user made by this attempt
        // before the error propagates; repeating the change is then safe.
        await undoLostKeys(aws, user, beforeId, attemptStart);
      }
      if (awsErrorCode(e) !== 'LimitExceeded') throw e;
      const ids = (await listKeys(aws, user)).map((k) => `${k.accessKeyId} (${k.status}, created ${k.createdAt})`);
      throw new BackendError(
        `${aws.name}: ${c.address}: user ${user} already has ${ids.length} access keys: ${ids.join(', ')}; AWS allows two per user, so one must be deleted before a new key can be issued`,
        aws.name,
        'LimitExceeded',
        false,
        c.address,
      );
    }
    if (!created?.AccessKeyId || !created.SecretAccessKey)
      throw new BackendError(`${aws.name}: ${c.address}: CreateAccessKey returned no key`, aws.name, 'NoKey', false, c.address);
    const accessKeyId = created.AccessKeyId;
    const createdAt = (created.CreateDate ?? new Date()).toISOString();
    if (inactive) await aws.iam.send(new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: accessKeyId, Status: 'Inactive' }));
    const result = {
      secret: { accessKeyId, secretAccessKey: created.SecretAccessKey },
      credential: { credentialId: accessKeyId, createdAt },
      meta: { accessKeyId, createdAt },
    };
    if (inactive) return result;
    // A new key can be refused for seconds after it is made: it is issued once AWS accepts it. A
    // key still refused after the bounded wait is kept (its secret is stored with it) rather than
    // lost; the wait says so.
    const ready = await waitAccepted(aws, { accessKeyId, secretAccessKey: created.SecretAccessKey });
    return { ...result, readyMs: ready.ms, ready: ready.accepted };
  },
};

/** Deletes the keys of `user` created since `since` (ms), other than `keep`. */
async function undoLostKeys(aws: AwsConnection, user: string, keep: string, since: number): Promise<void> {
  // IAM's CreateDate has second precision; allow for clock skew between us and AWS.
  const cutoff = since - 5_000;
  for (const k of await listKeys(aws, user)) {
    if (k.accessKeyId === keep || Date.parse(k.createdAt) < cutoff) continue;
    await tolerate(['NoSuchEntity'], () => aws.iam.send(new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: k.accessKeyId, Status: 'Inactive' })));
    await tolerate(['NoSuchEntity'], () => aws.iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: k.accessKeyId })));
  }
}
