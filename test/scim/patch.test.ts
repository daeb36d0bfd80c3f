import { describe, expect, test } from 'vitest';
import { MAX_MEMBERS, MAX_PATCH_OPERATIONS, MAX_VALUES } from '../../src/scim/limits.js';
import { applyPatch, applyPatchInSlices, parsePatchRequest, type PatchOperation } from '../../src/scim/patch.js';
import { checkPatched, ENTERPRISE_SCHEMA, PATCH_SCHEMA, type JsonObject, type ResourceType } from '../../src/scim/schemas.js';

const user = (): JsonObject => ({
  userName: 'alice@example.com',
  name: { givenName: 'Alice', familyName: 'Liddell' },
  active: true,
  emails: [{ value: 'alice@example.com', type: 'work', primary: true }],
});
const group = (): JsonObject => ({
  displayName: 'ML Research',
  members: [
    { value: 'u1', type: 'User' },
    { value: 'u2', type: 'User' },
  ],
});

const body = (...Operations: unknown[]) => ({ schemas: [PATCH_SCHEMA], Operations });
/** Parse, apply and re-check, as the server does. */
function patch(type: ResourceType, attrs: JsonObject, ...ops: unknown[]): JsonObject {
  return checkPatched(type, applyPatch(type, attrs, parsePatchRequest(body(...ops)), 'the-id'));
}

