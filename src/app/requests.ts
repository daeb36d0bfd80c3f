// Requests for access (issue 15): make one, approve, deny or cancel it, list them, expire those
// whose time has come, and the one merge of SCIM people and approved requests into the spec that
// the CLI (plan, apply, drift, access, reviews, sessions) and serve (reconciles, sessions, the
// requests API) all use. Every change goes through the store with its audit entry; a refused
// decision is audited too. The rules themselves are pure (src/plan/requests.ts).
import { RequestError } from '../core/errors.js';
import type { Notice } from '../core/types.js';
import { requestAddress, type AccessRequest } from '../model/request.js';
import {
  approvalBreaks,
  checkCanceller,
  checkDecider,
  checkNewRequest,
  cleanReason,
  decidersOf,
  endOf,
  isLive,
  mergeRequests,
  pendingBefore,
  requestableBy,
  requestLimits,
  resolvePrincipal,
  stateAt,
  type CheckedRequest,
  type NewRequestInput,
  type People,
} from '../plan/requests.js';
import { allScimPeople, scimPeople, scimPeopleNamed } from '../scim/identities.js';
import type { ScimStore } from '../scim/store/store.js';
import type { SpecPositions } from '../spec/load.js';
import type { Spec } from '../spec/schema.js';
import type { AuditLog, RequestStore } from '../store/store.js';

/** Where the people and requests merged into a spec come from. */
export interface MergeSources {
  /** The SCIM store: needed when the spec has a `scim:` section. */
  scim?: ScimStore;
  /** The approved requests; without it, none are merged. */
  requests?: Pick<RequestStore, 'requests'>;
}

/**
 * The spec as plan, apply, drift, access and serve must all see it: the SCIM people merged into
 * its principals (scimPeople), then the live approved requests as grants that end by themselves
 * (mergeRequests), with a notice for each. One function for every caller, so that nothing plans
 * away what another merged in.
 */
export async function mergedSpec(spec: Spec, src: MergeSources, now: Date): Promise<{ spec: Spec; notices: Notice[] }> {
  const people = src.scim && spec.scim ? await scimPeople(src.scim, spec) : {};
  const base: Spec = Object.keys(people).length ? { ...spec, principals: { ...people, ...spec.principals } } : spec;
  if (!src.requests) return { spec: base, notices: [] };
  const live = (await src.requests.requests({ states: ['approved'] })).filter((r) => isLive(r, now));
  if (live.length === 0) return { spec: base, notices: [] };
  // A SCIM person in no mapped group compiles to nothing and is not among scimPeople: one who
  // holds an approved request is a principal all the same.
  const missing = live.map((r) => r.requester).filter((n) => !Object.hasOwn(base.principals, n));
  const extra = src.scim && missing.length ? await scimPeopleNamed(src.scim, base, missing) : {};
  return mergeRequests(base, live, now, extra);
}

/** What deciding on requests needs of the spec and the people, read once per command (or cached by serve). */
export interface RequestsWorld {
  /** The spec as the file says it, with the SCIM people merged in (no requests). */
  base: Spec;
  /** Every principal there is: the spec's, SCIM people, and SCIM people in no mapped group. */
  people: People;
  /** Where the spec file holds each value, for messages. */
  source?: SpecPositions;
}

export async function requestsWorld(spec: Spec, scim: ScimStore | undefined, source?: SpecPositions): Promise<RequestsWorld> {
  const mapped = scim && spec.scim ? await scimPeople(scim, spec) : {};
  const base: Spec = { ...spec, principals: { ...mapped, ...spec.principals } };
  const everyone = scim && spec.scim ? await allScimPeople(scim, spec) : {};
  return { base, people: { ...everyone, ...base.principals }, ...(source ? { source } : {}) };
}

export type RequestsStore = RequestStore & Pick<AuditLog, 'audit'>;

/** The world at `now`: the live approved requests and the spec with them merged. */
async function current(world: RequestsWorld, store: RequestsStore, now: Date) {
  const approved = (await store.requests({ states: ['approved'] })).filter((r) => isLive(r, now));
  return { approved, merged: mergeRequests(world.base, approved, now, world.people).spec };
}

async function load(store: RequestsStore, id: number): Promise<AccessRequest> {
  const r = Number.isSafeInteger(id) && id > 0 ? await store.request(id) : undefined;
  if (!r) throw new RequestError('not-found', `there is no request #${id}; \`datagrant requests list\` shows them`);
  return r;
}

const quoted = (reason: string) => JSON.stringify(reason);

