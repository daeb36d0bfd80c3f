// settings.expireUnused against moto with IAM enforcement: a key left unused past the limit loses
// its grants and is deactivated (plan says so first); the verdict holds on the next plan without
// any state of its own; a key that was used keeps its access; `credentials rotate` brings a fresh
// key, and the next apply restores the grants. Also: `access --unused` lists exactly the unused.
import { ListAccessKeysCommand, ListUserPoliciesCommand, type IAMClient } from '@aws-sdk/client-iam';
import { expect, test } from 'vitest';
import type { Workspace } from '../support/cli.js';
import type { Moto } from '../support/moto.js';
import { apply, canRead, initWorkspace, issuedKey, keyRefused, motoPerFile, s3For } from './aws-support.js';

let moto: Moto;
let ws: Workspace;
let iam: IAMClient;

motoPerFile(
  { auth: true, managedPolicies: false },
  {
    each: (m, i) => {
      moto = m;
      iam = i;
    },
    after: () => ws?.cleanup(),
  },
);

const SPEC = `version: 1
settings: { expireUnused: 1d }
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/ }
groups:
  readers: { grants: [{ dataset: training, access: read }] }
principals:
  busy: { type: service, grants: [{ dataset: training, access: read }] }
  idle: { type: service, groups: [readers] }
`;

const status = async (user: string) => ((await iam.send(new ListAccessKeysCommand({ UserName: user }))).AccessKeyMetadata ?? []).map((k) => k.Status);

test('a key unused past the limit loses its grants and is deactivated, stays so, and comes back by rotation', async () => {
  ws = await initWorkspace(SPEC);
  await apply(ws);
  const busyKey = await issuedKey(ws, 'busy');
  const idleKey = await issuedKey(ws, 'idle');
  const issued = (await iam.send(new ListAccessKeysCommand({ UserName: 'idle' }))).AccessKeyMetadata![0]!.CreateDate!.getTime();
  // busy uses its key 3 s after idle's was issued (IAM records last use to the second); idle never.
  await new Promise((r) => setTimeout(r, Math.max(0, issued + 3500 - Date.now())));
  await canRead(s3For(moto, busyKey), 'ai-model-data', 'training/a.txt');

  // moto's clock cannot move, the CLI's can: a day and 1.5 s after idle's key was issued, the
  // cutoff falls between idle's issue and busy's use.
  const later = new Date(issued + 86400_000 + 1500);
  ws.now = () => later;
  // access --unused lists exactly idle's access; busy's key was used within the day.
  const unused = await ws.run('access', '--unused', '1d', '--format', 'csv');
  expect(unused.code, unused.stderr).toBe(0);
  const rows = unused.stdout.trim().split('\r\n').slice(1);
  expect(rows.map((r) => r.split(',').slice(0, 4).join(','))).toEqual(['training,aws,read,idle']);
  // Its only use is datagrant's own check, at issue, that AWS accepts the new key.
  const lastUsed = Date.parse(rows[0]!.split(',').at(-2)!);
  expect(Math.abs(lastUsed - issued)).toBeLessThan(3000);
  const plan = await ws.run('plan');
  expect(plan.code, plan.stderr).toBe(0);
  // The plan says it first, naming the principal, the limit and the way back.
  const first = plan.stdout.indexOf('principal idle: its grants on backend aws expire and its key is deactivated');
  expect(first).toBeGreaterThanOrEqual(0);
  expect(plan.stdout.indexOf('aws:key/idle')).toBeGreaterThan(first);
  expect(plan.stdout).toContain('settings.expireUnused (1d)');
  expect(plan.stdout).not.toMatch(/principal busy: its grants/);
  await apply(ws);
  expect(await status('idle')).toEqual(['Inactive']);
  expect(await status('busy')).toEqual(['Active']);
  // Stable: the deactivated key's last use cannot move, so the next plan agrees.
  const again = await ws.run('plan', '--detailed-exitcode');
  expect(again.stdout).toContain('No changes.');
  expect(again.code).toBe(0);
  // moto honours inactive keys, so the proof of revocation is that the grants are gone: refused.
  expect(await keyRefused(moto, idleKey)).toBe(true);
  await canRead(s3For(moto, busyKey), 'ai-model-data', 'training/a.txt');

  // The way back: a fresh key, then apply restores the grants.
  const rotated = await ws.run('credentials', 'rotate', 'idle');
  expect(rotated.code, rotated.stdout + rotated.stderr).toBe(0);
  await apply(ws);
  const fresh = await issuedKey(ws, 'idle');
  expect(fresh.accessKeyId).not.toBe(idleKey.accessKeyId);
  await canRead(s3For(moto, fresh), 'ai-model-data', 'training/a.txt');
  expect(((await iam.send(new ListUserPoliciesCommand({ UserName: 'busy' }))).PolicyNames ?? []).length).toBe(1);
});
