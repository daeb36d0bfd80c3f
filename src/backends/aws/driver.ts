// The aws driver: IAM users, groups, managed policies, attachments, memberships and access keys.
//
// Ownership: only users, groups and policies whose IAM path lies under the backend's path
// (default /datagrant/) exist for datagrant. A pre-existing user elsewhere in the account is
// invisible to read and refused by execute, even when named alike.
//
// Read costs a constant number of requests however many principals there are: one STS call (the
// account id, cached), GetAccountAuthorizationDetails (1,000 items a page) and the IAM credential
// report. The report has no key ids, so it is compared with what the store knows; only users whose
// keys disagree with the store (or every user, with `exact`) cost one ListAccessKeys each. The
// report is regenerated at most every four hours by AWS: a key deleted by hand since then shows up
// at the latest when the report is renewed, or at once with `exact`.
//
// Requests are counted in SDK middleware, per attempt; the SDK's own retries are off so that
// faults are retried in one place (src/backends/retry.ts), and throttled requests are re-sent at
// their action's pace by the limiter middleware (limiter.ts); both are counted as retries.
//
// Every request has a deadline (src/backends/deadline.ts): the connection must be made within the
// connect deadline, and the whole request answered within the request deadline, which also bounds
// a TLS handshake or a socket that goes quiet half-way.
import {
  AddUserToGroupCommand,
  AttachGroupPolicyCommand,
  AttachUserPolicyCommand,
  CreateAccessKeyCommand,
  CreateGroupCommand,
  CreatePolicyCommand,
  CreatePolicyVersionCommand,
  CreateUserCommand,
  DeactivateMFADeviceCommand,
  DeleteAccessKeyCommand,
  DeleteGroupCommand,
  DeleteGroupPolicyCommand,
  DeleteLoginProfileCommand,
  DeletePolicyCommand,
  DeletePolicyVersionCommand,
  DeleteServiceSpecificCredentialCommand,
  DeleteSigningCertificateCommand,
  DeleteSSHPublicKeyCommand,
  DeleteUserCommand,
  DeleteUserPolicyCommand,
  DetachGroupPolicyCommand,
  DetachUserPolicyCommand,
  GenerateCredentialReportCommand,
  GetAccountAuthorizationDetailsCommand,
  GetCredentialReportCommand,
  GetGroupCommand,
  GetPolicyCommand,
  GetPolicyVersionCommand,
  GetUserCommand,
  IAMClient,
  ListAccessKeysCommand,
  ListEntitiesForPolicyCommand,
  ListMFADevicesCommand,
  ListPolicyVersionsCommand,
  ListServiceSpecificCredentialsCommand,
  ListSigningCertificatesCommand,
  ListSSHPublicKeysCommand,
  PutGroupPolicyCommand,
  PutUserPolicyCommand,
  RemoveUserFromGroupCommand,
  TagUserCommand,
  UntagUserCommand,
  UpdateAccessKeyCommand,
  UpdateGroupCommand,
  UpdateUserCommand,
  type IAMClientConfig,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import type { Backend, BackendStats, ExecuteResult, KnownCredential, ReadOptions } from '../backend.js';
import { DEFAULT_DEADLINES, deadlineError, type Deadlines } from '../deadline.js';
import { BackendError } from '../../core/errors.js';
import { canonicalJson } from '../../core/canonical.js';
import { addressOf, type ActualState, type Change, type Json, type Resource } from '../../core/types.js';
import { INSTALLATION_TAG } from '../../model/aws.js';
import { awsErrorCode, isRetryable, isThrottling, toBackendError } from './errors.js';
import { limitActions, sharedLimiters } from './limiter.js';
import {
  isUnder,
  keysFromStore,
  policyDescription,
  parseCredentialReport,
  parsePolicyDocument,
  resourcesFromDetails,
  type AccessKeyFact,
  type AccountDetails,
} from './state.js';
import { textOf } from '../../core/canonical.js';

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
}

/**
 * What the last read found, for the ownership check every change passes before it is executed
 * (a saved plan may have been edited): datagrant's own users, groups and policies, and every other
 * user and group that exists in the account.
 */
interface Ownership {
  users: Set<string>;
  groups: Set<string>;
  policies: Set<string>;
  otherUsers: Set<string>;
  otherGroups: Set<string>;
  otherPolicies: Set<string>;
}

type Attrs = { [key: string]: Json };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const str = (v: Json | undefined): string => (typeof v === 'string' ? v : '');
const tagsOf = (attrs: Attrs | undefined): Record<string, string> => {
  const t = attrs?.tags;
  return t && typeof t === 'object' && !Array.isArray(t) ? Object.fromEntries(Object.entries(t).map(([k, v]) => [k, textOf(v)])) : {};
};

