// The MariaDB resource model: a union discriminated by kind, a driver table that must handle every
// kind (checked by `npx tsc -p tsconfig.json`, which covers this file), and a change that does not
// fit the model refused before anything is sent to the server.
import { describe, expect, expectTypeOf, test } from 'vitest';
import type { MysqlHandlers } from '../../src/backends/mysql/context.js';
import { createMysqlBackend, mysqlHandlers } from '../../src/backends/mysql/driver.js';
import { BackendError } from '../../src/core/errors.js';
import type { Change, Resource } from '../../src/core/types.js';
import {
  MYSQL_KINDS,
  desiredAccount,
  mysqlAccountResource,
  mysqlChange,
  mysqlGrantPrivileges,
  mysqlGrantResource,
  mysqlMembershipResource,
  type MysqlAccountAttrs,
  type MysqlGrantAttrs,
  type MysqlKind,
  type MysqlResource,
} from '../../src/model/mysql.js';

const acct = mysqlAccountResource('db', 'alice', desiredAccount('alice', '%'));
const create = (after: unknown, kind = 'account'): Change => ({
  address: 'db:account/alice',
  backend: 'db',
  kind,
  action: 'create',
  before: null,
  after: after as Resource,
  drift: false,
  reason: 'new in spec',
});

describe('types', () => {
  test('the driver has a handler for every kind, and a table missing one does not compile', () => {
    expectTypeOf<keyof typeof mysqlHandlers>().toEqualTypeOf<MysqlKind>();
    const { password: _password, ...withoutPassword } = mysqlHandlers;
    // @ts-expect-error a handler table without `password` is not a MysqlHandlers
    const incomplete: MysqlHandlers = withoutPassword;
    expect(Object.keys(incomplete).sort()).toEqual(MYSQL_KINDS.filter((k) => k !== 'password').sort());
    expect(Object.keys(mysqlHandlers).sort()).toEqual([...MYSQL_KINDS].sort());
  });

  test('each kind carries its own attributes, and every resource is a core Resource', () => {
    expectTypeOf<Extract<MysqlResource, { kind: 'account' }>['attrs']>().toEqualTypeOf<MysqlAccountAttrs>();
    expectTypeOf<Extract<MysqlResource, { kind: 'grant' }>['attrs']>().toEqualTypeOf<MysqlGrantAttrs>();
    expectTypeOf<MysqlResource>().toExtend<Resource>();
    // @ts-expect-error a grant's level is one of the access levels
    mysqlGrantResource('db', { role: 'r', database: 'd', level: 'owner', tables: '*', privileges: mysqlGrantPrivileges('read', '*') });
  });
});

describe('mysqlChange: a change read from a plan file is checked before it is executed', () => {
  test('a change of the model comes back as it is', () => {
    const c = create(acct);
    expect(mysqlChange(c)).toBe(c);
  });

  test.each([
    [
      'an unknown kind',
      create({ ...acct, kind: 'table' }, 'table'),
      'unknown-kind',
      /unknown resource kind "table" \(known: role, account, membership, grant, pattern-grant, password\)/,
    ],
    ['attributes of the wrong type', create({ ...acct, attrs: { ...acct.attrs, locked: 'no' } }), 'malformed-change', /after\.attrs\.locked: .*boolean/],
    ['an attribute the kind does not have', create({ ...acct, attrs: { ...acct.attrs, superuser: true } }), 'malformed-change', /after\.attrs: .*superuser/],
    ['a resource of another kind', create(mysqlMembershipResource('db', 'g', 'alice')), 'malformed-change', /after is a "membership", not a account/],
    ['a create without its resource', create(null), 'malformed-change', /a create needs its after resource/],
  ])('%s is refused with a BackendError naming the address, and nothing is sent', async (_label, change, code, message) => {
    expect(() => mysqlChange(change)).toThrow(BackendError);
    expect(() => mysqlChange(change)).toThrow(message);
    // a driver pointed at no server at all: the refusal comes before any connection
    const b = createMysqlBackend({ name: 'db', url: 'mysql://nobody@127.0.0.1:1', deadlines: { connectMs: 50, requestMs: 50 } });
    const e = await b.execute(change).catch((x: unknown) => x);
    expect(e).toMatchObject({ code, address: 'db:account/alice' });
    expect(b.stats().requests).toBe(0);
    await b.close();
  });
});
