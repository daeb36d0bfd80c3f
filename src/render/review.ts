// Access reviews as text for a terminal, and review evidence as CSV and JSON. Rendering decides
// nothing: outcomes and revocation states come from src/plan/review.ts.
import { printableLines } from './printable.js';
import type { AccessReportRow } from '../model/access.js';
import type { EvidenceDecision, Review, ReviewEvidence, ReviewEvidenceRow, ReviewSummary } from '../model/review.js';
import type { RevocationPlan } from '../plan/revocations.js';
import { throughOf } from './access.js';
import { csv } from './csv.js';

const who = (row: AccessReportRow) => (row.managed ? row.who : `${row.who} (${row.holder?.kind ?? 'unmanaged'}, not datagrant's)`);
const rowLine = (row: AccessReportRow) => `${row.level} on ${row.dataset} (${row.backend}) for ${who(row)}`;

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
}

/** The reviewer and, beside them, who recorded the decision. */
export const onBehalfText = (d: EvidenceDecision) => `decision recorded on behalf of ${d.reviewer} by ${d.actor}`;
const decidedBy = (d: EvidenceDecision) => `${d.reviewer} (${d.onBehalf ? onBehalfText(d) : `recorded by ${d.actor}`})`;

export function renderReviewList(reviews: readonly ReviewSummary[]): string {
  if (!reviews.length) return 'No access reviews yet. `datagrant review start NAME` starts one.\n';
  return printableLines(
    `${table([
      ['NAME', 'STARTED', 'BY', 'ROWS', 'UNDECIDED', 'CLOSED'],
      ...reviews.map((r) => [r.name, r.startedAt, r.startedBy, String(r.rows), String(r.rows - r.decided), r.closedAt ?? 'open']),
    ]).join('\n')}\n`,
  );
}

export function summaryLine(e: Pick<ReviewEvidence, 'summary'>): string {
  const s = e.summary;
  const extra = [s.contested ? `${s.contested} contested (keep and revoke)` : '', s.selfReviewOnly ? `${s.selfReviewOnly} decided only by self-review` : '']
    .filter(Boolean)
    .join(', ');
  return `${s.rows} row(s): ${s.keep} keep, ${s.revoke} revoke, ${s.undecided} undecided${extra ? `; ${extra}` : ''}.`;
}

/** `review show`: the manifest in brief, then each row with its decisions. */
export function renderReviewShow(review: Review, rows: readonly ReviewEvidenceRow[], summary: ReviewEvidence['summary']): string {
  const m = review.manifest;
  const out = [
    `Review ${review.name}: started ${review.startedAt} by ${review.startedBy}${review.closedAt ? `, closed ${review.closedAt} by ${review.closedBy}` : ' (open)'}`,
    `  population: ${review.population.length} rows read ${m.extractedAt} (sha256 ${m.populationSha256})`,
    `  query:      ${m.query.command}`,
    `  spec:       ${m.specFile} (sha256 ${m.specSha256})`,
    `  audit head: ${m.auditHead ? `#${m.auditHead.seq} ${m.auditHead.hash}` : '(empty chain)'}`,
    '',
  ];
  const marks: Record<string, string> = { keep: 'keep', revoke: 'REVOKE', undecided: '-' };
  const lines = table([
    ['#', 'DECISION', 'LEVEL', 'DATASET', 'WHO', 'STATUS'],
    ...rows.map((r) => [String(r.n), marks[r.outcome.outcome]!, r.row.level, `${r.row.dataset} (${r.row.backend})`, who(r.row), r.row.status]),
  ]);
  out.push(lines[0]!);
  rows.forEach((r, i) => {
    out.push(lines[i + 1]!);
    for (const t of throughOf(r.row)) out.push(`      through ${t}`);
    for (const d of r.decisions) {
      out.push(
        `      ${d.decision} by ${decidedBy(d)}${d.selfReview ? ' (SELF-REVIEW)' : ''} at ${d.decidedAt} (audit #${d.auditSeq}): ${d.reason.replace(/\n/g, ' ')}`,
      );
    }
  });
  out.push('', summaryLine({ summary }));
  if (summary.undecided)
    out.push(`${summary.undecided} row(s) still need a decision: datagrant review decide ${review.name} N… --keep|--revoke --reason TEXT --as REVIEWER`);
  if (m.invariants.length) {
    out.push('', 'Invariants the access broke when it was read:');
    for (const v of m.invariants) out.push(`  ✗ ${v.message}`);
  }
  if (m.limits.length) {
    out.push('', 'The population cannot show access through these (not seen or not evaluated):');
    for (const l of m.limits) out.push(`  - ${l}`);
  }
  return printableLines(`${out.join('\n')}\n`);
}

