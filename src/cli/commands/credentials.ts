// credentials list | show | export | rotate. Only `show --reveal` and `export` print a secret,
// and both leave an audit entry (`export --server`: in serve's audit log, which issued it). `export`
// of a temporary principal issues a session (sessions.ts).
import type { IssuedSession } from '../../app/sessions-port.js';
import { UsageError } from '../../core/errors.js';
import type { CredentialRow, CredentialStore } from '../../store/store.js';
import { actorOf, withStore, type BackendOptions, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';
import { sessionSource, type RemoteSourceOptions } from '../session/source.js';
import { applyCommand, type ApplyOptions } from './lifecycle.js';
import { exportSession, temporarySpec } from './sessions.js';

export const EXPORT_FORMATS = ['env', 'aws-profile', 'json', 'pgpass', 'url', 'my.cnf'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export async function credentialsList(io: Io, opts: CommonOptions & { json?: boolean }): Promise<number> {
  const rows = await withStore(io, opts, (s) => s.credentials());
  if (opts.json) {
    io.stdout(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  if (rows.length === 0) {
    io.stdout('No credentials stored. `datagrant apply` issues them for principals that need them.\n');
    return 0;
  }
  io.stdout(
    table([
      ['NAME', 'BACKEND', 'ADDRESS', 'ID', 'STATE', 'CREATED', 'RETIRES'],
      ...rows.map((r) => [r.principal, r.backend, r.address, r.credentialId, r.state, r.createdAt, r.retireAt ?? '-']),
    ]),
  );
  return 0;
}

/** Resolve NAME (a principal or an address) to one current credential. */
async function resolve(store: CredentialStore, name: string, backend?: string): Promise<CredentialRow> {
  const all = (await store.credentials()).filter((c) => c.state === 'current');
  let found = all.filter((c) => c.address === name || c.principal === name);
  if (backend) found = found.filter((c) => c.backend === backend);
  if (found.length === 0) {
    const names = [...new Set(all.map((c) => c.principal))].sort();
    throw new UsageError(
      `no stored credential for ${JSON.stringify(name)}${backend ? ` on backend ${backend}` : ''}; stored: ${names.length ? names.join(', ') : '(none)'}`,
    );
  }
  if (found.length > 1) {
    throw new UsageError(`${name} has credentials on several backends (${found.map((c) => c.backend).join(', ')}); choose one with --backend`);
  }
  return found[0]!;
}

export async function credentialsShow(io: Io, opts: CommonOptions & { name: string; backend?: string; reveal?: boolean }): Promise<number> {
  return withStore(io, opts, async (store) => {
    const row = await resolve(store, opts.name, opts.backend);
    const lines = [
      `name:     ${row.principal}`,
      `backend:  ${row.backend}`,
      `address:  ${row.address}`,
      `id:       ${row.credentialId}`,
      `created:  ${row.createdAt}`,
    ];
    if (opts.reveal) {
      const got = await store.revealCredential(row.address);
      if (!got) throw new UsageError(`the credential for ${opts.name} was removed meanwhile`);
      await store.audit(
        { actor: actorOf(io), event: 'credential.reveal', address: row.address, outcome: 'ok', detail: `id ${row.credentialId}` },
        io.now().toISOString(),
      );
      for (const [k, v] of Object.entries(got.secret)) lines.push(`${`${k}:`.padEnd(9)} ${v}`);
    } else {
      lines.push('secret:   (hidden; add --reveal to print it)');
    }
    io.stdout(`${lines.join('\n')}\n`);
    return 0;
  });
}

export function formatSecret(format: ExportFormat, name: string, secret: Record<string, string>): string {
  const isAws = 'secretAccessKey' in secret;
  // An S3 key of an on-prem gateway (rgw) says where it works: SDKs and the AWS CLI read these.
  const { endpoint, region } = secret;
  const at = endpoint
    ? {
        json: { Endpoint: endpoint, Region: region },
        env: `AWS_ENDPOINT_URL=${endpoint}\nAWS_REGION=${region}\n`,
        profile: `endpoint_url = ${endpoint}\nregion = ${region}\n`,
      }
    : undefined;
  if (format === 'json') {
    // For AWS this is the `credential_process` shape, so the CLI and SDKs can call us directly.
    return `${JSON.stringify(isAws ? { Version: 1, AccessKeyId: secret.accessKeyId, SecretAccessKey: secret.secretAccessKey, ...at?.json } : secret)}\n`;
  }
  if (isAws) {
    if (format === 'env') return `AWS_ACCESS_KEY_ID=${secret.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${secret.secretAccessKey}\n${at?.env ?? ''}`;
    if (format === 'aws-profile')
      return `[${name}]\naws_access_key_id = ${secret.accessKeyId}\naws_secret_access_key = ${secret.secretAccessKey}\n${at?.profile ?? ''}`;
    throw new UsageError(`format ${format} is for database credentials; for an AWS key use env, aws-profile or json`);
  }
  if (secret.protocol === 'mysql') return formatMysqlSecret(format, secret);
  const { username = '', password = '', host = '', port = '5432', database = '' } = secret;
  if (format === 'env') return `PGHOST=${host}\nPGPORT=${port}\nPGDATABASE=${database}\nPGUSER=${username}\nPGPASSWORD=${password}\n`;
  if (format === 'pgpass') {
    const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
    return `${esc(host)}:${port}:*:${esc(username)}:${esc(password)}\n`;
  }
  if (format === 'url') return `postgres://${encodeURIComponent(username)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}\n`;
  throw new UsageError(`format ${format} is not for a PostgreSQL password; use env, pgpass, url or json`);
}

/**
 * A MariaDB/MySQL password: `env` as the mysql client and most drivers read it (MYSQL_PWD is the
 * client's; MYSQL_USER and MYSQL_DATABASE are the common names), `url`, or `my.cnf` for
 * `mariadb --defaults-extra-file=FILE`: the login in [client] for every client program, the
 * database in [mysql], which only the mysql client reads (others refuse unknown options).
 */
function formatMysqlSecret(format: ExportFormat, secret: Record<string, string>): string {
  const { username = '', password = '', host = '', port = '3306', database = '' } = secret;
  if (format === 'env') return `MYSQL_HOST=${host}\nMYSQL_TCP_PORT=${port}\nMYSQL_USER=${username}\nMYSQL_PWD=${password}\nMYSQL_DATABASE=${database}\n`;
  if (format === 'url')
    return `mysql://${encodeURIComponent(username)}:${encodeURIComponent(password)}@${host}:${port}${database ? `/${encodeURIComponent(database)}` : ''}\n`;
  if (format === 'my.cnf') {
    // Option files read "…" with backslash escapes.
    const q = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
    return `[client]\nhost = ${q(host)}\nport = ${port}\nuser = ${q(username)}\npassword = ${q(password)}\n${database ? `\n[mysql]\ndatabase = ${q(database)}\n` : ''}`;
  }
  throw new UsageError(`format ${format} is not for a MariaDB/MySQL password; use env, url, my.cnf or json`);
}

/** A session in an export format: for AWS, `json` is credential_process's shape with its token and expiry. */
export function formatSession(format: ExportFormat, name: string, s: IssuedSession): string {
  if (s.kind === 'aws') {
    if (format === 'json') {
      return `${JSON.stringify({ Version: 1, AccessKeyId: s.accessKeyId, SecretAccessKey: s.secretAccessKey, SessionToken: s.sessionToken, Expiration: s.expiration })}\n`;
    }
    if (format === 'env') {
      return `AWS_ACCESS_KEY_ID=${s.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${s.secretAccessKey}\nAWS_SESSION_TOKEN=${s.sessionToken}\nAWS_CREDENTIAL_EXPIRATION=${s.expiration}\n`;
    }
    if (format === 'aws-profile') {
      return `[${name}]\naws_access_key_id = ${s.accessKeyId}\naws_secret_access_key = ${s.secretAccessKey}\naws_session_token = ${s.sessionToken}\n`;
    }
    throw new UsageError(`format ${format} is for PostgreSQL; for an AWS session use json, env or aws-profile`);
  }
  if (format === 'json') {
    const { kind: _kind, ...login } = s;
    return `${JSON.stringify(login)}\n`;
  }
  return formatSecret(format, name, {
    username: s.user,
    password: s.password,
    ...(s.host !== undefined ? { host: s.host } : {}),
    ...(s.port !== undefined ? { port: String(s.port) } : {}),
    ...(s.database !== undefined ? { database: s.database } : {}),
  });
}

export async function credentialsExport(
  io: Io,
  opts: CommonOptions & RemoteSourceOptions & { name: string; backend?: string; format: string; backendOptions?: BackendOptions },
): Promise<number> {
  if (!EXPORT_FORMATS.includes(opts.format as ExportFormat)) {
    throw new UsageError(`--format ${JSON.stringify(opts.format)} is not supported; allowed: ${EXPORT_FORMATS.join(', ')}`);
  }
  if (opts.server ?? io.env.DATAGRANT_SERVER ?? opts.idTokenFile) {
    // A session from serve for the person logged in: no state and no master key are touched here.
    const source = await sessionSource(io, opts);
    const session = await source.obtain({ principal: opts.name, ...(opts.backend ? { backend: opts.backend } : {}) });
    io.stdout(formatSession(opts.format as ExportFormat, opts.name, session));
    return 0;
  }
  // A temporary principal has no stored key: it gets a fresh session.
  const temporary = await temporarySpec(io, opts, opts.name);
  if (temporary) return exportSession(io, { ...opts, format: opts.format as ExportFormat }, temporary);
  return withStore(io, opts, async (store) => {
    const row = await resolve(store, opts.name, opts.backend);
    const got = await store.revealCredential(row.address);
    if (!got) throw new UsageError(`the credential for ${opts.name} was removed meanwhile`);
    const text = formatSecret(opts.format as ExportFormat, row.principal, got.secret);
    await store.audit(
      { actor: actorOf(io), event: 'credential.export', address: row.address, outcome: 'ok', detail: `id ${row.credentialId}, format ${opts.format}` },
      io.now().toISOString(),
    );
    io.stdout(text);
    return 0;
  });
}

/**
 * `credentials rotate NAME`: issue a new credential now; the old one lives out its grace period.
 * With `revokeOld` (a leak), every older credential of the slot is deleted in the same run, before
 * the new one is issued: the leaked one must stop at once, and its holder cannot use the new one
 * before this command prints anyway. A password has no grace, but the sessions opened with it
 * outlive its rotation: revoked, it is cleared first, and those sessions are ended with it.
 */
export async function credentialsRotate(io: Io, opts: ApplyOptions & { name: string; backend?: string; revokeOld?: boolean }): Promise<number> {
  const { revokeOld, ...rest } = opts;
  const row = await withStore(io, rest, (s) => resolve(s, opts.name, opts.backend));
  if (revokeOld && slotKind(row.address) !== 'key') {
    io.stderr(`${row.address}: the old password is cleared and every open session of ${row.principal}'s login is ended, then a new password is set.\n`);
  }
  const revoke = revokeOld ? { revoke: [row.address] } : {};
  return applyCommand(io, { ...rest, forceRotate: [row.address], ...revoke, only: [row.address], autoApprove: opts.autoApprove ?? true });
}

/** `aws:key/alice` → `key`. */
const slotKind = (address: string) => address.slice(address.indexOf(':') + 1, address.indexOf('/'));
