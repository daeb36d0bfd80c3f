// POST /v1/credentials/:backend against real OpenID Providers (oidc-provider, test/support/oidc.ts):
// a token gets a session for its own principal only, and every kind of bad token is refused
// before the session broker is asked. The server is serve's composition (SCIM server plus the
// credential route, the directory read from a spec file and the SCIM store), driven with inject;
// the broker is a fake that records what it was asked.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { SessionRefusedError, SessionsUnsupportedError, type IssuedSession, type SessionBroker, type SessionRequest } from '../../src/app/sessions-port.js';
import { GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA } from '../../src/scim/schemas.js';
import { buildScimServer, hashToken } from '../../src/scim/server.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { registerCredentialsRoute } from '../../src/serve/credentials.js';
import { credentialDirectory } from '../../src/serve/credentials-directory.js';
import { OidcVerifier } from '../../src/serve/oidc.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { startBlackHole, type BlackHole } from '../support/black-hole.js';
import { startIdp, type TestIdp } from '../support/oidc.js';

const SCIM_TOKEN = 'scim-token-for-credentials-test';

/** Records each request; answers with a session that says whose it is, and a fresh secret. */
class FakeBroker implements SessionBroker {
  requests: SessionRequest[] = [];
  secrets: string[] = [];
  async issue(req: SessionRequest): Promise<IssuedSession> {
    this.requests.push(req);
    if (req.principal === 'keyholder')
      throw new SessionRefusedError('not-temporary', `principal keyholder has an access key, not sessions, on backend ${req.backend}`);
    if (req.principal === 'alice' && req.backend === 'warehouse') throw new SessionsUnsupportedError(req.backend, 'postgres');
    const secret = `secret-${req.principal}-${Math.random().toString(36).slice(2)}`;
    this.secrets.push(secret);
    if (req.backend === 'warehouse')
      return {
        kind: 'postgres',
        user: `${req.principal}_s1`,
        password: secret,
        host: 'db.example',
        port: 5432,
        database: 'analytics',
        validUntil: '2026-12-01T01:00:00.000Z',
      };
    return {
      kind: 'aws',
      accessKeyId: `ASIA${req.principal.toUpperCase()}`,
      secretAccessKey: secret,
      sessionToken: `token-of-${req.principal}`,
      expiration: '2026-12-01T01:00:00.000Z',
    };
  }
}

let corp: TestIdp;
let ci: TestIdp;
let rogue: TestIdp;
let hole: BlackHole;
/** Serves a discovery document that names another issuer than the URL it is served from. */
let impostor: Server;
const impostorUrl = () => `http://127.0.0.1:${(impostor.address() as AddressInfo).port}`;
let dir: string;
let scim: SqliteScimStore;
let state: SqliteStore;
let broker: FakeBroker;
let app: FastifyInstance;
let clock: Date | undefined;
const logLines: string[] = [];
const tokens: string[] = [];

const ACCOUNTS = {
  alice: { sub: 'u-alice', email: 'alice@example.com' },
  bob: { sub: 'u-bob', email: 'bob@example.com' },
  carol: { sub: 'u-carol', email: 'carol@example.com' },
  dave: { sub: 'u-dave', email: 'dave@example.com' },
  keyholder: { sub: 'u-keys', email: 'keys@example.com' },
  // Someone who typed alice's address into an IdP that did not check it.
  unverified: { sub: 'u-mallory', email: 'alice@example.com', emailVerified: false },
};

function specText(): string {
  return `version: 1
settings:
  oidc:
    - { name: corp, issuer: "${corp.issuer}", audience: datagrant }
    - { name: ci, issuer: "${ci.issuer}", audience: datagrant, claim: sub }
    - { name: down, issuer: "http://127.0.0.1:${hole.port}", audience: datagrant }
    - { name: impostor, issuer: "${impostorUrl()}", audience: datagrant }
backends:
  aws: { type: aws }
  warehouse: { type: postgres, url: "postgres://datagrant@127.0.0.1:1/postgres" }
datasets:
  data: { backend: aws, bucket: ai-model-data }
groups:
  analysts: { grants: [{ dataset: data, access: read }] }
principals:
  alice: { type: person, email: Alice@Example.com, groups: [analysts] }
  bob: { type: person, email: bob@example.com, groups: [analysts] }
  keyholder: { type: person, email: keys@example.com, groups: [analysts] }
  trainer: { type: service, oidc: { ci: u-trainer }, groups: [analysts] }
scim:
  groups: { "Data People": analysts }
`;
}

