// IAM users: the principals. One found at the name when creating is taken over only if it lies
// inside the boundary and belongs to no other installation.
import {
  CreateUserCommand,
  DeactivateMFADeviceCommand,
  DeleteAccessKeyCommand,
  DeleteLoginProfileCommand,
  DeleteServiceSpecificCredentialCommand,
  DeleteSigningCertificateCommand,
  DeleteSSHPublicKeyCommand,
  DeleteUserCommand,
  GetUserCommand,
  ListMFADevicesCommand,
  ListServiceSpecificCredentialsCommand,
  ListSigningCertificatesCommand,
  ListSSHPublicKeysCommand,
  TagUserCommand,
  UntagUserCommand,
  UpdateUserCommand,
} from '@aws-sdk/client-iam';
import { BackendError } from '../../../core/errors.js';
import { INSTALLATION_TAG, subjectOf, type UserAttrs } from '../../../model/aws.js';
import type { AwsConnection } from '../connection.js';
import { awsErrorCode, tolerate } from '../errors.js';
import { notOurs } from '../ownership.js';
import { listKeys } from '../read.js';
import { isUnder } from '../state.js';
import { unlessDelete, type Handler } from './handler.js';

export const users: Handler<'user'> = {
  repeatable: unlessDelete,
  async execute(aws, c) {
    const user = subjectOf(c).name;
    if (c.action === 'delete') {
      await deleteUser(aws, user);
      return {};
    }
    const { path, tags } = c.after.attrs;
    if (c.action === 'update') {
      await updateUser(aws, user, c.before.attrs, c.after.attrs);
      return {};
    }
    try {
      await aws.iam.send(new CreateUserCommand({ UserName: user, Path: path, Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }));
      return {};
    } catch (e) {
      if (awsErrorCode(e) !== 'EntityAlreadyExists') throw e;
    }
    const existing = (await aws.iam.send(new GetUserCommand({ UserName: user }))).User;
    if (!isUnder(existing?.Path, aws.opts.iamPath)) throw notOurs(aws, 'user', user, existing?.Path, c.address);
    const current: Record<string, string> = {};
    for (const t of existing?.Tags ?? []) if (t.Key) current[t.Key] = t.Value ?? '';
    const theirs = current[INSTALLATION_TAG];
    if (aws.opts.installation && theirs && theirs !== aws.opts.installation) {
      throw new BackendError(
        `${aws.name}: ${c.address}: IAM user ${user} belongs to another datagrant installation (${theirs}); datagrant will not take it over`,
        aws.name,
        'NotOwned',
        false,
        c.address,
      );
    }
    await updateUser(aws, user, { path: existing?.Path ?? '/', tags: current }, { path, tags });
    return {};
  },
};

async function updateUser(aws: AwsConnection, user: string, before: UserAttrs, after: UserAttrs) {
  const removed = Object.keys(before.tags).filter((k) => !(k in after.tags));
  const changed = Object.entries(after.tags).filter(([k, v]) => before.tags[k] !== v);
  if (removed.length) await aws.iam.send(new UntagUserCommand({ UserName: user, TagKeys: removed }));
  if (changed.length) await aws.iam.send(new TagUserCommand({ UserName: user, Tags: changed.map(([Key, Value]) => ({ Key, Value })) }));
  if (before.path !== after.path) await aws.iam.send(new UpdateUserCommand({ UserName: user, NewPath: after.path }));
}

/**
 * DeleteUser first: keys, policies and memberships are separate changes that ran before. Only
 * when IAM refuses (DeleteConflict) are the user's other credentials — console password,
 * signing certificates, SSH keys, service credentials, MFA devices — removed, so an ordinary
 * delete costs one request.
 */
async function deleteUser(aws: AwsConnection, user: string) {
  const gone = ['NoSuchEntity'];
  try {
    await tolerate(gone, () => aws.iam.send(new DeleteUserCommand({ UserName: user })));
    return;
  } catch (e) {
    if (awsErrorCode(e) !== 'DeleteConflict') throw e;
  }
  await tolerate(gone, () => aws.iam.send(new DeleteLoginProfileCommand({ UserName: user })));
  const certs = await tolerate(gone, () => aws.iam.send(new ListSigningCertificatesCommand({ UserName: user })));
  for (const cert of certs?.Certificates ?? []) {
    await tolerate(gone, () => aws.iam.send(new DeleteSigningCertificateCommand({ UserName: user, CertificateId: cert.CertificateId })));
  }
  const ssh = await tolerate(gone, () => aws.iam.send(new ListSSHPublicKeysCommand({ UserName: user })));
  for (const k of ssh?.SSHPublicKeys ?? []) {
    await tolerate(gone, () => aws.iam.send(new DeleteSSHPublicKeyCommand({ UserName: user, SSHPublicKeyId: k.SSHPublicKeyId })));
  }
  const svc = await tolerate([...gone, 'NotSupportedService'], () => aws.iam.send(new ListServiceSpecificCredentialsCommand({ UserName: user })));
  for (const s of svc?.ServiceSpecificCredentials ?? []) {
    await tolerate(gone, () =>
      aws.iam.send(new DeleteServiceSpecificCredentialCommand({ UserName: user, ServiceSpecificCredentialId: s.ServiceSpecificCredentialId })),
    );
  }
  const mfa = await tolerate(gone, () => aws.iam.send(new ListMFADevicesCommand({ UserName: user })));
  for (const d of mfa?.MFADevices ?? []) {
    await tolerate(gone, () => aws.iam.send(new DeactivateMFADeviceCommand({ UserName: user, SerialNumber: d.SerialNumber })));
  }
  // The user is datagrant's and is going away: keys that appeared since the plan go with it.
  for (const k of await listKeys(aws, user)) {
    await tolerate(gone, () => aws.iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: k.accessKeyId })));
  }
  await tolerate(gone, () => aws.iam.send(new DeleteUserCommand({ UserName: user })));
}
