// An access report as a table for a terminal, CSV or JSON. Rendering decides nothing.
import type { AccessPath, AccessReport, AccessReportRow } from '../model/access.js';
import { csv } from './csv.js';
import { printable } from './printable.js';

const STATUS: Record<AccessReportRow['status'], string> = { both: 'both', intended: 'intended only', actual: 'actual only' };

function describePath(p: AccessPath): string {
  const extra = [
    p.partial ? 'part of the dataset' : '',
    p.expires ? `until ${p.expires}` : '',
    p.conditions?.length ? `if ${p.conditions.join(', ')}` : '',
  ].filter(Boolean);
  return extra.length ? `${p.via} (${extra.join('; ')})` : p.via;
}

/** Every way the row's access comes about, spec side first. */
export function throughOf(row: AccessReportRow): string[] {
  return [
    ...row.intended.map((g) => `spec: ${g.via} ${g.path}${g.expires ? ` until ${g.expires}` : ''}`),
    // A path someone else made on one of datagrant's principals is drift, even where the spec grants the level.
    ...row.actual.map((p) => (row.managed && p.managed !== true ? `not made by datagrant: ${describePath(p)}` : describePath(p))),
  ];
}

const whoOf = (row: AccessReportRow) =>
  row.managed ? row.who : `${row.who} (${row.holder?.kind ?? 'unmanaged'}, not datagrant's${row.known ? `; known: ${row.known.name}` : ''})`;

const lastUsed = (row: AccessReportRow) => (row.lastUsedAt === undefined ? 'unknown' : row.lastUsedAt === null ? 'never' : row.lastUsedAt);

/** Terraform-like plain text: one block per dataset, one line per holder and level. */
export function renderAccessText(report: AccessReport): string {
  const out: string[] = [];
  const byDataset = new Map<string, AccessReportRow[]>();
  for (const r of report.rows) byDataset.set(`${r.dataset} (${r.backend})`, [...(byDataset.get(`${r.dataset} (${r.backend})`) ?? []), r]);
  for (const [dataset, rows] of byDataset) {
    out.push(`dataset ${dataset}`);
    const width = Math.max(...rows.map((r) => printable(whoOf(r)).length));
    for (const r of rows) {
      const foreign = r.managed && r.actual.some((p) => p.managed !== true);
      const mark = r.known ? ' ' : r.status === 'actual' || foreign ? '!' : r.status === 'intended' ? '?' : ' ';
      const through = throughOf(r);
      out.push(
        `  ${mark} ${r.level.padEnd(5)}  ${whoOf(r).padEnd(width - (printable(whoOf(r)).length - whoOf(r).length))}  ${STATUS[r.status].padEnd(13)}  ${through[0] ?? ''}`,
      );
      for (const t of through.slice(1)) out.push(`  ${' '.repeat(1 + 1 + 5 + 2 + width + 2 + 13 + 2)}${t}`);
    }
    out.push('');
  }
  if (!report.rows.length) out.push('No access matches.', '');
  const count = (s: AccessReportRow['status']) => report.rows.filter((r) => r.status === s).length;
  const unmanaged = report.rows.filter((r) => !r.managed).length;
  out.push(
    `${report.rows.length} row(s): ${count('both')} as the spec says, ${count('actual')} only in the backends (${unmanaged} not datagrant's), ${count('intended')} only in the spec.`,
  );
  if (report.filters.unused) out.push(`Showing access whose credentials were not used for ${report.filters.unused}.`);
  if (report.invariants.length) {
    out.push('', 'Invariants broken by the access the backends hold:');
    for (const v of report.invariants) out.push(`  ✗ ${v.message}`);
  }
  if (report.incomplete.length) {
    out.push('', 'INCOMPLETE: these could not be read this time, and the report may miss access through them:');
    for (const l of report.incomplete) out.push(`  ✗ ${l}`);
  }
  if (report.limits.length) {
    out.push('', 'Not seen or not evaluated (the report may miss access through these):');
    for (const l of report.limits) out.push(`  - ${l}`);
  }
  const known = report.rows.filter((r) => r.known).length;
  if (known) out.push(`${known} row(s) of access the spec's knownAccess accepts are shown but are no difference.`);
  out.push('', `Legend: "!" access the spec does not grant, or a path datagrant did not make; "?" a grant the backends do not hold.`);
  // Every line may hold a name someone else chose: controls and bidi overrides show as escapes.
  return `${out.map(printable).join('\n')}\n`;
}

export const ACCESS_CSV_HEADER = [
  'dataset',
  'backend',
  'level',
  'who',
  'principal',
  'holder_kind',
  'holder_id',
  'managed',
  'status',
  'through',
  'expires',
  'last_used',
  'known_access',
] as const;

export function accessCsvRow(r: AccessReportRow): string[] {
  const expiries = [...r.intended.map((g) => g.expires), ...r.actual.map((p) => p.expires)].filter((e): e is string => e !== undefined);
  return [
    r.dataset,
    r.backend,
    r.level,
    r.who,
    r.principal ?? '',
    r.holder?.kind ?? '',
    r.holder?.id ?? '',
    String(r.managed),
    r.status,
    throughOf(r).join('; '),
    expiries.sort()[0] ?? '',
    lastUsed(r),
    r.known ? `${r.known.name}: ${r.known.reason}` : '',
  ];
}

export function renderAccessCsv(report: AccessReport): string {
  return csv(ACCESS_CSV_HEADER, report.rows.map(accessCsvRow));
}

export function renderAccessJson(report: AccessReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
