// /v1/requests against a real OpenID Provider (oidc-provider, test/support/oidc.ts): serve's
// composition (SCIM server plus the requests routes, the directory read from a spec file and the
// SCIM store, a real SQLite state store), driven with inject. The caller is whom its token names;
// nobody acts without a valid token; the requester never approves their own request; a SCIM person
// in no mapped group may ask; every decision is in the audit chain; an approval reconciles at once.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildScimServer, hashToken } from '../../src/scim/server.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { requestsDirectory } from '../../src/serve/credentials-directory.js';
import { OidcVerifier } from '../../src/serve/oidc.js';
import { registerRequestRoutes } from '../../src/serve/requests.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { startIdp, type TestIdp } from '../support/oidc.js';

let idp: TestIdp;
let rogue: TestIdp;
let dir: string;
let scim: SqliteScimStore;
let state: SqliteStore;
let app: FastifyInstance;
let reconciles = 0;
const logLines: string[] = [];
const tokens: Record<string, string> = {};

const ACCOUNTS = {
  alice: { sub: 'u-alice', email: 'alice@example.com' },
  bob: { sub: 'u-bob', email: 'bob@example.com' },
  carol: { sub: 'u-carol', email: 'carol@example.com' },
  erin: { sub: 'u-erin', email: 'erin@example.com' },
  stranger: { sub: 'u-stranger', email: 'stranger@example.com' },
};

beforeAll(async () => {
  [idp, rogue] = await Promise.all([startIdp({ accounts: ACCOUNTS }), startIdp({ accounts: ACCOUNTS })]);
  dir = mkdtempSync(join(tmpdir(), 'dg-requests-api-'));
  writeFileSync(
    join(dir, 'datagrant.yaml'),
    `version: 1
settings:
  oidc: [{ name: corp, issuer: "${idp.issuer}", audience: datagrant }]
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, approvers: { principals: [bob], access: write } }
  hr: { backend: aws, bucket: hr-data, approvers: { principals: [bob] } }
groups:
  hr: { grants: [{ dataset: hr, access: read }] }
principals:
  alice: { type: person, email: alice@example.com }
  bob: { type: person, email: bob@example.com }
  carol: { type: person, email: carol@example.com }
invariants:
  hr-only: { datasets: [hr], onlyMembersOf: [hr] }
scim:
  groups: { "HR": hr }
`,
  );
  scim = new SqliteScimStore(':memory:');
  // erin comes from the IdP, in no mapped group: she holds nothing, and may ask.
  await scim.create('User', { userName: 'erin@example.com', emails: [{ value: 'erin@example.com', primary: true }], active: true });
  state = new SqliteStore(':memory:', MasterKey.parse('e'.repeat(64)));
  app = buildScimServer({
    store: scim,
    tokenHashes: [hashToken('scim-token-of-the-requests-api-test')],
    logger: pino({ level: 'debug' }, { write: (l: string) => void logLines.push(l) }),
  });
  registerRequestRoutes(app, {
    directory: requestsDirectory({ specFile: join(dir, 'datagrant.yaml'), displayFile: 'datagrant.yaml', env: {}, scim, now: () => new Date() }),
    store: async () => state,
    onAccessChanged: () => void reconciles++,
    verifier: new OidcVerifier({ timeoutMs: 2000 }),
  });
  await app.ready();
  for (const who of Object.keys(ACCOUNTS)) tokens[who] = await idp.idToken(who);
});

