// A SCIM server on an in-memory SQLite store, driven with fastify.inject (no network); or the
// built `datagrant serve` in a child process, driven over HTTP.
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { hashToken, buildScimServer } from '../../src/scim/server.js';
import { scimPrincipals } from '../../src/scim/identities.js';
import { PATCH_SCHEMA } from '../../src/scim/schemas.js';
import type { ScimChange, ScimStore, ScimStoreOptions } from '../../src/scim/store/store.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { startServeProcess, type ServeProcess } from '../support/serve-process.js';

export const TOKEN = 'scim-test-token-7f3a9c';
export const OTHER_TOKEN = 'second-idp-token';
export const MAPPING = { 'ML Research': 'ml-researchers', 'Data Eng': 'data-engineers' };

export interface Harness extends Client {
  app: FastifyInstance;
  store: ScimStore;
  changes: ScimChange[];
  principals(): Promise<ReturnType<typeof scimPrincipals>>;
}

/** What a test sends requests through: fastify's inject, or HTTP to the built `datagrant serve`. */
export interface Client {
  req(method: InjectOptions['method'], url: string, body?: unknown, headers?: Record<string, string>): Promise<Res>;
  close(): Promise<void>;
}

export interface Res {
  status: number;
  headers: LightMyRequestResponse['headers'];
  body: Record<string, unknown> & { [k: string]: unknown };
  raw: string;
}

/** `makeStore`: another store (PostgreSQL); default an in-memory SQLite one. */
export async function harness(
  opts: { bodyLimit?: number; makeStore?: (o: Required<ScimStoreOptions>) => Promise<ScimStore>; reservedNames?: () => Iterable<string> } = {},
): Promise<Harness> {
  let t = Date.parse('2026-11-28T06:00:00.000Z');
  let n = 0;
  const storeOpts = { now: () => new Date((t += 1000)), newId: () => `0000-${String(++n).padStart(4, '0')}` };
  const store = opts.makeStore ? await opts.makeStore(storeOpts) : new SqliteScimStore(':memory:', storeOpts);
  const changes: ScimChange[] = [];
  const app = buildScimServer({
    store,
    tokenHashes: [hashToken(OTHER_TOKEN), hashToken(TOKEN)],
    onChange: (c) => changes.push(c),
    ...(opts.bodyLimit ? { bodyLimit: opts.bodyLimit } : {}),
    ...(opts.reservedNames ? { reservedNames: opts.reservedNames } : {}),
  });
  await app.ready();
  return {
    app,
    store,
    changes,
    async req(method, url, body, headers = {}) {
      const r = await app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}), ...headers },
        ...(body !== undefined ? { payload: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) } : {}),
      });
      return { status: r.statusCode, headers: r.headers, body: parseBody(r.body), raw: r.body };
    },
    async principals() {
      return scimPrincipals(await store.list('User'), await store.list('Group'), MAPPING);
    },
    async close() {
      await app.close();
      await store.close();
    },
  };
}

function parseBody(raw: string): Res['body'] {
  try {
    return raw ? (JSON.parse(raw) as Res['body']) : {};
  } catch {
    return {};
  }
}

export interface Served extends Client {
  serve: ServeProcess;
}

/** The built CLI's `datagrant serve` in a child process (run `npm run build` first), spoken to over HTTP. */
export async function served(args: string[] = []): Promise<Served> {
  const serve = await startServeProcess(TOKEN, args);
  return {
    serve,
    async req(method, url, body, headers = {}) {
      const r = await fetch(`${serve.url}${url}`, {
        method: method as string,
        headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}), ...headers },
        ...(body !== undefined ? { body: typeof body === 'string' ? body : Buffer.isBuffer(body) ? new Uint8Array(body) : JSON.stringify(body) } : {}),
      });
      const raw = await r.text();
      return { status: r.status, headers: Object.fromEntries(r.headers), body: parseBody(raw), raw };
    },
    close: () => serve.stop(),
  };
}

export const patchBody = (...Operations: unknown[]) => ({ schemas: [PATCH_SCHEMA], Operations });
export const q = (filter: string) => encodeURIComponent(filter);
