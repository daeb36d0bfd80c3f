// Requests for access (issue 15), purely: whether a request may be made, whether a principal may
// approve, deny or cancel it, what approving it would break, and the one merge of approved
// requests into the spec that plan, apply, drift, access and serve all use. Pure: the spec, the
// principals there are, the requests and `now` are passed in.
//
// An approved request becomes a direct grant of its requester with `expires` = its end, carrying
// its origin (the request and its approver), so the backends enforce the end (an aws:CurrentTime
// condition, a login's VALID UNTIL), the next apply after it removes the grant, and serve wakes
// then (nextChangeAt sees the grant's expiry). A principal holds at most one direct grant per
// dataset: the spec's own grant stands over a request's, and of several live requests for one
// dataset the highest level (then the latest end) is merged.
import { intendedAccess } from '../compile/access.js';
import { checkInvariants, intendedFacts } from '../compile/invariants.js';
import { RequestError } from '../core/errors.js';
import type { Level, Notice } from '../core/types.js';
import { atLeast, LEVELS } from '../model/access.js';
import type { AccessRequest } from '../model/request.js';
import { approversOf, type ApproverRule } from '../spec/approvers.js';
import { pgRoleNameProblem } from '../spec/limits.js';
import type { SpecPositions } from '../spec/load.js';
import {
  DEFAULT_REQUEST_DECIDE_WITHIN,
  DEFAULT_REQUEST_MAX_DURATION,
  DURATION_RE,
  durationSeconds,
  isS3Dataset,
  type Grant,
  type PrincipalSpec,
  type Spec,
} from '../spec/schema.js';

/** A reason is what the approver and the auditor read: required, and kept to what a person writes. */
export const MAX_REQUEST_REASON = 2000;
// Control characters would let a reason rewrite what a terminal shows; line breaks are kept.
const CONTROL = /[^\P{Cc}\n\t]/u;

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
const list = (names: Iterable<string>) => [...names].sort().join(', ') || '(none)';

/** Every principal there is, by name: the spec's (SCIM people merged in) and SCIM people in no mapped group. */
export type People = Readonly<Record<string, PrincipalSpec>>;

export interface RequestLimits {
  maxDuration: string;
  maxSeconds: number;
  decideWithin: string;
  decideSeconds: number;
}

export function requestLimits(spec: Pick<Spec, 'settings'>): RequestLimits {
  const maxDuration = spec.settings?.requests?.maxDuration ?? DEFAULT_REQUEST_MAX_DURATION;
  const decideWithin = spec.settings?.requests?.decideWithin ?? DEFAULT_REQUEST_DECIDE_WITHIN;
  return { maxDuration, maxSeconds: durationSeconds(maxDuration), decideWithin, decideSeconds: durationSeconds(decideWithin) };
}

/** Pending requests made before this instant have waited too long for a decision. */
export const pendingBefore = (spec: Pick<Spec, 'settings'>, now: Date) => new Date(now.getTime() - requestLimits(spec).decideSeconds * 1000);

/** The reason as kept: line breaks made plain, trimmed; refused when empty, too long or holding control characters. */
export function cleanReason(text: string, what = 'a request'): string {
  const reason = text.replace(/\r\n?/g, '\n').trim();
  if (!reason) throw new RequestError('invalid', `${what} needs a reason: it is what the approver and the auditor read`);
  if (reason.length > MAX_REQUEST_REASON)
    throw new RequestError('invalid', `the reason is ${reason.length} characters long; at most ${MAX_REQUEST_REASON} are kept`);
  if (CONTROL.test(reason)) throw new RequestError('invalid', 'the reason holds control characters; write it as plain text (line breaks are fine)');
  return reason;
}

/** Seconds of a requested duration, refused when it is not one or longer than the spec allows. */
export function requestDuration(spec: Pick<Spec, 'settings'>, duration: string): number {
  const limits = requestLimits(spec);
  if (!DURATION_RE.test(duration)) {
    throw new RequestError(
      'invalid',
      `duration ${JSON.stringify(duration)} is not a duration; write one such as 8h, 7d or 30m (at most ${limits.maxDuration})`,
    );
  }
  let seconds = Infinity;
  try {
    seconds = durationSeconds(duration);
  } catch {
    // past any limit a spec may set: refused below
  }
  if (seconds > limits.maxSeconds) {
    throw new RequestError(
      'invalid',
      `duration ${duration} is longer than a request may ask for: at most ${limits.maxDuration}${spec.settings?.requests?.maxDuration ? ' (settings.requests.maxDuration)' : ' (the default; settings.requests.maxDuration sets another)'}`,
    );
  }
  return seconds;
}

