// Desired vs actual, by address → the changes that turn one into the other. Pure: the clock and
// what datagrant last applied are passed in.
import { canonicalJson, hashJson, sha256Lines } from '../core/canonical.js';
import type { ActualState, Change, DesiredState, Notice, Plan, Resource } from '../core/types.js';

export interface DiffOptions {
  now: Date;
  specHash: string;
  /**
   * Per address, the hash of the attributes datagrant last applied (from the store). A difference
   * between that and the actual object is drift: someone changed it outside datagrant.
   */
  applied?: Record<string, string>;
  notices?: Notice[];
  /** Credential slots to rotate now whatever their age (`credentials rotate NAME`). */
  forceRotate?: string[];
  /**
   * Credentials to delete now, grace or not: a slot (`aws:key/alice`: every credential it holds,
   * `credentials rotate --revoke-old`) or one credential (`aws:key/alice~AKIA…`: a deletion a dead
   * run began). A revoked current credential is deleted before its slot gets a new one, and that
   * new one is a rotation with nothing left to retire.
   */
  revoke?: string[];
  /**
   * Credentials the store holds (no secrets). One whose id the backend no longer has (deleted
   * outside datagrant, or by a run that died before erasing it) is planned as a delete of that
   * credential, so that the store forgets it only when that change is applied — never on a read.
   */
  credentials?: { address: string; credentialId: string; backend: string; principal: string }[];
}

export const attrsHash = (r: Resource) => hashJson(r.attrs);

/**
 * Fingerprint of an actual state, to refuse a saved plan once the backend moved. Resources are
 * hashed one by one in address order: a driver reads the same state into the same serialisation.
 */
export function actualHash(state: ActualState): string {
  const sorted = [...state.resources].sort((a, b) => (a.address < b.address ? -1 : 1));
  return sha256Lines(sorted.map((r) => JSON.stringify([r.address, r.attrs, r.meta ?? null, r.lifecycle ?? null])));
}

function sameAttrs(a: Resource, b: Resource): boolean {
  // Equal serialisations are equal data; only when key order may differ is the canonical (sorted)
  // form needed. The fast path keeps a no-op plan of 10,000 principals well under a second.
  return JSON.stringify(a.attrs) === JSON.stringify(b.attrs) || canonicalJson(a.attrs) === canonicalJson(b.attrs);
}

function changedAttrs(before: Resource, after: Resource): string[] {
  const keys = new Set([...Object.keys(before.attrs), ...Object.keys(after.attrs)]);
  return [...keys].filter((k) => canonicalJson(before.attrs[k]) !== canonicalJson(after.attrs[k])).sort();
}

