// /v1/requests — requests for access over HTTP, for people without a terminal (and the console on
// top of it). The caller is the principal its OpenID Connect ID token names, exactly as for
// POST /v1/credentials/:backend (caller.ts), among every principal there is: the spec's, SCIM
// people, and SCIM people in no mapped group (who may well ask for access). The decisions and
// their rules are the CLI's (src/app/requests.ts): the requester never approves their own request,
// an approver must be one for that dataset and level, an approval that would break an invariant is
// refused with the invariant's words, and every change is in the audit chain. An approval (or an
// approved request cancelled) reconciles at once.
//
//   GET  /v1/requests[?pending=true]   the caller's own requests, those it may decide or decided
//   GET  /v1/requests/options          what the caller may ask for, and the limits
//   GET  /v1/requests/:id              one of those
//   POST /v1/requests                  { dataset, access, duration, reason } → 201
//   POST /v1/requests/:id/approve      { reason }
//   POST /v1/requests/:id/deny         { reason }
//   POST /v1/requests/:id/cancel       { reason? } (the requester)
//
// Answers are JSON, `Cache-Control: no-store`; errors are { error, message } (and `violations` for
// an approval an invariant refuses): 400 invalid_request, 401 invalid_token, 403 access_denied,
// 404 not_found, 409 conflict, 503 temporarily_unavailable.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  approveRequest,
  cancelRequest,
  createRequest,
  denyRequest,
  listRequests,
  requestable,
  type ListedRequest,
  type RequestsStore,
  type RequestsWorld,
} from '../app/requests.js';
import { RequestError } from '../core/errors.js';
import type { OidcIndex } from '../spec/oidc.js';
import type { OidcIssuerSpec } from '../spec/schema.js';
import { answer, callerOf, refuseToken, RETRY_AFTER_SECONDS } from './caller.js';
import { OidcVerifier } from './oidc.js';

export const REQUESTS_PATH = '/v1/requests';

/** The spec and the people as serve sees them now, and which principal each token claim names. */
export interface RequestsDirectory {
  issuers: readonly OidcIssuerSpec[];
  /** Over every principal there is (`world.people`). */
  index: OidcIndex;
  world: RequestsWorld;
}

export interface RequestsRouteOptions {
  /** The directory now; throws when the spec or the SCIM store cannot be read (503). */
  directory: () => Promise<RequestsDirectory>;
  store: () => Promise<RequestsStore>;
  /** Told when access changed (an approval, an approved request cancelled): serve reconciles at once. */
  onAccessChanged?: () => void;
  verifier?: OidcVerifier;
  now?: () => Date;
}

/** A request as the API shows it to a caller. */
export type RequestBody = ListedRequest & {
  /** The caller asked for it. */
  mine: boolean;
  /** The caller may approve or deny it now. */
  canDecide: boolean;
};

const STATUS: Record<RequestError['kind'], [number, string]> = {
  invalid: [400, 'invalid_request'],
  forbidden: [403, 'access_denied'],
  'not-found': [404, 'not_found'],
  conflict: [409, 'conflict'],
};

/** A field of the JSON body that must be text (or may be absent, when `optional`). */
function text(body: unknown, field: string, optional = false): string | undefined {
  const value = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>)[field] : undefined;
  if (value === undefined && optional) return undefined;
  if (typeof value !== 'string') {
    throw new RequestError('invalid', `the JSON body needs "${field}" as text${body === undefined ? ' (send Content-Type: application/json)' : ''}`);
  }
  return value;
}

function idOf(req: FastifyRequest): number {
  const raw = (req.params as { id: string }).id;
  const id = /^[1-9][0-9]{0,15}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(id)) throw new RequestError('not-found', `there is no request ${JSON.stringify(raw)}: requests are numbered 1, 2, …`);
  return id;
}

