// The SCIM 2.0 service provider (RFC 7644) as a Fastify instance: `/scim/v2/{Users,Groups}` with
// create, get, list (filter, pagination, attribute selection), PUT, PATCH and DELETE; the discovery
// endpoints; `/healthz` (no auth) and `/metrics` (auth). Every failure a client can cause is a
// 4xx RFC 7644 §3.12 error body; anything else is a 500 whose body says nothing about the cause
// (the cause goes to the log). Bearer tokens are configured only as SHA-256 hashes and compared in
// constant time against every configured hash.
import { createHash, timingSafeEqual } from 'node:crypto';
import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Json } from '../core/types.js';
import { invalidFilter, invalidSyntax, invalidValue, mutability, notFound, preconditionFailed, ScimError } from './errors.js';
import { absentAttributes, matches, parseFilter, resolveAttrPath, uniqueKeyLookup, type AttrPath, type Filter } from './filter.js';
import { LIMITS_SCHEMA, MAX_BINARY, MAX_KEY, MAX_MEMBERS, MAX_PATCH_OPERATIONS, MAX_RESOURCE_BYTES, MAX_STRING, MAX_VALUES } from './limits.js';
import { MetricsRegistry } from './metrics.js';
import { applyPatch, applyPatchInSlices, parsePatchRequest } from './patch.js';
import {
  CORE_SCHEMA,
  ENTERPRISE_SCHEMA,
  EXTENSIONS,
  GROUP_SCHEMA,
  LIST_SCHEMA,
  SCHEMAS,
  SEARCH_SCHEMA,
  USER_SCHEMA,
  checkPatched,
  checkResource,
  schemasOf,
  type JsonObject,
  type ResourceType,
} from './schemas.js';
import type { ChangeListener, ScimRecord, ScimStore } from './store/store.js';
import { ifMatchAdmits } from './store/records.js';

export const SCIM_PREFIX = '/scim/v2';
export const SCIM_CONTENT_TYPE = 'application/scim+json; charset=utf-8';
/** Default request body limit: far above any real User or Group, far below a memory problem. */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** Most resources one list response returns (`count` above it is lowered to it). */
export const MAX_RESULTS = 1000;
/**
 * Before a 413, the rest of a body up to this size is read and dropped: a client that sends its
 * whole body before it reads (most HTTP libraries) then gets the answer, not a broken pipe.
 * A larger body gets the 413 at once and a closed connection.
 */
export const DRAIN_LIMIT = 16 * 1024 * 1024;
const DRAIN_MS = 30_000;
/** How long a connection refused at the HTTP level stays open to read what the client still sends. */
const LINGER_MS = 2000;

export interface ScimServerOptions {
  store: ScimStore;
  /** SHA-256 (hex) of each accepted bearer token. None configured: every authenticated route is refused. */
  tokenHashes: string[];
  /** A pino logger; default: no logging. The Authorization header is never logged. */
  logger?: FastifyBaseLogger;
  /** Largest accepted request body in bytes (413 above it). Default 1 MiB. */
  bodyLimit?: number;
  /** Paths (and everything below them) that answer with their own authentication, unknown ones included: `/ui`. */
  ownAuthPrefixes?: string[];
  /** Called after each committed write made through this server. */
  onChange?: ChangeListener;
  /** The principal names the spec defines now, asked at each user creation: a new user never gets one. */
  reservedNames?: () => Iterable<string>;
  /** Registry `/metrics` renders; pass the serve loop's own to add reconcile metrics. */
  metrics?: MetricsRegistry;
  /** Absolute base for `Location` and `meta.location` (e.g. `https://dg.example.com`); default: from the request (honours X-Forwarded-* only with trustProxy). */
  baseUrl?: string;
  /** Trust X-Forwarded-Proto/Host from a reverse proxy that terminates TLS (Fastify's `trustProxy`). */
  trustProxy?: boolean | string | string[];
  /** Serve HTTPS with this certificate and key (PEM); without it, plain HTTP (put a TLS-terminating proxy in front). */
  https?: { cert: string | Buffer; key: string | Buffer };
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The registry behind `/metrics`. */
    scimMetrics: MetricsRegistry;
  }
  interface FastifyContextConfig {
    /**
     * The route authenticates its requests itself (serve's credential endpoint, with ID tokens):
     * no SCIM bearer token is asked for there, and none is accepted as such.
     */
    ownAuth?: boolean;
  }
}

