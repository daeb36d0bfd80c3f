// `datagrant serve` issues sessions through the real session broker when none is passed in: the
// broker's refusals (speaking only of the asker) reach the caller and the audit log. Issuing
// through a real driver is proved with the drivers' own tests (moto, PostgreSQL).
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Io } from '../../src/app/io.js';
import { startServe, type RunningServer } from '../../src/serve/serve.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { freePort } from '../support/moto.js';
import { startIdp, type TestIdp } from '../support/oidc.js';

const MASTER_KEY = 'f'.repeat(64);

let idp: TestIdp;
let dir: string;
let server: RunningServer;

beforeAll(async () => {
  idp = await startIdp({
    accounts: { dave: { sub: 'u-dave', email: 'dave@example.com' }, erin: { sub: 'u-erin', email: 'erin@example.com' } },
  });
  dir = mkdtempSync(join(tmpdir(), 'dg-serve-broker-'));
  // No session reaches a driver here; a closed port makes the reconciler's reads fail at once.
  writeFileSync(
    join(dir, 'datagrant.yaml'),
    `version: 1
settings:
  oidc: [{ name: corp, issuer: "${idp.issuer}", audience: datagrant }]
backends:
  aws: { type: aws, endpoint: "http://127.0.0.1:${await freePort()}" }
datasets:
  train: { backend: aws, bucket: ai-model-data, prefix: training/ }
principals:
  dave: { type: person, email: dave@example.com, grants: [{ dataset: train, access: read }] }
  erin: { type: person, email: erin@example.com, credentials: temporary }
`,
  );
  const io: Io = {
    stdout: () => undefined,
    stderr: () => undefined,
    env: {
      DATAGRANT_MASTER_KEY: MASTER_KEY,
      DATAGRANT_SCIM_TOKEN_SHA256: createHash('sha256').update('scim-token-broker').digest('hex'),
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'example-secret',
      AWS_REGION: 'us-east-1',
    },
    cwd: dir,
    isTTY: false,
    now: () => new Date(),
  };
  server = await startServe(io, { port: 0, intervalSeconds: 3600, logger: pino({ level: 'silent' }) });
});

afterAll(async () => {
  await server?.close();
  await idp?.close();
  rmSync(dir, { recursive: true, force: true });
});

const credentials = async (who: string) =>
  fetch(`${server.url}/v1/credentials/aws`, { method: 'POST', headers: { authorization: `Bearer ${await idp.idToken(who)}` } });

test('the real broker answers: a key principal and a principal without access are refused, each told of itself only', async () => {
  // Without a broker the endpoint would answer 501 (no session broker is configured).
  const dave = await credentials('dave');
  expect(dave.status).toBe(403);
  expect(await dave.json()).toEqual({
    error: 'access_denied',
    message: 'principal "dave" has a long-lived key, not sessions (credentials: key); use datagrant credentials export, or set credentials: temporary',
  });
  const erin = await credentials('erin');
  expect(erin.status).toBe(403);
  expect(await erin.json()).toEqual({ error: 'access_denied', message: 'principal "erin" has no unexpired grant on backend "aws"' });

  await server.close();
  const state = new SqliteStore(join(dir, '.datagrant', 'state.db'), MasterKey.parse(MASTER_KEY));
  try {
    expect((await state.auditEntries()).filter((e) => e.event.startsWith('session.')).map((e) => [e.actor, e.event, e.outcome, e.detail])).toEqual([
      ['oidc:corp:u-dave', 'session.refused', 'refused', 'principal dave, backend aws: not-temporary'],
      ['oidc:corp:u-erin', 'session.refused', 'refused', 'principal erin, backend aws: no-access'],
    ]);
    expect(await state.sessions()).toEqual([]);
  } finally {
    await state.close();
  }
});
