// Whether a revoked row is gone from the backends, and which audit entry removed it. Evidence must
// never cite the wrong entry: an entry is claimed only when it takes away one of the very ways the
// row's access was held when the review read it, after the revoke decision and, for access the
// spec granted, in a run of a spec other than the one the review started with (a run of the same
// spec did not apply the revocations patch). Pure: the row, a fresh report and the entries are
// passed in.
import { specHashOfRun } from '../model/audit.js';
import { LEVELS, type AccessPath, type AccessReport, type AccessReportRow } from '../model/access.js';
import { pgAddress } from '../model/postgres.js';
import type { AuditRecord, RevocationStatus, ReviewDataset } from '../model/review.js';

// What apply audits: `change.<action>` with the change's address, inside the `apply.start` and
// `apply.end` of its run (runs never overlap: they hold the state lock).
export interface Run {
  /** The spec hash its start named; undefined for runs recorded before starts named it. */
  specHash: string | undefined;
  end?: AuditRecord;
}

/** Apply runs as the audit chain recorded them: each change's and each end's run, by seq. */
export interface AuditRuns {
  bySeq: Map<number, Run>;
  /** The entries that belong to a run (changes and ends), in chain order. */
  entries: AuditRecord[];
}

export function auditRuns(entries: readonly AuditRecord[]): AuditRuns {
  const bySeq = new Map<number, Run>();
  const inRuns: AuditRecord[] = [];
  let run: Run | undefined;
  for (const e of entries) {
    if (e.event === 'apply.start') run = { specHash: specHashOfRun(e.detail) };
    else if (run && e.event.startsWith('change.')) {
      bySeq.set(e.seq, run);
      inRuns.push(e);
    } else if (run && e.event === 'apply.end') {
      run.end = e;
      bySeq.set(e.seq, run);
      inRuns.push(e);
      run = undefined;
    }
  }
  return { bySeq, entries: inRuns };
}

/** Takes away one way of holding the access: the address and action of a change that does. */
type Removes = (address: string, event: string) => boolean;

const unquote = (name: string) => (name.startsWith('"') && name.endsWith('"') ? name.slice(1, -1).replace(/""/g, '"') : name);

/**
 * The changes that take away `path` of a managed principal's row, or undefined when no change of
 * datagrant's can (a bucket policy, a grant to PUBLIC, ownership: removed by hand, if at all).
 * AWS: the membership of the group behind it; its inline policy (deleted, or for the direct
 * grants updated: the entry does not say whether the new document still grants the dataset, the
 * fresh read does); the detachment of its managed policy. PostgreSQL: the membership of the role
 * it is a member of; for its own grants, the deletion of the grant on the dataset's schema at the
 * row's level or at read (which holds USAGE on the schema, without which no level is usable; the
 * levels above hold only what they add), or of its CONNECT on the database. Never the user or
 * role itself, nor other kinds: a tag, a VALID UNTIL, a key or a password removes no access.
 */
