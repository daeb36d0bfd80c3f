// The ownership boundary. A user is datagrant's when its uid starts with the backend's prefix and
// its display name carries datagrant's mark for that prefix (and, when the state has one, for
// this installation): `datagrant prefix=dg- installation=<id>`. A user without the mark — one
// made by hand, named alike — or with another prefix's mark (a nested prefix) is invisible to read
// and refused here; one with another installation's mark is reported, and refused.
//
// Checked twice for every change: against the last read, before any request (a saved plan may
// have been edited); and, for changes to a user or its keys, against the user as it is read inside
// the change (user-changes.ts), just before anything is sent that changes it.
import { BackendError } from '../../core/errors.js';
import { subjectOf, type RgwChange } from '../../model/rgw.js';
import type { RgwConnection } from './connection.js';
import type { Ownership } from './read.js';
import { ownerOf, type UserRecord } from './state.js';

function refusal(rgw: RgwConnection, address: string, why: string): BackendError {
  return new BackendError(
    `${rgw.name}: ${address}: refused: ${why}; datagrant never changes what it does not own — rename the principal in the spec, or remove the existing user by hand`,
    rgw.name,
    'NotOwned',
    false,
    address,
  );
}

/** Throws NotOwned unless `record` (the user as just read) is datagrant's. */
export function assertOurs(rgw: RgwConnection, record: Pick<UserRecord, 'uid' | 'displayName'>, address: string): void {
  const whose = ownerOf(record, rgw.opts.userPrefix, rgw.opts.installation);
  if (whose.owner === 'ours') return;
  throw refusal(
    rgw,
    address,
    whose.owner === 'foreign'
      ? `RGW user ${record.uid} belongs to another datagrant installation (${whose.installation})`
      : `an RGW user ${record.uid} exists without datagrant's mark for the prefix ${rgw.opts.userPrefix} (its display name is not "datagrant prefix=${rgw.opts.userPrefix} …")`,
  );
}

/**
 * A change may only create a user where no user of someone else's is, and change or remove only
 * datagrant's users (or what is already gone). One rule for every kind: each is about one user.
 */
export function checkOwnership(rgw: RgwConnection, owned: Ownership, c: RgwChange): void {
  const principal = c.kind === 'user' ? subjectOf(c).name : subjectOf(c).attrs.user;
  if (owned.owned.has(principal)) return;
  const uid = rgw.uid(principal);
  if (owned.others.has(principal))
    throw refusal(
      rgw,
      c.address,
      `RGW user ${uid} is not datagrant's (no mark of prefix ${rgw.opts.userPrefix}${rgw.opts.installation ? ' and this installation' : ''})`,
    );
  // No such user: creating it is fine, and removing it or anything of it is done already.
  if (c.action === 'delete' || (c.kind === 'user' && c.action === 'create')) return;
  throw refusal(rgw, c.address, `RGW user ${uid} is not datagrant's (the last read did not find it)`);
}

/** Keeps the ownership sets true as the driver creates and deletes users. */
export function recordChange(o: Ownership, c: RgwChange): void {
  if (c.kind !== 'user') return;
  if (c.action === 'delete') o.owned.delete(c.before.name);
  else o.owned.add(c.after.name);
}