export interface CreateRequestOptions extends NewRequestInput {
  /** Who made it: the CLI's actor, or `oidc:<issuer>:<sub>`. */
  via: string;
  now: Date;
}

export async function createRequest(
  world: RequestsWorld,
  store: RequestsStore,
  o: CreateRequestOptions,
): Promise<{ request: AccessRequest; approvers: string[] }> {
  const { merged } = await current(world, store, o.now);
  const checked: CheckedRequest = checkNewRequest(merged, world.people, o, o.now, world.source);
  const open = (await store.requests({ states: ['pending'], requester: checked.requester })).find(
    (r) => r.dataset === checked.dataset && r.level === checked.level && stateAt(r, world.base, o.now) === 'pending',
  );
  if (open)
    throw new RequestError(
      'conflict',
      `${checked.requester} already asked for ${checked.level} on dataset ${checked.dataset}: request #${open.id}, pending since ${open.requestedAt}`,
    );
  const request = await store.createRequest(
    {
      requester: checked.requester,
      dataset: checked.dataset,
      level: checked.level,
      duration: checked.duration,
      reason: checked.reason,
      requestedAt: o.now.toISOString(),
      requestedVia: o.via,
    },
    (id) => ({
      actor: o.via,
      event: 'request.create',
      address: requestAddress(id),
      outcome: 'ok',
      detail: `${checked.requester} asks for ${checked.level} on ${checked.dataset} for ${checked.duration}; approvers: ${checked.approvers.join(', ')}; reason: ${quoted(checked.reason)}`,
    }),
  );
  return { request, approvers: checked.approvers };
}

export interface DecideOptions {
  id: number;
  /** The deciding principal, by name or e-mail (serve passes the principal its token names). */
  as: string;
  reason: string;
  via: string;
  now: Date;
}

/** A decision refused is an audit entry too: who tried what, and why it was refused. */
async function refused(store: RequestsStore, o: DecideOptions, verb: string, e: unknown): Promise<never> {
  if (e instanceof RequestError && (e.kind === 'forbidden' || e.violations.length)) {
    await store.audit(
      { actor: o.via, event: 'request.refused', address: requestAddress(o.id), outcome: 'refused', detail: `${verb} as ${o.as}: ${e.message}` },
      o.now.toISOString(),
    );
  }
  throw e;
}

/** A request not pending any more (or waited too long) takes no decision: say which it is. */
function pendingOnly(r: AccessRequest, world: RequestsWorld, now: Date, verb: string): void {
  const state = stateAt(r, world.base, now);
  if (state === 'pending') return;
  const by = r.decision ? ` by ${r.decision.by} at ${r.decision.at}` : r.closed ? ` at ${r.closed.at}` : '';
  throw new RequestError(
    'conflict',
    `request #${r.id} is ${state}${state === r.state ? by : r.state === 'pending' ? ' (nobody decided it in time)' : ''}; only a pending request can be ${verb}`,
  );
}

export async function approveRequest(world: RequestsWorld, store: RequestsStore, o: DecideOptions): Promise<AccessRequest> {
  const r = await load(store, o.id);
  const reason = cleanReason(o.reason, 'an approval');
  try {
    pendingOnly(r, world, o.now, 'approved');
    const approver = resolvePrincipal(world.people, o.as);
    const { approved, merged } = await current(world, store, o.now);
    checkDecider(merged, world.people, r, approver, 'approve', world.source);
    const breaks = approvalBreaks(world.base, world.people, approved, r, approver, o.now, world.source);
    if (breaks.length) {
      throw new RequestError(
        'conflict',
        `approving request #${r.id} would break ${breaks.length === 1 ? 'an invariant' : `${breaks.length} invariants`} of the spec, so it is refused:\n${breaks.map((b) => `  ${b}`).join('\n')}`,
        breaks,
      );
    }
    const endsAt = endOf(r, world.base, o.now);
    return await store.changeRequest(
      r.id,
      { to: 'approved', decision: { by: approver, at: o.now.toISOString(), reason, via: o.via }, endsAt },
      {
        actor: o.via,
        event: 'request.approve',
        address: requestAddress(r.id),
        outcome: 'ok',
        detail: `approved by ${approver}: ${r.requester} gets ${r.level} on ${r.dataset} until ${endsAt}; reason: ${quoted(reason)}`,
      },
    );
  } catch (e) {
    return refused(store, o, 'approve', e);
  }
}

