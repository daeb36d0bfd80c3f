// Every change RGW counts as a change to a user — a key made or removed, a suspension, any modify
// of its settings or caps — silently deletes all the user's inline policies (Ceph bug 48761,
// RGW 16.2). So each such change runs here: in the user's queue, with the user read first (and
// its ownership checked on what was just read), then the change, then every policy the user held
// put back as it was, before the change reports success. A change that fails still has the
// policies put back. Should the putting back fail, the change fails (and undoes itself where it
// can): the next read finds the policies missing, and the plan puts them back.
import { BackendError } from '../../core/errors.js';
import type { RgwConnection } from './connection.js';
import { assertOurs } from './ownership.js';
import { fetchUser } from './read.js';
import type { UserRecord } from './state.js';

export interface UserChange<T> {
  /**
   * Makes the change. `touch` is called before each request that changes the user, so that a
   * change that turns out to need none also puts nothing back.
   */
  run(before: UserRecord, touch: () => void): Promise<T>;
  /** What a change to a user that is not there returns (deleting what is gone); otherwise it is an error. */
  absent?: () => T;
  /** Takes back what `run` did, when the policies could not be put back after it. */
  undo?: (result: T) => Promise<void>;
}

export async function changeUser<T>(rgw: RgwConnection, principal: string, address: string, change: UserChange<T>): Promise<T> {
  return rgw.withUser(principal, async () => {
    const before = await fetchUser(rgw, principal);
    if (!before) {
      if (change.absent) return change.absent();
      throw new BackendError(`${rgw.name}: ${address}: RGW user ${rgw.uid(principal)} does not exist`, rgw.name, 'NoSuchUser', false, address);
    }
    assertOurs(rgw, before, address);
    let touched = false;
    const touch = () => void (touched = true);
    let result: T;
    try {
      result = await change.run(before, touch);
    } catch (e) {
      // What failed may have changed the user all the same: its policies go back regardless.
      if (touched) await putBack(rgw, principal, before).catch(() => undefined);
      throw e;
    }
    if (touched) {
      try {
        await putBack(rgw, principal, before);
      } catch (e) {
        if (change.undo) await change.undo(result).catch(() => undefined);
        throw e;
      }
    }
    return result;
  });
}

/** The user's policies as they were before the change; PutUserPolicy of one already there changes nothing. */
async function putBack(rgw: RgwConnection, principal: string, before: UserRecord): Promise<void> {
  for (const [name, document] of Object.entries(before.policies ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    await rgw.putUserPolicy(principal, name, document);
  }
}
