// `datagrant exec NAME --server URL -- command`: the command runs with the principal's session and
// nothing more of datagrant's environment. For AWS its SDK finds a profile whose credential_process
// calls datagrant back (so sessions renew as they run out), or with --env the session itself; for
// PostgreSQL PGUSER/PGPASSWORD. Exit codes and signals pass through. The command runs the built
// CLI (credential_process): `npm run build` first.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { workspace, type Workspace } from '../support/cli.js';
import { startLoginRig, type LoginRig } from '../support/login-rig.js';

const root = resolve(import.meta.dirname, '../..');

let rig: LoginRig;
let ws: Workspace;
beforeAll(async () => {
  rig = await startLoginRig();
});
afterAll(async () => {
  await rig?.close();
});
afterEach(() => ws?.cleanup());

/** Logged in as alice, with what a person's shell might hold: an admin key, a profile, a PostgreSQL password, the master key. */
async function aliceLoggedIn(): Promise<Workspace> {
  ws = workspace({
    AWS_ACCESS_KEY_ID: 'AKIAADMINKEY',
    AWS_SECRET_ACCESS_KEY: 'admin-secret',
    AWS_PROFILE: 'admin',
    PGPASSWORD: 'admin-pg-password',
    DATAGRANT_MASTER_KEY: 'c'.repeat(64),
  });
  ws.env.XDG_CONFIG_HOME = join(ws.dir, 'config');
  const r = await rig.login(ws, 'alice');
  expect(r.code).toBe(0);
  return ws;
}

/**
 * A command that reports what it got: its environment, the AWS config file it was pointed at, and
 * (with `sdk`) the credentials the AWS SDK's default provider chain resolves; then exits with `code`.
 */
function probe(
  mode: 'sdk' | 'env',
  code: number,
): { command: string[]; report: () => { env: Record<string, string>; config: string | null; credentials?: Record<string, unknown>; error?: string } } {
  const out = join(ws.dir, `report-${Math.random().toString(36).slice(2)}.json`);
  const script = join(ws.dir, 'probe.cjs');
  writeFileSync(
    script,
    `const { readFileSync, writeFileSync } = require('node:fs');
const { S3Client } = require(require.resolve('@aws-sdk/client-s3', { paths: [${JSON.stringify(root)}] }));
(async () => {
  const [out, mode, code] = process.argv.slice(2);
  let credentials, error;
  if (mode === 'sdk') {
    try { credentials = await new S3Client({ region: 'us-east-1' }).config.credentials(); } catch (e) { error = String(e); }
  }
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(AWS_|PG|DATAGRANT_)/.test(k)));
  const config = env.AWS_CONFIG_FILE ? readFileSync(env.AWS_CONFIG_FILE, 'utf8') : null;
  writeFileSync(out, JSON.stringify({ env, config, credentials, error }));
  process.exit(Number(code));
})();
`,
  );
  return { command: [process.execPath, script, out, mode, String(code)], report: () => JSON.parse(readFileSync(out, 'utf8')) };
}

test("AWS: the command's SDK gets sessions through a credential_process profile; none of the shell's credentials reach it", async () => {
  await aliceLoggedIn();
  const p = probe('sdk', 7);
  const before = rig.broker.issued.length;
  const r = await ws.run('exec', 'alice', '--server', rig.serve.url, '--backend', 'aws', '--', ...p.command);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(7);
  const got = p.report();
  expect(got.error).toBeUndefined();
  // exec's own session (the check before the command starts), then the one the SDK fetched through credential_process.
  const [first, viaProcess] = rig.broker.issued.slice(before);
  expect(rig.broker.issued.length).toBe(before + 2);
  if (viaProcess?.kind !== 'aws' || first?.kind !== 'aws') throw new Error('expected AWS sessions');
  expect(got.credentials).toMatchObject({
    accessKeyId: viaProcess.accessKeyId,
    secretAccessKey: viaProcess.secretAccessKey,
    sessionToken: viaProcess.sessionToken,
  });
  expect(got.env).toMatchObject({ AWS_PROFILE: 'datagrant', AWS_SDK_LOAD_CONFIG: '1' });
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'DATAGRANT_MASTER_KEY']) expect(got.env[k]).toBeUndefined();
  expect(got.config).toContain(`credentials export alice --server ${rig.serve.url} --backend aws --format json`);
  expect(got.config).not.toContain(first.secretAccessKey);
  // The temporary config is gone once the command has ended.
  expect(existsSync(got.env.AWS_CONFIG_FILE!)).toBe(false);
});

