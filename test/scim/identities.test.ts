import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { PrincipalNameConflictError } from '../../src/core/errors.js';
import { principalBaseName, principalNameCandidates, scimPeople, scimPrincipals } from '../../src/scim/identities.js';
import type { ScimRecord } from '../../src/scim/store/store.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { NAME_RE, specSchema, type Spec } from '../../src/spec/schema.js';
import { writeLegacySqlite } from './legacy.js';
import { hashed } from './store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'dg-scim-names-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
// Records as the store returns them: the principal name is whatever the store gave.
const user = (userName: string, extra: Record<string, unknown> = {}, principal = principalBaseName(userName)): ScimRecord => {
  const created = `2026-01-01T00:00:${String(++seq).padStart(2, '0')}.000Z`;
  return { type: 'User', id: `u-${userName}`, attrs: { userName, active: true, ...extra }, created, lastModified: created, version: 'W/"1"', principal };
};
const group = (displayName: string, members: ScimRecord[], extra: Record<string, unknown>[] = []): ScimRecord => ({
  type: 'Group',
  id: `g-${displayName}`,
  attrs: { displayName, members: [...members.map((m) => ({ value: m.id, type: 'User' })), ...extra] } as ScimRecord['attrs'],
  created: '2026-01-01T00:00:00.000Z',
  lastModified: '2026-01-01T00:00:00.000Z',
  version: 'W/"1"',
});

describe('principal names that IAM and PostgreSQL both accept', () => {
  test.each([
    ['alice@example.com', 'alice'],
    ['Alice.Liddell@Example.com', 'alice_liddell'],
    ['bob+ml@example.com', 'bob_ml'],
    ['josé.garcía@example.com', 'jose_garcia'],
    ['1st.user@example.com', 'u_1st_user'],
    ['pg_admin@example.com', 'u_pg_admin'],
    ['public@example.com', 'u_public'],
    ['___@example.com', 'u'],
    ['CONTOSO\\jdoe', 'contoso_jdoe'],
    ['a@b@example.com', 'a_b'],
    [`${'x'.repeat(80)}@example.com`, 'x'.repeat(48)],
  ])('%s → %s', (userName, want) => {
    const n = principalBaseName(userName);
    expect(n).toBe(want);
    expect(n).toMatch(NAME_RE);
    expect(n).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(Buffer.byteLength(n)).toBeLessThanOrEqual(63);
  });
});

test('active users in mapped groups; unmapped groups grant nothing; inactive users vanish', () => {
  const alice = user('alice@example.com', { emails: [{ value: 'alice@corp.example', type: 'work', primary: true }] });
  const bob = user('bob@example.com');
  const carol = user('carol@example.com', { active: false });
  const dave = user('dave', { emails: [{ value: 'not-an-email' }] });
  const groups = [
    group('ML Research', [alice, bob, carol]),
    group('Data Eng', [alice], [{ value: 'g-nested', type: 'Group' }]),
    group('Unmapped', [bob]),
    group('ml research ops', [dave]),
  ];
  expect(scimPrincipals([alice, bob, carol, dave], groups, { 'ml research': 'ml-researchers', 'Data Eng': 'data-engineers' })).toEqual({
    alice: { type: 'person', email: 'alice@corp.example', groups: ['data-engineers', 'ml-researchers'], grants: [] },
    bob: { type: 'person', email: 'bob@example.com', groups: ['ml-researchers'], grants: [] },
    dave: { type: 'person', groups: [], grants: [] },
  });
});

test('each user under the name the store gave it, whatever its userName is now; never a name computed from who is active', () => {
  // GIVEN two users whose userNames make the same base name; the store named them at creation
  const a = user('alice@a.example', { active: false }, 'alice');
  const b = user('alice@b.example', {}, hashed('alice', 'alice@b.example'));
  const renamed = user('zed@x.example', {}, 'bob');
  // THEN the one left active keeps its own name, and a renamed user keeps the name it was given
  expect(Object.keys(scimPrincipals([a, b, renamed], [], {}))).toEqual([hashed('alice', 'alice@b.example'), 'bob']);
  // A record without a name (a store that has not named its older rows) is refused, not guessed
  expect(() =>
    scimPrincipals(
      [user('c@x.example', {}, undefined as unknown as string)].map(({ principal: _, ...r }) => r),
      [],
      {},
    ),
  ).toThrow(/has no principal name yet/);
});

describe('candidate names, best first: base, hash suffixes, then a counter; all valid for IAM and PostgreSQL', () => {
  test.each(['alice@example.com', `${'l'.repeat(70)}@example.com`, 'pg_x@example.com', '12345'])('%s', (userName) => {
    const it = principalNameCandidates(userName);
    const names = Array.from({ length: 20 }, () => it.next().value);
    const base = principalBaseName(userName);
    expect(names[0]).toBe(base);
    expect(names[1]).toBe(hashed(base, userName));
    expect(names[2]).toBe(hashed(base, userName, 12));
    expect(new Set(names).size).toBe(names.length);
    expect(names.at(-1)).toMatch(new RegExp(`^${hashed(base, userName)}_[0-9]+$`));
    for (const n of names) {
      expect(n).toMatch(NAME_RE);
      expect(n).toMatch(/^[a-z][a-z0-9_]*$/);
      expect(Buffer.byteLength(n)).toBeLessThanOrEqual(63);
    }
  });
});