beforeAll(async () => {
  [corp, ci, rogue, hole] = await Promise.all([
    startIdp({ accounts: ACCOUNTS }),
    startIdp({ accounts: { trainer: { sub: 'u-trainer' }, alice: { sub: 'u-alice', email: 'alice@example.com' } } }),
    // Another provider, with the same people: its tokens look right but come from elsewhere.
    startIdp({ accounts: ACCOUNTS }),
    startBlackHole(),
  ]);
  impostor = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: corp.issuer, jwks_uri: `${corp.issuer}/jwks` })),
  );
  await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
  dir = mkdtempSync(join(tmpdir(), 'dg-credentials-'));
  writeFileSync(join(dir, 'datagrant.yaml'), specText());
  scim = new SqliteScimStore(':memory:');
  state = new SqliteStore(':memory:', MasterKey.parse('d'.repeat(64)));
  app = buildScimServer({
    store: scim,
    tokenHashes: [hashToken(SCIM_TOKEN)],
    logger: pino({ level: 'debug' }, { write: (l: string) => void logLines.push(l) }),
  });
  registerCredentialsRoute(app, {
    directory: credentialDirectory({ specFile: join(dir, 'datagrant.yaml'), displayFile: 'datagrant.yaml', env: {}, scim, now: () => new Date() }),
    broker: { issue: (req) => broker.issue(req) },
    audit: (entry, at) => state.audit(entry, at),
    // Tokens are real and fresh; a test that needs one verified later moves this clock.
    verifier: new OidcVerifier({ now: () => clock ?? new Date(), timeoutMs: 500, failureCooldownMs: 0 }),
  });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await Promise.all([corp?.close(), ci?.close(), rogue?.close(), hole?.close(), new Promise((r) => impostor?.close(r))]);
  await scim?.close();
  await state?.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  broker = new FakeBroker();
  clock = undefined;
});

/** An ID token from `idp`, remembered so the log and audit scan can look for it. */
async function tokenFrom(idp: TestIdp, login: string, client: 'datagrant' | 'other-app' = 'datagrant'): Promise<string> {
  const t = await idp.idToken(login, client);
  tokens.push(t);
  return t;
}

async function post(backend: string, token?: string) {
  const r = await app.inject({ method: 'POST', url: `/v1/credentials/${backend}`, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  return { status: r.statusCode, headers: r.headers, body: r.json<Record<string, unknown>>(), raw: r.body };
}

async function expectInvalidToken(token: string, message: RegExp) {
  const r = await post('aws', token);
  expect(r.status).toBe(401);
  expect(r.headers['www-authenticate']).toMatch(/^Bearer realm="datagrant", error="invalid_token", error_description="[^"]+"$/);
  expect(r.body).toEqual({ error: 'invalid_token', message: expect.stringMatching(message) });
  expect(r.headers['cache-control']).toBe('no-store');
  expect(r.raw).not.toContain(token);
  expect(broker.requests).toEqual([]);
}

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('a token gets a session for its own principal', () => {
  test("alice's token gets alice's session, in the credential_process shape, not to be cached", async () => {
    const token = await tokenFrom(corp, 'alice');
    const r = await post('aws', token);
    expect(r.status).toBe(200);
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.body).toEqual({
      Version: 1,
      AccessKeyId: 'ASIAALICE',
      SecretAccessKey: broker.secrets[0],
      SessionToken: 'token-of-alice',
      Expiration: '2026-12-01T01:00:00.000Z',
    });
    // The spec writes Alice@Example.com; the token says alice@example.com.
    expect(broker.requests).toEqual([{ backend: 'aws', principal: 'alice', source: 'oidc', subject: 'u-alice', issuer: 'corp' }]);
    const issued = (await state.auditEntries()).filter((e) => e.event === 'session.issue').at(-1);
    expect(issued).toMatchObject({ actor: 'oidc:corp:u-alice', outcome: 'ok', detail: 'principal alice, backend aws: until 2026-12-01T01:00:00.000Z' });
  });

  test("bob's token gets bob's session, never alice's", async () => {
    const token = await tokenFrom(corp, 'bob');
    const r = await post('aws', token);
    expect(r.status).toBe(200);
    expect(r.body.AccessKeyId).toBe('ASIABOB');
    expect(broker.requests.map((q) => q.principal)).toEqual(['bob']);
  });

  test('a PostgreSQL session comes as user, password and where to connect', async () => {
    const r = await post('warehouse', await tokenFrom(corp, 'bob'));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      user: 'bob_s1',
      password: broker.secrets[0],
      host: 'db.example',
      port: 5432,
      database: 'analytics',
      validUntil: '2026-12-01T01:00:00.000Z',
    });
  });

  test("a workload's token names its service principal by subject", async () => {
    const r = await post('aws', await tokenFrom(ci, 'trainer'));
    expect(r.status).toBe(200);
    expect(broker.requests).toEqual([{ backend: 'aws', principal: 'trainer', source: 'oidc', subject: 'u-trainer', issuer: 'ci' }]);
  });

  test('a person the IdP pushed over SCIM is matched by email, and no longer once deactivated', async () => {
    // GIVEN dave, a SCIM user in a mapped group (no principal of the spec)
    const scimReq = (method: 'POST' | 'PATCH', url: string, payload: object) =>
      app.inject({ method, url, headers: { authorization: `Bearer ${SCIM_TOKEN}`, 'content-type': 'application/scim+json' }, payload });
    const user = await scimReq('POST', '/scim/v2/Users', {
      schemas: [USER_SCHEMA],
      userName: 'dave@example.com',
      emails: [{ value: 'Dave@Example.com', primary: true }],
    });
    expect(user.statusCode).toBe(201);
    const id = user.json<{ id: string }>().id;
    expect((await scimReq('POST', '/scim/v2/Groups', { schemas: [GROUP_SCHEMA], displayName: 'Data People', members: [{ value: id }] })).statusCode).toBe(201);
    // WHEN dave presents a token THEN dave's session
    const token = await tokenFrom(corp, 'dave');
    expect((await post('aws', token)).status).toBe(200);
    expect(broker.requests.map((q) => q.principal)).toEqual(['dave']);
    // WHEN the IdP deactivates dave THEN the same, still valid, token names no one
    const off = await scimReq('PATCH', `/scim/v2/Users/${id}`, { schemas: [PATCH_SCHEMA], Operations: [{ op: 'replace', path: 'active', value: false }] });
    expect(off.statusCode).toBe(200);
    const r = await post('aws', token);
    expect(r.status).toBe(403);
    expect(broker.requests).toHaveLength(1);
  });
});

