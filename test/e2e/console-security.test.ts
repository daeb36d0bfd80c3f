// The web console's guards, against a real serve (moto, a real OpenID provider): no page or data
// answers without a session; every change needs the session's CSRF token and this origin; the
// requester cannot approve their own request; a person does not see another's credentials; plan
// and audit are for operators; a session whose principal is gone ends; cookies are HttpOnly,
// SameSite, and Secure with the __Host- prefix over TLS; the answers carry a strict CSP.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cookiesOf, getPage, postForm, signInAdmin, signInPerson, type ConsoleUser } from '../support/console.js';
import { useMotoAdmin } from './aws-support.js';
import { ADMIN_TOKEN, startConsoleRig, type ConsoleRig } from './console-rig.js';

let rig: ConsoleRig;
let alice: ConsoleUser;
let bob: ConsoleUser;
let carol: ConsoleUser;
let admin: ConsoleUser;

const spec = (issuer: string, withCarol = true) => `version: 1
settings:
  oidc: [{ name: corp, issuer: "${issuer}", audience: datagrant }]
  console: { oidc: corp, clientId: datagrant-console }
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/, approvers: { principals: [bob] } }
principals:
  alice: { type: person, email: alice@example.com, grants: [{ dataset: training, access: read }] }
  bob: { type: person, email: bob@example.com }
${withCarol ? '  carol: { type: person, email: carol@example.com }\n' : ''}`;

beforeAll(async () => {
  rig = await startConsoleRig({
    accounts: {
      alice: { sub: 'u-alice', email: 'alice@example.com' },
      bob: { sub: 'u-bob', email: 'bob@example.com' },
      carol: { sub: 'u-carol', email: 'carol@example.com' },
      mallory: { sub: 'u-mallory', email: 'mallory@example.com' },
    },
    spec: (issuer) => spec(issuer),
  });
  alice = await signInPerson(rig.base, rig.idp, 'alice');
  bob = await signInPerson(rig.base, rig.idp, 'bob');
  carol = await signInPerson(rig.base, rig.idp, 'carol');
  admin = await signInAdmin(rig.base, ADMIN_TOKEN);
}, 120_000);

afterAll(async () => {
  await rig?.close();
});

const PAGES = ['/ui', '/ui/', '/ui/matrix', '/ui/requests', '/ui/principals/alice', '/ui/datasets/training', '/ui/plan', '/ui/audit', '/ui/no-such-page'];
const CHANGES = ['/ui/requests', '/ui/requests/1/decide', '/ui/requests/1/cancel', '/ui/access/refresh', '/ui/signout'];

describe('without a session', () => {
  test('every page sends the browser to sign in, the data answers 401, and no change is taken', async () => {
    for (const path of PAGES) {
      const r = await getPage(rig.base, path);
      expect(r.status, path).toBe(303);
      expect(r.location, path).toMatch(/^\/ui\/signin\?next=/);
      expect(r.body, path).toBe('');
    }
    const data = await getPage(rig.base, '/ui/data/matrix');
    expect(data.status).toBe(401);
    expect(data.body).not.toContain('alice');
    for (const path of CHANGES) {
      const r = await postForm(rig.base, path, undefined, { dataset: 'training', access: 'read', duration: '1h', reason: 'x', decision: 'approve' });
      expect(r.status, path).toBe(401);
      expect(r.body, path).toContain('Your session has ended');
    }
    // A forged or altered cookie is no session.
    const forged = { cookie: `dg-session=${alice.cookie.split('=')[1]!.slice(0, -4)}AAAA`, csrf: alice.csrf };
    expect((await getPage(rig.base, '/ui/requests', forged)).status).toBe(303);
    // The sign-in page and the assets are all that answer.
    expect((await getPage(rig.base, '/ui/signin')).status).toBe(200);
    expect((await getPage(rig.base, '/ui/assets/console.css')).status).toBe(200);
    expect((await getPage(rig.base, '/ui/assets/../../package.json')).status).not.toBe(200);
    // The API needs its bearer token too.
    expect((await fetch(`${rig.base}/v1/requests`)).status).toBe(401);
  });

  test('after sign-in the browser goes back only to a console page, never to another site', async () => {
    for (const next of ['https://evil.example/', '//evil.example/ui', '/ui/../v1/requests', 'javascript:alert(1)']) {
      const start = await fetch(`${rig.base}/ui/signin/oidc?next=${encodeURIComponent(next)}`, { redirect: 'manual' });
      const back = await rig.idp.authorize(start.headers.get('location')!, 'alice');
      const done = await fetch(back, { headers: { cookie: cookiesOf(start).join('; ') }, redirect: 'manual' });
      expect(done.status, next).toBe(303);
      expect(done.headers.get('location'), next).toBe('/ui');
    }
  });
});

