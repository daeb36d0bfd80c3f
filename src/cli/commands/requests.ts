// datagrant requests create | list | approve | deny | cancel: requests for access from a terminal
// (and tests), over src/app/requests.ts. `--as` names the principal who acts; whoever holds the
// master key may say who they are, as with `review decide --as`, and the audit chain records both
// that principal and the command's actor. serve's /v1/requests takes the same decisions with the
// caller named by an ID token instead.
import { actorOf, loadSpecFor, pathsFor, withStore, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';
import { approveRequest, cancelRequest, createRequest, denyRequest, listRequests, requestsWorld, type RequestsWorld } from '../../app/requests.js';
import { resolvePrincipal } from '../../plan/requests.js';
import { describeRequest, renderRequestList } from '../../render/requests.js';
import { openScimStoreAt } from '../../scim/store/open.js';
import type { StateStore } from '../../store/store.js';

/** Runs `fn` with the spec, the people (SCIM ones included) and the state store. */
async function withRequests<T>(io: Io, opts: CommonOptions, fn: (world: RequestsWorld, store: StateStore, now: Date) => Promise<T>): Promise<T> {
  const now = io.now();
  const loaded = loadSpecFor(io, opts, now);
  return withStore(io, opts, async (store) => {
    const scim = loaded.spec.scim ? await openScimStoreAt(pathsFor(io, opts), io.env) : undefined;
    try {
      return await fn(await requestsWorld(loaded.spec, scim, loaded.source), store, now);
    } finally {
      await scim?.close();
    }
  });
}

const APPLY_HINT = 'Run `datagrant apply` to make it so now (a running `datagrant serve` applies it at once).';

export interface CreateCliOptions extends CommonOptions {
  as: string;
  dataset: string;
  access: string;
  for: string;
  reason: string;
  json?: boolean;
}

export async function requestsCreate(io: Io, opts: CreateCliOptions): Promise<number> {
  const { request, approvers } = await withRequests(io, opts, (world, store, now) =>
    createRequest(world, store, {
      requester: resolvePrincipal(world.people, opts.as),
      dataset: opts.dataset,
      access: opts.access,
      duration: opts.for,
      reason: opts.reason,
      via: actorOf(io),
      now,
    }),
  );
  if (opts.json) {
    io.stdout(`${JSON.stringify({ request, approvers }, null, 2)}\n`);
    return 0;
  }
  io.stdout(
    [
      `Request #${request.id}: ${request.requester} asks for ${request.level} on ${request.dataset} for ${request.duration} (audit #${request.auditSeq}).`,
      `  approvers: ${approvers.join(', ')}`,
      `Next: datagrant requests approve ${request.id} --as APPROVER --reason TEXT (or deny ${request.id})`,
      '',
    ].join('\n'),
  );
  return 0;
}

export async function requestsList(io: Io, opts: CommonOptions & { pending?: boolean; as?: string; json?: boolean }): Promise<number> {
  const listed = await withRequests(io, opts, (world, store, now) =>
    listRequests(world, store, now, {
      ...(opts.pending ? { pending: true } : {}),
      ...(opts.as !== undefined ? { principal: resolvePrincipal(world.people, opts.as) } : {}),
    }),
  );
  io.stdout(opts.json ? `${JSON.stringify(listed, null, 2)}\n` : renderRequestList(listed));
  return 0;
}

export interface DecideCliOptions extends CommonOptions {
  id: number;
  as: string;
  reason: string;
}

export async function requestsApprove(io: Io, opts: DecideCliOptions): Promise<number> {
  const r = await withRequests(io, opts, (world, store, now) =>
    approveRequest(world, store, { id: opts.id, as: opts.as, reason: opts.reason, via: actorOf(io), now }),
  );
  io.stdout(
    `Approved request #${r.id} as ${r.decision!.by}: ${r.requester} gets ${r.level} on ${r.dataset} until ${r.endsAt} (audit #${r.auditSeq}).\n${APPLY_HINT}\n`,
  );
  return 0;
}

export async function requestsDeny(io: Io, opts: DecideCliOptions): Promise<number> {
  const r = await withRequests(io, opts, (world, store, now) =>
    denyRequest(world, store, { id: opts.id, as: opts.as, reason: opts.reason, via: actorOf(io), now }),
  );
  io.stdout(`Denied request #${r.id} as ${r.decision!.by}: ${r.requester} gets no ${r.level} on ${r.dataset} (audit #${r.auditSeq}).\n`);
  return 0;
}

export async function requestsCancel(io: Io, opts: Omit<DecideCliOptions, 'reason'> & { reason?: string }): Promise<number> {
  const r = await withRequests(io, opts, (world, store, now) =>
    cancelRequest(world, store, { id: opts.id, as: opts.as, ...(opts.reason !== undefined ? { reason: opts.reason } : {}), via: actorOf(io), now }),
  );
  const view = { ...r, stateNow: r.state };
  io.stdout(`Cancelled request #${r.id}: ${describeRequest(view)} (audit #${r.auditSeq}).\n${r.decision ? `${APPLY_HINT}\n` : ''}`);
  return 0;
}
