// Which session a temporary principal gets on a backend, if any (issue 12). Pure: the broker asks
// it with the spec (SCIM people merged in) and the time, and the compiler uses the same answer to
// build what those sessions run as, so the two can never disagree.
import { sha256 } from '../core/canonical.js';
import { mergeStatements } from '../model/aws-policy.js';
import { SESSION_ROLE_DIGEST_LENGTH, SESSION_ROLE_PREFIX as sessionRolePrefix } from '../model/aws.js';
import type { SessionRefusal } from '../model/session.js';
import { credentialsOf, expiresInstant, isS3Dataset, maxSessionSeconds, type Grant, type Spec } from '../spec/schema.js';
import { grantStatements } from './aws/compile.js';

export type SessionTarget = { target: string; maxSeconds: number; endsAt?: string } | { refused: SessionRefusal; message: string };

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
const live = (grants: Grant[], now: Date) => grants.filter((g) => !g.expires || expiresInstant(g.expires).getTime() > now.getTime());
const onBackend = (spec: Spec, backend: string) => (g: Grant) => spec.datasets[g.dataset]?.backend === backend;

/** The role names are the model's, so that the driver (which may not import the compiler) knows them too. */
export { SESSION_ROLE_DIGEST_LENGTH, sessionRolePrefix };

/**
 * A temporary principal's access on an AWS backend, as a role shares it: the IAM groups it is in
 * (their policies change with the groups, not the role) and the document of its direct grants.
 * Principals with the same access set share one role, so IAM's role quota holds at thousands of
 * principals; the role's name is the set's digest.
 */
export function awsAccessSet(spec: Spec, backend: string, principal: string, now: Date): { groups: string[]; direct: string } {
  const p = spec.principals[principal]!;
  const groups = p.groups.filter((g) => has(spec.groups, g) && spec.groups[g]!.grants.some(onBackend(spec, backend))).sort();
  const statements = live(p.grants, now)
    .filter(onBackend(spec, backend))
    .flatMap((g) => {
      const ds = spec.datasets[g.dataset]!;
      return isS3Dataset(ds) ? grantStatements(ds.bucket, ds.prefix, g) : [];
    });
  return { groups, direct: statements.length ? JSON.stringify(mergeStatements(statements)) : '' };
}

export function awsSessionRoleName(set: { groups: string[]; direct: string }): string {
  return `${sessionRolePrefix}${sha256(JSON.stringify([set.groups, set.direct])).slice(0, SESSION_ROLE_DIGEST_LENGTH)}`;
}

/**
 * What `principal` may get on `backend` now: the target its sessions run as (an AWS role; the
 * PostgreSQL principal role its login joins), the longest session, and when its earliest grant
 * there ends — or why it gets none. The message speaks only of that principal.
 */
export function sessionTarget(spec: Spec, backend: string, principal: string, now: Date): SessionTarget {
  if (!has(spec.backends, backend)) return { refused: 'unknown-backend', message: `there is no backend ${JSON.stringify(backend)}` };
  if (!has(spec.principals, principal)) return { refused: 'unknown-principal', message: `there is no principal ${JSON.stringify(principal)}` };
  const p = spec.principals[principal]!;
  if (credentialsOf(spec, p) !== 'temporary') {
    return {
      refused: 'not-temporary',
      message: `principal ${JSON.stringify(principal)} has a long-lived key, not sessions (credentials: key); use datagrant credentials export, or set credentials: temporary`,
    };
  }
  const grants = live([...p.grants, ...p.groups.filter((g) => has(spec.groups, g)).flatMap((g) => spec.groups[g]!.grants)], now).filter(
    onBackend(spec, backend),
  );
  if (grants.length === 0) {
    return { refused: 'no-access', message: `principal ${JSON.stringify(principal)} has no unexpired grant on backend ${JSON.stringify(backend)}` };
  }
  const ends = grants.filter((g) => g.expires).map((g) => expiresInstant(g.expires!).getTime());
  const endsAt = ends.length ? new Date(Math.min(...ends)).toISOString() : undefined;
  const type = spec.backends[backend]!.type;
  const target = type === 'aws' ? awsSessionRoleName(awsAccessSet(spec, backend, principal, now)) : principal;
  return { target, maxSeconds: maxSessionSeconds(spec, p), ...(endsAt ? { endsAt } : {}) };
}
