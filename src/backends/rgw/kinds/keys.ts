// S3 keys: the credential of each principal. datagrant makes the key (id and secret) and asks the
// gateway to hold it, so that after a request whose answer was lost it knows exactly which key
// that request may have made, and removes it before the error goes up: no key nobody recorded
// is left working, and repeating the change is safe. Rotation makes a new key and leaves the old
// one to a later delete, once its grace has passed. RGW keys have no status of their own: a
// deactivated key (mass deprovisioning held for confirmation) is a suspended user.
//
// Each of these is a change to the user, which deletes its policies: they run in changeUser,
// which puts the policies back.
import { randomInt } from 'node:crypto';
import { BackendError } from '../../../core/errors.js';
import { subjectOf } from '../../../model/rgw.js';
import { mayHaveTakenEffect, type RgwConnection } from '../connection.js';
import { rgwErrorCode } from '../errors.js';
import type { UserRecord } from '../state.js';
import { changeUser } from '../user-changes.js';
import type { Handler } from './handler.js';

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const MIXED = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const draw = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join('');

/** A key as AWS shapes them (what S3 clients expect): a 20-character id, a 40-character secret. */
export const newKey = () => ({ accessKeyId: draw(UPPER, 20), secretAccessKey: draw(MIXED, 40) });

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
        const key = newKey();
        touch();
        try {
          await rgw.admin(
            'PUT',
            '/admin/user',
            { key: '', uid, 'key-type': 's3', 'access-key': key.accessKeyId, 'secret-key': key.secretAccessKey },
            `creating a key of user ${uid}`,
          );
        } catch (e) {
          // The gateway may hold the key without our having heard so. If removing it fails too,
          // the next read finds a key the state has no record of, and the plan deletes it.
          if (mayHaveTakenEffect(e)) await deleteKey(rgw, uid, key.accessKeyId).catch(() => undefined);
          throw e;
        }
        await setSuspended(rgw, uid, before, suspend, touch);
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