/** SHA-256 hex of a bearer token: what `tokenHashes` holds. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.code(status).header('content-type', SCIM_CONTENT_TYPE).send(JSON.stringify(body));
}

function sendError(reply: FastifyReply, e: ScimError): FastifyReply {
  if (e.status === 401) reply.header('www-authenticate', 'Bearer realm="datagrant"');
  return send(reply, e.status, e.body());
}

function scimTypeFor(status: number): ScimError['scimType'] {
  return status === 400 ? 'invalidSyntax' : undefined;
}

export function buildScimServer(opts: ScimServerOptions): FastifyInstance {
  const hashes = opts.tokenHashes.map((h) => {
    if (!/^[0-9a-f]{64}$/i.test(h)) throw new Error('a SCIM token hash must be 64 hex digits (sha256 of the token)');
    return Buffer.from(h, 'hex');
  });
  const store = opts.store;
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const ownAuthPrefixes = (opts.ownAuthPrefixes ?? []).map((p) => p.toLowerCase());
  const metrics = opts.metrics ?? new MetricsRegistry();
  const requests = metrics.counter('datagrant_scim_requests_total', 'SCIM HTTP requests by method, route and status code.');

  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    bodyLimit,
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { caseSensitive: false, ignoreTrailingSlash: true },
    ...(opts.trustProxy !== undefined ? { trustProxy: opts.trustProxy } : {}),
    ...(opts.https ? { https: { cert: opts.https.cert, key: opts.https.key } } : {}),
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    clientErrorHandler: (err: Error & { code?: string }, socket: Duplex) => refuseConnection(err, socket),
    // A URL the router cannot take (bad percent-encoding, a 500-character id) is a SCIM 400/414 too.
    frameworkErrors: (err, _req, reply) => {
      const status = (err as { statusCode?: number }).statusCode ?? 400;
      void sendError(
        reply,
        new ScimError(
          status,
          status === 400 ? 'invalidSyntax' : undefined,
          err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'the URL path parameter is too long' : 'the URL is not valid',
        ),
      );
    },
  }) as unknown as FastifyInstance;
  app.decorate('scimMetrics', metrics);

  // Bodies: application/scim+json and application/json, parsed here so that a syntax error is a
  // SCIM 400. Text must be UTF-8 (RFC 7643 §2.3.1): bytes that are not are refused, not replaced.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/scim+json', 'application/json'], { parseAs: 'buffer', bodyLimit }, (_req, body, done) => {
    let text: string;
    try {
      text = UTF8.decode(body as Buffer);
    } catch {
      return done(invalidSyntax('the request body is not valid UTF-8'), undefined);
    }
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, parseJson(text));
    } catch (e) {
      done(invalidSyntax(`the request body is not valid JSON: ${(e as Error).message}`), undefined);
    }
  });

  app.addHook('onRequest', async (req, reply) => {
    if (req.url === '/healthz' || req.url.startsWith('/healthz?')) return;
    if (req.routeOptions.config?.ownAuth === true) return;
    // Paths whose every answer, a 404 too, is another's to give (the web console signs people in itself).
    const path = req.url.toLowerCase();
    if (ownAuthPrefixes.some((p) => path === p || path.startsWith(`${p}/`) || path.startsWith(`${p}?`))) return;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    let ok = false;
    if (m) {
      const digest = createHash('sha256').update(m[1]!, 'utf8').digest();
      // Every hash is compared, so the time taken says nothing about which one (if any) matched.
      for (const h of hashes) ok = timingSafeEqual(h, digest) || ok;
    }
    if (!ok)
      return sendError(reply, new ScimError(401, undefined, m ? 'the bearer token is not accepted' : 'an Authorization: Bearer <token> header is required'));
  });

  app.addHook('onResponse', async (req, reply) => {
    requests.inc({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
    // One access-log line per request (Fastify's default is two). The path only: a filter's query
    // string holds userNames and e-mail addresses, which an access log does not need.
    req.log.info({ method: req.method, path: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100 }, 'request');
  });

  app.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof ScimError) return sendError(reply, err);
    const status = err.statusCode;
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') await discardBody(req, reply);
    if (status && status >= 400 && status < 500) {
      const detail =
        err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? `the request body is larger than ${bodyLimit} bytes`
          : err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
            ? 'the request body must be application/scim+json (or application/json)'
            : err.message;
      return sendError(reply, new ScimError(status, scimTypeFor(status), detail));
    }
    req.log.error({ err }, 'SCIM request failed');
    return sendError(reply, new ScimError(500, undefined, 'internal error; the server log has the details'));
  });

  app.setNotFoundHandler((req, reply) => sendError(reply, notFound(`no SCIM endpoint ${req.method} ${req.url.split('?')[0]}`)));

  app.get('/healthz', async (_req, reply) => reply.header('content-type', 'application/json').send('{"status":"ok"}'));
  app.get('/metrics', async (_req, reply) => reply.header('content-type', 'text/plain; version=0.0.4; charset=utf-8').send(metrics.render()));

  const base = (req: FastifyRequest) => (opts.baseUrl ?? `${req.protocol}://${req.host}`).replace(/\/+$/, '');
  const location = (req: FastifyRequest, type: ResourceType, id: string) => `${base(req)}${SCIM_PREFIX}/${type}s/${encodeURIComponent(id)}`;

  const render = (req: FastifyRequest, rec: ScimRecord): JsonObject => {
    const { externalId, ...rest } = rec.attrs;
    return {
      schemas: schemasOf(rec.type, rec.attrs),
      id: rec.id,
      ...(externalId !== undefined ? { externalId } : {}),
      ...rest,
      meta: { resourceType: rec.type, created: rec.created, lastModified: rec.lastModified, location: location(req, rec.type, rec.id), version: rec.version },
    };
  };

  const changed: ChangeListener = (c) => {
    try {
      opts.onChange?.(c);
    } catch (e) {
      app.log.warn({ err: e }, 'SCIM onChange listener failed');
    }
  };

  for (const type of ['User', 'Group'] as const) {
    const path = `${SCIM_PREFIX}/${type}s`;

    app.get(path, async (req, reply) => {
      const one = (k: string) => param(req, k);
      return send(
        reply,
        200,
        await search(req, [type], {
          filter: one('filter'),
          startIndex: intParam(one('startIndex'), 'startIndex'),
          count: intParam(one('count'), 'count'),
          attributes: one('attributes'),
          excludedAttributes: one('excludedAttributes'),
        }),
      );
    });
    app.post(`${path}/.search`, async (req, reply) => send(reply, 200, await search(req, [type], searchRequest(req.body))));

    app.get(`${path}/:id`, async (req, reply) => {
      const { id } = req.params as { id: string };
      const rec = await store.get(type, id);
      if (!rec) throw notFound(`${type} ${id} not found`);
      reply.header('etag', rec.version);
      const inm = req.headers['if-none-match'];
      if (inm && inm.split(',').some((t) => t.trim() === '*' || t.trim().replace(/^W\//i, '') === rec.version.replace(/^W\//, '')))
        return reply.code(304).send();
      return send(reply, 200, projection(type, param(req, 'attributes'), param(req, 'excludedAttributes'))(render(req, rec)));
    });

    app.post(path, async (req, reply) => {
      const attrs = await withMembers(type, checkResource(type, req.body));
      const rec = await store.create(type, attrs, type === 'User' && opts.reservedNames ? { reservedNames: opts.reservedNames() } : {});
      changed({ type, id: rec.id, action: 'create' });
      reply.header('location', location(req, type, rec.id)).header('etag', rec.version);
      return send(reply, 201, render(req, rec));
    });

    app.put(`${path}/:id`, async (req, reply) => {
      const { id } = req.params as { id: string };
      if (isObject(req.body) && req.body.id !== undefined && req.body.id !== id) throw mutability('id cannot be changed');
      const attrs = await withMembers(type, checkResource(type, req.body));
      // PUT replaces the resource, except that leaving out `active` does not reactivate a
      // deactivated user (absent `active` counts as active for provisioning).
      const rec = await store.update(
        type,
        id,
        (cur) => (type === 'User' && attrs.active === undefined && cur.attrs.active !== undefined ? { ...attrs, active: cur.attrs.active } : attrs),
        ifMatch(req),
      );
      changed({ type, id, action: 'update' });
      reply.header('etag', rec.version);
      return send(reply, 200, projection(type, param(req, 'attributes'), param(req, 'excludedAttributes'))(render(req, rec)));
    });

    app.patch(`${path}/:id`, async (req, reply) => {
      const { id } = req.params as { id: string };
      const ops = parsePatchRequest(req.body);
      const current = await store.get(type, id);
      if (!current) throw notFound(`${type} ${id} not found`);
      const precondition = ifMatch(req);
      if (!ifMatchAdmits(precondition.ifMatch, current.version)) throw preconditionFailed(`If-Match does not match the current version ${current.version}`);
      // The work is done outside the write transaction, giving the event loop back as it goes;
      // inside, the result is written as it is when the resource has not changed meanwhile (the
      // usual case), else the patch is applied again, at once, to the row as locked.
      const preview = checkPatched(type, await applyPatchInSlices(type, current.attrs, ops, id));
      const again = (cur: ScimRecord) => (cur.version === current.version ? preview : checkPatched(type, applyPatch(type, cur.attrs, ops, id)));
      if (type === 'User') {
        const rec = await store.update(type, id, again, precondition);
        changed({ type, id, action: 'update' });
        reply.header('etag', rec.version);
        return send(reply, 200, projection(type, param(req, 'attributes'), param(req, 'excludedAttributes'))(render(req, rec)));
      }
      // Members are checked outside the write transaction (the store may be remote); inside it,
      // any member not checked here aborts.
      const typed = await withMembers(type, preview);
      const checked = new Set(memberIds(typed));
      for (const m of memberIds(current.attrs)) checked.add(m);
      const rec = await store.update(
        type,
        id,
        (cur) => {
          const next = again(cur);
          const unchecked = memberIds(next).filter((m) => !checked.has(m));
          if (unchecked.length) throw new ScimError(409, undefined, 'the group changed while this request ran; retry it');
          return fillMemberTypes(next, current.attrs, typed);
        },
        precondition,
      );
      changed({ type, id, action: 'update' });
      reply.header('etag', rec.version);
      return send(reply, 200, projection(type, param(req, 'attributes'), param(req, 'excludedAttributes'))(render(req, rec)));
    });

    app.delete(`${path}/:id`, async (req, reply) => {
      const { id } = req.params as { id: string };
      await store.delete(type, id, ifMatch(req));
      changed({ type, id, action: 'delete' });
      return reply.code(204).send();
    });
  }

  /**
   * A list response (RFC 7644 §3.4.2) over `types`, for GET with query parameters and for POST
   * `.search` (§3.4.3). Searching from the root covers Users then Groups; a comparison on an
   * attribute that one of them lacks is false for that type, but a filter no type can take is
   * still a 400.
   */
  async function search(req: FastifyRequest, types: ResourceType[], q: SearchParams): Promise<JsonObject> {
    const startIndex = Math.max(1, q.startIndex ?? 1);
    const count = Math.min(MAX_RESULTS, Math.max(0, q.count ?? MAX_RESULTS));
    const filters = new Map<ResourceType, Filter>();
    if (q.filter !== undefined) {
      for (const type of types) filters.set(type, parseFilter(q.filter, type, types.length > 1));
      const unknown = types.map((t) => new Set(absentAttributes(filters.get(t)!))).reduce((a, b) => new Set([...a].filter((n) => b.has(n))));
      if (unknown.size) throw invalidFilter(`${[...unknown][0]} is not an attribute of ${types.join(' or ')} resources`);
    }
    const all: { type: ResourceType; rec: ScimRecord; doc?: JsonObject }[] = [];
    for (const type of types) {
      const filter = filters.get(type);
      if (!filter) {
        for (const rec of await store.list(type)) all.push({ type, rec });
        continue;
      }
      const key = uniqueKeyLookup(filter);
      const candidates = key !== undefined ? [await store.findByKey(type, key)].filter((r): r is ScimRecord => !!r) : await store.list(type);
      for (const rec of candidates) {
        const doc = render(req, rec);
        if (matches(filter, doc)) all.push({ type, rec, doc });
      }
    }
    const page = all.slice(startIndex - 1, startIndex - 1 + count);
    const projections = new Map(types.map((t) => [t, projection(t, q.attributes, q.excludedAttributes)]));
    return {
      schemas: [LIST_SCHEMA],
      totalResults: all.length,
      itemsPerPage: page.length,
      startIndex,
      Resources: page.map((r) => projections.get(r.type)!(r.doc ?? render(req, r.rec))),
    };
  }
  app.post(`${SCIM_PREFIX}/.search`, async (req, reply) => send(reply, 200, await search(req, ['User', 'Group'], searchRequest(req.body))));

  /** Members must name existing users or groups; their `type` is filled in when missing. */
  async function withMembers(type: ResourceType, attrs: JsonObject): Promise<JsonObject> {
    if (type !== 'Group' || !Array.isArray(attrs.members)) return attrs;
    const ids = memberIds(attrs);
    const users = await store.existing('User', ids);
    const groups = await store.existing(
      'Group',
      ids.filter((i) => !users.has(i)),
    );
    const missing = ids.filter((i) => !users.has(i) && !groups.has(i));
    if (missing.length) throw invalidValue(`members must be existing Users or Groups; unknown: ${missing.slice(0, 10).join(', ')}`);
    return {
      ...attrs,
      members: attrs.members.map((m) => {
        const o = m as JsonObject;
        if (typeof o.value !== 'string') throw invalidValue('every member needs a value (the id of a User or Group)');
        return o.type ? o : { ...o, type: users.has(o.value) ? 'User' : 'Group' };
      }),
    };
  }

  const discovery = (p: string, body: (req: FastifyRequest) => unknown) => app.get(`${SCIM_PREFIX}/${p}`, async (req, reply) => send(reply, 200, body(req)));

  discovery('ServiceProviderConfig', (req) => ({
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig', LIMITS_SCHEMA],
    documentationUri: 'https://github.com/datagrant/datagrant#datagrant-serve-scim-20',
    patch: { supported: true },
    // No bulk endpoint; maxPayloadSize is still the largest body any request may have.
    bulk: { supported: false, maxOperations: 0, maxPayloadSize: bodyLimit },
    // `filter.supported` covers POST .search too (RFC 7644 §3.4.3); LIMITS_SCHEMA lists where.
    filter: { supported: true, maxResults: MAX_RESULTS },
    changePassword: { supported: false },
    sort: { supported: false },
    etag: { supported: true },
    authenticationSchemes: [
      {
        type: 'oauthbearertoken',
        name: 'OAuth Bearer Token',
        description: 'Authentication with a bearer token configured (as its SHA-256) in datagrant',
        primary: true,
      },
    ],
    [LIMITS_SCHEMA]: {
      search: { supported: true, endpoints: [`${SCIM_PREFIX}/.search`, `${SCIM_PREFIX}/Users/.search`, `${SCIM_PREFIX}/Groups/.search`] },
      patch: { maxOperations: MAX_PATCH_OPERATIONS },
      maxPayloadSize: bodyLimit,
      maxValuesPerAttribute: MAX_VALUES,
      maxMembersPerGroup: MAX_MEMBERS,
      maxStringLength: MAX_STRING,
      maxUniqueKeyLength: MAX_KEY,
      maxBinaryLength: MAX_BINARY,
      maxResourceBytes: MAX_RESOURCE_BYTES,
    },
    meta: { resourceType: 'ServiceProviderConfig', location: `${base(req)}${SCIM_PREFIX}/ServiceProviderConfig` },
  }));

  const resourceTypes = (req: FastifyRequest) => [
    {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:ResourceType'],
      id: 'User',
      name: 'User',
      endpoint: '/Users',
      description: 'User Account',
      schema: USER_SCHEMA,
      schemaExtensions: [{ schema: ENTERPRISE_SCHEMA, required: false }],
      meta: { resourceType: 'ResourceType', location: `${base(req)}${SCIM_PREFIX}/ResourceTypes/User` },
    },
    {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:ResourceType'],
      id: 'Group',
      name: 'Group',
      endpoint: '/Groups',
      description: 'Group',
      schema: GROUP_SCHEMA,
      schemaExtensions: [],
      meta: { resourceType: 'ResourceType', location: `${base(req)}${SCIM_PREFIX}/ResourceTypes/Group` },
    },
  ];
  const schemaDocs = (req: FastifyRequest) =>
    SCHEMAS.map((s) => ({
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:Schema'],
      ...s,
      meta: { resourceType: 'Schema', location: `${base(req)}${SCIM_PREFIX}/Schemas/${s.id}` },
    }));
  const listOf = (items: unknown[]) => ({ schemas: [LIST_SCHEMA], totalResults: items.length, itemsPerPage: items.length, startIndex: 1, Resources: items });

  discovery('ResourceTypes', (req) => listOf(resourceTypes(req)));
  discovery('Schemas', (req) => listOf(schemaDocs(req)));
  app.get(`${SCIM_PREFIX}/ResourceTypes/:id`, async (req, reply) => {
    const { id } = req.params as { id: string };
    const rt = resourceTypes(req).find((r) => r.id.toLowerCase() === id.toLowerCase());
    if (!rt) throw notFound(`no resource type ${id}`);
    return send(reply, 200, rt);
  });
  app.get(`${SCIM_PREFIX}/Schemas/:id`, async (req, reply) => {
    const { id } = req.params as { id: string };
    const s = schemaDocs(req).find((d) => d.id.toLowerCase() === id.toLowerCase());
    if (!s) throw notFound(`no schema ${id}`);
    return send(reply, 200, s);
  });

  return app;
}