function level(value: string): Level {
  if (!(LEVELS as readonly string[]).includes(value))
    throw new RequestError('invalid', `access ${JSON.stringify(value)} is not a level; allowed: read, write, admin`);
  return value as Level;
}

const where = (rule: ApproverRule, source?: SpecPositions) => {
  const path = rule.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i ? `.${p}` : p)).join('');
  if (!source || !source.has(rule.path)) return path;
  const pos = source.position(rule.path);
  return `${path} at ${source.file}:${pos.line}:${pos.column}`;
};

/** The principal a name means: exactly as written, else the one whose name matches ignoring case (IAM's view of names). */
export function principalNamed(people: People, name: string): string | undefined {
  if (has(people, name)) return name;
  const lower = name.toLowerCase();
  return Object.keys(people).find((n) => n.toLowerCase() === lower);
}

/**
 * The principal `who` names: a principal's name, or a person's e-mail (ignoring case). Refused
 * (`forbidden`) when it names no one, or more than one person by e-mail.
 */
export function resolvePrincipal(people: People, who: string): string {
  const named = principalNamed(people, who.trim());
  if (named !== undefined) return named;
  const lower = who.trim().toLowerCase();
  const byEmail = Object.entries(people)
    .filter(([, p]) => p.email !== undefined && p.email.toLowerCase() === lower)
    .map(([n]) => n);
  if (byEmail.length === 1) return byEmail[0]!;
  if (byEmail.length > 1)
    throw new RequestError('forbidden', `${JSON.stringify(who)} is the e-mail of several principals (${byEmail.sort().join(', ')}); name one`);
  throw new RequestError('forbidden', `${JSON.stringify(who)} is no principal: neither a principal of the spec, nor a SCIM person, by name or e-mail`);
}

/** What a request asks for, checked against the spec as it is now. */
interface Asked {
  requester: string;
  dataset: string;
  level: Level;
  duration: string;
}

/**
 * Whether what `r` asks for can be granted at all under the spec as it is now: the principal and
 * the dataset exist, the duration is within the limit, some rule lets the level be approved there.
 * Returns who may approve it.
 */
function grantable(spec: Spec, people: People, r: Asked, source?: SpecPositions) {
  if (!has(people, r.requester)) {
    throw new RequestError('invalid', `principal ${JSON.stringify(r.requester)} does not exist: it is neither a principal of the spec nor a SCIM person`);
  }
  if (!has(spec.datasets, r.dataset)) {
    throw new RequestError('invalid', `dataset ${JSON.stringify(r.dataset)} is not defined; defined datasets: ${list(Object.keys(spec.datasets))}`);
  }
  requestDuration(spec, r.duration);
  const approvers = approversOf(spec, people, r.dataset, r.level);
  if (approvers.maxLevel === undefined) {
    throw new RequestError(
      'invalid',
      `access to dataset ${r.dataset} cannot be requested: the spec names no approvers for it (datasets.${r.dataset}.approvers, or a top-level approvers rule covering it)`,
    );
  }
  if (!atLeast(approvers.maxLevel, r.level)) {
    throw new RequestError(
      'invalid',
      `${r.level} on dataset ${r.dataset} cannot be requested: its approvers may approve up to ${approvers.maxLevel} (a rule's access: says how far)`,
    );
  }
  const ds = spec.datasets[r.dataset]!;
  if (!isS3Dataset(ds) && spec.backends[ds.backend]?.type === 'postgres') {
    const problem = pgRoleNameProblem(r.requester);
    if (problem) throw new RequestError('invalid', `principal name ${JSON.stringify(r.requester)} ${problem}, so it cannot be a role on backend ${ds.backend}`);
  }
  return { approvers, where: (rule: ApproverRule) => where(rule, source) };
}

export interface NewRequestInput {
  requester: string;
  dataset: string;
  access: string;
  duration: string;
  reason: string;
}

export interface CheckedRequest extends Asked {
  reason: string;
  /** Who may approve it (never the requester). */
  approvers: string[];
}

/**
 * A new request, refused with a clear message when it cannot be granted (see `grantable`), when
 * nobody but the requester may approve it, or when the requester already holds that access for
 * good or through a grant of the spec on that dataset (a request's grant would not be merged
 * beside it). `spec` has SCIM people and approved requests merged in.
 */
