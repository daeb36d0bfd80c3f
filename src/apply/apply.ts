// Executes a plan: dependency-ordered, independent changes concurrently (bounded), intent
// journaled before every side effect, credentials stored the moment they exist. Knows nothing
// about AWS or PostgreSQL.
import { randomUUID } from 'node:crypto';
import type { Backend, ExecuteResult } from '../backends/backend.js';
import { ApplyError } from '../core/errors.js';
import type { Change, Json, Plan } from '../core/types.js';
import { applyStartDetail } from '../model/audit.js';
import { attrsHash } from '../plan/diff.js';
import type { AppliedStore, AuditLog, CredentialStore, JournalStore } from '../store/store.js';

export type ApplyEvent =
  | { type: 'start'; change: Change }
  | { type: 'done'; change: Change; ms: number }
  | { type: 'failed'; change: Change; message: string }
  | { type: 'skipped'; change: Change; because: string };

export interface ApplyOptions {
  backends: Record<string, Backend>;
  /** Apply journals and records outcomes; the lock, recovery and backends are converge's. */
  store: JournalStore & CredentialStore & AppliedStore & AuditLog;
  /** Changes in flight at once. */
  concurrency?: number;
  actor: string;
  clock?: () => Date;
  onEvent?: (e: ApplyEvent) => void;
}

export interface ApplyResult {
  runId: string;
  applied: number;
  failed: { address: string; message: string }[];
  skipped: string[];
  /**
   * New credentials confirmed usable before being reported issued (IAM is eventually consistent):
   * how many, and the longest wait for one.
   */
  ready?: { count: number; maxMs: number; notYet: string[] };
}

/** The credential slot an actual credential belongs to: `aws:key/alice~AKIA…` → `aws:key/alice`. */
export const slotOf = (address: string) => address.split('~')[0]!;

const CREDENTIAL_KINDS = new Set(['key', 'password']);
const isCredential = (c: Change) => CREDENTIAL_KINDS.has(c.kind);

function credentialIdOf(meta: { [k: string]: Json } | undefined): string | undefined {
  const id = meta?.credentialId ?? meta?.accessKeyId;
  return typeof id === 'string' ? id : undefined;
}

/**
 * Scheduling order among ready changes: revoke credentials first (a leaver's keys die in the
 * first batch), then other removals (freeing quotas), then creations and updates.
 */
function priority(c: Change): number {
  if (c.action === 'delete' && isCredential(c)) return 0;
  if (c.action === 'delete') return 1;
  return 2;
}

/**
 * Changes of one backend, kind and action make the same requests, so they meet the same limits
 * (AWS throttles per API action). Waiting for one limit, they must not hold every slot while
 * changes of other lanes, bound by other limits or none, could run: each lane gets its share.
 */
const lane = (c: Change) => `${c.backend}\u0000${c.kind}\u0000${c.action}`;

/** For each change, the addresses of the changes it must wait for. */
export function dependencies(changes: Change[]): Map<string, Set<string>> {
  const byAddress = new Map(changes.map((c) => [c.address, c]));
  const waits = new Map<string, Set<string>>(changes.map((c) => [c.address, new Set<string>()]));
  // Deletes of superseded credentials (`<slot>~<id>`), by slot.
  const supersededDeletes = new Map<string, string[]>();
  for (const c of changes) {
    const tilde = c.address.indexOf('~');
    if (c.action !== 'delete' || tilde < 0) continue;
    const slot = c.address.slice(0, tilde);
    supersededDeletes.set(slot, [...(supersededDeletes.get(slot) ?? []), c.address]);
  }
  for (const c of changes) {
    const w = waits.get(c.address)!;
    if (c.after) {
      for (const d of c.after.deps) {
        const dep = byAddress.get(d);
        if (dep && dep.action !== 'delete') w.add(d);
      }
      // A new credential waits until superseded ones of the same slot are gone (AWS: 2 keys max).
      for (const other of supersededDeletes.get(c.address) ?? []) w.add(other);
      // What this object takes over from is removed only once it exists (create before delete).
      for (const old of c.after.supersedes ?? []) {
        if (byAddress.get(old)?.action === 'delete') waits.get(old)!.add(c.address);
      }
    }
    if (c.action === 'delete' && c.before) {
      // Something we delete must outlive everything deleted that depends on it.
      for (const d of c.before.deps) {
        const dep = byAddress.get(d);
        if (dep && dep.action === 'delete') waits.get(d)!.add(c.address);
      }
    }
  }
  return waits;
}

