// Spec → desired state for every backend. Pure: `now` is passed in.
import { CompileError } from '../core/errors.js';
import type { DesiredState, Notice, Resource } from '../core/types.js';
import type { SessionFact } from '../model/session.js';
import { expiresInstant, type Spec } from '../spec/schema.js';
import { compileAws } from './aws/compile.js';
import { sharedAccountProblems } from './aws/quotas.js';
import { compileMysql } from './mysql/compile.js';
import { compilePostgres } from './postgres/compile.js';
import { compileRgw } from './rgw/compile.js';

/** Backend types with a compiler; a backend type without one compiles to nothing. */
export type BackendCompiler = (
  spec: Spec,
  backend: string,
  ctx: { now: Date; installation?: string; sessions?: readonly SessionFact[]; idle?: ReadonlySet<string> },
) => DesiredState;

const COMPILERS: Record<string, BackendCompiler> = {
  aws: compileAws,
  postgres: compilePostgres,
  rgw: compileRgw,
  mysql: compileMysql,
};

export const EXPIRY_WARNING_DAYS = 7;

/**
 * Desired state per backend name, plus spec-wide notices (grants expiring soon).
 * `installation`, when given, is the id of the state the desired objects belong to: objects that
 * can carry it (IAM users' tags) do, so that another installation never takes them for its own.
 * `sessions`, the store's session log, keeps what live sessions run as (and revokes the rest).
 */
/**
 * `sessions`, when given, is what the state recorded of issued sessions: a session that outlives
 * its principal's access is revoked by what the desired state adds (AWS: a deny on the role).
 */
export function compile(
  spec: Spec,
  now: Date,
  opts: { installation?: string; sessions?: readonly SessionFact[]; idle?: Record<string, ReadonlySet<string>> } = {},
): { desired: Record<string, DesiredState>; notices: Notice[] } {
  const desired: Record<string, DesiredState> = {};
  for (const [name, backend] of Object.entries(spec.backends)) {
    const compiler = COMPILERS[backend.type];
    desired[name] = compiler
      ? compiler(spec, name, {
          now,
          ...(opts.installation ? { installation: opts.installation } : {}),
          ...(opts.sessions ? { sessions: opts.sessions } : {}),
          ...(opts.idle?.[name] ? { idle: opts.idle[name] } : {}),
        })
      : { resources: [], notices: [] };
    assertDistinctAddresses(name, desired[name].resources);
  }
  const shared = sharedAccountProblems(spec, Object.fromEntries(Object.entries(desired).map(([name, d]) => [name, d.resources])));
  if (shared.length) throw new CompileError(shared);
  return { desired, notices: expiringSoon(spec, now) };
}

/**
 * The plan keys objects by address, so a second object with the same address would silently
 * replace the first: one grant would vanish from the plan. Refuse instead, naming both.
 */
export function assertDistinctAddresses(backend: string, resources: readonly Resource[]): void {
  const seen = new Map<string, Resource>();
  const problems: string[] = [];
  for (const r of resources) {
    const other = seen.get(r.address);
    if (other) {
      // What identifies the object: the attributes it cannot change in place, else its name.
      const describe = (x: Resource) =>
        `${x.kind} ${x.immutable?.length ? JSON.stringify(Object.fromEntries(x.immutable.map((k) => [k, x.attrs[k] ?? null]))) : x.name}`;
      problems.push(`backend ${backend}: ${describe(other)} and ${describe(r)} compile to one address, ${r.address}; the plan would keep only one of them`);
    } else {
      seen.set(r.address, r);
    }
  }
  if (problems.length) throw new CompileError(problems);
}

function expiringSoon(spec: Spec, now: Date): Notice[] {
  const horizon = now.getTime() + EXPIRY_WARNING_DAYS * 86400_000;
  const out: Notice[] = [];
  const check = (who: string, grants: Spec['groups'][string]['grants']) => {
    for (const g of grants) {
      if (!g.expires) continue;
      const at = expiresInstant(g.expires).getTime();
      if (at > now.getTime() && at <= horizon) {
        const days = Math.ceil((at - now.getTime()) / 86400_000);
        out.push({
          level: 'info',
          message: `${who}: ${g.access} access to ${g.dataset} expires at ${new Date(at).toISOString()} (in ${days} day${days === 1 ? '' : 's'})`,
        });
      }
    }
  };
  for (const [name, g] of Object.entries(spec.groups)) check(`group ${name}`, g.grants);
  for (const [name, p] of Object.entries(spec.principals)) check(`principal ${name}`, p.grants);
  return out;
}

export { sessionTarget, type SessionTarget } from './sessions.js';

/**
 * The next instant after `now` at which the desired state changes by itself: a grant's expiry (on
 * PostgreSQL and MariaDB, access ends only when it is applied) or the end of a recorded session (a PostgreSQL
 * login's open connections outlive its VALID UNTIL until it is dropped; a revocation ends).
 * serve reconciles then, not only at its interval.
 */
export function nextChangeAt(spec: Spec, sessions: readonly SessionFact[], now: Date): Date | undefined {
  const t = now.getTime();
  let next = Infinity;
  const consider = (ms: number) => {
    if (ms > t && ms < next) next = ms;
  };
  for (const g of [...Object.values(spec.groups), ...Object.values(spec.principals)]) {
    for (const grant of g.grants) if (grant.expires) consider(expiresInstant(grant.expires).getTime());
  }
  for (const s of sessions) consider(Date.parse(s.expiresAt));
  return next === Infinity ? undefined : new Date(next);
}
