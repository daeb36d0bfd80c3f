// `datagrant serve` (startServe, as the CLI runs it) with settings.oidc: the credential endpoint
// answers over HTTP next to SCIM, each with its own authentication; issues are audited in the
// state store; and nothing secret reaches serve's log or the audit log.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Io } from '../../src/app/io.js';
import type { IssuedSession, SessionBroker, SessionRequest } from '../../src/app/sessions-port.js';
import { startServe, type RunningServer } from '../../src/serve/serve.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { freePort } from '../support/moto.js';
import { startIdp, type TestIdp } from '../support/oidc.js';

const SCIM_TOKEN = 'scim-token-serve-credentials';
const MASTER_KEY = 'e'.repeat(64);

let idp: TestIdp;
let dir: string;
let server: RunningServer;
let closed = false;
const logLines: string[] = [];
const requests: SessionRequest[] = [];
const secrets: string[] = [];

const broker: SessionBroker = {
  async issue(req): Promise<IssuedSession> {
    requests.push(req);
    const secret = `serve-secret-${Math.random().toString(36).slice(2)}`;
    secrets.push(secret);
    return {
      kind: 'aws',
      accessKeyId: `ASIA${req.principal.toUpperCase()}`,
      secretAccessKey: secret,
      sessionToken: `session-${secret}`,
      expiration: '2026-12-01T01:00:00.000Z',
    };
  },
};

beforeAll(async () => {
  idp = await startIdp({ accounts: { alice: { sub: 'u-alice', email: 'alice@example.com' }, bob: { sub: 'u-bob', email: 'bob@example.com' } } });
  dir = mkdtempSync(join(tmpdir(), 'dg-serve-oidc-'));
  // The backend is never reached here (the broker is a fake); a closed port makes the
  // reconciler's reads fail at once instead of hanging.
  writeFileSync(
    join(dir, 'datagrant.yaml'),
    `version: 1
settings:
  oidc: [{ name: corp, issuer: "${idp.issuer}", audience: datagrant }]
backends:
  aws: { type: aws, endpoint: "http://127.0.0.1:${await freePort()}" }
principals:
  alice: { type: person, email: alice@example.com }
  bob: { type: person, email: bob@example.com }
`,
  );
  const io: Io = {
    stdout: () => undefined,
    stderr: () => undefined,
    env: {
      DATAGRANT_MASTER_KEY: MASTER_KEY,
      DATAGRANT_SCIM_TOKEN_SHA256: createHash('sha256').update(SCIM_TOKEN).digest('hex'),
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'example-secret',
      AWS_REGION: 'us-east-1',
    },
    cwd: dir,
    isTTY: false,
    now: () => new Date(),
  };
  const logger = pino({ level: 'debug' }, { write: (l: string) => void logLines.push(l) });
  server = await startServe(io, { port: 0, intervalSeconds: 3600, logger, sessionBroker: broker });
});

afterAll(async () => {
  if (!closed) await server?.close();
  await idp?.close();
  rmSync(dir, { recursive: true, force: true });
});

const credentials = (token: string, backend = 'aws') =>
  fetch(`${server.url}/v1/credentials/${backend}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });

test('an ID token gets its own session over HTTP; the SCIM token does not, and the ID token does not open SCIM', async () => {
  const alice = await idp.idToken('alice');
  const bob = await idp.idToken('bob');

  const forAlice = await credentials(alice);
  expect(forAlice.status).toBe(200);
  expect(forAlice.headers.get('cache-control')).toBe('no-store');
  expect(await forAlice.json()).toMatchObject({ Version: 1, AccessKeyId: 'ASIAALICE', SecretAccessKey: secrets[0] });
  const forBob = await credentials(bob);
  expect(await forBob.json()).toMatchObject({ AccessKeyId: 'ASIABOB' });
  expect(requests.map((r) => [r.principal, r.subject, r.issuer])).toEqual([
    ['alice', 'u-alice', 'corp'],
    ['bob', 'u-bob', 'corp'],
  ]);

  const withScimToken = await credentials(SCIM_TOKEN);
  expect(withScimToken.status).toBe(401);
  expect(withScimToken.headers.get('www-authenticate')).toContain('error="invalid_token"');
  const scimWithIdToken = await fetch(`${server.url}/scim/v2/Users`, { headers: { authorization: `Bearer ${alice}` } });
  expect(scimWithIdToken.status).toBe(401);
  const scimWithScimToken = await fetch(`${server.url}/scim/v2/Users`, { headers: { authorization: `Bearer ${SCIM_TOKEN}` } });
  expect(scimWithScimToken.status).toBe(200);

  // The audit log in the state store names each issue by issuer and subject; nothing of the
  // tokens or the sessions' secrets is in it or in serve's log.
  await server.close();
  closed = true;
  const state = new SqliteStore(join(dir, '.datagrant', 'state.db'), MasterKey.parse(MASTER_KEY));
  try {
    const issued = (await state.auditEntries()).filter((e) => e.event === 'session.issue');
    expect(issued.map((e) => [e.actor, e.outcome, e.detail])).toEqual([
      ['oidc:corp:u-alice', 'ok', 'principal alice, backend aws: until 2026-12-01T01:00:00.000Z'],
      ['oidc:corp:u-bob', 'ok', 'principal bob, backend aws: until 2026-12-01T01:00:00.000Z'],
    ]);
    expect(await state.verifyAudit()).toMatchObject({ ok: true });
    const audit = JSON.stringify(await state.auditEntries());
    const log = logLines.join('\n');
    expect(log).toContain('"path":"/v1/credentials/aws","status":200');
    for (const t of [alice, bob]) {
      expect(log).not.toContain(t.split('.')[2]);
      expect(audit).not.toContain(t.split('.')[2]);
    }
    for (const s of secrets) {
      expect(log).not.toContain(s);
      expect(audit).not.toContain(s);
    }
  } finally {
    await state.close();
  }
});
