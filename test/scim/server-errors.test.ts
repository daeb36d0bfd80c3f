// Bad input and authentication: every refusal is a 4xx RFC 7644 error body, never a 5xx, never a
// stack trace, and nothing is stored.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ERROR_SCHEMA } from '../../src/scim/errors.js';
import { GROUP_SCHEMA, USER_SCHEMA } from '../../src/scim/schemas.js';
import { harness, OTHER_TOKEN, patchBody, q, TOKEN, type Harness } from './helpers.js';

let h: Harness;
let uid = '';
let gid = '';
let snapshot: string;
const state = async () => JSON.stringify([await h.store.list('User'), await h.store.list('Group')]);

beforeAll(async () => {
  h = await harness();
  uid = (await h.req('POST', '/scim/v2/Users', { schemas: [USER_SCHEMA], userName: 'alice@example.com', active: true })).body.id as string;
  await h.req('POST', '/scim/v2/Users', { schemas: [USER_SCHEMA], userName: 'bob@example.com', active: true });
  gid = (await h.req('POST', '/scim/v2/Groups', { schemas: [GROUP_SCHEMA], displayName: 'ML Research', members: [{ value: uid }] })).body.id as string;
  snapshot = await state();
});
afterAll(async () => {
  await h.close();
});

const user = (extra: Record<string, unknown> = {}) => ({ schemas: [USER_SCHEMA], userName: 'new@example.com', ...extra });

