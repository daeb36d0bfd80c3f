// S3 keys: the credential of each principal. The gateway makes each key (`generate-key`): the
// admin ops API takes its parameters in the URL, which RGW writes to its request log, so a secret
// datagrant made would be there. The secret comes back only in the answer. After a request whose
// answer was lost, every key of the user that was not there before it is that request's (the
// user's changes run one at a time): each is removed before the error goes up, so no key nobody
// recorded is left working, and repeating the change is safe. Rotation makes a new key and leaves
// the old one to a later delete, once its grace has passed. RGW keys have no status of their own:
// a deactivated key (mass deprovisioning held for confirmation) is a suspended user.
//
// Each of these is a change to the user, which deletes its policies: they run in changeUser,
// which puts the policies back.
import { BackendError } from '../../../core/errors.js';
import { subjectOf } from '../../../model/rgw.js';
import { mayHaveTakenEffect, type RgwConnection } from '../connection.js';
import { rgwErrorCode } from '../errors.js';
import { fetchUser } from '../read.js';
import type { UserRecord } from '../state.js';
import { changeUser } from '../user-changes.js';
import type { Handler } from './handler.js';

export const keys: Handler<'key'> = {
  async execute(rgw, c) {
    const { user } = subjectOf(c).attrs;
    const uid = rgw.uid(user);
    if (c.action === 'delete') {
      const id = c.before.meta?.accessKeyId;
      if (typeof id !== 'string' || id === '')
        throw new BackendError(`${rgw.name}: ${c.address}: no access key id to delete`, rgw.name, 'MissingKeyId', false, c.address);
      await changeUser(rgw, user, c.address, {
        absent: () => undefined,
        run: async (before, touch) => {
          if (!before.keys.includes(id)) return;
          touch();
          await deleteKey(rgw, uid, id);
        },
      });
      return {};
    }
    const suspend = c.after.attrs.status === 'Inactive';
    if (c.action === 'update') {
      await changeUser(rgw, user, c.address, { run: (before, touch) => setSuspended(rgw, uid, before, suspend, touch) });
      return {};
    }
    // create, or replace (rotation)
    return changeUser(rgw, user, c.address, {
      run: async (before, touch) => {
        touch();
        let answer: string;
        try {
          answer = await rgw.admin('PUT', '/admin/user', { key: '', uid, 'key-type': 's3', 'generate-key': 'true' }, `creating a key of user ${uid}`);
        } catch (e) {
          // The gateway may hold a key we never heard of. If removing it fails too, the next read
          // finds a key the state has no record of, and the plan deletes it.
          if (mayHaveTakenEffect(e)) await deleteNewKeys(rgw, user, before).catch(() => undefined);
          throw e;
        }
        let made;
        try {
          made = newKeys(answer, before);
        } catch (e) {
          await deleteNewKeys(rgw, user, before);
          throw e;
        }
        if (made.length !== 1) {
          await deleteNewKeys(rgw, user, before);
          throw new BackendError(
            `${rgw.name}: ${c.address}: the gateway answered a key creation with ${made.length} new keys of user ${uid}; they were removed`,
            rgw.name,
            'UnexpectedKeys',
            true,
            c.address,
          );
        }
        const key = made[0]!;
        try {
          await setSuspended(rgw, uid, before, suspend, touch);
        } catch (e) {
          // A key the change does not report would be one nobody recorded.
          await deleteKey(rgw, uid, key.accessKeyId).catch(() => undefined);
          throw e;
        }
        const createdAt = new Date().toISOString();
        return {
          secret: { ...key, endpoint: rgw.opts.endpoint, region: rgw.region },
          credential: { credentialId: key.accessKeyId, createdAt },
          meta: { accessKeyId: key.accessKeyId, createdAt },
        };
      },
      // Its policies could not be put back: the key goes too, and the change fails as a whole.
      undo: async (r) => deleteKey(rgw, uid, r.credential.credentialId),
    });
  },
};

/**
 * The keys in a key creation's answer (every S3 key of the user, with its secret) that the user
 * did not hold before. The answer is never kept or shown: it holds the other keys' secrets too.
 */
function newKeys(answer: string, before: UserRecord): { accessKeyId: string; secretAccessKey: string }[] {
  let listed: unknown;
  try {
    listed = JSON.parse(answer);
  } catch {
    throw new Error('the key creation answer is not JSON');
  }
  if (!Array.isArray(listed)) throw new Error('the key creation answer is not a list of keys');
  return listed
    .map((k: { access_key?: unknown; secret_key?: unknown }) => ({ accessKeyId: k?.access_key, secretAccessKey: k?.secret_key }))
    .filter((k): k is { accessKeyId: string; secretAccessKey: string } => typeof k.accessKeyId === 'string' && typeof k.secretAccessKey === 'string')
    .filter((k) => !before.keys.includes(k.accessKeyId));
}

/** Removes every key of the user that it did not hold before the change began. */
async function deleteNewKeys(rgw: RgwConnection, principal: string, before: UserRecord): Promise<void> {
  const now = await fetchUser(rgw, principal);
  for (const id of now?.keys ?? []) if (!before.keys.includes(id)) await deleteKey(rgw, rgw.uid(principal), id);
}

/** Removes one key; one that is not there (or a user that is not) is removed already. */
async function deleteKey(rgw: RgwConnection, uid: string, accessKeyId: string): Promise<void> {
  try {
    await rgw.admin('DELETE', '/admin/user', { key: '', uid, 'key-type': 's3', 'access-key': accessKeyId }, `deleting a key of user ${uid}`);
  } catch (e) {
    // The gateway's answer to a key id it does not hold (for this user).
    if (!['InvalidAccessKeyId', 'NoSuchUser', 'NoSuchKey'].includes(rgwErrorCode(e) ?? '')) throw e;
  }
}

/** Suspends the user (every key refused) or lifts the suspension, if it is not so already. */
async function setSuspended(rgw: RgwConnection, uid: string, before: UserRecord, suspended: boolean, touch: () => void): Promise<void> {
  if (before.suspended === suspended) return;
  touch();
  await rgw.admin('POST', '/admin/user', { uid, suspended: String(suspended) }, `${suspended ? 'suspending' : 'reinstating'} user ${uid}`);
}
