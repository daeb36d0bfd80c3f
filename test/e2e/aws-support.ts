// Shared set-up for end-to-end tests: moto with IAM enforcement, a workspace running the CLI as
// the moto admin, and helpers that prove access with the keys datagrant issued.
import { ListAccessKeysCommand, type IAMClient } from '@aws-sdk/client-iam';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, DeleteObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, expect } from 'vitest';
import { iamAs, expectAccessDenied, startMoto, type AwsKey, type Moto } from '../support/moto.js';
import { workspace, type Workspace } from '../support/cli.js';

/** The AWS SDK inside the CLI reads the standard chain from process.env: point it at moto. */
export function useMotoAdmin(moto: Moto): void {
  process.env.AWS_ACCESS_KEY_ID = moto.admin.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = moto.admin.secretAccessKey;
  process.env.AWS_REGION = moto.region;
  process.env.AWS_ENDPOINT_URL = moto.endpoint;
  delete process.env.AWS_PROFILE;
}

export async function initWorkspace(spec: string): Promise<Workspace> {
  const ws = workspace({});
  ws.writeSpec(spec);
  const r = await ws.run('init');
  expect(r.code, r.stderr).toBe(0);
  return ws;
}

export async function apply(ws: Workspace, ...extra: string[]): Promise<string> {
  const r = await ws.run('apply', '--auto-approve', ...extra);
  expect(r.code, `apply failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

export async function expectNoChanges(ws: Workspace): Promise<void> {
  const r = await ws.run('plan', '--detailed-exitcode');
  expect(r.stdout + r.stderr).toContain('No changes.');
  expect(r.code).toBe(0);
}

export async function issuedKey(ws: Workspace, name: string, backend?: string): Promise<AwsKey> {
  const r = await ws.run('credentials', 'export', name, '--format', 'json', ...(backend ? ['--backend', backend] : []));
  expect(r.code, r.stderr).toBe(0);
  const j = JSON.parse(r.stdout) as { AccessKeyId: string; SecretAccessKey: string };
  return { accessKeyId: j.AccessKeyId, secretAccessKey: j.SecretAccessKey };
}

export function s3For(moto: Moto, key: AwsKey): S3Client {
  // moto's signature check does not follow the SDK's default streaming checksums on writes.
  return new S3Client({
    region: moto.region,
    endpoint: moto.endpoint,
    forcePathStyle: true,
    credentials: key,
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
}

/**
 * Reads an object and lists it. moto's SigV4 check rejects a `/` in query parameters
 * (SignatureDoesNotMatch), so list prefixes here carry no slash; moto ignores the `s3:prefix`
 * condition anyway, which our own compiler tests prove instead.
 */
export async function canRead(s3: S3Client, bucket: string, key: string, listPrefix?: string): Promise<void> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  expect(await got.Body?.transformToString()).toContain(`contents of ${bucket}/${key}`);
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ...(listPrefix ? { Prefix: listPrefix } : {}) }));
  expect((listed.Contents ?? []).map((o) => o.Key)).toContain(key);
}

export async function cannotWrite(s3: S3Client, bucket: string, key: string): Promise<void> {
  await expectAccessDenied(s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'x' })));
  await expectAccessDenied(s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })));
}

export async function cannotTouch(s3: S3Client, bucket: string, key: string): Promise<void> {
  await expectAccessDenied(s3.send(new GetObjectCommand({ Bucket: bucket, Key: key })));
  await expectAccessDenied(s3.send(new ListObjectsV2Command({ Bucket: bucket })));
}

/** A deleted key is refused; moto keeps honouring merely deactivated keys, so only deletion proves revocation. */
export async function keyIsDead(moto: Moto, key: AwsKey): Promise<void> {
  const s3 = s3For(moto, key);
  let err: unknown;
  try {
    await s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'training/a.txt' }));
  } catch (e) {
    err = e;
  }
  expect(err, 'the key still works').toBeDefined();
  expect(String((err as Error).name)).toMatch(/InvalidAccessKeyId|AccessDenied|Forbidden|SignatureDoesNotMatch/);
}

/**
 * Whether AWS refuses `key` the dataset now: the key is gone (deleted), or it no longer grants the
 * read (memberships and policies removed; moto honours a merely inactive key). For polling.
 */
export async function keyRefused(moto: Moto, key: AwsKey, bucket = 'ai-model-data', object = 'training/a.txt'): Promise<boolean> {
  const s3 = s3For(moto, key);
  try {
    await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object }))).Body?.transformToString();
    return false;
  } catch (e) {
    const name = String((e as Error).name);
    if (/InvalidAccessKeyId|AccessDenied|Forbidden|SignatureDoesNotMatch/.test(name)) return true;
    throw e;
  } finally {
    s3.destroy();
  }
}

export async function keysOf(iam: IAMClient, user: string): Promise<string[]> {
  return ((await iam.send(new ListAccessKeysCommand({ UserName: user }))).AccessKeyMetadata ?? []).map((k) => k.AccessKeyId!).sort();
}

export function adminIam(moto: Moto): IAMClient {
  return iamAs(moto, moto.admin);
}

/**
 * Whether a session (or key) is refused the dataset now. AWS refuses a session denied on its role,
 * or whose role is gone; moto answers 403, or an HTTP 500 for a session of a deleted role (it looks
 * the role up to collect its policies), so both count as refused; 200 does not.
 */
export async function sessionRefused(
  moto: Moto,
  key: AwsKey,
  bucket = 'ai-model-data',
  object = 'training/a.txt',
): Promise<{ refused: boolean; status: number }> {
  const s3 = s3For(moto, key);
  try {
    await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object }))).Body?.transformToString();
    return { refused: false, status: 200 };
  } catch (e) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? -1;
    return { refused: status === 403 || status === 500, status };
  } finally {
    s3.destroy();
  }
}

/**
 * The rig most end-to-end files share: one moto for the file (IAM enforcement on), reset before
 * each test, the CLI acting as its administrator, and a fresh admin IAM client per test, handed to
 * `each`; `after` runs after each test (a test's workspace's cleanup, say).
 */
export function motoPerFile(options: Parameters<typeof startMoto>[0], hooks: { each: (moto: Moto, iam: IAMClient) => void; after?: () => void }): void {
  let moto: Moto | undefined;
  let iam: IAMClient | undefined;
  beforeAll(async () => {
    moto = await startMoto(options);
  });
  afterAll(async () => moto?.stop());
  beforeEach(async () => {
    await moto!.reset();
    useMotoAdmin(moto!);
    iam = adminIam(moto!);
    hooks.each(moto!, iam);
  });
  afterEach(() => {
    hooks.after?.();
    iam?.destroy();
  });
}
