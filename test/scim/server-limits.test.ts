// Strictness and limits (issue 10), each case run twice: through fastify's inject, and over HTTP
// against the built `datagrant serve` (run `npm run build` first), so that what the tests prove
// is what a deployment does. What needs real sockets (413 after a large body, 431) is in
// server-transport.test.ts.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ERROR_SCHEMA } from '../../src/scim/errors.js';
import { LIMITS_SCHEMA, MAX_KEY, MAX_PATCH_OPERATIONS, MAX_STRING, MAX_VALUES } from '../../src/scim/limits.js';
import { ENTERPRISE_SCHEMA, GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA } from '../../src/scim/schemas.js';
import { harness, patchBody, q, served, type Client } from './helpers.js';

const SEARCH = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';
const user = (userName: string, extra: Record<string, unknown> = {}) => ({ schemas: [USER_SCHEMA], userName, ...extra });
const emails = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ value: `e${from + i}@example.com`, type: 'other' }));
const ids = (r: { body: Record<string, unknown> }) => ((r.body.Resources ?? []) as { id: string }[]).map((x) => x.id);

describe.each([
  ['fastify inject', () => harness()],
  ['the built datagrant serve over HTTP', () => served()],
] as const)('%s', (_how, start) => {
  let c: Client;
  let alice = '';
  let bob = '';
  let gid = '';
  beforeAll(async () => {
    c = await start();
    alice = (
      await c.req(
        'POST',
        '/scim/v2/Users',
        user('alice@example.com', {
          emails: [
            { value: 'alice@example.com', type: 'work' },
            { value: 'a@home.example', type: 'home' },
          ],
        }),
      )
    ).body.id as string;
    bob = (await c.req('POST', '/scim/v2/Users', user('bob@example.com', { emails: [{ value: 'bob@example.com', type: 'work' }] }))).body.id as string;
    gid = (await c.req('POST', '/scim/v2/Groups', { schemas: [GROUP_SCHEMA], displayName: 'ML Research', members: [{ value: alice }] })).body.id as string;
  });
  afterAll(async () => c?.close());

  const expectError = (r: { status: number; body: Record<string, unknown>; headers: Record<string, unknown> }, status: number, scimType?: string) => {
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    expect(r.headers['content-type']).toBe('application/scim+json; charset=utf-8');
    expect(r.body).toEqual({ schemas: [ERROR_SCHEMA], status: String(status), ...(scimType ? { scimType } : {}), detail: expect.any(String) });
  };

  describe('/Schemas: every reference says what it refers to (RFC 7643 §2.3.7, §8.7.1)', () => {
    type Attr = { name: string; type: string; referenceTypes?: string[]; subAttributes?: Attr[] };
    const references = async () => {
      const r = await c.req('GET', '/scim/v2/Schemas');
      const out: Record<string, string[] | undefined> = {};
      const walk = (schema: string, attrs: Attr[], prefix = '') => {
        for (const a of attrs) {
          if (a.type === 'reference') out[`${schema}:${prefix}${a.name}`] = a.referenceTypes;
          walk(schema, a.subAttributes ?? [], `${prefix}${a.name}.`);
        }
      };
      for (const s of r.body.Resources as { id: string; attributes: Attr[] }[]) walk(s.id, s.attributes);
      return out;
    };
    test('every attribute of type reference has referenceTypes', async () => {
      const refs = await references();
      expect(Object.keys(refs).length).toBeGreaterThan(0);
      for (const [name, types] of Object.entries(refs)) expect(types, name).toEqual(expect.arrayContaining([expect.any(String)]));
    });
    test.each([
      [`${USER_SCHEMA}:profileUrl`, ['external']],
      [`${USER_SCHEMA}:photos.value`, ['external']],
      [`${USER_SCHEMA}:groups.$ref`, ['User', 'Group']],
      [`${USER_SCHEMA}:meta.location`, ['uri']],
      [`${ENTERPRISE_SCHEMA}:manager.$ref`, ['User']],
      [`${GROUP_SCHEMA}:members.$ref`, ['User', 'Group']],
    ])('%s → %j', async (name, want) => {
      expect((await references())[name]).toEqual(want);
    });
  });

  describe('Entra\'s filter emails[type eq "work"].value eq "x"', () => {
    test.each([
      ['emails[type eq "work"].value eq "alice@example.com"', () => [alice]],
      ['emails[type eq "work" and value eq "alice@example.com"]', () => [alice]],
      // the bracket and the comparison after it hold for one and the same e-mail
      ['emails[type eq "work"].value eq "a@home.example"', () => []],
      ['emails[type eq "work"].value eq "alice@example.com" or emails[type eq "work"].value eq "BOB@example.com"', () => [alice, bob]],
      ['emails[type eq "work"].value eq "bob@example.com" and userName pr', () => [bob]],
      ['emails[type eq "work"].value sw "b" and not (userName eq "bob@example.com")', () => []],
    ])('%s', async (filter, want) => {
      const r = await c.req('GET', `/scim/v2/Users?filter=${q(filter)}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(ids(r)).toEqual(want());
    });
    test('an unknown attribute after [...] is still 400 invalidFilter', async () => {
      expectError(await c.req('GET', `/scim/v2/Users?filter=${q('emails[type eq "work"].nosuch eq "x"')}`), 400, 'invalidFilter');
    });
  });

  describe('PATCH with an extension URN as the path', () => {
    test("an object value sets the extension's attributes, as the no-path form does", async () => {
      const r = await c.req(
        'PATCH',
        `/scim/v2/Users/${bob}`,
        patchBody({ op: 'Add', path: ENTERPRISE_SCHEMA, value: { department: 'ML', manager: { value: alice } } }),
      );
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body[ENTERPRISE_SCHEMA]).toEqual({ department: 'ML', manager: { value: alice } });
      expect(r.body.schemas).toEqual([USER_SCHEMA, ENTERPRISE_SCHEMA]);
      const removed = await c.req('PATCH', `/scim/v2/Users/${bob}`, patchBody({ op: 'remove', path: ENTERPRISE_SCHEMA }));
      expect(removed.body).not.toHaveProperty(ENTERPRISE_SCHEMA);
    });
    test('a value that is not an object is 400 invalidValue naming the extension', async () => {
      const r = await c.req('PATCH', `/scim/v2/Users/${bob}`, patchBody({ op: 'add', path: ENTERPRISE_SCHEMA, value: 'ML' }));
      expectError(r, 400, 'invalidValue');
      expect(r.body.detail).toBe(`${ENTERPRISE_SCHEMA} must be an object of attributes`);
    });
  });

  describe('POST .search (RFC 7644 §3.4.3)', () => {
    const search = (path: string, body: Record<string, unknown>) => c.req('POST', `/scim/v2${path}/.search`, { schemas: [SEARCH], ...body });
    test.each([
      ['/Users', { filter: 'userName sw "a"' }, () => [alice]],
      ['/Users', { filter: 'emails[type eq "work"].value eq "bob@example.com"' }, () => [bob]],
      ['/Users', { startIndex: 2, count: 1 }, () => [bob]],
      ['/Users', {}, () => [alice, bob]],
      ['/Groups', { filter: 'displayName eq "ml research"' }, () => [gid]],
      ['', { filter: 'userName pr' }, () => [alice, bob]], // Groups have no userName: none of them match
      ['', { filter: 'displayName eq "ML Research" or userName eq "bob@example.com"' }, () => [bob, gid]],
      ['', { filter: 'not (userName pr) and members[value eq "0"].display pr or members pr' }, () => [gid]],
      ['', {}, () => [alice, bob, gid]],
      ['', { startIndex: 3 }, () => [gid]],
    ])('%s/.search %j', async (path, body, want) => {
      const r = await search(path, body);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toMatchObject({ schemas: [LIST_SCHEMA], totalResults: expect.any(Number), startIndex: (body as { startIndex?: number }).startIndex ?? 1 });
      expect(ids(r)).toEqual(want());
    });
    test('attributes and excludedAttributes are lists', async () => {
      const r = await search('/Users', { filter: 'userName eq "alice@example.com"', attributes: ['userName'] });
      expect(r.body.Resources).toEqual([{ schemas: [USER_SCHEMA], id: alice, userName: 'alice@example.com' }]);
      const x = await search('/Groups', { excludedAttributes: ['members', 'meta'] });
      expect(x.body.Resources).toEqual([{ schemas: [GROUP_SCHEMA], id: gid, displayName: 'ML Research' }]);
    });
    test.each([
      ['no SearchRequest schema', '/Users', { schemas: [USER_SCHEMA], filter: 'userName pr' }, 'invalidSyntax'],
      ['a filter that does not parse', '/Users', { schemas: [SEARCH], filter: 'userName eq' }, 'invalidFilter'],
      ['from the root, an attribute no resource type has', '', { schemas: [SEARCH], filter: 'shoeSize gt 40' }, 'invalidFilter'],
      ['count not an integer', '/Groups', { schemas: [SEARCH], count: 'many' }, 'invalidValue'],
      ['attributes not a list of names', '/Users', { schemas: [SEARCH], attributes: [1] }, 'invalidValue'],
    ])('%s: 400 %s', async (_what, path, body, scimType) => {
      expectError(await c.req('POST', `/scim/v2${path}/.search`, body), 400, scimType);
    });
  });

  describe('a PATCH holds at most 1,000 operations', () => {
    const rename = (n: number) => Array.from({ length: n }, (_, i) => ({ op: 'replace', path: 'displayName', value: `Bob ${i}` }));
    test(`${MAX_PATCH_OPERATIONS} operations apply`, async () => {
      const r = await c.req('PATCH', `/scim/v2/Users/${bob}`, patchBody(...rename(MAX_PATCH_OPERATIONS)));
      expect(r.status).toBe(200);
      expect(r.body.displayName).toBe(`Bob ${MAX_PATCH_OPERATIONS - 1}`);
    });
    test(`${MAX_PATCH_OPERATIONS + 1} and 10,000 are 400 tooMany, and nothing changes`, async () => {
      const before = (await c.req('GET', `/scim/v2/Users/${bob}`)).body;
      for (const n of [MAX_PATCH_OPERATIONS + 1, 10_000]) expectError(await c.req('PATCH', `/scim/v2/Users/${bob}`, patchBody(...rename(n))), 400, 'tooMany');
      expect((await c.req('GET', `/scim/v2/Users/${bob}`)).body).toEqual(before);
    });
  });

  describe('bounded growth', () => {
    test(`an IdP adding e-mails again and again stops at ${MAX_VALUES}: 400 invalidValue, nothing stored`, async () => {
      const id = (await c.req('POST', '/scim/v2/Users', user('looping@example.com'))).body.id as string;
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) {
        const ops = emails(10, i * 10).map((e) => ({ op: 'add', path: 'emails', value: [e] }));
        const r = await c.req('PATCH', `/scim/v2/Users/${id}`, patchBody(...ops));
        statuses.push(r.status);
        if (r.status !== 200) expectError(r, 400, 'invalidValue');
      }
      expect(statuses).toEqual([...Array(10).fill(200), ...Array(10).fill(400)]);
      expect(((await c.req('GET', `/scim/v2/Users/${id}`)).body.emails as unknown[]).length).toBe(MAX_VALUES);
      // Adding one already there is no growth, and is still fine.
      expect(
        (await c.req('PATCH', `/scim/v2/Users/${id}`, patchBody({ op: 'add', path: 'emails', value: [{ value: 'E0@example.com', primary: true }] }))).status,
      ).toBe(200);
    });
    test.each<[string, 'POST' | 'PUT' | 'PATCH', () => string, unknown]>([
      ['POST with 101 e-mails', 'POST', () => '/scim/v2/Users', user('many@example.com', { emails: emails(MAX_VALUES + 1) })],
      ['PUT with 101 roles', 'PUT', () => `/scim/v2/Users/${alice}`, user('alice@example.com', { roles: emails(MAX_VALUES + 1) })],
      [
        'one PATCH adding 101 phone numbers',
        'PATCH',
        () => `/scim/v2/Users/${alice}`,
        patchBody({ op: 'add', path: 'phoneNumbers', value: emails(MAX_VALUES + 1) }),
      ],
      [
        'a user over 64 KiB as JSON',
        'POST',
        () => '/scim/v2/Users',
        user('big@example.com', { x509Certificates: Array.from({ length: 60 }, (_, i) => ({ value: `${i}`.padEnd(1200, 'A') })) }),
      ],
    ])('%s: 400 invalidValue', async (_what, method, url, body) => {
      const r = await c.req(method, url(), body);
      expectError(r, 400, 'invalidValue');
      expect(r.raw.length).toBeLessThan(1000); // the message does not echo the value
    });
  });

  describe('strings: text of a documented length, any script', () => {
    test.each([
      ['NUL', 'a\u0000b@example.com'],
      ['ESC', '\u001b[31mred@example.com'],
      ['a line feed', 'a\nb@example.com'],
      ['a tab', 'a\tb@example.com'],
      ['DEL', 'a\u007fb@example.com'],
      ['a C1 control (NEL)', 'a\u0085b@example.com'],
      ['a lone high surrogate', 'a\ud800b@example.com'],
      ['a lone low surrogate', 'a\udc00@example.com'],
      ['a surrogate pair cut in half at the end', 'emoji\ud83d'],
      [`${MAX_KEY + 1} characters`, `${'a'.repeat(MAX_KEY - 11)}@example.com`],
    ])('userName with %s: 400 invalidValue', async (_what, userName) => {
      const r = await c.req('POST', '/scim/v2/Users', user(userName));
      expectError(r, 400, 'invalidValue');
      expect(r.body.detail).toMatch(/^userName /);
    });
    test.each([
      ['displayName', { displayName: 'x'.repeat(MAX_STRING + 1) }],
      ['name.givenName', { name: { givenName: 'Ann\u0000' } }],
      ['emails[0].value', { emails: [{ value: 'a\r\n@example.com' }] }],
      [`${ENTERPRISE_SCHEMA}:department`, { schemas: [USER_SCHEMA, ENTERPRISE_SCHEMA], [ENTERPRISE_SCHEMA]: { department: 'R&D\u001b' } }],
    ])('%s: 400 invalidValue naming it', async (where, extra) => {
      const r = await c.req('POST', '/scim/v2/Users', user('strings@example.com', extra));
      expectError(r, 400, 'invalidValue');
      expect(r.body.detail).toContain(where);
    });
    test('PATCH is held to the same rules', async () => {
      expectError(await c.req('PATCH', `/scim/v2/Users/${alice}`, patchBody({ op: 'replace', path: 'displayName', value: 'x\u0007' })), 400, 'invalidValue');
      expectError(
        await c.req('PATCH', `/scim/v2/Users/${alice}`, patchBody({ op: 'add', path: 'emails[type eq "work\\u0000"].value', value: 'w@example.com' })),
        400,
        'invalidValue',
      );
    });
    test('a body that is not UTF-8 is 400 invalidSyntax', async () => {
      const bytes = Buffer.concat([Buffer.from(`{"schemas":["${USER_SCHEMA}"],"userName":"`), Buffer.from([0xc3, 0x28]), Buffer.from('@example.com"}')]);
      expectError(await c.req('POST', '/scim/v2/Users', bytes), 400, 'invalidSyntax');
    });
    test.each<[string, string, Record<string, string>]>([
      ['Japanese', '山田太郎@example.jp', { givenName: '太郎', familyName: '山田' }],
      ['Arabic, right to left', 'محمد.علي@example.com', { givenName: 'محمد', familyName: 'علي' }],
      ['accents', 'josé.núñez@example.es', { givenName: 'José', familyName: 'Núñez-Ærøskøbing' }],
      ['emoji with a zero-width joiner and skin tone', '👩🏽‍💻dev@example.com', { givenName: '👩🏽‍💻', familyName: 'Ünïcødé' }],
      ['Devanagari and Hangul', 'देवनागरी@example.in', { givenName: '한국어', familyName: 'हिन्दी' }],
      [`${MAX_KEY} emoji (two UTF-16 units each)`, '😀'.repeat(MAX_KEY), { formatted: 'Smiley' }],
    ])('%s is accepted and returned as sent', async (_what, userName, name) => {
      const r = await c.req('POST', '/scim/v2/Users', user(userName, { name, displayName: Object.values(name).join(' ') }));
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      const back = await c.req('GET', `/scim/v2/Users?filter=${q(`userName eq "${userName}"`)}`);
      expect(back.body.Resources).toEqual([expect.objectContaining({ userName, name })]);
    });
    test('addresses.formatted may hold line breaks (RFC 7643 §4.1.2)', async () => {
      const formatted = '100 Universal City Plaza\r\nHollywood, CA 91608\nUSA';
      const r = await c.req('PATCH', `/scim/v2/Users/${alice}`, patchBody({ op: 'add', path: 'addresses', value: [{ formatted, type: 'work' }] }));
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.addresses).toEqual([{ formatted, type: 'work' }]);
    });
  });

  test('ServiceProviderConfig advertises the limits and .search', async () => {
    const r = await c.req('GET', '/scim/v2/ServiceProviderConfig');
    expect(r.body.schemas).toEqual(['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig', LIMITS_SCHEMA]);
    expect(r.body).toMatchObject({ filter: { supported: true, maxResults: 1000 }, bulk: { supported: false, maxPayloadSize: 1024 * 1024 } });
    expect(r.body[LIMITS_SCHEMA]).toEqual({
      search: { supported: true, endpoints: ['/scim/v2/.search', '/scim/v2/Users/.search', '/scim/v2/Groups/.search'] },
      patch: { maxOperations: 1000 },
      maxPayloadSize: 1024 * 1024,
      maxValuesPerAttribute: 100,
      maxMembersPerGroup: 10_000,
      maxStringLength: 1024,
      maxUniqueKeyLength: 256,
      maxBinaryLength: 16_384,
      maxResourceBytes: { User: 65_536, Group: 1_048_576 },
    });
  });
});
