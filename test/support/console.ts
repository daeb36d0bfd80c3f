// A browser's part in the web console, by hand (fetch, no redirects followed): signing in through
// the test OpenID provider or with the admin token, and the session cookie and CSRF token that
// result. For tests of what the server answers; test/e2e/console-chromium.test.ts drives a real one.
import type { TestIdp } from './oidc.js';

export interface ConsoleUser {
  /** The Cookie header of the signed-in session. */
  cookie: string;
  /** The session's CSRF token, as its pages' forms carry it. */
  csrf: string;
}

/** The cookies a response sets, as a Cookie header's name=value pairs (an emptied one is left out). */
export function cookiesOf(res: Response): string[] {
  return res.headers
    .getSetCookie()
    .map((c) => c.split(';')[0]!)
    .filter((c) => !c.endsWith('='));
}

export async function csrfOf(base: string, cookie: string): Promise<string> {
  const res = await fetch(`${base}/ui/requests`, { headers: { cookie }, redirect: 'manual' });
  const m = /name="_csrf" value="([^"]+)"/.exec(await res.text());
  if (!m) throw new Error(`no CSRF token in /ui/requests (HTTP ${res.status})`);
  return m[1]!;
}

/** Signs `login` in through the provider, as a browser would; throws when the console refuses. */
export async function signInPerson(base: string, idp: TestIdp, login: string): Promise<ConsoleUser> {
  const start = await fetch(`${base}/ui/signin/oidc?next=/ui`, { redirect: 'manual' });
  if (start.status !== 302) throw new Error(`sign-in did not redirect to the provider: ${start.status} ${await start.text()}`);
  const loginCookie = cookiesOf(start).join('; ');
  const back = await idp.authorize(start.headers.get('location')!, login);
  const done = await fetch(back, { headers: { cookie: loginCookie }, redirect: 'manual' });
  if (done.status !== 303) throw new Error(`the console refused the sign-in: ${done.status} ${(await done.text()).slice(0, 2000)}`);
  const cookie = cookiesOf(done).join('; ');
  return { cookie, csrf: await csrfOf(base, cookie) };
}

export async function signInAdmin(base: string, token: string): Promise<ConsoleUser> {
  const res = await fetch(`${base}/ui/signin/admin`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
    body: new URLSearchParams({ token, next: '/ui' }),
    redirect: 'manual',
  });
  if (res.status !== 303) throw new Error(`operator sign-in refused: ${res.status}`);
  const cookie = cookiesOf(res).join('; ');
  return { cookie, csrf: await csrfOf(base, cookie) };
}

/** POSTs a console form as `user` (with its CSRF token unless `form` says otherwise). */
export async function postForm(base: string, path: string, user: ConsoleUser | undefined, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base, ...(user ? { cookie: user.cookie } : {}), ...headers },
    body: new URLSearchParams(user && !('_csrf' in form) ? { _csrf: user.csrf, ...form } : form),
    redirect: 'manual',
  });
  return { status: res.status, location: res.headers.get('location'), body: await res.text(), headers: res.headers };
}

export async function getPage(base: string, path: string, user?: ConsoleUser) {
  const res = await fetch(`${base}${path}`, { headers: user ? { cookie: user.cookie } : {}, redirect: 'manual' });
  return { status: res.status, location: res.headers.get('location'), body: await res.text(), headers: res.headers };
}
