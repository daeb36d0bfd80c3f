// The PostgreSQL resource model: a union discriminated by kind, a driver table that must handle
// every kind (checked by `npx tsc -p tsconfig.json`, which covers this file), and a change that
// does not fit the model refused before anything is sent to the server.
import { describe, expect, expectTypeOf, test } from 'vitest';
import type { PgHandlers } from '../../src/backends/postgres/context.js';
import { createPostgresBackend, pgHandlers } from '../../src/backends/postgres/driver.js';
import { BackendError } from '../../src/core/errors.js';
import type { Change, Resource } from '../../src/core/types.js';
import {
  PG_KINDS,
  grantPrivileges,
  grantResource,
  membershipResource,
  pgChange,
  roleResource,
  type GrantAttrs,
  type PgKind,
  type PgResource,
  type RoleAttrs,
} from '../../src/model/postgres.js';

const role = roleResource('wh', 'alice', { login: true, validUntil: null, flags: [] });
const create = (after: unknown, kind = 'role'): Change => ({
  address: 'wh:role/alice',
  backend: 'wh',
  kind,
  action: 'create',
  before: null,
  after: after as Resource,
  drift: false,
  reason: 'new in spec',
});

describe('types', () => {
  test('the driver has a handler for every kind, and a table missing one does not compile', () => {
    expectTypeOf<keyof typeof pgHandlers>().toEqualTypeOf<PgKind>();
    const { password: _password, ...withoutPassword } = pgHandlers;
    // @ts-expect-error a handler table without `password` is not a PgHandlers
    const incomplete: PgHandlers = withoutPassword;
    expect(Object.keys(incomplete).sort()).toEqual(PG_KINDS.filter((k) => k !== 'password').sort());
    expect(Object.keys(pgHandlers).sort()).toEqual([...PG_KINDS].sort());
  });

  test('each kind carries its own attributes, and every resource is a core Resource', () => {
    expectTypeOf<Extract<PgResource, { kind: 'role' }>['attrs']>().toEqualTypeOf<RoleAttrs>();
    expectTypeOf<Extract<PgResource, { kind: 'grant' }>['attrs']>().toEqualTypeOf<GrantAttrs>();
    expectTypeOf<PgResource>().toExtend<Resource>();
    expectTypeOf(membershipResource('wh', 'g', 'm').attrs).toEqualTypeOf<{ group: string; member: string }>();
    // @ts-expect-error a role's login is a boolean
    roleResource('wh', 'alice', { login: 'yes', validUntil: null, flags: [] });
    // @ts-expect-error a grant's level is one of the access levels
    grantResource('wh', { role: 'r', database: 'd', schema: 's', level: 'owner', tables: '*', privileges: grantPrivileges('read', '*') });
  });
});

describe('pgChange: a change read from a plan file is checked before it is executed', () => {
  test('a change of the model comes back as it is', () => {
    const c = create(role);
    expect(pgChange(c)).toBe(c);
    const g = grantResource('wh', { role: 'r', database: 'd', schema: 's', level: 'write', tables: ['t'], privileges: grantPrivileges('write', ['t']) });
    expect(pgChange({ ...create(g, 'grant'), address: g.address })).toMatchObject({ kind: 'grant' });
  });

  test.each([
    [
      'an unknown kind',
      create({ ...role, kind: 'table' }, 'table'),
      'unknown-kind',
      /unknown resource kind "table" \(known: role, membership, connect, grant, password, session-login\)/,
    ],
    [
      'attributes of the wrong type',
      create({ ...role, attrs: { login: 'yes', validUntil: null, flags: [] } }),
      'malformed-change',
      /after\.attrs\.login: .*boolean/,
    ],
    ['a missing attribute', create({ ...role, attrs: { login: true, flags: [] } }), 'malformed-change', /after\.attrs\.validUntil/],
    ['an attribute the kind does not have', create({ ...role, attrs: { ...role.attrs, superuser: true } }), 'malformed-change', /after\.attrs: .*superuser/],
    ['a resource of another kind', create(membershipResource('wh', 'g', 'alice')), 'malformed-change', /after is a "membership", not a role/],
    ['a create without its resource', create(null), 'malformed-change', /a create needs its after resource/],
    ['a delete without its resource', { ...create(null), action: 'delete' }, 'malformed-change', /a delete needs its before resource/],
    ['a resource without a name', create({ ...role, name: '' }), 'malformed-change', /after\.name must be a non-empty string/],
  ] as const)('%s is refused, naming the address', (_what, change, code, message) => {
    const err = (() => {
      try {
        pgChange(change);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(BackendError);
    expect(err).toMatchObject({ code, address: 'wh:role/alice', retryable: false, backend: 'wh' });
    expect((err as Error).message).toMatch(/^wh: wh:role\/alice: the change cannot be applied: /);
    expect((err as Error).message).toMatch(message);
  });

  test('the driver refuses a malformed change without sending anything', async () => {
    // Nothing listens on port 1: a statement sent would fail differently, and count as a request.
    const backend = createPostgresBackend({ name: 'wh', url: 'postgres://nobody@127.0.0.1:1/none' });
    try {
      const err = await backend.execute(create({ ...role, attrs: { login: 1, validUntil: null, flags: [] } })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err).toMatchObject({ code: 'malformed-change', address: 'wh:role/alice' });
      expect(backend.stats().requests).toBe(0);
    } finally {
      await backend.close();
    }
  });
});
