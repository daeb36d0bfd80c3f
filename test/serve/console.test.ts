// The console's routes on a bare Fastify with the spec and the state given directly (no backend,
// no IdP): operator sessions end when their token is no longer configured, wrong tokens are
// slowed down, bodies other than forms are refused unread, names of Object's own properties are
// no pages, cookies are Secure behind an https public URL, and which audit entries are a
// principal's own.
import Fastify, { type FastifyInstance } from 'fastify';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { hashToken } from '../../src/scim/server.js';
import { addressOfPrincipal, adminTokenHashes, registerConsole } from '../../src/serve/console.js';
import type { RequestsDirectory } from '../../src/serve/requests.js';
import { specSchema } from '../../src/spec/schema.js';
import { MasterKey } from '../../src/store/crypto.js';
import type { AuditInput, StateStore } from '../../src/store/store.js';
import { cookiesOf } from '../support/console.js';

const spec = specSchema.parse({
  version: 1,
  backends: { aws: { type: 'aws' } },
  datasets: { training: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' } },
  principals: { alice: { type: 'person', grants: [{ dataset: 'training', access: 'read' }] } },
});
const directory: RequestsDirectory = { issuers: [], index: new Map(), world: { base: spec, people: spec.principals } };

let app: FastifyInstance | undefined;
const audited: AuditInput[] = [];
const store = {
  masterKey: new MasterKey(Buffer.alloc(32, 3)),
  audit: async (e: AuditInput) => void audited.push(e),
  requests: async () => [],
  credentials: async () => [],
  auditTail: async () => [],
} as unknown as StateStore;

async function start(tokens: string[], o: { publicUrl?: string } = {}): Promise<string> {
  app = Fastify({ logger: false });
  registerConsole(app, {
    spec: async () => spec,
    directory: async () => directory,
    store: async () => store,
    adminTokenHashes: adminTokenHashes(tokens.map(hashToken).join(',')),
    assetsDir: fileURLToPath(new URL('../../dist/ui/', import.meta.url)),
    ...(o.publicUrl ? { publicUrl: o.publicUrl } : {}),
  });
  return app.listen({ host: '127.0.0.1', port: 0 });
}

afterEach(async () => {
  await app?.close();
  app = undefined;
});

const signIn = (base: string, token: string, headers: Record<string, string> = {}) =>
  fetch(`${base}/ui/signin/admin`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base, ...headers },
    body: new URLSearchParams({ token }),
    redirect: 'manual',
  });

describe('operator sessions', () => {
  test('end when their token is no longer configured; the audit names which token signed in', async () => {
    let base = await start(['token-one-0123456789', 'token-two-0123456789']);
    const one = cookiesOf(await signIn(base, 'token-one-0123456789')).join('; ');
    const two = cookiesOf(await signIn(base, 'token-two-0123456789')).join('; ');
    expect((await fetch(`${base}/ui/matrix`, { headers: { cookie: one }, redirect: 'manual' })).status).toBe(200);
    expect(audited.filter((e) => e.event === 'console.signin').map((e) => e.actor)).toEqual([
      `console-operator:${hashToken('token-one-0123456789').slice(0, 8)}@127.0.0.1`,
      `console-operator:${hashToken('token-two-0123456789').slice(0, 8)}@127.0.0.1`,
    ]);
    // The operator whose token leaked is removed from the configuration; serve restarts.
    await app!.close();
    base = await start(['token-two-0123456789']);
    expect((await fetch(`${base}/ui/matrix`, { headers: { cookie: one }, redirect: 'manual' })).status).toBe(303);
    expect((await fetch(`${base}/ui/matrix`, { headers: { cookie: two }, redirect: 'manual' })).status).toBe(200);
  });

  test('an address that keeps sending wrong tokens must wait, even with the right one', async () => {
    const base = await start(['the-right-token-0123']);
    for (let i = 0; i < 10; i++) expect((await signIn(base, `wrong-${i}`)).status).toBe(401);
    const late = await signIn(base, 'the-right-token-0123');
    expect(late.status).toBe(429);
    expect(late.headers.get('retry-after')).toBe('60');
    expect(late.headers.getSetCookie()).toEqual([]);
  });

  test('behind an https public URL the cookies are Secure with the __Host- prefix, whatever the proxy says', async () => {
    const base = await start(['the-right-token-0123'], { publicUrl: 'https://datagrant.example.com' });
    const res = await signIn(base, 'the-right-token-0123', { origin: 'https://datagrant.example.com' });
    expect(res.status).toBe(303);
    expect(res.headers.getSetCookie()[0]).toMatch(/^__Host-dg-session=[^;]+; Path=\/; Max-Age=28800; HttpOnly; SameSite=Lax; Secure$/);
  });
});

describe('what the console does not take', () => {
  test('a JSON body is refused unread, before any session is looked at', async () => {
    const base = await start(['the-right-token-0123']);
    const res = await fetch(`${base}/ui/requests`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: base },
      body: JSON.stringify({ x: 'y'.repeat(100_000) }),
    });
    expect(res.status).toBe(415);
    expect(await res.text()).toContain('The console takes forms');
    const tooBig = await fetch(`${base}/ui/signin/admin`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
      body: `token=${'x'.repeat(20_000)}`,
    });
    expect(tooBig.status).toBe(413);
  });

  test("the names of Object's own properties are no assets, principals or datasets", async () => {
    const base = await start(['the-right-token-0123']);
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) expect((await fetch(`${base}/ui/assets/${name}`)).status, name).toBe(404);
    const cookie = cookiesOf(await signIn(base, 'the-right-token-0123')).join('; ');
    for (const name of ['constructor', 'toString', '__proto__']) {
      expect((await fetch(`${base}/ui/principals/${name}`, { headers: { cookie } })).status, name).toBe(404);
      expect((await fetch(`${base}/ui/datasets/${name}`, { headers: { cookie } })).status, name).toBe(404);
    }
  });
});

describe("a principal's own audit entries", () => {
  test.each([
    ['aws:user/alice', true],
    ['aws:key/alice', true],
    ['aws:key/alice~AKIAEXAMPLE', true],
    ['aws:membership/ml/alice', true],
    ['aws:inline-policy/user/alice/dg-direct-grants', true],
    ['aws:attachment/user/alice/dg-shared-ab12', true],
    ['warehouse:role/alice', true],
    ['warehouse:grant/alice/analytics.features/read', true],
    ['warehouse:connect/alice/analytics', true],
    ['warehouse:password/alice', true],
    ['aws:group/alice', false],
    ['aws:membership/alice/bob', false],
    ['aws:user/malice', false],
    ['aws:inline-policy/group/alice/x', false],
    ['warehouse:connect/bob/alice', false],
    ['request/1', false],
  ])('%s: %s', (address, mine) => {
    expect(addressOfPrincipal(address, 'alice')).toBe(mine);
  });
});
