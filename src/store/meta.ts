// Facts about the state itself, kept by both stores in a `meta` table: the key-check value and
// the installation id.
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { StoreError } from '../core/errors.js';
import type { MasterKey } from './crypto.js';

export const KEY_CHECK = 'key_check';
export const INSTALLATION = 'installation';

/** An installation id: what `init` makes, and what `init --installation` accepts. */
export const INSTALLATION_RE = /^[a-z0-9][a-z0-9-]{7,63}$/;

export const newInstallationId = () => randomUUID();

export function wrongKeyError(where: string): StoreError {
  return new StoreError(
    `wrong master key: ${where} was created with a different master key than the one given (DATAGRANT_MASTER_KEY or master.key); nothing was read or changed. Use the key this state was made with.`,
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

export function checkInstallationId(id: string): string {
  if (!INSTALLATION_RE.test(id)) {
    throw new StoreError(
      `installation id ${JSON.stringify(id)} is not valid: 8 to 64 lowercase letters, digits and -, as printed by \`datagrant init\` or \`datagrant status\``,
    );
  }
  return id;
}