/**
 * Reads and drops the rest of a body too large to take, so that the 413 can be answered on a
 * connection with nothing left unread: a client that writes its whole body before it reads (most
 * HTTP libraries) then gets the answer instead of a reset and a broken pipe (RFC 9112 §9.6), and
 * the connection stays usable. A body over DRAIN_LIMIT, or one that does not arrive within
 * DRAIN_MS, is not waited for: the 413 goes out at once and the connection is closed.
 */
async function discardBody(req: FastifyRequest, reply: FastifyReply): Promise<void> {
  const raw = req.raw;
  if (Number(req.headers['content-length']) > DRAIN_LIMIT) return; // Fastify's `connection: close` stays
  const drained =
    raw.readableEnded ||
    (await new Promise<boolean>((resolve) => {
      let read = 0;
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        raw.off('data', onData).off('end', onEnd).off('close', onClose);
        resolve(ok);
      };
      const onData = (chunk: Buffer) => {
        read += chunk.length;
        if (read > DRAIN_LIMIT) finish(false);
      };
      const onEnd = () => finish(true);
      const onClose = () => finish(raw.readableEnded);
      const timer = setTimeout(() => finish(false), DRAIN_MS);
      raw.on('data', onData).once('end', onEnd).once('close', onClose);
      raw.resume();
    }));
  if (drained) reply.removeHeader('connection');
}

