// Reads of roles' markers shared by changes running at once (ownership.ts): a change is answered
// only by a read sent after it asked, so sharing never stands in for the check before a write.
import { describe, expect, test } from 'vitest';
import type { Connections, Query } from '../../src/backends/postgres/connection.js';
import { Ownership } from '../../src/backends/postgres/ownership.js';

/** A server whose role reads wait until the test answers them; each read's roles are recorded. */
function slowServer() {
  const reads: { roles: string[]; answer: (version: number) => void; fail: (e: Error) => void }[] = [];
  const q: Query = (_text, values) =>
    new Promise((resolve, reject) => {
      const roles = (values as [string[]])[0];
      reads.push({
        roles,
        answer: (version) =>
          resolve({
            rows: roles.map((rolname) => ({
              rolname,
              oid: '1',
              rolcanlogin: true,
              comment: JSON.stringify({ datagrant: 'managed', credential: `read ${version}` }),
            })),
          } as never),
        fail: reject,
      });
    });
  const conn: Pick<Connections, 'admin'> = { admin: (fn) => fn(q) };
  return { reads, owner: new Ownership({ name: 'wh' }, conn) };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('shared role reads', () => {
  test('asks made while a read is on its way are answered together by the next read, never by the earlier one', async () => {
    // GIVEN a read of alice on its way
    const { reads, owner } = slowServer();
    const first = owner.roles(['alice']);
    await tick();
    expect(reads.map((r) => r.roles)).toEqual([['alice']]);
    // WHEN two more changes ask meanwhile, one of them for alice too
    const second = owner.roles(['alice', 'readers']);
    const third = owner.roles(['bob']);
    await tick();
    expect(reads).toHaveLength(1);
    reads[0]!.answer(1);
    // THEN the first gets the first read; the others wait for one read of all they asked for
    expect((await first).get('alice')?.comment?.credential).toBe('read 1');
    await tick();
    expect(reads.map((r) => r.roles)).toEqual([['alice'], ['alice', 'readers', 'bob']]);
    reads[1]!.answer(2);
    expect((await second).get('alice')?.comment?.credential).toBe('read 2');
    expect([...(await third).keys()]).toContain('bob');
  });

  test('a failed read fails every change that waited for it, and the next ask reads again', async () => {
    const { reads, owner } = slowServer();
    const first = owner.roles(['alice']);
    await tick();
    const waiting = [owner.roles(['bob']), owner.roles(['carol'])];
    reads[0]!.answer(1);
    await first;
    await tick();
    reads[1]!.fail(new Error('Connection terminated unexpectedly'));
    for (const w of waiting) await expect(w).rejects.toThrow(/Connection terminated/);
    const again = owner.roles(['bob']);
    await tick();
    expect(reads).toHaveLength(3);
    reads[2]!.answer(3);
    expect((await again).get('bob')?.comment?.credential).toBe('read 3');
  });
});
