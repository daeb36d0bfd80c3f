// An in-memory backend that enforces what real identity systems enforce about order: a create
// fails if something it depends on is missing, a delete fails while something still depends on
// it (IAM's DeleteConflict). Used to test apply without a network.
import { randomBytes } from 'node:crypto';
import type { Backend, BackendStats, ExecuteResult, IssuedBackendSession, ReadOptions, SessionIssueRequest } from '../../src/backends/backend.js';
import { BackendError } from '../../src/core/errors.js';
import type { ActualState, Change, Resource } from '../../src/core/types.js';

export class FakeBackend implements Backend {
  readonly type = 'fake';
  readonly objects = new Map<string, Resource>();
  readonly calls: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  #requests = 0;

  constructor(
    readonly name: string,
    private readonly delayMs = 0,
  ) {}

  async read(_opts: ReadOptions): Promise<ActualState> {
    this.#requests++;
    return { backend: this.name, resources: [...this.objects.values()].map((r) => structuredClone(r)) };
  }

  async execute(change: Change): Promise<ExecuteResult> {
    this.#requests++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      this.calls.push(`${change.action} ${change.address}`);
      if (change.action === 'delete') {
        // A credential lists memberships and policies among its deps only so that teardown revokes
        // it first; like IAM, removing those under a live key is allowed.
        const dependent = [...this.objects.values()].find(
          (r) => r.deps.includes(change.address) && !(r.kind === 'key' && ['membership', 'attachment', 'inline-policy'].includes(change.kind)),
        );
        if (dependent)
          throw new BackendError(`DeleteConflict: ${dependent.address} still depends on ${change.address}`, this.name, 'DeleteConflict', false, change.address);
        this.objects.delete(change.address);
        return {};
      }
      const after = change.after!;
      for (const d of after.deps) {
        if (!this.objects.has(d)) throw new BackendError(`NoSuchEntity: ${d} does not exist`, this.name, 'NoSuchEntity', false, change.address);
      }
      if (after.kind === 'key' && change.action === 'update') {
        const current = this.objects.get(change.address)!;
        this.objects.set(change.address, { ...current, attrs: structuredClone(after.attrs) });
        return {};
      }
      if (after.kind === 'key') {
        const id = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
        const createdAt = new Date().toISOString();
        const previous = this.objects.get(change.address);
        if (previous && change.action === 'replace') {
          this.objects.set(`${change.address}~${String(previous.meta?.accessKeyId)}`, {
            ...previous,
            address: `${change.address}~${String(previous.meta?.accessKeyId)}`,
            deps: [],
          });
        }
        this.objects.set(change.address, { ...structuredClone(after), meta: { accessKeyId: id, createdAt } });
        return {
          secret: { accessKeyId: id, secretAccessKey: randomBytes(30).toString('base64') },
          credential: { credentialId: id, createdAt },
          meta: { accessKeyId: id, createdAt },
        };
      }
      this.objects.set(change.address, structuredClone(after));
      return {};
    } finally {
      this.inFlight--;
    }
  }

  stats(): BackendStats {
    return { requests: this.#requests, retries: 0 };
  }

  async close(): Promise<void> {}
}

/**
 * A FakeBackend that issues sessions the way the real drivers answer (issue 12): AWS-shaped
 * (STS's 900 s floor, a session token) or PostgreSQL-shaped (a login role named after the
 * principal). Every request is kept, and every secret it handed out, for tests to look for.
 */
export class FakeSessionBackend extends FakeBackend {
  readonly sessionRequests: SessionIssueRequest[] = [];
  readonly secrets: string[] = [];
  /** Set to make the next issues fail with this error. */
  failWith: Error | undefined;

  constructor(
    name: string,
    readonly kind: 'aws' | 'postgres' = 'aws',
    private readonly clock: () => Date = () => new Date(),
  ) {
    super(name);
  }

  async issueSession(req: SessionIssueRequest): Promise<IssuedBackendSession> {
    this.sessionRequests.push(req);
    if (this.failWith) throw this.failWith;
    const seconds = this.kind === 'aws' ? Math.max(req.durationSeconds, 900) : req.durationSeconds;
    const expiresAt = new Date(this.clock().getTime() + seconds * 1000).toISOString();
    const password = randomBytes(24).toString('base64');
    this.secrets.push(password);
    if (this.kind === 'aws') {
      const sessionToken = `FwoG${randomBytes(48).toString('base64')}`;
      this.secrets.push(sessionToken);
      return {
        secret: { accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`, secretAccessKey: password, sessionToken },
        expiresAt,
        target: req.target,
        readyMs: 3,
      };
    }
    const user = `${req.target}_s_${randomBytes(4).toString('hex')}`;
    return { secret: { user, password, host: 'db.internal', port: '5432', database: 'warehouse' }, expiresAt, target: user, readyMs: 1 };
  }
}
