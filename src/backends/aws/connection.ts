// The connection to IAM and STS (and S3, whose bucket policies effective access reads) that every
// part of the aws driver shares: the clients, the account the credentials belong to, and how what
// goes wrong becomes a BackendError.
//
// Requests are counted in SDK middleware, per attempt; the SDK's own retries are off so that
// faults are retried in one place (src/backends/retry.ts), and throttled requests are re-sent at
// their action's pace by the limiter middleware (limiter.ts); both are counted as retries.
//
// Every request has a deadline (src/backends/deadline.ts): the connection must be made within the
// connect deadline, and the whole request answered within the request deadline, which also bounds
// a TLS handshake or a socket that goes quiet half-way.
//
// A backend that names a role (`assumeRole`) makes every call with that role's session, asked of
// STS with the standard credential chain and renewed before it expires: the backend manages the
// role's account, and its reads, counts and errors are its own.
import { IAMClient, type IAMClientConfig } from '@aws-sdk/client-iam';
import { S3Client } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, GetCallerIdentityCommand, STSClient, type STSClientConfig } from '@aws-sdk/client-sts';
import type { BackendStats } from '../backend.js';
import { DEFAULT_DEADLINES, deadlineError, type Deadlines } from '../deadline.js';
import { BackendError } from '../../core/errors.js';
import { policyDescription } from './state.js';
import { awsErrorCode, toBackendError } from './errors.js';
import { limitActions, sharedLimiters } from './limiter.js';

export interface AwsBackendOptions {
  /** The backend's name in the spec: the prefix of every address. */
  name: string;
  region?: string;
  /** Endpoint override (moto in tests); normally the standard AWS endpoints. */
  endpoint?: string;
  /** IAM path that marks datagrant's objects, e.g. `/datagrant/`. */
  iamPath: string;
  /** Static credentials; otherwise the standard AWS credential chain. */
  credentials?: IAMClientConfig['credentials'];
  /** ListAccessKeys calls in flight at once during read. */
  concurrency?: number;
  /** How long to keep retrying NoSuchEntity right after a create (IAM is eventually consistent). */
  consistencyWaitMs?: number;
  /** How long to wait for the credential report. */
  reportWaitMs?: number;
  /** This state's installation id: written on what datagrant creates; another installation's objects are never touched. */
  installation?: string;
  /** Connect and per-request deadlines (default: 10 s and 60 s). */
  deadlines?: Deadlines;
  /** A role to assume for every call, with `credentials` (or the standard chain): the account managed is the role's. */
  assumeRole?: { roleArn: string; externalId?: string; sessionName?: string };
}

/** A session is renewed this long before it expires, so that no request is signed with one about to lapse. */
export const SESSION_RENEW_MS = 5 * 60_000;
/** How long each assumed session lasts: STS's default, allowed by every role's maximum. */
const SESSION_SECONDS = 3600;

