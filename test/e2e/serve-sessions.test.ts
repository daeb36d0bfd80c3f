// serve's credential endpoint with the real session broker, on moto with IAM enforcement and a
// real local OpenID provider: alice's ID token gets a session that reads alice's data and nothing
// more; bob (a principal with a stored key) and a stranger get none; once alice is removed from
// the spec and that is applied, the session serve gave her is refused.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Io } from '../../src/app/io.js';
import { main } from '../../src/cli/main.js';
import { hashToken } from '../../src/scim/server.js';
import { startServe, type RunningServer } from '../../src/serve/serve.js';
import { startMoto, type Moto } from '../support/moto.js';
import { startIdp, type TestIdp } from '../support/oidc.js';
import { canRead, cannotTouch, cannotWrite, s3For, sessionRefused, useMotoAdmin } from './aws-support.js';

let moto: Moto;
let idp: TestIdp;
let dir: string;
let server: RunningServer | undefined;
const logLines: string[] = [];
let io: Io;

const spec = (withAlice: boolean) => `version: 1
settings:
  oidc: [{ name: corp, issuer: "${idp.issuer}", audience: datagrant }]
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/ }
groups:
  researchers: { grants: [{ dataset: training, access: read }] }
principals:
${withAlice ? '  alice: { type: person, email: alice@example.com, credentials: temporary, groups: [researchers] }\n' : ''}  bob: { type: person, email: bob@example.com, groups: [researchers] }
`;

async function cli(...args: string[]): Promise<string> {
  let out = '';
  const code = await main(args, { ...io, stdout: (s) => (out += s), stderr: (s) => (out += s) });
  expect(code, out).toBe(0);
  return out;
}

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
  useMotoAdmin(moto);
  idp = await startIdp({
    accounts: {
      alice: { sub: 'u-alice', email: 'alice@example.com' },
      bob: { sub: 'u-bob', email: 'bob@example.com' },
      eve: { sub: 'u-eve', email: 'eve@example.com' },
    },
  });
  dir = mkdtempSync(join(tmpdir(), 'dg-serve-sessions-'));
  writeFileSync(join(dir, 'datagrant.yaml'), spec(true));
  io = {
    stdout: () => undefined,
    stderr: () => undefined,
    env: { ...process.env, DATAGRANT_MASTER_KEY: 'f'.repeat(64), DATAGRANT_SCIM_TOKEN_SHA256: hashToken('scim-token-serve-sessions-0123') },
    cwd: dir,
    isTTY: false,
    now: () => new Date(),
  };
  await cli('init');
  await cli('apply', '--auto-approve');
  const logger = pino({ level: 'debug' }, { write: (l: string) => void logLines.push(l) });
  server = await startServe(io, { port: 0, intervalSeconds: 3600, logger });
});

afterAll(async () => {
  await server?.close();
  await idp?.close();
  await moto?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Session {
  AccessKeyId: string;
  SecretAccessKey: string;
  SessionToken: string;
  Expiration: string;
}

const ask = (token: string) => fetch(`${server!.url}/v1/credentials/aws`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
const keyOf = (s: Session) => ({ accessKeyId: s.AccessKeyId, secretAccessKey: s.SecretAccessKey, sessionToken: s.SessionToken });

test("alice's token gets alice's working session; a key principal and a stranger get none; removal refuses it", async () => {
  const res = await ask(await idp.idToken('alice'));
  expect(res.status, await res.clone().text()).toBe(200);
  const alice = (await res.json()) as Session;
  const s3 = s3For(moto, keyOf(alice));
  await canRead(s3, 'ai-model-data', 'training/a.txt', 'training');
  await cannotWrite(s3, 'ai-model-data', 'training/a.txt');
  await cannotTouch(s3, 'other-bucket', 'secret.txt');

  // bob has a stored key, not sessions; eve is no principal at all.
  const bob = await ask(await idp.idToken('bob'));
  expect(bob.status).toBe(403);
  expect(((await bob.json()) as { message: string }).message).toMatch(/principal "bob" has a long-lived key, not sessions/);
  expect((await ask(await idp.idToken('eve'))).status).toBe(403);

  // alice leaves: the spec loses her and the change is applied; the session serve gave her is refused.
  writeFileSync(join(dir, 'datagrant.yaml'), spec(false));
  await cli('apply', '--auto-approve');
  s3.destroy();
  const after = await sessionRefused(moto, keyOf(alice));
  expect(after.refused, `status ${after.status}`).toBe(true);

  // Her new token now gets nothing; the log never held a token or a secret.
  expect((await ask(await idp.idToken('alice'))).status).toBe(403);
  const log = logLines.join('');
  for (const secret of [alice.SecretAccessKey, alice.SessionToken]) expect(log).not.toContain(secret);
});
