// `datagrant exec NAME -- command args…`: run a command with a principal's session.
//
// The environment of a running process cannot be changed from outside, so a session put into
// AWS_ACCESS_KEY_ID/… ends when it expires, however long the command runs. For AWS the command
// therefore gets no keys in its environment but a profile of its own — a temporary AWS config
// file whose `credential_process` calls `datagrant credentials export` back — and every AWS SDK
// and the AWS CLI fetch a new session through it whenever theirs runs out. `--env` puts the
// session itself into the environment instead, for tools that read only AWS_ACCESS_KEY_ID/…;
// it is then valid until its Expiration. Both at once would not do: the AWS CLI, boto3, and the
// Go and Java SDKs take keys from the environment before any profile, so they would never renew.
//
// A PostgreSQL session is a login (user and password) and libpq takes it when it connects:
// PGUSER/PGPASSWORD/…, valid until the login's VALID UNTIL (an open connection stays open).
//
// Whatever datagrant's own environment holds that would give the command other credentials (AWS
// keys or profiles, web identity, container credentials; the master key when serve issues the
// session) is not passed on: the command runs with the principal's access, and no more.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';
import type { IssuedSession } from '../../app/sessions-port.js';
import { UsageError } from '../../core/errors.js';
import { sessionSource, type RemoteSourceOptions, type SessionSource } from '../session/source.js';

export interface ExecOptions extends CommonOptions, RemoteSourceOptions {
  name: string;
  backend?: string;
  /** AWS: the session in the environment (not renewed) instead of a credential_process profile. */
  env?: boolean;
  command: string[];
}

/** Variables through which AWS SDKs would find credentials other than the session's. */
const AWS_CREDENTIAL_ENV = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_SECURITY_TOKEN',
  'AWS_CREDENTIAL_EXPIRATION',
  'AWS_PROFILE',
  'AWS_DEFAULT_PROFILE',
  'AWS_CONFIG_FILE',
  'AWS_SHARED_CREDENTIALS_FILE',
  'AWS_ROLE_ARN',
  'AWS_ROLE_SESSION_NAME',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
];
const PG_LOGIN_ENV = ['PGUSER', 'PGPASSWORD', 'PGPASSFILE', 'PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGSERVICE'];

/** The profile in the temporary config; the command's AWS_PROFILE. */
export const EXEC_PROFILE = 'datagrant';
/** Signals a person or a supervisor sends to stop or poke the command: passed on to it. */
const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2', 'SIGWINCH'];
/**
 * Signals a terminal sends to its whole foreground process group, the command included: on a
 * terminal they are not sent on a second time (one Ctrl-C is one SIGINT, as after sudo or a shell),
 * only kept from ending datagrant before the command.
 */
const FROM_TERMINAL = new Set<NodeJS.Signals>(['SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGWINCH']);

export async function execCommand(io: Io, opts: ExecOptions): Promise<number> {
  if (opts.command.length === 0) throw new UsageError('name the command to run after --, for example: datagrant exec alice --backend aws -- aws s3 ls');
  const source = await sessionSource(io, opts);
  // One session before the command starts: it proves the login and the principal's access now,
  // not at the command's first data access, and says what kind of backend it is.
  const session = await source.obtain({ principal: opts.name, ...(opts.backend ? { backend: opts.backend } : {}) });
  const prepared = environmentFor(io.env, source, session, opts);
  try {
    return await run(io, opts.command, prepared.env);
  } finally {
    prepared.cleanup();
  }
}

function environmentFor(
  parent: NodeJS.ProcessEnv,
  source: SessionSource,
  session: IssuedSession,
  opts: ExecOptions,
): { env: NodeJS.ProcessEnv; cleanup: () => void } {
  const env: NodeJS.ProcessEnv = { ...parent };
  for (const k of source.withheldEnv) delete env[k];
  // Whatever the session's kind, the command gets none of the shell's (datagrant's) own
  // credentials for either kind of backend: only the session.
  for (const k of [...AWS_CREDENTIAL_ENV, ...PG_LOGIN_ENV]) delete env[k];
  if (session.kind === 'postgres') {
    Object.assign(env, {
      PGUSER: session.user,
      PGPASSWORD: session.password,
      ...(session.host !== undefined ? { PGHOST: session.host } : {}),
      ...(session.port !== undefined ? { PGPORT: String(session.port) } : {}),
      ...(session.database !== undefined ? { PGDATABASE: session.database } : {}),
    });
    return { env, cleanup: () => undefined };
  }
  if (opts.env || !source.renews) {
    Object.assign(env, {
      AWS_ACCESS_KEY_ID: session.accessKeyId,
      AWS_SECRET_ACCESS_KEY: session.secretAccessKey,
      AWS_SESSION_TOKEN: session.sessionToken,
      AWS_CREDENTIAL_EXPIRATION: session.expiration,
    });
    return { env, cleanup: () => undefined };
  }
  // The directory is the user's alone (mkdtemp makes it 0700); it holds no secret, only the
  // command line that fetches one. An empty credentials file: a same-named profile in the
  // person's ~/.aws/credentials would otherwise win over credential_process.
  const dir = mkdtempSync(join(tmpdir(), 'datagrant-exec-'));
  try {
    const exportCommand = [
      process.execPath,
      fileURLToPath(new URL('../../../bin/datagrant.js', import.meta.url)),
      'credentials',
      'export',
      opts.name,
      ...source.exportArgs(),
      ...(opts.backend ? ['--backend', opts.backend] : []),
      '--format',
      'json',
    ];
    writeFileSync(
      join(dir, 'config'),
      `# Written by datagrant exec for one command, removed when it ends.\n[profile ${EXEC_PROFILE}]\ncredential_process = ${exportCommand.map(shellQuote).join(' ')}\n`,
      { mode: 0o600 },
    );
    writeFileSync(join(dir, 'credentials'), '', { mode: 0o600 });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  Object.assign(env, {
    AWS_CONFIG_FILE: join(dir, 'config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'),
    AWS_PROFILE: EXEC_PROFILE,
    // The Go SDK v1 and the JavaScript SDK v2 read the config file only when asked to.
    AWS_SDK_LOAD_CONFIG: '1',
  });
  return { env, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * POSIX shell quoting: the SDKs run credential_process through `sh -c` (JavaScript, Go, Java) or
 * split it as a shell would (botocore's shlex), and a path may hold spaces.
 */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Runs the command in the foreground; its exit code, or 128 + the signal that ended it (as a shell says). */
function run(io: Io, command: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const [file, ...args] = command as [string, ...string[]];
    const child = spawn(file, args, { stdio: 'inherit', env });
    const onTerminal = Boolean(process.stdin.isTTY);
    const forward = (signal: NodeJS.Signals) => {
      if (!(onTerminal && FROM_TERMINAL.has(signal))) child.kill(signal);
    };
    for (const s of FORWARDED) process.on(s, forward);
    let settled = false;
    // 'exit' may or may not follow an 'error' (Node's documentation): the first one decides.
    const done = (code: number) => {
      if (settled) return;
      settled = true;
      for (const s of FORWARDED) process.off(s, forward);
      resolve(code);
    };
    child.once('error', (e: NodeJS.ErrnoException) => {
      io.stderr(
        `Error: cannot run ${JSON.stringify(file)}: ${e.code === 'ENOENT' ? 'no such command' : e.code === 'EACCES' ? 'permission denied' : e.message}\n`,
      );
      // The shell's codes: 127 not found, 126 found but not runnable.
      done(e.code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => done(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
  });
}
