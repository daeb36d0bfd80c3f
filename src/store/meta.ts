// Facts about the state itself, kept by both stores in a `meta` table: the key-check value and
// the installation id.
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { StoreError } from '../core/errors.js';
import type { MasterKey } from './crypto.js';

export const KEY_CHECK = 'key_check';
export const INSTALLATION = 'installation';
/** The key check of the key an unfinished `datagrant rekey` moves the state to. */
export const KEY_CHECK_NEXT = 'key_check_next';

/** An installation id: what `init` makes, and what `init --installation` accepts. */
export const INSTALLATION_RE = /^[a-z0-9][a-z0-9-]{7,63}$/;

export const newInstallationId = () => randomUUID();

/** The key given is not the state's: `rekey` tells this from every other failure to open. */
export class WrongKeyError extends StoreError {}

export function wrongKeyError(where: string): StoreError {
  return new WrongKeyError(
    `wrong master key: ${where} was created with a different master key than the one given (DATAGRANT_MASTER_KEY, master.key, or the KMS-wrapped master.key.kms); nothing was read or changed. Use the key this state was made with.`,
  );
}

/**
 * What to do about the key check: `ok` (matches), `write` (no value yet, and nothing sealed
 * contradicts the key). A stored value that differs, or — for a state made before key checks —
 * a sealed credential the key cannot open, is a wrong key.
 */
export function checkKey(key: MasterKey, stored: string | undefined, opensSample: () => boolean | undefined, where: string): 'ok' | 'write' {
  const mine = key.keyCheck();
  if (stored !== undefined) {
    const a = Buffer.from(stored);
    const b = Buffer.from(mine);
    if (a.length === b.length && timingSafeEqual(a, b)) return 'ok';
    throw wrongKeyError(where);
  }
  if (opensSample() === false) throw wrongKeyError(where);
  return 'write';
}

/**
 * While a rotation is unfinished some credentials are sealed under the old key and some under the
 * new one: only rekey, which holds both, may open the state then.
 */
export function checkNoRotation(next: string | undefined, rotating: boolean, where: string): void {
  if (next === undefined || rotating) return;
  throw new StoreError(
    `a master key rotation of ${where} is unfinished (\`datagrant rekey\` was interrupted); nothing was read or changed. Run \`datagrant rekey\` again with the same keys: the old one as the master key, the new one in master.key.new (or --new-key-file).`,
  );
}

export function checkInstallationId(id: string): string {
  if (!INSTALLATION_RE.test(id)) {
    throw new StoreError(
      `installation id ${JSON.stringify(id)} is not valid: 8 to 64 lowercase letters, digits and -, as printed by \`datagrant init\` or \`datagrant status\``,
    );
  }
  return id;
}
