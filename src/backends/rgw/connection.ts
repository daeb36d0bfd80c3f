// The connection to a RADOS gateway that every part of the rgw driver shares: the admin ops API
// (users and keys: `/admin/user`, `/admin/metadata/user`), signed with SigV4 as S3 requests are,
// and the gateway's IAM API (user policies) through the AWS SDK's IAM client; request counting;
// a deadline on every request; the principal ↔ uid mapping; and one queue per user, because every
// change to an RGW user deletes its policies (user-changes.ts) and the gateway keeps a user's
// policies in one attribute that two writers at once would overwrite.
//
// Every request has a deadline (src/backends/deadline.ts): the connection must be made within the
// connect deadline, and the whole answer read within the request deadline.
import { createHash, createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { IAMClient, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import { SignatureV4 } from '@smithy/signature-v4';
import type { BackendStats } from '../backend.js';
import { DEFAULT_DEADLINES, deadlineError, type DeadlineKind, type Deadlines } from '../deadline.js';
import { BackendError } from '../../core/errors.js';
import { rgwUid } from '../../model/rgw.js';
import { AdminApiError, isRetryable, isThrottling, toBackendError } from './errors.js';

export interface RgwBackendOptions {
  /** The backend's name in the spec: the prefix of every address. */
  name: string;
  /** The gateway, e.g. `http://rgw.example:7480`. */
  endpoint: string;
  /** The region requests are signed for (default us-east-1). */
  region?: string;
  /** The admin user's key: caps users=*;user-policy=*;buckets=*;metadata=read. */
  credentials: { accessKeyId: string; secretAccessKey: string | undefined };
  /** The uid prefix of datagrant's users: the ownership boundary, with the display name's mark. */
  userPrefix: string;
  /** This state's installation id: written in each user's mark; another installation's users are never touched. */
  installation?: string;
  /** Connect and per-request deadlines (default: 10 s and 60 s). */
  deadlines?: Deadlines;
  /** Users read at once. */
  concurrency?: number;
}

export const DEFAULT_REGION = 'us-east-1';

/** The SHA-256 the signer asks for, on node:crypto. */
class Sha256 {
  readonly #hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', typeof secret === 'string' ? secret : Buffer.from(secret as ArrayBuffer));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#hash.update(
      typeof data === 'string' ? data : Buffer.from(ArrayBuffer.isView(data) ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) : data),
    );
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }
}

/** RFC 3986, as SigV4 encodes a query: the URL sent must be the one signed. */
const uriEncode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * RGW's PutUserPolicy URL-decodes its parameters a second time after the form itself was decoded
 * (a `+` becomes a space, `%2A` a `*`: another resource, or a wider one). Encoding `%` and `+` once
 * more makes the second decoding give back exactly what was meant. Only PutUserPolicy does this;
 * the other IAM calls take their parameters as sent.
 */
export const forTwiceDecoded = (text: string) => text.replace(/%/g, '%25').replace(/\+/g, '%2B');

/** A missed deadline of an admin request, told apart from any other failure. */
class Deadline extends Error {
  constructor(readonly kind: DeadlineKind) {
    super(`${kind} timeout`);
  }
}

/**
 * Whether a request may have taken effect without its answer reaching us: the gateway took it
 * and then failed (5xx), the connection broke, or no answer came within the request deadline.
 * A throttled request did nothing; a connect deadline sent nothing.
 */
export function mayHaveTakenEffect(e: unknown): boolean {
  if (e instanceof Deadline) return e.kind === 'request';
  if ((e as { name?: string } | null)?.name === 'TimeoutError') return !/establish a connection/i.test((e as Error).message ?? '');
  return isRetryable(e) && !isThrottling(e);
}

export class RgwConnection {
  readonly name: string;
  readonly opts: RgwBackendOptions;
  readonly iam: IAMClient;
  readonly region: string;
  readonly #url: URL;
  readonly #signer: SignatureV4;
  readonly #agent: HttpAgent;
  readonly #stats: BackendStats = { requests: 0, retries: 0 };
  readonly #deadlines: Deadlines;
  /** Per uid, the end of the last queued change to that user. */
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(opts: RgwBackendOptions) {
    this.name = opts.name;
    this.opts = opts;
    this.#url = new URL(opts.endpoint);
    this.region = opts.region ?? DEFAULT_REGION;
    this.#deadlines = opts.deadlines ?? DEFAULT_DEADLINES;
    const credentials = async () => {
      const { accessKeyId, secretAccessKey } = opts.credentials;
      if (!secretAccessKey) {
        throw new BackendError(
          `${opts.name}: no secretAccessKey for the RGW admin user: write it in the spec as \${VAR} (a removed backend is reached with the variable it was read from)`,
          opts.name,
          'config',
          false,
        );
      }
      return { accessKeyId, secretAccessKey };
    };
    this.#signer = new SignatureV4({ service: 's3', region: this.region, credentials, sha256: Sha256, uriEscapePath: false, applyChecksum: true });
    this.#agent = this.#url.protocol === 'https:' ? new HttpsAgent({ keepAlive: true, maxSockets: 16 }) : new HttpAgent({ keepAlive: true, maxSockets: 16 });
    this.iam = new IAMClient({
      region: this.region,
      endpoint: opts.endpoint,
      credentials,
      maxAttempts: 1,
      requestHandler: {
        connectionTimeout: this.#deadlines.connectMs,
        requestTimeout: this.#deadlines.requestMs,
        // Without it, a request past requestTimeout is only logged as a warning.
        throwOnRequestTimeout: true,
        socketTimeout: this.#deadlines.requestMs,
      },
    });
    // Per attempt: every request sent is counted.
    this.iam.middlewareStack.add(
      (next) => (args) => {
        this.#stats.requests++;
        return next(args);
      },
      { step: 'finalizeRequest', priority: 'low', name: 'datagrantRequestCounter' },
    );
  }

