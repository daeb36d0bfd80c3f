// datagrant review start | list | show | decide | revocations | status | export | close: access
// reviews (issue 13), over src/app/review.ts. Populations and revocation statuses are read from
// the backends exactly as `datagrant access` reads them.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { runAccessReport } from '../../app/access.js';
import {
  actorOf,
  displayPath,
  loadSpecFor,
  makeBackends,
  specPath,
  withMerged,
  withStore,
  type BackendOptions,
  type CommonOptions,
} from '../../app/context.js';
import type { Io } from '../../app/io.js';
import { closeReview, decide, evidence, loadReview, revocations, startReview } from '../../app/review.js';
import { UsageError } from '../../core/errors.js';
import type { Level } from '../../core/types.js';
import type { AccessReport, AccessReportRow } from '../../model/access.js';
import type { ReviewDataset, ReviewEvidence, ReviewIntegrity, ReviewVerdict } from '../../model/review.js';
import { checkReviewAudit } from '../../plan/review-audit.js';
import type { AccessFilters } from '../../plan/access.js';
import { recordedOnBehalf, reviewRows, summarize, type RowFilter } from '../../plan/review.js';
import { renderReviewHtml } from '../../render/html.js';
import {
  renderReviewCsv,
  renderReviewJson,
  renderReviewList,
  renderReviewShow,
  renderReviewStatus,
  renderRevocationsText,
  summaryLine,
} from '../../render/review.js';
import type { AuditVerdict, StateStore } from '../../store/store.js';

export interface ReviewOptions extends CommonOptions {
  name: string;
  backendOptions?: BackendOptions;
}

/** The spec as `datagrant access` loads it (SCIM people and approved requests merged), and the e-mails of its principals. */
async function loadForAccess(io: Io, opts: ReviewOptions, store: StateStore) {
  const now = io.now();
  const fromFile = loadSpecFor(io, opts, now);
  const filePrincipals = new Set(Object.keys(fromFile.spec.principals));
  const loaded = await withMerged(io, opts, fromFile, store);
  const emails = Object.fromEntries(Object.entries(loaded.spec.principals).flatMap(([p, s]) => (s.email ? [[p, s.email] as const] : [])));
  const fromIdentityProvider = Object.keys(loaded.spec.principals).filter((p) => !filePrincipals.has(p));
  const datasets: Record<string, ReviewDataset> = Object.fromEntries(
    Object.entries(loaded.spec.datasets).map(([name, d]) => [
      name,
      'bucket' in d
        ? { backend: d.backend, bucket: d.bucket, ...(d.prefix !== undefined ? { prefix: d.prefix } : {}) }
        : { backend: d.backend, database: d.database, ...('schema' in d ? { schema: d.schema } : {}), ...(d.tables ? { tables: d.tables } : {}) },
    ]),
  );
  return { loaded, emails, datasets, fromIdentityProvider, now };
}

/** Effective access, read as `datagrant access` reads it, with the spec as it is now. */
const accessReader =
  (io: Io, opts: ReviewOptions, store: StateStore) =>
  async (filters: AccessFilters): Promise<AccessReport> => {
    const { loaded, now } = await loadForAccess(io, opts, store);
    return runAccessReport({
      spec: loaded.spec,
      specHash: loaded.specHash,
      specFile: displayPath(io, specPath(io, opts)),
      store,
      makeBackends: (backends, installation) => makeBackends({ backends }, { ...opts.backendOptions, installation }),
      now,
      filters,
    });
  };

export async function reviewStart(io: Io, opts: ReviewOptions & { principal?: string; dataset?: string; version: string }): Promise<number> {
  return withStore(io, opts, async (store) => {
    const { emails, datasets } = await loadForAccess(io, opts, store);
    const filters = {
      ...(opts.principal !== undefined ? { principal: opts.principal } : {}),
      ...(opts.dataset !== undefined ? { dataset: opts.dataset } : {}),
    };
    const review = await startReview(store, {
      name: opts.name,
      readReport: () => accessReader(io, opts, store)(filters),
      emails,
      datasets,
      actor: actorOf(io),
      now: io.now(),
      version: opts.version,
    });
    const m = review.manifest;
    io.stdout(
      [
        `Started review ${review.name}: ${review.population.length} row(s) of effective access, read ${m.extractedAt}.`,
        `  query:      ${m.query.command}`,
        `  spec:       ${m.specFile} (sha256 ${m.specSha256})`,
        `  population: sha256 ${m.populationSha256}`,
        `  audit head: ${m.auditHead ? `#${m.auditHead.seq} ${m.auditHead.hash}` : '(empty chain)'}`,
        ...(m.limits.length ? ['  not seen or not evaluated:', ...m.limits.map((l) => `    - ${l}`)] : []),
        `Next: datagrant review show ${review.name}, then datagrant review decide ${review.name} N… --keep|--revoke --reason TEXT --as REVIEWER`,
        '',
      ].join('\n'),
    );
    return 0;
  });
}

