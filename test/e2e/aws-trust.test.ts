// Issue 9 against moto with IAM enforcement: the ways access could exceed or outlive the spec, or a
// credential could be lost, each closed and proved with the keys datagrant issued.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AddUserToGroupCommand, CreateAccessKeyCommand, CreateUserCommand, GetUserCommand, type IAMClient } from '@aws-sdk/client-iam';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { startMoto, type AwsKey, type Moto } from '../support/moto.js';
import { workspace, type Workspace } from '../support/cli.js';
import { adminIam, apply, canRead, cannotTouch, expectNoChanges, initWorkspace, issuedKey, keyIsDead, s3For, useMotoAdmin } from './aws-support.js';

let moto: Moto;
let iam: IAMClient;
const spaces: Workspace[] = [];

beforeAll(async () => {
  moto = await startMoto({ auth: true });
});
afterAll(async () => moto?.stop());
beforeEach(async () => {
  await moto.reset();
  useMotoAdmin(moto);
  iam = adminIam(moto);
});
afterEach(() => {
  for (const w of spaces.splice(0)) w.cleanup();
  iam?.destroy();
});

const names = (n: number) => Array.from({ length: n }, (_, i) => `p${i + 1}`);

/** `n` people in one group that reads training data; `extra` goes into the backend's settings. */
function spec(people: string[], extra = ''): string {
  return `version: 1
backends:
  aws: { type: aws, region: us-east-1${extra} }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
groups:
  ml:
    grants:
      - { dataset: training-data, access: read }
principals:
${people.length ? people.map((p) => `  ${p}: { type: person, groups: [ml] }`).join('\n') : '  {}'}
`;
}

async function ws(text: string): Promise<Workspace> {
  const w = await initWorkspace(text);
  spaces.push(w);
  return w;
}

const read = (key: AwsKey) => canRead(s3For(moto, key), 'ai-model-data', 'training/a.txt');

describe('finding 2: nothing in the store changes except through an applied change', () => {
  test('a typo in iamPath: plan calls it out, apply refuses, and after the fix every key still works', async () => {
    const w = await ws(spec(names(3)));
    await apply(w);
    const keys = await Promise.all(names(3).map((n) => issuedKey(w, n)));
    const before = (await w.run('credentials', 'list', '--json')).stdout;

    w.writeSpec(spec(names(3), ', iamPath: /datagrant-typo/'));
    const plan = await w.run('plan');
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/none of the 3 credentials recorded for backend aws \(IAM path \/datagrant-typo\/.*wrong account, endpoint, path/);
    const declined = await w.run('apply', '--auto-approve');
    expect(declined.code).toBe(1);
    expect(declined.stderr).toMatch(/apply refused; nothing was changed[\s\S]*--allow-missing-credentials/);
    expect((await w.run('credentials', 'list', '--json')).stdout).toBe(before);

    w.writeSpec(spec(names(3)));
    await expectNoChanges(w);
    for (const k of keys) await read(k);
    expect((await w.run('credentials', 'list', '--json')).stdout).toBe(before);
  });

  test('a key deleted by hand is forgotten only by the apply that replaces it, and the new key works', async () => {
    const w = await ws(spec(names(2)));
    await apply(w);
    const old = await issuedKey(w, 'p1');
    const { DeleteAccessKeyCommand } = await import('@aws-sdk/client-iam');
    await iam.send(new DeleteAccessKeyCommand({ UserName: 'p1', AccessKeyId: old.accessKeyId }));
    const before = (await w.run('credentials', 'list', '--json')).stdout;
    const plan = await w.run('plan', '--exact');
    expect(plan.stdout).toMatch(/aws:key\/p1~\S+[\s\S]*recorded credential no longer exists/);
    expect((await w.run('credentials', 'list', '--json')).stdout).toBe(before);
    await apply(w);
    const fresh = await issuedKey(w, 'p1');
    expect(fresh.accessKeyId).not.toBe(old.accessKeyId);
    await read(fresh);
    expect((await w.run('credentials', 'list', '--json')).stdout).not.toContain(old.accessKeyId);
  });

  test('keys of 2 of 3 users deleted by hand: plan says how many were found, apply needs --allow-missing-credentials', async () => {
    const w = await ws(spec(names(3)));
    await apply(w);
    const keys = await Promise.all(names(3).map((n) => issuedKey(w, n)));
    const { DeleteAccessKeyCommand } = await import('@aws-sdk/client-iam');
    for (const [i, k] of keys.slice(0, 2).entries()) await iam.send(new DeleteAccessKeyCommand({ UserName: `p${i + 1}`, AccessKeyId: k.accessKeyId }));
    const plan = await w.run('plan');
    expect(plan.stdout).toMatch(/only 1 of the 3 credentials recorded for backend aws \(IAM path \/datagrant\/.*\) were found there/);
    const refused = await w.run('apply', '--auto-approve');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--allow-missing-credentials/);
    await apply(w, '--allow-missing-credentials');
    for (const n of names(3)) await read(await issuedKey(w, n));
  });
});

