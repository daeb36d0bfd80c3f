// AWS sessions as an operator and a person use them, on moto with IAM enforcement: `credentials
// export` of a temporary principal (in two groups, with a direct grant) gives an STS session with
// exactly its access; a grant ending in 10 minutes caps the session's Expiration there; an AWS SDK
// reaches S3 through a `credential_process` profile; removing the principal refuses its live
// session. (What moto does not enforce — conditions, per-identity revocation — is proved by the
// IAM evaluator over the compiled documents: test/compile/aws-sessions.test.ts.)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import type { Workspace } from '../support/cli.js';
import { startMoto, type Moto } from '../support/moto.js';
import { apply, canRead, cannotTouch, cannotWrite, expectNoChanges, initWorkspace, s3For, sessionRefused, useMotoAdmin } from './aws-support.js';

let moto: Moto;
let ws: Workspace | undefined;
beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
  useMotoAdmin(moto);
});
afterAll(async () => moto?.stop());
afterEach(() => ws?.cleanup());

interface Session {
  Version: number;
  AccessKeyId: string;
  SecretAccessKey: string;
  SessionToken: string;
  Expiration: string;
}

const spec = (endsAt: string, withAlice = true) => `version: 1
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/ }
  evals: { backend: aws, bucket: ai-model-data, prefix: eval/ }
  artifacts: { backend: aws, bucket: ai-model-artifacts }
groups:
  researchers: { grants: [{ dataset: training, access: read }] }
  reviewers: { grants: [{ dataset: evals, access: read }] }
principals:
${withAlice ? '  alice: { type: person, credentials: temporary, groups: [researchers, reviewers], grants: [{ dataset: artifacts, access: read }] }\n' : ''}  carol: { type: person, credentials: temporary, maxSession: 2h, grants: [{ dataset: evals, access: read, expires: "${endsAt}" }] }
`;

const keyOf = (s: Session) => ({ accessKeyId: s.AccessKeyId, secretAccessKey: s.SecretAccessKey, sessionToken: s.SessionToken });