export async function applyPlan(plan: Plan, opts: ApplyOptions): Promise<ApplyResult> {
  const clock = opts.clock ?? (() => new Date());
  const limit = Math.max(1, opts.concurrency ?? 8);
  const runId = randomUUID();
  const waits = dependencies(plan.changes);
  const pending = new Map(plan.changes.map((c) => [c.address, c]));
  const done = new Set<string>();
  const failedOrSkipped = new Set<string>();
  const result: ApplyResult = { runId, applied: 0, failed: [], skipped: [] };
  const inFlight = new Set<Promise<void>>();

  await opts.store.audit(
    { actor: opts.actor, event: 'apply.start', address: null, outcome: 'started', detail: applyStartDetail(plan.changes.length, runId, plan.specHash) },
    clock().toISOString(),
  );

  // Kahn's algorithm: a change is ready when every change it waits for is done.
  const unmet = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const [address, deps] of waits) {
    unmet.set(address, deps.size);
    for (const d of deps) {
      const list = dependents.get(d);
      if (list) list.push(address);
      else dependents.set(d, [address]);
    }
  }
  const byPriority = (a: Change, b: Change) => priority(a) - priority(b) || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0);
  // Ready changes wait in one queue per lane, each kept sorted by priority, then address; a
  // released change is inserted at its place (binary search), not by sorting again.
  type Lane = { queue: Change[]; running: number };
  const lanes = new Map<string, Lane>();
  const laneOf = (c: Change) => {
    const key = lane(c);
    let l = lanes.get(key);
    if (!l) lanes.set(key, (l = { queue: [], running: 0 }));
    return l;
  };
  const enqueue = (c: Change) => {
    const queue = laneOf(c).queue;
    let lo = 0;
    let hi = queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (byPriority(queue[mid]!, c) <= 0) lo = mid + 1;
      else hi = mid;
    }
    queue.splice(lo, 0, c);
  };
  for (const c of plan.changes) if (unmet.get(c.address) === 0) laneOf(c).queue.push(c);
  for (const l of lanes.values()) l.queue.sort(byPriority);
  // The next change to start: the most urgent one, and among equally urgent ones that of the
  // lane with the fewest in flight, so that every lane keeps a share of the slots.
  const before = (a: Lane, b: Lane) => priority(a.queue[0]!) - priority(b.queue[0]!) || a.running - b.running || byPriority(a.queue[0]!, b.queue[0]!);
  const next = (): { change: Change; lane: Lane } | undefined => {
    let best: Lane | undefined;
    for (const l of lanes.values()) if (l.queue.length && (!best || before(l, best) < 0)) best = l;
    return best ? { change: best.queue.shift()!, lane: best } : undefined;
  };
  const release = (address: string) => {
    for (const d of dependents.get(address) ?? []) {
      const left = unmet.get(d)! - 1;
      unmet.set(d, left);
      if (left === 0 && pending.has(d)) enqueue(pending.get(d)!);
    }
  };

  /** Everything that (transitively) waits on a failed or skipped change is skipped. */
  const skip = (address: string, because: string) => {
    for (const d of dependents.get(address) ?? []) {
      const c = pending.get(d);
      if (!c) continue;
      pending.delete(d);
      failedOrSkipped.add(d);
      result.skipped.push(d);
      opts.onEvent?.({ type: 'skipped', change: c, because });
      skip(d, because);
    }
  };

  const run = async (c: Change) => {
    const started = Date.now();
    opts.onEvent?.({ type: 'start', change: c });
    const journalId = await opts.store.journalBegin(runId, c, clock().toISOString(), c.after ? attrsHash(c.after) : null);
    try {
      const backend = opts.backends[c.backend];
      if (!backend) throw new Error(`no backend named ${c.backend} is configured`);
      // A credential the read found gone is only forgotten: there is nothing left to ask the
      // backend, and its placeholder (built from the store's record, not read) would not pass
      // the driver's narrowing of the kind's attributes.
      const forget = c.action === 'delete' && c.before?.meta?.missing === true;
      const res = forget ? {} : await backend.execute(c);
      if (res.readyMs !== undefined) {
        const r = (result.ready ??= { count: 0, maxMs: 0, notYet: [] });
        r.count++;
        r.maxMs = Math.max(r.maxMs, res.readyMs);
        if (res.ready === false) r.notYet.push(c.address);
      }
      await record(c, res, opts, clock);
      await opts.store.journalEnd(journalId, 'ok', clock().toISOString());
      await opts.store.audit(
        { actor: opts.actor, event: `change.${c.action}`, address: c.address, outcome: 'ok', detail: c.drift ? `drift: ${c.reason}` : c.reason },
        clock().toISOString(),
      );
      done.add(c.address);
      result.applied++;
      opts.onEvent?.({ type: 'done', change: c, ms: Date.now() - started });
      release(c.address);
    } catch (e) {
      const message = (e as Error).message;
      await opts.store.journalEnd(journalId, 'failed', clock().toISOString(), message);
      await opts.store.audit({ actor: opts.actor, event: `change.${c.action}`, address: c.address, outcome: 'failed', detail: message }, clock().toISOString());
      failedOrSkipped.add(c.address);
      result.failed.push({ address: c.address, message });
      opts.onEvent?.({ type: 'failed', change: c, message });
      skip(c.address, c.address);
    }
  };

  for (;;) {
    while (inFlight.size < limit) {
      const n = next();
      if (!n) break;
      const { change: c, lane: l } = n;
      if (!pending.has(c.address)) continue;
      pending.delete(c.address);
      l.running++;
      const p: Promise<void> = run(c).finally(() => {
        l.running--;
        inFlight.delete(p);
      });
      inFlight.add(p);
    }
    if (inFlight.size === 0) break;
    await Promise.race(inFlight);
  }
  // Anything still pending waits on a cycle, which compile never produces; say so rather than hang.
  for (const c of pending.values()) {
    result.skipped.push(c.address);
    opts.onEvent?.({ type: 'skipped', change: c, because: 'a dependency cycle' });
  }

  await opts.store.audit(
    {
      actor: opts.actor,
      event: 'apply.end',
      address: null,
      outcome: result.failed.length ? 'failed' : 'ok',
      detail: `${result.applied} applied, ${result.failed.length} failed, ${result.skipped.length} skipped`,
    },
    clock().toISOString(),
  );
  if (result.failed.length) {
    throw Object.assign(
      new ApplyError(`${result.failed.length} change(s) failed; ${result.skipped.length} skipped because they depend on them`, result.failed),
      { result },
    );
  }
  return result;
}

