// `npm run demo`: the seed scenario end to end on a local AWS emulator.
// Starts moto with IAM enforcement, applies examples/seed.yaml with the real CLI, then uses the
// key datagrant issued to show what it can and cannot do.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { s3As, startMoto } from '../test/support/moto.js';

const root = resolve(import.meta.dirname, '..');
const bold = (s: string) => (process.stdout.isTTY ? `\u001b[1m${s}\u001b[0m` : s);
const step = (s: string) => console.log(`\n${bold(`==> ${s}`)}`);

const moto = await startMoto({ auth: true });
const work = mkdtempSync(join(tmpdir(), 'datagrant-demo-'));
const env = {
  ...process.env,
  AWS_ACCESS_KEY_ID: moto.admin.accessKeyId,
  AWS_SECRET_ACCESS_KEY: moto.admin.secretAccessKey,
  AWS_REGION: moto.region,
  AWS_ENDPOINT_URL: moto.endpoint,
  DATAGRANT_STATE_DIR: join(work, '.datagrant'),
  DATAGRANT_SPEC: join(root, 'examples/seed.yaml'),
  NO_COLOR: '1',
};
let failed = false;

function datagrant(...args: string[]): { code: number; stdout: string } {
  console.log(`$ datagrant ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [join(root, 'bin/datagrant.js'), ...args], { env, encoding: 'utf8' });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  return { code: r.status ?? 1, stdout: r.stdout };
}

function must(cond: boolean, what: string) {
  if (!cond) {
    failed = true;
    console.log(`   FAILED: ${what}`);
  }
}

async function attempt(what: string, expectAllowed: boolean, fn: () => Promise<unknown>) {
  let allowed = true;
  let detail = '';
  try {
    await fn();
  } catch (e) {
    allowed = false;
    detail = (e as { name?: string }).name ?? String(e);
  }
  const ok = allowed === expectAllowed;
  if (!ok) failed = true;
  console.log(`   ${ok ? '✔' : '✘'} ${what.padEnd(52)} ${allowed ? 'allowed' : `denied (${detail})`}${ok ? '' : '   <-- unexpected'}`);
}

try {
  console.log(`moto (AWS emulator, IAM enforcement on) at ${moto.endpoint}; state in ${work}`);
  step('Create the state directory and master key');
  datagrant('init');
  step('Plan: what datagrant would create for examples/seed.yaml');
  must(datagrant('plan').code === 0, 'plan');
  step('Apply');
  must(datagrant('apply', '--auto-approve').code === 0, 'apply');
  step('A second plan finds nothing to do');
  must(datagrant('plan', '--detailed-exitcode').code === 0, 'second plan is empty');
  step('The key is stored encrypted; list shows no secret');
  datagrant('credentials', 'list');

  const exported = spawnSync(process.execPath, [join(root, 'bin/datagrant.js'), 'credentials', 'export', 'data-scientist', '--format', 'json'], {
    env,
    encoding: 'utf8',
  });
  const key = JSON.parse(exported.stdout) as { AccessKeyId: string; SecretAccessKey: string };
  step(`Using the issued key ${key.AccessKeyId} (datagrant credentials export data-scientist --format json)`);
  const s3 = s3As(moto, { accessKeyId: key.AccessKeyId, secretAccessKey: key.SecretAccessKey });
  await attempt('ListBucket ai-model-data', true, async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: 'ai-model-data' }));
    console.log(`     objects: ${(r.Contents ?? []).map((o) => o.Key).join(', ')}`);
  });
  await attempt('GetObject ai-model-data/training/a.txt', true, () => s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' })));
  await attempt('PutObject ai-model-data/training/new.txt', false, () =>
    s3.send(new PutObjectCommand({ Bucket: 'ai-model-data', Key: 'training/new.txt', Body: 'x' })),
  );
  await attempt('DeleteObject ai-model-data/training/a.txt', false, () => s3.send(new DeleteObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' })));
  await attempt('GetObject other-bucket/secret.txt', false, () => s3.send(new GetObjectCommand({ Bucket: 'other-bucket', Key: 'secret.txt' })));
  await attempt('ListBucket other-bucket', false, () => s3.send(new ListObjectsV2Command({ Bucket: 'other-bucket' })));

  step('Who can read ai-model-data, read from IAM itself, beside the spec (datagrant access)');
  must(datagrant('access').code === 0, 'access');

  step('The audit trail (hash-chained)');
  datagrant('audit', 'log');
  must(datagrant('audit', 'verify').code === 0, 'audit verify');
} finally {
  await moto.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(failed ? '\nDemo FAILED: see the lines marked above.' : '\nDemo complete: the issued key reads the AI training data and nothing else.');
process.exitCode = failed ? 1 : 0;
