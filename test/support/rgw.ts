// A real Ceph RADOS gateway for tests, started by scripts/rgw-setup.sh, which prints its URL and
// admin key (DATAGRANT_TEST_RGW_*). Each test file works under a user prefix and bucket names of
// its own and removes them afterwards; test files run in parallel against one gateway. There is no
// skipping: without a gateway the tests fail, loudly.
import { randomBytes, randomInt } from 'node:crypto';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { expect } from 'vitest';
import { RgwConnection } from '../../src/backends/rgw/connection.js';
import { parseUserMetadata, type UserRecord } from '../../src/backends/rgw/state.js';

export interface TestRgw {
  endpoint: string;
  region: string;
  admin: { accessKeyId: string; secretAccessKey: string };
}

export function testRgw(): TestRgw {
  const endpoint = process.env.DATAGRANT_TEST_RGW_URL;
  const accessKeyId = process.env.DATAGRANT_TEST_RGW_ACCESS_KEY_ID;
  const secretAccessKey = process.env.DATAGRANT_TEST_RGW_SECRET_ACCESS_KEY;
  if (!endpoint || !accessKeyId || !secretAccessKey) {
    throw new Error(
      'DATAGRANT_TEST_RGW_URL, DATAGRANT_TEST_RGW_ACCESS_KEY_ID and DATAGRANT_TEST_RGW_SECRET_ACCESS_KEY are not all set: RGW tests need a real ' +
        'gateway. Run `export $(sudo bash scripts/rgw-setup.sh | tail -n 3)` (installs Ceph, starts a one-node cluster with radosgw on free ports ' +
        'and prints the variables), or use `npm test`, which does that for you.',
    );
  }
  return { endpoint, region: 'us-east-1', admin: { accessKeyId, secretAccessKey } };
}

export type Key = { accessKeyId: string; secretAccessKey: string };

const draw = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join('');
/** A key for what a test makes by hand (the gateway takes it as given). */
export const newKey = (): Key => ({
  accessKeyId: draw('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 20),
  secretAccessKey: draw('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', 40),
});

export function s3As(rgw: TestRgw, key: Key): S3Client {
  return new S3Client({ region: rgw.region, endpoint: rgw.endpoint, forcePathStyle: true, credentials: key, maxAttempts: 1 });
}

/** The contents every test object holds, so that a read proves which object it read. */
export const contentsOf = (bucket: string, key: string) => `contents of ${bucket}/${key}`;

/**
 * A user prefix and buckets of this test file's own. `admin` is a connection as the gateway's
 * admin (for what a test does by hand); `cleanup` removes every user under the prefix (and any
 * `extraUsers`) and the buckets with their objects.
 */
export function rgwFixture(label: string) {
  const rgw = testRgw();
  const run = `${label}${randomBytes(3).toString('hex')}`.toLowerCase().replace(/[^a-z0-9]/g, '');
  const prefix = `t${run}-`;
  const buckets: string[] = [];
  const extraUsers = new Set<string>();
  const admin = new RgwConnection({ name: 'test', endpoint: rgw.endpoint, credentials: rgw.admin, userPrefix: prefix });
  const s3 = s3As(rgw, rgw.admin);
  return {
    rgw,
    run,
    prefix,
    admin,
    s3,
    /** A bucket name unique to this run. */
    bucket: (name: string) => `${run}-${name}`,
    /** Creates the bucket (owned by the admin) holding `keys`, each with contentsOf. */
    async makeBucket(name: string, keys: string[]): Promise<string> {
      const bucket = `${run}-${name}`;
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      buckets.push(bucket);
      for (const k of keys) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: contentsOf(bucket, k) }));
      return bucket;
    },
    /** A uid this test makes outside the prefix, to remove at the end. */
    extraUser(uid: string) {
      extraUsers.add(uid);
      return uid;
    },
    /** The user as the gateway holds it now (undefined: none). */
    async user(uid: string): Promise<UserRecord | undefined> {
      try {
        return parseUserMetadata(await admin.admin('GET', '/admin/metadata/user', { key: uid }, 'test: reading a user'));
      } catch (e) {
        if ((e as { code?: string }).code === 'NoSuchKey') return undefined;
        throw e;
      }
    },
    /** The user's policy names, as the gateway holds them now. */
    async policyNames(uid: string): Promise<string[]> {
      const u = await this.user(uid);
      return Object.keys(u?.policies ?? {}).sort();
    },
    async cleanup(): Promise<void> {
      const list = JSON.parse(await admin.admin('GET', '/admin/metadata/user', {}, 'test: listing users')) as string[];
      for (const uid of list.filter((u) => u.startsWith(prefix) || extraUsers.has(u))) {
        await admin.admin('DELETE', '/admin/user', { uid, 'purge-data': 'true' }, 'test: removing a user').catch(() => undefined);
      }
      for (const bucket of buckets) {
        const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket })).catch(() => undefined);
        for (const o of listed?.Contents ?? []) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key! }));
        await s3.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
      }
      s3.destroy();
      admin.close();
    },
  };
}

export type RgwFixture = ReturnType<typeof rgwFixture>;

/** Asserts that `p` fails with a refusal of the credentials' access (S3 AccessDenied, an unknown key). */
export async function expectDenied(p: Promise<unknown>, what = 'the request'): Promise<void> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `${what} was allowed`).toBeDefined();
  expect(String((err as Error).name), `${what}: ${String(err)}`).toMatch(/AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|Forbidden|UserSuspended/);
}

export async function readObject(s3: S3Client, bucket: string, key: string): Promise<string> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return (await got.Body?.transformToString()) ?? '';
}
