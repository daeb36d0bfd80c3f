// The only place that turns errors into messages and exit codes.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { InvariantError } from '../compile/invariants.js';
import { BackendError, CompileError, DatagrantError, SpecError } from '../core/errors.js';
import { ACCESS_FORMATS, accessCommand, checkUnused, type AccessFormat } from './commands/access.js';
import { auditLog, auditVerify } from './commands/audit.js';
import { credentialsExport, credentialsList, credentialsRotate, credentialsShow, EXPORT_FORMATS } from './commands/credentials.js';
import { execCommand } from './commands/exec.js';
import { applyCommand, driftCommand, planCommand } from './commands/lifecycle.js';
import { DEFAULT_SCOPE, loginCommand } from './commands/login.js';
import {
  reviewClose,
  reviewDecide,
  reviewExport,
  reviewList,
  reviewRevocations,
  reviewShow,
  reviewStart,
  reviewStatus,
  type DecideCliOptions,
} from './commands/review.js';
import { requestsApprove, requestsCancel, requestsCreate, requestsDeny, requestsList } from './commands/requests.js';
import { initCommand, schemaCommand, validateCommand } from './commands/setup.js';
import { iamPolicyCommand, pgSetupCommand } from './commands/operator.js';
import { stateBackup, stateRestore } from './commands/state.js';
import { rekeyCommand } from './commands/rekey.js';
import { renderAccessHtml } from '../render/html.js';
import { processIo, type Io } from '../app/io.js';

const positiveInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return n;
};
const requestId = (v: string) => {
  const n = Number(v.replace(/^#/, ''));
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a request number, as `datagrant requests list` shows it');
  return n;
};
const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number of seconds');
  return n * 1000;
};

/** Deadline for serve's answer to `--server` (it includes the backend confirming the new session works). */
const serveTimeout = () => new Option('--timeout <seconds>', "deadline for serve's answer").argParser(seconds).default(60_000, '60');

/** The package's version: src/cli/main.ts and dist/cli/main.js both sit two levels below package.json. */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

interface GuardFlags {
  allowMassDestroy?: boolean;
  allowMissingCredentials?: boolean;
  adopt?: boolean;
}
const guardsOf = (o: GuardFlags) => ({
  massDestroy: o.allowMassDestroy ?? false,
  missingCredentials: o.allowMissingCredentials ?? false,
  adopt: o.adopt ?? false,
});

export function buildProgram(io: Io, setCode: (n: number) => void): Command {
  const program = new Command('datagrant')
    .description('Least-privilege access to AI training and serving data, from one reviewed spec.')
    .option('-f, --spec <file>', 'spec file (default: datagrant.yaml, or $DATAGRANT_SPEC)')
    .option('--state-dir <dir>', 'state directory (default: .datagrant, or $DATAGRANT_STATE_DIR)')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--no-color', 'plain output')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError();
  const common = () => program.opts<{ spec?: string; stateDir?: string; color: boolean }>();
  const color = () => common().color && io.isTTY && !io.env.NO_COLOR;
  const run = (fn: () => Promise<number>) => async () => setCode(await fn());

  program
    .command('init')
    .description('create the state directory, a 0600 master key file and the installation id')
    .option('--installation <id>', "take an existing installation's id (a fresh state for objects another copy of this state made; see the README)")
    .option('--kms-key <arn>', 'keep the master key wrapped by this AWS KMS key (master.key.kms) instead of a plaintext key file')
    .action(async (o: { installation?: string; kmsKey?: string }) => run(() => initCommand(io, { ...common(), ...o }))());
  program
    .command('validate')
    .description('check the spec without calling any backend')
    .action(async () => run(() => validateCommand(io, common()))());
  program
    .command('schema')
    .description('print the JSON Schema of the spec (for editors)')
    .action(async () => run(() => schemaCommand(io))());

  program
    .command('iam-policy')
    .description("print the IAM policy datagrant's own identity needs on an aws backend (derived from the spec)")
    .option('--backend <name>', 'when the spec has several aws backends')
    .option('--account <id>', "the AWS account id in the ARNs (default: the assumeRole's, else *)")
    .option('--with-access', 'add what `datagrant access` and reviews read')
    .option('--explain', 'say what each statement is for, then print the policy')
    .action(async (o: { backend?: string; account?: string; withAccess?: boolean; explain?: boolean }) =>
      run(() => iamPolicyCommand(io, { ...common(), ...o }))(),
    );
  program
    .command('pg-setup')
    .description('print the SQL that makes the PostgreSQL role datagrant connects as (run it as a superuser)')
    .option('--backend <name>', 'when the spec has several postgres backends')
    .option('--role <name>', 'the role datagrant connects as', 'datagrant')
    .action(async (o: { backend?: string; role?: string }) => run(() => pgSetupCommand(io, { ...common(), ...o }))());

  program
    .command('plan')
    .description('show what apply would change')
    .option('--json', 'machine-readable plan')
    .option('--detailed-exitcode', 'exit 0 when there are no changes, 2 when there are, 1 on error')
    .option('--out <file>', 'save the plan; `apply FILE` performs exactly it')
    .option('--exact', 'read every credential exactly (one request per user)')
    .action(async (o: { json?: boolean; detailedExitcode?: boolean; out?: string; exact?: boolean }) =>
      run(() => planCommand(io, { ...common(), ...o, color: color() }))(),
    );

  program
    .command('apply')
    .description('make the backends match the spec (or perform a saved plan)')
    .argument('[planfile]', 'a plan saved with plan --out')
    .option('--auto-approve', 'do not ask for confirmation')
    .option('--concurrency <n>', 'changes in flight at once', positiveInt, 8)
    .option('--lock-timeout <seconds>', 'wait this long for another run to release the state lock', seconds, 0)
    .option('--json', 'machine-readable result')
    .option('--allow-mass-destroy', "allow a plan that removes more than 25 % of a backend's principals (at least 5)")
    .option('--allow-missing-credentials', 'allow apply although the backend holds few or none of the credentials the state records')
    .option('--adopt', "take over keys of this installation's users that the state has no secret for (they are re-issued)")
    .action(async (planFile: string | undefined, o: { autoApprove?: boolean; concurrency: number; lockTimeout: number; json?: boolean } & GuardFlags) =>
      run(() => applyCommand(io, { ...common(), ...o, ...guardsOf(o), lockTimeoutMs: o.lockTimeout, color: color(), ...(planFile ? { planFile } : {}) }))(),
    );

  program
    .command('destroy')
    .description("remove everything datagrant owns on the spec's backends")
    .option('--auto-approve', 'do not ask for confirmation')
    .option('--concurrency <n>', 'changes in flight at once', positiveInt, 8)
    .option('--lock-timeout <seconds>', 'wait for the state lock', seconds, 0)
    .option('--allow-missing-credentials', 'destroy although the backend holds few or none of the credentials the state records')
    .option('--adopt', "also delete keys of this installation's users that the state has no record of")
    .action(async (o: { autoApprove?: boolean; concurrency: number; lockTimeout: number } & GuardFlags) =>
      run(() => applyCommand(io, { ...common(), ...o, ...guardsOf(o), lockTimeoutMs: o.lockTimeout, destroy: true, color: color() }))(),
    );

  program
    .command('drift')
    .description('report changes made outside datagrant (exit 2 when there are any); for scheduled checks')
    .option('--json', 'machine-readable')
    .action(async (o: { json?: boolean }) => run(() => driftCommand(io, { ...common(), ...o, color: color() }))());

  program
    .command('access')
    .description('who can read, write or administer each dataset, read from the backends, beside what the spec says')
    .option('--principal <name>', 'only this principal (or an unmanaged holder, by name or ARN)')
    .option('--dataset <name>', 'only this dataset')
    .option('--unused <duration>', 'only access whose credentials were not used for this long (e.g. 90d)', (v: string) => {
      try {
        return checkUnused(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    })
    .addOption(new Option('--format <format>', 'output format').choices(ACCESS_FORMATS).default('table'))
    .option('--out <file>', 'write the report to a file instead of standard output')
    .option('--detailed-exitcode', 'exit 2 when the access the backends hold differs from the spec (or breaks an invariant)')
    .action(async (o: { principal?: string; dataset?: string; unused?: string; format: AccessFormat; out?: string; detailedExitcode?: boolean }) =>
      run(() => accessCommand(io, { ...common(), ...o, renderHtml: renderAccessHtml }))(),
    );

  const review = program
    .command('review')
    .description('access reviews: snapshot effective access, record keep/revoke decisions, turn revocations into a spec change, export evidence');
  review
    .command('start')
    .description('snapshot effective access (the population) with a manifest an auditor can test')
    .argument('<name>', 'a new name, such as 2026-Q4 (names the evidence files; never reused)')
    .option('--principal <name>', 'only this principal (or an unmanaged holder, by name or ARN)')
    .option('--dataset <name>', 'only this dataset')
    .action(async (name: string, o: { principal?: string; dataset?: string }) =>
      run(() => reviewStart(io, { ...common(), ...o, name, version: packageVersion() }))(),
    );
  review
    .command('list')
    .description('every review, with how many rows are undecided')
    .option('--json')
    .action(async (o: { json?: boolean }) => run(() => reviewList(io, { ...common(), ...o }))());
  review
    .command('show')
    .description("a review's rows, numbered, with their decisions")
    .argument('<name>')
    .option('--json')
    .action(async (name: string, o: { json?: boolean }) => run(() => reviewShow(io, { ...common(), ...o, name }))());
  review
    .command('decide')
    .description('record keep or revoke, with a reason, on rows of the population (a later decision of yours on a row replaces yours)')
    .argument('<name>')
    .argument('[rows...]', 'row numbers as review show prints them, or row ids')
    .option('--keep', 'the access stays')
    .option('--revoke', 'the access goes (see review revocations)')
    .requiredOption('--reason <text>', 'why: what the auditor reads')
    .requiredOption('--as <reviewer>', "who decides: a name or e-mail (a row's own principal deciding is flagged as self-review)")
    .option('--all-matching', 'every row matching the filters below instead of named rows')
    .option('--principal <name>', 'with --all-matching: rows of this principal or holder')
    .option('--dataset <name>', 'with --all-matching: rows of this dataset')
    .option('--backend <name>', 'with --all-matching: rows of this backend')
    .addOption(new Option('--level <level>', 'with --all-matching: rows of this level').choices(['read', 'write', 'admin']))
    .addOption(new Option('--status <status>', 'with --all-matching: rows in the spec only, the backend only, or both').choices(['intended', 'actual', 'both']))
    .option('--managed', "with --all-matching: rows of datagrant's principals")
    .option('--unmanaged', "with --all-matching: rows of holders that are not datagrant's")
    .option('--undecided', 'with --all-matching: rows nobody has decided yet')
    .action(async (name: string, rows: string[], o: Omit<DecideCliOptions, 'name' | 'rows'>) =>
      run(() => reviewDecide(io, { ...common(), ...o, name, rows }))(),
    );
  review
    .command('revocations')
    .description("the review's revoke decisions as a patch of the spec (git apply / patch -p1), and the steps no spec change can take")
    .argument('<name>')
    .option('--out <file>', 'write the patch here (default: standard output, with the explanation on standard error)')
    .action(async (name: string, o: { out?: string }) => run(() => reviewRevocations(io, { ...common(), ...o, name }))());
  review
    .command('status')
    .description('for each revocation: whether the access is gone (read from the backends) and the audit entry of the change that removed it')
    .argument('<name>')
    .option('--json')
    .option('--detailed-exitcode', 'exit 2 while any revoked access is still held')
    .action(async (name: string, o: { json?: boolean; detailedExitcode?: boolean }) => run(() => reviewStatus(io, { ...common(), ...o, name }))());
  review
    .command('export')
    .description('write the evidence: DIR/NAME.csv, .json and .html (population, decisions, removals with their audit entries, manifest)')
    .argument('<name>')
    .requiredOption('--out <dir>', 'directory for the three files (made if missing)')
    .action(async (name: string, o: { out: string }) => run(() => reviewExport(io, { ...common(), ...o, name }))());
  review
    .command('close')
    .description('close a review: it takes no more decisions')
    .argument('<name>')
    .action(async (name: string) => run(() => reviewClose(io, { ...common(), name }))());

  const requests = program
    .command('requests')
    .description('requests for access: a principal asks for a dataset at a level for a while; an approver the spec names approves or denies');
  requests
    .command('create')
    .description('ask for access (it waits for an approver)')
    .requiredOption('--as <principal>', 'who asks, and gets the access: a principal name or e-mail')
    .requiredOption('--dataset <name>', 'the dataset')
    .addOption(new Option('--access <level>', 'the level').choices(['read', 'write', 'admin']).default('read'))
    .requiredOption('--for <duration>', 'how long, once approved (such as 8h or 7d; at most settings.requests.maxDuration, default 30d)')
    .requiredOption('--reason <text>', 'why: what the approver and the auditor read')
    .option('--json')
    .action(async (o: { as: string; dataset: string; access: string; for: string; reason: string; json?: boolean }) =>
      run(() => requestsCreate(io, { ...common(), ...o }))(),
    );
  requests
    .command('list')
    .description('every request, with its state now (expired once its time is up)')
    .option('--pending', 'only requests waiting for a decision')
    .option('--as <principal>', "only this principal's own requests, those it may decide and those it decided")
    .option('--json')
    .action(async (o: { pending?: boolean; as?: string; json?: boolean }) => run(() => requestsList(io, { ...common(), ...o }))());
  for (const [verb, description, command] of [
    ['approve', 'approve a pending request: the access is granted until the end of its duration (then run apply)', requestsApprove],
    ['deny', 'deny a pending request', requestsDeny],
  ] as const) {
    requests
      .command(verb)
      .description(description)
      .argument('<id>', 'the request number', requestId)
      .requiredOption('--as <approver>', 'who decides: a principal name or e-mail, one of the approvers the spec names (never the requester)')
      .requiredOption('--reason <text>', 'why: what the requester and the auditor read')
      .action(async (id: number, o: { as: string; reason: string }) => run(() => command(io, { ...common(), ...o, id }))());
  }
  requests
    .command('cancel')
    .description('withdraw a pending request, or end an approved one early (the requester only)')
    .argument('<id>', 'the request number', requestId)
    .requiredOption('--as <requester>', 'the principal who asked')
    .option('--reason <text>', 'why')
    .action(async (id: number, o: { as: string; reason?: string }) => run(() => requestsCancel(io, { ...common(), ...o, id }))());

  const creds = program.command('credentials').description('stored credentials (encrypted at rest)');
  creds
    .command('list')
    .option('--json')
    .description('list credentials, never secrets')
    .action(async (o: { json?: boolean }) => run(() => credentialsList(io, { ...common(), ...o }))());
  creds
    .command('show')
    .argument('<name>', 'principal name or address')
    .option('--backend <name>', 'when the principal has credentials on several backends')
    .option('--reveal', 'print the secret (audited)')
    .action(async (name: string, o: { backend?: string; reveal?: boolean }) => run(() => credentialsShow(io, { ...common(), ...o, name }))());
  creds
    .command('export')
    .description('print a stored credential, or with --server a new session from serve for the person logged in')
    .argument('<name>', 'principal name or address')
    .addOption(new Option('--format <format>', 'output format (json: the AWS credential_process format)').choices([...EXPORT_FORMATS]).makeOptionMandatory())
    .option('--backend <name>', 'when the principal has credentials on several backends (required with --server)')
    .option('--server <url>', 'a session from this datagrant serve, with your `datagrant login` (default: $DATAGRANT_SERVER)')
    .addOption(serveTimeout())
    .option(
      '--id-token-file <path>',
      "a workload's OIDC token file (Kubernetes, CI), read for each session, instead of your login (default: $DATAGRANT_ID_TOKEN_FILE)",
    )
    .action(async (name: string, o: { backend?: string; format: string; server?: string; timeout: number; idTokenFile?: string }) =>
      run(() => credentialsExport(io, { ...common(), ...o, timeoutMs: o.timeout, name }))(),
    );
  creds
    .command('rotate')
    .argument('<name>', 'principal name or address')
    .option('--backend <name>', 'when the principal has credentials on several backends')
    .option('--lock-timeout <seconds>', 'wait for the state lock', seconds, 0)
    .option(
      '--revoke-old',
      "a leak: delete every older key of the principal in the same run, without grace; a password is cleared and its login's open sessions ended",
    )
    .description('issue a new credential now; an old key stays valid for the rotation grace period (unless --revoke-old), an old password stops at once')
    .action(async (name: string, o: { backend?: string; lockTimeout: number; revokeOld?: boolean }) =>
      run(() => credentialsRotate(io, { ...common(), ...o, lockTimeoutMs: o.lockTimeout, name, autoApprove: true }))(),
    );

  program
    .command('login')
    .description("sign in at your organisation's identity provider, so that --server gets you sessions from datagrant serve")
    .option('--server <url>', 'the datagrant serve to log in to (default: $DATAGRANT_SERVER)')
    .option('--issuer-url <url>', "the identity provider's OpenID Connect issuer (first login only)")
    .option('--client-id <id>', "datagrant's public client id at the identity provider (first login only)")
    .option('--scope <scopes>', 'scopes to ask for; some identity providers issue a refresh token only for offline_access', DEFAULT_SCOPE)
    .option('--browser', 'sign in with the browser on this machine (authorization code + PKCE on a loopback port) instead of a device code')
    .action(async (o: { server?: string; issuerUrl?: string; clientId?: string; scope: string; browser?: boolean }) => run(() => loginCommand(io, o))());

  program
    .command('exec')
    .description("run a command with a principal's session: AWS through a credential_process profile the SDKs renew, PostgreSQL as PGUSER/PGPASSWORD")
    .argument('<name>', 'principal name')
    .argument('<command...>', 'the command and its arguments, after --')
    .option('--backend <name>', 'the backend to get the session on (required with --server)')
    .option('--server <url>', 'sessions from this datagrant serve, with your `datagrant login` (default: $DATAGRANT_SERVER)')
    .addOption(serveTimeout())
    .option(
      '--id-token-file <path>',
      "a workload's OIDC token file (Kubernetes, CI), read for each session, instead of your login (default: $DATAGRANT_ID_TOKEN_FILE)",
    )
    .option('--env', 'AWS: put the session into AWS_ACCESS_KEY_ID/… instead (for tools that read only those; not renewed)')
    .action(async (name: string, command: string[], o: { backend?: string; server?: string; timeout: number; idTokenFile?: string; env?: boolean }) =>
      run(() => execCommand(io, { ...common(), ...o, timeoutMs: o.timeout, name, command }))(),
    );

  program
    .command('serve')
    .description('run the SCIM 2.0 service provider and reconcile on every change and on an interval')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on', positiveInt, 8080)
    .option('--tls-cert <file>', 'PEM certificate (or terminate TLS in a proxy in front)')
    .option('--tls-key <file>', 'PEM private key')
    .option('--trust-proxy', 'trust X-Forwarded-* headers from a TLS-terminating proxy')
    .option('--interval <seconds>', 'reconcile at least this often', positiveInt, 300)
    .option('--replica-id <id>', 'name of this replica in the audit log (default: DATAGRANT_REPLICA_ID, else <hostname>:<pid>)')
    .option('--public-url <url>', "the web console's URL as browsers reach it, for its sign-in redirect (default: from each request)")
    .addOption(
      new Option('--log-level <level>', 'log level (info: one line per SCIM request)')
        .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
        .default('info'),
    )
    .action(
      async (o: {
        host: string;
        port: number;
        tlsCert?: string;
        tlsKey?: string;
        trustProxy?: boolean;
        interval: number;
        replicaId?: string;
        publicUrl?: string;
        logLevel: string;
      }) => {
        const { startServe } = await import('../serve/serve.js');
        const server = await startServe(io, { ...common(), ...o, intervalSeconds: o.interval });
        await new Promise<void>((resolve) => {
          const stop = () => void server.close().then(resolve);
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        setCode(0);
      },
    );

  program
    .command('scim-token')
    .description('make a new SCIM bearer token: the token for the identity provider, its hash for DATAGRANT_SCIM_TOKEN_SHA256')
    .action(async () => {
      const { randomBytes, createHash } = await import('node:crypto');
      const token = randomBytes(32).toString('base64url');
      io.stdout(
        `token (give to the identity provider; shown once):  ${token}\nsha256 (for DATAGRANT_SCIM_TOKEN_SHA256):              ${createHash('sha256').update(token).digest('hex')}\n`,
      );
      setCode(0);
    });

  program
    .command('rekey')
    .description('re-encrypt every stored secret under a new master key (crash-safe; run it again to finish an interrupted one). Stop serve first.')
    .option('--new-key-file <file>', 'the new key: read from this file, or generated into it (default: master.key.new in the state directory)')
    .option(
      '--kms-key <arn>',
      'wrap the new master key with this AWS KMS key: a plain key moves into KMS (master.key is then removed); a KMS-wrapped one defaults to its own KMS key',
    )
    .option('--lock-timeout <seconds>', 'wait for the state lock', seconds, 0)
    .action(async (o: { newKeyFile?: string; kmsKey?: string; lockTimeout: number }) =>
      run(() => rekeyCommand(io, { ...common(), ...o, lockTimeoutMs: o.lockTimeout }))(),
    );

  const state = program.command('state').description('back up and restore the state (credentials stay encrypted; the master key is never in a backup)');
  state
    .command('backup')
    .description('write a consistent copy of the state to FILE, also while serve runs (SQLite or PostgreSQL store)')
    .argument('<file>', 'the backup file, outside the state directory')
    .option('--force', 'replace FILE if it exists')
    .action(async (file: string, o: { force?: boolean }) => run(() => stateBackup(io, { ...common(), ...o, file }))());
  state
    .command('restore')
    .description('put a backup in place as the state (a fresh state directory or PostgreSQL store; the master key the backup was made with)')
    .argument('<file>', 'a file written by state backup')
    .option('--force', 'replace a state that is already there (it is lost)')
    .action(async (file: string, o: { force?: boolean }) => run(() => stateRestore(io, { ...common(), ...o, file }))());

  const audit = program.command('audit').description('the tamper-evident audit log');
  audit
    .command('log')
    .option('--json')
    .option('--limit <n>', 'last N entries', positiveInt)
    .action(async (o: { json?: boolean; limit?: number }) => run(() => auditLog(io, { ...common(), ...o }))());
  audit
    .command('verify')
    .description('check the hash chain; exit 1 naming the first bad entry')
    .action(async () => run(() => auditVerify(io, common()))());

  return program;
}

/** Runs the CLI; returns the exit code. Errors are printed as messages, never as stack traces. */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (n) => (code = n));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    return reportError(io, e);
  }
}

export function reportError(io: Io, e: unknown): number {
  if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
  if (e instanceof SpecError) {
    io.stderr(
      `Error: the spec has ${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}:\n${e.message
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n')}\n`,
    );
  } else if (e instanceof InvariantError) {
    const n = e.violations.length;
    io.stderr(
      `Error: the spec breaks ${n === 1 ? 'an invariant' : `its invariants in ${n} places`} (no backend was read or changed):\n${e.violations.map((v) => `  ${v.message}`).join('\n')}\n`,
    );
  } else if (e instanceof CompileError) {
    io.stderr(`Error: the spec cannot be expressed within the backend's limits:\n${e.problems.map((l) => `  ${l}`).join('\n')}\n`);
  } else if (e instanceof BackendError) {
    io.stderr(`Error: backend ${e.backend}${e.address ? ` (${e.address})` : ''}: ${e.message}\n`);
  } else if (e instanceof DatagrantError) {
    io.stderr(`Error: ${e.message}\n`);
  } else {
    // An unexpected failure: still no stack trace unless asked for.
    io.stderr(`Error: ${(e as Error)?.message ?? String(e)}\n`);
    if (io.env.DATAGRANT_DEBUG) io.stderr(`${(e as Error)?.stack ?? ''}\n`);
  }
  return 1;
}
