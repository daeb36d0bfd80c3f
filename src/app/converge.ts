// The one orchestration shared by the CLI (plan, apply, destroy, drift, credentials rotate) and
// `serve`: lock → recover the journal → read → plan → guard → confirm → apply. Each caller brings
// its own confirmation and output; the safety rules live here, once:
// - nothing in the store changes except through an applied, journaled change (a read or a plan
//   never forgets a credential);
// - a backend that left the spec is still read, and torn down;
// - objects of another installation stop the run;
// - a saved plan is authenticated before anything is read;
// - reads that cannot be right (the boundary empty while the store holds its credentials), keys
//   the state has no secret for, and mass deprovisioning each need an explicit yes;
// - a spec that breaks one of its invariants is refused before anything is read.
import type { Backend } from '../backends/backend.js';
import { closeBackends } from '../backends/factory.js';
import { redactUrl } from '../core/url.js';
import { applyPlan, slotOf, type ApplyEvent, type ApplyResult } from '../apply/apply.js';
import { canonicalJson } from '../core/canonical.js';
import { ApplyError, DatagrantError, StalePlanError } from '../core/errors.js';
import type { ActualState, Change, Json, Notice, Plan, Resource } from '../core/types.js';
import type { InvariantViolation } from '../model/access.js';
import { DEFAULT_USER_PREFIX } from '../model/rgw.js';
import { actualHash, attrsHash } from '../plan/diff.js';
import { assertSpecInvariants, withholdBreaking } from '../compile/invariants.js';
import { substitute, type SpecPositions } from '../spec/load.js';
import type { AwsBackendSpec, BackendSpec, Spec } from '../spec/schema.js';
import type { CredentialRow, JournalEntry, StateStore, StoredBackend } from '../store/store.js';
import { makePlan, readActual } from './engine.js';

/** A run refused by one of converge's guards; the message says which flag overrides it, if any. */
export class GuardError extends DatagrantError {
  override name = 'GuardError';
}

/** Objects of another installation inside this one's boundary. */
export class ForeignInstallationError extends DatagrantError {
  override name = 'ForeignInstallationError';
}

export interface ConvergeGuards {
  /** Apply a plan that removes more than a quarter of a backend's principals (at least 5). */
  massDestroy?: boolean;
  /** Apply although the backend holds few or none of the credentials the store records. */
  missingCredentials?: boolean;
  /** Take over keys of this installation's users that the state holds no secret for (re-issuing them). */
  adopt?: boolean;
}

export interface ConvergeOptions {
  mode: 'plan' | 'apply';
  /** The spec, with SCIM people already merged, and its hash and load notices. */
  spec: Spec;
  /** Backend settings as written, where they read `${VAR}` (LoadedSpec.templates). */
  templates?: Record<string, Record<string, string>>;
  /** The environment `${VAR}` in a remembered backend's settings is read from. */
  env?: NodeJS.ProcessEnv;
  specHash: string;
  notices: Notice[];
  /**
   * A spec that breaks an invariant: `refuse` (default, the CLI) fails before anything is read;
   * `withhold` (serve) plans without the access that breaks it, so removals still flow.
   */
  onInvariantBroken?: 'refuse' | 'withhold';
  /** Told the violations whose access was withheld (serve logs them). */
  onWithheld?: (violations: readonly InvariantViolation[]) => void;
  /** Where the spec file holds each value (LoadedSpec.source): invariant violations point there. */
  source?: SpecPositions;
  store: StateStore;
  makeBackends: (backends: Record<string, BackendSpec>, installation: string) => Record<string, Backend>;
  actor: string;
  now: Date;
  /** Read every credential exactly. */
  exact?: boolean;
  /** Plan the removal of everything datagrant owns. */
  destroy?: boolean;
  forceRotate?: string[];
  /** Credentials to delete now, grace or not: a slot (all it holds) or `slot~id` (DiffOptions.revoke). */
  revoke?: string[];
  /** Keep only the changes to these addresses (and superseded credentials of these slots). */
  only?: string[];
  /** A plan saved with `plan --out`: applied as it is, once authenticated and still current. */
  saved?: { plan: Plan; file: string };
  allow?: ConvergeGuards;
  /**
   * On a mass deprovisioning (`hold`, serve): revoke access at once in a reversible way and hold
   * the irreversible deletions for a person to confirm; `refuse` (CLI): refuse without the flag.
   */
  onMassEvent?: 'refuse' | 'hold';
  lockTimeoutMs?: number;
  /** Told about changes found in flight from a run that died (apply; settled only if it goes ahead). */
  onRecover?: (entries: JournalEntry[]) => void;
  /** Told the plan before confirmation (the CLI prints it). */
  onPlan?: (plan: Plan) => void;
  /** Asked before applying a plan with changes; without it, no confirmation is needed. */
  confirm?: (plan: Plan) => Promise<boolean>;
  concurrency?: number;
  onEvent?: (e: ApplyEvent) => void;
  clock?: () => Date;
}

