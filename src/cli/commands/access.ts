// `datagrant access`: who can read, write or administer each dataset, read from the backends
// themselves, beside what the spec says (issue 13).
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { accessDiffers, runAccessReport } from '../../app/access.js';
import { displayPath, loadSpecFor, makeBackends, specPath, withMerged, withStore, type BackendOptions, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';
import { UsageError } from '../../core/errors.js';
import type { AccessReport } from '../../model/access.js';
import { renderAccessCsv, renderAccessJson, renderAccessText } from '../../render/access.js';
import { printable } from '../../render/printable.js';
import { DURATION_RE, durationSeconds } from '../../spec/schema.js';

export const ACCESS_FORMATS = ['table', 'csv', 'json', 'html'] as const;
export type AccessFormat = (typeof ACCESS_FORMATS)[number];

export interface AccessOptions extends CommonOptions {
  principal?: string;
  dataset?: string;
  unused?: string;
  format?: AccessFormat;
  out?: string;
  detailedExitcode?: boolean;
  backendOptions?: BackendOptions;
  /** The HTML renderer (src/render/html.ts), given by main so this file needs no HTML. */
  renderHtml?: (report: AccessReport) => string;
}

export function checkUnused(value: string): string {
  if (!DURATION_RE.test(value)) throw new UsageError(`--unused ${JSON.stringify(value)} is not a duration; use one such as 90d, 12h or 30m`);
  try {
    durationSeconds(value);
  } catch (e) {
    throw new UsageError(`--unused ${JSON.stringify(value)}: ${(e as Error).message}`);
  }
  return value;
}

/** Exit 0, or 2 with --detailed-exitcode when the backends' access differs from the spec's (or breaks an invariant), 1 on error. */
export async function accessCommand(io: Io, opts: AccessOptions): Promise<number> {
  const format = opts.format ?? 'table';
  if (!ACCESS_FORMATS.includes(format)) throw new UsageError(`--format ${JSON.stringify(format)} is not allowed; allowed: ${ACCESS_FORMATS.join(', ')}`);
  if (opts.unused !== undefined) checkUnused(opts.unused);
  const now = io.now();
  const fromFile = loadSpecFor(io, opts, now);
  const report = await withStore(io, opts, async (store) => {
    const loaded = await withMerged(io, opts, fromFile, store);
    return runAccessReport({
      spec: loaded.spec,
      specHash: loaded.specHash,
      specFile: displayPath(io, specPath(io, opts)),
      store,
      makeBackends: (backends, installation) => makeBackends({ backends }, { ...opts.backendOptions, installation }),
      now,
      filters: {
        ...(opts.principal !== undefined ? { principal: opts.principal } : {}),
        ...(opts.dataset !== undefined ? { dataset: opts.dataset } : {}),
        ...(opts.unused !== undefined ? { unused: opts.unused } : {}),
      },
    });
  });
  let text: string;
  if (format === 'csv') text = renderAccessCsv(report);
  else if (format === 'json') text = renderAccessJson(report);
  else if (format === 'html') {
    if (!opts.renderHtml) throw new UsageError('--format html is not available in this build');
    text = opts.renderHtml(report);
  } else text = renderAccessText(report);
  if (opts.out) {
    writeFileSync(resolve(io.cwd, opts.out), text, { mode: 0o644 });
    io.stdout(`Wrote the access report (${report.rows.length} rows) to ${opts.out}\n`);
  } else {
    io.stdout(text);
  }
  if (report.incomplete.length) {
    // Said on stderr too, whatever the format: a CSV piped to a file must not look complete.
    io.stderr(`Warning: the report is incomplete; these could not be read:\n${report.incomplete.map((l) => `  ${printable(l)}`).join('\n')}\n`);
    // A scheduled check cannot say "no difference" about what it could not read.
    if (opts.detailedExitcode) return 1;
  }
  return opts.detailedExitcode && accessDiffers(report) ? 2 : 0;
}