type Case = [
  what: string,
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  url: () => string,
  body: unknown,
  headers: Record<string, string>,
  status: number,
  scimType: string | undefined,
];
const cases: Case[] = [
  ['malformed JSON', 'POST', () => '/scim/v2/Users', '{"schemas": [', {}, 400, 'invalidSyntax'],
  ['a JSON array', 'POST', () => '/scim/v2/Users', '[]', {}, 400, 'invalidSyntax'],
  ['no schemas', 'POST', () => '/scim/v2/Users', { userName: 'x@example.com' }, {}, 400, 'invalidSyntax'],
  ['wrong schemas', 'POST', () => '/scim/v2/Users', { schemas: [GROUP_SCHEMA], userName: 'x@example.com' }, {}, 400, 'invalidSyntax'],
  ['unknown attribute', 'POST', () => '/scim/v2/Users', user({ favouriteColour: 'blue' }), {}, 400, 'invalidSyntax'],
  ['unknown sub-attribute', 'POST', () => '/scim/v2/Users', user({ name: { nick: 'x' } }), {}, 400, 'invalidSyntax'],
  ['missing userName', 'POST', () => '/scim/v2/Users', { schemas: [USER_SCHEMA], active: true }, {}, 400, 'invalidValue'],
  ['active "maybe"', 'POST', () => '/scim/v2/Users', user({ active: 'maybe' }), {}, 400, 'invalidValue'],
  ['emails not a list of objects', 'POST', () => '/scim/v2/Users', user({ emails: ['x@example.com'] }), {}, 400, 'invalidValue'],
  ['duplicate userName', 'POST', () => '/scim/v2/Users', user({ userName: 'ALICE@example.com' }), {}, 409, 'uniqueness'],
  ['duplicate group displayName', 'POST', () => '/scim/v2/Groups', { schemas: [GROUP_SCHEMA], displayName: 'ml research' }, {}, 409, 'uniqueness'],
  [
    'a member that does not exist',
    'POST',
    () => '/scim/v2/Groups',
    { schemas: [GROUP_SCHEMA], displayName: 'G', members: [{ value: 'nope' }] },
    {},
    400,
    'invalidValue',
  ],
  ['invalid filter', 'GET', () => `/scim/v2/Users?filter=${q('userName eq')}`, undefined, {}, 400, 'invalidFilter'],
  ['filter on an unknown attribute', 'GET', () => `/scim/v2/Users?filter=${q('shoeSize gt 40')}`, undefined, {}, 400, 'invalidFilter'],
  ['unquoted filter value', 'GET', () => `/scim/v2/Groups?filter=${q('displayName eq ML')}`, undefined, {}, 400, 'invalidFilter'],
  ['non-numeric startIndex', 'GET', () => '/scim/v2/Users?startIndex=abc', undefined, {}, 400, 'invalidValue'],
  ['2 MB body', 'POST', () => '/scim/v2/Users', user({ displayName: 'x'.repeat(2 * 1024 * 1024) }), {}, 413, undefined],
  ['text/plain body', 'POST', () => '/scim/v2/Users', JSON.stringify(user()), { 'content-type': 'text/plain' }, 415, undefined],
  [
    'wrong If-Match on PUT',
    'PUT',
    () => `/scim/v2/Users/${uid}`,
    user({ userName: 'alice@example.com', displayName: 'X' }),
    { 'if-match': 'W/"99"' },
    412,
    undefined,
  ],
  [
    'wrong If-Match on PATCH',
    'PATCH',
    () => `/scim/v2/Users/${uid}`,
    patchBody({ op: 'replace', value: { active: false } }),
    { 'if-match': 'W/"99"' },
    412,
    undefined,
  ],
  ['wrong If-Match on DELETE', 'DELETE', () => `/scim/v2/Users/${uid}`, undefined, { 'if-match': '"2"' }, 412, undefined],
  ['unknown id: GET', 'GET', () => '/scim/v2/Users/nope', undefined, {}, 404, undefined],
  ['unknown id: PUT', 'PUT', () => '/scim/v2/Users/nope', user(), {}, 404, undefined],
  ['unknown id: PATCH', 'PATCH', () => '/scim/v2/Groups/nope', patchBody({ op: 'add', path: 'members', value: [{ value: uid }] }), {}, 404, undefined],
  ['unknown id: DELETE', 'DELETE', () => '/scim/v2/Groups/nope', undefined, {}, 404, undefined],
  ['a user id used as a group id', 'GET', () => `/scim/v2/Groups/${uid}`, undefined, {}, 404, undefined],
  ['unknown endpoint', 'GET', () => '/scim/v2/Widgets', undefined, {}, 404, undefined],
  ['PUT changing the id', 'PUT', () => `/scim/v2/Users/${uid}`, user({ id: 'other', userName: 'alice@example.com' }), {}, 400, 'mutability'],
  ['PUT taking another userName', 'PUT', () => `/scim/v2/Users/${uid}`, user({ userName: 'Bob@example.com' }), {}, 409, 'uniqueness'],
  ['PATCH id', 'PATCH', () => `/scim/v2/Users/${uid}`, patchBody({ op: 'replace', path: 'id', value: 'x' }), {}, 400, 'mutability'],
  [
    'PATCH meta',
    'PATCH',
    () => `/scim/v2/Users/${uid}`,
    patchBody({ op: 'replace', path: 'meta.lastModified', value: '2020-01-01T00:00:00Z' }),
    {},
    400,
    'mutability',
  ],
  [
    'PATCH with wrong schemas',
    'PATCH',
    () => `/scim/v2/Users/${uid}`,
    { schemas: [USER_SCHEMA], Operations: [{ op: 'replace', value: { active: false } }] },
    {},
    400,
    'invalidSyntax',
  ],
  ['PATCH unknown path', 'PATCH', () => `/scim/v2/Users/${uid}`, patchBody({ op: 'replace', path: 'shoeSize', value: 44 }), {}, 400, 'invalidPath'],
  [
    'PATCH whose second operation fails',
    'PATCH',
    () => `/scim/v2/Users/${uid}`,
    patchBody({ op: 'replace', value: { active: false } }, { op: 'remove' }),
    {},
    400,
    'noTarget',
  ],
  ['PATCH removing userName', 'PATCH', () => `/scim/v2/Users/${uid}`, patchBody({ op: 'remove', path: 'userName' }), {}, 400, 'invalidValue'],
  [
    'PATCH renaming onto another userName',
    'PATCH',
    () => `/scim/v2/Users/${uid}`,
    patchBody({ op: 'replace', path: 'userName', value: 'BOB@example.com' }),
    {},
    409,
    'uniqueness',
  ],
  [
    'PATCH adding an unknown member',
    'PATCH',
    () => `/scim/v2/Groups/${gid}`,
    patchBody({ op: 'add', path: 'members', value: [{ value: 'ghost' }] }),
    {},
    400,
    'invalidValue',
  ],
  [
    'PATCH replacing on no match',
    'PATCH',
    () => `/scim/v2/Groups/${gid}`,
    patchBody({ op: 'replace', path: 'members[value co "zz"].display', value: 'x' }),
    {},
    400,
    'noTarget',
  ],
  ['bad percent-encoding in the path', 'GET', () => '/scim/v2/Users/%E0%A4%A', undefined, {}, 400, 'invalidSyntax'],
  ['a 500-character id', 'GET', () => `/scim/v2/Users/${'x'.repeat(500)}`, undefined, {}, 414, undefined],
  [
    'JSON nested 5000 deep',
    'POST',
    () => '/scim/v2/Users',
    `{"schemas":["${USER_SCHEMA}"],"userName":"deep@example.com","name":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`,
    {},
    400,
    'invalidSyntax',
  ],
  ['a JSON string', 'POST', () => '/scim/v2/Users', '"alice"', {}, 400, 'invalidSyntax'],
  ['a filter longer than 4096 characters', 'GET', () => `/scim/v2/Users?filter=${q(`userName eq "${'a'.repeat(5000)}"`)}`, undefined, {}, 400, 'invalidFilter'],
  ['PATCH with an empty body', 'PATCH', () => `/scim/v2/Users/${uid}`, '', {}, 400, 'invalidSyntax'],
];

