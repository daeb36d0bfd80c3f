// `datagrant login` and `credentials export --server` against a real OpenID Provider and a real
// `datagrant serve` (test/support/login-rig.ts): the device flow as the person does it on the
// provider's pages, the login file kept like an ssh key, sessions printed for credential_process
// (which the AWS SDK's own provider chain then calls), renewal with the refresh token, and clear
// errors — with nothing secret on stderr. credential_process runs the built CLI: `npm run build` first.
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { browserFlow, deviceFlow, discover, type HttpDeps } from '../../src/cli/session/oidc-client.js';
import { startBlackHole } from '../support/black-hole.js';
import { workspace, type CliResult, type Workspace } from '../support/cli.js';
import { startLoginRig, type LoginRig } from '../support/login-rig.js';
import { freePort } from '../support/moto.js';
import { startIdp } from '../support/oidc.js';

const root = resolve(import.meta.dirname, '../..');
const OFFLINE = ['--scope', 'openid email offline_access'];

let rig: LoginRig;
let ws: Workspace;
/** Everything any command printed on stderr, scanned at the end for tokens and secrets. */
const stderrSeen: string[] = [];
const tokensSeen: string[] = [];

beforeAll(async () => {
  rig = await startLoginRig();
});
afterAll(async () => {
  await rig?.close();
});
afterEach(() => ws?.cleanup());

function freshWorkspace(): Workspace {
  ws = workspace();
  ws.env.XDG_CONFIG_HOME = join(ws.dir, 'config');
  return ws;
}
const loginFile = () => join(ws.dir, 'config', 'datagrant', 'sessions.json');
const stored = () => JSON.parse(readFileSync(loginFile(), 'utf8')).logins[rig.serve.url];
const remember = (r: CliResult) => {
  stderrSeen.push(r.stderr);
  return r;
};
async function login(account: string, ...extra: string[]): Promise<CliResult> {
  const r = remember(await rig.login(ws, account, ...extra));
  expect(r.stderr).toMatch(/To sign in, open http:\/\/127\.0\.0\.1:\d+\/device and enter the code [A-Z]{4}-[A-Z]{4}/);
  expect(r.code).toBe(0);
  const s = stored();
  tokensSeen.push(s.idToken, ...(s.refreshToken ? [s.refreshToken] : []));
  return r;
}
const exportSession = async (...args: string[]) => remember(await ws.run('credentials', 'export', 'alice', '--server', rig.serve.url, ...args));