describe('sign-in', () => {
  test('someone the provider knows but the spec does not is refused, and it is audited', async () => {
    const start = await fetch(`${rig.base}/ui/signin/oidc?next=/ui`, { redirect: 'manual' });
    const back = await rig.idp.authorize(start.headers.get('location')!, 'mallory');
    const done = await fetch(back, { headers: { cookie: cookiesOf(start).join('; ') }, redirect: 'manual' });
    expect(done.status).toBe(403);
    expect(await done.text()).toContain('No principal of datagrant has your email');
    expect(cookiesOf(done).filter((c) => c.startsWith('dg-session'))).toEqual([]);
    const log = JSON.parse(await rig.cli('audit', 'log', '--json')) as { event: string; outcome: string; actor: string }[];
    expect(log).toContainEqual(expect.objectContaining({ event: 'console.signin', outcome: 'refused', actor: `oidc:corp:u-mallory` }));
  });

  test('a return without the sign-in cookie, or with another state, is refused', async () => {
    const start = await fetch(`${rig.base}/ui/signin/oidc?next=/ui`, { redirect: 'manual' });
    const back = await rig.idp.authorize(start.headers.get('location')!, 'alice');
    // Another browser (an attacker's link): no sign-in cookie.
    expect((await fetch(back, { redirect: 'manual' })).status).toBe(400);
    const tampered = new URL(back);
    tampered.searchParams.set('state', 'x');
    expect((await fetch(tampered, { headers: { cookie: cookiesOf(start).join('; ') }, redirect: 'manual' })).status).toBe(400);
  });

  test('a wrong admin token is refused', async () => {
    const r = await postForm(rig.base, '/ui/signin/admin', undefined, { token: 'not-the-token' });
    expect(r.status).toBe(401);
    expect(r.body).toContain('That admin token is not accepted.');
    expect(r.headers.getSetCookie()).toEqual([]);
  });

  test('cookies are HttpOnly and SameSite; over TLS (a trusted proxy) Secure with the __Host- prefix', async () => {
    const start = await fetch(`${rig.base}/ui/signin/oidc`, { redirect: 'manual' });
    expect(start.headers.getSetCookie()[0]).toMatch(/^dg-login=[^;]+; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax$/);
    const r = await postForm(rig.base, '/ui/signin/admin', undefined, { token: ADMIN_TOKEN });
    expect(r.headers.getSetCookie()[0]).toMatch(/^dg-session=[^;]+; Path=\/; Max-Age=28800; HttpOnly; SameSite=Lax$/);

    const tls = await startConsoleRig({ accounts: {}, spec: (issuer) => spec(issuer), trustProxy: true });
    try {
      const res = await fetch(`${tls.base}/ui/signin/admin`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-proto': 'https', origin: tls.base.replace('http:', 'https:') },
        body: new URLSearchParams({ token: ADMIN_TOKEN }),
        redirect: 'manual',
      });
      expect(res.status).toBe(303);
      expect(res.headers.getSetCookie()[0]).toMatch(/^__Host-dg-session=[^;]+; Path=\/; Max-Age=28800; HttpOnly; SameSite=Lax; Secure$/);
    } finally {
      await tls.close();
      // The SDK reads moto's address from the process's environment: back to this file's moto.
      useMotoAdmin(rig.moto);
    }
  });
});

describe('changes', () => {
  test('a change without the CSRF token, with another session’s, or from another origin is refused and changes nothing', async () => {
    const before = await rig.cli('requests', 'list');
    const ask = { dataset: 'training', access: 'write', duration: '1h', reason: 'csrf probe' };
    const none = await postForm(rig.base, '/ui/requests', carol, { ...ask, _csrf: '' });
    expect(none.status).toBe(403);
    expect(none.body).toContain('did not come from your console session');
    expect((await postForm(rig.base, '/ui/requests', carol, { ...ask, _csrf: bob.csrf })).status).toBe(403);
    const otherSite = await postForm(rig.base, '/ui/requests', carol, ask, { origin: 'https://evil.example' });
    expect(otherSite.status).toBe(403);
    expect(await rig.cli('requests', 'list')).toBe(before);
    // Signing out needs the token too (no one signs you out from another site).
    expect((await postForm(rig.base, '/ui/signout', carol, { _csrf: 'x' })).status).toBe(403);
    expect((await getPage(rig.base, '/ui/requests', carol)).status).toBe(200);
  });

  test('the requester cannot approve their own request; the approver can; an operator cannot', async () => {
    const made = await postForm(rig.base, '/ui/requests', carol, { dataset: 'training', access: 'read', duration: '1h', reason: 'evaluate' });
    expect(made.status, made.body).toBe(303);
    const id = /made=(\d+)/.exec(made.location!)![1]!;
    const own = await postForm(rig.base, `/ui/requests/${id}/decide`, carol, { decision: 'approve', reason: 'I need it' });
    expect(own.status).toBe(403);
    expect(own.body).toContain(`carol cannot approve their own request #${id}`);
    const op = await postForm(rig.base, `/ui/requests/${id}/decide`, admin, { decision: 'approve', reason: 'ops' });
    expect(op.status).toBe(403);
    expect(op.body).toContain('an operator is not one of them');
    expect(await rig.cli('requests', 'list')).toMatch(new RegExp(`#${id} +pending`));
    // Nor may anyone else withdraw it.
    expect((await postForm(rig.base, `/ui/requests/${id}/cancel`, alice, {})).status).toBe(403);
    const ok = await postForm(rig.base, `/ui/requests/${id}/decide`, bob, { decision: 'deny', reason: 'use the sample' });
    expect(ok.status).toBe(303);
    expect(await rig.cli('requests', 'list')).toMatch(new RegExp(`#${id} +denied`));
  });
});