function removersOf(path: AccessPath, row: AccessReportRow, principal: string, dataset: ReviewDataset | undefined): Removes | undefined {
  const b = row.backend;
  const via = path.via;
  const is =
    (address: string, ...events: string[]) =>
    (a: string, e: string) =>
      a === address && events.includes(e);
  if (row.holder?.kind === 'aws-user') {
    const group = /^group (\S+) \((?:managed|inline) policy /.exec(via);
    if (group) return is(`${b}:membership/${group[1]}/${principal}`, 'change.delete');
    const inline = /^inline policy (.+) of user (\S+)$/.exec(via);
    if (inline && inline[2] === principal) {
      const events = inline[1] === 'dg-direct-grants' ? ['change.delete', 'change.update'] : ['change.delete'];
      return is(`${b}:inline-policy/user/${principal}/${inline[1]}`, ...events);
    }
    const attached = /^managed policy (.+) attached to user (\S+)$/.exec(via);
    if (attached && attached[2] === principal) {
      const prefix = `${b}:attachment/user/${principal}/`;
      const policy = attached[1]!;
      return (a, e) => e === 'change.delete' && a.startsWith(prefix) && (a.slice(prefix.length) === policy || a.endsWith(`/${policy}`));
    }
    return undefined;
  }
  if (row.holder?.kind === 'pg-role') {
    const member = /^member of role (.+?)(?: \(through (.+)\))?$/.exec(via);
    const settable = /^can SET ROLE (.+)$/.exec(via);
    const group = member ? (member[2] ?? member[1]!).split(', ')[0]! : settable?.[1];
    if (group !== undefined) return is(pgAddress.membership(b, unquote(group), principal), 'change.delete');
    const own = /^GRANT .+ TO (.+)$/.exec(via);
    if ((own && unquote(own[1]!) === principal) || via.startsWith('default privileges: ')) {
      if (!dataset || !('database' in dataset) || !('schema' in dataset)) return undefined;
      const levels = [...new Set([row.level, LEVELS[0]!])];
      const addresses = new Set([
        ...levels.map((l) => pgAddress.grant(b, principal, dataset.database, dataset.schema, l)),
        pgAddress.connect(b, principal, dataset.database),
      ]);
      return (a, e) => e === 'change.delete' && addresses.has(a);
    }
    return undefined;
  }
  return undefined;
}

/** The name of the AWS role a row's holder is (its ARN's last segment, whatever the display name). */
const roleName = (row: AccessReportRow) => (row.holder?.kind === 'aws-role' ? row.holder.id.split('/').pop() : undefined);

const entryWords = (e: AuditRecord) => `${e.event}${e.address ? ` ${e.address}` : ''} (audit #${e.seq})`;

export interface RemovalContext {
  /** A fresh report, read with the review's filters. */
  fresh: AccessReport;
  /** The audit chain's apply runs (auditRuns), found once for all the rows. */
  runs: AuditRuns;
  /** The first standing revoke decision on the row: what removed it came after. */
  decidedSeq: number;
  /** The spec hash the review started with. */
  specSha256: string;
  /** Where the row's dataset is, as the review recorded it. */
  dataset: ReviewDataset | undefined;
  /**
   * The row's principal comes from the identity provider (SCIM), not from the spec file: its
   * access goes when the provider's group changes, with the spec file as it was.
   */
  fromIdentityProvider: boolean;
}

export function revocationStatus(row: AccessReportRow, ctx: RemovalContext): RevocationStatus {
  const { fresh, decidedSeq } = ctx;
  const observedAt = fresh.generatedAt;
  const now = fresh.rows.find((r) => r.id === row.id && r.actual.length > 0);
  const remaining = now ? now.actual.map((p) => p.via) : [];
  const runs = ctx.runs.bySeq;
  // Access the spec granted goes by the revocations patch: a run of the spec the review started
  // with did not apply it (access held only by drift, or given by the identity provider, goes
  // with the spec unchanged).
  const needsNewSpec = row.intended.length > 0 && !ctx.fromIdentityProvider;
  const counts = (e: AuditRecord) => {
    const run = runs.get(e.seq);
    return e.seq > decidedSeq && e.outcome === 'ok' && run !== undefined && (!needsNewSpec || (run.specHash !== undefined && run.specHash !== ctx.specSha256));
  };
  const later = ctx.runs.entries.filter(counts);

  let entry: RevocationStatus['entry'];
  let unexplained: string[] = [];
  let found: AuditRecord[] = [];
  const role = row.managed ? roleName(row) : undefined;
  if (role !== undefined) {
    // An access-set role's sessions lose a principal through a change of the role itself (its
    // revocation policy, its attachments, its deletion), whose address names the role only.
    const names = (a: string | null) =>
      a !== null &&
      [`${row.backend}:role/${role}`, `${row.backend}:inline-policy/role/${role}/`, `${row.backend}:attachment/role/${role}/`].some(
        (p) => a === p || (p.endsWith('/') && a.startsWith(p)),
      );
    const run = [...new Set(later.filter((e) => e.event.startsWith('change.') && names(e.address)).map((e) => runs.get(e.seq)!))]
      .filter((r) => r.end?.outcome === 'ok')
      .at(-1);
    if (run?.end) entry = { ...run.end, match: 'run' };
  } else if (row.managed && row.principal !== undefined) {
    const principal = row.principal;
    for (const path of row.actual) {
      const removes = removersOf(path, row, principal, ctx.dataset);
      const hit = removes ? later.filter((e) => e.address !== null && removes(e.address, e.event)).at(-1) : undefined;
      if (hit) found.push(hit);
      else unexplained.push(path.via);
    }
    found = [...new Set(found)].sort((a, b) => a.seq - b.seq);
    const last = found.at(-1);
    if (last && !unexplained.length) entry = { ...last, match: 'change' };
  }

  if (now) {
    const partly = found.length ? found : entry ? [entry] : [];
    return {
      state: 'present',
      remaining,
      ...(entry ? { entry } : {}),
      observedAt,
      note: partly.length
        ? `still held after ${partly.map(entryWords).join(', ')}: through ${remaining.join('; ')}`
        : row.managed
          ? 'still held: apply the revocations patch (datagrant review revocations), then datagrant apply'
          : `still held: remove it by hand (see datagrant review revocations): ${remaining.join('; ')}`,
    };
  }
  if (!row.managed) return { state: 'removed', remaining, observedAt, note: 'removed outside datagrant (by hand): no audit entry' };
  if (!row.actual.length) {
    return { state: 'removed', remaining, observedAt, note: 'not held when the review read it (only the spec granted it): nothing was there to remove' };
  }
  if (entry?.match === 'run') {
    return {
      state: 'removed',
      remaining,
      entry,
      observedAt,
      note: `removed by the apply run that ended at audit #${entry.seq}, which changed the access-set role ${role}`,
    };
  }
  if (entry) return { state: 'removed', remaining, entry, observedAt, note: `removed by ${entryWords(entry)}` };
  if (role === undefined && row.principal === undefined) unexplained = row.actual.map((p) => p.via);
  const details = [
    found.length ? `changes that took away part of it: ${found.map(entryWords).join(', ')}` : '',
    unexplained.length ? `no change of datagrant's${needsNewSpec ? ' under a changed spec' : ''} after the decision took away: ${unexplained.join('; ')}` : '',
    role !== undefined ? `no successful apply${needsNewSpec ? ' of a changed spec' : ''} after the decision changed the access-set role ${role}` : '',
  ].filter(Boolean);
  return { state: 'removed', remaining, observedAt, note: `removed; no single audit entry identified${details.length ? ` (${details.join('; ')})` : ''}` };
}
