// `datagrant access` and reviews read effective access through here: every backend's access
// reader (in parallel, reads only), the session log, then the pure merge with the spec
// (src/plan/access.ts). Nothing is locked or changed: a report can run beside an apply.
import type { Backend } from '../backends/backend.js';
import { closeBackends } from '../backends/factory.js';
import { DatagrantError } from '../core/errors.js';
import type { AccessDataset, AccessReading, AccessReport } from '../model/access.js';
import { accessReport, type AccessFilters } from '../plan/access.js';
import { isPgDataset, isS3Dataset, type BackendSpec, type Spec } from '../spec/schema.js';
import type { InstallationIdentity, SessionLog } from '../store/store.js';

export interface AccessRunOptions {
  /** The spec, with SCIM people merged in. */
  spec: Spec;
  specHash: string;
  specFile: string;
  store: InstallationIdentity & Pick<SessionLog, 'sessions'>;
  makeBackends: (backends: Record<string, BackendSpec>, installation: string) => Record<string, Backend>;
  now: Date;
  filters?: AccessFilters;
}

/** The datasets of one backend, as its access reader takes them. */
export function datasetsOf(spec: Spec, backend: string): AccessDataset[] {
  const out: AccessDataset[] = [];
  for (const [name, ds] of Object.entries(spec.datasets)) {
    if (ds.backend !== backend) continue;
    out.push(
      isS3Dataset(ds)
        ? { name, bucket: ds.bucket, ...(ds.prefix !== undefined ? { prefix: ds.prefix } : {}) }
        : isPgDataset(ds)
          ? { name, database: ds.database, schema: ds.schema, ...(ds.tables ? { tables: ds.tables } : {}) }
          : { name, database: ds.database, ...(ds.tables ? { tables: ds.tables } : {}) },
    );
  }
  return out;
}

export async function runAccessReport(o: AccessRunOptions): Promise<AccessReport> {
  if (o.filters?.dataset !== undefined && !Object.hasOwn(o.spec.datasets, o.filters.dataset)) {
    throw new DatagrantError(
      `there is no dataset ${JSON.stringify(o.filters.dataset)} in ${o.specFile}; datasets: ${Object.keys(o.spec.datasets).join(', ') || '(none)'}`,
    );
  }
  const installation = await o.store.installation();
  // Only the backends the report needs: those holding a dataset (the filtered one, if any).
  const wanted = Object.fromEntries(
    Object.entries(o.spec.backends).filter(([name]) =>
      o.filters?.dataset !== undefined ? o.spec.datasets[o.filters.dataset]!.backend === name : datasetsOf(o.spec, name).length > 0,
    ),
  );
  const backends = o.makeBackends(wanted, installation);
  const readings: Record<string, AccessReading> = {};
  try {
    await Promise.all(
      Object.entries(backends).map(async ([name, b]) => {
        if (!b.readAccess) {
          readings[name] = { rows: [], usage: [], requests: 0, limits: [`a ${b.type} backend cannot report effective access yet`] };
          return;
        }
        const all = datasetsOf(o.spec, name);
        const datasets = o.filters?.dataset !== undefined ? all.filter((d) => d.name === o.filters!.dataset) : all;
        readings[name] = await b.readAccess({ datasets });
      }),
    );
  } finally {
    await closeBackends(backends);
  }
  return accessReport({
    spec: o.spec,
    specHash: o.specHash,
    specFile: o.specFile,
    now: o.now,
    readings,
    sessions: await o.store.sessions(),
    ...(o.filters ? { filters: o.filters } : {}),
  });
}

/**
 * True when the backends hold access the spec does not grant (and its knownAccess does not accept),
 * lack access it does, or break an invariant.
 */
export const accessDiffers = (report: AccessReport): boolean =>
  report.rows.some((r) => r.status !== 'both' && r.known === undefined) || report.invariants.length > 0;