export interface MassEvent {
  backend: string;
  removed: number;
  managed: number;
  principals: string[];
}

export interface ConvergeResult {
  plan: Plan;
  outcome: 'planned' | 'no-changes' | 'declined' | 'applied' | 'failed';
  result?: ApplyResult;
  error?: ApplyError;
  /** Deletions held back by a mass event (serve), to be confirmed by a person. */
  held: Change[];
  mass: MassEvent[];
  /** Changes a dead run left in flight: pending (plan), or settled by this apply (none when declined). */
  interrupted: JournalEntry[];
  /** Transient errors the drivers retried during this run. */
  retries: number;
}

/** What a plan may remove before it counts as mass deprovisioning. */
export const MASS_FRACTION = 0.25;
export const MASS_MINIMUM = 5;

/** The kinds that stand for a principal (the unit that holds credentials) per backend type. */
const isPrincipalObject = (r: Resource) => r.kind === 'user' || r.kind === 'account' || (r.kind === 'role' && r.attrs.login === true);

/**
 * A backend's settings as the store keeps them: enough to reach it again, never a secret. A value
 * written as `${VAR}` is kept as written (under `fromEnv`); a PostgreSQL URL also without its
 * password, for when the variable is gone. A backend removed from the spec is torn down with the
 * deadlines it had.
 */
export function storedSettings(name: string, b: BackendSpec, templates: Record<string, string> = {}): StoredBackend {
  const fromEnv: { [key: string]: Json } = Object.keys(templates).length ? { fromEnv: templates } : {};
  const t = b.timeouts;
  const timeouts: { [key: string]: Json } = t
    ? { timeouts: { ...(t.connect ? { connect: t.connect } : {}), ...(t.request ? { request: t.request } : {}) } }
    : {};
  if (b.type === 'postgres' || b.type === 'mysql') {
    let url: string;
    try {
      const u = new URL(b.url);
      u.password = '';
      url = u.toString();
    } catch {
      url = redactUrl(b.url);
    }
    const host: { [key: string]: Json } = b.type === 'mysql' && b.host !== undefined ? { host: b.host } : {};
    return { name, type: b.type, settings: { url, ...host, ...(b.scope ? { scope: b.scope } : {}), ...timeouts, ...fromEnv } };
  }
  if (b.type === 'rgw') {
    // The admin's secret only as its `${VAR}`: written out in the spec, it is not kept (the
    // backend cannot then be torn down once removed from the spec, and says so when asked).
    const { endpoint, region, accessKeyId, userPrefix } = b;
    return {
      name,
      type: b.type,
      settings: { endpoint, ...(region ? { region } : {}), accessKeyId, ...(userPrefix ? { userPrefix } : {}), ...timeouts, ...fromEnv },
    };
  }
  return {
    name,
    type: b.type,
    settings: {
      ...(b.region ? { region: b.region } : {}),
      ...(b.endpoint ? { endpoint: b.endpoint } : {}),
      ...(b.iamPath ? { iamPath: b.iamPath } : {}),
      ...timeouts,
      ...assumeRoleOf(b, templates),
      ...fromEnv,
    },
  };
}

/**
 * The role an aws backend assumes, so that a removed backend is torn down in its own account. An
 * external id read from `${VAR}` is kept only as its template: it is what stands between the role
 * and a confused deputy, and the spec's author chose not to write it down.
 */
function assumeRoleOf(b: AwsBackendSpec, templates: Record<string, string>): { [key: string]: Json } {
  const r = b.assumeRole;
  if (!r) return {};
  const kept: { [key: string]: Json } = { roleArn: r.roleArn };
  if (r.externalId !== undefined && templates['assumeRole.externalId'] === undefined) kept.externalId = r.externalId;
  if (r.sessionName !== undefined) kept.sessionName = r.sessionName;
  return { assumeRole: kept };
}

