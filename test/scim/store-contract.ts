// One behavioural suite for every ScimStore implementation (SQLite, PostgreSQL).
import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { ScimError } from '../../src/scim/errors.js';
import type { ScimChange, ScimStore, ScimStoreOptions } from '../../src/scim/store/store.js';

export type MakeStore = (opts: Required<ScimStoreOptions>) => Promise<ScimStore>;

/** The hash suffix identities.ts gives: the first `n` hex digits of sha256(lowercased userName). */
export const hashed = (base: string, userName: string, n = 8) => `${base}_${createHash('sha256').update(userName.toLowerCase()).digest('hex').slice(0, n)}`;

export function scimStoreContract(make: MakeStore): void {
  const setup = async () => {
    let t = Date.parse('2026-11-28T00:00:00.000Z');
    let n = 0;
    // Every read of the clock moves it one second; ids are deliberately not in creation order.
    const store = await make({ now: () => new Date((t += 1000)), newId: () => `id-${String(100 - ++n).padStart(3, '0')}` });
    const changes: ScimChange[] = [];
    store.onChange((c) => changes.push(c));
    return { store, changes };
  };
  const status = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      if (e instanceof ScimError) return [e.status, e.scimType];
      throw e;
    }
    return 'ok';
  };

  describe('ScimStore contract', () => {
    test('getMany returns the existing resources of the ids given, in creation order', async () => {
      const { store } = await setup();
      try {
        const a = await store.create('User', { userName: 'a@example.com' });
        const b = await store.create('User', { userName: 'b@example.com' });
        await store.create('User', { userName: 'c@example.com' });
        expect((await store.getMany('User', [b.id, 'missing', a.id])).map((u) => u.id)).toEqual([a.id, b.id]);
        expect(await store.getMany('User', [])).toEqual([]);
        expect(await store.getMany('Group', [a.id])).toEqual([]);
        expect(await store.hasUnnamedUsers()).toBe(false);
      } finally {
        await store.close();
      }
    });

    test('create, get, list in creation order, versions that change on every write', async () => {
      const { store, changes } = await setup();
      try {
        const a = await store.create('User', { userName: 'alice@example.com', active: true });
        const b = await store.create('User', { userName: 'bob@example.com' });
        expect(a.version).toBe('W/"1"');
        expect(a.created).toBe(a.lastModified);
        expect(await store.get('User', a.id)).toEqual(a);
        expect((await store.list('User')).map((r) => r.attrs.userName)).toEqual(['alice@example.com', 'bob@example.com']);
        expect(a.id > b.id).toBe(true); // order is by creation, not id
        const a2 = await store.update('User', a.id, (cur) => ({ ...cur.attrs, active: false }));
        expect(a2.version).toBe('W/"2"');
        expect(a2.created).toBe(a.created);
        expect(a2.lastModified > a.lastModified).toBe(true);
        expect((await store.get('User', a.id))!.attrs.active).toBe(false);
        expect(await store.get('Group', a.id)).toBeUndefined();
        expect(changes).toEqual([
          { type: 'User', id: a.id, action: 'create' },
          { type: 'User', id: b.id, action: 'create' },
          { type: 'User', id: a.id, action: 'update' },
        ]);
      } finally {
        await store.close();
      }
    });

    test('unique keys are case-insensitive, also on update; a refused write stores nothing', async () => {
      const { store, changes } = await setup();
      try {
        const a = await store.create('User', { userName: 'Alice@Example.com' });
        const b = await store.create('User', { userName: 'bob@example.com' });
        expect(await status(store.create('User', { userName: 'alice@example.COM' }))).toEqual([409, 'uniqueness']);
        expect(await status(store.update('User', b.id, () => ({ userName: 'ALICE@example.com' })))).toEqual([409, 'uniqueness']);
        expect((await store.get('User', b.id))!.version).toBe('W/"1"');
        expect((await store.findByKey('User', 'ALICE@EXAMPLE.COM'))!.id).toBe(a.id);
        // Users and groups are separate namespaces.
        await store.create('Group', { displayName: 'alice@example.com' });
        expect(await status(store.create('Group', { displayName: 'ALICE@example.com' }))).toEqual([409, 'uniqueness']);
        expect(await store.list('User')).toHaveLength(2);
        expect(changes.map((c) => c.action)).toEqual(['create', 'create', 'create']);
      } finally {
        await store.close();
      }
    });

    test('If-Match: the current version, * and a list pass; anything else is 412 and nothing is written', async () => {
      const { store } = await setup();
      try {
        const a = await store.create('User', { userName: 'a@x.com' });
        expect(await status(store.update('User', a.id, () => ({ userName: 'b@x.com' }), { ifMatch: 'W/"7"' }))).toEqual([412, undefined]);
        expect(await status(store.delete('User', a.id, { ifMatch: '"7"' }))).toEqual([412, undefined]);
        expect((await store.get('User', a.id))!.attrs.userName).toBe('a@x.com');
        await store.update('User', a.id, () => ({ userName: 'b@x.com' }), { ifMatch: 'W/"1"' });
        await store.update('User', a.id, () => ({ userName: 'c@x.com' }), { ifMatch: '"9", "2"' });
        await store.update('User', a.id, () => ({ userName: 'd@x.com' }), { ifMatch: '*' });
        expect((await store.get('User', a.id))!.version).toBe('W/"4"');
      } finally {
        await store.close();
      }
    });

    test('a change that throws aborts the write; unknown ids are 404', async () => {
      const { store } = await setup();
      try {
        const a = await store.create('User', { userName: 'a@x.com' });
        expect(
          await status(
            store.update('User', a.id, () => {
              throw new ScimError(400, 'invalidValue', 'no');
            }),
          ),
        ).toEqual([400, 'invalidValue']);
        expect((await store.get('User', a.id))!.version).toBe('W/"1"');
        expect(await status(store.update('User', 'nope', (c) => c.attrs))).toEqual([404, undefined]);
        expect(await status(store.delete('Group', a.id))).toEqual([404, undefined]);
      } finally {
        await store.close();
      }
    });

    test('deleting a user removes it from every group in the same write', async () => {
      const { store, changes } = await setup();
      try {
        const a = await store.create('User', { userName: 'a@x.com' });
        const b = await store.create('User', { userName: 'b@x.com' });
        const g1 = await store.create('Group', {
          displayName: 'G1',
          members: [
            { value: a.id, type: 'User' },
            { value: b.id, type: 'User' },
          ],
        });
        const g2 = await store.create('Group', { displayName: 'G2', members: [{ value: a.id, type: 'User' }] });
        const g3 = await store.create('Group', { displayName: 'G3', members: [{ value: b.id, type: 'User' }] });
        changes.length = 0;
        await store.delete('User', a.id);
        expect(await store.get('User', a.id)).toBeUndefined();
        expect((await store.get('Group', g1.id))!.attrs.members).toEqual([{ value: b.id, type: 'User' }]);
        expect((await store.get('Group', g2.id))!.attrs).toEqual({ displayName: 'G2' });
        expect((await store.get('Group', g2.id))!.version).toBe('W/"2"');
        expect((await store.get('Group', g3.id))!.version).toBe('W/"1"');
        expect(changes).toEqual(
          expect.arrayContaining([
            { type: 'User', id: a.id, action: 'delete' },
            { type: 'Group', id: g1.id, action: 'update' },
            { type: 'Group', id: g2.id, action: 'update' },
          ]),
        );
        expect(changes).toHaveLength(3);
        expect(await store.existing('User', [a.id, b.id, 'x'])).toEqual(new Set([b.id]));
      } finally {
        await store.close();
      }
    });

    test('concurrent updates of one resource serialise: none is lost', async () => {
      const { store } = await setup();
      try {
        const g = await store.create('Group', { displayName: 'G' });
        await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            store.update('Group', g.id, (cur) => ({
              ...cur.attrs,
              members: [...((cur.attrs.members as { value: string }[] | undefined) ?? []), { value: `m${i}` }],
            })),
          ),
        );
        const after = (await store.get('Group', g.id))!;
        expect(after.version).toBe('W/"11"');
        expect((after.attrs.members as { value: string }[]).map((m) => m.value).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`).sort());
      } finally {
        await store.close();
      }
    });

    test('every committed write is pending work until a reconcile covers it; a refused write is none', async () => {
      const { store } = await setup();
      try {
        // GIVEN a fresh store: nothing pending
        expect(await store.work()).toEqual({ changed: 0, reconciled: 0 });
        // WHEN users and groups are created, changed and deleted
        const a = await store.create('User', { userName: 'a@x.com', active: true });
        const g = await store.create('Group', { displayName: 'G', members: [{ value: a.id }] });
        await store.update('User', a.id, (cur) => ({ ...cur.attrs, active: false }));
        // THEN each is counted
        expect(await store.work()).toEqual({ changed: 3, reconciled: 0 });
        // AND writes that were refused or aborted count nothing (the count is in the write's transaction)
        await status(store.create('User', { userName: 'A@x.com' }));
        await status(store.update('User', a.id, () => ({ userName: 'a@x.com' }), { ifMatch: 'W/"1"' }));
        await status(
          store.update('User', a.id, () => {
            throw new ScimError(400, 'invalidValue', 'no');
          }),
        );
        await status(store.delete('Group', 'nope'));
        expect((await store.work()).changed).toBe(3);
        // WHEN a reconcile that read changed = 2 succeeds, then one that read 3, then a slower one that read 1
        await store.markReconciled(2, 'r1');
        expect(await store.work()).toEqual({ changed: 3, reconciled: 2 });
        await store.markReconciled(3, 'r2');
        await store.markReconciled(1, 'r3');
        // THEN what is covered never moves back
        expect(await store.work()).toEqual({ changed: 3, reconciled: 3 });
        // AND deleting a user in a group is one more write, pending again
        await store.delete('User', a.id);
        expect(await store.work()).toEqual({ changed: 4, reconciled: 3 });
        expect((await store.get('Group', g.id))!.attrs.members).toBeUndefined();
      } finally {
        await store.close();
      }
    });

    test('concurrent writes are each counted once', async () => {
      const { store } = await setup();
      try {
        const g = await store.create('Group', { displayName: 'G' });
        const users = await Promise.all(Array.from({ length: 8 }, (_, i) => store.create('User', { userName: `u${i}@x.com` })));
        await Promise.all([
          ...users.map((u) => store.update('User', u.id, (cur) => ({ ...cur.attrs, active: false }))),
          ...users.map((u) =>
            store.update('Group', g.id, (cur) => ({
              ...cur.attrs,
              members: [...((cur.attrs.members as { value: string }[] | undefined) ?? []), { value: u.id }],
            })),
          ),
        ]);
        expect((await store.work()).changed).toBe(1 + 8 + 16);
      } finally {
        await store.close();
      }
    });

    test('a listener that throws breaks neither the write nor other listeners', async () => {
      const { store, changes } = await setup();
      try {
        store.onChange(() => {
          throw new Error('listener bug');
        });
        const seen: string[] = [];
        const off = store.onChange((c) => seen.push(c.id));
        const a = await store.create('User', { userName: 'a@x.com' });
        off();
        await store.create('User', { userName: 'b@x.com' });
        expect(seen).toEqual([a.id]);
        expect(changes).toHaveLength(2);
      } finally {
        await store.close();
      }
    });

    test('a user gets its principal name when created and keeps it for ever: renamed, deactivated or deleted, nobody else gets it', async () => {
      const { store } = await setup();
      try {
        // GIVEN two users whose userNames make the same name
        const a = await store.create('User', { userName: 'alice@a.example', active: true });
        const b = await store.create('User', { userName: 'Alice@b.example', active: true });
        expect(a.principal).toBe('alice');
        expect(b.principal).toBe(hashed('alice', 'alice@b.example'));
        expect((await store.get('User', a.id))!.principal).toBe('alice');
        expect((await store.list('User')).map((u) => u.principal)).toEqual(['alice', b.principal]);
        expect((await store.create('Group', { displayName: 'G' })).principal).toBeUndefined();
        // WHEN the first is renamed and deactivated THEN its name stays its own
        await store.update('User', a.id, (cur) => ({ ...cur.attrs, userName: 'zed@a.example' }));
        await store.update('User', a.id, (cur) => ({ ...cur.attrs, active: false }));
        expect((await store.get('User', a.id))!.principal).toBe('alice');
        expect((await store.get('User', b.id))!.principal).toBe(b.principal);
        // WHEN it is deleted THEN its name stays reserved: a later user, even under the same
        // userName (another identity), never gets it
        await store.delete('User', a.id);
        const c = await store.create('User', { userName: 'alice@a.example' });
        const d = await store.create('User', { userName: 'alice@d.example' });
        expect(c.principal).toBe(hashed('alice', 'alice@a.example'));
        expect(d.principal).toBe(hashed('alice', 'alice@d.example'));
        expect(await store.principalOwners(['ALICE', b.principal!, 'bob'])).toEqual(
          new Map([
            ['alice', a.id],
            [b.principal, b.id],
          ]),
        );
        // AND a userName created and deleted over and over (past every hash length) gets a new
        // name every time
        const seen = new Set(['alice', b.principal, c.principal, d.principal]);
        for (let i = 0; i < 20; i++) {
          const again = await store.create('User', { userName: 'alice@e.example' });
          expect(seen.has(again.principal), again.principal).toBe(false);
          seen.add(again.principal);
          await store.delete('User', again.id);
        }
      } finally {
        await store.close();
      }
    });

    test("a new user never gets a reserved name (the spec's), case-insensitively; a refused create claims no name", async () => {
      const { store } = await setup();
      try {
        const a = await store.create('User', { userName: 'alice@x.example' }, { reservedNames: ['Alice', 'other'] });
        expect(a.principal).toBe(hashed('alice', 'alice@x.example'));
        // A duplicate userName is refused, and the name it would have had is free
        await store.create('User', { userName: 'bob@x.example' });
        expect(await status(store.create('User', { userName: 'BOB@x.example' }))).toEqual([409, 'uniqueness']);
        expect(await store.principalOwners([hashed('bob', 'bob@x.example')])).toEqual(new Map());
        // Reservation is for that creation only: the name is not claimed
        const b = await store.create('User', { userName: 'other@x.example' });
        expect(b.principal).toBe('other');
      } finally {
        await store.close();
      }
    });

    test('users with one base name created at once all get names of their own', async () => {
      const { store } = await setup();
      try {
        const made = await Promise.all(Array.from({ length: 8 }, (_, i) => store.create('User', { userName: `same@d${i}.example` })));
        const names = made.map((u) => u.principal);
        expect(new Set(names).size).toBe(8);
        expect(names).toContain('same');
        expect((await store.list('User')).map((u) => u.principal).sort()).toEqual([...names].sort());
        // Nothing left to name
        await store.assignPrincipalNames([]);
        expect((await store.list('User')).map((u) => u.principal).sort()).toEqual([...names].sort());
      } finally {
        await store.close();
      }
    });
  });
}

/** A user as stored before principal names were: no name. */
export interface LegacyUser {
  id: string;
  userName: string;
  created: string;
  active?: boolean;
}
/** A store opened on tables written by a version that did not store principal names. */
export type MakeLegacyStore = (users: LegacyUser[]) => Promise<ScimStore>;

const LEGACY: LegacyUser[] = [
  // ids deliberately not in creation order; the first alice is inactive
  { id: 'u-9', userName: 'alice@a.example', created: '2026-01-01T00:00:01.000Z', active: false },
  { id: 'u-8', userName: 'Alice@b.example', created: '2026-01-01T00:00:02.000Z' },
  { id: 'u-7', userName: 'carol@x.example', created: '2026-01-01T00:00:03.000Z' },
  { id: 'u-6', userName: 'bob@x.example', created: '2026-01-01T00:00:04.000Z' },
  { id: 'u-5', userName: 'alice@c.example', created: '2026-01-01T00:00:04.000Z' },
];
// The names the backends already hold for these users (computed, before names were stored, over
// the active users in creation order, the spec defining `carol`) are the ones they keep: the active
// alice@b keeps `alice` (a reactivated alice@a must never take it, nor her key); the inactive user
// is named last.
const LEGACY_NAMES = {
  'u-9': hashed('alice', 'alice@a.example'),
  'u-8': 'alice',
  'u-7': hashed('carol', 'carol@x.example'),
  'u-6': 'bob',
  'u-5': hashed('alice', 'alice@c.example'),
};

export function scimNameMigrationContract(make: MakeLegacyStore): void {
  const names = async (store: ScimStore) => Object.fromEntries((await store.list('User')).map((u) => [u.id, u.principal]));

  describe('ScimStore contract: users from before principal names were stored', () => {
    test('are named once, active users first in creation order, as the backends know them, around reserved names', async () => {
      const store = await make(LEGACY);
      try {
        expect(Object.values(await names(store))).toEqual([undefined, undefined, undefined, undefined, undefined]);
        expect(await store.hasUnnamedUsers()).toBe(true);
        await store.assignPrincipalNames(['Carol']);
        expect(await store.hasUnnamedUsers()).toBe(false);
        expect(await names(store)).toEqual(LEGACY_NAMES);
        // once: later calls, with other reserved names, change nothing
        await store.assignPrincipalNames(['alice', 'bob']);
        expect(await names(store)).toEqual(LEGACY_NAMES);
        expect(await store.principalOwners(['alice', 'carol'])).toEqual(new Map([['alice', 'u-8']]));
        // and a new user is named around them
        expect((await store.create('User', { userName: 'bob@new.example' })).principal).toBe(hashed('bob', 'bob@new.example'));
      } finally {
        await store.close();
      }
    });

    test('a user created first names the older ones before itself', async () => {
      const store = await make(LEGACY);
      try {
        const late = await store.create('User', { userName: 'alice@late.example' }, { reservedNames: ['carol'] });
        expect(late.principal).toBe(hashed('alice', 'alice@late.example'));
        expect(await names(store)).toEqual({ ...LEGACY_NAMES, [late.id]: late.principal });
      } finally {
        await store.close();
      }
    });
  });
}