describe('datagrant login (device flow)', () => {
  test('stores the ID token and the refresh token for the server in a 0600 file in a 0700 directory', async () => {
    freshWorkspace();
    const r = await login('alice', ...OFFLINE);
    expect(r.stdout).toBe(`Logged in to ${rig.serve.url} as alice@example.com. The login is renewed as needed until your identity provider ends it.\n`);

    expect(statSync(loginFile()).mode & 0o777).toBe(0o600);
    expect(statSync(join(ws.dir, 'config', 'datagrant')).mode & 0o777).toBe(0o700);
    const s = stored();
    expect(decodeJwt(s.idToken)).toMatchObject({ iss: rig.idp.issuer, aud: rig.idp.cliClientId, sub: 'u-alice', email: 'alice@example.com' });
    expect(s).toMatchObject({ issuer: rig.idp.issuer, clientId: rig.idp.cliClientId, who: 'alice@example.com', refreshToken: expect.any(String) });
    expect(new Date(s.expiresAt).getTime()).toBe((decodeJwt(s.idToken).exp ?? 0) * 1000);
  });

  test('without offline_access this provider issues no refresh token, and login says when to log in again', async () => {
    freshWorkspace();
    const r = await login('alice');
    expect(stored().refreshToken).toBeUndefined();
    expect(r.stdout).toMatch(/The ID token is valid until \S+Z; then run `datagrant login` again .*--scope "openid email offline_access"/);
  });

  test('a second login reuses the issuer and client id stored for the server', async () => {
    freshWorkspace();
    await login('alice');
    let approval: Promise<void> | undefined;
    ws.onStderr = (chunk) => {
      const code = /enter the code (\S+)/.exec(chunk)?.[1];
      if (code) approval ??= rig.idp.approveDevice(code, 'alice');
    };
    const again = remember(await ws.run('login', '--server', rig.serve.url));
    await approval;
    expect(again.code).toBe(0);
    expect(stored().who).toBe('alice@example.com');
    const other = remember(await ws.run('login', '--server', 'http://127.0.0.1:9'));
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/the first login to http:\/\/127\.0\.0\.1:9 needs --issuer-url .* and --client-id/);
  });

  test('a server or issuer on plain http beyond this machine is refused before anything is sent', async () => {
    freshWorkspace();
    const r = remember(await ws.run('login', '--server', 'http://datagrant.example.com', '--issuer-url', rig.idp.issuer, '--client-id', 'x'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the server http:\/\/datagrant\.example\.com must be https:\/\//);
    const issuer = remember(await ws.run('login', '--server', rig.serve.url, '--issuer-url', 'http://login.example.com', '--client-id', 'x'));
    expect(issuer.stderr).toMatch(/the issuer http:\/\/login\.example\.com must be https:\/\//);
  });
});

describe('the device flow, polled as RFC 8628 says (real provider, clock and waits recorded)', () => {
  /** A clock that moves only when the client waits, so waits can be checked without taking them. */
  function recordingDeps(onWait?: () => Promise<void>): HttpDeps & { waits: number[] } {
    let now = Date.now();
    const waits: number[] = [];
    return {
      waits,
      timeoutMs: 5000,
      now: () => new Date(now),
      sleep: async (ms) => {
        waits.push(ms);
        now += ms;
        await onWait?.();
      },
    };
  }

  test("waits the provider's interval, and 5 s more after each slow_down", async () => {
    const idp = await startIdp({ accounts: { alice: { sub: 'u-alice', email: 'alice@example.com' } }, deviceInterval: 2 });
    try {
      let approval: Promise<void> | undefined;
      const deps = recordingDeps(async () => approval);
      idp.slowDown(1);
      const ep = await discover(idp.issuer, deps);
      const tokens = await deviceFlow(
        ep,
        { clientId: idp.cliClientId, scope: 'openid email' },
        (p) => void (approval = idp.approveDevice(p.userCode, 'alice')),
        deps,
      );
      expect(decodeJwt(tokens.idToken).sub).toBe('u-alice');
      expect(idp.tokenRequests).toEqual(['(any) slow_down', 'device_code ok']);
      expect(deps.waits).toEqual([2000, 7000]);
    } finally {
      await idp.close();
    }
  });

  test('without an interval in the answer it waits 5 s; a pending sign-in is polled again', async () => {
    const idp = await startIdp({ accounts: { alice: { sub: 'u-alice' } } });
    try {
      let polls = 0;
      let approval: Promise<void> | undefined;
      let code = '';
      const deps = recordingDeps(async () => {
        // The person approves only after the client has polled once and heard "pending".
        if (++polls === 2) approval = idp.approveDevice(code, 'alice');
        await approval;
      });
      const ep = await discover(idp.issuer, deps);
      await deviceFlow(ep, { clientId: idp.cliClientId, scope: 'openid' }, (p) => (code = p.userCode), deps);
      expect(idp.tokenRequests).toEqual(['device_code authorization_pending', 'device_code ok']);
      expect(deps.waits).toEqual([5000, 5000]);
    } finally {
      await idp.close();
    }
  });

  test('gives up when the code expires (expires_in), and says so', async () => {
    const idp = await startIdp({ accounts: { alice: { sub: 'u-alice' } }, deviceInterval: 30, deviceCodeTtlSeconds: 100 });
    try {
      const deps = recordingDeps();
      const ep = await discover(idp.issuer, deps);
      await expect(deviceFlow(ep, { clientId: idp.cliClientId, scope: 'openid' }, () => undefined, deps)).rejects.toThrow(
        'the code expired before the sign-in finished (it was valid for 2 min); run `datagrant login` again',
      );
      // Polled at 30, 60 and 90 s; at 120 s the code is gone and it is not asked again.
      expect(idp.tokenRequests).toEqual(Array(3).fill('device_code authorization_pending'));
    } finally {
      await idp.close();
    }
  });

  test('a person who aborts at the provider gets "declined", and nothing is stored', async () => {
    freshWorkspace();
    let denial: Promise<void> | undefined;
    ws.onStderr = (chunk) => {
      const code = /enter the code (\S+)/.exec(chunk)?.[1];
      if (code) denial ??= rig.idp.approveDevice(code, 'alice', { deny: true });
    };
    const r = remember(await ws.run('login', '--server', rig.serve.url, '--issuer-url', rig.idp.issuer, '--client-id', rig.idp.cliClientId));
    await denial;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Error: the sign-in was declined at the identity provider; nothing was stored/);
    expect(() => statSync(loginFile())).toThrow(/ENOENT/);
  });
});

describe('datagrant login --browser (authorization code + PKCE, loopback redirect)', () => {
  test('the browser signs in and the loopback listener takes the code', async () => {
    freshWorkspace();
    let browsing: Promise<void> | undefined;
    ws.onStderr = (chunk) => {
      const url = /visit:\n\s+(\S+)/.exec(chunk)?.[1];
      if (url) browsing ??= rig.idp.browse(url, 'alice');
    };
    const r = remember(
      await ws.run('login', '--browser', '--server', rig.serve.url, '--issuer-url', rig.idp.issuer, '--client-id', rig.idp.cliClientId, ...OFFLINE),
    );
    await browsing;
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/code_challenge_method=S256/);
    expect(r.stderr).toMatch(/redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A\d+%2Fcallback/);
    expect(stored()).toMatchObject({ who: 'alice@example.com', refreshToken: expect.any(String) });
    tokensSeen.push(stored().idToken, stored().refreshToken);
  });

  test('an answer carrying another state is not taken; the one for this sign-in is', async () => {
    const deps = { now: () => new Date(), sleep: async () => undefined, timeoutMs: 5000, waitMs: 10_000 };
    const ep = await discover(rig.idp.issuer, deps);
    const got = await browserFlow(
      ep,
      { clientId: rig.idp.cliClientId, scope: 'openid email' },
      (url) => {
        const redirect = new URL(new URL(url).searchParams.get('redirect_uri')!);
        void (async () => {
          const forged = await fetch(`${redirect.href}?code=forged&state=not-this-one`);
          expect(forged.status).toBe(400);
          await rig.idp.browse(url, 'alice');
        })();
      },
      deps,
    );
    expect(decodeJwt(got.idToken)).toMatchObject({ sub: 'u-alice', nonce: got.nonce });
  });
});

