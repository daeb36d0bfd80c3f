// What both stores share for `datagrant rekey` (KeyRotationPort): moving one sealed row, and the
// refusals. A row is moved in one transaction that replaces its nonce, ciphertext and tag at
// once, so at every moment it opens under exactly one of the two keys; which one is found by
// opening it (AES-GCM tells a wrong key), so no row needs to record the key that sealed it.
import { KeyChangedError, StoreError } from '../core/errors.js';
import type { MasterKey, Sealed } from './crypto.js';
import { credentialAad, type CredRow } from './rows.js';
import type { AuditVerdict } from './store.js';

const opens = (key: MasterKey, r: CredRow): string | undefined => {
  try {
    return key.open({ nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag }, credentialAad(r.address, r.credential_id));
  } catch {
    return undefined;
  }
};

const neither = (r: CredRow) =>
  new StoreError(`the credential ${r.credential_id} for ${r.address} opens under neither the current nor the new master key; nothing more was changed`);

/** The row sealed under `next`, or undefined when it already is. */
export function reseal(current: MasterKey, next: MasterKey, r: CredRow): Sealed | undefined {
  const plain = opens(current, r);
  if (plain !== undefined) return next.seal(plain, credentialAad(r.address, r.credential_id));
  if (opens(next, r) !== undefined) return undefined;
  throw neither(r);
}

export function opensUnder(next: MasterKey, r: CredRow): void {
  if (opens(next, r) === undefined) throw neither(r);
}

export function rotationElsewhere(pending: string | undefined): StoreError {
  return new StoreError(
    pending === undefined
      ? 'no master key rotation was begun on this state; run `datagrant rekey` from the start'
      : `an unfinished master key rotation moves this state to another key (key check ${pending.slice(0, 16)}…) than the one given; give that key (master.key.new or --new-key-file) to finish it`,
  );
}

/** The new key vouches for the chain as it is: a chain that does not verify must not be vouched for. */
export function refuseBrokenChain(v: AuditVerdict): void {
  if (v.ok) return;
  throw new StoreError(
    `the audit chain does not verify under the current master key (entry ${v.firstBad!.seq}: ${v.firstBad!.reason}); a rotation would vouch for it under the new key, so nothing was changed. Investigate with \`datagrant audit verify\` first.`,
  );
}

export function keyChanged(where: string): KeyChangedError {
  return new KeyChangedError(
    `the master key of ${where} was changed (\`datagrant rekey\`) since this process opened it; nothing was written. Restart it with the new key.`,
  );
}
