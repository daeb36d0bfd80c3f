// RGW users: the principals. A user is made with datagrant's mark and no right to create buckets
// (max-buckets -1 from the start: setting it later would be a change to the user, which deletes
// its policies). One found at the uid when creating is taken over only if it carries the mark.
import type { RgwAttrs } from '../../../model/rgw.js';
import { subjectOf } from '../../../model/rgw.js';
import type { RgwConnection } from '../connection.js';
import { rgwErrorCode, unlessGone } from '../errors.js';
import { assertOurs } from '../ownership.js';
import { fetchUser } from '../read.js';
import type { UserRecord } from '../state.js';
import { changeUser } from '../user-changes.js';
import type { Handler } from './handler.js';

export const users: Handler<'user'> = {
  async execute(rgw, c) {
    const principal = subjectOf(c).name;
    const uid = rgw.uid(principal);
    if (c.action === 'delete') {
      // Its keys and policies were removed by the changes before this one; any left go with it.
      await rgw.withUser(principal, async () => {
        const found = await fetchUser(rgw, principal);
        if (!found) return;
        assertOurs(rgw, found, c.address);
        await unlessGone(() => rgw.admin('DELETE', '/admin/user', { uid, 'purge-data': 'false' }, `deleting user ${uid}`));
      });
      return {};
    }
    const want = c.after.attrs;
    if (c.action === 'create') {
      const made = await rgw.withUser(principal, async () => {
        try {
          await rgw.admin(
            'PUT',
            '/admin/user',
            // Without generate-key=false the gateway gives every new user a key nobody asked for.
            { uid, 'display-name': want.displayName, 'max-buckets': String(want.maxBuckets), 'generate-key': 'false' },
            `creating user ${uid}`,
          );
          return true;
        } catch (e) {
          if (rgwErrorCode(e) !== 'UserAlreadyExists') throw e;
          return false;
        }
      });
      // A new user has no caps and is no system user: nothing else to set.
      if (made && want.caps.length === 0 && !want.system) return {};
    }
    // An update, or a create that found the user (made by an attempt whose answer was lost, or
    // someone else's: changeUser refuses a user without the mark).
    await changeUser(rgw, principal, c.address, { run: (before, touch) => settle(rgw, uid, before, want, touch) });
    return {};
  },
};

/** Brings the user's settings and caps to `want`, with as few requests as differ. */
async function settle(rgw: RgwConnection, uid: string, before: UserRecord, want: RgwAttrs['user'], touch: () => void): Promise<void> {
  const modify: Record<string, string> = {};
  if (before.displayName !== want.displayName) modify['display-name'] = want.displayName;
  if (before.maxBuckets !== want.maxBuckets) modify['max-buckets'] = String(want.maxBuckets);
  if (before.system !== want.system) modify.system = String(want.system);
  if (Object.keys(modify).length) {
    touch();
    await rgw.admin('POST', '/admin/user', { uid, ...modify }, `modifying user ${uid}`);
  }
  const extra = before.caps.filter((c) => !want.caps.includes(c));
  const missing = want.caps.filter((c) => !before.caps.includes(c));
  if (extra.length) {
    touch();
    await rgw.admin('DELETE', '/admin/user', { caps: '', uid, 'user-caps': extra.join(';') }, `removing caps of user ${uid}`);
  }
  if (missing.length) {
    touch();
    await rgw.admin('PUT', '/admin/user', { caps: '', uid, 'user-caps': missing.join(';') }, `adding caps to user ${uid}`);
  }
}