export async function reviewList(io: Io, opts: CommonOptions & { json?: boolean }): Promise<number> {
  const reviews = await withStore(io, opts, (s) => s.reviews());
  io.stdout(opts.json ? `${JSON.stringify(reviews, null, 2)}\n` : renderReviewList(reviews));
  return 0;
}

/** What is wrong with the chain or with the review against it, for standard error; empty when nothing is. */
function integrityWarning(name: string, integrity: ReviewIntegrity, verdict: AuditVerdict): string {
  const out: string[] = [];
  if (!verdict.ok) out.push(`Warning: the audit chain does NOT verify: entry ${verdict.firstBad?.seq}: ${verdict.firstBad?.reason}.`);
  if (!integrity.ok) {
    out.push(`Warning: review ${name} does NOT match the audit chain (the state store was edited outside datagrant?):`);
    for (const p of integrity.problems) out.push(`  ! ${p.message}`);
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

export async function reviewShow(io: Io, opts: ReviewOptions & { json?: boolean }): Promise<number> {
  const { review, entries, verdict } = await withStore(io, opts, async (s) => ({
    review: await loadReview(s, opts.name),
    entries: await s.auditEntries(),
    verdict: await s.verifyAudit(),
  }));
  const rows = reviewRows(review);
  const summary = summarize(rows);
  const integrity = checkReviewAudit(review, entries);
  io.stdout(opts.json ? `${JSON.stringify({ ...review, rows, summary, integrity }, null, 2)}\n` : renderReviewShow(review, rows, summary));
  io.stderr(integrityWarning(review.name, integrity, verdict));
  return 0;
}

export interface DecideCliOptions extends ReviewOptions {
  rows: string[];
  allMatching?: boolean;
  principal?: string;
  dataset?: string;
  backend?: string;
  level?: Level;
  status?: AccessReportRow['status'];
  unmanaged?: boolean;
  managed?: boolean;
  undecided?: boolean;
  keep?: boolean;
  revoke?: boolean;
  reason: string;
  as: string;
}

export async function reviewDecide(io: Io, opts: DecideCliOptions): Promise<number> {
  if (Boolean(opts.keep) === Boolean(opts.revoke)) throw new UsageError('say --keep or --revoke (one of them)');
  const decision: ReviewVerdict = opts.keep ? 'keep' : 'revoke';
  if (opts.unmanaged && opts.managed) throw new UsageError('--managed and --unmanaged exclude each other');
  const filter: RowFilter = {
    ...(opts.principal !== undefined ? { principal: opts.principal } : {}),
    ...(opts.dataset !== undefined ? { dataset: opts.dataset } : {}),
    ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
    ...(opts.level !== undefined ? { level: opts.level } : {}),
    ...(opts.status !== undefined ? { status: opts.status } : {}),
    ...(opts.unmanaged ? { unmanaged: true } : opts.managed ? { unmanaged: false } : {}),
    ...(opts.undecided ? { undecided: true } : {}),
  };
  if (!opts.allMatching && Object.keys(filter).length) {
    throw new UsageError('--principal, --dataset, --backend, --level, --status, --managed, --unmanaged and --undecided choose rows only with --all-matching');
  }
  if (opts.allMatching && opts.rows.length) throw new UsageError('name rows (numbers or ids) or pass --all-matching, not both');
  if (!opts.allMatching && !opts.rows.length)
    throw new UsageError('name the rows to decide (numbers as review show prints them, or ids), or pass --all-matching with filters');
  const recorded = await withStore(io, opts, (store) =>
    decide(store, {
      name: opts.name,
      ...(opts.allMatching ? { matching: filter } : { rows: opts.rows }),
      decision,
      reason: opts.reason,
      reviewer: opts.as,
      actor: actorOf(io),
      now: io.now(),
    }),
  );
  const self = recorded.filter((d) => d.selfReview).length;
  const { reviewer, actor } = recorded[0]!;
  const behalf = recordedOnBehalf({ reviewer, actor });
  io.stdout(
    `Recorded ${decision} on ${recorded.length} row(s) of review ${opts.name} as ${reviewer} (audit #${recorded.map((d) => d.auditSeq).join(', #')})${behalf ? `; decision recorded on behalf of ${reviewer} by ${actor}` : ''}.\n`,
  );
  if (self) {
    const whose = behalf ? `${reviewer}, or ${actor}, who recorded it,` : reviewer;
    io.stderr(
      `Warning: ${self} of them ${self === 1 ? 'is' : 'are'} flagged SELF-REVIEW: ${whose} is the principal whose access it is (by name or e-mail). An independent reviewer should decide ${self === 1 ? 'it' : 'them'} too.\n`,
    );
  }
  return 0;
}

/** The patch names the spec relative to where it is applied: the working directory, or the spec's own. */
function patchPath(io: Io, file: string): { name: string; applyIn: string } {
  const rel = relative(io.cwd, file);
  if (rel && !rel.startsWith('..') && !isAbsolute(rel)) return { name: rel, applyIn: io.cwd };
  return { name: relative(dirname(file), file), applyIn: dirname(file) };
}

export async function reviewRevocations(io: Io, opts: ReviewOptions & { out?: string }): Promise<number> {
  const now = io.now();
  const file = specPath(io, opts);
  const fromFile = loadSpecFor(io, opts, now);
  const merged = await withMerged(io, opts, fromFile);
  const where = patchPath(io, file);
  const plan = await withStore(io, opts, (store) =>
    revocations(store, {
      name: opts.name,
      specText: readFileSync(file, 'utf8'),
      specFile: where.name,
      fileSpec: fromFile.spec,
      spec: merged.spec,
      env: io.env,
      now,
    }),
  );
  const out = opts.out ? resolve(io.cwd, opts.out) : undefined;
  if (out && plan.patch) writeFileSync(out, plan.patch, { mode: 0o644 });
  const text = renderRevocationsText(opts.name, plan, opts.out);
  const applyIn = where.applyIn === io.cwd ? '' : `Apply it in ${where.applyIn}.\n`;
  if (out || !plan.patch) {
    io.stdout(text + applyIn);
  } else {
    // The patch alone on standard output (`> revocations.patch`); what it means on standard error.
    io.stdout(plan.patch);
    io.stderr(text + applyIn);
  }
  return 0;
}

/** The review with its revocations read again from the backends, and checked against the audit chain. */
async function reviewEvidenceOf(io: Io, opts: ReviewOptions): Promise<ReviewEvidence> {
  return withStore(io, opts, async (store) => {
    const { fromIdentityProvider } = await loadForAccess(io, opts, store);
    return evidence(store, { name: opts.name, readReport: accessReader(io, opts, store), exportedBy: actorOf(io), fromIdentityProvider });
  });
}

export async function reviewStatus(io: Io, opts: ReviewOptions & { json?: boolean; detailedExitcode?: boolean }): Promise<number> {
  const e = await reviewEvidenceOf(io, opts);
  if (opts.json) {
    io.stdout(
      `${JSON.stringify({ review: e.review, checkedAt: e.checkedAt, summary: e.summary, revocations: e.rows.filter((r) => r.revocation), integrity: e.integrity }, null, 2)}\n`,
    );
  } else {
    io.stdout(renderReviewStatus(e));
  }
  io.stderr(integrityWarning(e.review.name, e.integrity, e.auditVerified));
  return opts.detailedExitcode && e.summary.present > 0 ? 2 : 0;
}

export async function reviewExport(io: Io, opts: ReviewOptions & { out: string }): Promise<number> {
  const e = await reviewEvidenceOf(io, opts);
  const dir = resolve(io.cwd, opts.out);
  mkdirSync(dir, { recursive: true });
  const files = [
    [`${e.review.name}.csv`, renderReviewCsv(e)],
    [`${e.review.name}.json`, renderReviewJson(e)],
    [`${e.review.name}.html`, renderReviewHtml(e)],
  ] as const;
  for (const [name, text] of files) writeFileSync(join(dir, name), text, { mode: 0o644 });
  io.stdout(
    [
      `Wrote the evidence of review ${e.review.name} to ${opts.out}: ${files.map(([n]) => n).join(', ')}.`,
      `  ${summaryLine(e)}`,
      `  Revocations: ${e.summary.removed} in effect, ${e.summary.present} still held (checked ${e.checkedAt}).`,
      `  Audit chain: ${e.auditVerified.ok ? `verified, ${e.auditVerified.entries} entries` : `BROKEN at entry ${e.auditVerified.firstBad?.seq}: ${e.auditVerified.firstBad?.reason}`}.`,
      `  Review against the chain: ${e.integrity.ok ? `matches (review.start #${e.integrity.startSeq}, ${e.integrity.decisions} standing decision(s))` : `DOES NOT MATCH, ${e.integrity.problems.length} problem(s), written into the evidence`}.`,
      '',
    ].join('\n'),
  );
  io.stderr(integrityWarning(e.review.name, e.integrity, e.auditVerified));
  return e.auditVerified.ok && e.integrity.ok ? 0 : 1;
}

export async function reviewClose(io: Io, opts: ReviewOptions): Promise<number> {
  const review = await withStore(io, opts, (store) => closeReview(store, { name: opts.name, actor: actorOf(io), now: io.now() }));
  const rows = reviewRows(review);
  const undecided = rows.filter((r) => r.outcome.outcome === 'undecided').length;
  io.stdout(`Closed review ${review.name} at ${review.closedAt}: ${rows.length} row(s), ${undecided} undecided. It takes no more decisions.\n`);
  return 0;
}