test('dangling members and members of unknown type are ignored', () => {
  const a = user('a@example.com');
  const g = group('ML Research', [a], [{ value: 'u-gone' }, { value: 5 }]);
  expect(scimPrincipals([a], [g], { 'ML Research': 'ml' })).toEqual({ a: { type: 'person', email: 'a@example.com', groups: ['ml'], grants: [] } });
});

test('the output, under the names a store gives, merges into a spec that passes the spec schema', async () => {
  const store = new SqliteScimStore(':memory:');
  for (const u of [
    'Zoë.Ünal@example.com',
    "o'brien@example.com",
    'pg_x@example.com',
    'x@y',
    '12345',
    `${'l'.repeat(70)}@example.com`,
    `${'l'.repeat(70)}@other.example`,
  ]) {
    await store.create('User', { userName: u });
  }
  const users = await store.list('User');
  const principals = scimPrincipals(users, [group('ML', users)], { ML: 'ml-researchers' });
  await store.close();
  expect(Object.keys(principals)).toHaveLength(7);
  const parsed = specSchema.safeParse({
    version: 1,
    backends: { aws: { type: 'aws' } },
    groups: { 'ml-researchers': { grants: [] } },
    principals,
  });
  expect(parsed.error?.issues ?? []).toEqual([]);
});

describe('scimPeople: the SCIM people a reconcile merges into the spec', () => {
  const SPEC = (principals: Record<string, unknown> = {}): Spec =>
    specSchema.parse({
      version: 1,
      backends: { aws: { type: 'aws' } },
      groups: { 'ml-researchers': {}, evaluators: {} },
      principals,
      scim: { groups: { 'ML Research': 'ml-researchers', Evaluators: 'evaluators' } },
    });
  const members = (...users: ScimRecord[]) => users.map((u) => ({ value: u.id, type: 'User' }));

  /** alice@a in ML Research, alice@b in Evaluators: both userNames make `alice`. */
  async function twoAlices() {
    const store = new SqliteScimStore(':memory:');
    const a = await store.create('User', { userName: 'alice@a.example', active: true });
    const b = await store.create('User', { userName: 'alice@b.example', active: true });
    await store.create('Group', { displayName: 'ML Research', members: members(a) });
    await store.create('Group', { displayName: 'Evaluators', members: members(b) });
    return { store, a, b, bName: hashed('alice', 'alice@b.example') };
  }

  test.each([
    ['deactivated', (s: SqliteScimStore, id: string) => s.update('User', id, (cur) => ({ ...cur.attrs, active: false })).then(() => undefined)],
    ['deleted', (s: SqliteScimStore, id: string) => s.delete('User', id)],
  ])('a leaver (%s) takes only its own name with it; the other keeps exactly its own (issue 9)', async (_, leave) => {
    const { store, a, bName } = await twoAlices();
    try {
      expect(await scimPeople(store, SPEC())).toEqual({
        alice: { type: 'person', email: 'alice@a.example', groups: ['ml-researchers'], grants: [] },
        [bName]: { type: 'person', email: 'alice@b.example', groups: ['evaluators'], grants: [] },
      });
      await leave(store, a.id);
      expect(await scimPeople(store, SPEC())).toEqual({ [bName]: { type: 'person', email: 'alice@b.example', groups: ['evaluators'], grants: [] } });
    } finally {
      await store.close();
    }
  });

  test('a spec principal under a name a SCIM identity owns (deleted ones included) is an error naming both, not a takeover', async () => {
    const { store, a, b, bName } = await twoAlices();
    try {
      const err = await scimPeople(store, SPEC({ Alice: { type: 'service' } })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PrincipalNameConflictError);
      expect((err as PrincipalNameConflictError).conflicts).toEqual([{ principal: 'Alice', scimId: a.id, scimUserName: 'alice@a.example' }]);
      expect((err as Error).message).toMatch(/principal "Alice".*SCIM user "alice@a\.example".*rename the spec's principal/);
      // deleted: the name is still the leaver's (its IAM user may not be torn down yet)
      await store.delete('User', a.id);
      await expect(scimPeople(store, SPEC({ alice: { type: 'person' } }))).rejects.toThrow(new RegExp(`principal "alice".*SCIM user ${a.id} \\(deleted`));
      // a spec principal under a free name is fine
      expect(Object.keys(await scimPeople(store, SPEC({ carol: { type: 'person' } })))).toEqual([bName]);
      expect(b.principal).toBe(bName);
    } finally {
      await store.close();
    }
  });

  test('rows from before names were stored are named once, around the spec names of that moment', async () => {
    const file = join(dir, 'legacy.db');
    writeLegacySqlite(file, [
      { id: 'u-2', userName: 'alice@a.example', created: '2026-01-01T00:00:01.000Z' },
      { id: 'u-1', userName: 'bob@b.example', created: '2026-01-01T00:00:02.000Z' },
    ]);
    const store = new SqliteScimStore(file);
    try {
      await store.create('Group', { displayName: 'ML Research', members: [{ value: 'u-1' }, { value: 'u-2' }] });
      // the spec defines bob: the SCIM bob is named around it, as before
      const spec = SPEC({ bob: { type: 'service' } });
      const people = await scimPeople(store, spec);
      expect(Object.keys(people).sort()).toEqual(['alice', hashed('bob', 'bob@b.example')]);
      // once: the spec dropping bob later hands the SCIM bob nothing new
      expect(Object.keys(await scimPeople(store, SPEC())).sort()).toEqual(['alice', hashed('bob', 'bob@b.example')]);
    } finally {
      await store.close();
    }
  });
});
