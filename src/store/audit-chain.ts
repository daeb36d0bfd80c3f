// The audit chain's pure check, shared by every state store: given the entries in seq order and
// the recorded head, the same verdict and the same reasons whichever database they came from.
import { createHash } from 'node:crypto';
import { canonicalJson } from '../core/canonical.js';
import type { MasterKey } from './crypto.js';
import type { AuditEntry, AuditVerdict } from './store.js';

/** The keyed hash of one entry, over its content and the hash of the entry before it. */
export function entryMac(key: MasterKey, e: Omit<AuditEntry, 'hash'>): string {
  const { prevHash, ...body } = e;
  return key.auditMac(`${prevHash}\n${canonicalJson(body)}`);
}

/** The `prevHash` of the first entry. */
export const GENESIS = '0'.repeat(64);

export interface AuditHead {
  seq: number;
  hash: string;
  mac: string;
}

/** The MAC over the recorded head, so that cutting entries off the end of the chain shows. */
export function headMac(key: MasterKey, seq: number, hash: string): string {
  return key.auditMac(`head\n${seq}\n${hash}`);
}

/** The event of the entry `rekey` writes where the master key changed. */
export const KEY_ROTATED = 'key.rotated';

/**
 * Where the master key changed, and how the new key vouches for what came before.
 *
 * After a rotation the operator holds only the new key, and the entries before it carry MACs under
 * the old one, which nobody can check any more. So `rekey`, holding both keys and the state lock,
 * first verifies the whole chain under the old key, then appends one `key.rotated` entry MACed
 * under the NEW key whose detail holds a SHA-256 digest of every entry before it (content and
 * MAC, in order). Verifying with only the new key: that entry's MAC proves the digest is the one
 * rekey computed over a chain it had verified; the digest (SHA-256 is collision resistant) proves
 * no earlier entry was changed, removed or inserted since; entries after it verify under the new
 * key as usual. Someone holding only the old key (the reason to rotate, perhaps) can no longer
 * forge anything verify accepts: nothing is accepted under the old key alone.
 */
export interface KeyRotation {
  /** Key check of the key before and after. */
  from: string;
  to: string;
  /** How many entries precede it, and their digest. */
  entries: number;
  sha256: string;
}

/** SHA-256 over the entries in order: each entry's canonical JSON, its MAC included. */
export function historyDigest(entries: readonly AuditEntry[]): string {
  const h = createHash('sha256');
  for (const e of entries) h.update(`${canonicalJson(e)}\n`);
  return h.digest('hex');
}

export function rotationDetail(from: MasterKey, to: MasterKey, before: readonly AuditEntry[]): string {
  const r: KeyRotation = { from: from.keyCheck(), to: to.keyCheck(), entries: before.length, sha256: historyDigest(before) };
  return JSON.stringify(r);
}

function parseRotation(detail: string | null): KeyRotation | undefined {
  try {
    const r = JSON.parse(detail ?? '') as Partial<KeyRotation>;
    return typeof r.from === 'string' && typeof r.to === 'string' && typeof r.entries === 'number' && typeof r.sha256 === 'string'
      ? (r as KeyRotation)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks the chain entry by entry, then against the recorded head; names the first bad entry.
 * Entries before the last key change are checked through its digest (see KeyRotation), the
 * others by their MAC under `key`.
 */
export function verifyChain(key: MasterKey, entries: readonly AuditEntry[], head: AuditHead | undefined): AuditVerdict {
  const changes = entries.filter((e) => e.event === KEY_ROTATED).map((e) => ({ seq: e.seq, at: e.at }));
  const keyChanges = changes.length > 0 ? { keyChanges: changes } : {};
  const bad = (seq: number, reason: string): AuditVerdict => ({ ok: false, entries: entries.length, firstBad: { seq, reason }, ...keyChanges });
  let firstMacced = 0;
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    if (e.event !== KEY_ROTATED) continue;
    const r = parseRotation(e.detail);
    const { hash, ...rest } = e;
    if (!r || entryMac(key, rest) !== hash) {
      return bad(e.seq, 'the key change recorded here was altered, or not made to the key given');
    }
    if (r.entries !== i || r.sha256 !== historyDigest(entries.slice(0, i))) {
      return bad(1, `the entries before the key change at entry ${e.seq} are not the ones it vouches for (changed, removed or inserted)`);
    }
    firstMacced = i;
    break;
  }
  let prev = GENESIS;
  let expectedSeq = 1;
  for (const [i, e] of entries.entries()) {
    if (e.seq !== expectedSeq) return bad(e.seq, `expected entry ${expectedSeq} here; an entry was removed or inserted`);
    if (e.prevHash !== prev) return bad(e.seq, 'does not follow the entry before it (removed, inserted or reordered entries)');
    const { hash, ...rest } = e;
    if (i >= firstMacced && entryMac(key, rest) !== hash) return bad(e.seq, 'its content was changed after it was written');
    prev = hash;
    expectedSeq++;
  }
  const last = entries.at(-1);
  if (head) {
    if (head.mac !== headMac(key, head.seq, head.hash)) return bad(head.seq, 'the recorded head of the chain was altered');
    if (!last || last.seq !== head.seq || last.hash !== head.hash) {
      return bad((last?.seq ?? 0) + 1, `entries after ${last?.seq ?? 0} were removed (the chain ended at ${head.seq})`);
    }
  } else if (last) {
    return bad(1, 'the recorded head of the chain is missing');
  }
  return { ok: true, entries: entries.length, ...keyChanges };
}