/** Sets `value` at `path` (`assumeRole.externalId` is nested), making the objects on the way. */
function setPath(target: Record<string, unknown>, path: string, value: string): void {
  const keys = path.split('.');
  let at = target;
  for (const k of keys.slice(0, -1)) {
    const next = at[k];
    at = at[k] = next && typeof next === 'object' ? { ...(next as Record<string, unknown>) } : {};
  }
  at[keys.at(-1)!] = value;
}

function specOfStored(s: StoredBackend, env: NodeJS.ProcessEnv): BackendSpec {
  const { fromEnv, ...settings } = s.settings as { fromEnv?: Record<string, string> } & Record<string, unknown>;
  for (const [k, template] of Object.entries(fromEnv ?? {})) {
    const value = substitute(template, env);
    if (value !== undefined) setPath(settings, k, value);
  }
  return { type: s.type, ...settings } as unknown as BackendSpec;
}

/** Where a backend's boundary is, in words, for messages about it. */
function boundaryOf(name: string, b: BackendSpec): string {
  if (b.type === 'postgres') return `backend ${name} (${redactUrl(b.url)}${b.scope ? `, scope ${b.scope}` : ''})`;
  if (b.type === 'rgw') return `backend ${name} (RGW users ${b.userPrefix ?? DEFAULT_USER_PREFIX}* at ${b.endpoint})`;
  if (b.type === 'mysql') return `backend ${name} (${redactUrl(b.url)}, accounts @${b.host ?? '%'}${b.scope ? `, scope ${b.scope}` : ''})`;
  return `backend ${name} (IAM path ${b.iamPath ?? '/datagrant/'}${b.assumeRole ? ` as ${b.assumeRole.roleArn}` : ''}${b.endpoint ? ` at ${b.endpoint}` : ''}${b.region ? `, ${b.region}` : ''})`;
}

function verifySaved(saved: { plan: Plan; file: string }, store: StateStore, specHash: string): void {
  const { mac, ...rest } = saved.plan;
  if (typeof mac !== 'string' || mac !== store.masterKey.planMac(canonicalJson(rest))) {
    throw new StalePlanError(
      `the plan file ${saved.file} is not one this state made, or it was edited after \`plan --out\` (its MAC does not verify under this state's master key); nothing was changed. Make a new plan.`,
    );
  }
  if (saved.plan.specHash !== specHash) throw new StalePlanError(`the spec changed since the plan ${saved.file} was made; run plan again`);
}

/** Signs a plan for `plan --out`: apply accepts the file only while the MAC verifies. */
export function signPlan(plan: Plan, store: StateStore): Plan {
  const { mac: _ignored, ...rest } = plan;
  return { ...rest, mac: store.masterKey.planMac(canonicalJson(rest)) };
}

/**
 * Changes interrupted by a crash whose result is found in the backend took effect: their
 * addresses are recorded as applied (apply) or counted so in memory (plan).
 */
function recoveredApplied(interrupted: JournalEntry[], actual: Record<string, ActualState>): Map<string, string | null> {
  const byAddress = new Map<string, Resource>();
  for (const s of Object.values(actual)) {
    for (const r of s.resources) {
      byAddress.set(r.address, r);
      // A current credential is read at its slot's address; a revocation deletes it as `slot~id`,
      // and one a dead run began is not done while the credential is still there.
      const id = r.meta?.credentialId ?? r.meta?.accessKeyId;
      if (typeof id === 'string' && !r.address.includes('~')) byAddress.set(`${r.address}~${id}`, r);
    }
  }
  const out = new Map<string, string | null>();
  for (const e of interrupted) {
    const found = byAddress.get(e.address);
    if (e.action === 'delete') {
      if (!found) out.set(e.address, null);
    } else if (found && e.afterHash && attrsHash(found) === e.afterHash) {
      out.set(e.address, e.afterHash);
    }
  }
  return out;
}

/**
 * Stored credentials whose deletion, interrupted by a crash, took effect: a current credential is
 * deleted at its slot's address, a superseded or missing one at `slot~id`.
 */
function deletedByDeadRun(recovered: Map<string, string | null>, stored: CredentialRow[]): CredentialRow[] {
  return stored.filter((c) => recovered.get(`${c.address}~${c.credentialId}`) === null || (c.state === 'current' && recovered.get(c.address) === null));
}

