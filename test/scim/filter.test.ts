import { describe, expect, test } from 'vitest';
import { ScimError } from '../../src/scim/errors.js';
import { absentAttributes, matches, parseFilter, parsePatchPath, uniqueKeyLookup } from '../../src/scim/filter.js';
import { ENTERPRISE_SCHEMA, type JsonObject } from '../../src/scim/schemas.js';

const alice: JsonObject = {
  schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
  id: '2819c223-7f76-453a-919d-413861904646',
  externalId: 'Ext-1',
  userName: 'Alice@Example.com',
  displayName: 'Alice Liddell',
  name: { givenName: 'Alice', familyName: 'Liddell' },
  active: true,
  emails: [
    { value: 'alice@example.com', type: 'work', primary: true },
    { value: 'al@home.example', type: 'home' },
  ],
  [ENTERPRISE_SCHEMA]: { department: 'Research', employeeNumber: '42' },
  meta: { resourceType: 'User', created: '2026-01-01T00:00:00.000Z', lastModified: '2026-06-01T12:00:00.000Z', version: 'W/"3"' },
};
const group: JsonObject = {
  id: 'g1',
  displayName: 'ML Research',
  members: [
    { value: 'u1', type: 'User' },
    { value: 'u2', type: 'User' },
  ],
};

describe('filters that match alice', () => {
  test.each([
    'userName eq "alice@example.com"',
    'USERNAME EQ "ALICE@EXAMPLE.COM"',
    'userName sw "ali"',
    'userName ew "EXAMPLE.com"',
    'userName co "@exam"',
    'userName ne "bob@example.com"',
    'externalId eq "Ext-1"',
    'emails.value eq "al@home.example"',
    'emails eq "alice@example.com"',
    'emails[type eq "work"]',
    'emails[type eq "work" and value co "example.com"]',
    'emails[type eq "home" and primary eq true] or displayName pr',
    'displayName eq "alice liddell"',
    'name.givenName eq "Alice"',
    'active eq true',
    'active ne false',
    'id eq "2819c223-7f76-453a-919d-413861904646"',
    'meta.lastModified gt "2026-05-01T00:00:00Z"',
    'meta.lastModified ge "2026-06-01T12:00:00Z"',
    'meta.created lt "2026-01-02T00:00:00+01:00"',
    'title pr or userName pr',
    'not (title pr)',
    'not(userName eq "bob")',
    '(userName eq "x" or userName sw "A") and active eq true',
    `${ENTERPRISE_SCHEMA}:department eq "research"`,
    'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "alice@example.com"',
    'userName eq "al\\u0069ce@example.com"',
    'userName gt "aaa" and userName lt "b"',
    'emails[type eq "work"].value eq "alice@example.com"',
    'emails[TYPE eq "home"].VALUE ew "home.example"',
    'emails[type eq "work"].primary pr',
    'emails[type eq "work"].value eq "x" or emails[type eq "home"].value eq "al@home.example"',
    'emails[type eq "work"].value eq "alice@example.com" and userName pr',
  ])('%s', (f) => {
    expect(matches(parseFilter(f, 'User'), alice)).toBe(true);
  });
});

describe('filters that do not match alice', () => {
  test.each([
    'userName eq "alice"',
    'externalId eq "ext-1"', // externalId is caseExact
    'id eq "2819C223-7F76-453A-919D-413861904646"', // so is id
    'emails[type eq "other"]',
    'emails[type eq "home" and primary eq true]',
    'title pr',
    'active eq false',
    'active ne true',
    'userName ne "ALICE@example.com"',
    'meta.lastModified lt "2026-01-01T00:00:00Z"',
    'userName eq "x" or (displayName eq "y")',
    'not (userName pr)',
    // one and the same value must satisfy the bracket and the comparison after it
    'emails[type eq "work"].value eq "al@home.example"',
    'emails[type eq "home"].primary eq true',
  ])('%s', (f) => {
    expect(matches(parseFilter(f, 'User'), alice)).toBe(false);
  });
});

test.each([
  ['members.value eq "u2"', true],
  ['members eq "u2"', true],
  ['members[value eq "u3"]', false],
  ['displayName eq "ml research"', true],
  ['id eq "g1" and members eq "u1"', true], // Entra's membership probe
])('group filter %s → %s', (f, want) => {
  expect(matches(parseFilter(f, 'Group'), group)).toBe(want);
});

