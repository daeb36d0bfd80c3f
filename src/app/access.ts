// `datagrant access` and reviews read effective access through here: every backend's access
// reader (in parallel, reads only), the session log, then the pure merge with the spec
// (src/plan/access.ts). Nothing is locked or changed: a report can run beside an apply.
import type { Backend } from '../backends/backend.js';
import { closeBackends } from '../backends/factory.js';
import { DatagrantError } from '../core/errors.js';
import type { AccessDataset, AccessReading, AccessReport } from '../model/access.js';
import { idlePrincipals } from '../compile/unused.js';
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
  // Every dataset is read whatever the filters: invariants judge all of the access (a principal's
  // datasets beyond the one shown count for maxDatasets), and expireUnused needs every key.
  const wanted = Object.fromEntries(Object.entries(o.spec.backends).filter(([name]) => datasetsOf(o.spec, name).length > 0));
  const backends = o.makeBackends(wanted, installation);
  const readings: Record<string, AccessReading> = {};
  try {
    await Promise.all(
      Object.entries(backends).map(async ([name, b]) => {
        if (!b.readAccess) {
          readings[name] = { rows: [], usage: [], requests: 0, limits: [], failures: [`a ${b.type} backend cannot report effective access yet`] };
          return;
        }
        readings[name] = await b.readAccess({ datasets: datasetsOf(o.spec, name) });
      }),
    );
  } finally {
    await closeBackends(backends);
  }
  // Grants settings.expireUnused takes away are not intended any longer (plan withholds them).
  const usage = Object.fromEntries(
    Object.entries(readings).map(([b, r]) => [
      b,
      r.usage.flatMap((u) =>
        u.principal === undefined
          ? []
          : [
              {
                principal: u.principal,
                credential: u.credential,
                createdAt: u.createdAt ?? '',
                ...(u.lastUsedAt !== undefined ? { lastUsedAt: u.lastUsedAt } : {}),
              },
            ],
      ),
    ]),
  );
  const report = accessReport({
    spec: o.spec,
    specHash: o.specHash,
    specFile: o.specFile,
    now: o.now,
    readings,
    sessions: await o.store.sessions(),
    idle: idlePrincipals(o.spec, usage, o.now).idle,
    ...(o.filters ? { filters: o.filters } : {}),
  });
  const who = o.filters?.principal;
  if (who !== undefined && report.rows.length === 0 && !Object.hasOwn(o.spec.principals, who)) {
    const held = Object.values(readings).some((r) => r.rows.some((x) => x.holder.id === who || x.holder.name === who));
    if (!held) {
      throw new DatagrantError(
        `there is no principal ${JSON.stringify(who)} in ${o.specFile}, and no backend holds access for a holder of that name or id (an IAM ARN, a role name)`,
      );
    }
  }
  return report;
}

/**
 * True when the rows shown hold access the spec does not grant (and its knownAccess does not
 * accept), lack access it does, or hold a path datagrant did not make, or when a violation of an
 * invariant concerns them (with `--principal`, another holder's breach is reported but does not
 * decide this principal's check).
 */
export function accessDiffers(report: AccessReport): boolean {
  if (report.rows.some((r) => r.known === undefined && (r.status !== 'both' || (r.actual.some((p) => p.managed !== true) && r.managed)))) return true;
  const scoped = report.filters.principal !== undefined || report.filters.dataset !== undefined;
  return report.invariants.some(
    (v) =>
      !scoped ||
      report.rows.some((r) => (v.principal !== undefined ? r.principal === v.principal : !r.managed) && (v.dataset === undefined || r.dataset === v.dataset)),
  );
}