/**
 * Credentials a dead run set out to delete (`slot~id`) that are still there. Most such deletions
 * the next plan would make again anyway; one that cut a grace short (a revocation) it would not,
 * and the leaked credential would live on with nothing in the plan to say so.
 */
function unfinishedRevocations(interrupted: JournalEntry[], recovered: Map<string, string | null>): string[] {
  return interrupted.filter((e) => e.action === 'delete' && e.address.includes('~') && !recovered.has(e.address)).map((e) => e.address);
}

function massEvents(plan: Plan, actual: Record<string, ActualState>): MassEvent[] {
  const out: MassEvent[] = [];
  for (const [backend, state] of Object.entries(actual)) {
    const managed = state.resources.filter(isPrincipalObject).length;
    const removed = plan.changes
      .filter((c) => c.backend === backend && c.action === 'delete' && c.before && isPrincipalObject(c.before))
      .map((c) => c.before!.name);
    if (removed.length >= MASS_MINIMUM && removed.length > managed * MASS_FRACTION)
      out.push({ backend, removed: removed.length, managed, principals: removed.sort() });
  }
  return out;
}

/**
 * Serve's answer to a mass event: access ends now, reversibly — memberships, attachments, inline
 * policies and grants go, keys are set inactive, PostgreSQL logins are disabled and MariaDB accounts
 * locked (and their sessions ended) — while deleting users, keys, roles and accounts waits for a person.
 */
function holdMass(plan: Plan, events: MassEvent[]): { plan: Plan; held: Change[] } {
  const who = new Map(events.map((e) => [e.backend, new Set(e.principals)]));
  const deleted = new Set(plan.changes.filter((c) => c.action === 'delete').map((c) => c.address));
  // What stays (a key, a role) no longer depends on what goes around it.
  const kept = (r: Resource, attrs: Resource['attrs']): Resource => ({ ...r, attrs, deps: r.deps.filter((d) => !deleted.has(d)) });
  const held: Change[] = [];
  const changes: Change[] = [];
  for (const c of plan.changes) {
    const names = who.get(c.backend);
    const b = c.before;
    if (!names || c.action !== 'delete' || !b || !names.has(b.name)) {
      changes.push(c);
      continue;
    }
    if (c.kind === 'user' || c.kind === 'password') {
      held.push(c);
    } else if (c.kind === 'key') {
      held.push(c);
      if (b.attrs.status !== 'Inactive' && b.meta?.missing !== true) {
        changes.push({
          ...c,
          action: 'update',
          after: kept(b, { ...b.attrs, status: 'Inactive' }),
          drift: false,
          reason: 'mass deprovisioning: key deactivated, deletion held for confirmation',
        });
      }
    } else if (c.kind === 'account' && b.attrs.locked === false) {
      held.push(c);
      changes.push({
        ...c,
        action: 'update',
        // Its role goes with this plan, so it keeps none: nothing to log in with, nothing held.
        after: kept(b, { ...b.attrs, locked: true, roles: [], defaultRole: null }),
        drift: false,
        reason: 'mass deprovisioning: account locked, deletion held for confirmation',
      });
    } else if (c.kind === 'role' && b.attrs.login === true) {
      held.push(c);
      changes.push({
        ...c,
        action: 'update',
        after: kept(b, { ...b.attrs, login: false }),
        drift: false,
        reason: 'mass deprovisioning: login disabled, deletion held for confirmation',
      });
    } else {
      changes.push(c);
    }
  }
  return { plan: { ...plan, changes }, held };
}