/** `review revocations`: what the patch does for each revoked row, and what it cannot. */
export function renderRevocationsText(name: string, plan: RevocationPlan, patchFile?: string): string {
  const out: string[] = [];
  if (!plan.items.length) return `No row of review ${name} is decided revoke: nothing to remove.\n`;
  out.push(`Revocations of review ${name}: ${plan.items.length} row(s).`, '');
  for (const item of plan.items) {
    const by = item.decisions.map((d) => `${d.reviewer}${d.selfReview ? ' (self-review)' : ''}`).join(', ');
    out.push(`#${item.n} ${rowLine(item.row)} — revoked by ${by}`);
    for (const e of item.edits) out.push(`    patch:   ${e}`);
    for (const m of item.manual) out.push(`    BY HAND: ${m}`);
    for (const n of item.notes) out.push(`    note:    ${n}`);
  }
  if (plan.alsoRemoved.length) {
    out.push('', 'The patch also removes these rows (the same grant or group membership carries them):');
    for (const a of plan.alsoRemoved) out.push(`  #${a.n} ${rowLine(a.row)} (decided ${a.outcome.outcome})`);
  }
  if (plan.warnings.length) {
    out.push('', 'Warnings:');
    for (const w of plan.warnings) out.push(`  ! ${w}`);
  }
  const manual = plan.items.reduce((n, i) => n + i.manual.length, 0);
  out.push('');
  if (plan.patch) {
    out.push(
      patchFile
        ? `Wrote the spec change to ${patchFile}: review it like any other change, apply it (git apply ${patchFile}, or patch -p1 < ${patchFile}), then \`datagrant apply\`.`
        : 'The spec change is on standard output: review it like any other change, apply it (git apply, or patch -p1), then `datagrant apply`.',
    );
  } else {
    out.push('No spec change is needed.');
  }
  if (manual) out.push(`${manual} step(s) marked BY HAND must be done outside datagrant; \`datagrant review status ${name}\` shows when the access is gone.`);
  return printableLines(`${out.join('\n')}\n`);
}

/** `review status`: each revocation, whether it has taken effect and through which audit entry. */
export function renderReviewStatus(e: ReviewEvidence): string {
  const revoked = e.rows.filter((r) => r.revocation);
  if (!revoked.length) return `No row of review ${e.review.name} is decided revoke.\n`;
  const out = [`Revocations of review ${e.review.name}, checked ${e.checkedAt}:`, ''];
  for (const r of revoked) {
    const s = r.revocation!;
    out.push(`#${r.n} ${s.state === 'removed' ? 'removed' : 'STILL HELD'}  ${rowLine(r.row)}`);
    if (s.entry)
      out.push(
        `    audit #${s.entry.seq} ${s.entry.at} by ${s.entry.actor}: ${s.entry.event}${s.entry.address ? ` ${s.entry.address}` : ''} (hash ${s.entry.hash})`,
      );
    out.push(`    ${s.note}`);
    out.push(`    observed ${s.state === 'removed' ? 'gone' : 'held'} at ${s.observedAt}`);
  }
  out.push('', `${e.summary.removed} of ${e.summary.revoke} revocation(s) in effect; ${e.summary.present} still held.`);
  if (!e.auditVerified.ok) out.push(`The audit chain does NOT verify: entry ${e.auditVerified.firstBad?.seq}: ${e.auditVerified.firstBad?.reason}.`);
  if (!e.integrity.ok) {
    out.push(`The review does NOT match the audit chain (${e.integrity.problems.length} problem(s)):`);
    for (const p of e.integrity.problems) out.push(`  ! ${p.message}`);
  }
  return printableLines(`${out.join('\n')}\n`);
}

export const REVIEW_CSV_HEADER = [
  'review',
  'n',
  'row_id',
  'backend',
  'dataset',
  'level',
  'who',
  'principal',
  'holder_kind',
  'holder_id',
  'managed',
  'status',
  'through',
  'last_used',
  'outcome',
  'contested',
  'decision',
  'reviewer',
  'actor',
  'on_behalf',
  'self_review',
  'decided_at',
  'reason',
  'decision_audit_seq',
  'revocation',
  'revocation_observed_at',
  'removed_at',
  'removed_by',
  'removal_audit_seq',
  'removal_audit_hash',
  'removal_change',
  'revocation_note',
  'audit_check',
] as const;

/** One line per decision (a row nobody decided: one line without one), all of a row's facts on each. */
export function renderReviewCsv(e: ReviewEvidence): string {
  const lines: (string | number | boolean | null | undefined)[][] = [];
  // A problem of the whole review (the population, the manifest) is on every line: each is suspect.
  const ids = new Set(e.rows.map((r) => r.row.id));
  const everywhere = e.integrity.problems.filter((p) => p.rowId === undefined || !ids.has(p.rowId)).map((p) => p.message);
  for (const r of e.rows) {
    const problems = [...everywhere, ...e.integrity.problems.filter((p) => p.rowId === r.row.id).map((p) => p.message)];
    const check = problems.length ? `DOES NOT MATCH THE AUDIT CHAIN: ${problems.join('; ')}` : 'ok';
    const row = r.row;
    const s = r.revocation;
    const base = [
      e.review.name,
      r.n,
      row.id,
      row.backend,
      row.dataset,
      row.level,
      row.who,
      row.principal ?? '',
      row.holder?.kind ?? '',
      row.holder?.id ?? '',
      row.managed,
      row.status,
      throughOf(row).join('; '),
      row.lastUsedAt === undefined ? 'unknown' : (row.lastUsedAt ?? 'never'),
      r.outcome.outcome,
      r.outcome.contested,
    ];
    const removal = [
      s?.state ?? '',
      s?.observedAt ?? '',
      s?.entry?.at ?? '',
      s?.entry?.actor ?? '',
      s?.entry?.seq ?? '',
      s?.entry?.hash ?? '',
      s?.entry ? `${s.entry.event}${s.entry.address ? ` ${s.entry.address}` : ''}` : '',
      s?.note ?? '',
      check,
    ];
    if (!r.decisions.length) lines.push([...base, '', '', '', '', '', '', '', '', ...removal]);
    for (const d of r.decisions) {
      lines.push([...base, d.decision, d.reviewer, d.actor, d.onBehalf ? onBehalfText(d) : '', d.selfReview, d.decidedAt, d.reason, d.auditSeq, ...removal]);
    }
  }
  return csv(REVIEW_CSV_HEADER, lines);
}

export function renderReviewJson(e: ReviewEvidence): string {
  return `${JSON.stringify(e, null, 2)}\n`;
}