describe('users', () => {
  test('e-mails removed by [value eq …] fold case, as the filter does', () => {
    expect(patch('User', user(), { op: 'remove', path: 'emails[value eq "ALICE@EXAMPLE.COM"]' }).emails).toBeUndefined();
    expect(patch('User', user(), { op: 'remove', path: 'emails', value: [{ value: 'Alice@Example.com' }] }).emails).toBeUndefined();
  });

  test(`a user's e-mails stop at ${MAX_VALUES}, one add at a time or all at once`, () => {
    const add = (i: number) => ({ op: 'add', path: 'emails', value: [{ value: `e${i}@example.com` }] });
    expect((patch('User', user(), ...Array.from({ length: MAX_VALUES - 1 }, (_, i) => add(i))).emails as unknown[]).length).toBe(MAX_VALUES);
    expect(() => patch('User', user(), ...Array.from({ length: MAX_VALUES }, (_, i) => add(i)))).toThrow(
      expect.objectContaining({ status: 400, scimType: 'invalidValue' }),
    );
    expect(() =>
      patch(
        'User',
        user(),
        { op: 'add', path: 'emails[type eq "home"].value', value: 'h@example.com' },
        ...Array.from({ length: MAX_VALUES - 1 }, (_, i) => add(i)),
      ),
    ).toThrow(/at most 100/);
  });

  test.each<[string, unknown[], (u: JsonObject) => void]>([
    ['Okta deactivate: no-path replace with {active:false}', [{ op: 'replace', value: { active: false } }], (u) => expect(u.active).toBe(false)],
    ['Okta reactivate', [{ op: 'replace', value: { active: true } }], (u) => expect(u.active).toBe(true)],
    ['Entra: Replace active "False"', [{ op: 'Replace', path: 'active', value: 'False' }], (u) => expect(u.active).toBe(false)],
    ['Entra: "True" in a value object', [{ op: 'Replace', value: { active: 'True' } }], (u) => expect(u.active).toBe(true)],
    [
      'Entra: dotted keys in a value object',
      [{ op: 'Add', value: { 'name.givenName': 'Alicia', 'name.familyName': 'L' } }],
      (u) => expect(u.name).toEqual({ givenName: 'Alicia', familyName: 'L' }),
    ],
    [
      'name.givenName path',
      [{ op: 'replace', path: 'name.givenName', value: 'Al' }],
      (u) => expect(u.name).toEqual({ givenName: 'Al', familyName: 'Liddell' }),
    ],
    [
      'complex replace merges sub-attributes',
      [{ op: 'replace', path: 'name', value: { formatted: 'Alice L' } }],
      (u) => expect(u.name).toEqual({ givenName: 'Alice', familyName: 'Liddell', formatted: 'Alice L' }),
    ],
    [
      'emails[type eq "work"].value replaces the work email',
      [{ op: 'replace', path: 'emails[type eq "work"].value', value: 'a2@example.com' }],
      (u) => expect(u.emails).toEqual([{ value: 'a2@example.com', type: 'work', primary: true }]),
    ],
    [
      'Entra adds emails[type eq "home"].value when there is none',
      [{ op: 'Add', path: 'emails[type eq "home"].value', value: 'a@home.example' }],
      (u) =>
        expect(u.emails).toEqual([
          { value: 'alice@example.com', type: 'work', primary: true },
          { type: 'home', value: 'a@home.example' },
        ]),
    ],
    ['remove an email by filter', [{ op: 'remove', path: 'emails[type eq "work"]' }], (u) => expect(u.emails).toBeUndefined()],
    ['remove a single attribute', [{ op: 'remove', path: 'name.familyName' }], (u) => expect(u.name).toEqual({ givenName: 'Alice' })],
    [
      'add to a multi-valued attribute appends',
      [{ op: 'add', path: 'emails', value: [{ value: 'b@example.com', type: 'other' }] }],
      (u) => expect(u.emails).toHaveLength(2),
    ],
    [
      'add of an existing email does not duplicate it',
      [{ op: 'add', path: 'emails', value: [{ value: 'ALICE@example.com', display: 'A' }] }],
      (u) => expect(u.emails).toEqual([{ value: 'ALICE@example.com', type: 'work', primary: true, display: 'A' }]),
    ],
    [
      'replace a multi-valued attribute as a whole',
      [{ op: 'replace', path: 'emails', value: [{ value: 'c@example.com' }] }],
      (u) => expect(u.emails).toEqual([{ value: 'c@example.com' }]),
    ],
    [
      'Entra: enterprise attribute by URN path',
      [{ op: 'Add', path: `${ENTERPRISE_SCHEMA}:department`, value: 'ML' }],
      (u) => expect(u[ENTERPRISE_SCHEMA]).toEqual({ department: 'ML' }),
    ],
    [
      'enterprise extension object in a value object',
      [{ op: 'replace', value: { [ENTERPRISE_SCHEMA]: { employeeNumber: 7 } } }],
      (u) => expect(u[ENTERPRISE_SCHEMA]).toEqual({ employeeNumber: '7' }),
    ],
    [
      'Entra sends manager as a bare id',
      [{ op: 'Add', path: `${ENTERPRISE_SCHEMA}:manager`, value: 'm-7' }],
      (u) => expect(u[ENTERPRISE_SCHEMA]).toEqual({ manager: { value: 'm-7' } }),
    ],
    [
      'Entra: emails[type eq "work" and primary eq true].value on a user without one',
      [{ op: 'Replace', path: 'emails[type eq "other" and primary eq true].value', value: 'o@example.com' }],
      (u) =>
        expect(u.emails).toEqual([
          { value: 'alice@example.com', type: 'work', primary: true },
          { type: 'other', primary: true, value: 'o@example.com' },
        ]),
    ],
    [
      'Entra: addresses[type eq "work"].locality',
      [{ op: 'Add', path: 'addresses[type eq "work"].locality', value: 'Redmond' }],
      (u) => expect(u.addresses).toEqual([{ type: 'work', locality: 'Redmond' }]),
    ],
    [
      'URN-qualified key in a value object',
      [{ op: 'replace', value: { [`${ENTERPRISE_SCHEMA}:manager.value`]: 'm1' } }],
      (u) => expect(u[ENTERPRISE_SCHEMA]).toEqual({ manager: { value: 'm1' } }),
    ],
    [
      'an unknown extension in a value object is ignored',
      [{ op: 'replace', value: { 'urn:okta:custom:1.0:User:x': 'y', displayName: 'A' } }],
      (u) => expect(u.displayName).toBe('A'),
    ],
    [
      'Okta repeats the id and sends a password: both fine, neither stored',
      [{ op: 'replace', value: { id: 'the-id', password: 'hunter2', displayName: 'A' } }],
      (u) => expect(u).not.toHaveProperty('password'),
    ],
    [
      'attribute names are case-insensitive',
      [{ op: 'replace', value: { USERNAME: 'a@example.com', DisplayName: 'A' } }],
      (u) => expect([u.userName, u.displayName]).toEqual(['a@example.com', 'A']),
    ],
    [
      'Entra: path is the enterprise extension URN, value an object',
      [{ op: 'Add', path: ENTERPRISE_SCHEMA, value: { department: 'ML', manager: 'm-7' } }],
      (u) => expect(u[ENTERPRISE_SCHEMA]).toEqual({ department: 'ML', manager: { value: 'm-7' } }),
    ],
    [
      'the extension URN as a path, in any case, replaces the attributes given',
      [
        { op: 'add', path: ENTERPRISE_SCHEMA, value: { department: 'ML', costCenter: 'C1' } },
        { op: 'replace', path: ENTERPRISE_SCHEMA.toUpperCase(), value: { department: 'Ops' } },
      ],
      (u) => expect(u[ENTERPRISE_SCHEMA]).toEqual({ department: 'Ops', costCenter: 'C1' }),
    ],
    [
      'remove with the extension URN as the path drops the extension',
      [
        { op: 'add', path: ENTERPRISE_SCHEMA, value: { department: 'ML' } },
        { op: 'remove', path: ENTERPRISE_SCHEMA },
      ],
      (u) => expect(u).not.toHaveProperty(ENTERPRISE_SCHEMA),
    ],
    ['replace with null unassigns', [{ op: 'replace', path: 'name', value: null }], (u) => expect(u.name).toBeUndefined()],
    ['remove on a filter that matches nothing changes nothing', [{ op: 'remove', path: 'emails[type eq "none"]' }], (u) => expect(u.emails).toHaveLength(1)],
  ])('%s', (_what, ops, check) => {
    const before = user();
    check(patch('User', before, ...ops));
    expect(before).toEqual(user()); // the input is never modified
  });
});