export async function denyRequest(world: RequestsWorld, store: RequestsStore, o: DecideOptions): Promise<AccessRequest> {
  const r = await load(store, o.id);
  const reason = cleanReason(o.reason, 'a denial');
  try {
    pendingOnly(r, world, o.now, 'denied');
    const approver = resolvePrincipal(world.people, o.as);
    checkDecider((await current(world, store, o.now)).merged, world.people, r, approver, 'deny', world.source);
    return await store.changeRequest(
      r.id,
      { to: 'denied', decision: { by: approver, at: o.now.toISOString(), reason, via: o.via } },
      {
        actor: o.via,
        event: 'request.deny',
        address: requestAddress(r.id),
        outcome: 'ok',
        detail: `denied by ${approver}: ${r.requester} gets no ${r.level} on ${r.dataset}; reason: ${quoted(reason)}`,
      },
    );
  } catch (e) {
    return refused(store, o, 'deny', e);
  }
}

/** The requester withdraws a pending request, or ends an approved one early. */
export async function cancelRequest(
  world: RequestsWorld,
  store: RequestsStore,
  o: Omit<DecideOptions, 'reason'> & { reason?: string },
): Promise<AccessRequest> {
  const r = await load(store, o.id);
  const reason = o.reason === undefined || o.reason.trim() === '' ? 'cancelled by the requester' : cleanReason(o.reason, 'a cancellation');
  const who = resolvePrincipal(world.people, o.as);
  checkCanceller(r, who);
  const state = stateAt(r, world.base, o.now);
  if (state !== 'pending' && state !== 'approved')
    throw new RequestError('conflict', `request #${r.id} is ${state}; only a pending or approved request can be cancelled`);
  return store.changeRequest(
    r.id,
    { to: 'cancelled', closed: { at: o.now.toISOString(), by: who, reason, via: o.via } },
    {
      actor: o.via,
      event: 'request.cancel',
      address: requestAddress(r.id),
      outcome: 'ok',
      detail: `cancelled by ${who} while ${r.state}${r.state === 'approved' ? ` (it was to end at ${r.endsAt})` : ''}: ${r.level} on ${r.dataset}; reason: ${quoted(reason)}`,
    },
  );
}

/** A request as a reader sees it at `now`: expired once its time is up, before an apply records it. */
export type ListedRequest = AccessRequest & {
  /** The state at `now` (the stored one, or expired). */
  stateNow: AccessRequest['state'];
  /** Pending: who may decide it now (never the requester). */
  approvers?: string[];
};

export interface ListFilter {
  /** Only pending requests (still pending at `now`). */
  pending?: boolean;
  /** Only the requests of this principal, those it may approve or deny now, and those it decided. */
  principal?: string;
}

export async function listRequests(world: RequestsWorld, store: RequestsStore, now: Date, filter: ListFilter = {}): Promise<ListedRequest[]> {
  const { merged } = await current(world, store, now);
  const all = await store.requests();
  const out: ListedRequest[] = [];
  for (const r of all) {
    const stateNow = stateAt(r, world.base, now);
    if (filter.pending && stateNow !== 'pending') continue;
    const approvers = stateNow === 'pending' ? decidersOf(merged, world.people, r) : undefined;
    const p = filter.principal;
    if (p !== undefined && r.requester !== p && r.decision?.by !== p && !(approvers ?? []).includes(p)) continue;
    out.push({ ...r, stateNow, ...(approvers ? { approvers } : {}) });
  }
  return out;
}

/** What `principal` may ask for, and the limits a request has: for a form. */
export function requestable(world: RequestsWorld, principal: string) {
  const limits = requestLimits(world.base);
  return { maxDuration: limits.maxDuration, decideWithin: limits.decideWithin, datasets: requestableBy(world.base, world.people, principal) };
}

/**
 * Records as expired the approved requests whose end has come and the pending ones nobody
 * decided in time (settings.requests.decideWithin), each with its audit entry. Apply and serve's
 * reconciles call it; reads (plan, list) show the same states without writing them.
 */
export async function expireDue(store: RequestStore, spec: Spec, now: Date, via: string): Promise<AccessRequest[]> {
  return store.expireRequests({ now: now.toISOString(), pendingBefore: pendingBefore(spec, now).toISOString(), via }, (r) => ({
    actor: via,
    event: 'request.expire',
    address: requestAddress(r.id),
    outcome: 'ok',
    detail: `${r.requester}: ${r.level} on ${r.dataset}: ${r.closed?.reason ?? 'expired'}`,
  }));
}
