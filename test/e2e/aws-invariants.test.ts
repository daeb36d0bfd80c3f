// Invariants through the CLI, against moto with IAM enforcement: a spec change (or a SCIM person)
// that breaks one fails `plan` and `apply` with the invariant's name and the grant that breaks it,
// before anything is read or made — the user the breaking grant would have created never exists —
// and the same change, once it keeps the invariant, applies.
import { join } from 'node:path';
import { GetUserCommand, ListUsersCommand, type IAMClient } from '@aws-sdk/client-iam';
import { describe, expect, test } from 'vitest';
import { openScimStoreAt } from '../../src/scim/store/open.js';
import { statePaths } from '../../src/store/open.js';
import type { Workspace } from '../support/cli.js';
import type { Moto } from '../support/moto.js';
import { apply, canRead, initWorkspace, issuedKey, motoPerFile, s3For } from './aws-support.js';

let moto: Moto;
let ws: Workspace;
let iam: IAMClient;

motoPerFile(
  { auth: true },
  {
    each: (m, i) => {
      moto = m;
      iam = i;
    },
    after: () => ws?.cleanup(),
  },
);

const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/ }
groups:
  ml: { grants: [{ dataset: training, access: read }] }
principals:
  alice: { type: person, email: alice@example.com, groups: [ml] }
invariants:
  training-stays-in-ml: { datasets: [training], onlyMembersOf: [ml] }
  people-have-email: { type: person, require: [email] }
scim:
  groups: { ML: ml }
`;
// Line 9 of the spec, the grant at column 65: where the message must point.
const BREAKING = SPEC.replace(
  '  alice: { type: person, email: alice@example.com, groups: [ml] }\n',
  '  alice: { type: person, email: alice@example.com, groups: [ml] }\n  mallory: { type: person, email: mallory@example.com, grants: [{ dataset: training, access: read }] }\n',
);
const MESSAGE =
  'invariant training-stays-in-ml: principal mallory gets read on training through principals.mallory.grants[0] (datagrant.yaml:9:65), and mallory is not in group ml';

async function datagrantUsers(): Promise<string[]> {
  return ((await iam.send(new ListUsersCommand({ PathPrefix: '/datagrant/' }))).Users ?? []).map((u) => u.UserName!).sort();
}

async function userExists(name: string): Promise<boolean> {
  try {
    await iam.send(new GetUserCommand({ UserName: name }));
    return true;
  } catch (e) {
    if ((e as Error).name === 'NoSuchEntityException' || (e as Error).name === 'NoSuchEntity') return false;
    throw e;
  }
}

describe('invariants', () => {
  test('a spec change that breaks one fails validate, plan and apply, naming it and the grant; nothing changes in IAM', async () => {
    // GIVEN an installation applied from a spec that keeps its invariants
    ws = await initWorkspace(SPEC);
    await apply(ws);
    expect(await datagrantUsers()).toEqual(['alice']);
    const audit = (await ws.run('audit', 'log')).stdout;

    // WHEN a change grants the training data to someone outside ml
    ws.writeSpec(BREAKING);
    const validate = await ws.run('validate');
    const plan = await ws.run('plan');
    const applied = await ws.run('apply', '--auto-approve');

    // THEN each command fails with the invariant's name and the grant that breaks it
    for (const r of [validate, plan, applied]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`Error: the spec breaks an invariant (no backend was read or changed):\n  ${MESSAGE}\n`);
      expect(r.stdout).toBe('');
    }
    // and nothing happened: no audit entry, mallory's user was never made, alice still reads
    expect((await ws.run('audit', 'log')).stdout).toBe(audit);
    expect(await userExists('mallory')).toBe(false);
    expect(await datagrantUsers()).toEqual(['alice']);
    await canRead(s3For(moto, await issuedKey(ws, 'alice')), 'ai-model-data', 'training/a.txt', 'training');

    // WHEN the same person gets the access through the group instead
    ws.writeSpec(BREAKING.replace('mallory@example.com, grants: [{ dataset: training, access: read }] }', 'mallory@example.com, groups: [ml] }'));
    await apply(ws);
    // THEN it applies: the refusal was the invariant's
    expect(await datagrantUsers()).toEqual(['alice', 'mallory']);
  });

  test('a SCIM person is judged like any other principal: one without an email stops plan and apply', async () => {
    ws = await initWorkspace(SPEC);
    await apply(ws);
    // GIVEN the identity provider pushed a person in ML whose userName is no email, and no emails
    const scim = await openScimStoreAt(statePaths(join(ws.dir, '.datagrant')), ws.env);
    let id: string;
    try {
      id = (await scim.create('User', { userName: 'jdoe', active: true }, { reservedNames: ['alice'] })).id;
      await scim.create('Group', { displayName: 'ML', members: [{ value: id, type: 'User' }] });
    } finally {
      await scim.close();
    }
    // WHEN plan and apply run
    for (const command of [['plan'], ['apply', '--auto-approve']]) {
      const r = await ws.run(...command);
      // THEN both refuse, naming the person and saying where it comes from
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        'Error: the spec breaks an invariant (no backend was read or changed):\n  invariant people-have-email: principal jdoe (a SCIM person) has no email\n',
      );
    }
    expect(await userExists('jdoe')).toBe(false);

    // WHEN the person gets an email in the identity provider
    const again = await openScimStoreAt(statePaths(join(ws.dir, '.datagrant')), ws.env);
    try {
      await again.update('User', id, (cur) => ({ ...cur.attrs, emails: [{ value: 'jdoe@example.com', primary: true }] }));
    } finally {
      await again.close();
    }
    // THEN apply makes the user
    await apply(ws);
    expect(await datagrantUsers()).toEqual(['alice', 'jdoe']);
  });
});
