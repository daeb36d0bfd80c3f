// One behavioural suite for every ScimStore implementation (SQLite, PostgreSQL).
import { describe, expect, test } from 'vitest';
import { ScimError } from '../../src/scim/errors.js';
import type { ScimChange, ScimStore, ScimStoreOptions } from '../../src/scim/store.js';

export type MakeStore = (opts: Required<ScimStoreOptions>) => Promise<ScimStore>;

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
        const g1 = await store.create('Group', { displayName: 'G1', members: [{ value: a.id, type: 'User' }, { value: b.id, type: 'User' }] });
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
            store.update('Group', g.id, (cur) => ({ ...cur.attrs, members: [...((cur.attrs.members as { value: string }[] | undefined) ?? []), { value: `m${i}` }] })),
          ),
        );
        const after = (await store.get('Group', g.id))!;
        expect(after.version).toBe('W/"11"');
        expect((after.attrs.members as { value: string }[]).map((m) => m.value).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`).sort());
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
  });
}
