// Short-lived sessions from the command line, with the master key (issue 12): `credentials export`
// of a temporary principal issues a fresh session, and `exec` (issueLocalSession) one per run and
// renewal. Only stdout carries a secret; each issue and refusal is audited under the CLI's actor.
import { existsSync } from 'node:fs';
import { actorOf, loadSpecFor, makeBackends, specPath, withMerged, withStore, type BackendOptions, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';
import { createSessionBroker, type SessionIssue } from '../../app/sessions.js';
import { SessionRefusedError, type IssuedSession } from '../../app/sessions-port.js';
import { sessionTarget } from '../../compile/index.js';
import { UsageError } from '../../core/errors.js';
import { credentialsOf, type Spec } from '../../spec/schema.js';
import { formatSecret, type ExportFormat } from './credentials.js';

export interface LocalSessionOptions extends CommonOptions {
  /** The principal. */
  name: string;
  /** Needed only when the principal has access on several backends. */
  backend?: string;
  backendOptions?: BackendOptions;
}

export interface LocalSession extends SessionIssue {
  backend: string;
}

/**
 * The spec (SCIM people merged in) when `name` is a temporary principal in it; otherwise undefined,
 * and `credentials export` hands out the principal's stored key as before. Without a spec file
 * there are no temporary principals: exporting a stored key never needed one. The SCIM people are
 * merged only when a session is to be issued: a stored key is exported whatever they hold.
 */
export async function temporarySpec(io: Io, opts: CommonOptions, name: string): Promise<Spec | undefined> {
  if (!existsSync(specPath(io, opts))) return undefined;
  const loaded = loadSpecFor(io, opts, io.now());
  const own = Object.prototype.hasOwnProperty.call(loaded.spec.principals, name) ? loaded.spec.principals[name] : undefined;
  // A SCIM person gets the spec-wide default; only then do the people need reading to know.
  const maybe = own ? credentialsOf(loaded.spec, own) === 'temporary' : Boolean(loaded.spec.scim) && loaded.spec.settings?.credentials === 'temporary';
  if (!maybe) return undefined;
  const { spec } = await withMerged(io, opts, loaded);
  const p = Object.prototype.hasOwnProperty.call(spec.principals, name) ? spec.principals[name] : undefined;
  return p && credentialsOf(spec, p) === 'temporary' ? spec : undefined;
}

/** The backend a session is for: the one asked, else the only one the principal has access on. */
function backendFor(spec: Spec, name: string, asked: string | undefined, now: Date): string {
  if (asked !== undefined) return asked;
  const all = Object.keys(spec.backends);
  const open = all.filter((b) => !('refused' in sessionTarget(spec, b, name, now)));
  if (open.length === 1) return open[0]!;
  if (open.length > 1) throw new UsageError(`${name} may have sessions on several backends (${open.join(', ')}); choose one with --backend`);
  // The broker says why (on the only backend), or there is nothing to choose from.
  if (all.length === 1) return all[0]!;
  throw new SessionRefusedError('no-access', `principal ${JSON.stringify(name)} has no unexpired grant on any backend`);
}

/**
 * Issues one session of `opts.name` through the broker, with this machine's master key and state,
 * and audits it (`session.issue`, or `session.refused` / a failed issue). `spec` saves loading it
 * again when the caller has it. Throws SessionRefusedError when the principal may have none.
 */
export async function issueLocalSession(
  io: Io,
  opts: LocalSessionOptions,
  spec?: Spec,
  check?: (backend: string, backendType: string) => void,
): Promise<LocalSession> {
  // A `credential_process` profile that runs datagrant also reaches datagrant's own AWS calls when
  // its AWS_PROFILE is inherited (the SDK then skips AWS_ACCESS_KEY_ID…): each export would start
  // another, without end. The marker is inherited by any process the SDK starts, so a second
  // level stops at once, saying why.
  if (io.env[ISSUING] !== undefined || INHERITED_ISSUING) {
    throw new UsageError(
      `datagrant is issuing a session for itself: its own AWS credentials come from a credential_process that runs datagrant (AWS_PROFILE=${io.env.AWS_PROFILE ?? process.env.AWS_PROFILE ?? '?'} is inherited). Give datagrant credentials of its own in that command: unset AWS_PROFILE there (env -u AWS_PROFILE …) and use its keys, another profile, or --server`,
    );
  }
  // Set while any issue is in flight in this process (several may run at once), for the processes
  // the AWS SDK starts meanwhile.
  if (issuing++ === 0) process.env[ISSUING] = '1';
  try {
    return await issueLocal(io, opts, spec, check);
  } finally {
    if (--issuing === 0) delete process.env[ISSUING];
  }
}

const ISSUING = 'DATAGRANT_ISSUING_SESSION';
/** This process was started by a datagrant that was issuing a session (read once, at start). */
const INHERITED_ISSUING = process.env[ISSUING] !== undefined;
let issuing = 0;

async function issueLocal(io: Io, opts: LocalSessionOptions, spec?: Spec, check?: (backend: string, backendType: string) => void): Promise<LocalSession> {
  const current = spec ?? (await withMerged(io, opts, loadSpecFor(io, opts, io.now()))).spec;
  return withStore(io, opts, async (store) => {
    const audit = (event: string, outcome: 'ok' | 'refused' | 'failed', backend: string | undefined, what: string) =>
      store.audit(
        { actor: actorOf(io), event, address: null, outcome, detail: `principal ${opts.name}${backend ? `, backend ${backend}` : ''}: ${what}` },
        io.now().toISOString(),
      );
    let backend: string | undefined;
    const broker = createSessionBroker({
      spec: async () => current,
      store: async () => store,
      makeBackend: (name, b, installation) => makeBackends({ backends: { [name]: b } }, { ...opts.backendOptions, installation })[name]!,
      now: io.now,
    });
    try {
      backend = backendFor(current, opts.name, opts.backend, io.now());
      const type = Object.prototype.hasOwnProperty.call(current.backends, backend) ? current.backends[backend]!.type : undefined;
      if (type && check) check(backend, type);
      const issued = await broker.issueDetailed({ backend, principal: opts.name, source: 'cli' });
      // Audited before it is printed: a session nobody can find in the audit log is never handed out.
      await audit(
        'session.issue',
        'ok',
        backend,
        `duration ${issued.durationSeconds} s until ${untilOf(issued.session)}, ready in ${issued.readyMs} ms, source cli`,
      );
      return { ...issued, backend };
    } catch (e) {
      if (e instanceof SessionRefusedError) await audit('session.refused', 'refused', backend, e.reason);
      else if (!(e instanceof UsageError)) await audit('session.issue', 'failed', backend, (e as Error).name);
      throw e;
    } finally {
      await broker.close();
    }
  });
}

const untilOf = (s: IssuedSession) => (s.kind === 'aws' ? s.expiration : s.validUntil);

const AWS_FORMATS: readonly ExportFormat[] = ['json', 'env', 'aws-profile'];
const POSTGRES_FORMATS: readonly ExportFormat[] = ['json', 'env', 'pgpass', 'url'];

/** `credentials export NAME` of a temporary principal: a fresh session, on stdout only. */
export async function exportSession(io: Io, opts: LocalSessionOptions & { format: ExportFormat }, spec: Spec): Promise<number> {
  const { session } = await issueLocalSession(io, opts, spec, (backend, type) => {
    const allowed = type === 'aws' ? AWS_FORMATS : POSTGRES_FORMATS;
    if (!allowed.includes(opts.format)) {
      throw new UsageError(`format ${opts.format} does not fit a session on backend ${backend} (type ${type}); use ${allowed.join(', ')}`);
    }
  });
  io.stdout(formatSession(opts.format, opts.name, session));
  return 0;
}

export function formatSession(format: ExportFormat, name: string, s: IssuedSession): string {
  if (s.kind === 'aws') {
    // The `credential_process` shape: the CLI and SDKs renew when Expiration comes.
    if (format === 'json')
      return `${JSON.stringify({ Version: 1, AccessKeyId: s.accessKeyId, SecretAccessKey: s.secretAccessKey, SessionToken: s.sessionToken, Expiration: s.expiration })}\n`;
    if (format === 'env')
      return `AWS_ACCESS_KEY_ID=${s.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${s.secretAccessKey}\nAWS_SESSION_TOKEN=${s.sessionToken}\nAWS_CREDENTIAL_EXPIRATION=${s.expiration}\n`;
    if (format === 'aws-profile')
      return `[${name}]\naws_access_key_id = ${s.accessKeyId}\naws_secret_access_key = ${s.secretAccessKey}\naws_session_token = ${s.sessionToken}\n`;
  } else {
    const { kind: _kind, ...fields } = s;
    if (format === 'json') return `${JSON.stringify(fields)}\n`;
    const secret = { username: s.user, password: s.password, host: s.host ?? '', port: String(s.port ?? 5432), database: s.database ?? '' };
    if (format === 'env' || format === 'pgpass' || format === 'url') return formatSecret(format, name, secret);
  }
  throw new UsageError(`format ${format} is not available for a ${s.kind === 'aws' ? 'AWS' : 'PostgreSQL'} session`);
}
