// Listing (pagination, stable order, attribute selection) and the discovery endpoints.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MetricsRegistry } from '../../src/scim/metrics.js';
import { ENTERPRISE_SCHEMA, USER_SCHEMA } from '../../src/scim/schemas.js';
import { buildScimServer, hashToken } from '../../src/scim/server.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { harness, q, type Harness } from './helpers.js';

let h: Harness;
const ids: string[] = [];
beforeAll(async () => {
  h = await harness();
  for (let i = 1; i <= 25; i++) {
    const r = await h.req('POST', '/scim/v2/Users', {
      schemas: [USER_SCHEMA, ENTERPRISE_SCHEMA],
      userName: `user${String(i).padStart(2, '0')}@example.com`,
      active: i % 5 !== 0,
      name: { givenName: `G${i}`, familyName: 'F' },
      emails: [{ value: `user${i}@example.com`, type: 'work' }],
      [ENTERPRISE_SCHEMA]: { department: i % 2 ? 'Odd' : 'Even' },
    });
    ids.push(r.body.id as string);
  }
});
afterAll(async () => {
  await h.close();
});

describe('pagination', () => {
  test.each([
    [1, 10, 0, 10],
    [11, 10, 10, 10],
    [21, 10, 20, 5],
    [26, 10, 25, 0],
    [0, 3, 0, 3], // startIndex below 1 means 1
    [1, 0, 0, 0], // count 0: only totalResults
    [1, -5, 0, 0],
  ])('startIndex=%i count=%i', async (startIndex, count, from, n) => {
    const r = await h.req('GET', `/scim/v2/Users?startIndex=${startIndex}&count=${count}`);
    expect(r.status).toBe(200);
    expect(r.body.totalResults).toBe(25);
    expect(r.body.itemsPerPage).toBe(n);
    expect(r.body.startIndex).toBe(Math.max(1, startIndex));
    expect((r.body.Resources as { id: string }[]).map((x) => x.id)).toEqual(ids.slice(from, from + n));
  });

  test('pages of a filtered list are stable and complete', async () => {
    const seen: string[] = [];
    for (let s = 1; s <= 25; s += 4) {
      const r = await h.req('GET', `/scim/v2/Users?filter=${q('active eq true')}&startIndex=${s}&count=4`);
      expect(r.body.totalResults).toBe(20);
      seen.push(...(r.body.Resources as { id: string }[]).map((x) => x.id));
    }
    expect(seen).toEqual(ids.filter((_, i) => (i + 1) % 5 !== 0));
  });

  test.each([
    ['userName sw "user1"', 10],
    ['userName eq "USER07@example.com"', 1],
    ['emails.value co "user2"', 7],
    [`${ENTERPRISE_SCHEMA}:department eq "odd" and active eq false`, 3],
    ['name.givenName eq "G3" or name.givenName eq "G4"', 2],
    ['meta.created gt "2000-01-01T00:00:00Z"', 25],
    ['userName pr and not (emails pr)', 0],
  ])('filter %s → %i', async (filter, n) => {
    const r = await h.req('GET', `/scim/v2/Users?filter=${q(filter)}`);
    expect(r.status).toBe(200);
    expect(r.body.totalResults).toBe(n);
  });
});

describe('attribute selection', () => {
  test('attributes= returns id, schemas and what was asked', async () => {
    const r = await h.req('GET', `/scim/v2/Users?count=1&attributes=userName,name.givenName,${ENTERPRISE_SCHEMA}:department`);
    expect(r.body.Resources).toEqual([
      {
        schemas: [USER_SCHEMA, ENTERPRISE_SCHEMA],
        id: ids[0],
        userName: 'user01@example.com',
        name: { givenName: 'G1' },
        [ENTERPRISE_SCHEMA]: { department: 'Odd' },
      },
    ]);
  });
  test('excludedAttributes= removes them, but never id', async () => {
    const r = await h.req('GET', `/scim/v2/Users/${ids[0]}?excludedAttributes=emails,meta,id,name.familyName`);
    expect(r.body).not.toHaveProperty('emails');
    expect(r.body).not.toHaveProperty('meta');
    expect(r.body.id).toBe(ids[0]);
    expect(r.body.name).toEqual({ givenName: 'G1' });
  });
  test('attribute names are case-insensitive; unknown ones are ignored', async () => {
    const r = await h.req('GET', `/scim/v2/Users/${ids[0]}?attributes=USERNAME,shoeSize`);
    expect(r.body).toEqual({ schemas: [USER_SCHEMA, ENTERPRISE_SCHEMA], id: ids[0], userName: 'user01@example.com' });
  });
});

