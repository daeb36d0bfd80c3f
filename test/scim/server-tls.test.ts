// TLS straight from the server (a certificate and key given), and behind a proxy (trustProxy).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { USER_SCHEMA } from '../../src/scim/schemas.js';
import { buildScimServer, hashToken } from '../../src/scim/server.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';

const dir = mkdtempSync(join(tmpdir(), 'dg-scim-tls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('with a certificate and key the server speaks HTTPS, and Location says https', async () => {
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'],
    { stdio: 'ignore' },
  );
  const store = new SqliteScimStore(':memory:');
  const app = buildScimServer({
    store,
    tokenHashes: [hashToken('t')],
    https: { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) },
  });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as { port: number };
    const res = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
      const body = JSON.stringify({ schemas: [USER_SCHEMA], userName: 'tls@example.com' });
      const r = request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/scim/v2/Users',
          rejectUnauthorized: false,
          headers: { authorization: 'Bearer t', 'content-type': 'application/scim+json' },
        },
        (resp) => {
          resp.resume();
          resp.on('end', () => resolve({ status: resp.statusCode!, location: resp.headers.location }));
        },
      );
      r.on('error', reject);
      r.end(body);
    });
    expect(res.status).toBe(201);
    expect(res.location).toMatch(new RegExp(`^https://127\\.0\\.0\\.1:${port}/scim/v2/Users/`));
  } finally {
    await app.close();
    await store.close();
  }
});

test('behind a TLS-terminating proxy, trustProxy makes Location use the forwarded scheme and host', async () => {
  const store = new SqliteScimStore(':memory:');
  for (const [trustProxy, want] of [
    [true, 'https://dg.example.com/'],
    [undefined, 'http://internal:8080/'],
  ] as const) {
    const app = buildScimServer({ store, tokenHashes: [hashToken('t')], ...(trustProxy ? { trustProxy } : {}) });
    const r = await app.inject({
      method: 'POST',
      url: '/scim/v2/Users',
      headers: {
        host: 'internal:8080',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'dg.example.com',
        authorization: 'Bearer t',
        'content-type': 'application/scim+json',
      },
      payload: { schemas: [USER_SCHEMA], userName: `p${String(trustProxy)}@example.com` },
    });
    expect(r.statusCode).toBe(201);
    expect(r.headers.location).toMatch(new RegExp(`^${want.replace(/[.]/g, '\\.')}scim/v2/Users/`));
    await app.close();
  }
  await store.close();
});
