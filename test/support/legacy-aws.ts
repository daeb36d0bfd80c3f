// What versions before inline and shared policies compiled: every principal's direct grants in a
// managed policy of its own, `dg-user-NAME` (parts `-2`, … as packing split them). Built from
// today's output, so an upgrade can be tested from exactly the installation an earlier version
// left behind.
import type { Resource } from '../../src/core/types.js';

export function legacyDesired(resources: readonly Resource[]): Resource[] {
  const byAddress = new Map(resources.map((r) => [r.address, r]));
  const out: Resource[] = [];
  /** Per address of today's object, the legacy objects standing in its place. */
  const replaced = new Map<string, string[]>();
  for (const r of resources) {
    const [backend] = r.address.split(':');
    const addr = (kind: string, ...names: string[]) => `${backend}:${kind}/${names.join('/')}`;
    const legacy = (user: string, part: number, document: Resource['attrs'][string], path: Resource['attrs'][string]) => {
      const name = `dg-user-${user}${part > 1 ? `-${part}` : ''}`;
      out.push(
        { address: addr('policy', name), backend: r.backend, kind: 'policy', name, attrs: { path, document }, immutable: ['path'], deps: [] },
        {
          address: addr('attachment', 'user', user, name),
          backend: r.backend,
          kind: 'attachment',
          name,
          attrs: { entity: 'user', entityName: user, policy: name },
          immutable: ['entity', 'entityName', 'policy'],
          deps: [addr('user', user), addr('policy', name)],
        },
      );
      replaced.set(r.address, [addr('attachment', 'user', user, name)]);
    };
    const user = String(r.attrs.entityName);
    if (r.kind === 'inline-policy' && r.attrs.entity === 'user') {
      const path = resources.find((u) => u.address === addr('user', user))!.attrs.path!;
      legacy(user, 1, r.attrs.document!, path);
    } else if (r.kind === 'attachment' && r.attrs.entity === 'user' && String(r.attrs.policy).startsWith('dg-shared-')) {
      const shared = byAddress.get(addr('policy', String(r.attrs.policy)))!;
      const part = Number(/-(\d+)$/.exec(shared.name.slice('dg-shared-'.length + 12))?.[1] ?? 1);
      legacy(user, part, shared.attrs.document!, shared.attrs.path!);
    } else if (!(r.kind === 'policy' && r.name.startsWith('dg-shared-'))) {
      out.push(r);
    }
  }
  return out.map((r) => ({ ...r, deps: r.deps.flatMap((d) => replaced.get(d) ?? [d]) }));
}
