// `knownAccess:` — access the spec acknowledges but datagrant does not manage. Its references and
// patterns are checked here; the access report (src/plan/access.ts) applies it with `knownAccessOf`.
import type { SpecProblem } from '../core/errors.js';
import type { SourceMap } from './load.js';
import type { KnownAccessSpec, Spec } from './schema.js';

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

export function knownAccessProblems(spec: Spec, src: SourceMap): SpecProblem[] {
  const problems: SpecProblem[] = [];
  for (const [name, k] of Object.entries((spec.knownAccess ?? {}) as Record<string, Partial<KnownAccessSpec>>)) {
    if (typeof k.backend === 'string' && k.backend !== '' && !has(spec.backends, k.backend)) {
      problems.push(
        src.problem(
          ['knownAccess', name, 'backend'],
          `backend ${JSON.stringify(k.backend)} is not defined; defined backends: ${Object.keys(spec.backends).sort().join(', ') || '(none defined)'}`,
        ),
      );
    }
    (Array.isArray(k.holders) ? k.holders : []).forEach((h, i) => {
      if (typeof h !== 'string') return;
      // The last segment of an ARN (or a whole role name) is the holder's own name: it must say
      // something, or the pattern accepts every user or role of an account, tomorrow's included.
      const own = h.slice(Math.max(h.lastIndexOf('/'), h.lastIndexOf(':')) + 1);
      if (!/[^*]/.test(own)) {
        problems.push(
          src.problem(
            ['knownAccess', name, 'holders', i],
            `holder ${JSON.stringify(h)} would accept every holder${h.includes('/') || h.includes(':') ? ' of that kind' : ''}, including one made tomorrow by someone else; name the holders (an IAM ARN such as arn:aws:iam::123456789012:role/Admin, a role name), with * only inside a name`,
          ),
        );
      }
    });
    (Array.isArray(k.datasets) ? k.datasets : []).forEach((d, i) => {
      if (typeof d !== 'string' || d === '') return;
      const ds = has(spec.datasets, d) ? spec.datasets[d] : undefined;
      if (!ds) {
        problems.push(
          src.problem(
            ['knownAccess', name, 'datasets', i],
            `dataset ${JSON.stringify(d)} is not defined; defined datasets: ${Object.keys(spec.datasets).sort().join(', ') || '(none defined)'}`,
          ),
        );
      } else if (typeof k.backend === 'string' && ds.backend !== k.backend) {
        problems.push(src.problem(['knownAccess', name, 'datasets', i], `dataset ${JSON.stringify(d)} is on backend ${ds.backend}, not ${k.backend}`));
      }
    });
  }
  return problems;
}

const patterns = new Map<string, RegExp>();
function matches(pattern: string, value: string): boolean {
  let re = patterns.get(pattern);
  if (!re) {
    re = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 's');
    patterns.set(pattern, re);
  }
  return re.test(value);
}

const ORDER = ['read', 'write', 'admin'];

/**
 * The knownAccess entry that accepts an unmanaged holder's access to a dataset at a level, if any.
 * Holders match by id only: a name alone (`ops-admin`) is the same in every path and account.
 */
export function knownAccessOf(
  spec: Pick<Spec, 'knownAccess'>,
  backend: string,
  dataset: string,
  level: string,
  holder: { id: string },
): { name: string; reason: string } | undefined {
  for (const [name, k] of Object.entries(spec.knownAccess ?? {})) {
    if (k.backend !== backend) continue;
    if (k.datasets && !k.datasets.includes(dataset)) continue;
    if (ORDER.indexOf(level) > ORDER.indexOf(k.access)) continue;
    if (k.holders.some((p) => matches(p, holder.id))) return { name, reason: k.reason };
  }
  return undefined;
}