export function checkNewRequest(spec: Spec, people: People, input: NewRequestInput, now: Date, source?: SpecPositions): CheckedRequest {
  const requester = principalNamed(people, input.requester.trim()) ?? input.requester.trim();
  const asked: Asked = { requester, dataset: input.dataset, level: level(input.access), duration: input.duration };
  const reason = cleanReason(input.reason);
  const { approvers, where } = grantable(spec, people, asked, source);
  const others = approvers.principals.filter((p) => p !== requester);
  if (others.length === 0) {
    throw new RequestError(
      'invalid',
      `no one but ${requester} may approve ${asked.level} on dataset ${asked.dataset}, and no one approves their own request: the approvers (${approvers.rules.map(where).join('; ')}) must name someone else`,
    );
  }
  const held = intendedAccess(spec, now).find(
    (a) => a.principal === requester && a.dataset === asked.dataset && atLeast(a.level, asked.level) && a.expires === undefined,
  );
  if (held)
    throw new RequestError('invalid', `${requester} already has ${held.level} on dataset ${asked.dataset} through ${held.via} ${held.path}, with no end`);
  const own = (spec.principals[requester]?.grants ?? []).findIndex((g: Grant) => !g.origin && g.dataset === asked.dataset);
  if (own >= 0) {
    throw new RequestError(
      'invalid',
      `${requester} has a grant on dataset ${asked.dataset} in the spec (principals.${requester}.grants[${own}]), and a request cannot add one beside it: change that grant in the spec instead`,
    );
  }
  return { ...asked, reason, approvers: others };
}

/**
 * The principal `approver` may approve or deny `r`: not the requester, and one of its approvers
 * under the spec as it is now. Returns the principals who may.
 */
export function checkDecider(spec: Spec, people: People, r: AccessRequest, approver: string, verb: 'approve' | 'deny', source?: SpecPositions): string[] {
  const { approvers, where } = grantable(spec, people, r, source);
  const others = approvers.principals.filter((p) => p !== r.requester);
  if (approver === r.requester) {
    throw new RequestError(
      'forbidden',
      `${approver} cannot ${verb} their own request #${r.id}${verb === 'deny' ? ' (cancel it to withdraw it)' : ''}; another approver must: ${list(others)}`,
    );
  }
  if (!approvers.principals.includes(approver)) {
    throw new RequestError(
      'forbidden',
      `${approver} may not ${verb} ${r.level} on dataset ${r.dataset}: the approvers are ${list(others)} (${approvers.rules.map(where).join('; ') || 'no rule allows that level'})`,
    );
  }
  return others;
}

/**
 * Who may approve or deny `r` now (never its requester); none when the spec no longer lets it be
 * granted (its dataset or principal gone, its level past what approvers may grant).
 */
export function decidersOf(spec: Spec, people: People, r: AccessRequest): string[] {
  try {
    return grantable(spec, people, r).approvers.principals.filter((p) => p !== r.requester);
  } catch (e) {
    if (e instanceof RequestError) return [];
    throw e;
  }
}

/**
 * What `principal` may ask for: each dataset some approver rule covers, the levels someone other
 * than `principal` may approve there, and who.
 */
export function requestableBy(
  spec: Spec,
  people: People,
  principal: string,
): { dataset: string; backend: string; levels: { level: Level; approvers: string[] }[] }[] {
  const out: { dataset: string; backend: string; levels: { level: Level; approvers: string[] }[] }[] = [];
  for (const [name, ds] of Object.entries(spec.datasets)) {
    const levels = LEVELS.map((l) => ({ level: l, approvers: approversOf(spec, people, name, l).principals.filter((p) => p !== principal) })).filter(
      (l) => l.approvers.length > 0,
    );
    if (levels.length) out.push({ dataset: name, backend: ds.backend, levels });
  }
  return out;
}

/** Only the requester may cancel a request (on the CLI, whoever holds the master key may say they are). */
export function checkCanceller(r: AccessRequest, who: string): void {
  if (who !== r.requester) throw new RequestError('forbidden', `only ${r.requester}, who asked, may cancel request #${r.id}; ${who} may not`);
}