/**
 * A request Node's parser refuses before Fastify sees it (a URL or headers over 16 KiB, a request
 * that does not parse, one too slow to arrive) gets a SCIM error body too, and the connection is
 * closed in stages: the answer and a FIN, then what the client still sends is read and dropped for
 * a moment, so that unread bytes do not turn the close into a reset that loses the answer.
 */
function refuseConnection(err: Error & { code?: string }, socket: Duplex): void {
  // Node reports each later chunk on a refused connection again; the first answer stands.
  if (err.code === 'ECONNRESET' || socket.destroyed || socket.writableEnded) return;
  const [status, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [
          431,
          `the request line and headers are larger than ${maxHeaderSize / 1024} KiB; a long filter fits in the body of POST ${SCIM_PREFIX}/Users/.search (or /Groups/.search)`,
        ]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'the request did not arrive in time']
        : [400, 'the request is not valid HTTP/1.1'];
  const body = JSON.stringify(new ScimError(status, status === 400 ? 'invalidSyntax' : undefined, detail).body());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: ${SCIM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  const linger = setTimeout(() => socket.destroy(), LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });
// A key that could reach an object's prototype, possibly spelt with \u escapes.
const MAYBE_POISONED = /__proto__|constructor|\\u/;

/**
 * JSON.parse, dropping `__proto__` and `constructor` keys. A reviver makes parsing several times
 * slower, so it runs only when the text could hold such a key.
 */
function parseJson(text: string): unknown {
  if (!MAYBE_POISONED.test(text)) return JSON.parse(text);
  return JSON.parse(text, (k, v: unknown) => (k === '__proto__' || k === 'constructor' ? undefined : v));
}

function memberIds(attrs: JsonObject): string[] {
  return Array.isArray(attrs.members) ? attrs.members.flatMap((m) => (isObject(m) && typeof m.value === 'string' ? [m.value] : [])) : [];
}

/** After a PATCH inside the transaction: members keep the `type` filled in when they were checked. */
function fillMemberTypes(next: JsonObject, ...known: JsonObject[]): JsonObject {
  if (!Array.isArray(next.members)) return next;
  const types = new Map<string, Json>();
  for (const k of known)
    for (const m of Array.isArray(k.members) ? k.members : []) if (isObject(m) && typeof m.value === 'string' && m.type) types.set(m.value, m.type);
  return {
    ...next,
    members: next.members.map((m) => (isObject(m) && !m.type && typeof m.value === 'string' && types.has(m.value) ? { ...m, type: types.get(m.value)! } : m)),
  };
}

function intParam(v: string | undefined, name: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+$/.test(v.trim())) throw invalidValue(`${name} must be an integer, not ${JSON.stringify(v)}`);
  return Number(v);
}