test("a workload's token file: the command's credential_process reads it too", async () => {
  ws = workspace();
  const tokenFile = join(ws.dir, 'token');
  writeFileSync(tokenFile, await rig.idToken('alice'));
  const p = probe('sdk', 0);
  const r = await ws.run('exec', 'alice', '--server', rig.serve.url, '--backend', 'aws', '--id-token-file', tokenFile, '--', ...p.command);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const got = p.report();
  expect(got.config).toContain(`--server ${rig.serve.url} --id-token-file ${tokenFile} --backend aws --format json`);
  expect(got.credentials).toMatchObject({ accessKeyId: (rig.broker.issued.at(-1) as { accessKeyId: string }).accessKeyId });
});

test('AWS --env: the session itself in AWS_ACCESS_KEY_ID/…, and no profile that would take precedence in some SDKs', async () => {
  await aliceLoggedIn();
  const p = probe('env', 0);
  const r = await ws.run('exec', 'alice', '--server', rig.serve.url, '--backend', 'aws', '--env', '--', ...p.command);
  expect(r.code).toBe(0);
  const s = rig.broker.issued.at(-1)!;
  if (s.kind !== 'aws') throw new Error('expected an AWS session');
  const { env } = p.report();
  expect(env).toMatchObject({
    AWS_ACCESS_KEY_ID: s.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s.secretAccessKey,
    AWS_SESSION_TOKEN: s.sessionToken,
    AWS_CREDENTIAL_EXPIRATION: s.expiration,
  });
  expect(env.AWS_PROFILE).toBeUndefined();
  expect(env.AWS_CONFIG_FILE).toBeUndefined();
});

test("PostgreSQL: the login in PGUSER/PGPASSWORD/PGHOST/…, replacing the shell's password; no AWS keys pass", async () => {
  await aliceLoggedIn();
  const p = probe('env', 0);
  ws.env.AWS_ACCESS_KEY_ID = 'AKIASHELLSHELLSHELL1';
  ws.env.AWS_SECRET_ACCESS_KEY = 'shell-secret-not-for-the-command';
  ws.env.AWS_PROFILE = 'admin';
  const r = await ws.run('exec', 'alice', '--server', rig.serve.url, '--backend', 'warehouse', '--', ...p.command);
  expect(r.code).toBe(0);
  const s = rig.broker.issued.at(-1)!;
  if (s.kind !== 'postgres') throw new Error('expected a PostgreSQL login');
  const env = p.report().env;
  expect(env).toMatchObject({ PGUSER: s.user, PGPASSWORD: s.password, PGHOST: '127.0.0.1', PGPORT: '5432', PGDATABASE: 'analytics' });
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_PROFILE']) expect(env[k], k).toBeUndefined();
});