export function registerRequestRoutes(app: FastifyInstance, opts: RequestsRouteOptions): void {
  const verifier = opts.verifier ?? new OidcVerifier();
  const now = opts.now ?? (() => new Date());

  void app.register(async (scope) => {
    scope.setErrorHandler(async (err: Error & { statusCode?: number }, req, reply) => {
      if (err instanceof RequestError) {
        const [status, error] = STATUS[err.kind];
        return answer(reply, status, { error, message: err.message, ...(err.violations.length ? { violations: err.violations } : {}) });
      }
      const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
      if (status === 500) req.log.error({ err: { name: err.name, message: err.message } }, 'requests: request failed');
      return answer(reply, status, {
        error: status === 500 ? 'server_error' : 'invalid_request',
        message: status === 500 ? 'internal error; the server log has the details' : err.message,
      });
    });

    /** Runs `fn` for the principal the token names, or answers why there is none. */
    const asCaller =
      (
        fn: (
          c: { principal: string; actor: string; dir: RequestsDirectory; store: RequestsStore; now: Date },
          req: FastifyRequest,
          reply: FastifyReply,
        ) => Promise<unknown>,
      ) =>
      async (req: FastifyRequest, reply: FastifyReply) => {
        let dir: RequestsDirectory;
        let store: RequestsStore;
        try {
          [dir, store] = await Promise.all([opts.directory(), opts.store()]);
        } catch (e) {
          req.log.error({ err: { name: (e as Error).name, message: (e as Error).message } }, 'requests: the spec or the store cannot be read');
          reply.header('retry-after', String(RETRY_AFTER_SECONDS));
          return answer(reply, 503, { error: 'temporarily_unavailable', message: 'the spec or the state cannot be read now; try again shortly' });
        }
        if (dir.issuers.length === 0)
          return answer(reply, 404, { error: 'not_found', message: 'no OpenID Connect issuer is configured (settings.oidc), so no one can sign in to ask' });
        const caller = await callerOf(req, dir.issuers, dir.index, verifier);
        if (caller.kind === 'no-token' || caller.kind === 'invalid-token' || caller.kind === 'unavailable')
          return refuseToken(reply, caller, req.log, 'requests');
        if (caller.kind === 'no-principal') {
          req.log.info(
            { issuer: caller.issuer.name, problem: caller.detail, ...(caller.principals ? { principals: caller.principals } : {}) },
            'requests: caller refused',
          );
          return answer(reply, 403, { error: 'access_denied', message: caller.message });
        }
        return fn({ principal: caller.principal, actor: caller.actor, dir, store, now: now() }, req, reply);
      };

    /** The request as `principal` sees it. */
    const visible = (r: ListedRequest, principal: string): RequestBody => ({
      ...r,
      mine: r.requester === principal,
      canDecide: r.stateNow === 'pending' && (r.approvers ?? []).includes(principal),
    });

    scope.get(
      REQUESTS_PATH,
      { config: { ownAuth: true } },
      asCaller(async ({ principal, dir, store, now: at }, req, reply) => {
        const pending = (req.query as { pending?: string }).pending === 'true';
        const listed = await listRequests(dir.world, store, at, { principal, ...(pending ? { pending: true } : {}) });
        return answer(reply, 200, { principal, requests: listed.map((r) => visible(r, principal)) });
      }),
    );

    scope.get(
      `${REQUESTS_PATH}/options`,
      { config: { ownAuth: true } },
      asCaller(async ({ principal, dir }, _req, reply) => answer(reply, 200, { principal, ...requestable(dir.world, principal) })),
    );

    scope.get(
      `${REQUESTS_PATH}/:id`,
      { config: { ownAuth: true } },
      asCaller(async ({ principal, dir, store, now: at }, req, reply) => {
        const id = idOf(req);
        const found = (await listRequests(dir.world, store, at, { principal })).find((r) => r.id === id);
        if (!found) throw new RequestError('not-found', `there is no request #${id} of yours, or for you to decide`);
        return answer(reply, 200, visible(found, principal));
      }),
    );

    scope.post(
      REQUESTS_PATH,
      { config: { ownAuth: true } },
      asCaller(async ({ principal, actor, dir, store, now: at }, req, reply) => {
        const { request, approvers } = await createRequest(dir.world, store, {
          requester: principal,
          dataset: text(req.body, 'dataset')!,
          access: text(req.body, 'access')!,
          duration: text(req.body, 'duration')!,
          reason: text(req.body, 'reason')!,
          via: actor,
          now: at,
        });
        req.log.info({ request: request.id, principal, dataset: request.dataset, level: request.level }, 'requests: request made');
        return answer(reply, 201, { ...request, stateNow: request.state, approvers, mine: true, canDecide: false });
      }),
    );

    for (const verb of ['approve', 'deny'] as const) {
      scope.post(
        `${REQUESTS_PATH}/:id/${verb}`,
        { config: { ownAuth: true } },
        asCaller(async ({ principal, actor, dir, store, now: at }, req, reply) => {
          const decide = verb === 'approve' ? approveRequest : denyRequest;
          const r = await decide(dir.world, store, { id: idOf(req), as: principal, reason: text(req.body, 'reason')!, via: actor, now: at });
          req.log.info({ request: r.id, by: principal, state: r.state }, `requests: request ${r.state}`);
          if (r.state === 'approved') opts.onAccessChanged?.();
          return answer(reply, 200, { ...r, stateNow: r.state, mine: r.requester === principal, canDecide: false });
        }),
      );
    }

    scope.post(
      `${REQUESTS_PATH}/:id/cancel`,
      { config: { ownAuth: true } },
      asCaller(async ({ principal, actor, dir, store, now: at }, req, reply) => {
        const reason = text(req.body ?? {}, 'reason', true);
        const r = await cancelRequest(dir.world, store, { id: idOf(req), as: principal, ...(reason !== undefined ? { reason } : {}), via: actor, now: at });
        req.log.info({ request: r.id, by: principal }, 'requests: request cancelled');
        if (r.decision) opts.onAccessChanged?.();
        return answer(reply, 200, { ...r, stateNow: r.state, mine: true, canDecide: false });
      }),
    );
  });
}
