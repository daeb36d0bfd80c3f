// Issue 14 end to end on a real Ceph RADOS gateway, through the CLI as an operator runs it: init,
// plan, apply, credentials export. Access is proven with the exported keys on the gateway itself:
// read allowed, write denied, other datasets and another prefix denied, an expired grant denied by
// the gateway's own aws:CurrentTime condition before any apply, a removed principal denied.
import { GetObjectCommand, ListObjectsV2Command, PutObjectAclCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { openStore, statePaths } from '../../src/store/open.js';
import type { Workspace } from '../support/cli.js';
import { contentsOf, expectDenied, readObject, rgwFixture, s3As } from '../support/rgw.js';
import { apply, expectNoChanges, initWorkspace } from './aws-support.js';

const fx = rgwFixture('e2e');
let ws: Workspace;
let data: string;
let art: string;
let other: string;
/** When trainer's read of the training data ends: a few seconds after the first apply. */
let expires: Date;

const spec = (principals: string) => `version: 1
backends:
  onprem:
    type: rgw
    endpoint: ${fx.rgw.endpoint}
    accessKeyId: \${RGW_ADMIN_KEY_ID}
    secretAccessKey: \${RGW_ADMIN_SECRET}
    userPrefix: ${fx.prefix}
datasets:
  training: { backend: onprem, bucket: ${data}, prefix: training/ }
  artifacts: { backend: onprem, bucket: ${art} }
  other: { backend: onprem, bucket: ${other} }
groups:
  researchers:
    grants:
      - { dataset: training, access: read }
principals:
${principals}`;

const ALICE = '  alice: { type: person, email: alice@example.com, groups: [researchers] }\n';
const TRAINER = () =>
  `  trainer:\n    type: service\n    grants:\n      - { dataset: artifacts, access: write }\n      - { dataset: training, access: read, expires: "${expires.toISOString().replace(/\.\d{3}Z$/, 'Z')}" }\n`;

/** The exported key as an S3 client of the endpoint the export names. */
async function clientOf(name: string): Promise<{ s3: S3Client; key: { AccessKeyId: string; SecretAccessKey: string; Endpoint: string; Region: string } }> {
  const r = await ws.run('credentials', 'export', name, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const key = JSON.parse(r.stdout) as { AccessKeyId: string; SecretAccessKey: string; Endpoint: string; Region: string };
  expect(key.Endpoint).toBe(fx.rgw.endpoint);
  return { s3: s3As({ ...fx.rgw, region: key.Region }, { accessKeyId: key.AccessKeyId, secretAccessKey: key.SecretAccessKey }), key };
}

beforeAll(async () => {
  data = await fx.makeBucket('data', ['training/a.txt', 'private/b.txt']);
  art = await fx.makeBucket('art', ['model.bin']);
  other = await fx.makeBucket('other', ['x.txt']);
  // Whole seconds, and far enough ahead that the first apply and the reads before it are done.
  expires = new Date(Math.ceil((Date.now() + 8_000) / 1000) * 1000);
  ws = await initWorkspace(spec(ALICE + TRAINER()));
  ws.env.RGW_ADMIN_KEY_ID = fx.rgw.admin.accessKeyId;
  ws.env.RGW_ADMIN_SECRET = fx.rgw.admin.secretAccessKey;
});
afterAll(async () => {
  ws?.cleanup();
  await fx.cleanup();
});

describe('datagrant on Ceph RGW, through the CLI', () => {
  test('the plan shows each group as a policy of its members, and apply makes exactly it', async () => {
    const plan = await ws.run('plan', '--detailed-exitcode');
    expect(plan.code, plan.stderr).toBe(2);
    expect(plan.stdout).toContain('+ onprem:user/alice');
    expect(plan.stdout).toContain('+ onprem:inline-policy/alice/dg-group-researchers');
    expect(plan.stdout).toContain('+ onprem:inline-policy/trainer/dg-direct-grants');
    expect(plan.stdout).toContain('+ onprem:key/trainer');
    await apply(ws);
    await expectNoChanges(ws);
  });

  test("alice's exported key reads the training data; writing, another prefix and other datasets are denied", async () => {
    const { s3 } = await clientOf('alice');
    try {
      expect(await readObject(s3, data, 'training/a.txt')).toBe(contentsOf(data, 'training/a.txt'));
      expect((await s3.send(new ListObjectsV2Command({ Bucket: data, Prefix: 'training/' }))).Contents?.map((o) => o.Key)).toEqual(['training/a.txt']);
      await expectDenied(s3.send(new PutObjectCommand({ Bucket: data, Key: 'training/new.txt', Body: 'x' })), 'a write');
      await expectDenied(s3.send(new GetObjectCommand({ Bucket: data, Key: 'private/b.txt' })), 'another prefix');
      await expectDenied(s3.send(new ListObjectsV2Command({ Bucket: data, Prefix: 'private/' })), 'listing another prefix');
      await expectDenied(s3.send(new GetObjectCommand({ Bucket: art, Key: 'model.bin' })), 'another dataset');
      await expectDenied(s3.send(new GetObjectCommand({ Bucket: other, Key: 'x.txt' })), 'a dataset no one is granted');
    } finally {
      s3.destroy();
    }
    // The env format names the endpoint too, for SDKs and the AWS CLI.
    const env = await ws.run('credentials', 'export', 'alice', '--format', 'env');
    expect(env.stdout).toContain(`AWS_ENDPOINT_URL=${fx.rgw.endpoint}\n`);
  });

  test('an expired grant is denied by the gateway itself at its instant, before any apply; the next apply removes it', async () => {
    const { s3 } = await clientOf('trainer');
    try {
      // GIVEN trainer reads the training data and writes artifacts
      expect(Date.now()).toBeLessThan(expires.getTime());
      expect(await readObject(s3, data, 'training/a.txt')).toBe(contentsOf(data, 'training/a.txt'));
      await s3.send(new PutObjectCommand({ Bucket: art, Key: 'by-trainer.bin', Body: 'y' }));
      // WHEN the read's expiry passes, with no apply since
      await new Promise((r) => setTimeout(r, expires.getTime() - Date.now() + 1500));
      // THEN the gateway refuses the read, and the write goes on
      await expectDenied(readObject(s3, data, 'training/a.txt'), 'the expired read');
      await s3.send(new PutObjectCommand({ Bucket: art, Key: 'by-trainer-2.bin', Body: 'z' }));
      // AND the next plan removes the expired statements from trainer's policy
      const plan = await ws.run('plan', '--detailed-exitcode');
      expect(plan.code, plan.stderr).toBe(2);
      expect(plan.stdout).toContain('~ onprem:inline-policy/trainer/dg-direct-grants');
      await apply(ws);
      await expectNoChanges(ws);
      await expectDenied(readObject(s3, data, 'training/a.txt'), 'the expired read after apply');
    } finally {
      s3.destroy();
    }
  });

  test("what a principal uploaded stays out of its reach once its grant there ends: RGW's ACL fallback is closed", async () => {
    const { s3 } = await clientOf('trainer');
    try {
      // GIVEN trainer owns objects it wrote to artifacts (the uploader owns what it uploads)
      await s3.send(new PutObjectCommand({ Bucket: art, Key: 'owned-by-trainer.bin', Body: 'mine' }));
      // WHEN its write to artifacts is taken away while another grant keeps its user
      ws.writeSpec(spec(ALICE + '  trainer:\n    type: service\n    grants:\n      - { dataset: other, access: read }\n'));
      await apply(ws);
      // THEN it can neither read what it wrote there nor make it public; its one grant still works
      await expectDenied(readObject(s3, art, 'owned-by-trainer.bin'), 'its own upload after the grant ended');
      await expectDenied(s3.send(new PutObjectAclCommand({ Bucket: art, Key: 'owned-by-trainer.bin', ACL: 'public-read' })), 'an ACL on its own upload');
      expect((await fetch(`${fx.rgw.endpoint}/${art}/owned-by-trainer.bin`)).status).not.toBe(200);
      expect(await readObject(s3, other, 'x.txt')).toBe(contentsOf(other, 'x.txt'));
      await expectNoChanges(ws);
    } finally {
      s3.destroy();
      ws.writeSpec(spec(ALICE + TRAINER()));
    }
  });

  test('a principal removed from the spec is denied once applied: its user and key are gone', async () => {
    const { s3 } = await clientOf('alice');
    try {
      ws.writeSpec(spec(TRAINER()));
      const out = await apply(ws);
      expect(out).toContain('onprem:user/alice');
      await expectDenied(readObject(s3, data, 'training/a.txt'), "the removed principal's key");
      expect(await fx.user(`${fx.prefix}alice`)).toBeUndefined();
      await expectNoChanges(ws);
    } finally {
      s3.destroy();
    }
  });

  test('a backend removed from the spec is torn down with the admin key read from the same variables', async () => {
    // the state keeps where the gateway is and which variables hold its key, never the secret
    const store = await openStore(statePaths(join(ws.dir, '.datagrant')), ws.env);
    const remembered = (await store.backends()).find((b) => b.name === 'onprem');
    await store.close();
    expect(remembered?.settings).toMatchObject({ endpoint: fx.rgw.endpoint, fromEnv: { secretAccessKey: '${RGW_ADMIN_SECRET}' } });
    expect(JSON.stringify(remembered)).not.toContain(fx.rgw.admin.secretAccessKey);
    ws.writeSpec('version: 1\nbackends: {}\n');
    const out = await apply(ws);
    expect(out).toContain('onprem:user/trainer');
    expect(await fx.user(`${fx.prefix}trainer`)).toBeUndefined();
  });

  test('no secret was ever printed except by export', async () => {
    const text = ws.transcript.join('\n');
    expect(text).not.toContain(fx.rgw.admin.secretAccessKey);
    expect(text).not.toMatch(/"secretAccessKey"|SecretAccessKey/);
  });
});