test("signals reach the command, and its exit code (or 128 + the signal that ended it) is exec's", async () => {
  await aliceLoggedIn();
  const ready = join(ws.dir, 'ready');
  const heard = join(ws.dir, 'heard');
  const command = [
    process.execPath,
    '-e',
    `const fs = require('node:fs');
process.on('SIGTERM', () => { fs.writeFileSync(${JSON.stringify(heard)}, 'SIGTERM'); process.exit(3); });
fs.writeFileSync(${JSON.stringify(ready)}, 'ready');
setInterval(() => {}, 1000);`,
  ];
  const child = spawn(process.execPath, [join(root, 'bin/datagrant.js'), 'exec', 'alice', '--server', rig.serve.url, '--backend', 'aws', '--', ...command], {
    env: { ...ws.env, PATH: process.env.PATH },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  for (let i = 0; i < 200 && !existsSync(ready); i++) await new Promise((r) => setTimeout(r, 50));
  expect(existsSync(ready)).toBe(true);
  child.kill('SIGTERM');
  expect(await exited).toBe(3);
  expect(readFileSync(heard, 'utf8')).toBe('SIGTERM');
  expect(stderr).toBe('');

  const killed = await ws.run(
    'exec',
    'alice',
    '--server',
    rig.serve.url,
    '--backend',
    'aws',
    '--',
    process.execPath,
    '-e',
    "process.kill(process.pid, 'SIGKILL')",
  );
  expect(killed.code).toBe(128 + 9);
});

test('on a terminal, each Ctrl-C reaches the command once (the terminal signals its whole foreground group)', async () => {
  await aliceLoggedIn();
  const ready = join(ws.dir, 'ready');
  const count = join(ws.dir, 'count');
  // The command is busy (as a training step is) when the Ctrl-C comes: each SIGINT that reaches it
  // is taken at once and counted, so a second one sent on is not merged into the first.
  const child = `const fs = require('node:fs'); let n = 0;
process.on('SIGINT', () => n++);
fs.writeFileSync(${JSON.stringify(ready)}, 'ready');
const end = Date.now() + 2500; while (Date.now() < end) {}
setTimeout(() => { fs.writeFileSync(${JSON.stringify(count)}, String(n)); process.exit(0); }, 300);`;
  const line = [
    process.execPath,
    join(root, 'bin/datagrant.js'),
    'exec',
    'alice',
    '--server',
    rig.serve.url,
    '--backend',
    'aws',
    '--',
    process.execPath,
    '-e',
    child,
  ]
    .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
    .join(' ');
  // util-linux script(1) runs the line on a new pseudo-terminal and copies its own stdin to it:
  // a ^C written there is the terminal's interrupt character.
  // (`exec`: no shell stays between the terminal and datagrant to take the Ctrl-C itself.)
  const term = spawn('script', ['-qfec', `exec ${line}`, '/dev/null'], { env: { ...ws.env, PATH: process.env.PATH }, stdio: ['pipe', 'ignore', 'ignore'] });
  const exited = new Promise<number | null>((r) => term.on('exit', (code) => r(code)));
  for (let i = 0; i < 200 && !existsSync(ready); i++) await new Promise((r) => setTimeout(r, 50));
  expect(existsSync(ready)).toBe(true);
  // Three presses: a signal sent on is sometimes merged into the terminal's by the kernel (both
  // pending at once), so one press alone would not always show a second delivery.
  for (let i = 0; i < 3; i++) {
    term.stdin.write('\x03');
    await new Promise((r) => setTimeout(r, 300));
  }
  expect(await exited).toBe(0);
  expect(readFileSync(count, 'utf8')).toBe('3');
});

test('a command that does not exist: 127, as a shell says; a login that expired: the command never starts', async () => {
  await aliceLoggedIn();
  const missing = await ws.run('exec', 'alice', '--server', rig.serve.url, '--backend', 'aws', '--', 'no-such-command-for-datagrant');
  expect(missing.code).toBe(127);
  expect(missing.stderr).toBe('Error: cannot run "no-such-command-for-datagrant": no such command\n');

  ws.now = () => new Date(Date.now() + 24 * 3600_000);
  const p = probe('env', 0);
  const expired = await ws.run('exec', 'alice', '--server', rig.serve.url, '--backend', 'aws', '--', ...p.command);
  expect(expired.code).toBe(1);
  expect(expired.stderr).toMatch(/^Error: your login to \S+ expired at \S+: run `datagrant login --server \S+`\n$/);
  expect(() => p.report()).toThrow(/ENOENT/);
});

test('without --server (or DATAGRANT_SERVER) exec asks the broker on this state, which needs its spec', async () => {
  ws = workspace();
  const r = await ws.run('exec', 'alice', '--backend', 'aws', '--', 'true');
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(/datagrant\.yaml/);
  expect(r.stdout).toBe('');
});