function humanSeconds(s: number): string {
  if (s % 86400 === 0) return `${s / 86400}d`;
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

export function diff(desired: Record<string, DesiredState>, actual: Record<string, ActualState>, opts: DiffOptions): Plan {
  const changes: Change[] = [];
  const notices: Notice[] = [...(opts.notices ?? [])];
  const now = opts.now.getTime();

  for (const backend of Object.keys(desired).sort()) {
    const want = new Map(desired[backend]!.resources.map((r) => [r.address, r]));
    const have = new Map((actual[backend]?.resources ?? []).map((r) => [r.address, r]));
    if (actual[backend]) {
      for (const r of recordedButGone(backend, actual[backend], opts.credentials ?? [])) if (!have.has(r.address)) have.set(r.address, r);
    }
    notices.push(...desired[backend]!.notices);
    const { revoked, revokedSlots } = revocations(have, opts.revoke ?? []);
    const addresses = [...new Set([...want.keys(), ...have.keys()])].sort();
    // Slots that still hold a superseded credential within its grace: `aws:key/alice` → retireAt.
    const retiring = new Map<string, string>();
    for (const r of have.values()) {
      const at = r.lifecycle?.retireAt;
      const cut = r.address.indexOf('~');
      if (at && cut > 0 && Date.parse(at) > now) retiring.set(r.address.slice(0, cut), at);
    }

    for (const address of addresses) {
      const after = want.get(address) ?? null;
      const before = have.get(address) ?? null;
      const applied = opts.applied?.[address];
      const base = { address, backend, kind: (after ?? before)!.kind };

      if (after && !before) {
        const drift = applied !== undefined;
        changes.push({ ...base, action: 'create', before: null, after, drift, reason: drift ? 'deleted outside datagrant' : 'new in spec' });
        continue;
      }
      if (before && !after) {
        if (revoked.has(address) && before.meta?.missing !== true) {
          changes.push({ ...base, action: 'delete', before, after: null, drift: false, reason: 'credential revoked: deleted now, without grace' });
          continue;
        }
        const retireAt = before.lifecycle?.retireAt;
        // A forced rotation cuts a superseded credential's grace short: at most two may exist.
        const forced = opts.forceRotate?.some((a) => address.startsWith(`${a}~`)) ?? false;
        // Deprovisioning is immediate: once the credential's slot (its principal) leaves the spec,
        // a superseded credential gets no grace either, or it would outlive its principal.
        const slot = address.includes('~') ? address.slice(0, address.indexOf('~')) : undefined;
        const orphaned = retireAt !== undefined && slot !== undefined && !want.has(slot);
        if (retireAt && Date.parse(retireAt) > now && !forced && !orphaned) {
          notices.push({ level: 'info', address, message: `superseded credential stays valid until ${retireAt} (rotation grace), then is deleted` });
          continue;
        }
        if (before.meta?.missing === true) {
          changes.push({
            ...base,
            action: 'delete',
            before,
            after: null,
            drift: true,
            reason: 'recorded credential no longer exists in the backend: forget it',
          });
          continue;
        }
        const drift = opts.applied !== undefined && applied === undefined && !retireAt;
        const reason =
          orphaned && Date.parse(retireAt) > now
            ? 'superseded credential of a principal removed from the spec'
            : retireAt
              ? 'rotation grace ended'
              : drift
                ? 'not made by datagrant'
                : 'no longer in spec';
        changes.push({ ...base, action: 'delete', before, after: null, drift, reason });
        continue;
      }
      if (!before || !after) continue;

      const rotate = after.lifecycle?.rotateAfterSeconds;
      const created = before.meta?.createdAt;
      if (revokedSlots.has(address)) {
        // Its credential is deleted first (apply waits for it): the new one supersedes nothing.
        const { graceSeconds: _none, ...lifecycle } = after.lifecycle ?? {};
        changes.push({
          ...base,
          action: 'replace',
          before,
          after: { ...after, lifecycle },
          drift: false,
          reason: 'rotation requested, the old credential revoked',
        });
        continue;
      }
      if (opts.forceRotate?.includes(address)) {
        changes.push({ ...base, action: 'replace', before, after, drift: false, reason: 'rotation requested' });
        continue;
      }
      if (rotate !== undefined && typeof created === 'string' && now - Date.parse(created) >= rotate * 1000) {
        const waitFor = retiring.get(address);
        if (waitFor === undefined) {
          changes.push({ ...base, action: 'replace', before, after, drift: false, reason: `rotation due (older than ${humanSeconds(rotate)})` });
          continue;
        }
        // A third key would exceed AWS's two per user, and cutting the old key's grace short
        // would break whoever still uses it: rotate once the superseded credential is gone.
        notices.push({
          level: 'info',
          address,
          message: `rotation is due, and waits until the superseded credential retires at ${waitFor} (at most two credentials at a time)`,
        });
      }
      if (sameAttrs(before, after)) continue;
      const changed = changedAttrs(before, after);
      const drift = applied !== undefined && applied !== attrsHash(before);
      const replace = changed.some((k) => after.immutable?.includes(k));
      changes.push({
        ...base,
        action: replace ? 'replace' : 'update',
        before,
        after,
        drift,
        reason: `${drift ? 'changed outside datagrant' : 'spec changed'}: ${changed.join(', ')}`,
      });
    }
  }

  return {
    formatVersion: 1,
    createdAt: opts.now.toISOString(),
    specHash: opts.specHash,
    actualHashes: Object.fromEntries(Object.entries(actual).map(([b, s]) => [b, actualHash(s)])),
    changes,
    notices,
  };
}

const credentialIdOf = (r: Resource) => {
  const id = r.meta?.credentialId ?? r.meta?.accessKeyId;
  return typeof id === 'string' ? id : undefined;
};

/**
 * The credentials of one backend to delete now (`slot~id`), and the slots whose current credential
 * is among them. A current credential is read at its slot's address; revoked, it is also put in
 * `have` at `slot~id`, where superseded credentials are deleted, so the slot's rotation and the
 * old credential's deletion are two changes, ordered by apply like any rotation's.
 */
function revocations(have: Map<string, Resource>, revoke: readonly string[]): { revoked: Set<string>; revokedSlots: Set<string> } {
  const revoked = new Set<string>();
  const revokedSlots = new Set<string>();
  if (revoke.length === 0) return { revoked, revokedSlots };
  const wanted = new Set(revoke);
  for (const r of [...have.values()]) {
    const id = credentialIdOf(r);
    if (id === undefined) continue;
    const cut = r.address.indexOf('~');
    const slot = cut < 0 ? r.address : r.address.slice(0, cut);
    const address = `${slot}~${id}`;
    if (!wanted.has(slot) && !wanted.has(address)) continue;
    revoked.add(address);
    if (cut < 0) {
      revokedSlots.add(slot);
      have.set(address, { ...r, address });
    }
  }
  return { revoked, revokedSlots };
}

/** Resources standing for stored credentials that the backend's read did not find. */
function recordedButGone(backend: string, state: ActualState, credentials: NonNullable<DiffOptions['credentials']>): Resource[] {
  const present = new Set<string>();
  for (const r of state.resources) {
    const id = r.meta?.credentialId ?? r.meta?.accessKeyId;
    if (typeof id === 'string') present.add(id);
  }
  const out: Resource[] = [];
  for (const c of credentials) {
    if (c.backend !== backend || present.has(c.credentialId)) continue;
    const slash = c.address.indexOf('/');
    const kind = c.address.slice(c.address.indexOf(':') + 1, slash);
    out.push({
      address: `${c.address}~${c.credentialId}`,
      backend,
      kind,
      name: c.principal,
      attrs: { user: c.principal },
      deps: [],
      meta: { credentialId: c.credentialId, ...(kind === 'key' ? { accessKeyId: c.credentialId } : {}), missing: true },
    });
  }
  return out;
}

export function summarize(plan: Plan): { add: number; change: number; destroy: number } {
  let add = 0;
  let change = 0;
  let destroy = 0;
  for (const c of plan.changes) {
    if (c.action === 'create') add++;
    else if (c.action === 'update') change++;
    else if (c.action === 'delete') destroy++;
    else {
      add++;
      destroy++;
    }
  }
  return { add, change, destroy };
}