export class AwsBackend implements Backend {
  readonly type = 'aws';
  readonly name: string;
  readonly #iam: IAMClient;
  readonly #sts: STSClient;
  readonly #opts: AwsBackendOptions;
  readonly #stats: BackendStats = { requests: 0, retries: 0 };
  #account: Promise<{ account: string; partition: string }> | undefined;
  #ownership: Ownership | undefined;
  readonly #deadlines: Deadlines;
  /** Where each failed request was sent, for the message of a missed deadline. */
  readonly #endpoints = new WeakMap<object, string>();

  constructor(opts: AwsBackendOptions) {
    if (!/^\/([^/]+\/)*$/.test(opts.iamPath))
      throw new BackendError(`${opts.name}: iamPath must start and end with / (got ${opts.iamPath})`, opts.name, 'config', false);
    this.name = opts.name;
    this.#opts = opts;
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
    this.#iam = new IAMClient(common);
    this.#sts = new STSClient(common);
    // Per attempt, below the (disabled) SDK retry middleware: every request sent is counted, and a
    // failed one remembers where it went (the endpoint may come from the environment).
    const counter = { step: 'finalizeRequest', priority: 'low', name: 'datagrantRequestCounter' } as const;
    this.#iam.middlewareStack.add((next) => (args) => this.#sent(args.request, () => next(args)), counter);
    this.#sts.middlewareStack.add((next) => (args) => this.#sent(args.request, () => next(args)), counter);
    // Each API action paced at the rate AWS lets through, learned from its throttles (limiter.ts).
    const limiters = sharedLimiters(`${opts.name}@${opts.endpoint ?? process.env.AWS_ENDPOINT_URL ?? common.region}`);
    limitActions(this.#iam, limiters, () => this.#stats.retries++);
    limitActions(this.#sts, limiters, () => this.#stats.retries++);
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

  /** A driver error: a missed deadline says which and where; anything else keeps its AWS code. */
  #error(e: unknown, address?: string): BackendError {
    const err = (e ?? {}) as { name?: string; message?: string };
    if (err.name === 'TimeoutError') {
      // @smithy/node-http-handler's TimeoutErrors: "…did not establish a connection…" is the
      // connect deadline; the request deadline and the socket's idle limit are the request's.
      const kind = /establish a connection/i.test(err.message ?? '') ? 'connect' : 'request';
      const endpoint = (typeof e === 'object' && e !== null ? this.#endpoints.get(e) : undefined) ?? this.#opts.endpoint ?? 'the AWS endpoint';
      return deadlineError(this.name, endpoint, kind, kind === 'connect' ? this.#deadlines.connectMs : this.#deadlines.requestMs, address);
    }
    return toBackendError(e, this.name, address);
  }

  stats(): BackendStats {
    return { ...this.#stats };
  }

  async close(): Promise<void> {
    this.#iam.destroy();
    this.#sts.destroy();
  }

  // ---------------------------------------------------------------- helpers

  #addr(kind: string, ...names: string[]) {
    return addressOf(this.name, kind, ...names);
  }

  /** Account id and ARN partition (`aws`, `aws-cn`, `aws-us-gov`): one STS call per driver, even when many changes ask at once. */
  #caller(): Promise<{ account: string; partition: string }> {
    this.#account ??= this.#sts.send(new GetCallerIdentityCommand({})).then((id) => {
      if (!id.Account) throw new BackendError(`${this.name}: STS GetCallerIdentity returned no account`, this.name, 'NoAccount', false);
      return { account: id.Account, partition: id.Arn?.split(':')[1] || 'aws' };
    });
    // A failure is not cached: the next call asks again.
    this.#account.catch(() => (this.#account = undefined));
    return this.#account;
  }

  async #policyArn(name: string, path = this.#opts.iamPath): Promise<string> {
    if (name.startsWith('arn:')) return name;
    const { account, partition } = await this.#caller();
    return `arn:${partition}:iam::${account}:policy${path}${name}`;
  }