async function exported(w: Workspace, name: string): Promise<Session> {
  const r = await w.run('credentials', 'export', name, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as Session;
  expect(s).toMatchObject({ Version: 1, AccessKeyId: expect.any(String), SessionToken: expect.any(String) });
  // Nothing secret on stderr, ever.
  for (const secret of [s.SecretAccessKey, s.SessionToken]) expect(r.stderr).not.toContain(secret);
  return s;
}

test('export gives a session with exactly the access; an expiring grant caps it; credential_process works; removal refuses it', async () => {
  const endsAt = new Date(Date.now() + 10 * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  ws = await initWorkspace(spec(endsAt));
  await apply(ws);
  await expectNoChanges(ws);
  // No long-lived key exists for a temporary principal.
  expect((await ws.run('credentials', 'list')).stdout).not.toMatch(/alice|carol/);

  // WHEN alice exports a session
  const before = Date.now();
  const alice = await exported(ws, 'alice');
  // THEN it lasts the default maxSession (1 h) and reads her three datasets, nothing more
  expect(Date.parse(alice.Expiration) - before).toBeGreaterThan(55 * 60_000);
  expect(Date.parse(alice.Expiration) - before).toBeLessThanOrEqual(60 * 60_000 + 5_000);
  const s3 = s3For(moto, keyOf(alice));
  await canRead(s3, 'ai-model-data', 'training/a.txt', 'training');
  await canRead(s3, 'ai-model-data', 'eval/c.txt', 'eval');
  await canRead(s3, 'ai-model-artifacts', 'model.bin');
  await cannotWrite(s3, 'ai-model-data', 'training/a.txt');
  await cannotTouch(s3, 'other-bucket', 'secret.txt');
  s3.destroy();

  // A grant ending in 10 minutes: the credentials say so, though STS's shortest session is 15.
  const carol = await exported(ws, 'carol');
  expect(Date.parse(carol.Expiration)).toBe(Date.parse(endsAt));

  // An AWS SDK through a credential_process profile (the default provider chain, in a process of
  // its own without any keys in its environment) gets alice's sessions from datagrant.
  const dir = mkdtempSync(join(tmpdir(), 'dg-cp-'));
  try {
    const cli = [process.execPath, join(process.cwd(), 'bin/datagrant.js')];
    // The exporting process runs as datagrant (moto's admin), the SDK's process as no one.
    // `env -u AWS_PROFILE`: datagrant's own calls must not use the profile that calls datagrant.
    const exportCmd = [
      'env',
      '-u',
      'AWS_PROFILE',
      `AWS_ACCESS_KEY_ID=${moto.admin.accessKeyId}`,
      `AWS_SECRET_ACCESS_KEY=${moto.admin.secretAccessKey}`,
      `AWS_ENDPOINT_URL=${moto.endpoint}`,
      `AWS_REGION=${moto.region}`,
      ...cli,
      'credentials',
      'export',
      'alice',
      '--spec',
      join(ws.dir, 'datagrant.yaml'),
      '--state-dir',
      join(ws.dir, '.datagrant'),
      '--format',
      'json',
    ];
    writeFileSync(join(dir, 'config'), `[profile alice]\ncredential_process = ${exportCmd.join(' ')}\n`);
    writeFileSync(join(dir, 'credentials'), '');
    const script = `import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3';
const s3 = new S3Client({ region: '${moto.region}', endpoint: '${moto.endpoint}', forcePathStyle: true });
const got = await s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' }));
console.log(await got.Body.transformToString());`;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: dir,
      AWS_CONFIG_FILE: join(dir, 'config'),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'),
      AWS_PROFILE: 'alice',
    };
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), env, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('contents of ai-model-data/training/a.txt');

    // The same profile without `-u AWS_PROFILE` would have datagrant call itself for its own
    // credentials: it stops at the second level, saying why, instead of recursing.
    writeFileSync(join(dir, 'config'), `[profile alice]\ncredential_process = ${exportCmd.filter((a) => a !== '-u' && a !== 'AWS_PROFILE').join(' ')}\n`);
    const looping = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), env, encoding: 'utf8', timeout: 60_000 });
    expect(looping.error, 'the SDK waited for ever').toBeUndefined();
    expect(looping.status).not.toBe(0);
    expect(looping.stdout).toBe('');
    // What the second level says (the SDK keeps a credential_process's stderr to itself).
    const inner = spawnSync(
      cli[0]!,
      [
        ...cli.slice(1),
        'credentials',
        'export',
        'alice',
        '--spec',
        join(ws.dir, 'datagrant.yaml'),
        '--state-dir',
        join(ws.dir, '.datagrant'),
        '--format',
        'json',
      ],
      {
        env: { PATH: process.env.PATH, DATAGRANT_ISSUING_SESSION: '1', AWS_PROFILE: 'alice' },
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(inner.status).not.toBe(0);
    expect(inner.stdout).toBe('');
    expect(inner.stderr).toMatch(
      /datagrant is issuing a session for itself: its own AWS credentials come from a credential_process that runs datagrant \(AWS_PROFILE=alice is inherited\)/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  // WHEN alice is removed from the spec and the change applied
  ws.writeSpec(spec(endsAt, false));
  await apply(ws);
  // THEN her live session is refused, and the plan has nothing more to do
  const after = await sessionRefused(moto, keyOf(alice));
  expect(after.refused, `status ${after.status}`).toBe(true);
  await expectNoChanges(ws);
  // Issued sessions are in the audit log, their secrets nowhere in it.
  const audit = (await ws.run('audit', 'log')).stdout;
  expect(audit).toMatch(/session\.issue/);
  for (const secret of [alice.SecretAccessKey, alice.SessionToken, carol.SecretAccessKey]) expect(audit).not.toContain(secret);
});