describe('groups', () => {
  test.each<[string, unknown[], string[]]>([
    ['Okta add member', [{ op: 'add', path: 'members', value: [{ value: 'u3', display: 'c' }] }], ['u1', 'u2', 'u3']],
    ['Okta remove member by filter', [{ op: 'remove', path: 'members[value eq "u1"]' }], ['u2']],
    ['Entra Remove members by path and value list', [{ op: 'Remove', path: 'members', value: [{ value: 'u2' }] }], ['u1']],
    ['Entra Add members twice is idempotent', [{ op: 'Add', path: 'members', value: [{ value: 'u1' }, { value: 'u3' }] }], ['u1', 'u2', 'u3']],
    ['replace members', [{ op: 'replace', path: 'members', value: [{ value: 'u9' }] }], ['u9']],
    ['remove all members', [{ op: 'remove', path: 'members' }], []],
    ['no-path add of members', [{ op: 'add', value: { members: [{ value: 'u4' }] } }], ['u1', 'u2', 'u4']],
  ])('%s', (_what, ops, want) => {
    const g = patch('Group', group(), ...ops);
    expect(((g.members as JsonObject[] | undefined) ?? []).map((m) => m.value)).toEqual(want);
  });

  // Removal by `[value eq …]` and by value list goes through an index: the same entries as a scan.
  test.each<[string, unknown[], string[]]>([
    ['member ids are caseExact: members[value eq "U1"] removes nothing', [{ op: 'remove', path: 'members[value eq "U1"]' }], ['u1', 'u2']],
    ['and a value list in another case neither', [{ op: 'Remove', path: 'members', value: [{ value: 'U2' }] }], ['u1', 'u2']],
    [
      'remove, add back, remove again',
      [
        { op: 'remove', path: 'members[value eq "u1"]' },
        { op: 'add', path: 'members', value: [{ value: 'u1' }] },
        { op: 'remove', path: 'members[value eq "u2"]' },
      ],
      ['u1'],
    ],
    ['remove one not there', [{ op: 'remove', path: 'members[value eq "u9"]' }], ['u1', 'u2']],
    [
      'replace, then add',
      [
        { op: 'replace', path: 'members', value: [{ value: 'u5' }] },
        { op: 'add', path: 'members', value: [{ value: 'u6' }, { value: 'u5' }] },
      ],
      ['u5', 'u6'],
    ],
    ['a filter the index cannot answer', [{ op: 'remove', path: 'members[value eq "u1" or value eq "u2"]' }], []],
  ])('%s', (_what, ops, want) => {
    const g = patch('Group', group(), ...ops);
    expect(((g.members as JsonObject[] | undefined) ?? []).map((m) => m.value)).toEqual(want);
  });

  test(`a group holds at most ${MAX_MEMBERS} members`, () => {
    const many = Array.from({ length: MAX_MEMBERS + 1 }, (_, i) => ({ value: `m${i}` }));
    expect(() => patch('Group', group(), { op: 'add', path: 'members', value: many })).toThrow(
      expect.objectContaining({ status: 400, scimType: 'invalidValue' }),
    );
    expect((patch('Group', group(), { op: 'replace', path: 'members', value: many.slice(1) }).members as unknown[]).length).toBe(MAX_MEMBERS);
  });

  test('Okta renames with a no-path replace that repeats the id', () => {
    expect(patch('Group', group(), { op: 'replace', value: { id: 'the-id', displayName: 'ML' } }).displayName).toBe('ML');
  });
});