describe('invalid filters are 400 invalidFilter', () => {
  test.each([
    '',
    'userName',
    'userName eq',
    'userName eq alice',
    'userName xx "a"',
    'userName eq "unterminated',
    'nosuch eq "a"',
    'name.nosuch eq "a"',
    'emails.value.x eq "a"',
    'userName eq "a" and',
    '(userName eq "a"',
    'userName eq "a")',
    'active gt true',
    'active eq "yes"',
    'active co true',
    'meta.lastModified gt "yesterday"',
    'name eq "a"',
    'userName[value eq "a"]',
    'emails[nosuch eq "a"]',
    'urn:example:custom:attr eq "a"',
    'members eq "u1"', // not a User attribute
    'userName eq "a" userName eq "b"',
    'userName eq true',
    'emails[type eq "work"].nosuch eq "a"',
    'emails[type eq "work"].value',
    'emails[type eq "work"].value eq',
    'emails[type eq "work"]. eq "a"',
    'emails[type eq "work"].primary eq "yes"',
  ])('%j', (f) => {
    let err: unknown;
    try {
      parseFilter(f, 'User');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ScimError);
    expect((err as ScimError).status).toBe(400);
    expect((err as ScimError).scimType).toBe('invalidFilter');
  });
});

test.each([
  ['type eq "work"', 'alice@example.com'],
  ['type eq "home"', 'alice@example.com'],
  ['type eq "home" or primary eq true', 'AL@home.example'],
  ['primary pr', 'al@home.example'],
])('Entra\'s emails[%s].value eq "%s" means emails[… and value eq …]', (inner, value) => {
  const entra = parseFilter(`emails[${inner}].value eq "${value}"`, 'User');
  const rfc = parseFilter(`emails[(${inner}) and value eq "${value}"]`, 'User');
  expect(matches(entra, alice)).toBe(matches(rfc, alice));
  expect(entra).toEqual(rfc);
});

describe('leniently (a search over Users and Groups), an attribute the type lacks is false', () => {
  test.each<[string, boolean, string[]]>([
    ['userName eq "x" or displayName eq "ML Research"', true, ['userName']],
    ['not (userName pr)', true, ['userName']],
    ['emails[type eq "work"].value eq "x" or members pr', true, ['emails']],
    ['emails[type eq "work" and (value eq "x")] and members pr', false, ['emails']],
    ['nickName pr', false, ['nickName']],
  ])('%s on a Group → %s', (f, want, absent) => {
    const parsed = parseFilter(f, 'Group', true);
    expect(matches(parsed, group)).toBe(want);
    expect(absentAttributes(parsed)).toEqual(absent);
  });
  test.each(['userName eq', 'userName xx "a"', 'emails[type eq "work"', 'displayName eq true', 'nickName eq unquoted'])('%j is still 400', (f) => {
    expect(() => parseFilter(f, 'Group', true)).toThrow(expect.objectContaining({ status: 400, scimType: 'invalidFilter' }));
  });
});

test('an equality on userName or displayName is answered from the unique index', () => {
  expect(uniqueKeyLookup(parseFilter('userName eq "A@x.com"', 'User'))).toBe('A@x.com');
  expect(uniqueKeyLookup(parseFilter('displayName eq "ML"', 'Group'))).toBe('ML');
  expect(uniqueKeyLookup(parseFilter('displayName eq "A"', 'User'))).toBeUndefined();
  expect(uniqueKeyLookup(parseFilter('userName eq "a" or userName eq "b"', 'User'))).toBeUndefined();
  expect(uniqueKeyLookup(parseFilter('userName sw "a"', 'User'))).toBeUndefined();
});

describe('PATCH paths', () => {
  test.each([
    ['userName', 'userName', undefined, undefined],
    ['name.givenName', 'name', 'givenName', undefined],
    ['emails[type eq "work"].value', 'emails', undefined, 'value'],
    ['members[value eq "x"]', 'members', undefined, undefined],
    [`${ENTERPRISE_SCHEMA}:manager.value`, 'manager', 'value', undefined],
    ['ACTIVE', 'active', undefined, undefined],
  ])('%s', (text, attr, sub, after) => {
    const pp = parsePatchPath(text, text.startsWith('members') ? 'Group' : 'User');
    expect(pp.path.attr).toBe(attr);
    expect(pp.path.sub).toBe(sub);
    expect(pp.subDef?.name).toBe(after);
  });
  test.each([
    'nosuch',
    'emails[type eq "work"].nosuch',
    'emails[type eq "work"]value',
    'userName[value eq "a"]',
    'emails[type eq "work"].value.x',
    'emails[type eq',
  ])('%s is 400 invalidPath', (text) => {
    expect(() => parsePatchPath(text, 'User')).toThrow(expect.objectContaining({ status: 400, scimType: expect.stringMatching(/invalidPath/) }));
  });
});