afterAll(async () => {
  await app?.close();
  await Promise.all([idp?.close(), rogue?.close()]);
  await scim?.close();
  await state?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function call(method: 'GET' | 'POST', url: string, who?: string, body?: object) {
  const headers: Record<string, string> = who ? { authorization: `Bearer ${tokens[who] ?? who}` } : {};
  const r = await app.inject({ method, url, headers, ...(body ? { payload: body } : {}) });
  return { status: r.statusCode, headers: r.headers, body: r.json<Record<string, unknown> & { message?: string; error?: string }>() };
}
const ask = (who: string, over: object = {}) =>
  call('POST', '/v1/requests', who, { dataset: 'training', access: 'read', duration: '7d', reason: 'fine-tune the ranker', ...over });
const lastAudit = async () => (await state.auditEntries()).at(-1)!;

describe('nobody acts without a valid token naming a principal', () => {
  test.each([
    ['GET', '/v1/requests'],
    ['GET', '/v1/requests/options'],
    ['GET', '/v1/requests/1'],
    ['POST', '/v1/requests'],
    ['POST', '/v1/requests/1/approve'],
    ['POST', '/v1/requests/1/deny'],
    ['POST', '/v1/requests/1/cancel'],
  ] as const)('%s %s: 401 without a token, 401 with a foreign one, 403 for one naming no principal', async (method, url) => {
    const none = await call(method, url);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="datagrant"');
    expect(none.headers['cache-control']).toBe('no-store');
    const foreign = await call(method, url, await rogue.idToken('bob'), { reason: 'x' });
    expect(foreign.status).toBe(401);
    expect(foreign.body).toEqual({ error: 'invalid_token', message: 'the token was not issued by an issuer trusted here' });
    const scimToken = await call(method, url, 'scim-token-of-the-requests-api-test');
    expect(scimToken.status).toBe(401);
    const stranger = await call(method, url, 'stranger', { reason: 'x' });
    expect(stranger.status).toBe(403);
    expect(stranger.body).toEqual({ error: 'access_denied', message: "no principal is named by this token's email" });
  });
});

describe('asking, deciding, cancelling', () => {
  test('alice asks; she cannot approve it herself (403, audited); carol, no approver, cannot; bob sees it and approves; serve reconciles', async () => {
    const made = await ask('alice');
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({
      requester: 'alice',
      dataset: 'training',
      level: 'read',
      duration: '7d',
      state: 'pending',
      approvers: ['bob'],
      mine: true,
    });
    const id = made.body.id as number;

    const self = await call('POST', `/v1/requests/${id}/approve`, 'alice', { reason: 'I need it' });
    expect(self.status).toBe(403);
    expect(self.body).toEqual({ error: 'access_denied', message: `alice cannot approve their own request #${id}; another approver must: bob` });
    expect(await lastAudit()).toMatchObject({ actor: 'oidc:corp:u-alice', event: 'request.refused', address: `request/${id}`, outcome: 'refused' });
    const carol = await call('POST', `/v1/requests/${id}/approve`, 'carol', { reason: 'sure' });
    expect(carol.status).toBe(403);
    expect(carol.body.message).toMatch(
      /^carol may not approve read on dataset training: the approvers are bob \(datasets\.training\.approvers at datagrant\.yaml:\d+:\d+\)$/,
    );
    // carol cannot even see it.
    expect((await call('GET', `/v1/requests/${id}`, 'carol')).status).toBe(404);
    expect((await call('GET', '/v1/requests', 'carol')).body).toEqual({ principal: 'carol', requests: [] });

    const bobsView = await call('GET', '/v1/requests?pending=true', 'bob');
    expect(bobsView.body.principal).toBe('bob');
    expect(bobsView.body.requests).toEqual([expect.objectContaining({ id, stateNow: 'pending', mine: false, canDecide: true, approvers: ['bob'] })]);

    const before = reconciles;
    const approved = await call('POST', `/v1/requests/${id}/approve`, 'bob', { reason: 'for the Q4 model' });
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ state: 'approved', decision: { by: 'bob', reason: 'for the Q4 model', via: 'oidc:corp:u-bob' } });
    expect(Date.parse(approved.body.endsAt as string) - Date.parse((approved.body.decision as { at: string }).at)).toBeLessThanOrEqual(7 * 86400_000);
    expect(reconciles).toBe(before + 1);
    expect(await lastAudit()).toMatchObject({ actor: 'oidc:corp:u-bob', event: 'request.approve', address: `request/${id}` });

    const again = await call('POST', `/v1/requests/${id}/deny`, 'bob', { reason: 'oops' });
    expect(again.status).toBe(409);
    expect(again.body.message).toMatch(new RegExp(`^request #${id} is approved by bob at .*; only a pending request can be denied$`));
    const mine = await call('GET', `/v1/requests/${id}`, 'alice');
    expect(mine.body).toMatchObject({ id, stateNow: 'approved', mine: true, canDecide: false });

    // alice ends it early: access changed, serve reconciles.
    const cancelled = await call('POST', `/v1/requests/${id}/cancel`, 'alice', {});
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ state: 'cancelled', closed: { by: 'alice', reason: 'cancelled by the requester' } });
    expect(reconciles).toBe(before + 2);
    expect(await state.verifyAudit()).toMatchObject({ ok: true });
  });

  test('a SCIM person in no mapped group may ask; what she may ask for comes with the limits', async () => {
    const options = await call('GET', '/v1/requests/options', 'erin');
    expect(options.body).toEqual({
      principal: 'erin',
      maxDuration: '30d',
      decideWithin: '7d',
      datasets: [
        {
          dataset: 'training',
          backend: 'aws',
          levels: [
            { level: 'read', approvers: ['bob'] },
            { level: 'write', approvers: ['bob'] },
          ],
        },
        { dataset: 'hr', backend: 'aws', levels: [{ level: 'read', approvers: ['bob'] }] },
      ],
    });
    const made = await ask('erin', { access: 'write', duration: '12h' });
    expect(made.status).toBe(201);
    const denied = await call('POST', `/v1/requests/${made.body.id as number}/deny`, 'bob', { reason: 'use read' });
    expect(denied.status).toBe(200);
    expect(denied.body).toMatchObject({ state: 'denied', requester: 'erin' });
  });

  test('an approval that would break an invariant is refused (409) with its words', async () => {
    const made = await ask('carol', { dataset: 'hr' });
    const r = await call('POST', `/v1/requests/${made.body.id as number}/approve`, 'bob', { reason: 'ok' });
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('conflict');
    expect(r.body.violations).toEqual([
      `invariant hr-only: principal carol gets read on hr through request #${made.body.id as number} (approved by bob), and carol is not in group hr`,
    ]);
  });

  test.each<[string, object, number, RegExp]>([
    ['an unknown dataset', { dataset: 'nope' }, 400, /^dataset "nope" is not defined; defined datasets: hr, training$/],
    ['a duration past the limit', { duration: '90d' }, 400, /^duration 90d is longer than a request may ask for: at most 30d/],
    ['a level past what approvers grant', { access: 'admin' }, 400, /^admin on dataset training cannot be requested: its approvers may approve up to write/],
    ['no reason', { reason: ' ' }, 400, /^a request needs a reason/],
    ['a field that is not text', { duration: 7 }, 400, /^the JSON body needs "duration" as text$/],
  ])('a request with %s is refused with what is wrong', async (_what, over, status, message) => {
    const r = await ask('carol', over);
    expect(r.status).toBe(status);
    expect(r.body.error).toBe('invalid_request');
    expect(r.body.message).toMatch(message);
  });

  test('an unknown or malformed id is 404; the tokens never reach the log', async () => {
    expect((await call('POST', '/v1/requests/999/approve', 'bob', { reason: 'x' })).body).toEqual({
      error: 'not_found',
      message: 'there is no request #999; `datagrant requests list` shows them',
    });
    expect((await call('GET', '/v1/requests/abc', 'bob')).status).toBe(404);
    const log = logLines.join('');
    for (const t of Object.values(tokens)) expect(log).not.toContain(t);
  });
});