describe('invalid PATCH requests are 400 with a scimType', () => {
  const cases: [string, unknown, string][] = [
    ['no schemas', { Operations: [{ op: 'add', path: 'title', value: 'x' }] }, 'invalidSyntax'],
    ['wrong schemas', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], Operations: [{ op: 'add', path: 'title', value: 'x' }] }, 'invalidSyntax'],
    ['no operations', body(), 'invalidSyntax'],
    ['unknown op', body({ op: 'move', path: 'title', value: 'x' }), 'invalidSyntax'],
    ['add without value', body({ op: 'add', path: 'title' }), 'invalidValue'],
    ['remove without path', body({ op: 'remove' }), 'noTarget'],
    ['no-path replace with a string', body({ op: 'replace', value: 'x' }), 'invalidValue'],
    ['unknown attribute', body({ op: 'replace', path: 'nosuch', value: 'x' }), 'invalidPath'],
    ['unknown attribute in a value object', body({ op: 'replace', value: { nosuch: 'x' } }), 'invalidPath'],
    ['id', body({ op: 'replace', path: 'id', value: 'x' }), 'mutability'],
    ['a different id in a value object', body({ op: 'replace', value: { id: 'other' } }), 'mutability'],
    ['meta', body({ op: 'replace', path: 'meta.created', value: '2020-01-01T00:00:00Z' }), 'mutability'],
    ['groups (read-only)', body({ op: 'add', path: 'groups', value: [{ value: 'g' }] }), 'mutability'],
    ['active "maybe"', body({ op: 'replace', path: 'active', value: 'maybe' }), 'invalidValue'],
    ['replace on a filter that matches nothing (no eq terms)', body({ op: 'replace', path: 'emails[value co "zzz"].type', value: 'home' }), 'noTarget'],
    ['remove userName (required)', body({ op: 'remove', path: 'userName' }), 'invalidValue'],
    ['a list for a single-valued attribute', body({ op: 'replace', path: 'displayName', value: ['a', 'b'] }), 'invalidValue'],
    ['an unknown sub-attribute in a value', body({ op: 'add', path: 'emails', value: [{ value: 'a@b.c', nosuch: 1 }] }), 'invalidSyntax'],
    ['the extension URN as a path with a string', body({ op: 'add', path: ENTERPRISE_SCHEMA, value: 'ML' }), 'invalidValue'],
    ['the extension URN as a path with an unknown attribute', body({ op: 'add', path: ENTERPRISE_SCHEMA, value: { shoeSize: 44 } }), 'invalidPath'],
  ];
  test.each(cases)('%s', (_what, b, scimType) => {
    let err: { status?: number; scimType?: string } | undefined;
    try {
      checkPatched('User', applyPatch('User', user(), parsePatchRequest(b), 'the-id'));
    } catch (e) {
      err = e as typeof err;
    }
    expect(err).toMatchObject({ status: 400, scimType });
  });
});

test('the no-path form and the extension URN as a path give the same user', () => {
  const value = { department: 'ML', employeeNumber: 7, manager: { value: 'm-1' } };
  const byKey = patch('User', user(), { op: 'add', value: { [ENTERPRISE_SCHEMA]: value } });
  const byPath = patch('User', user(), { op: 'add', path: ENTERPRISE_SCHEMA, value });
  expect(byPath).toEqual(byKey);
});

test('a path naming an extension in a filter says so, not that a schema is unknown', () => {
  expect(() => patch('User', user(), { op: 'replace', path: `${ENTERPRISE_SCHEMA}[value eq "x"]`, value: {} })).toThrow(
    /names the extension schema, not one of its attributes/,
  );
});

test(`more than ${MAX_PATCH_OPERATIONS} operations are 400 tooMany`, () => {
  const ops = (n: number) => Array.from({ length: n }, () => ({ op: 'replace', path: 'title', value: 'x' }));
  expect(parsePatchRequest(body(...ops(MAX_PATCH_OPERATIONS)))).toHaveLength(MAX_PATCH_OPERATIONS);
  expect(() => parsePatchRequest(body(...ops(MAX_PATCH_OPERATIONS + 1)))).toThrow(expect.objectContaining({ status: 400, scimType: 'tooMany' }));
});

test('a long PATCH gives the event loop back as it goes, with the same result', async () => {
  // GIVEN work queued behind the PATCH
  let ran = 0;
  let stop = false;
  const other = () => {
    ran++;
    if (!stop) setImmediate(other);
  };
  setImmediate(other);
  const ops = parsePatchRequest(
    body(...Array.from({ length: 200 }, (_, i) => ({ op: 'add', path: 'emails', value: [{ value: `e${i % 50}@example.com`, display: `${i}` }] }))),
  );
  // WHEN the PATCH runs in slices of (at most) 0 ms
  const sliced = await applyPatchInSlices('User', user(), ops, 'the-id', 0);
  stop = true;
  // THEN the other work ran meanwhile, and the result is what applying it at once gives
  expect(ran).toBeGreaterThan(0);
  expect(sliced).toEqual(applyPatch('User', user(), ops, 'the-id'));
});

test('operations apply in order and all-or-nothing', () => {
  const ops: PatchOperation[] = parsePatchRequest(body({ op: 'replace', path: 'displayName', value: 'A' }, { op: 'replace', path: 'id', value: 'x' }));
  const before = user();
  expect(() => applyPatch('User', before, ops, 'the-id')).toThrow();
  expect(before).toEqual(user());
});
