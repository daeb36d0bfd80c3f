// The web console's pages (serve, /ui), rendered on the server: each page is whole HTML that works
// without script (forms post, links navigate); two small modules add what needs one — the access
// matrix, which draws only the cells in view so that 5,000 × 500 stays fluid, and the theme switch.
// No inline script or style anywhere (the Content-Security-Policy forbids both); every value is
// escaped, since names come from the IdP and from the spec. Pure: the data is gathered by serve.
import type { AccessReportRow, IntendedAccess } from '../model/access.js';
import type { AccessRequest } from '../model/request.js';
import { barChart, expiringBars, keyAgeBars } from './console-charts.js';
import { esc } from './html.js';

export interface Viewer {
  /** `person`: signed in through the organisation's IdP as a principal; `admin`: an operator. */
  kind: 'person' | 'admin';
  /** The principal (person) or `operator` (admin). */
  name: string;
  /** How the audit log names this session's actions. */
  actor: string;
  /** This session's CSRF token: every form that changes something carries it. */
  csrf: string;
}

type Section = 'overview' | 'matrix' | 'requests' | 'me' | 'plan' | 'audit' | 'none';

const ASSET = '/ui/assets';

function layout(viewer: Viewer | undefined, section: Section, title: string, body: string, opts: { scripts?: string[] } = {}): string {
  const link = (href: string, label: string, s: Section) => `<li><a href="${href}"${s === section ? ' aria-current="page"' : ''}>${esc(label)}</a></li>`;
  const nav = viewer
    ? `<nav aria-label="Main"><ul>${[
        link('/ui', 'Overview', 'overview'),
        link('/ui/matrix', 'Access matrix', 'matrix'),
        link('/ui/requests', 'Requests', 'requests'),
        viewer.kind === 'person' ? link(`/ui/principals/${encodeURIComponent(viewer.name)}`, 'My access', 'me') : '',
        viewer.kind === 'admin' ? link('/ui/plan', 'Plan & drift', 'plan') : '',
        viewer.kind === 'admin' ? link('/ui/audit', 'Audit log', 'audit') : '',
      ].join('')}</ul></nav>
<div class="who"><span>Signed in as <strong>${esc(viewer.name)}</strong>${viewer.kind === 'admin' ? ' <span class="tag">operator</span>' : ''}</span>
<form method="post" action="/ui/signout">${csrfField(viewer)}<button type="submit" class="link">Sign out</button></form></div>`
    : '';
  const scripts = ['console.js', ...(opts.scripts ?? [])].map((s) => `<script type="module" src="${ASSET}/${s}"></script>`).join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${esc(title)} · datagrant</title>
<link rel="icon" href="${ASSET}/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="${ASSET}/console.css">
${scripts}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/ui">datagrant</a>
${nav}
<button type="button" class="theme" id="theme" hidden>Theme: auto</button>
</header>
<main id="main" tabindex="-1">
${body}
</main>
</body>
</html>
`;
}

export function csrfField(viewer: Viewer): string {
  return `<input type="hidden" name="_csrf" value="${esc(viewer.csrf)}">`;
}

const when = (iso: string | undefined | null) => (iso ? `<time datetime="${esc(iso)}">${esc(iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC'))}</time>` : '');
const level = (l: string) => `<span class="lvl lvl-${esc(l)}">${esc(l)}</span>`;
const principalLink = (p: string) => `<a href="/ui/principals/${encodeURIComponent(p)}">${esc(p)}</a>`;
const datasetLink = (d: string) => `<a href="/ui/datasets/${encodeURIComponent(d)}">${esc(d)}</a>`;

function flash(message: { kind: 'ok' | 'error'; text: string } | undefined): string {
  if (!message) return '';
  return `<p class="flash ${message.kind}" role="${message.kind === 'error' ? 'alert' : 'status'}">${esc(message.text)}</p>`;
}

export type Flash = { kind: 'ok' | 'error'; text: string } | undefined;

// ---- sign-in and errors -------------------------------------------------------------------

export interface SignInView {
  /** The IdP people sign in with (settings.console), if configured. */
  issuer?: { name: string; href: string };
  /** Operators may sign in with the admin token. */
  admin: boolean;
  /** Where to go after signing in (a /ui path). */
  next: string;
  error?: string;
}

export function signInPage(v: SignInView): string {
  const none = !v.issuer && !v.admin;
  return layout(
    undefined,
    'none',
    'Sign in',
    `<section class="signin">
<h1>Sign in to datagrant</h1>
<p class="muted">See who can reach which dataset, ask for access, and approve what others ask for.</p>
${v.error ? `<p class="flash error" role="alert">${esc(v.error)}</p>` : ''}
${v.issuer ? `<p><a class="button primary" href="${esc(v.issuer.href)}">Sign in with ${esc(v.issuer.name)}</a></p>` : ''}
${
  v.admin
    ? `<details${v.issuer ? '' : ' open'}><summary>Operator sign-in</summary>
<form method="post" action="/ui/signin/admin" class="stack">
<input type="hidden" name="next" value="${esc(v.next)}">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<p class="hint" id="token-hint">The token whose sha256 is in DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256.</p>
<button type="submit">Sign in as operator</button>
</form></details>`
    : ''
}
${none ? '<p class="flash error" role="alert">No way to sign in is configured: set <code>settings.console</code> in the spec (people, through the organisation’s OpenID provider) or DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256 (operators).</p>' : ''}
</section>`,
  );
}

export function errorPage(viewer: Viewer | undefined, status: number, title: string, message: string): string {
  return layout(
    viewer,
    'none',
    title,
    `<h1>${esc(title)}</h1><p class="flash error" role="alert">${esc(message)}</p><p><a href="/ui">Back to the overview</a></p><p class="muted">HTTP ${status}</p>`,
  );
}

// ---- overview ---------------------------------------------------------------------------------

export interface OverviewView {
  now: Date;
  principals: number;
  datasets: number;
  grants: number;
  /** Requests waiting for this viewer's decision. */
  waiting: number;
  /** The end of every live grant with one (ISO). */
  grantEnds: string[];
  /** When each stored credential the viewer may see was made (ISO). */
  keyCreated: string[];
  /** Whose keys those are: everyone's (operators) or the viewer's own. */
  keysOf: 'all' | 'own';
}

export function overviewPage(viewer: Viewer, v: OverviewView): string {
  const card = (n: number, label: string, href?: string) =>
    `<li>${href ? `<a href="${href}">` : ''}<span class="n">${n.toLocaleString('en')}</span><span class="l">${esc(label)}</span>${href ? '</a>' : ''}</li>`;
  return layout(
    viewer,
    'overview',
    'Overview',
    `<h1>Overview</h1>
<ul class="cards">
${card(v.principals, 'principals', '/ui/matrix')}${card(v.datasets, 'datasets', '/ui/matrix')}${card(v.grants, 'live grants', '/ui/matrix')}${card(v.waiting, 'requests waiting for you', '/ui/requests')}
</ul>
<div class="charts">
${barChart({ id: 'expiring', title: 'Grants ending in the next 90 days', description: 'Per week, from today.', bars: expiringBars(v.grantEnds, v.now), unit: 'grants', tone: 'warn' })}
${barChart({ id: 'key-age', title: v.keysOf === 'all' ? 'Stored keys by age' : 'Your stored keys by age', description: 'Old keys are the ones to rotate first.', bars: keyAgeBars(v.keyCreated, v.now), unit: 'keys' })}
</div>`,
  );
}

// ---- matrix -----------------------------------------------------------------------------------

export function matrixPage(viewer: Viewer): string {
  return layout(
    viewer,
    'matrix',
    'Access matrix',
    `<h1>Access matrix</h1>
<p class="muted">Every principal against every dataset: the level the spec grants (with approved requests and SCIM people) and when it ends. Arrow keys move, Enter opens the principal.</p>
<form class="filters" id="matrix-filters" role="search" aria-label="Filter the matrix">
<div><label for="f-principal">Principal</label><input id="f-principal" name="principal" type="search" autocomplete="off" placeholder="name contains…"></div>
<div><label for="f-dataset">Dataset</label><input id="f-dataset" name="dataset" type="search" autocomplete="off" placeholder="name contains…"></div>
<div><label for="f-level">Level</label><select id="f-level" name="level"><option value="">any access</option><option value="1">read or more</option><option value="2">write or more</option><option value="3">admin</option></select></div>
<div class="check"><input id="f-expiring" name="expiring" type="checkbox"><label for="f-expiring">ends within 30 days</label></div>
<div class="check"><input id="f-granted" name="granted" type="checkbox" checked><label for="f-granted">only rows and columns with access</label></div>
</form>
<p id="matrix-status" class="muted" role="status" aria-live="polite">Loading the matrix…</p>
<div class="legend" aria-hidden="true">${level('read')} ${level('write')} ${level('admin')} <span class="muted">· a date is when the access ends</span></div>
<div id="matrix" class="matrix" data-src="/ui/data/matrix" role="grid" aria-label="Access matrix: principals in rows, datasets in columns" aria-readonly="true" tabindex="0"></div>
<noscript><p class="flash error">The matrix needs JavaScript. Each principal’s page and each dataset’s page show the same access without it.</p></noscript>`,
    { scripts: ['matrix.js'] },
  );
}

/** The matrix's data as the page's script reads it: names once, then one run of numbers per cell. */
export interface MatrixData {
  principals: string[];
  datasets: string[];
  /** `[principal index, dataset index, level (1 read, 2 write, 3 admin), end (epoch seconds, 0: none)]` repeated. */
  cells: number[];
  now: string;
}

const LEVEL_CODE: Record<string, number> = { read: 1, write: 2, admin: 3 };

/** Highest level per principal × dataset; the end is that level's latest (none when one has none). */
export function matrixData(principals: readonly string[], datasets: readonly string[], access: readonly IntendedAccess[], now: Date): MatrixData {
  const pIndex = new Map(principals.map((p, i) => [p, i]));
  const dIndex = new Map(datasets.map((d, i) => [d, i]));
  const best = new Map<number, { level: number; end: number }>();
  for (const a of access) {
    const p = pIndex.get(a.principal);
    const d = dIndex.get(a.dataset);
    if (p === undefined || d === undefined) continue;
    const key = p * datasets.length + d;
    const lvl = LEVEL_CODE[a.level] ?? 1;
    const end = a.expires ? Math.floor(Date.parse(a.expires) / 1000) : 0;
    const prev = best.get(key);
    if (!prev || lvl > prev.level) best.set(key, { level: lvl, end });
    else if (lvl === prev.level && prev.end !== 0) prev.end = end === 0 ? 0 : Math.max(prev.end, end);
  }
  const cells: number[] = [];
  for (const [key, v] of best) cells.push(Math.floor(key / datasets.length), key % datasets.length, v.level, v.end);
  return { principals: [...principals], datasets: [...datasets], cells, now: now.toISOString() };
}

// ---- principal --------------------------------------------------------------------------------

export interface CredentialView {
  backend: string;
  address: string;
  /** The access key id or password version: an identifier, never the secret. */
  id: string;
  state: string;
  createdAt: string;
  ageDays: number;
  /** From the last effective-access reading: undefined unknown, null never. */
  lastUsedAt?: string | null;
}

export interface AuditRowView {
  seq: number;
  at: string;
  actor: string;
  event: string;
  address: string | null;
  outcome: string;
  detail: string | null;
}

export interface PrincipalView {
  name: string;
  type: string;
  email?: string;
  groups: string[];
  access: IntendedAccess[];
  /** Only for the principal themself and operators; otherwise undefined (and not shown). */
  credentials?: CredentialView[];
  /** When the last effective-access reading was made, if any (last use comes from it). */
  readAt?: string;
  requests?: AccessRequest[];
  audit?: AuditRowView[];
}

export function principalPage(viewer: Viewer, v: PrincipalView): string {
  const own = viewer.kind === 'person' && viewer.name === v.name;
  const grants = v.access.length
    ? `<div class="table-wrap" tabindex="0" role="region" aria-label="Access of ${esc(v.name)}"><table><caption class="visually-hidden">Access of ${esc(v.name)}</caption><thead><tr><th scope="col">Dataset</th><th scope="col">Level</th><th scope="col">How</th><th scope="col">Ends</th></tr></thead><tbody>${v.access
        .map(
          (a) =>
            `<tr><td>${datasetLink(a.dataset)}</td><td>${level(a.level)}</td><td>${esc(a.via)}</td><td>${a.expires ? when(a.expires) : '<span class="muted">no end</span>'}</td></tr>`,
        )
        .join('')}</tbody></table></div>`
    : '<p class="muted">No access.</p>';
  const lastUse = (c: CredentialView) =>
    c.lastUsedAt === undefined
      ? `<span class="muted">unknown${v.readAt ? '' : ' (no effective-access reading yet)'}</span>`
      : c.lastUsedAt === null
        ? 'never'
        : when(c.lastUsedAt);
  const creds =
    v.credentials === undefined
      ? `<p class="muted">Credentials and history are shown only to ${esc(v.name)} and to operators.</p>`
      : v.credentials.length
        ? `<div class="table-wrap" tabindex="0" role="region" aria-label="Credentials of ${esc(v.name)}"><table><caption class="visually-hidden">Credentials of ${esc(v.name)}</caption><thead><tr><th scope="col">Backend</th><th scope="col">Credential</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Age</th><th scope="col">Last used</th></tr></thead><tbody>${v.credentials
            .map(
              (c) =>
                `<tr><td>${esc(c.backend)}</td><td><code>${esc(c.id)}</code></td><td>${esc(c.state)}</td><td>${when(c.createdAt)}</td><td>${c.ageDays} d</td><td>${lastUse(c)}</td></tr>`,
            )
            .join(
              '',
            )}</tbody></table></div><p class="hint">Secrets are never shown here. ${own ? 'Use <code>datagrant login</code> or ask an operator for <code>datagrant credentials export</code>.' : ''}</p>`
        : '<p class="muted">No stored credentials.</p>';
  return layout(
    viewer,
    own ? 'me' : 'none',
    v.name,
    `<h1>${esc(v.name)}</h1>
<dl class="facts"><dt>Type</dt><dd>${esc(v.type)}</dd>${v.email ? `<dt>Email</dt><dd>${esc(v.email)}</dd>` : ''}
<dt>Groups</dt><dd>${v.groups.length ? v.groups.map(esc).join(', ') : '<span class="muted">none</span>'}</dd></dl>
<h2>Access</h2>
${grants}
<h2>Credentials</h2>
${creds}
${v.requests ? `<h2>Requests</h2>${requestTable(viewer, v.requests, { decide: false })}` : ''}
${v.audit ? `<h2>History</h2>${auditTable(v.audit)}` : ''}`,
  );
}

// ---- dataset ----------------------------------------------------------------------------------

export interface DatasetView {
  name: string;
  backend: string;
  backendType: string;
  /** Where it lives: `s3://bucket/prefix`, `schema analytics`, … */
  location: string;
  description?: string;
  approvers: string[];
  access: IntendedAccess[];
  /** The last effective-access reading's rows for this dataset (actual access in the backend), if any. */
  effective?: { readAt: string; rows: AccessReportRow[]; incomplete: string[] };
}

export function datasetPage(viewer: Viewer, v: DatasetView): string {
  const rows = v.access.length
    ? `<div class="table-wrap" tabindex="0" role="region" aria-label="Who may access ${esc(v.name)}"><table><caption class="visually-hidden">Who may access ${esc(v.name)}</caption><thead><tr><th scope="col">Principal</th><th scope="col">Level</th><th scope="col">How</th><th scope="col">Ends</th></tr></thead><tbody>${v.access
        .map(
          (a) =>
            `<tr><td>${principalLink(a.principal)}</td><td>${level(a.level)}</td><td>${esc(a.via)}</td><td>${a.expires ? when(a.expires) : '<span class="muted">no end</span>'}</td></tr>`,
        )
        .join('')}</tbody></table></div>`
    : '<p class="muted">The spec gives no one access.</p>';
  const status = (s: AccessReportRow['status']) =>
    s === 'both'
      ? '<span class="tag ok">as the spec says</span>'
      : s === 'actual'
        ? '<span class="tag bad">not in the spec</span>'
        : '<span class="tag warn">not in the backend</span>';
  const eff = v.effective
    ? `<p class="muted">Read from the backend at ${when(v.effective.readAt)}.</p>${
        v.effective.incomplete.length ? `<p class="flash error" role="alert">Incomplete: ${esc(v.effective.incomplete.join('; '))}</p>` : ''
      }${
        v.effective.rows.length
          ? `<div class="table-wrap" tabindex="0" role="region" aria-label="Effective access to ${esc(v.name)}"><table><caption class="visually-hidden">Effective access to ${esc(v.name)}</caption><thead><tr><th scope="col">Holder</th><th scope="col">Level</th><th scope="col">Compared with the spec</th><th scope="col">Managed by</th><th scope="col">Paths</th></tr></thead><tbody>${v.effective.rows
              .map(
                (r) =>
                  `<tr><td>${r.principal ? principalLink(r.principal) : esc(r.who)}</td><td>${level(r.level)}</td><td>${status(r.status)}</td><td>${r.managed ? 'datagrant' : '<strong>not datagrant</strong>'}</td><td><ul>${[
                    ...r.actual.map((p) => `${p.via}${p.managed ? '' : ' (not datagrant’s)'}`),
                    ...(r.status === 'intended' ? r.intended.map((i) => `spec: ${i.via}`) : []),
                  ]
                    .map((t) => `<li>${esc(t)}</li>`)
                    .join('')}</ul></td></tr>`,
              )
              .join('')}</tbody></table></div>`
          : '<p class="muted">No one holds access in the backend.</p>'
      }`
    : viewer.kind === 'admin'
      ? '<p class="muted">No effective-access reading yet.</p>'
      : '<p class="muted">What the backend itself holds (access datagrant does not manage included) is shown to operators.</p>';
  return layout(
    viewer,
    'none',
    v.name,
    `<h1>${esc(v.name)}</h1>
${v.description ? `<p>${esc(v.description)}</p>` : ''}
<dl class="facts"><dt>Backend</dt><dd>${esc(v.backend)} (${esc(v.backendType)})</dd><dt>Where</dt><dd><code>${esc(v.location)}</code></dd>
<dt>Approvers</dt><dd>${v.approvers.length ? v.approvers.map(principalLink).join(', ') : '<span class="muted">none: requests for it cannot be approved</span>'}</dd></dl>
${viewer.kind === 'person' ? `<p><a class="button" href="/ui/requests?dataset=${encodeURIComponent(v.name)}">Request access</a></p>` : ''}
<h2>Who may access it (the spec)</h2>
${rows}
<h2>Who can access it (the backend)</h2>
${eff}
${viewer.kind === 'admin' ? `<form method="post" action="/ui/access/refresh">${csrfField(viewer)}<input type="hidden" name="next" value="/ui/datasets/${esc(encodeURIComponent(v.name))}"><button type="submit">Read effective access now</button></form>` : ''}`,
  );
}

// ---- requests ---------------------------------------------------------------------------------

export interface RequestsView {
  /** What the viewer may ask for (people only). */
  options?: { datasets: { name: string; levels: string[]; approvers: string[] }[]; maxDuration?: string };
  /** Pre-selected dataset (from a dataset page's link). */
  dataset?: string;
  waiting: AccessRequest[];
  mine: AccessRequest[];
  /** Others the viewer decided or may see (operators: all). */
  others: AccessRequest[];
  flash?: Flash;
}

function requestTable(viewer: Viewer, requests: readonly AccessRequest[], o: { decide: boolean; cancel?: boolean }): string {
  if (!requests.length) return '<p class="muted">None.</p>';
  return `<ul class="requests">${requests
    .map((r) => {
      const ends = r.endsAt ? ` until ${when(r.endsAt)}` : ` for ${esc(r.duration)}`;
      const decided = r.decision ? `<p class="muted">${esc(r.state)} by ${esc(r.decision.by)}: “${esc(r.decision.reason)}”</p>` : '';
      const closed = r.closed ? `<p class="muted">${esc(r.closed.reason)}</p>` : '';
      const decide = o.decide
        ? `<form method="post" action="/ui/requests/${r.id}/decide" class="decide">${csrfField(viewer)}
<label for="reason-${r.id}">Reason for your decision</label><input id="reason-${r.id}" name="reason" required maxlength="500">
<div class="buttons"><button type="submit" name="decision" value="approve" class="primary">Approve #${r.id}</button><button type="submit" name="decision" value="deny" class="danger">Deny #${r.id}</button></div></form>`
        : '';
      const cancel =
        o.cancel && (r.state === 'pending' || r.state === 'approved')
          ? `<form method="post" action="/ui/requests/${r.id}/cancel">${csrfField(viewer)}<button type="submit">${r.state === 'approved' ? 'Give up this access' : 'Withdraw'} #${r.id}</button></form>`
          : '';
      return `<li class="request" id="request-${r.id}"><div class="head"><span class="state st-${esc(r.state)}">${esc(r.state)}</span> <strong>#${r.id}</strong> ${principalLink(r.requester)} asks for ${level(r.level)} on ${datasetLink(r.dataset)}${ends}</div>
<p class="reason">“${esc(r.reason)}”</p><p class="muted">asked ${when(r.requestedAt)}</p>${decided}${closed}${decide}${cancel}</li>`;
    })
    .join('')}</ul>`;
}

export function requestsPage(viewer: Viewer, v: RequestsView): string {
  const form = v.options
    ? v.options.datasets.length
      ? `<form method="post" action="/ui/requests" class="stack request-form">${csrfField(viewer)}
<div><label for="r-dataset">Dataset</label><select id="r-dataset" name="dataset" required>${v.options.datasets
          .map(
            (d) =>
              `<option value="${esc(d.name)}"${d.name === v.dataset ? ' selected' : ''}>${esc(d.name)} — approvers: ${esc(d.approvers.join(', '))}</option>`,
          )
          .join('')}</select></div>
<div><label for="r-access">Level</label><select id="r-access" name="access" required><option value="read">read</option><option value="write">write</option><option value="admin">admin</option></select></div>
<div><label for="r-duration">For how long</label><input id="r-duration" name="duration" required value="8h" pattern="[0-9]+[smhdw]" aria-describedby="r-duration-hint"><p class="hint" id="r-duration-hint">A duration such as 30m, 8h or 7d${v.options.maxDuration ? `; at most ${esc(v.options.maxDuration)}` : ''}.</p></div>
<div><label for="r-reason">Why you need it</label><textarea id="r-reason" name="reason" required maxlength="500" rows="3"></textarea></div>
<button type="submit" class="primary">Ask for access</button>
</form>`
      : '<p class="muted">There is nothing you can ask for: no dataset names an approver other than you.</p>'
    : '<p class="muted">Operators do not ask for access: they are not principals of the spec.</p>';
  return layout(
    viewer,
    'requests',
    'Requests',
    `<h1>Requests</h1>
${flash(v.flash)}
<h2>Waiting for your decision</h2>
${viewer.kind === 'person' ? requestTable(viewer, v.waiting, { decide: true }) : '<p class="muted">Only the approvers the spec names decide; operators see requests but do not decide them.</p>'}
${viewer.kind === 'person' ? `<h2>Ask for access</h2>${form}<h2>Your requests</h2>${requestTable(viewer, v.mine, { decide: false, cancel: true })}` : ''}
<h2>${viewer.kind === 'admin' ? 'All requests' : 'Others you decided'}</h2>
${requestTable(viewer, v.others, { decide: false })}`,
  );
}

// ---- plan and audit ---------------------------------------------------------------------------

export interface PlanView {
  /** The plan as `datagrant plan` prints it (no colour). */
  text: string;
  changes: number;
  /** Changes that revert something done outside datagrant. */
  drift: number;
  at: string;
  error?: string;
}

export function planPage(viewer: Viewer, v: PlanView): string {
  return layout(
    viewer,
    'plan',
    'Plan and drift',
    `<h1>Plan and drift</h1>
<p class="muted">What a reconcile would change now, read from the backends at ${when(v.at)}. Nothing is changed by this page.</p>
${
  v.error
    ? `<p class="flash error" role="alert">${esc(v.error)}</p>`
    : `<ul class="cards"><li><span class="n">${v.changes}</span><span class="l">changes</span></li><li><span class="n">${v.drift}</span><span class="l">of them revert drift</span></li></ul>
<pre class="plan" tabindex="0" aria-label="The plan">${esc(v.text)}</pre>`
}`,
  );
}

export interface AuditView {
  ok: boolean;
  entries: number;
  firstBad?: { seq: number; reason: string };
  rows: AuditRowView[];
  query: string;
  /** More entries matched than are shown. */
  truncated: boolean;
  /** How many of the newest entries were searched. */
  scanned: number;
}

function auditTable(rows: readonly AuditRowView[]): string {
  if (!rows.length) return '<p class="muted">No entries.</p>';
  return `<div class="table-wrap" tabindex="0" role="region" aria-label="Audit entries, newest first"><table class="audit"><caption class="visually-hidden">Audit entries, newest first</caption><thead><tr><th scope="col">#</th><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Where</th><th scope="col">Outcome</th><th scope="col">Detail</th></tr></thead><tbody>${rows
    .map(
      (e) =>
        `<tr><td>${e.seq}</td><td>${when(e.at)}</td><td class="mono">${esc(e.actor)}</td><td>${esc(e.event)}</td><td class="mono">${esc(e.address ?? '')}</td><td>${esc(e.outcome)}</td><td>${esc(e.detail ?? '')}</td></tr>`,
    )
    .join('')}</tbody></table></div>`;
}

export function auditPage(viewer: Viewer, v: AuditView): string {
  const verdict = v.ok
    ? `<p class="flash ok" role="status">Chain intact: ${v.entries.toLocaleString('en')} entries, each MAC’d under the master key and linked to the one before.</p>`
    : `<p class="flash error" role="alert">The chain is broken at entry #${v.firstBad?.seq ?? '?'}: ${esc(v.firstBad?.reason ?? 'unknown')}. Entries from there on cannot be trusted; see <code>datagrant audit verify</code>.</p>`;
  return layout(
    viewer,
    'audit',
    'Audit log',
    `<h1>Audit log</h1>
${verdict}
<form method="get" action="/ui/audit" role="search" class="filters"><div><label for="q">Filter</label><input id="q" name="q" type="search" value="${esc(v.query)}" placeholder="actor, event, address or detail contains…"></div><button type="submit">Filter</button></form>
<p class="muted">${v.truncated ? 'Showing the newest 500 matching entries' : `${v.rows.length.toLocaleString('en')} ${v.rows.length === 1 ? 'entry' : 'entries'}`}${v.scanned < v.entries ? ` among the newest ${v.scanned.toLocaleString('en')}; <code>datagrant audit log</code> has them all` : ''}.</p>
${auditTable(v.rows)}`,
  );
}