/** A query parameter; given more than once, the last one counts. */
function param(req: FastifyRequest, name: string): string | undefined {
  const v = (req.query as Record<string, unknown>)[name];
  const last: unknown = Array.isArray(v) ? (v as unknown[])[v.length - 1] : v;
  return typeof last === 'string' ? last : undefined;
}

interface SearchParams {
  filter?: string | undefined;
  startIndex?: number | undefined;
  count?: number | undefined;
  attributes?: string | undefined;
  excludedAttributes?: string | undefined;
}

/** The body of POST `.search` (RFC 7644 §3.4.3) as the parameters a GET would have had. */
function searchRequest(body: unknown): SearchParams {
  if (!isObject(body)) throw invalidSyntax('the request body must be a JSON object');
  const schemas = body.schemas;
  if (!Array.isArray(schemas) || !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === SEARCH_SCHEMA.toLowerCase())) {
    throw invalidSyntax(`"schemas" must be ["${SEARCH_SCHEMA}"] for a search`);
  }
  const text = (k: string): string | undefined => {
    const v = body[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v;
    // attributes and excludedAttributes are lists in a search body, comma-separated in a query.
    if ((k === 'attributes' || k === 'excludedAttributes') && Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(',');
    throw invalidValue(`${k} must be a ${k === 'filter' ? 'string' : 'list of attribute names'}`);
  };
  const int = (k: string): number | undefined => {
    const v = body[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    return intParam(typeof v === 'string' ? v : JSON.stringify(v), k);
  };
  return {
    filter: text('filter'),
    startIndex: int('startIndex'),
    count: int('count'),
    attributes: text('attributes'),
    excludedAttributes: text('excludedAttributes'),
  };
}

function ifMatch(req: FastifyRequest): { ifMatch?: string } {
  const v = req.headers['if-match'];
  return typeof v === 'string' ? { ifMatch: v } : {};
}

/**
 * `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5): `id` and `schemas` are always returned.
 * Names that are not attributes are ignored rather than refused, so a client asking for an
 * attribute this server does not keep still gets the rest.
 */
function projection(type: ResourceType, attributes?: string, excluded?: string): (doc: JsonObject) => JsonObject {
  const parse = (list?: string): AttrPath[] =>
    (list ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .flatMap((name) => {
        try {
          return [resolveAttrPath(name, type)];
        } catch {
          return [];
        }
      });
  const include = parse(attributes);
  const exclude = parse(excluded);
  if (attributes?.trim() && include.length === 0 && !excluded) return (doc) => ({ schemas: doc.schemas!, id: doc.id! });
  if (!include.length && !exclude.length) return (doc) => doc;
  return (doc) => {
    if (include.length) {
      const out: JsonObject = { schemas: doc.schemas!, id: doc.id! };
      for (const p of include) copyPath(doc, out, p);
      return out;
    }
    const out = structuredClone(doc);
    for (const p of exclude) {
      if (!p.urn && (p.attr === 'id' || p.attr === 'schemas')) continue;
      const holder = p.urn ? out[p.urn] : out;
      if (!isObject(holder)) continue;
      if (!p.sub) delete holder[p.attr];
      else {
        const v = holder[p.attr];
        for (const item of Array.isArray(v) ? v : [v]) if (isObject(item)) delete item[p.sub];
      }
    }
    return out;
  };
}

function copyPath(from: JsonObject, to: JsonObject, p: AttrPath): void {
  const src = p.urn ? from[p.urn] : from;
  if (!isObject(src) || src[p.attr] === undefined) return;
  let dst = to;
  if (p.urn) {
    if (!isObject(to[p.urn])) to[p.urn] = {};
    dst = to[p.urn] as JsonObject;
  }
  const v = src[p.attr]!;
  if (!p.sub) {
    dst[p.attr] = structuredClone(v);
    return;
  }
  const pick = (item: Json): Json => (isObject(item) && item[p.sub!] !== undefined ? { ...(isObject(dst[p.attr]) ? {} : {}), [p.sub!]: item[p.sub!]! } : {});
  if (Array.isArray(v)) {
    const prev = Array.isArray(dst[p.attr]) ? (dst[p.attr] as JsonObject[]) : v.map(() => ({}));
    dst[p.attr] = v.map((item, i) => ({ ...(prev[i] ?? {}), ...(pick(item) as JsonObject) }));
  } else {
    dst[p.attr] = { ...(isObject(dst[p.attr]) ? (dst[p.attr] as JsonObject) : {}), ...(pick(v) as JsonObject) };
  }
}

// Re-exported for the owner's convenience.
export { CORE_SCHEMA, ENTERPRISE_SCHEMA, EXTENSIONS };