type Credentials = Awaited<ReturnType<Exclude<IAMClientConfig['credentials'], undefined | { accessKeyId: string }>>>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class AwsConnection {
  /** The backend's name: the prefix of every address and of every error message. */
  readonly name: string;
  readonly opts: AwsBackendOptions;
  readonly iam: IAMClient;
  /** S3, for the bucket policies effective access reads (access.ts). */
  readonly s3: S3Client;
  readonly #sts: STSClient;
  /** With `assumeRole`: the client, on the caller's own credentials, that asks for the role's sessions. */
  readonly #issuer: STSClient | undefined;
  #credentials: { value: Promise<Credentials>; renewAt: number } | undefined;
  readonly #stats: BackendStats = { requests: 0, retries: 0 };
  readonly #deadlines: Deadlines;
  /** Where each failed request was sent, for the message of a missed deadline. */
  readonly #endpoints = new WeakMap<object, string>();
  #account: Promise<{ account: string; partition: string; arn: string }> | undefined;
  /** The clients' settings, for a client signing with credentials datagrant just issued. */
  readonly #common: STSClientConfig;

  constructor(opts: AwsBackendOptions) {
    if (!/^\/([^/]+\/)*$/.test(opts.iamPath))
      throw new BackendError(`${opts.name}: iamPath must start and end with / (got ${opts.iamPath})`, opts.name, 'config', false);
    this.name = opts.name;
    this.opts = opts;
    this.#deadlines = opts.deadlines ?? DEFAULT_DEADLINES;
    const common = {
      // IAM is global; the region picks the STS endpoint (and the partition).
      region: opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      maxAttempts: 1,
      requestHandler: {
        connectionTimeout: this.#deadlines.connectMs,
        requestTimeout: this.#deadlines.requestMs,
        // Without it, a request past requestTimeout is only logged as a warning.
        throwOnRequestTimeout: true,
        socketTimeout: this.#deadlines.requestMs,
      },
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    };
    // Clients made later with other credentials (a new key's or session's readiness check) share
    // the deadlines and endpoint, never the backend's own credentials.
    this.#common = common;
    // With a role, the caller's own credentials only ask STS for the role's sessions.
    this.#issuer = opts.assumeRole ? new STSClient(common) : undefined;
    const role = opts.assumeRole;
    const session = role ? { ...common, credentials: () => this.#session(role) } : common;
    this.iam = new IAMClient(session);
    this.#sts = new STSClient(session);
    this.s3 = new S3Client({
      ...session,
      // A bucket in another region answers with a redirect the client follows; an endpoint
      // override (moto, a proxy) serves every bucket under one host, by path.
      followRegionRedirects: true,
      forcePathStyle: Boolean(opts.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL),
    });
    // Per attempt, below the (disabled) SDK retry middleware: every request sent is counted, and a
    // failed one remembers where it went (the endpoint may come from the environment).
    const counter = { step: 'finalizeRequest', priority: 'low', name: 'datagrantRequestCounter' } as const;
    // Each API action paced at the rate AWS lets through, learned from its throttles (limiter.ts).
    const limiters = sharedLimiters(`${opts.name}@${opts.endpoint ?? process.env.AWS_ENDPOINT_URL ?? common.region}`);
    for (const client of [this.iam, this.#sts, this.s3, this.#issuer]) {
      if (!client) continue;
      (client.middlewareStack as IAMClient['middlewareStack']).add((next) => (args) => this.#sent(args.request, () => next(args)), counter);
      limitActions(client, limiters, () => this.#stats.retries++);
    }
  }

  /**
   * The role's session: one AssumeRole while it is fresh, a new one from SESSION_RENEW_MS before
   * it expires. Requests waiting for it at once share one call; a failure is not kept.
   */
  #session(role: NonNullable<AwsBackendOptions['assumeRole']>): Promise<Credentials> {
    const cached = this.#credentials;
    if (cached && cached.renewAt > Date.now()) return cached.value;
    const entry: { value: Promise<Credentials>; renewAt: number } = { value: this.#assume(role), renewAt: Infinity };
    // Until it is answered, every request waits for this one call.
    this.#credentials = entry;
    entry.value.then(
      (c) => (entry.renewAt = c.expiration!.getTime() - SESSION_RENEW_MS),
      () => {
        if (this.#credentials === entry) this.#credentials = undefined;
      },
    );
    return entry.value;
  }

  async #assume(role: NonNullable<AwsBackendOptions['assumeRole']>): Promise<Credentials> {
    let c;
    try {
      c = (
        await this.#issuer!.send(
          new AssumeRoleCommand({
            RoleArn: role.roleArn,
            RoleSessionName: role.sessionName ?? `datagrant-${this.name}`.slice(0, 64),
            DurationSeconds: SESSION_SECONDS,
            ...(role.externalId ? { ExternalId: role.externalId } : {}),
          }),
        )
      ).Credentials;
    } catch (e) {
      const err = this.error(e);
      const what = err.message.startsWith(`${this.name}: `) ? err.message.slice(this.name.length + 2) : err.message;
      throw new BackendError(`${this.name}: cannot assume role ${role.roleArn}: ${what}`, this.name, err.code, err.retryable);
    }
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken) {
      throw new BackendError(`${this.name}: cannot assume role ${role.roleArn}: STS AssumeRole returned no credentials`, this.name, 'NoCredentials', false);
    }
    const expiration = c.Expiration ?? new Date(Date.now() + SESSION_SECONDS * 1000);
    return { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken, expiration };
  }

  async #sent<T>(request: unknown, send: () => Promise<T>): Promise<T> {
    this.#stats.requests++;
    try {
      return await send();
    } catch (e) {
      const r = (request ?? {}) as { protocol?: string; hostname?: string; port?: number };
      if (e && typeof e === 'object' && r.hostname) this.#endpoints.set(e, `${r.protocol ?? 'https:'}//${r.hostname}${r.port ? `:${r.port}` : ''}`);
      throw e;
    }
  }

  stats(): BackendStats {
    return { ...this.#stats };
  }

  /** Waits before asking again, counted as a retry. */
  async backoff(ms: number): Promise<void> {
    this.#stats.retries++;
    await sleep(ms);
  }

  close(): void {
    this.iam.destroy();
    this.#sts.destroy();
    this.s3.destroy();
    this.#issuer?.destroy();
  }

  /** A driver error: a missed deadline says which and where; anything else keeps its AWS code. */
  error(e: unknown, address?: string): BackendError {
    const err = (e ?? {}) as { name?: string; message?: string };
    if (err.name === 'TimeoutError') {
      // @smithy/node-http-handler's TimeoutErrors: "…did not establish a connection…" is the
      // connect deadline; the request deadline and the socket's idle limit are the request's.
      const kind = /establish a connection/i.test(err.message ?? '') ? 'connect' : 'request';
      const endpoint = (typeof e === 'object' && e !== null ? this.#endpoints.get(e) : undefined) ?? this.opts.endpoint ?? 'the AWS endpoint';
      return deadlineError(this.name, endpoint, kind, kind === 'connect' ? this.#deadlines.connectMs : this.#deadlines.requestMs, address);
    }
    return toBackendError(e, this.name, address);
  }

  /** Account id, ARN partition (`aws`, `aws-cn`, `aws-us-gov`) and caller ARN: one STS call per driver, even when many changes ask at once. */
  caller(): Promise<{ account: string; partition: string; arn: string }> {
    this.#account ??= this.#sts.send(new GetCallerIdentityCommand({})).then((id) => {
      if (!id.Account) throw new BackendError(`${this.name}: STS GetCallerIdentity returned no account`, this.name, 'NoAccount', false);
      return { account: id.Account, partition: id.Arn?.split(':')[1] || 'aws', arn: id.Arn ?? '' };
    });
    // A failure is not cached: the next call asks again.
    this.#account.catch(() => (this.#account = undefined));
    return this.#account;
  }

  /** The ARN of datagrant's managed policy `name` at `path`; an ARN (another's policy) as it is. */
  async policyArn(name: string, path = this.opts.iamPath): Promise<string> {
    if (name.startsWith('arn:')) return name;
    const { account, partition } = await this.caller();
    return `arn:${partition}:iam::${account}:policy${path}${name}`;
  }

  /** What datagrant writes into the description of the managed policies it creates. */
  description(): { Description?: string } {
    return this.opts.installation ? { Description: policyDescription(this.opts.installation) } : {};
  }

  /** Retries NoSuchEntity for a bounded moment: what a change references may have just been created. */
  async consistent<T>(fn: () => Promise<T>): Promise<T> {
    const budget = this.opts.consistencyWaitMs ?? 800;
    const started = Date.now();
    for (let delay = 50; ; delay = Math.min(delay * 2, 400)) {
      try {
        return await fn();
      } catch (e) {
        if (awsErrorCode(e) !== 'NoSuchEntity' || Date.now() - started + delay > budget) throw e;
        await this.backoff(delay);
      }
    }
  }

  /** STS as datagrant's own identity: sessions are assumed by it (kinds/sessions.ts). */
  get sts(): STSClient {
    return this.#sts;
  }

  /** An STS client signing with `credentials` just issued, to confirm that AWS accepts them. Counted, not paced. */
  stsAs(credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }): STSClient {
    const sts = new STSClient({ ...this.#common, credentials });
    sts.middlewareStack.add((next) => (args) => this.#sent(args.request, () => next(args)), {
      step: 'finalizeRequest',
      priority: 'low',
      name: 'datagrantRequestCounter',
    });
    return sts;
  }
}
