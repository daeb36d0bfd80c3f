// The access report and review evidence as one self-contained HTML file each: inline CSS, no
// script, nothing fetched (the Content-Security-Policy allows only the page's own stylesheet, by
// its hash), every value escaped — names come from IAM users, roles and PostgreSQL roles that
// anyone with access to a backend may choose. Readable on screen and on paper. Pure.
import { createHash } from 'node:crypto';
import type { AccessPath, AccessReport, AccessReportRow } from '../model/access.js';
import type { EvidenceDecision, IntegrityProblem, ReviewEvidence, ReviewEvidenceRow, RevocationStatus } from '../model/review.js';
import { onBehalfText } from './review.js';

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text for element content and quoted attribute values alike. */
export function esc(value: string | number | boolean | null | undefined): string {
  return (value === null || value === undefined ? '' : String(value)).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

const CSS = `
:root { color-scheme: light; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --head: #f6f8fa;
  --ok: #1a7f37; --ok-bg: #dafbe1; --warn: #9a6700; --warn-bg: #fff8c5; --bad: #cf222e; --bad-bg: #ffebe9; --info: #0969da; --info-bg: #ddf4ff; }
* { box-sizing: border-box; }
body { margin: 24px; color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
p.sub { color: var(--muted); margin: 0 0 16px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
ul.cards { list-style: none; display: flex; flex-wrap: wrap; gap: 10px; padding: 0; margin: 16px 0; }
ul.cards li { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 110px; }
ul.cards .n { display: block; font-size: 22px; font-weight: 600; }
ul.cards .l { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 5px 7px; text-align: left; vertical-align: top; }
thead th { background: var(--head); position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td ul { margin: 0; padding-left: 16px; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; white-space: nowrap; border: 1px solid transparent; }
.b-both, .b-keep, .b-removed, .b-ok { color: var(--ok); background: var(--ok-bg); border-color: var(--ok); }
.b-intended, .b-undecided, .b-self, .b-known, .b-behalf { color: var(--warn); background: var(--warn-bg); border-color: var(--warn); }
.b-actual, .b-revoke, .b-present, .b-bad { color: var(--bad); background: var(--bad-bg); border-color: var(--bad); }
.b-unmanaged, .b-contested { color: var(--info); background: var(--info-bg); border-color: var(--info); }
.muted { color: var(--muted); }
.decision + .decision { border-top: 1px dashed var(--line); margin-top: 4px; padding-top: 4px; }
.none { color: var(--muted); font-style: italic; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
section.alarm { border: 2px solid var(--bad); background: var(--bad-bg); border-radius: 6px; padding: 4px 16px 8px; margin: 16px 0; }
section.alarm h2 { color: var(--bad); border-bottom-color: var(--bad); }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { margin: 0; font-size: 10pt; }
  thead th { position: static; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; }
  h2 { break-after: avoid; }
  .badge { background: none !important; }
}
`;

const CSP_STYLE = `'sha256-${createHash('sha256').update(CSS).digest('base64')}'`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${CSP_STYLE}; img-src 'none'; font-src 'none'; connect-src 'none'; script-src 'none'; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

const badge = (kind: string, text: string) => `<span class="badge b-${esc(kind)}">${esc(text)}</span>`;

const STATUS_TEXT: Record<AccessReportRow['status'], string> = { both: 'both', intended: 'intended only', actual: 'actual only' };

function facts(pairs: [string, string][]): string {
  return `<dl class="facts">${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;
}

function cards(items: [string, number][]): string {
  return `<ul class="cards">${items.map(([l, n]) => `<li><span class="n">${esc(n)}</span><span class="l">${esc(l)}</span></li>`).join('')}</ul>`;
}

const list = (items: string[]) => (items.length ? `<ul>${items.map((i) => `<li>${i}</li>`).join('')}</ul>` : '<span class="none">none</span>');

function pathText(p: AccessPath): string {
  const extra = [p.partial ? 'part of the dataset' : '', p.expires ? `until ${p.expires}` : '', p.conditions?.length ? `if ${p.conditions.join(', ')}` : '']
    .filter(Boolean)
    .join('; ');
  return `${esc(p.via)}${extra ? ` <span class="muted">(${esc(extra)})</span>` : ''}`;
}

function filtersText(f: AccessReport['filters']): string {
  const parts = [
    f.principal !== undefined ? `principal ${f.principal}` : '',
    f.dataset !== undefined ? `dataset ${f.dataset}` : '',
    f.unused ? `unused for ${f.unused}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  return parts ? esc(parts) : '<span class="none">none (all access)</span>';
}

const lastUsed = (r: AccessReportRow) =>
  r.lastUsedAt === undefined ? '<span class="muted">unknown</span>' : r.lastUsedAt === null ? 'never' : esc(r.lastUsedAt);

function whoCell(r: AccessReportRow): string {
  // The holder's own id (an ARN) when it says more than the name.
  const holder = r.holder && !r.managed && r.holder.id !== r.who ? `<br><span class="muted mono">${esc(r.holder.id)}</span>` : '';
  const known = r.known ? `<br>${badge('known', `known: ${r.known.name}`)} <span class="muted">${esc(r.known.reason)}</span>` : '';
  return `${esc(r.who)}${r.managed ? '' : ` ${badge('unmanaged', "not datagrant's")}`}${holder}${known}`;
}

/** The cells every table of access rows starts with. */
function accessCells(r: AccessReportRow): string {
  return [
    `<td>${esc(r.dataset)}</td>`,
    `<td>${esc(r.backend)}</td>`,
    `<td>${esc(r.level)}</td>`,
    `<td>${whoCell(r)}</td>`,
    `<td>${badge(r.status, STATUS_TEXT[r.status])}</td>`,
    `<td>${list(r.intended.map((g) => `${esc(g.via)} <code>${esc(g.path)}</code>${g.expires ? ` <span class="muted">until ${esc(g.expires)}</span>` : ''}`))}</td>`,
    `<td>${list(r.actual.map(pathText))}</td>`,
    `<td>${lastUsed(r)}</td>`,
  ].join('');
}

const ACCESS_HEAD =
  '<th>Dataset</th><th>Backend</th><th>Level</th><th>Who</th><th>Status</th><th>In the spec through</th><th>In the backend through</th><th>Last used</th>';

function invariantsSection(report: Pick<AccessReport, 'invariants'>): string {
  if (!report.invariants.length) return '<h2>Invariants</h2><p class="none">No invariant is broken.</p>';
  return `<h2>Invariants broken (${esc(report.invariants.length)})</h2>
<table class="invariants"><thead><tr><th>Invariant</th><th>What breaks it</th><th>Checked against</th></tr></thead><tbody>
${report.invariants.map((v) => `<tr><td>${esc(v.invariant)}</td><td>${esc(v.message)}</td><td>${esc(v.source === 'actual' ? 'the backends' : 'the spec')}</td></tr>`).join('\n')}
</tbody></table>`;
}

function limitsSection(limits: readonly string[]): string {
  return `<h2>Not seen or not evaluated</h2>${
    limits.length
      ? `<p>Access through these cannot show in this report:</p>${list(limits.map(esc))}`
      : '<p class="none">Nothing: every backend was read in full.</p>'
  }`;
}

const requestsText = (r: Record<string, number>) =>
  Object.keys(r).length
    ? esc(
        Object.entries(r)
          .map(([b, n]) => `${b}: ${n}`)
          .join(', '),
      )
    : '<span class="none">none</span>';

export function renderAccessHtml(report: AccessReport): string {
  const count = (s: AccessReportRow['status']) => report.rows.filter((r) => r.status === s).length;
  const body = `<header>
<h1>Effective access</h1>
<p class="sub">Who can read, write or administer each dataset, read from the backends, beside what the spec says.</p>
${facts([
  ['Generated', esc(report.generatedAt)],
  ['Spec', `<code>${esc(report.specFile)}</code>`],
  ['Spec sha256', `<code>${esc(report.specHash)}</code>`],
  ['Filters', filtersText(report.filters)],
  ['Requests', requestsText(report.requests)],
])}
</header>
${cards([
  ['rows', report.rows.length],
  ['as the spec says', count('both')],
  ['only in the backends', count('actual')],
  ['only in the spec', count('intended')],
  ["not datagrant's", report.rows.filter((r) => !r.managed).length],
  ['accepted by knownAccess', report.rows.filter((r) => r.known).length],
  ['invariants broken', report.invariants.length],
  ['limits', report.limits.length],
])}
<h2>Access (${esc(report.rows.length)} rows)</h2>
<table class="access"><thead><tr><th>#</th>${ACCESS_HEAD}</tr></thead><tbody>
${report.rows.map((r, i) => `<tr data-row="${esc(r.id)}"><td>${i + 1}</td>${accessCells(r)}</tr>`).join('\n') || '<tr><td colspan="9" class="none">No access matches.</td></tr>'}
</tbody></table>
${invariantsSection(report)}
${limitsSection(report.limits)}
<footer>Status: <b>both</b> the spec grants it and the backend holds it; <b>actual only</b> the backend holds access the spec does not grant; <b>intended only</b> the spec grants access the backend does not hold.</footer>`;
  return page(`Effective access — ${report.generatedAt}`, body);
}

function decisionHtml(d: EvidenceDecision): string {
  const recorded = d.onBehalf ? `${badge('behalf', 'on behalf')} ${esc(onBehalfText(d))}` : `recorded by ${esc(d.actor)}`;
  return `<div class="decision">${badge(d.decision, d.decision)} by <b>${esc(d.reviewer)}</b>${d.selfReview ? ` ${badge('self', 'self-review')}` : ''}
<br><span class="recorded">${recorded}</span><br><span class="muted">${esc(d.decidedAt)} · audit #${esc(d.auditSeq)}</span><br>${esc(d.reason)}</div>`;
}

function revocationHtml(s: RevocationStatus | undefined): string {
  if (!s) return '<span class="none">—</span>';
  const entry = s.entry
    ? `<br>audit #${esc(s.entry.seq)} · ${esc(s.entry.at)} · ${esc(s.entry.actor)}<br><code>${esc(s.entry.event)}${s.entry.address ? ` ${esc(s.entry.address)}` : ''}</code><br><span class="mono muted">${esc(s.entry.hash)}</span>`
    : '';
  const observed = `observed ${s.state === 'removed' ? 'gone' : 'held'} at ${s.observedAt}`;
  return `${badge(s.state, s.state === 'removed' ? 'removed' : 'still held')}${entry}<br><span class="muted">${esc(s.note)}</span><br><span class="muted">${esc(observed)}</span>`;
}

function reviewRowHtml(r: ReviewEvidenceRow, problems: readonly IntegrityProblem[]): string {
  const o = r.outcome;
  const mismatch = problems.length ? `<br>${badge('bad', 'does not match the audit chain')}${list(problems.map((p) => esc(p.message)))}` : '';
  const outcome = `${badge(o.outcome, o.outcome)}${o.contested ? ` ${badge('contested', 'contested')}` : ''}${o.selfReviewOnly ? ` ${badge('self', 'self-review only')}` : ''}${mismatch}`;
  return `<tr data-row="${esc(r.row.id)}"><td>${esc(r.n)}</td>${accessCells(r.row)}<td>${outcome}</td><td>${r.decisions.map(decisionHtml).join('') || '<span class="none">undecided</span>'}</td><td>${revocationHtml(r.revocation)}</td></tr>`;
}

function integrityAlarm(e: ReviewEvidence): string {
  const v = e.auditVerified;
  const i = e.integrity;
  if (v.ok && i.ok) return '';
  const items = [
    ...(v.ok ? [] : [esc(`the audit chain does not verify: entry ${v.firstBad?.seq}: ${v.firstBad?.reason}`)]),
    ...i.problems.map((p) => esc(p.message)),
  ];
  return `<section class="alarm"><h2>This evidence does not match the audit chain (${esc(items.length)} problem${items.length === 1 ? '' : 's'})</h2>
<p>The state store holds the review; the MAC'd audit chain recorded each step of it. Where they differ, the store was changed outside datagrant, and what this page shows there cannot be relied on.</p>
${list(items)}</section>`;
}

export function renderReviewHtml(e: ReviewEvidence): string {
  const m = e.manifest;
  const s = e.summary;
  const v = e.auditVerified;
  const i = e.integrity;
  const byRow = new Map<string, IntegrityProblem[]>();
  for (const p of i.problems) if (p.rowId !== undefined) byRow.set(p.rowId, [...(byRow.get(p.rowId) ?? []), p]);
  const body = `<header>
<h1>Access review ${esc(e.review.name)}</h1>
<p class="sub">Evidence: the population of effective access as read when the review started, each reviewer's decision, and what was removed, with its audit entry.</p>
</header>
${integrityAlarm(e)}
<h2>Manifest</h2>
${facts([
  ['Review', esc(e.review.name)],
  ['Started', `${esc(e.review.startedAt)} by ${esc(e.review.startedBy)}`],
  ['Closed', e.review.closedAt ? `${esc(e.review.closedAt)} by ${esc(e.review.closedBy)}` : '<span class="none">open</span>'],
  ['Population read', esc(m.extractedAt)],
  ['Query', `<code>${esc(m.query.command)}</code>`],
  ['Filters', filtersText(m.query.filters)],
  ['Spec', `<code>${esc(m.specFile)}</code>`],
  ['Spec sha256', `<code>${esc(m.specSha256)}</code>`],
  ['Population sha256', `<code>${esc(m.populationSha256)}</code>`],
  ['Audit chain head', m.auditHead ? `#${esc(m.auditHead.seq)} <code>${esc(m.auditHead.hash)}</code>` : '<span class="none">empty chain</span>'],
  ['datagrant version', esc(m.datagrantVersion)],
  ['Requests', requestsText(m.requests)],
  ['Revocations checked', esc(e.checkedAt)],
  [
    'Audit chain at export',
    v.ok ? `${badge('ok', 'verified')} ${esc(v.entries)} entries` : `${badge('bad', 'BROKEN')} at entry ${esc(v.firstBad?.seq)}: ${esc(v.firstBad?.reason)}`,
  ],
  [
    'Review against the chain',
    i.ok
      ? `${badge('ok', 'matches')} population, manifest and e-mails as at review.start #${esc(i.startSeq)}; ${esc(i.decisions)} standing decision(s) as their entries`
      : `${badge('bad', 'DOES NOT MATCH')} ${esc(i.problems.length)} problem(s), listed above`,
  ],
  ['Exported by', esc(e.exportedBy)],
])}
${cards([
  ['rows', s.rows],
  ['keep', s.keep],
  ['revoke', s.revoke],
  ['undecided', s.undecided],
  ['contested', s.contested],
  ['self-review only', s.selfReviewOnly],
  ['self-review decisions', s.selfReviews],
  ['revocations in effect', s.removed],
  ['revocations still held', s.present],
])}
<h2>Population and decisions (${esc(s.rows)} rows)</h2>
<table class="review"><thead><tr><th>#</th>${ACCESS_HEAD}<th>Outcome</th><th>Decisions</th><th>Revocation</th></tr></thead><tbody>
${e.rows.map((r) => reviewRowHtml(r, byRow.get(r.row.id) ?? [])).join('\n') || '<tr><td colspan="12" class="none">The population is empty.</td></tr>'}
</tbody></table>
${invariantsSection(m)}
${limitsSection(m.limits)}
<footer>A row is revoked when any reviewer's standing decision is revoke; contested rows have keep and revoke decisions. A self-review is a decision about one's own access: the reviewer it names, or the actor who recorded it, is the row's principal (by principal name or e-mail, ignoring case and plus-address tags). The actor is who ran the command (<code>DATAGRANT_ACTOR</code>, else the OS user); a decision recorded in someone else's name says so. The population's sha256 is that of its rows as canonical JSON (sorted keys) in the JSON evidence; the review's start entry in the audit chain (<code>datagrant audit log</code>, <code>datagrant audit verify</code>) carries it, with the manifest's and the e-mails'. The export checks the stored review against its audit entries — the population, manifest and e-mails against the start entry, each decision (row, verdict, reviewer, actor, time, reason, self-review) against its own entry, no decision missing — and lists every difference at the top.</footer>`;
  return page(`Access review ${e.review.name}`, body);
}