describe('discovery', () => {
  test('ServiceProviderConfig announces PATCH, filter, ETags and bearer tokens; no bulk', async () => {
    const r = await h.req('GET', '/scim/v2/ServiceProviderConfig');
    expect(r.body).toMatchObject({
      patch: { supported: true },
      bulk: { supported: false },
      filter: { supported: true, maxResults: 1000 },
      etag: { supported: true },
      sort: { supported: false },
    });
    expect((r.body.authenticationSchemes as { type: string }[])[0]!.type).toBe('oauthbearertoken');
  });
  test('ResourceTypes and Schemas', async () => {
    const rt = await h.req('GET', '/scim/v2/ResourceTypes');
    expect((rt.body.Resources as { id: string }[]).map((x) => x.id)).toEqual(['User', 'Group']);
    expect((await h.req('GET', '/scim/v2/ResourceTypes/user')).body.schemaExtensions).toEqual([{ schema: ENTERPRISE_SCHEMA, required: false }]);
    const s = await h.req('GET', '/scim/v2/Schemas');
    expect((s.body.Resources as { id: string }[]).map((x) => x.id)).toEqual([USER_SCHEMA, ENTERPRISE_SCHEMA, 'urn:ietf:params:scim:schemas:core:2.0:Group']);
    const user = await h.req('GET', `/scim/v2/Schemas/${USER_SCHEMA}`);
    const userName = (user.body.attributes as { name: string }[]).find((a) => a.name === 'userName');
    expect(userName).toMatchObject({ type: 'string', required: true, caseExact: false, uniqueness: 'server' });
    expect((await h.req('GET', '/scim/v2/Schemas/urn:nope')).status).toBe(404);
  });
  test('routes are case-insensitive and tolerate a trailing slash', async () => {
    expect((await h.req('GET', '/scim/v2/users/')).body.totalResults).toBe(25);
  });
});

test('the owner extends the metrics registry; baseUrl sets Location', async () => {
  const metrics = new MetricsRegistry();
  const reconciles = metrics.histogram('datagrant_reconcile_duration_seconds', 'Reconcile duration.', [0.1, 1]);
  reconciles.observe(0.5);
  metrics.counter('datagrant_reconcile_failures_total', 'Failed reconciles.').inc();
  const store = new SqliteScimStore(':memory:');
  const app = buildScimServer({ store, tokenHashes: [hashToken('t')], metrics, baseUrl: 'https://dg.example.com/' });
  try {
    expect(app.scimMetrics).toBe(metrics);
    const post = await app.inject({
      method: 'POST',
      url: '/scim/v2/Users',
      headers: { authorization: 'Bearer t', 'content-type': 'application/json' },
      payload: { schemas: [USER_SCHEMA], userName: 'a@b.c' },
    });
    expect(post.statusCode).toBe(201);
    expect(post.headers.location).toMatch(/^https:\/\/dg\.example\.com\/scim\/v2\/Users\/[0-9a-f-]{36}$/);
    const r = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer t' } });
    expect(r.body).toContain('datagrant_reconcile_duration_seconds_bucket{le="1"} 1\n');
    expect(r.body).toContain('datagrant_reconcile_duration_seconds_bucket{le="+Inf"} 1\n');
    expect(r.body).toContain('datagrant_reconcile_failures_total 1\n');
    expect(r.body).toContain('datagrant_scim_requests_total{method="POST",route="/scim/v2/Users",status="201"} 1\n');
  } finally {
    await app.close();
    await store.close();
  }
});

test('a token hash that is not sha256 hex is refused at build time; no hashes refuses everyone', async () => {
  const store = new SqliteScimStore(':memory:');
  expect(() => buildScimServer({ store, tokenHashes: ['secret-token'] })).toThrow(/64 hex digits/);
  const app = buildScimServer({ store, tokenHashes: [] });
  const r = await app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: 'Bearer ' } });
  expect(r.statusCode).toBe(401);
  await app.close();
  await store.close();
});