export async function converge(input: ConvergeOptions): Promise<ConvergeResult> {
  const { store, now } = input;
  // A spec that breaks one of its invariants is refused before any backend is read (the CLI), or
  // (serve) loses the access that breaks it, and nothing else: SCIM people are principals of the
  // spec by now and are judged alike. Tearing everything down leaves no access to judge.
  let o = input;
  if (!o.destroy && o.onInvariantBroken === 'withhold') {
    const { spec, withheld } = withholdBreaking(o.spec, now, o.source);
    if (withheld.length) {
      o.onWithheld?.(withheld);
      const notices: Notice[] = withheld.map((v) => ({ level: 'warning', message: `withheld: ${v.message}` }));
      o = { ...o, spec, notices: [...notices, ...o.notices] };
    }
  } else if (!o.destroy) {
    assertSpecInvariants(o.spec, now, o.source);
  }
  const installation = await store.installation();
  if (o.saved) verifySaved(o.saved, store, o.specHash);

  // A backend the store has applied to but the spec no longer names is still read, and torn down.
  const remembered = await store.backends();
  const removed = remembered.filter((b) => !(b.name in o.spec.backends));
  const backendSpecs: Record<string, BackendSpec> = { ...o.spec.backends };
  for (const b of removed) {
    // Settings that read a variable no longer set cannot reach the backend (a URL without its
    // password would only hang in authentication): say what remains instead of trying.
    const unset = Object.values((b.settings.fromEnv ?? {}) as Record<string, string>).filter((t) => substitute(t, o.env ?? {}) === undefined);
    if (unset.length) {
      throw await unreachableRemoved(
        Object.assign(new Error(`its settings read ${unset.join(', ')} from the environment, which is not set`), { backend: b.name }),
        removed,
        store,
      );
    }
    backendSpecs[b.name] = specOfStored(b, o.env ?? {});
  }
  const spec: Spec = { ...o.spec, backends: backendSpecs };

  const apply = o.mode === 'apply';
  if (apply) await store.acquireLock(`${o.actor} (${o.destroy ? 'destroy' : 'apply'})`, o.lockTimeoutMs ?? 0);
  let backends: Record<string, Backend> | undefined;
  const retries = () => Object.values(backends ?? {}).reduce((n, b) => n + b.stats().retries, 0);
  try {
    // What a dead run left in flight is settled in the store only by an apply that goes ahead
    // (past the guards and the confirmation): a refused or declined apply, like a plan, leaves
    // the store as it found it, and the next run finds the same entries.
    const interrupted = await store.journalPending();
    if (apply && interrupted.length) o.onRecover?.(interrupted);

    backends = o.makeBackends(backendSpecs, installation);
    const actual = await readActual(backends, store, { exact: o.exact ?? false, usage: o.spec.settings?.expireUnused !== undefined }).catch(
      async (e: unknown) => {
        throw await unreachableRemoved(e, removed, store);
      },
    );

    const foreign = Object.entries(actual).flatMap(([name, s]) => (s.foreign ?? []).map((f) => ({ ...f, backend: name })));
    if (foreign.length) {
      const lines = foreign.slice(0, 10).map((f) => `  ${f.address} (installation ${f.installation})`);
      throw new ForeignInstallationError(
        `${[...new Set(foreign.map((f) => boundaryOf(f.backend, backendSpecs[f.backend]!)))].join(', ')} holds ${foreign.length} object(s) of another datagrant installation:\n${lines.join('\n')}${foreign.length > 10 ? `\n  … and ${foreign.length - 10} more` : ''}\n` +
          `This state is installation ${installation}. Two installations must not share a boundary: give this one its own iamPath (AWS), scope (PostgreSQL) or userPrefix (RGW), or share the other's state (DATAGRANT_STORE_URL). Nothing was changed.`,
      );
    }

    // Changes a dead run left in flight that did take effect are datagrant's, not drift.
    const recovered = recoveredApplied(interrupted, actual);
    const applied = await store.applied();
    for (const [address, hash] of recovered) {
      if (hash === null) delete applied[address];
      else applied[address] = hash;
    }
    // A credential whose deletion a dead run carried out is gone by datagrant's own hand, as the
    // journal shows: that change is completed, not planned as a missing credential, which would
    // count towards --allow-missing-credentials (as if the account were the wrong one) whenever
    // a run died among the first batch of a deprovisioning, where keys go.
    const stored = await store.credentials();
    const erased = deletedByDeadRun(recovered, stored);
    const credentials = stored.filter((c) => !erased.includes(c));
    const settleRecovery = async () => {
      if (!interrupted.length) return;
      await store.recoverJournal();
      for (const [address, hash] of recovered) await store.setApplied(address, hash);
      for (const c of erased) {
        await store.eraseCredential(c.address, c.credentialId);
        await store.audit(
          { actor: o.actor, event: 'credential.erase', address: c.address, outcome: 'ok', detail: `id ${c.credentialId}; deleted by an interrupted run` },
          now.toISOString(),
        );
      }
    };
    // A revocation a dead run left unfinished (`credentials rotate --revoke-old` killed half-way)
    // is in every plan this run applies: recovery below settles the whole journal, so a plan
    // that left it out would drop it for good, and the leaked credential would stay current with
    // no later plan naming it. Hence `only` never filters it out, and a saved plan made before
    // the run died (which cannot hold it) is stale.
    const revocations = unfinishedRevocations(interrupted, recovered);
    let plan: Plan;
    if (o.saved) {
      const missed = revocations.filter((a) => !o.saved!.plan.changes.some((c) => c.address === a));
      if (missed.length) {
        throw new StalePlanError(
          `the plan ${o.saved.file} was made before an interrupted \`credentials rotate --revoke-old\` and does not finish it (${missed.join(', ')} must still be deleted); run plan again`,
        );
      }
      for (const [name, state] of Object.entries(actual)) {
        if (o.saved.plan.actualHashes[name] !== actualHash(state)) {
          throw new StalePlanError(
            `backend ${name} changed since the plan ${o.saved.file} was made (someone else applied, or an object was edited); run plan again`,
          );
        }
      }
      plan = o.saved.plan;
    } else {
      plan = await makePlan({
        spec,
        specHash: o.specHash,
        notices: o.notices,
        actual,
        applied,
        credentials,
        now,
        installation,
        // Sessions outliving their principal's access are revoked by the plan; live ones are kept.
        sessions: await store.sessions(),
        destroyBackends: o.destroy ? Object.keys(backendSpecs) : removed.map((b) => b.name),
        ...(o.forceRotate ? { forceRotate: o.forceRotate } : {}),
        revoke: [...(o.revoke ?? []), ...revocations],
      });
      for (const b of removed) {
        plan.notices.push({ level: 'warning', message: `backend ${b.name} is no longer in the spec: everything datagrant made there is torn down` });
      }
      const only = o.only;
      if (only) {
        const kept = (c: Change) => revocations.includes(c.address) || only.some((a) => c.address === a || c.address.startsWith(`${a}~`));
        plan = { ...plan, changes: plan.changes.filter(kept) };
      }
    }

    // ---- guards: each adds a warning to the plan, and refuses an apply that was not told to go on.
    const refusals: string[] = [];
    for (const [name, state] of Object.entries(actual)) {
      const recorded = credentials.filter((c) => c.backend === name);
      if (recorded.length === 0) continue;
      const missing = plan.changes.filter((c) => c.backend === name && c.before?.meta?.missing === true).length;
      const empty = state.resources.length === 0;
      if (!(empty || (missing >= 2 && missing * 2 > recorded.length))) continue;
      const msg = `${empty ? `none` : `only ${recorded.length - missing}`} of the ${recorded.length} credentials recorded for ${boundaryOf(name, backendSpecs[name]!)} were found there${empty ? ' — it holds nothing datagrant owns' : ''}: wrong account, endpoint, path, URL or scope? Applying would forget them and issue new ones`;
      plan.notices.push({ level: 'warning', message: msg });
      if (!o.allow?.missingCredentials)
        refusals.push(`${msg}. Check the backend settings; if the objects really are gone, apply with --allow-missing-credentials.`);
    }
    const unrecordedSlots = new Set<string>();
    for (const c of plan.changes) {
      if (c.action !== 'delete' || c.kind !== 'key' || !c.address.includes('~') || c.before?.meta?.missing === true) continue;
      const slot = slotOf(c.address);
      if (!credentials.some((k) => k.address === slot)) unrecordedSlots.add(slot);
    }
    if (unrecordedSlots.size) {
      const journaled = await store.journaled([...unrecordedSlots]);
      const unknown = [...unrecordedSlots].filter((s) => !journaled.has(s)).sort();
      if (unknown.length) {
        const msg = `${unknown.length} user(s) hold keys this state has no record or secret of (${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''}): a fresh or restored state, or another tool's keys. Applying deletes those keys and issues new ones`;
        plan.notices.push({ level: 'warning', message: msg });
        if (!o.allow?.adopt) refusals.push(`${msg}. If this state should take them over, apply with --adopt (or restore the state that issued them).`);
      }
    }
    // `destroy` is a mass removal by definition (and asks for its own yes). A saved plan needs the
    // second yes too: `plan --out` in CI, `apply FILE` on merge is the usual way a reviewed change
    // lands, and the one where a slip in the spec goes unnoticed.
    const mass = o.destroy ? [] : massEvents(plan, actual);
    let held: Change[] = [];
    for (const m of mass) {
      const msg = `mass deprovisioning on backend ${m.backend}: ${m.removed} of ${m.managed} principals would be removed (${m.principals.slice(0, 5).join(', ')}${m.principals.length > 5 ? ', …' : ''})`;
      plan.notices.push({ level: 'warning', message: msg });
    }
    if (mass.length && o.onMassEvent === 'hold') {
      ({ plan, held } = holdMass(plan, mass));
      plan.notices.push({
        level: 'warning',
        message: `access was revoked reversibly; ${held.length} deletion(s) are held until a person confirms them with \`datagrant apply --allow-mass-destroy\``,
      });
    } else if (mass.length && !o.allow?.massDestroy) {
      refusals.push(
        `${mass.map((m) => `${m.removed} of ${m.managed} principals on backend ${m.backend}`).join('; ')} would be removed, more than ${MASS_FRACTION * 100} %: if that is intended, apply with --allow-mass-destroy.`,
      );
    }

    const base = {
      plan,
      held,
      mass,
      interrupted,
      get retries() {
        return retries();
      },
    };
    if (!apply) return { ...base, outcome: 'planned' };
    o.onPlan?.(plan);
    if (plan.changes.length === 0) {
      await settleRecovery();
      await forgetEmpty(store, removed, actual, plan);
      return { ...base, outcome: 'no-changes' };
    }
    if (refusals.length) throw new GuardError(`apply refused; nothing was changed:\n${refusals.map((r) => `  - ${r}`).join('\n')}`);
    if (o.confirm && !o.saved && !(await o.confirm(plan))) return { ...base, interrupted: [], outcome: 'declined' };

    await settleRecovery();
    for (const [name, b] of Object.entries(o.spec.backends)) await store.rememberBackend(storedSettings(name, b, o.templates?.[name]));
    try {
      const result = await applyPlan(plan, {
        backends,
        store,
        actor: o.actor,
        concurrency: o.concurrency ?? 8,
        ...(o.onEvent ? { onEvent: o.onEvent } : {}),
        ...(o.clock ? { clock: o.clock } : {}),
      });
      if (held.length === 0) await forgetEmpty(store, removed, actual, plan);
      // Sessions that have all ended need neither keeping nor revoking any more.
      await store.pruneSessions(now.toISOString());
      return { ...base, retries: retries(), outcome: 'applied', result };
    } catch (e) {
      if (!(e instanceof ApplyError)) throw e;
      return { ...base, retries: retries(), outcome: 'failed', error: e, result: (e as ApplyError & { result: ApplyResult }).result };
    }
  } finally {
    if (backends) await closeBackends(backends);
    if (apply) await store.releaseLock();
  }
}