describe('finding 3: a backend removed from the spec is torn down', () => {
  test('removing the aws backend plans the teardown; after apply every issued key is dead', async () => {
    const w = await ws(spec(names(3)));
    await apply(w);
    const keys = await Promise.all(names(3).map((n) => issuedKey(w, n)));
    w.writeSpec('version: 1\nbackends: {}\ndatasets: {}\ngroups: {}\nprincipals: {}\n');
    const plan = await w.run('plan');
    expect(plan.stdout).toMatch(/backend aws is no longer in the spec/);
    expect(plan.stdout).toMatch(/- aws:user\/p1/);
    await apply(w, '--allow-mass-destroy');
    for (const k of keys) await keyIsDead(moto, k);
    await expect(iam.send(new GetUserCommand({ UserName: 'p1' }))).rejects.toThrow(/cannot be found|NoSuchEntity/);
    await expectNoChanges(w);
    expect((await w.run('credentials', 'list', '--json')).stdout).not.toContain('aws:key');
  });

  test('destroy reaches a backend that is no longer in the spec', async () => {
    const w = await ws(spec(names(2)));
    await apply(w);
    const key = await issuedKey(w, 'p1');
    w.writeSpec('version: 1\nbackends: {}\ndatasets: {}\ngroups: {}\nprincipals: {}\n');
    const r = await w.run('destroy', '--auto-approve');
    expect(r.code, r.stderr).toBe(0);
    await keyIsDead(moto, key);
  });
});

describe('finding 4: an edited saved plan is refused', () => {
  test('a key for an unmanaged user and AdministratorAccess added to a saved plan: refused, nothing happens', async () => {
    const w = await ws(spec(names(1)));
    await apply(w);
    await iam.send(new CreateUserCommand({ UserName: 'outsider', Path: '/' }));
    w.writeSpec(spec(names(2)));
    expect((await w.run('plan', '--out', 'p.json')).code).toBe(0);
    const file = join(w.dir, 'p.json');
    const plan = JSON.parse(readFileSync(file, 'utf8')) as { changes: Record<string, unknown>[] };
    const user = { address: 'aws:user/outsider', backend: 'aws', kind: 'user', name: 'outsider', attrs: { path: '/' }, deps: [] };
    plan.changes.push(
      {
        address: 'aws:key/outsider',
        backend: 'aws',
        kind: 'key',
        action: 'create',
        before: null,
        after: { ...user, address: 'aws:key/outsider', kind: 'key', attrs: { user: 'outsider', status: 'Active' } },
        drift: false,
        reason: 'x',
      },
      {
        address: 'aws:attachment/user/p1/arn:aws:iam::aws:policy/AdministratorAccess',
        backend: 'aws',
        kind: 'attachment',
        action: 'create',
        before: null,
        after: {
          address: 'aws:attachment/user/p1/arn:aws:iam::aws:policy/AdministratorAccess',
          backend: 'aws',
          kind: 'attachment',
          name: 'arn:aws:iam::aws:policy/AdministratorAccess',
          attrs: { entity: 'user', entityName: 'p1', policy: 'arn:aws:iam::aws:policy/AdministratorAccess' },
          deps: [],
        },
        drift: false,
        reason: 'x',
      },
    );
    writeFileSync(file, JSON.stringify(plan));
    const r = await w.run('apply', 'p.json');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/p\.json is not one this state made, or it was edited/);
    expect((await w.run('credentials', 'list')).stdout).not.toMatch(/outsider|p2/);
    const { ListAccessKeysCommand, ListAttachedUserPoliciesCommand } = await import('@aws-sdk/client-iam');
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'outsider' }))).AccessKeyMetadata).toEqual([]);
    expect((await iam.send(new ListAttachedUserPoliciesCommand({ UserName: 'p1' }))).AttachedPolicies?.map((p) => p.PolicyName)).not.toContain(
      'AdministratorAccess',
    );
    // the unedited plan still applies
    expect((await w.run('plan', '--out', 'p.json')).code).toBe(0);
    expect((await w.run('apply', 'p.json')).code).toBe(0);
    await read(await issuedKey(w, 'p2'));
  });
});

describe('finding 5: the master key is checked first', () => {
  test('a wrong DATAGRANT_MASTER_KEY is refused by plan, apply and rotate, and changes nothing', async () => {
    const w = workspace({ DATAGRANT_MASTER_KEY: 'a'.repeat(64) });
    spaces.push(w);
    w.writeSpec(spec(names(1)));
    await apply(w);
    const key = await issuedKey(w, 'p1');
    w.env.DATAGRANT_MASTER_KEY = 'b'.repeat(64);
    for (const args of [['plan'], ['apply', '--auto-approve'], ['credentials', 'rotate', 'p1'], ['audit', 'verify']]) {
      const r = await w.run(...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/wrong master key/);
      expect(r.stderr).not.toMatch(/tamper/);
    }
    w.env.DATAGRANT_MASTER_KEY = 'a'.repeat(64);
    expect((await w.run('audit', 'verify')).code).toBe(0);
    expect((await issuedKey(w, 'p1')).accessKeyId).toBe(key.accessKeyId);
    await read(key);
  });
});