describe('bad input is a 4xx SCIM error and stores nothing', () => {
  test.each(cases)('%s', async (_what, method, url, body, headers, status, scimType) => {
    const r = await h.req(method, url(), body, headers);
    expect(r.status).toBe(status);
    expect(r.headers['content-type']).toBe('application/scim+json; charset=utf-8');
    expect(r.body).toEqual({ schemas: [ERROR_SCHEMA], status: String(status), ...(scimType ? { scimType } : {}), detail: expect.any(String) });
    expect(r.raw).not.toMatch(/\bat .*\.(ts|js):\d+|node_modules|Error:/);
    expect(await state()).toBe(snapshot);
  });

  test('nothing above caused a change notification', () => {
    expect(h.changes.filter((c) => c.action !== 'create')).toEqual([]);
  });

  test('If-Match with the current version, and If-None-Match, behave', async () => {
    const g = await h.req('GET', `/scim/v2/Users/${uid}`);
    const r = await h.req('GET', `/scim/v2/Users/${uid}`, undefined, { 'if-none-match': g.headers.etag as string });
    expect(r.status).toBe(304);
    const p = await h.req('PATCH', `/scim/v2/Users/${uid}`, patchBody({ op: 'replace', path: 'title', value: 'Dr' }), { 'if-match': g.headers.etag as string });
    expect(p.status).toBe(200);
    expect(p.headers.etag).toBe('W/"2"');
  });
});