/** Bring the store in line with a change that just took effect. */
async function record(c: Change, res: ExecuteResult, opts: ApplyOptions, clock: () => Date): Promise<void> {
  const store = opts.store;
  if (res.secret && res.credential) {
    const slot = slotOf(c.address);
    const grace = c.after?.lifecycle?.graceSeconds;
    // The grace period counts from the moment the new credential exists.
    const retireAt = c.action === 'replace' && grace !== undefined ? new Date(Date.parse(res.credential.createdAt) + grace * 1000).toISOString() : undefined;
    await store.saveCredential(
      { address: slot, credentialId: res.credential.credentialId, createdAt: res.credential.createdAt, backend: c.backend, principal: c.after?.name ?? '' },
      res.secret,
      retireAt,
    );
    await store.audit(
      {
        actor: opts.actor,
        event: c.action === 'replace' ? 'credential.rotate' : 'credential.issue',
        address: slot,
        outcome: 'ok',
        detail: `id ${res.credential.credentialId}${retireAt ? `; previous one retires at ${retireAt}` : ''}`,
      },
      clock().toISOString(),
    );
  }
  if (c.action === 'delete') {
    if (isCredential(c)) {
      const id = credentialIdOf(c.before?.meta);
      if (id) {
        await store.eraseCredential(slotOf(c.address), id);
        await store.audit(
          { actor: opts.actor, event: 'credential.erase', address: slotOf(c.address), outcome: 'ok', detail: `id ${id}` },
          clock().toISOString(),
        );
      }
    }
    await store.setApplied(c.address, null);
  } else if (c.after) {
    await store.setApplied(c.address, attrsHash(c.after));
  }
}