  /** Runs `fn`, treating the given error codes as success (returns undefined). */
  async #tolerate<T>(codes: string[], fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      if (codes.includes(awsErrorCode(e) ?? '')) return undefined;
      throw e;
    }
  }

  /** Retries NoSuchEntity for a bounded moment: what a change references may have just been created. */
  async #consistent<T>(fn: () => Promise<T>): Promise<T> {
    const budget = this.#opts.consistencyWaitMs ?? 800;
    const started = Date.now();
    for (let delay = 50; ; delay = Math.min(delay * 2, 400)) {
      try {
        return await fn();
      } catch (e) {
        if (awsErrorCode(e) !== 'NoSuchEntity' || Date.now() - started + delay > budget) throw e;
        this.#stats.retries++;
        await sleep(delay);
      }
    }
  }

  #description(): { Description?: string } {
    return this.#opts.installation ? { Description: policyDescription(this.#opts.installation) } : {};
  }

  #notOurs(what: string, name: string, path: string | undefined, address: string): BackendError {
    return new BackendError(
      `${this.name}: ${address}: an IAM ${what} named ${name} already exists ${path ? `at path ${path}` : 'elsewhere in the account'}, outside datagrant's path ${this.#opts.iamPath}; datagrant will not take over an object it does not own — rename the ${what} in the spec, or remove or move the existing one by hand`,
      this.name,
      'NotOwned',
      false,
      address,
    );
  }

  // ---------------------------------------------------------------- read

  async read(opts: ReadOptions): Promise<ActualState> {
    try {
      await this.#caller();
      const details = await this.#details();
      const owned = details.users.filter((u) => u.UserName && isUnder(u.Path, this.#opts.iamPath)).map((u) => u.UserName!);
      const keys = await this.#keys(owned, opts.credentials, opts.exact ?? false);
      const { resources, foreign } = resourcesFromDetails({
        backend: this.name,
        iamPath: this.#opts.iamPath,
        details,
        keys,
        credentials: opts.credentials,
        ...(this.#opts.installation ? { installation: this.#opts.installation } : {}),
      });
      this.#ownership = ownershipOf(details, resources);
      return { backend: this.name, resources, ...(foreign.length ? { foreign } : {}) };
    } catch (e) {
      throw this.#error(e);
    }
  }

  /** What the ownership checks go by: the last read's, or a bulk read now if execute comes first. */
  async #owns(): Promise<Ownership> {
    if (!this.#ownership) {
      const details = await this.#details();
      const { resources } = resourcesFromDetails({
        backend: this.name,
        iamPath: this.#opts.iamPath,
        details,
        keys: new Map(),
        credentials: [],
        ...(this.#opts.installation ? { installation: this.#opts.installation } : {}),
      });
      this.#ownership = ownershipOf(details, resources);
    }
    return this.#ownership;
  }

  /**
   * Every change passes this before any request: it may only grant to, or change, an object
   * datagrant owns (`grant`), or remove from something that is either datagrant's or does not
   * exist (`remove`, idempotent). A plan file edited to give an unmanaged user a key, or to attach
   * a policy datagrant did not make, stops here.
   */
  async #checkOwnership(c: Change): Promise<void> {
    const o = await this.#owns();
    const r = (c.after ?? c.before)!;
    const grant = c.action !== 'delete';
    const refuse = (what: string) => {
      throw new BackendError(
        `${this.name}: ${c.address}: refused: ${what} is not datagrant's (outside ${this.#opts.iamPath}${this.#opts.installation ? ` or another installation's` : ''}); datagrant never changes what it does not own`,
        this.name,
        'NotOwned',
        false,
        c.address,
      );
    };
    const user = (name: string, mustOwn: boolean) => {
      if (o.users.has(name)) return;
      if (mustOwn || o.otherUsers.has(name)) refuse(`IAM user ${name}`);
    };
    const group = (name: string, mustOwn: boolean) => {
      if (o.groups.has(name)) return;
      if (mustOwn || o.otherGroups.has(name)) refuse(`IAM group ${name}`);
    };
    const entity = (kind: string, name: string, mustOwn: boolean) => (kind === 'group' ? group(name, mustOwn) : user(name, mustOwn));
    const before = c.before;
    switch (c.kind) {
      case 'user':
        if (c.action !== 'create') user(r.name, false);
        return;
      case 'group':
        if (c.action !== 'create') group(r.name, false);
        return;
      case 'policy':
        if (c.action !== 'create' && !o.policies.has(r.name) && o.otherPolicies.has(r.name)) refuse(`managed policy ${r.name}`);
        return;
      case 'key':
        user(str(r.attrs.user) || r.name, grant);
        return;
      case 'inline-policy':
        entity(str(r.attrs.entity), str(r.attrs.entityName), grant);
        return;
      case 'membership':
        if (grant) {
          user(str(c.after!.attrs.user), true);
          group(str(c.after!.attrs.group), true);
        }
        // Removing anyone from datagrant's group, or datagrant's user from any group, is
        // datagrant's business; a membership between two objects of others is not.
        if (before && (c.action === 'delete' || c.action === 'replace')) {
          const g = str(before.attrs.group);
          const u = str(before.attrs.user);
          if (!o.groups.has(g) && !o.users.has(u) && (o.otherGroups.has(g) || o.otherUsers.has(u))) refuse(`the membership of ${u} in ${g}`);
        }
        return;
      case 'attachment':
        if (grant) {
          const after = c.after!;
          entity(str(after.attrs.entity), str(after.attrs.entityName), true);
          const policy = str(after.attrs.policy) || after.name;
          if (policy.startsWith('arn:') || !o.policies.has(policy)) refuse(`managed policy ${policy}`);
        }
        if (before && (c.action === 'delete' || c.action === 'replace')) entity(str(before.attrs.entity), str(before.attrs.entityName), false);
        return;
      default:
        return;
    }
  }

  /** Keeps the ownership sets true as this driver creates and deletes. */
  #owned(c: Change): void {
    const o = this.#ownership;
    if (!o) return;
    const set = c.kind === 'user' ? o.users : c.kind === 'group' ? o.groups : c.kind === 'policy' ? o.policies : undefined;
    if (!set) return;
    const name = (c.after ?? c.before)!.name;
    if (c.action === 'delete') set.delete(name);
    else set.add(name);
  }

  async #details(): Promise<AccountDetails> {
    const out: AccountDetails = { users: [], groups: [], policies: [] };
    let marker: string | undefined;
    do {
      const page = await this.#iam.send(
        new GetAccountAuthorizationDetailsCommand({ Filter: ['User', 'Group', 'LocalManagedPolicy'], MaxItems: 1000, ...(marker ? { Marker: marker } : {}) }),
      );
      out.users.push(...(page.UserDetailList ?? []));
      out.groups.push(...(page.GroupDetailList ?? []));
      out.policies.push(...(page.Policies ?? []));
      marker = page.IsTruncated ? page.Marker : undefined;
    } while (marker);
    return out;
  }

  async #credentialReport(): Promise<string> {
    const deadline = Date.now() + (this.#opts.reportWaitMs ?? 120_000);
    let generate = true;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      if (generate) await this.#iam.send(new GenerateCredentialReportCommand({}));
      try {
        const r = await this.#iam.send(new GetCredentialReportCommand({}));
        return Buffer.from(r.Content ?? new Uint8Array()).toString('utf8');
      } catch (e) {
        const code = awsErrorCode(e);
        if (
          ![
            'ReportInProgress',
            'ReportNotPresent',
            'ReportExpired',
            'CredentialReportNotPresent',
            'CredentialReportNotReady',
            'CredentialReportExpired',
          ].includes(code ?? '')
        )
          throw e;
        if (Date.now() + delay > deadline) throw e;
        generate = code !== 'ReportInProgress' && code !== 'CredentialReportNotReady';
        this.#stats.retries++;
        await sleep(delay);
      }
    }
  }

  async #keys(users: string[], credentials: KnownCredential[], exact: boolean): Promise<Map<string, AccessKeyFact[]>> {
    const keys = new Map<string, AccessKeyFact[]>();
    let unsure = users;
    if (!exact && users.length > 0) {
      let csv: string;
      try {
        csv = await this.#credentialReport();
      } catch (e) {
        // Without iam:GenerateCredentialReport the read still works, one ListAccessKeys per user.
        if (awsErrorCode(e) !== 'AccessDenied') throw e;
        csv = '';
      }
      const report = parseCredentialReport(csv);
      unsure = [];
      for (const user of users) {
        const known = keysFromStore(user, this.#addr('key', user), report, credentials);
        if (known) keys.set(user, known);
        else unsure.push(user);
      }
    }
    let next = 0;
    const worker = async () => {
      while (next < unsure.length) {
        const user = unsure[next++]!;
        keys.set(user, await this.#listKeys(user));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#opts.concurrency ?? 8, unsure.length) }, worker));
    return keys;
  }

  /** Deletes the keys of `user` created since `since` (ms), other than `keep`. */
  async #undoLostKeys(user: string, keep: string, since: number): Promise<void> {
    // IAM's CreateDate has second precision; allow for clock skew between us and AWS.
    const cutoff = since - 5_000;
    for (const k of await this.#listKeys(user)) {
      if (k.accessKeyId === keep || Date.parse(k.createdAt) < cutoff) continue;
      await this.#tolerate(['NoSuchEntity'], () =>
        this.#iam.send(new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: k.accessKeyId, Status: 'Inactive' })),
      );
      await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: k.accessKeyId })));
    }
  }

  async #listKeys(user: string): Promise<AccessKeyFact[]> {
    const r = await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new ListAccessKeysCommand({ UserName: user })));
    return (r?.AccessKeyMetadata ?? []).map((k) => ({
      accessKeyId: k.AccessKeyId!,
      status: k.Status ?? 'Active',
      createdAt: (k.CreateDate ?? new Date(0)).toISOString(),
    }));
  }

  // ---------------------------------------------------------------- execute

  async execute(change: Change): Promise<ExecuteResult> {
    try {
      await this.#checkOwnership(change);
      const run = () => this.#execute(change);
      // Creating a key, or re-creating a policy, must not be repeated: those retry inside.
      const whole = change.action !== 'delete' && change.kind !== 'key' && !(change.kind === 'policy' && change.action === 'replace');
      const out = whole ? await this.#consistent(run) : await run();
      this.#owned(change);
      return out;
    } catch (e) {
      throw this.#error(e, change.address);
    }
  }

  async #execute(c: Change): Promise<ExecuteResult> {
    const res = (c.after ?? c.before) as Resource;
    switch (c.kind) {
      case 'user':
        return this.#user(c, res);
      case 'group':
        return this.#group(c, res);
      case 'policy':
        return this.#policy(c, res);
      case 'attachment':
        return this.#attachment(c, res);
      case 'membership':
        return this.#membership(c, res);
      case 'inline-policy':
        return this.#inline(c, res);
      case 'key':
        return this.#key(c, res);
      default:
        throw new BackendError(`${this.name}: ${c.address}: unknown kind ${c.kind}`, this.name, 'UnknownKind', false, c.address);
    }
  }

  async #user(c: Change, r: Resource): Promise<ExecuteResult> {
    const user = r.name;
    if (c.action === 'delete') {
      await this.#deleteUser(user);
      return {};
    }
    const path = str(r.attrs.path) || this.#opts.iamPath;
    const tags = tagsOf(r.attrs);
    if (c.action === 'create' || c.action === 'replace') {
      try {
        await this.#iam.send(new CreateUserCommand({ UserName: user, Path: path, Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }));
        return {};
      } catch (e) {
        if (awsErrorCode(e) !== 'EntityAlreadyExists') throw e;
      }
      const existing = (await this.#iam.send(new GetUserCommand({ UserName: user }))).User;
      if (!isUnder(existing?.Path, this.#opts.iamPath)) throw this.#notOurs('user', user, existing?.Path, c.address);
      const current: Record<string, string> = {};
      for (const t of existing?.Tags ?? []) if (t.Key) current[t.Key] = t.Value ?? '';
      const theirs = current[INSTALLATION_TAG];
      if (this.#opts.installation && theirs && theirs !== this.#opts.installation) {
        throw new BackendError(
          `${this.name}: ${c.address}: IAM user ${user} belongs to another datagrant installation (${theirs}); datagrant will not take it over`,
          this.name,
          'NotOwned',
          false,
          c.address,
        );
      }
      await this.#updateUser(user, { path: existing?.Path ?? '/', tags: current }, { path, tags });
      return {};
    }
    await this.#updateUser(user, { path: str(c.before?.attrs.path), tags: tagsOf(c.before?.attrs) }, { path, tags });
    return {};
  }

  async #updateUser(user: string, before: { path: string; tags: Record<string, string> }, after: { path: string; tags: Record<string, string> }) {
    const removed = Object.keys(before.tags).filter((k) => !(k in after.tags));
    const changed = Object.entries(after.tags).filter(([k, v]) => before.tags[k] !== v);
    if (removed.length) await this.#iam.send(new UntagUserCommand({ UserName: user, TagKeys: removed }));
    if (changed.length) await this.#iam.send(new TagUserCommand({ UserName: user, Tags: changed.map(([Key, Value]) => ({ Key, Value })) }));
    if (before.path !== after.path) await this.#iam.send(new UpdateUserCommand({ UserName: user, NewPath: after.path }));
  }

  /**
   * DeleteUser first: keys, policies and memberships are separate changes that ran before. Only
   * when IAM refuses (DeleteConflict) are the user's other credentials — console password,
   * signing certificates, SSH keys, service credentials, MFA devices — removed, so an ordinary
   * delete costs one request.
   */
  async #deleteUser(user: string) {
    try {
      await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DeleteUserCommand({ UserName: user })));
      return;
    } catch (e) {
      if (awsErrorCode(e) !== 'DeleteConflict') throw e;
    }
    const gone = ['NoSuchEntity'];
    await this.#tolerate(gone, () => this.#iam.send(new DeleteLoginProfileCommand({ UserName: user })));
    const certs = await this.#tolerate(gone, () => this.#iam.send(new ListSigningCertificatesCommand({ UserName: user })));
    for (const cert of certs?.Certificates ?? []) {
      await this.#tolerate(gone, () => this.#iam.send(new DeleteSigningCertificateCommand({ UserName: user, CertificateId: cert.CertificateId })));
    }
    const ssh = await this.#tolerate(gone, () => this.#iam.send(new ListSSHPublicKeysCommand({ UserName: user })));
    for (const k of ssh?.SSHPublicKeys ?? []) {
      await this.#tolerate(gone, () => this.#iam.send(new DeleteSSHPublicKeyCommand({ UserName: user, SSHPublicKeyId: k.SSHPublicKeyId })));
    }
    const svc = await this.#tolerate([...gone, 'NotSupportedService'], () => this.#iam.send(new ListServiceSpecificCredentialsCommand({ UserName: user })));
    for (const s of svc?.ServiceSpecificCredentials ?? []) {
      await this.#tolerate(gone, () =>
        this.#iam.send(new DeleteServiceSpecificCredentialCommand({ UserName: user, ServiceSpecificCredentialId: s.ServiceSpecificCredentialId })),
      );
    }
    const mfa = await this.#tolerate(gone, () => this.#iam.send(new ListMFADevicesCommand({ UserName: user })));
    for (const d of mfa?.MFADevices ?? []) {
      await this.#tolerate(gone, () => this.#iam.send(new DeactivateMFADeviceCommand({ UserName: user, SerialNumber: d.SerialNumber })));
    }
    // The user is datagrant's and is going away: keys that appeared since the plan go with it.
    for (const k of await this.#listKeys(user)) {
      await this.#tolerate(gone, () => this.#iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: k.accessKeyId })));
    }
    await this.#tolerate(gone, () => this.#iam.send(new DeleteUserCommand({ UserName: user })));
  }

  async #group(c: Change, r: Resource): Promise<ExecuteResult> {
    const group = r.name;
    if (c.action === 'delete') {
      await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DeleteGroupCommand({ GroupName: group })));
      return {};
    }
    const path = str(r.attrs.path) || this.#opts.iamPath;
    if (c.action === 'update') {
      await this.#iam.send(new UpdateGroupCommand({ GroupName: group, NewPath: path }));
      return {};
    }
    try {
      await this.#iam.send(new CreateGroupCommand({ GroupName: group, Path: path }));
      return {};
    } catch (e) {
      if (awsErrorCode(e) !== 'EntityAlreadyExists') throw e;
    }
    const existing = (await this.#iam.send(new GetGroupCommand({ GroupName: group, MaxItems: 1 }))).Group;
    if (!isUnder(existing?.Path, this.#opts.iamPath)) throw this.#notOurs('group', group, existing?.Path, c.address);
    if (existing?.Path !== path) await this.#iam.send(new UpdateGroupCommand({ GroupName: group, NewPath: path }));
    return {};
  }

  async #policy(c: Change, r: Resource): Promise<ExecuteResult> {
    const name = r.name;
    if (c.action === 'delete') {
      await this.#deletePolicy(await this.#policyArn(name, str(c.before?.attrs.path) || this.#opts.iamPath));
      return {};
    }
    const path = str(r.attrs.path) || this.#opts.iamPath;
    const document = JSON.stringify(r.attrs.document);
    const arn = await this.#policyArn(name, path);
    if (c.action === 'update') {
      await this.#newPolicyVersion(arn, document);
      return { meta: { arn } };
    }
    if (c.action === 'replace') return this.#replacePolicy(c, name, path, document);
    try {
      await this.#iam.send(new CreatePolicyCommand({ PolicyName: name, Path: path, PolicyDocument: document, ...this.#description() }));
      return { meta: { arn } };
    } catch (e) {
      if (awsErrorCode(e) !== 'EntityAlreadyExists') throw e;
    }
    // Policy names are unique in an account: ours at `arn`, or someone else's elsewhere.
    const existing = await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new GetPolicyCommand({ PolicyArn: arn })));
    if (!existing?.Policy || !isUnder(existing.Policy.Path, this.#opts.iamPath)) throw this.#notOurs('policy', name, existing?.Policy?.Path, c.address);
    const version = await this.#iam.send(new GetPolicyVersionCommand({ PolicyArn: arn, VersionId: existing.Policy.DefaultVersionId }));
    const same = canonicalJson(parsePolicyDocument(version.PolicyVersion?.Document)) === canonicalJson(parsePolicyDocument(document));
    if (!same) await this.#newPolicyVersion(arn, document);
    return { meta: { arn } };
  }

  /** CreatePolicyVersion as default; IAM keeps five versions, so the oldest non-default one makes room. */
  async #newPolicyVersion(arn: string, document: string) {
    try {
      await this.#iam.send(new CreatePolicyVersionCommand({ PolicyArn: arn, PolicyDocument: document, SetAsDefault: true }));
      return;
    } catch (e) {
      if (awsErrorCode(e) !== 'LimitExceeded') throw e;
    }
    const versions = (await this.#iam.send(new ListPolicyVersionsCommand({ PolicyArn: arn }))).Versions ?? [];
    const oldest = versions.filter((v) => !v.IsDefaultVersion).sort((a, b) => (a.CreateDate?.getTime() ?? 0) - (b.CreateDate?.getTime() ?? 0))[0];
    if (oldest) await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DeletePolicyVersionCommand({ PolicyArn: arn, VersionId: oldest.VersionId })));
    await this.#iam.send(new CreatePolicyVersionCommand({ PolicyArn: arn, PolicyDocument: document, SetAsDefault: true }));
  }

  /** DeletePolicy first; AWS refuses while non-default versions exist, which are then removed. */
  async #deletePolicy(arn: string) {
    try {
      await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DeletePolicyCommand({ PolicyArn: arn })));
      return;
    } catch (e) {
      if (awsErrorCode(e) !== 'DeleteConflict') throw e;
    }
    const versions = (await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new ListPolicyVersionsCommand({ PolicyArn: arn }))))?.Versions ?? [];
    for (const v of versions.filter((x) => !x.IsDefaultVersion)) {
      await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DeletePolicyVersionCommand({ PolicyArn: arn, VersionId: v.VersionId })));
    }
    await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DeletePolicyCommand({ PolicyArn: arn })));
  }

  /** A new path means a new ARN: detach from everyone, delete, create at the new path, re-attach. */
  async #replacePolicy(c: Change, name: string, path: string, document: string): Promise<ExecuteResult> {
    const oldArn = await this.#policyArn(name, str(c.before?.attrs.path) || this.#opts.iamPath);
    const entities = await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new ListEntitiesForPolicyCommand({ PolicyArn: oldArn })));
    const users = (entities?.PolicyUsers ?? []).map((u) => u.UserName!);
    const groups = (entities?.PolicyGroups ?? []).map((g) => g.GroupName!);
    for (const u of users) await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DetachUserPolicyCommand({ UserName: u, PolicyArn: oldArn })));
    for (const g of groups) await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DetachGroupPolicyCommand({ GroupName: g, PolicyArn: oldArn })));
    await this.#deletePolicy(oldArn);
    const arn = await this.#policyArn(name, path);
    await this.#iam.send(new CreatePolicyCommand({ PolicyName: name, Path: path, PolicyDocument: document, ...this.#description() }));
    for (const u of users) await this.#consistent(() => this.#iam.send(new AttachUserPolicyCommand({ UserName: u, PolicyArn: arn })));
    for (const g of groups) await this.#consistent(() => this.#iam.send(new AttachGroupPolicyCommand({ GroupName: g, PolicyArn: arn })));
    return { meta: { arn } };
  }

  async #attachment(c: Change, r: Resource): Promise<ExecuteResult> {
    const entity = str(r.attrs.entity);
    const entityName = str(r.attrs.entityName);
    const arn = await this.#policyArn(str(r.attrs.policy) || r.name);
    if (c.action === 'delete' || c.action === 'replace') {
      const b = c.before!;
      const beforeArn = await this.#policyArn(str(b.attrs.policy) || b.name);
      const before = str(b.attrs.entity);
      const beforeName = str(b.attrs.entityName);
      await this.#tolerate(['NoSuchEntity'], () =>
        before === 'group'
          ? this.#iam.send(new DetachGroupPolicyCommand({ GroupName: beforeName, PolicyArn: beforeArn }))
          : this.#iam.send(new DetachUserPolicyCommand({ UserName: beforeName, PolicyArn: beforeArn })),
      );
      if (c.action === 'delete') return {};
    }
    if (entity === 'group') await this.#iam.send(new AttachGroupPolicyCommand({ GroupName: entityName, PolicyArn: arn }));
    else await this.#iam.send(new AttachUserPolicyCommand({ UserName: entityName, PolicyArn: arn }));
    return {};
  }

  async #membership(c: Change, r: Resource): Promise<ExecuteResult> {
    if (c.action === 'delete' || c.action === 'replace') {
      const b = c.before!;
      await this.#tolerate(['NoSuchEntity'], () =>
        this.#iam.send(new RemoveUserFromGroupCommand({ GroupName: str(b.attrs.group), UserName: str(b.attrs.user) })),
      );
      if (c.action === 'delete') return {};
    }
    await this.#iam.send(new AddUserToGroupCommand({ GroupName: str(r.attrs.group), UserName: str(r.attrs.user) }));
    return {};
  }

  async #inline(c: Change, r: Resource): Promise<ExecuteResult> {
    const entity = str(r.attrs.entity);
    const entityName = str(r.attrs.entityName);
    if (c.action === 'delete') {
      await this.#tolerate(['NoSuchEntity'], () =>
        entity === 'group'
          ? this.#iam.send(new DeleteGroupPolicyCommand({ GroupName: entityName, PolicyName: r.name }))
          : this.#iam.send(new DeleteUserPolicyCommand({ UserName: entityName, PolicyName: r.name })),
      );
      return {};
    }
    const PolicyDocument = JSON.stringify(r.attrs.document);
    if (entity === 'group') await this.#iam.send(new PutGroupPolicyCommand({ GroupName: entityName, PolicyName: r.name, PolicyDocument }));
    else await this.#iam.send(new PutUserPolicyCommand({ UserName: entityName, PolicyName: r.name, PolicyDocument }));
    return {};
  }

  async #key(c: Change, r: Resource): Promise<ExecuteResult> {
    const user = str(r.attrs.user) || r.name;
    const beforeId = str(c.before?.meta?.accessKeyId);
    if (c.action === 'delete') {
      if (!beforeId) throw new BackendError(`${this.name}: ${c.address}: no access key id to delete`, this.name, 'MissingKeyId', false, c.address);
      // Deactivated first, so that a key whose deletion fails half-way no longer opens anything.
      await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: beforeId, Status: 'Inactive' })));
      await this.#tolerate(['NoSuchEntity'], () => this.#iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: beforeId })));
      return {};
    }
    if (c.action === 'update') {
      const status = str(r.attrs.status) === 'Inactive' ? 'Inactive' : 'Active';
      await this.#iam.send(new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: beforeId, Status: status }));
      return {};
    }
    // create, or replace (rotation): a new key; the old one stays until its grace ends and a later
    // delete change removes it.
    let created;
    const attemptStart = Date.now();
    try {
      created = (await this.#consistent(() => this.#iam.send(new CreateAccessKeyCommand({ UserName: user })))).AccessKey;
    } catch (e) {
      if (isRetryable(e) && !isThrottling(e)) {
        // Ambiguous: AWS may have created a key whose secret we never received. Such a key is
        // useless and must not linger, so delete any key of this user made by this attempt
        // before the error propagates; repeating the change is then safe.
        await this.#undoLostKeys(user, beforeId, attemptStart);
      }
      if (awsErrorCode(e) !== 'LimitExceeded') throw e;
      const ids = (await this.#listKeys(user)).map((k) => `${k.accessKeyId} (${k.status}, created ${k.createdAt})`);
      throw new BackendError(
        `${this.name}: ${c.address}: user ${user} already has ${ids.length} access keys: ${ids.join(', ')}; AWS allows two per user, so one must be deleted before a new key can be issued`,
        this.name,
        'LimitExceeded',
        false,
        c.address,
      );
    }
    if (!created?.AccessKeyId || !created.SecretAccessKey)
      throw new BackendError(`${this.name}: ${c.address}: CreateAccessKey returned no key`, this.name, 'NoKey', false, c.address);
    const accessKeyId = created.AccessKeyId;
    const createdAt = (created.CreateDate ?? new Date()).toISOString();
    if (str(r.attrs.status) === 'Inactive') {
      await this.#iam.send(new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: accessKeyId, Status: 'Inactive' }));
    }
    return {
      secret: { accessKeyId, secretAccessKey: created.SecretAccessKey },
      credential: { credentialId: accessKeyId, createdAt },
      meta: { accessKeyId, createdAt },
    };
  }
}

function ownershipOf(details: AccountDetails, resources: Resource[]): Ownership {
  const names = (kind: string) => new Set(resources.filter((r) => r.kind === kind).map((r) => r.name));
  const users = names('user');
  const groups = names('group');
  const policies = names('policy');
  const other = (all: (string | undefined)[], mine: Set<string>) => new Set(all.filter((n): n is string => n !== undefined && !mine.has(n)));
  return {
    users,
    groups,
    policies,
    otherUsers: other(
      details.users.map((u) => u.UserName),
      users,
    ),
    otherGroups: other(
      details.groups.map((g) => g.GroupName),
      groups,
    ),
    otherPolicies: other(
      details.policies.map((p) => p.PolicyName ?? (p.Arn ? p.Arn.slice(p.Arn.lastIndexOf('/') + 1) : undefined)),
      policies,
    ),
  };
}

export function createAwsBackend(opts: AwsBackendOptions): AwsBackend {
  return new AwsBackend(opts);
}
