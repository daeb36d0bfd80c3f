// The access log: one line per request, with method, path, status and time; never the query
// string (a filter holds userNames and e-mail addresses) and never the Authorization header.
import { pino } from 'pino';
import { expect, test } from 'vitest';
import { USER_SCHEMA } from '../../src/scim/schemas.js';
import { buildScimServer, hashToken } from '../../src/scim/server.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';

test('one line per request; no query string, no token', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  const store = new SqliteScimStore(':memory:');
  const app = buildScimServer({ store, tokenHashes: [hashToken('secret-token-abc')], logger });
  const auth = { authorization: 'Bearer secret-token-abc' };
  try {
    const created = await app.inject({
      method: 'POST',
      url: '/scim/v2/Users',
      headers: { ...auth, 'content-type': 'application/scim+json' },
      payload: { schemas: [USER_SCHEMA], userName: 'ada@example.com' },
    });
    expect(created.statusCode).toBe(201);
    const listed = await app.inject({ method: 'GET', url: `/scim/v2/Users?filter=${encodeURIComponent('userName eq "ada@example.com"')}`, headers: auth });
    expect(listed.statusCode).toBe(200);
    const refused = await app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: 'Bearer wrong-token' } });
    expect(refused.statusCode).toBe(401);

    const records = lines.map((l) => JSON.parse(l) as { msg: string; method?: string; path?: string; status?: number; ms?: number });
    expect(records.map((r) => [r.msg, r.method, r.path, r.status])).toEqual([
      ['request', 'POST', '/scim/v2/Users', 201],
      ['request', 'GET', '/scim/v2/Users', 200],
      ['request', 'GET', '/scim/v2/Users', 401],
    ]);
    expect(records.every((r) => typeof r.ms === 'number')).toBe(true);
    const all = lines.join('\n');
    expect(all).not.toContain('ada@example.com');
    expect(all).not.toContain('ada%40example.com');
    expect(all).not.toContain('filter');
    expect(all).not.toContain('secret-token-abc');
    expect(all).not.toContain('wrong-token');
  } finally {
    await app.close();
    await store.close();
  }
});