describe('credentials export --server', () => {
  test('prints the credential_process JSON of the session serve issued for the token, and nothing else', async () => {
    freshWorkspace();
    await login('alice');
    const before = rig.broker.requests.length;
    const r = await exportSession('--backend', 'aws', '--format', 'json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const issued = rig.broker.issued.at(-1)!;
    expect(issued.kind).toBe('aws');
    if (issued.kind !== 'aws') return;
    expect(r.stdout).toBe(
      `${JSON.stringify({ Version: 1, AccessKeyId: issued.accessKeyId, SecretAccessKey: issued.secretAccessKey, SessionToken: issued.sessionToken, Expiration: issued.expiration })}\n`,
    );
    expect(rig.broker.requests.slice(before)).toEqual([{ backend: 'aws', principal: 'alice', source: 'oidc', subject: 'u-alice', issuer: 'corp' }]);
  });

  test('--format env: AWS_* for an AWS session, PG* for a PostgreSQL login; DATAGRANT_SERVER stands for --server', async () => {
    freshWorkspace();
    await login('alice');
    const aws = await exportSession('--backend', 'aws', '--format', 'env');
    const a = rig.broker.issued.at(-1)!;
    if (a.kind !== 'aws') throw new Error('expected an AWS session');
    expect(aws.stdout).toBe(
      `AWS_ACCESS_KEY_ID=${a.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${a.secretAccessKey}\nAWS_SESSION_TOKEN=${a.sessionToken}\nAWS_CREDENTIAL_EXPIRATION=${a.expiration}\n`,
    );
    ws.env.DATAGRANT_SERVER = rig.serve.url;
    const pg = remember(await ws.run('credentials', 'export', 'alice', '--backend', 'warehouse', '--format', 'env'));
    expect(pg.code).toBe(0);
    const p = rig.broker.issued.at(-1)!;
    if (p.kind !== 'postgres') throw new Error('expected a PostgreSQL login');
    expect(pg.stdout).toBe(`PGHOST=127.0.0.1\nPGPORT=5432\nPGDATABASE=analytics\nPGUSER=${p.user}\nPGPASSWORD=${p.password}\n`);
  });

  test("the AWS SDK's default provider chain, through a credential_process profile, gets the session", async () => {
    freshWorkspace();
    await login('alice');
    const config = join(ws.dir, 'aws-config');
    writeFileSync(
      config,
      `[profile dg]\ncredential_process = ${process.execPath} ${join(root, 'bin/datagrant.js')} credentials export alice --server ${rig.serve.url} --backend aws --format json\n`,
    );
    const saved = { ...process.env };
    // The SDK reads its profile from the environment, and datagrant (run by the SDK) reads its login file from there too.
    for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
    Object.assign(process.env, {
      AWS_CONFIG_FILE: config,
      AWS_SHARED_CREDENTIALS_FILE: join(ws.dir, 'no-credentials'),
      AWS_PROFILE: 'dg',
      XDG_CONFIG_HOME: ws.env.XDG_CONFIG_HOME,
    });
    try {
      const s3 = new S3Client({ region: 'us-east-1' });
      const got = await s3.config.credentials();
      const issued = rig.broker.issued.at(-1)!;
      if (issued.kind !== 'aws') throw new Error('expected an AWS session');
      expect(got).toMatchObject({
        accessKeyId: issued.accessKeyId,
        secretAccessKey: issued.secretAccessKey,
        sessionToken: issued.sessionToken,
        expiration: new Date(issued.expiration),
      });
      expect(rig.broker.requests.at(-1)).toMatchObject({ principal: 'alice', backend: 'aws', source: 'oidc' });
      s3.destroy();
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });

  test('an expired login without a refresh token: "run datagrant login", nothing on stdout, serve not asked', async () => {
    freshWorkspace();
    await login('alice');
    const expiresAt = stored().expiresAt;
    ws.now = () => new Date(new Date(expiresAt).getTime() + 1000);
    const before = rig.broker.requests.length;
    const r = await exportSession('--backend', 'aws', '--format', 'json');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`Error: your login to ${rig.serve.url} expired at ${expiresAt}: run \`datagrant login --server ${rig.serve.url}\`\n`);
    expect(rig.broker.requests.length).toBe(before);
  });

  test('an expired login is renewed with the refresh token, once for two exports at the same moment', async () => {
    freshWorkspace();
    await login('alice', ...OFFLINE);
    const old = stored();
    // The file says the token has run out (as it would an hour later); the provider's refresh token is good.
    writeFileSync(loginFile(), JSON.stringify({ version: 1, logins: { [rig.serve.url]: { ...old, expiresAt: new Date(Date.now() - 1000).toISOString() } } }), {
      mode: 0o600,
    });
    const refreshesBefore = rig.idp.tokenRequests.filter((t) => t === 'refresh_token ok').length;
    const [a, b] = await Promise.all([exportSession('--backend', 'aws', '--format', 'json'), exportSession('--backend', 'aws', '--format', 'json')]);
    expect([a.code, b.code, a.stderr, b.stderr]).toEqual([0, 0, '', '']);
    expect(rig.idp.tokenRequests.filter((t) => t === 'refresh_token ok').length).toBe(refreshesBefore + 1);
    const renewed = stored();
    tokensSeen.push(renewed.idToken, renewed.refreshToken);
    // (The new ID token may be byte for byte the old one: RS256 is deterministic and iat counts seconds.)
    // oidc-provider rotates a public client's refresh token: the new one is kept.
    expect(renewed.refreshToken).not.toBe(old.refreshToken);
    expect(new Date(renewed.expiresAt).getTime()).toBeGreaterThan(Date.now());
    expect(statSync(loginFile()).mode & 0o777).toBe(0o600);
  });

  test('a refresh token the provider no longer takes: "run datagrant login"', async () => {
    freshWorkspace();
    await login('alice', ...OFFLINE);
    const s = stored();
    writeFileSync(
      loginFile(),
      JSON.stringify({
        version: 1,
        logins: { [rig.serve.url]: { ...s, refreshToken: 'revoked-refresh-token', expiresAt: new Date(Date.now() - 1000).toISOString() } },
      }),
      { mode: 0o600 },
    );
    const r = await exportSession('--backend', 'aws', '--format', 'json');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      new RegExp(
        `^Error: your login to ${rig.serve.url} expired and cannot be renewed \\(invalid_grant .*\\): run \`datagrant login --server ${rig.serve.url}\`\\n$`,
      ),
    );
  });

  test('a login file open to other users is refused, by export and by login alike', async () => {
    freshWorkspace();
    await login('alice');
    chmodSync(loginFile(), 0o644);
    const before = rig.broker.requests.length;
    const r = await exportSession('--backend', 'aws', '--format', 'json');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(
      `Error: ${loginFile()} is open to other users (mode 0644) and holds your login tokens: refused. Run \`chmod 600 ${loginFile()}\``,
    );
    expect(rig.broker.requests.length).toBe(before);
    const again = remember(await ws.run('login', '--server', rig.serve.url));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('is open to other users (mode 0644)');
    chmodSync(join(ws.dir, 'config', 'datagrant'), 0o777);
    chmodSync(loginFile(), 0o600);
    const dir = await exportSession('--backend', 'aws', '--format', 'json');
    expect(dir.stderr).toContain('is writable by other users (mode 0777), who could replace your login file: refused');
  });

  test("serve's refusals reach the person as clear errors: 401, 403 with serve's words, 404", async () => {
    freshWorkspace();
    await login('bob');
    const forBob = await exportSession('--backend', 'aws', '--format', 'json');
    expect(forBob.code).toBe(1);
    expect(forBob.stdout).toBe('');
    expect(forBob.stderr).toBe(`Error: ${rig.serve.url} refused a session on backend aws: no principal is named by this token's email\n`);

    freshWorkspace();
    await login('alice');
    const noBackend = await exportSession('--backend', 'nosuch', '--format', 'json');
    expect(noBackend.stderr).toBe(`Error: ${rig.serve.url}: there is no backend "nosuch"\n`);

    // A token serve cannot verify (here: its signature broken), valid by the file's clock, and no refresh token.
    const s = stored();
    const [h, p] = s.idToken.split('.');
    writeFileSync(loginFile(), JSON.stringify({ version: 1, logins: { [rig.serve.url]: { ...s, idToken: `${h}.${p}.AAAA` } } }), { mode: 0o600 });
    const refused = await exportSession('--backend', 'aws', '--format', 'json');
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(
      new RegExp(`^Error: your login expired or was refused by ${rig.serve.url} \\(.+\\): run \`datagrant login --server ${rig.serve.url}\`\\n$`),
    );
  });

  test('a server that is down, or never answers, fails within the deadline, naming it', async () => {
    freshWorkspace();
    await login('alice');
    const s = stored();
    const hole = await startBlackHole();
    const closed = `http://127.0.0.1:${await freePort()}`;
    const silent = `http://127.0.0.1:${hole.port}`;
    try {
      writeFileSync(loginFile(), JSON.stringify({ version: 1, logins: { [closed]: s, [silent]: s } }), { mode: 0o600 });
      const down = remember(await ws.run('credentials', 'export', 'alice', '--server', closed, '--backend', 'aws', '--format', 'json'));
      expect(down.code).toBe(1);
      expect(down.stderr).toBe(`Error: datagrant serve at ${closed}: cannot connect (ECONNREFUSED)\n`);
      const started = Date.now();
      const hung = remember(await ws.run('credentials', 'export', 'alice', '--server', silent, '--backend', 'aws', '--format', 'json', '--timeout', '1'));
      expect(hung.stderr).toBe(`Error: datagrant serve at ${silent}: no answer within 1 s\n`);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(hung.stdout + down.stdout).toBe('');
    } finally {
      await hole.close();
    }
  });

  test("a workload's token file stands for a login: read for each session, refused tokens named by file", async () => {
    freshWorkspace();
    const tokenFile = join(ws.dir, 'token');
    writeFileSync(tokenFile, `${await rig.idToken('alice')}\n`);
    const r = await exportSession('--backend', 'aws', '--format', 'json', '--id-token-file', tokenFile);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ Version: 1, AccessKeyId: (rig.broker.issued.at(-1) as { accessKeyId: string }).accessKeyId });
    expect(rig.broker.requests.at(-1)).toMatchObject({ principal: 'alice', subject: 'u-alice' });
    // No login was needed, and none was written.
    expect(() => statSync(loginFile())).toThrow(/ENOENT/);

    writeFileSync(tokenFile, 'not.a.token\n');
    const refused = await exportSession('--backend', 'aws', '--format', 'json', '--id-token-file', tokenFile);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`^Error: ${rig.serve.url} refused the ID token in ${tokenFile} \\(.+\\); the platform that writes that file renews it\\n$`),
    );
    const missing = await exportSession('--backend', 'aws', '--format', 'json', '--id-token-file', join(ws.dir, 'nothing'));
    expect(missing.stderr).toBe(`Error: cannot read the ID token file ${join(ws.dir, 'nothing')}: ENOENT\n`);
  });

  test('--backend is required with --server, and a principal without a login is told to log in', async () => {
    freshWorkspace();
    const notLoggedIn = await exportSession('--backend', 'aws', '--format', 'json');
    expect(notLoggedIn.stderr).toMatch(
      new RegExp(`^Error: you are not logged in to ${rig.serve.url}: run \`datagrant login --server ${rig.serve.url} --issuer-url`),
    );
    await login('alice');
    const noBackend = await exportSession('--format', 'json');
    expect(noBackend.code).toBe(1);
    expect(noBackend.stderr).toMatch(/--backend is required with --server/);
  });
});

test("nothing secret on stderr, ever: no session's secret, no ID or refresh token, in any command's above", () => {
  const all = stderrSeen.join('\n');
  expect(stderrSeen.length).toBeGreaterThan(10);
  expect(rig.broker.secrets.length).toBeGreaterThan(0);
  for (const s of [...rig.broker.secrets, ...tokensSeen]) expect(all).not.toContain(s);
  for (const t of tokensSeen.filter((t) => t.split('.').length === 3)) expect(all).not.toContain(t.split('.')[2]);
});