describe("finding 6: installations never take each other's objects", () => {
  test("a second state on the same account and path stops, naming the first one's users; they keep working", async () => {
    const a = await ws(spec(names(2)));
    await apply(a);
    const keys = await Promise.all(names(2).map((n) => issuedKey(a, n)));
    const b = await ws(spec(['q1']));
    for (const args of [['plan'], ['apply', '--auto-approve']]) {
      const r = await b.run(...args);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/holds \d+ object\(s\) of another datagrant installation[\s\S]*aws:user\/p1[\s\S]*Nothing was changed/);
    }
    for (const k of keys) await read(k);
    await expectNoChanges(a);
  });

  test('a user at a nested path (/datagrant/sub/) is outside the boundary and untouched', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'nested', Path: '/datagrant/sub/' }));
    const a = await ws(spec(names(1)));
    const plan = await a.run('plan');
    expect(plan.stdout).not.toContain('nested');
    await apply(a);
    expect((await iam.send(new GetUserCommand({ UserName: 'nested' }))).User?.Path).toBe('/datagrant/sub/');
  });

  test('a fresh state given the same installation id re-issues keys only with --adopt', async () => {
    const a = await ws(spec(names(2)));
    await apply(a);
    const id = /Installation (\S+):/.exec((await a.run('init')).stdout)![1]!;
    const old = await issuedKey(a, 'p1');
    const fresh = workspace({});
    spaces.push(fresh);
    fresh.writeSpec(spec(names(2)));
    expect((await fresh.run('init', '--installation', id)).code).toBe(0);
    const plan = await fresh.run('plan');
    expect(plan.stdout).toMatch(/2 user\(s\) hold keys this state has no record or secret of/);
    const refused = await fresh.run('apply', '--auto-approve');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--adopt/);
    await read(old);
    await apply(fresh, '--adopt');
    const now = await issuedKey(fresh, 'p1');
    expect(now.accessKeyId).not.toBe(old.accessKeyId);
    await read(now);
    await keyIsDead(moto, old);
    await expectNoChanges(fresh);
  });
});

describe('finding 7: mass deprovisioning needs a second yes', () => {
  test('principals: {} on 6 principals is refused without --allow-mass-destroy; with it, every key is dead', async () => {
    const w = await ws(spec(names(6)));
    await apply(w);
    const keys = await Promise.all(names(6).map((n) => issuedKey(w, n)));
    w.writeSpec(spec([]));
    const refused = await w.run('apply', '--auto-approve');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/6 of 6 principals on backend aws would be removed[\s\S]*--allow-mass-destroy/);
    for (const k of keys) await read(k);
    await apply(w, '--allow-mass-destroy');
    for (const k of keys) await keyIsDead(moto, k);
  });

  test('a saved plan that removes 5 of 5 principals is refused without --allow-mass-destroy too', async () => {
    const w = await ws(spec(names(5)));
    await apply(w);
    const keys = await Promise.all(names(5).map((n) => issuedKey(w, n)));
    w.writeSpec(spec([]));
    expect((await w.run('plan', '--out', 'p.json')).code).toBe(0);
    const refused = await w.run('apply', 'p.json');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/5 of 5 principals on backend aws would be removed[\s\S]*--allow-mass-destroy/);
    for (const k of keys) await read(k);
    await apply(w, 'p.json', '--allow-mass-destroy');
    for (const k of keys) await keyIsDead(moto, k);
  });

  test('a zero-length state.db is an error, never a fresh start', async () => {
    const w = await ws(spec(names(1)));
    await apply(w);
    const key = await issuedKey(w, 'p1');
    writeFileSync(join(w.dir, '.datagrant', 'state.db'), '');
    for (const f of ['state.db-wal', 'state.db-shm']) writeFileSync(join(w.dir, '.datagrant', f), '');
    const r = await w.run('apply', '--auto-approve');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/state\.db is empty \(0 bytes\)/);
    await read(key);
  });
});

describe('finding 8: drift blind spots', () => {
  test("an unmanaged user added by hand to datagrant's group is drift: reported, reverted, and its access ends", async () => {
    const w = await ws(spec(names(1)));
    await apply(w);
    await iam.send(new CreateUserCommand({ UserName: 'sneaky', Path: '/' }));
    const k = (await iam.send(new CreateAccessKeyCommand({ UserName: 'sneaky' }))).AccessKey!;
    await iam.send(new AddUserToGroupCommand({ GroupName: 'ml', UserName: 'sneaky' }));
    const sneaky = { accessKeyId: k.AccessKeyId!, secretAccessKey: k.SecretAccessKey! };
    await read(sneaky);
    const drift = await w.run('drift');
    expect(drift.code).toBe(2);
    expect(drift.stdout).toMatch(/aws:membership\/ml\/sneaky/);
    await apply(w);
    await cannotTouch(s3For(moto, sneaky), 'ai-model-data', 'training/a.txt');
    // the user itself is not datagrant's and stays
    expect((await iam.send(new GetUserCommand({ UserName: 'sneaky' }))).User?.UserName).toBe('sneaky');
    await expectNoChanges(w);
  });
});
