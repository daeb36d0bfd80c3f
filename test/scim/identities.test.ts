import { describe, expect, test } from 'vitest';
import { principalBaseName, scimPrincipals } from '../../src/scim/identities.js';
import type { ScimRecord } from '../../src/scim/store.js';
import { NAME_RE } from '../../src/spec/schema.js';

let seq = 0;
const user = (userName: string, extra: Record<string, unknown> = {}, created = `2026-01-01T00:00:${String(++seq).padStart(2, '0')}.000Z`): ScimRecord => ({
  type: 'User',
  id: `u-${userName}`,
  attrs: { userName, active: true, ...extra } as ScimRecord['attrs'],
  created,
  lastModified: created,
  version: 'W/"1"',
});
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
  const groups = [group('ML Research', [alice, bob, carol]), group('Data Eng', [alice], [{ value: 'g-nested', type: 'Group' }]), group('Unmapped', [bob]), group('ml research ops', [dave])];
  expect(scimPrincipals([alice, bob, carol, dave], groups, { 'ml research': 'ml-researchers', 'Data Eng': 'data-engineers' })).toEqual({
    alice: { type: 'person', email: 'alice@corp.example', groups: ['data-engineers', 'ml-researchers'], grants: [] },
    bob: { type: 'person', email: 'bob@example.com', groups: ['ml-researchers'], grants: [] },
    dave: { type: 'person', groups: [], grants: [] },
  });
});

test('collisions: the older user keeps the name; later ones get a stable hash suffix; spec names are never taken', () => {
  const a1 = user('alice@example.com');
  const a2 = user('Alice@other.example');
  const a3 = user('ALICE@third.example');
  const out = scimPrincipals([a3, a2, a1], [], {});
  const names = Object.keys(out).sort();
  expect(names).toHaveLength(3);
  expect(names[0]).toBe('alice');
  for (const n of names.slice(1)) expect(n).toMatch(/^alice_[0-9a-f]{8}$/);
  // The same input in any order gives the same names.
  expect(scimPrincipals([a1, a3, a2], [], {})).toEqual(out);
  // Removing a later user never renames the others.
  const nameOf = (o: typeof out, email: string) => Object.keys(o).find((n) => o[n]!.email === email);
  const without3 = scimPrincipals([a1, a2], [], {});
  expect(nameOf(without3, 'alice@example.com')).toBe('alice');
  expect(nameOf(without3, 'Alice@other.example')).toBe(nameOf(out, 'Alice@other.example'));
  // A name the spec defines is left to the spec.
  const taken = scimPrincipals([a1], [], {}, { taken: ['alice'] });
  expect(Object.keys(taken)).toEqual([expect.stringMatching(/^alice_[0-9a-f]{8}$/)]);
});

test('dangling members and members of unknown type are ignored', () => {
  const a = user('a@example.com');
  const g = group('ML Research', [a], [{ value: 'u-gone' }, { value: 5 }]);
  expect(scimPrincipals([a], [g], { 'ML Research': 'ml' })).toEqual({ a: { type: 'person', email: 'a@example.com', groups: ['ml'], grants: [] } });
});

test('the output merges into a spec that passes the spec schema', async () => {
  const { specSchema } = await import('../../src/spec/schema.js');
  const users = ['Zoë.Ünal@example.com', 'o\'brien@example.com', 'pg_x@example.com', 'x@y', '12345', `${'l'.repeat(70)}@example.com`].map((u) => user(u));
  const principals = scimPrincipals(users, [group('ML', users)], { ML: 'ml-researchers' });
  expect(Object.keys(principals)).toHaveLength(6);
  const parsed = specSchema.safeParse({
    version: 1,
    backends: { aws: { type: 'aws' } },
    groups: { 'ml-researchers': { grants: [] } },
    principals,
  });
  expect(parsed.error?.issues ?? []).toEqual([]);
});