describe('who sees what', () => {
  test("a person sees their own credentials (never the secret), not another person's", async () => {
    const key = JSON.parse(await rig.cli('credentials', 'export', 'alice', '--format', 'json')) as { AccessKeyId: string; SecretAccessKey: string };
    const own = await getPage(rig.base, '/ui/principals/alice', alice);
    expect(own.status).toBe(200);
    expect(own.body).toContain(key.AccessKeyId);
    expect(own.body).not.toContain(key.SecretAccessKey);
    const other = await getPage(rig.base, '/ui/principals/alice', carol);
    expect(other.status).toBe(200);
    expect(other.body).toContain('read');
    expect(other.body).not.toContain(key.AccessKeyId);
    expect(other.body).toContain('Credentials and history are shown only to alice and to operators.');
    const op = await getPage(rig.base, '/ui/principals/alice', admin);
    expect(op.body).toContain(key.AccessKeyId);
    expect(op.body).not.toContain(key.SecretAccessKey);
    // Nothing the console answers holds a secret.
    for (const path of PAGES) expect((await getPage(rig.base, path, admin)).body, path).not.toContain(key.SecretAccessKey);
    expect((await getPage(rig.base, '/ui/data/matrix', admin)).body).not.toContain(key.SecretAccessKey);
  });

  test('plan and audit log are for operators; every answer carries a strict CSP', async () => {
    for (const path of ['/ui/plan', '/ui/audit']) {
      const r = await getPage(rig.base, path, alice);
      expect(r.status, path).toBe(403);
      expect(r.body).toContain('for operators');
    }
    const refresh = await postForm(rig.base, '/ui/access/refresh', alice, {});
    expect(refresh.status).toBe(403);
    // What the backend holds (unmanaged holders, their policies) is the operators' to see.
    const read = await postForm(rig.base, '/ui/access/refresh', admin, { next: '/ui/datasets/training' });
    expect(read.status, read.body).toBe(303);
    expect((await getPage(rig.base, '/ui/datasets/training', admin)).body).toContain('moto-admin');
    const seen = (await getPage(rig.base, '/ui/datasets/training', alice)).body;
    expect(seen).not.toContain('moto-admin');
    expect(seen).toContain('is shown to operators');
    const audit = await getPage(rig.base, '/ui/audit', admin);
    expect(audit.status).toBe(200);
    expect(audit.body).toContain('Chain intact');
    for (const path of ['/ui', '/ui/signin', '/ui/requests']) {
      const r = await getPage(rig.base, path, alice);
      expect(r.headers.get('content-security-policy'), path).toBe(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      );
      expect(r.headers.get('x-frame-options')).toBe('DENY');
      expect(r.headers.get('cache-control')).toBe('no-store');
      expect(r.body).not.toMatch(/<script(?![^>]*\bsrc=)/);
      expect(r.body).not.toMatch(/\sstyle=/);
    }
  });

  test('a person removed from the spec is signed out at their next click', async () => {
    expect((await getPage(rig.base, '/ui', carol)).status).toBe(200);
    rig.writeSpec(spec(rig.idp.issuer, false));
    try {
      const r = await getPage(rig.base, '/ui', carol);
      expect(r.status).toBe(303);
      expect(r.location).toMatch(/^\/ui\/signin/);
      expect((await postForm(rig.base, '/ui/requests', carol, { dataset: 'training', access: 'read', duration: '1h', reason: 'x' })).status).toBe(401);
    } finally {
      rig.writeSpec(spec(rig.idp.issuer));
    }
  });
});