/** When an approval at `now` ends: `now` + the duration, to the second. */
export function endOf(r: Pick<AccessRequest, 'duration'>, spec: Pick<Spec, 'settings'>, now: Date): string {
  const seconds = requestDuration(spec, r.duration);
  return new Date(Math.floor(now.getTime() / 1000) * 1000 + seconds * 1000).toISOString();
}

/**
 * The invariants approving `r` at `now` would break: the violations of the spec with it merged
 * that are not violations without it. `spec` has SCIM people merged in, not the requests;
 * `approved` are the approved requests (r not among them).
 */
export function approvalBreaks(
  spec: Spec,
  people: People,
  approved: readonly AccessRequest[],
  r: AccessRequest,
  approver: string,
  now: Date,
  source?: SpecPositions,
): string[] {
  if (Object.keys(spec.invariants ?? {}).length === 0) return [];
  const as: AccessRequest = { ...r, state: 'approved', endsAt: endOf(r, spec, now), decision: { by: approver, at: now.toISOString(), reason: '', via: '' } };
  const judge = (requests: readonly AccessRequest[]) => {
    const merged = mergeRequests(spec, requests, now, people).spec;
    return checkInvariants(merged, intendedFacts(merged, now, source), now).map((v) => v.message);
  };
  const before = new Set(judge(approved));
  return judge([...approved, as]).filter((m) => !before.has(m));
}

/** A request is live while approved and not yet ended. */
export const isLive = (r: AccessRequest, now: Date) => r.state === 'approved' && r.endsAt !== undefined && Date.parse(r.endsAt) > now.getTime();

/**
 * The state a request is in at `now`: an approved request whose end has passed, or a pending one
 * that waited too long, is expired even before an apply records it.
 */
export function stateAt(r: AccessRequest, spec: Pick<Spec, 'settings'>, now: Date): AccessRequest['state'] {
  if (r.state === 'approved' && !isLive(r, now)) return 'expired';
  if (r.state === 'pending' && Date.parse(r.requestedAt) < pendingBefore(spec, now).getTime()) return 'expired';
  return r.state;
}

/**
 * The spec with the live approved requests merged into its principals as time-bound grants, and
 * a notice for each (plan shows them, so no one plans them away). `people` supplies requesters
 * the spec does not hold (SCIM people in no mapped group). A request whose principal or dataset is
 * gone grants nothing, with a warning; one beside a grant of the spec on the same dataset gives
 * way to it.
 */
export function mergeRequests(spec: Spec, requests: readonly AccessRequest[], now: Date, people: People = {}): { spec: Spec; notices: Notice[] } {
  const best = new Map<string, AccessRequest>();
  for (const r of requests) {
    if (!isLive(r, now)) continue;
    const key = `${r.requester}\0${r.dataset}`;
    const other = best.get(key);
    const better = !other || (r.level !== other.level ? atLeast(r.level, other.level) : r.endsAt! > other.endsAt!);
    if (better) best.set(key, r);
  }
  if (best.size === 0) return { spec, notices: [] };
  const notices: Notice[] = [];
  const principals = { ...spec.principals };
  for (const r of [...best.values()].sort((a, b) => a.id - b.id)) {
    const what = `request #${r.id} (${r.level} on ${r.dataset} for ${r.requester} until ${r.endsAt}, approved by ${r.decision?.by})`;
    if (!has(spec.datasets, r.dataset)) {
      notices.push({ level: 'warning', message: `${what} grants nothing: dataset ${r.dataset} is no longer in the spec` });
      continue;
    }
    const p = has(principals, r.requester) ? principals[r.requester] : has(people, r.requester) ? people[r.requester] : undefined;
    if (!p) {
      notices.push({ level: 'warning', message: `${what} grants nothing: principal ${r.requester} no longer exists` });
      continue;
    }
    const own = p.grants.findIndex((g: Grant) => !g.origin && g.dataset === r.dataset);
    if (own >= 0) {
      notices.push({
        level: 'warning',
        message: `${what} is not merged: the spec grants ${r.dataset} to ${r.requester} itself (principals.${r.requester}.grants[${own}]), and the spec's grant stands`,
      });
      continue;
    }
    const grant: Grant = { dataset: r.dataset, access: r.level, expires: r.endsAt!, origin: { request: r.id, approvedBy: r.decision?.by ?? '' } };
    principals[r.requester] = { ...p, grants: [...p.grants, grant] };
    notices.push({ level: 'info', message: `${what}: a grant that ends by itself` });
  }
  return { spec: { ...spec, principals }, notices };
}
