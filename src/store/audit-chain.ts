// The audit chain's pure check, shared by every state store: given the entries in seq order and
// the recorded head, the same verdict and the same reasons whichever database they came from.
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

/** Checks the chain entry by entry, then against the recorded head; names the first bad entry. */
export function verifyChain(key: MasterKey, entries: readonly AuditEntry[], head: AuditHead | undefined): AuditVerdict {
  let prev = GENESIS;
  let expectedSeq = 1;
  for (const e of entries) {
    if (e.seq !== expectedSeq) {
      return { ok: false, entries: entries.length, firstBad: { seq: e.seq, reason: `expected entry ${expectedSeq} here; an entry was removed or inserted` } };
    }
    if (e.prevHash !== prev) {
      return {
        ok: false,
        entries: entries.length,
        firstBad: { seq: e.seq, reason: 'does not follow the entry before it (removed, inserted or reordered entries)' },
      };
    }
    const { hash, ...rest } = e;
    if (entryMac(key, rest) !== hash) {
      return { ok: false, entries: entries.length, firstBad: { seq: e.seq, reason: 'its content was changed after it was written' } };
    }
    prev = hash;
    expectedSeq++;
  }
  const last = entries.at(-1);
  if (head) {
    if (head.mac !== headMac(key, head.seq, head.hash)) {
      return { ok: false, entries: entries.length, firstBad: { seq: head.seq, reason: 'the recorded head of the chain was altered' } };
    }
    if (!last || last.seq !== head.seq || last.hash !== head.hash) {
      return {
        ok: false,
        entries: entries.length,
        firstBad: { seq: (last?.seq ?? 0) + 1, reason: `entries after ${last?.seq ?? 0} were removed (the chain ended at ${head.seq})` },
      };
    }
  } else if (last) {
    return { ok: false, entries: entries.length, firstBad: { seq: 1, reason: 'the recorded head of the chain is missing' } };
  }
  return { ok: true, entries: entries.length };
}
