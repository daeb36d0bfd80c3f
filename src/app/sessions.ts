// The session broker (issue 12): decides whether a principal may have a short-lived session on a
// backend (the compiler's `sessionTarget`, the same answer the roles are compiled from), asks the
// backend's driver for one, and records it in the state so that a later plan can revoke it.
// Auditing is the caller's (sessions-port.ts).
import type { Backend, IssuedBackendSession } from '../backends/backend.js';
import { sessionTarget } from '../compile/index.js';
import type { BackendSpec, Spec } from '../spec/schema.js';
import type { StateStore } from '../store/store.js';
import { SessionRefusedError, SessionsUnsupportedError, type IssuedSession, type SessionBroker, type SessionRequest } from './sessions-port.js';

export { SessionsUnsupportedError };

export interface SessionBrokerContext {
  /** The spec as it stands now, SCIM people merged in as converge merges them. */
  spec: () => Promise<Spec>;
  /** The state: where sessions are recorded, and the installation id the drivers carry. */
  store: () => Promise<Pick<StateStore, 'recordSession' | 'installation'>>;
  /** Makes one backend's driver (src/backends/factory.ts makeBackends, decorated). */
  makeBackend: (name: string, spec: BackendSpec, installation: string) => Backend;
  now: () => Date;
}

/** What the broker tells its caller beyond the session itself (for the caller's audit entry). */
export interface SessionIssue {
  session: IssuedSession;
  /** Seconds asked of the backend (before AWS raises it to STS's floor). */
  durationSeconds: number;
  /** What the session runs as (the AWS role; the PostgreSQL login role). */
  target: string;
  readyMs: number;
}

export interface LocalSessionBroker extends SessionBroker {
  /** `issue`, with what the caller's audit entry needs. */
  issueDetailed(req: SessionRequest): Promise<SessionIssue>;
  /** Closes the drivers it keeps open between requests. */
  close(): Promise<void>;
}

export function createSessionBroker(ctx: SessionBrokerContext): LocalSessionBroker {
  // Drivers stay open between requests (serve issues many sessions; an SDK client or a connection
  // pool per request would cost more than the session). A backend whose spec changed gets a new one.
  const drivers = new Map<string, { key: string; driver: Backend }>();
  const retired: Backend[] = [];

  const driverFor = async (name: string, spec: BackendSpec): Promise<Backend> => {
    const key = JSON.stringify(spec);
    const kept = drivers.get(name);
    if (kept?.key === key) return kept.driver;
    const installation = await (await ctx.store()).installation();
    // Another request may have made it while this one waited for the store.
    const again = drivers.get(name);
    if (again?.key === key) return again.driver;
    if (again) retired.push(again.driver);
    const driver = ctx.makeBackend(name, spec, installation);
    drivers.set(name, { key, driver });
    return driver;
  };

  const issueDetailed = async (req: SessionRequest): Promise<SessionIssue> => {
    const spec = await ctx.spec();
    const asked = ctx.now();
    const t = sessionTarget(spec, req.backend, req.principal, asked);
    if ('refused' in t) throw new SessionRefusedError(t.refused, t.message);
    const endsAt = t.endsAt ? new Date(t.endsAt).getTime() : undefined;
    const durationSeconds = Math.min(t.maxSeconds, endsAt === undefined ? Infinity : Math.floor((endsAt - asked.getTime()) / 1000));
    if (durationSeconds <= 0) {
      throw new SessionRefusedError('no-access', `principal ${JSON.stringify(req.principal)} has no unexpired grant on backend ${JSON.stringify(req.backend)}`);
    }
    const backendSpec = spec.backends[req.backend]!;
    const driver = await driverFor(req.backend, backendSpec);
    if (!driver.issueSession) throw new SessionsUnsupportedError(req.backend, driver.type);
    const issued = await driver.issueSession({ principal: req.principal, target: t.target, durationSeconds });
    // Recorded before it is handed out: a session the state does not know of could not be revoked.
    // The expiry is the backend's, which may outlast the grant (STS's 15-minute floor): the
    // revocation lasts until then. The issue instant is taken after the backend answered; only the
    // fallback that denies every session of a role by issue time reads it (with a clock margin).
    await (
      await ctx.store()
    ).recordSession({
      backend: req.backend,
      principal: req.principal,
      target: issued.target,
      lastIssuedAt: ctx.now().toISOString(),
      expiresAt: issued.expiresAt,
    });
    return { session: toSession(issued, endsAt), durationSeconds, target: issued.target, readyMs: issued.readyMs };
  };

  return {
    issueDetailed,
    issue: async (req) => (await issueDetailed(req)).session,
    close: async () => {
      const all = [...retired, ...[...drivers.values()].map((d) => d.driver)];
      drivers.clear();
      retired.length = 0;
      await Promise.all(all.map((d) => d.close()));
    },
  };
}

/**
 * The caller is told the session ends at the earlier of the backend's end and the grant's: a grant
 * ending in 10 minutes gives credentials whose Expiration is 10 minutes away, although STS issues
 * no session shorter than 15 minutes. In AWS the grant's own `aws:CurrentTime` condition ends the
 * access at 10 minutes; the SDKs, told so, renew (and are refused) instead of using a dead session.
 */
function toSession(issued: IssuedBackendSession, endsAt: number | undefined): IssuedSession {
  const backendEnd = new Date(issued.expiresAt).getTime();
  const until = new Date(endsAt === undefined ? backendEnd : Math.min(backendEnd, endsAt)).toISOString();
  const s = issued.secret;
  if ('sessionToken' in s) {
    return { kind: 'aws', accessKeyId: s.accessKeyId!, secretAccessKey: s.secretAccessKey!, sessionToken: s.sessionToken, expiration: until };
  }
  return {
    kind: 'postgres',
    user: s.user!,
    password: s.password!,
    ...(s.host ? { host: s.host } : {}),
    ...(s.port ? { port: Number(s.port) } : {}),
    ...(s.database ? { database: s.database } : {}),
    validUntil: until,
  };
}
