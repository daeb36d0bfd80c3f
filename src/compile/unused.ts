// `settings.expireUnused` (issue 13): a key principal whose access keys on an AWS backend have all
// gone unused for longer than the limit loses its grants there, and its key is deactivated, not
// deleted. Stateless by design: a deactivated key cannot be used, so its last use stays where it
// was and the next plan reaches the same verdict; a key that could still sign requests would let
// whoever holds a forgotten key bring the access back just by using it. `credentials rotate`
// issues a fresh key, which restores the grants (a key younger than the limit is not unused).
// Pure: the reads' usage and `now` are passed in.
import type { CredentialUse, Notice } from '../core/types.js';
import { credentialsOf, durationSeconds, type Spec } from '../spec/schema.js';

export interface IdleVerdict {
  /** Per aws backend, the principals whose grants there expire for want of use. */
  idle: Record<string, Set<string>>;
  notices: Notice[];
}

const day = (iso: string) => iso.slice(0, 10);

/**
 * `usage` per backend, as its read found it (absent: the read could not tell). A principal is idle
 * on a backend when every key it has there was last used (or, never used, created) before `now`
 * minus the limit. Unknown use is never taken for no use. `exempt` principals (a rotation asked for
 * now) are never idle: their fresh key is the way back.
 */
export function idlePrincipals(
  spec: Spec,
  usage: Record<string, readonly CredentialUse[] | undefined>,
  now: Date,
  exempt: ReadonlySet<string> = new Set(),
): IdleVerdict {
  const limit = spec.settings?.expireUnused;
  const verdict: IdleVerdict = { idle: {}, notices: [] };
  if (!limit) return verdict;
  const cutoff = now.getTime() - durationSeconds(limit) * 1000;
  for (const [backend, b] of Object.entries(spec.backends)) {
    if (b.type !== 'aws') {
      const keyed = Object.values(spec.principals).some(
        (p) => credentialsOf(spec, p) === 'key' && p.grants.some((g) => spec.datasets[g.dataset]?.backend === backend),
      );
      if (keyed) {
        verdict.notices.push({
          level: 'info',
          message: `settings.expireUnused: backend ${backend} (${b.type}) records no use of its credentials, so its grants are never expired for want of use`,
        });
      }
      continue;
    }
    const byPrincipal = new Map<string, CredentialUse[]>();
    for (const u of usage[backend] ?? []) byPrincipal.set(u.principal, [...(byPrincipal.get(u.principal) ?? []), u]);
    const idle = new Set<string>();
    for (const [name, p] of Object.entries(spec.principals)) {
      if (exempt.has(name) || credentialsOf(spec, p) !== 'key') continue;
      const keys = byPrincipal.get(name);
      if (!keys?.length) continue;
      // One key whose use the read could not tell (newer than a cached credential report, say)
      // keeps the principal: it may be the fresh key `credentials rotate` just issued.
      if (keys.some((k) => k.lastUsedAt === undefined)) continue;
      const last = Math.max(...keys.map((k) => Date.parse(k.lastUsedAt ?? k.createdAt)));
      if (Number.isNaN(last) || last >= cutoff) continue;
      idle.add(name);
      const used = keys.map((k) => k.lastUsedAt).filter((t): t is string => t !== null);
      verdict.notices.push({
        level: 'warning',
        message: `principal ${name}: its grants on backend ${backend} expire and its key is deactivated: ${
          used.length ? `last used on ${day(used.sort().at(-1)!)}` : `never used since it was issued on ${day(keys.map((k) => k.createdAt).sort()[0]!)}`
        }, longer ago than settings.expireUnused (${limit}); \`datagrant credentials rotate ${name}\` issues a fresh key, and the next apply restores them`,
      });
    }
    if (idle.size) verdict.idle[backend] = idle;
  }
  return verdict;
}