/**
 * A backend removed from the spec that cannot be read: say what datagrant still has there, and how
 * to reach it, rather than only why the connection failed.
 */
async function unreachableRemoved(e: unknown, removed: StoredBackend[], store: StateStore): Promise<unknown> {
  const name = (e as { backend?: unknown }).backend;
  const gone = removed.find((b) => b.name === name);
  if (!gone) return e;
  const objects = Object.keys(await store.applied()).filter((a) => a.startsWith(`${gone.name}:`));
  const credentials = (await store.credentials()).filter((c) => c.backend === gone.name);
  const vars = Object.values((gone.settings.fromEnv ?? {}) as Record<string, string>).flatMap((t) =>
    [...t.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]!),
  );
  return new DatagrantError(
    `backend ${gone.name} is no longer in the spec, but datagrant still has ${objects.length} object(s) and ${credentials.length} credential(s) there (${objects.slice(0, 5).join(', ')}${objects.length > 5 ? ', …' : ''}), and it could not be reached to tear them down: ${(e as Error).message}. ` +
      `${vars.length ? `Set ${vars.join(', ')} as when it was applied, or put` : 'Put'} the backend back in the spec to tear it down from there. Nothing was changed.`,
  );
}

/** A removed backend whose teardown is complete is forgotten. */
async function forgetEmpty(store: StateStore, removed: StoredBackend[], actual: Record<string, ActualState>, plan: Plan): Promise<void> {
  for (const b of removed) {
    const planned = plan.changes.filter((c) => c.backend === b.name);
    const left = (actual[b.name]?.resources ?? []).filter((r) => !planned.some((c) => c.address === r.address && c.action === 'delete'));
    if (left.length === 0) await store.forgetBackend(b.name);
  }
}