  stats(): BackendStats {
    return { ...this.#stats };
  }

  close(): void {
    this.iam.destroy();
    this.#agent.destroy();
  }

  /** The uid of a principal's user. */
  uid(principal: string): string {
    return rgwUid(this.opts.userPrefix, principal);
  }

  /** The principal a uid stands for, if it lies under the prefix and could be a spec name. */
  principalOf(uid: string): string | undefined {
    if (!uid.startsWith(this.opts.userPrefix)) return undefined;
    const rest = uid.slice(this.opts.userPrefix.length);
    // `tenant$uid` and subusers (`uid:sub`) are never datagrant's.
    return /^[A-Za-z0-9][A-Za-z0-9+=,.@_-]*$/.test(rest) ? rest : undefined;
  }

  /**
   * One admin ops API request, signed; the body of a 2xx answer, else an AdminApiError with the
   * gateway's code (never its body). `what` names the request in messages.
   */
  async admin(method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, query: Record<string, string>, what: string): Promise<string> {
    const signed = await this.#signer.sign({
      method,
      protocol: this.#url.protocol,
      hostname: this.#url.hostname,
      ...(this.#url.port ? { port: Number(this.#url.port) } : {}),
      path,
      query,
      headers: { host: this.#url.host },
    });
    const search = Object.keys(query)
      .sort()
      .map((k) => `${uriEncode(k)}=${uriEncode(query[k]!)}`)
      .join('&');
    const url = new URL(`${path}${search ? `?${search}` : ''}`, this.#url);
    const { status, body } = await this.#send(method, url, signed.headers);
    if (status >= 200 && status < 300) return body;
    let code = '';
    try {
      const parsed = JSON.parse(body) as { Code?: unknown };
      if (typeof parsed.Code === 'string') code = parsed.Code;
    } catch {
      // not JSON (a proxy's page): the status is all there is
    }
    throw new AdminApiError(status, code, what);
  }

  /** PutUserPolicy, encoded for the gateway's second decoding (forTwiceDecoded). */
  async putUserPolicy(principal: string, policy: string, document: string): Promise<void> {
    await this.iam.send(
      new PutUserPolicyCommand({
        UserName: forTwiceDecoded(this.uid(principal)),
        PolicyName: forTwiceDecoded(policy),
        PolicyDocument: forTwiceDecoded(document),
      }),
    );
  }

  /**
   * Runs `fn` once every change queued before it for `principal`'s user has ended: the changes to
   * one user run one at a time, those to different users at once.
   */
  async withUser<T>(principal: string, fn: () => Promise<T>): Promise<T> {
    const uid = this.uid(principal);
    const before = this.#queues.get(uid) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#queues.set(uid, settled);
    try {
      return await run;
    } finally {
      if (this.#queues.get(uid) === settled) this.#queues.delete(uid);
    }
  }

  #send(method: string, url: URL, headers: Record<string, string>): Promise<{ status: number; body: string }> {
    this.#stats.requests++;
    const { connectMs, requestMs } = this.#deadlines;
    return new Promise((resolve, reject) => {
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(url, { method, headers: method === 'GET' ? headers : { ...headers, 'content-length': '0' }, agent: this.#agent });
      let connectTimer: NodeJS.Timeout | undefined;
      const requestTimer = setTimeout(() => fail(new Deadline('request')), requestMs);
      const fail = (e: Error) => {
        clearTimeout(requestTimer);
        clearTimeout(connectTimer);
        req.destroy();
        reject(e);
      };
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(() => fail(new Deadline('connect')), connectMs);
        socket.once('connect', () => clearTimeout(connectTimer));
      });
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(requestTimer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
      });
      req.on('error', fail);
      req.end();
    });
  }

  /** A driver error: a missed deadline says which and where; anything else keeps the gateway's code. */
  error(e: unknown, address?: string): BackendError {
    if (e instanceof Deadline) {
      return deadlineError(this.name, this.opts.endpoint, e.kind, e.kind === 'connect' ? this.#deadlines.connectMs : this.#deadlines.requestMs, address);
    }
    const err = (e ?? {}) as { name?: string; message?: string };
    if (err.name === 'TimeoutError') {
      // @smithy/node-http-handler's TimeoutErrors (the IAM client): "…did not establish a connection…"
      // is the connect deadline; the request deadline and the socket's idle limit are the request's.
      const kind = /establish a connection/i.test(err.message ?? '') ? 'connect' : 'request';
      return deadlineError(this.name, this.opts.endpoint, kind, kind === 'connect' ? this.#deadlines.connectMs : this.#deadlines.requestMs, address);
    }
    return toBackendError(e, this.name, address);
  }
}