describe('a bad token is refused before the broker is asked', () => {
  test('an expired token', async () => {
    const token = await tokenFrom(corp, 'alice');
    // The provider issues tokens for 300 s; 30 s of skew is forgiven, no more.
    clock = new Date((decodeJwt(token).exp! + 31) * 1000);
    await expectInvalidToken(token, /expired/);
  });

  test("a token from another issuer, though it names alice's email", async () => {
    await expectInvalidToken(await tokenFrom(rogue, 'alice'), /not issued by an issuer trusted here/);
  });

  test('a token of the trusted issuer for another audience', async () => {
    await expectInvalidToken(await tokenFrom(corp, 'alice', 'other-app'), /claims are not accepted/);
  });

  test('an unsigned token (alg none) with the claims of a real one', async () => {
    const [, payload] = (await tokenFrom(corp, 'alice')).split('.');
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`;
    tokens.push(unsigned);
    await expectInvalidToken(unsigned, /not signed with an algorithm accepted/);
  });

  test("an HS256 token keyed with the client's secret, with the claims of a real one", async () => {
    const claims = decodeJwt(await tokenFrom(corp, 'alice'));
    const hs = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(corp.clients.datagrant.clientSecret));
    tokens.push(hs);
    await expectInvalidToken(hs, /not signed with an algorithm accepted/);
  });

  test("alice's claims under bob's signature", async () => {
    const [header, , signature] = (await tokenFrom(corp, 'bob')).split('.');
    const [, alicePayload] = (await tokenFrom(corp, 'alice')).split('.');
    const spliced = `${header}.${alicePayload}.${signature}`;
    tokens.push(spliced);
    await expectInvalidToken(spliced, /signature does not verify/);
  });

  test("a token signed with a key of someone else's, under the issuer's key id", async () => {
    const claims = decodeJwt(await tokenFrom(corp, 'alice'));
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(privateKey);
    tokens.push(forged);
    await expectInvalidToken(forged, /signature does not verify/);
  });

  test('something that is not a JWT, and the SCIM bearer token', async () => {
    await expectInvalidToken('not-a-jwt', /not a signed JWT/);
    await expectInvalidToken(SCIM_TOKEN, /not a signed JWT/);
  });

  test('no Authorization header: 401 asking for one, without an error code (RFC 6750 §3.1)', async () => {
    const r = await post('aws');
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="datagrant"');
  });

  test('an ID token does not open SCIM', async () => {
    const r = await app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: `Bearer ${await tokenFrom(corp, 'alice')}` } });
    expect(r.statusCode).toBe(401);
  });
});

describe('a valid token that names no principal that may have a session', () => {
  test('a person in no principal: 403, audited under the token subject', async () => {
    const r = await post('aws', await tokenFrom(corp, 'carol'));
    expect(r.status).toBe(403);
    expect(r.body).toEqual({ error: 'access_denied', message: "no principal is named by this token's email" });
    expect(broker.requests).toEqual([]);
    expect((await state.auditEntries()).at(-1)).toMatchObject({
      actor: 'oidc:corp:u-carol',
      event: 'session.refused',
      outcome: 'refused',
      detail: 'backend aws: no principal has this email',
    });
  });

  test("a token whose email is not verified does not name the address's owner", async () => {
    const r = await post('aws', await tokenFrom(corp, 'unverified'));
    expect(r.status).toBe(403);
    expect(r.body.message).toBe('the token does not say its email is verified (email_verified: true), so it names no principal');
    expect(broker.requests).toEqual([]);
  });

  test("alice's email from the workload issuer names no one: its claim is sub", async () => {
    expect((await post('aws', await tokenFrom(ci, 'alice'))).status).toBe(403);
  });

  test('the broker refuses a principal with keys: 403 with its reason, audited', async () => {
    const r = await post('aws', await tokenFrom(corp, 'keyholder'));
    expect(r.status).toBe(403);
    expect(r.body.message).toBe('principal keyholder has an access key, not sessions, on backend aws');
    expect((await state.auditEntries()).at(-1)).toMatchObject({
      actor: 'oidc:corp:u-keys',
      event: 'session.refused',
      detail: 'principal keyholder, backend aws: not-temporary',
    });
  });

  test('a backend whose driver issues no sessions: 501 naming its type, audited as a failed issue', async () => {
    const r = await post('warehouse', await tokenFrom(corp, 'alice'));
    expect(r.status).toBe(501);
    expect(r.body).toEqual({ error: 'not_implemented', message: 'temporary credentials are not supported on backend type postgres (backend "warehouse")' });
    expect((await state.auditEntries()).at(-1)).toMatchObject({
      actor: 'oidc:corp:u-alice',
      event: 'session.issue',
      outcome: 'failed',
      detail: 'principal alice, backend warehouse: SessionsUnsupportedError',
    });
  });

  test('a backend the spec does not have: 404', async () => {
    const r = await post('nowhere', await tokenFrom(corp, 'alice'));
    expect(r.status).toBe(404);
    expect(broker.requests).toEqual([]);
  });
});

/** A token that says it comes from `issuer`, signed with a key of no one's. */
async function selfSigned(issuer: string): Promise<string> {
  const { privateKey } = await generateKeyPair('RS256');
  const token = await new SignJWT({ sub: 'u-x', email: 'alice@example.com' })
    .setProtectedHeader({ alg: 'RS256' })
    .setIssuer(issuer)
    .setAudience('datagrant')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(privateKey);
  tokens.push(token);
  return token;
}

describe('what an issuer publishes is checked, and calls to it have deadlines', () => {
  test("a discovery document that names another issuer (corp's, with corp's keys) is not used", async () => {
    // OpenID Connect Discovery §4.3: a document naming another issuer is not this issuer's, and
    // neither are the keys it points at.
    const r = await post('aws', await selfSigned(impostorUrl()));
    expect(r.status).toBe(503);
    expect(broker.requests).toEqual([]);
    const problems = logLines.map((l) => JSON.parse(l) as { msg: string; problem?: string }).filter((l) => l.msg === 'credential endpoint: issuer unavailable');
    expect(problems.at(-1)!.problem).toBe(
      `discovery of ${impostorUrl()}: the document names issuer ${JSON.stringify(corp.issuer)}, not ${JSON.stringify(impostorUrl())}`,
    );
  });

  test('an issuer that accepts the connection and never answers: 503 within the deadline, not 401', async () => {
    const token = await selfSigned(`http://127.0.0.1:${hole.port}`);
    const started = Date.now();
    const r = await post('aws', token);
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('5');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(broker.requests).toEqual([]);
  });
});

describe('nothing secret is written down', () => {
  test('neither the log nor the audit log holds a token or an issued secret', async () => {
    // GIVEN everything above has run (and one more issue, so that this test also stands alone)
    await post('aws', await tokenFrom(corp, 'alice'));
    const secrets = broker.secrets;
    expect(secrets.length).toBeGreaterThan(0);
    const audit = JSON.stringify(await state.auditEntries());
    const log = logLines.join('\n');
    expect(log).toContain('credential endpoint: session issued');
    for (const t of tokens) {
      // The signature alone is enough to replay nothing, but a whole token is a credential.
      expect(log).not.toContain(t);
      expect(audit).not.toContain(t);
      expect(log).not.toContain(t.split('.')[2] || '\0');
    }
    for (const s of secrets) {
      expect(log).not.toContain(s);
      expect(audit).not.toContain(s);
    }
  });
});