describe('authentication', () => {
  const routes: [string, string][] = [
    ['GET', '/scim/v2/Users'],
    ['POST', '/scim/v2/Users'],
    ['GET', '/scim/v2/Users/x'],
    ['PUT', '/scim/v2/Users/x'],
    ['PATCH', '/scim/v2/Users/x'],
    ['DELETE', '/scim/v2/Users/x'],
    ['GET', '/scim/v2/Groups'],
    ['POST', '/scim/v2/Groups'],
    ['GET', '/scim/v2/Groups/x'],
    ['PUT', '/scim/v2/Groups/x'],
    ['PATCH', '/scim/v2/Groups/x'],
    ['DELETE', '/scim/v2/Groups/x'],
    ['GET', '/scim/v2/ServiceProviderConfig'],
    ['GET', '/scim/v2/ResourceTypes'],
    ['GET', '/scim/v2/ResourceTypes/User'],
    ['GET', '/scim/v2/Schemas'],
    ['GET', `/scim/v2/Schemas/${USER_SCHEMA}`],
    ['GET', '/metrics'],
    ['GET', '/scim/v2/NoSuchThing'],
  ];
  const credentials: [string, Record<string, string>][] = [
    ['no Authorization header', {}],
    ['a wrong token', { authorization: 'Bearer not-the-token' }],
    ['the token hash instead of the token', { authorization: 'Bearer 6c1c5b2c4f9a0e0b1ed8e8a4c6a05a0e0a91b5f1e5d8f1c8b0a6f8d9e4c3b2a1' }],
    ['Basic auth', { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }],
    ['an empty bearer', { authorization: 'Bearer ' }],
    ['the token without the scheme', { authorization: TOKEN }],
    ['the token with a suffix', { authorization: `Bearer ${TOKEN}x` }],
  ];
  const table = routes.flatMap(([m, u]) => credentials.map(([what, hdr]) => [m, u, what, hdr] as const));

  test.each(table)('%s %s with %s → 401', async (method, url, _what, headers) => {
    const before = await state();
    const r = await h.app.inject({
      method: method as 'GET',
      url,
      headers: { 'content-type': 'application/scim+json', ...headers },
      ...(method === 'POST' || method === 'PUT' || method === 'PATCH' ? { payload: JSON.stringify(user()) } : {}),
    });
    expect(r.statusCode).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="datagrant"');
    expect(JSON.parse(r.body)).toEqual({ schemas: [ERROR_SCHEMA], status: '401', detail: expect.any(String) });
    expect(await state()).toBe(before);
  });

  test('/healthz needs no token', async () => {
    const r = await h.app.inject({ method: 'GET', url: '/healthz' });
    expect(r.statusCode).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: 'ok' });
  });

  test('every configured token is accepted', async () => {
    for (const t of [TOKEN, OTHER_TOKEN]) {
      const r = await h.app.inject({ method: 'GET', url: '/scim/v2/ServiceProviderConfig', headers: { authorization: `bearer ${t}` } });
      expect(r.statusCode).toBe(200);
    }
  });

  test('/metrics counts requests by status, Prometheus text format', async () => {
    const r = await h.req('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(r.raw).toContain('# TYPE datagrant_scim_requests_total counter');
    expect(r.raw).toMatch(/^datagrant_scim_requests_total\{method="GET",route="unmatched",status="401"\} \d+$/m);
    expect(r.raw).toMatch(/^datagrant_scim_requests_total\{method="POST",route="\/scim\/v2\/Users",status="201"\} 2$/m);
    expect(r.raw).toMatch(/^datagrant_scim_requests_total\{method="POST",route="\/scim\/v2\/Users",status="413"\} 1$/m);
    expect(r.raw).not.toContain(TOKEN);
  });
});

test('a failing store is a 500 that says nothing about the cause', async () => {
  const { buildScimServer, hashToken } = await import('../../src/scim/server.js');
  const broken = new Proxy({} as import('../../src/scim/store/store.js').ScimStore, {
    get: () => async () => {
      throw new Error('connection to 10.0.0.7:5432 refused; password=hunter2');
    },
  });
  const app = buildScimServer({ store: broken, tokenHashes: [hashToken(TOKEN)] });
  const r = await app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: `Bearer ${TOKEN}` } });
  expect(r.statusCode).toBe(500);
  expect(JSON.parse(r.body)).toEqual({ schemas: [ERROR_SCHEMA], status: '500', detail: 'internal error; the server log has the details' });
  await app.close();
});

test('request logs never contain the bearer token', async () => {
  const { default: pino } = await import('pino');
  const { buildScimServer, hashToken } = await import('../../src/scim/server.js');
  const { SqliteScimStore } = await import('../../src/scim/store/sqlite.js');
  const lines: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (l: string) => void lines.push(l) });
  const store = new SqliteScimStore(':memory:');
  const app = buildScimServer({ store, tokenHashes: [hashToken(TOKEN)], logger });
  for (const authorization of [`Bearer ${TOKEN}`, 'Bearer wrong-token-value']) {
    await app.inject({
      method: 'POST',
      url: '/scim/v2/Users',
      headers: { authorization, 'content-type': 'application/scim+json' },
      payload: { schemas: [USER_SCHEMA], userName: 'log@example.com' },
    });
  }
  await app.close();
  await store.close();
  expect(lines.length).toBeGreaterThan(0);
  expect(lines.join('\n')).not.toMatch(new RegExp(`${TOKEN}|wrong-token-value`));
});
