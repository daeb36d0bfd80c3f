// Issue 9, model-based and adversarial: a seeded random sequence of spec edits, SCIM changes (with
// colliding names), clock moves past expiries, hand-made drift, declined applies, wrong master
// keys, saved plans and crashes at random backend calls, run against moto with IAM enforcement.
// After every step that converges, every principal's issued key is tried on every dataset and
// operation and compared with the model (aws-fuzz-model.ts): no over-grant, no under-grant, no
// key in IAM without its secret in the store, no principal without a stored, working key. Steps
// that must change nothing (refused, declined, read-only) are checked to have changed nothing.
//
// FUZZ_SEED (a number, or `random`) and FUZZ_STEPS choose the run; `npm run fuzz` runs a longer
// one. A failure prints the seed, the replay command and the step log.
import * as iamApi from '@aws-sdk/client-iam';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, onTestFailed, test } from 'vitest';
import type { Backend, ExecuteResult } from '../../src/backends/backend.js';
import { applyCommand } from '../../src/cli/commands/lifecycle.js';
import { reportError } from '../../src/cli/main.js';
import type { Change, Json } from '../../src/core/types.js';
import type { ScimStore } from '../../src/scim/store/store.js';
import { openScimStoreAt } from '../../src/scim/store/open.js';
import { MasterKey } from '../../src/store/crypto.js';
import { statePaths } from '../../src/store/open.js';
import { workspace, type Workspace } from '../support/cli.js';
import { startMoto, type AwsKey, type Moto } from '../support/moto.js';
import { mulberry32 } from '../support/prng.js';
import { adminIam, s3For, useMotoAdmin } from './aws-support.js';
import {
  DATASET_NAMES,
  describeAccess,
  GROUPS,
  IDP_GROUPS,
  LEVELS,
  probesFor,
  SCIM_NAMES,
  SPEC_NAMES,
  World,
  type Grant,
  type Grants,
  type Level,
  type Probe,
} from './aws-fuzz-model.js';

/** The sequence CI runs (FUZZ_SEED and FUZZ_STEPS unset); it must cover every kind of step. */
const CI_SEED = 6;
const CI_STEPS = 400;
const STEPS = positive(process.env.FUZZ_STEPS, CI_STEPS);
const SEED = seedOf(process.env.FUZZ_SEED);
/** Spec principals plus active SCIM users: enough for a mass deprovisioning (5), cheap to probe. */
const CAP = 6;
const PATH = '/datagrant/';
const OUTSIDER = 'fuzz-outsider';
const ROGUE = 'fuzz-rogue';
const ADMIN_ARN = 'arn:aws:iam::aws:policy/AdministratorAccess';
const HOUR = 3_600_000;

function positive(v: string | undefined, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`FUZZ_STEPS must be a whole number of at least 1, not ${JSON.stringify(v)}`);
  return n;
}

function seedOf(v: string | undefined): number {
  // CI runs one fixed sequence; `npm run fuzz` asks for a new one each time.
  if (v === undefined || v === '') return CI_SEED;
  if (v === 'random') return Math.floor(Math.random() * 2 ** 32);
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new Error(`FUZZ_SEED must be random or a whole number below 2^32, not ${JSON.stringify(v)}`);
  return n;
}

type Flag = '--allow-mass-destroy' | '--allow-missing-credentials' | '--adopt';
const ALL_FLAGS: Flag[] = ['--allow-mass-destroy', '--allow-missing-credentials', '--adopt'];

interface Cred {
  address: string;
  credentialId: string;
  createdAt: string;
  backend: string;
  principal: string;
  state: string;
}

/** What IAM holds, read with the moto admin's key. */
interface Observed {
  /** Users under /datagrant/ → their keys as `id:status`. */
  users: Map<string, string[]>;
  /** Groups under /datagrant/ → member user names. */
  groups: Map<string, string[]>;
  /** Policies under /datagrant/: name → ARN and number of versions. */
  policies: Map<string, { arn: string; versions: number }>;
  /** Tags of the users under /datagrant/. */
  tags: Map<string, string[]>;
  /** Users, groups and policies under /datagrant/. */
  owned: number;
  /** Everything a run that must change nothing has to leave as it was (outsider included). */
  snapshot: string;
}

interface Snapshot {
  obs: Observed;
  creds: Cred[];
}

const sorted = <T>(xs: Iterable<T>) => [...xs].sort();

/** Runs the tasks, `limit` at a time. */
async function pool(limit: number, tasks: (() => Promise<void>)[]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) await tasks[next++]!();
    }),
  );
}

/**
 * A SIGKILL at the n-th backend call, in process: from that moment no call answers, ever. With
 * `after`, the n-th call reaches IAM and only its answer is lost (the worst moment: the side effect
 * happened and datagrant never heard of it). Calls already in flight finish in IAM, but datagrant
 * hears none of them either; `fired` resolves once they are all settled, so that the next run
 * starts from a backend that no dead request still changes. `started` lists every change the
 * dead run journaled and handed to the backend, sent or not. The dead run's journal stays pending
 * and its state lock stays held by this (same) pid, which the next run takes over.
 */
function crashAt(n: number, after: boolean) {
  let calls = 0;
  let crashed = false;
  const started: Change[] = [];
  const inFlight = new Set<Promise<unknown>>();
  let fire!: () => void;
  const fired = new Promise<void>((r) => (fire = r));
  const never = new Promise<never>(() => undefined);
  const crash = () => {
    crashed = true;
    void Promise.allSettled([...inFlight]).then(() => fire());
  };
  const wrap = (inner: Backend): Backend => ({
    name: inner.name,
    type: inner.type,
    read: (o) => (crashed ? never : inner.read(o)),
    execute: async (c: Change): Promise<ExecuteResult> => {
      started.push(c);
      if (crashed) return never;
      const k = ++calls;
      if (k === n && !after) {
        crash();
        return never;
      }
      const p = inner.execute(c);
      inFlight.add(p);
      let res: ExecuteResult;
      try {
        res = await p;
      } catch (e) {
        if (crashed) return never;
        throw e;
      } finally {
        inFlight.delete(p);
      }
      if (k === n) crash();
      return crashed ? never : res;
    },
    stats: () => inner.stats(),
    close: () => inner.close(),
  });
  return {
    wrap,
    fired,
    started,
    get calls() {
      return calls;
    },
  };
}

let moto: Moto;
let ws: Workspace;

beforeAll(async () => {
  moto = await startMoto({ auth: true });
  useMotoAdmin(moto);
});
afterAll(async () => {
  ws?.cleanup();
  await moto?.stop();
});

class Fuzz {
  readonly rnd = mulberry32(SEED);
  readonly log: string[] = [];
  readonly world = new World(Math.floor(Date.now() / 60_000) * 60_000);
  iam: iamApi.IAMClient = adminIam(moto);
  /** Every key seen that is not yet proved deleted: id → secret and whose it was. */
  readonly keys = new Map<string, AwsKey & { owner: string }>();
  readonly secrets = new Set<string>();
  /** Stored keys deleted by hand since the last converge (they justify --allow-missing-credentials). */
  readonly handDeleted = new Set<string>();
  /** A user outside the boundary with a key of its own, put into datagrant's groups by hand. */
  outsider: AwsKey | undefined;
  /** A user made by hand inside the boundary, with a key: another tool's (--adopt). */
  rogue = false;
  /**
   * The state remembers the aws backend: an apply went ahead while it was in the spec, and no
   * teardown finished since. A backend neither in the spec nor remembered is not read at all.
   */
  remembered = false;
  /** The backends hold what the model says, and that was proved. */
  converged = false;
  step = 0;
  readonly stats: Record<string, number> = {};

  constructor(readonly ws: Workspace) {
    ws.now = () => new Date(this.world.now);
  }

  // ---- randomness (the only source of choices, so a seed replays the run)
  chance = (p: number) => this.rnd() < p;
  int = (lo: number, hi: number) => lo + Math.floor(this.rnd() * (hi - lo + 1));
  pick = <T>(xs: readonly T[]): T => xs[Math.floor(this.rnd() * xs.length)]!;
  shuffle = <T>(xs: T[]): T[] => {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.rnd() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  };
  subset = <T>(xs: readonly T[], p = 0.4): T[] => xs.filter(() => this.chance(p));

  note(msg: string): void {
    this.log.push(`#${this.step} ${msg}`);
  }
  count(what: string): void {
    this.stats[what] = (this.stats[what] ?? 0) + 1;
  }

  get awsRead(): boolean {
    return this.world.backendOn || this.remembered;
  }

  /** After an apply went ahead (its output is not "No changes."), the state remembers the backend. */
  applied(out: string): void {
    if (this.world.backendOn && !out.includes('No changes.')) this.remembered = true;
  }

  writeSpec(): void {
    this.ws.writeSpec(this.world.specText(this.shuffle));
  }

  // ---- observation

  async observe(): Promise<Observed> {
    const users: iamApi.UserDetail[] = [];
    const groups: iamApi.GroupDetail[] = [];
    const policies: iamApi.ManagedPolicyDetail[] = [];
    let marker: string | undefined;
    do {
      const page = await this.iam.send(
        new iamApi.GetAccountAuthorizationDetailsCommand({
          Filter: ['User', 'Group', 'LocalManagedPolicy'],
          MaxItems: 1000,
          ...(marker ? { Marker: marker } : {}),
        }),
      );
      users.push(...(page.UserDetailList ?? []));
      groups.push(...(page.GroupDetailList ?? []));
      policies.push(...(page.Policies ?? []));
      marker = page.IsTruncated ? page.Marker : undefined;
    } while (marker);
    const mine = users.filter((u) => u.Path === PATH);
    const watched = users.filter((u) => u.Path === PATH || u.UserName === OUTSIDER);
    const keys = new Map<string, string[]>();
    await Promise.all(
      watched.map(async (u) => {
        const r = await this.iam.send(new iamApi.ListAccessKeysCommand({ UserName: u.UserName! }));
        keys.set(u.UserName!, sorted((r.AccessKeyMetadata ?? []).map((k) => `${k.AccessKeyId}:${k.Status}`)));
      }),
    );
    const ownGroups = groups.filter((g) => g.Path === PATH);
    const ownPolicies = policies.filter((p) => p.Path === PATH);
    const members = (g: string) => sorted(users.filter((u) => u.GroupList?.includes(g)).map((u) => u.UserName!));
    const attached = (l: iamApi.AttachedPolicy[] | undefined) => sorted((l ?? []).map((p) => p.PolicyArn!));
    const inline = (l: iamApi.PolicyDetail[] | undefined) => sorted((l ?? []).map((p) => `${p.PolicyName}=${decodeURIComponent(p.PolicyDocument ?? '')}`));
    const snapshot = JSON.stringify({
      users: sorted(watched.map((u) => u.UserName!)).map((n) => {
        const u = watched.find((x) => x.UserName === n)!;
        return {
          n,
          path: u.Path,
          groups: sorted(u.GroupList ?? []),
          attached: attached(u.AttachedManagedPolicies),
          inline: inline(u.UserPolicyList),
          tags: sorted((u.Tags ?? []).map((t) => `${t.Key}=${t.Value}`)),
          keys: keys.get(n),
        };
      }),
      groups: sorted(ownGroups.map((g) => g.GroupName!)).map((n) => {
        const g = ownGroups.find((x) => x.GroupName === n)!;
        return { n, attached: attached(g.AttachedManagedPolicies), inline: inline(g.GroupPolicyList), members: members(n) };
      }),
      policies: sorted(ownPolicies.map((p) => p.Arn!)).map((arn) => {
        const p = ownPolicies.find((x) => x.Arn === arn)!;
        return {
          arn,
          versions: sorted((p.PolicyVersionList ?? []).map((v) => `${v.VersionId}:${v.IsDefaultVersion}:${decodeURIComponent(v.Document ?? '')}`)),
        };
      }),
    });
    return {
      users: new Map(mine.map((u) => [u.UserName!, keys.get(u.UserName!) ?? []])),
      groups: new Map(ownGroups.map((g) => [g.GroupName!, members(g.GroupName!)])),
      policies: new Map(ownPolicies.map((p) => [p.PolicyName ?? p.Arn!.split('/').pop()!, { arn: p.Arn!, versions: (p.PolicyVersionList ?? []).length }])),
      tags: new Map(mine.map((u) => [u.UserName!, (u.Tags ?? []).map((t) => t.Key!)])),
      owned: mine.length + ownGroups.length + ownPolicies.length,
      snapshot,
    };
  }

  async creds(): Promise<Cred[]> {
    const r = await this.ws.run('credentials', 'list', '--json');
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as Cred[]).sort((a, b) => (a.address + a.credentialId < b.address + b.credentialId ? -1 : 1));
  }

  async snapshot(): Promise<Snapshot> {
    return { obs: await this.observe(), creds: await this.creds() };
  }

  async expectUnchanged(before: Snapshot, what: string): Promise<void> {
    const now = await this.snapshot();
    expect(now.obs.snapshot, `${what} changed IAM`).toBe(before.obs.snapshot);
    expect(now.creds, `${what} changed the stored credentials`).toEqual(before.creds);
  }

  /**
   * The flags a careful operator passes for this apply, by the README's rules, and only where the
   * situation is a legitimate one for them: removing at least 5 principals and more than a quarter
   * (mass destroy); credentials gone because someone deleted them by hand or the account was wiped
   * (missing credentials, when at least 2 and more than half of those recorded, or all of them
   * with the boundary empty); keys another tool made in the boundary (adopt). A key that
   * datagrant's own crashed run deleted or created justifies none of them.
   */
  flagsFor(s: Snapshot): Flag[] {
    const flags: Flag[] = [];
    if (!this.awsRead) return flags;
    const access = this.world.access();
    const removed = [...s.obs.users.keys()].filter((u) => !access.has(u)).length;
    if (removed >= 5 && removed > s.obs.users.size * 0.25) flags.push('--allow-mass-destroy');
    // A recorded key that is gone, and not by hand, went by a dead run of datagrant's: the
    // journal completes its deletion, and it counts neither as missing nor as recorded.
    const inIam = new Set([...s.obs.users.values()].flat().map((k) => k.split(':')[0]));
    const recorded = s.creds.filter((c) => c.backend === 'aws' && (inIam.has(c.credentialId) || this.handDeleted.has(c.credentialId))).length;
    const byHand = s.creds.filter((c) => c.backend === 'aws' && !inIam.has(c.credentialId) && this.handDeleted.has(c.credentialId)).length;
    if (recorded && (s.obs.owned === 0 || (byHand >= 2 && byHand * 2 > recorded))) flags.push('--allow-missing-credentials');
    if (this.rogue && (s.obs.users.get(ROGUE)?.length ?? 0) > 0) flags.push('--adopt');
    return flags;
  }

  expectRefusal(r: { code: number; stdout: string; stderr: string }, flags: Flag[], what: string): void {
    const out = `${what}:\n${r.stdout}\n${r.stderr}`;
    expect(r.code, out).toBe(1);
    expect(r.stderr, out).toMatch(/apply refused; nothing was changed/);
    for (const f of ALL_FLAGS) {
      if (flags.includes(f)) expect(r.stderr, `${out}\n(${f} is required here)`).toContain(f);
      else expect(r.stderr, `${out}\n(${f} is not legitimately needed here)`).not.toContain(f);
    }
  }

  /**
   * A spec principal under a name a SCIM user owns stops plan, apply and drift, changing nothing;
   * then the operator renames it, as the message says.
   */
  async settleConflicts(): Promise<void> {
    const w = this.world;
    const names = w.conflicts();
    if (!names.length) return;
    const before = await this.snapshot();
    const args = this.pick([['plan'], ['apply', '--auto-approve'], ['drift']]);
    const r = await this.ws.run(...args);
    expect(r.code, `${args.join(' ')} with a name conflict:\n${r.stdout}\n${r.stderr}`).toBe(1);
    for (const n of names) expect(r.stderr).toContain(`the spec's principal ${JSON.stringify(n)} has the name of SCIM user`);
    await this.expectUnchanged(before, `${args.join(' ')} refused for a name conflict`);
    for (const n of names) {
      const p = w.principals[n]!;
      delete w.principals[n];
      const free = SPEC_NAMES.find((x) => !(x in w.principals) && !w.everGiven.has(x) && !names.includes(x));
      if (free && w.population() < CAP) w.principals[free] = p;
      this.note(`  conflict refused by ${args[0]}; spec principal ${n} renamed to ${free ?? '(removed)'}`);
    }
    this.count('conflict');
    this.writeSpec();
  }

  // ---- steps

  randomGrant(): Grant {
    const g: Grant = { access: this.pick(LEVELS) };
    if (this.chance(0.3)) {
      // Some already past, one exactly now (expired: access ends at that instant), most ahead.
      const at = this.chance(0.1) ? this.world.now : this.world.now + this.int(-48, 120) * HOUR + this.int(0, 59) * 60_000;
      g.expires = new Date(at).toISOString().replace('.000Z', 'Z');
    }
    return g;
  }

  mutateGrants(g: Grants): string {
    const have = Object.keys(g);
    const free = DATASET_NAMES.filter((d) => !(d in g));
    const r = this.rnd();
    if ((r < 0.45 || !have.length) && free.length && have.length < 4) {
      const ds = this.pick(free);
      g[ds] = this.randomGrant();
      return `+${ds}:${g[ds].access}${g[ds].expires ? `@${g[ds].expires}` : ''}`;
    }
    if (!have.length) return 'unchanged';
    const ds = this.pick(have);
    if (r < 0.7) {
      delete g[ds];
      return `-${ds}`;
    }
    if (r < 0.85) {
      g[ds] = { ...g[ds]!, access: this.pick(LEVELS) };
      return `~${ds}:${g[ds].access}`;
    }
    g[ds] = this.randomGrant();
    return `~${ds}:${g[ds].access}${g[ds].expires ? `@${g[ds].expires}` : ''}`;
  }

  specEdit(): void {
    const w = this.world;
    const names = Object.keys(w.principals);
    const kinds: string[] = ['groupGrants', 'groupGrants'];
    if (w.population() < CAP && names.length < SPEC_NAMES.length) kinds.push('add', 'add', 'add');
    if (names.length) kinds.push('remove', 'groups', 'grants', 'grants');
    // Removals of five principals or more at once, which need --allow-mass-destroy, are rare by
    // chance alone: made likelier whenever that many have access.
    const many = w.access().size >= 5;
    if (this.chance(many ? 0.12 : 0.06)) kinds.splice(0, kinds.length, 'backend');
    else if (names.length >= 3 && this.chance(many ? 0.12 : 0.03)) kinds.splice(0, kinds.length, 'clear');
    const kind = this.pick(kinds);
    if (kind === 'add') {
      const free = SPEC_NAMES.filter((n) => !(n in w.principals));
      const unowned = free.filter((n) => !w.everGiven.has(n));
      // Mostly a free name; sometimes one a SCIM user owns, which plan and apply must refuse.
      const name = unowned.length && this.chance(0.9) ? this.pick(unowned) : this.pick(free);
      const grants: Grants = {};
      for (let i = this.int(0, 2); i > 0; i--) this.mutateGrants(grants);
      w.principals[name] = { type: name.startsWith('svc-') ? 'service' : 'person', groups: this.subset(GROUPS), grants };
      this.note(`spec: add ${name} groups=[${w.principals[name].groups.join(',')}] grants=${JSON.stringify(grants)}`);
    } else if (kind === 'clear') {
      // `principals: {}`, the slip that mass-deprovisioning guards against.
      for (const n of names) delete w.principals[n];
      this.note(`spec: every principal removed (${names.join(', ')})`);
    } else if (kind === 'remove') {
      const name = this.pick(names);
      delete w.principals[name];
      this.note(`spec: remove ${name}`);
    } else if (kind === 'groups') {
      const name = this.pick(names);
      w.principals[name]!.groups = this.subset(GROUPS, 0.5);
      this.note(`spec: ${name} groups=[${w.principals[name]!.groups.join(',')}]`);
    } else if (kind === 'grants') {
      const name = this.pick(names);
      this.note(`spec: ${name} grants ${this.mutateGrants(w.principals[name]!.grants)}`);
    } else if (kind === 'groupGrants') {
      const g = this.pick(GROUPS);
      this.note(`spec: group ${g} grants ${this.mutateGrants(w.groups[g]!)}`);
    } else {
      w.backendOn = !w.backendOn;
      this.note(`spec: backend aws ${w.backendOn ? 're-added' : 'removed'}`);
    }
    this.count(`spec.${kind}`);
    this.writeSpec();
    this.converged = false;
  }

  async withScim<T>(fn: (s: ScimStore) => Promise<T>): Promise<T> {
    const store = await openScimStoreAt(statePaths(join(this.ws.dir, '.datagrant')), this.ws.env);
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  }

  async scimJoin(s: ScimStore, userName: string, display: string): Promise<void> {
    const w = this.world;
    const user = w.scimUsers.get(userName)!;
    const g = w.scimGroups.get(display);
    const member = { value: user.id, type: 'User' };
    if (!g) {
      const rec = await s.create('Group', { displayName: display, members: [member] });
      w.scimGroups.set(display, { id: rec.id, members: new Set([userName]) });
    } else {
      await s.update('Group', g.id, (cur) => ({ ...cur.attrs, members: [...((cur.attrs.members as Json[] | undefined) ?? []), member] }));
      g.members.add(userName);
    }
  }

  async scimStep(): Promise<void> {
    const w = this.world;
    const existing = [...w.scimUsers.keys()];
    const active = existing.filter((u) => w.scimUsers.get(u)!.active);
    const inactive = existing.filter((u) => !w.scimUsers.get(u)!.active);
    const creatable = SCIM_NAMES.filter((n) => !w.scimUsers.has(n));
    const room = w.population() < CAP;
    const kinds: string[] = [];
    if (room && creatable.length) kinds.push('create', 'create', 'create');
    if (existing.length) kinds.push('join', 'join', 'leave', 'delete', 'duplicate');
    if (existing.length && creatable.length) kinds.push('rename');
    if (active.length) kinds.push('deactivate');
    if (room && inactive.length) kinds.push('reactivate');
    if (w.scimGroups.size) kinds.push('dropGroup');
    if (!kinds.length) return this.specEdit();
    const kind = this.pick(kinds);
    this.count(`scim.${kind}`);
    await this.withScim(async (s) => {
      if (kind === 'create') {
        const userName = this.pick(creatable);
        const want = w.scimNameFor(userName);
        const rec = await s.create(
          'User',
          { userName, active: true, emails: [{ value: userName, primary: true }] },
          { reservedNames: Object.keys(w.principals) },
        );
        expect(rec.principal, `principal name of new SCIM user ${userName}`).toBe(want);
        w.everGiven.add(want);
        w.scimUsers.set(userName, { id: rec.id, principal: want, active: true });
        let joined = '';
        if (this.chance(0.75)) {
          joined = this.pick(IDP_GROUPS);
          await this.scimJoin(s, userName, joined);
        }
        this.note(`scim: create ${userName} → principal ${want}${joined ? `, in ${joined}` : ''}`);
      } else if (kind === 'duplicate') {
        // userName is unique ignoring case: a second one is refused and nothing is stored.
        const userName = this.pick(existing).toUpperCase();
        const before = (await s.list('User')).length;
        await expect(s.create('User', { userName, active: true }, { reservedNames: Object.keys(w.principals) })).rejects.toThrow(/already exists/);
        expect((await s.list('User')).length).toBe(before);
        this.note(`scim: duplicate ${userName} refused`);
      } else if (kind === 'join' || kind === 'leave') {
        const userName = this.pick(existing);
        const id = w.scimUsers.get(userName)!.id;
        if (kind === 'join') {
          const open = IDP_GROUPS.filter((g) => !w.scimGroups.get(g)?.members.has(userName));
          if (!open.length) return this.note(`scim: (${userName} is in every group)`);
          const display = this.pick(open);
          await this.scimJoin(s, userName, display);
          this.note(`scim: ${userName} joins ${display}`);
        } else {
          const mine = [...w.scimGroups].filter(([, g]) => g.members.has(userName)).map(([d]) => d);
          if (!mine.length) return this.note(`scim: (${userName} is in no group)`);
          const display = this.pick(mine);
          const g = w.scimGroups.get(display)!;
          await s.update('Group', g.id, (cur) => ({
            ...cur.attrs,
            members: ((cur.attrs.members as { value: string }[] | undefined) ?? []).filter((m) => m.value !== id),
          }));
          g.members.delete(userName);
          this.note(`scim: ${userName} leaves ${display}`);
        }
      } else if (kind === 'rename') {
        // The IdP renames a person: the principal name stays theirs, and the old userName is free
        // for someone else, who gets a name of their own.
        const from = this.pick(existing);
        const to = this.pick(creatable);
        const u = w.scimUsers.get(from)!;
        await s.update('User', u.id, (cur) => ({ ...cur.attrs, userName: to, emails: [{ value: to, primary: true }] }));
        w.scimUsers.delete(from);
        w.scimUsers.set(to, u);
        for (const g of w.scimGroups.values()) {
          if (g.members.delete(from)) g.members.add(to);
        }
        this.note(`scim: rename ${from} → ${to} (still ${u.principal})`);
      } else if (kind === 'deactivate' || kind === 'reactivate') {
        const userName = this.pick(kind === 'deactivate' ? active : inactive);
        const u = w.scimUsers.get(userName)!;
        await s.update('User', u.id, (cur) => ({ ...cur.attrs, active: kind === 'reactivate' }));
        u.active = kind === 'reactivate';
        this.note(`scim: ${kind} ${userName} (${u.principal})`);
      } else if (kind === 'delete') {
        const userName = this.pick(existing);
        const u = w.scimUsers.get(userName)!;
        await s.delete('User', u.id);
        w.scimUsers.delete(userName);
        for (const g of w.scimGroups.values()) g.members.delete(userName);
        this.note(`scim: delete ${userName} (${u.principal}; the name stays its own)`);
      } else {
        const display = this.pick([...w.scimGroups.keys()]);
        await s.delete('Group', w.scimGroups.get(display)!.id);
        w.scimGroups.delete(display);
        this.note(`scim: delete group ${display}`);
      }
    });
    this.converged = false;
  }

  clock(): void {
    const hours = this.int(1, 72);
    this.world.now += hours * HOUR;
    this.note(`clock: +${hours}h → ${new Date(this.world.now).toISOString()}`);
    this.count('clock');
    this.converged = false;
  }

  async exportKey(name: string): Promise<AwsKey> {
    const r = await this.ws.run('credentials', 'export', name, '--format', 'json');
    expect(r.code, `credentials export ${name}: ${r.stderr}`).toBe(0);
    const j = JSON.parse(r.stdout) as { AccessKeyId: string; SecretAccessKey: string };
    const key = { accessKeyId: j.AccessKeyId, secretAccessKey: j.SecretAccessKey };
    this.remember(key, name);
    return key;
  }

  remember(key: AwsKey, owner: string): void {
    this.keys.set(key.accessKeyId, { ...key, owner });
    this.secrets.add(key.secretAccessKey);
  }

  async drift(): Promise<void> {
    const obs = await this.observe();
    const creds = await this.creds();
    const stored = new Map(creds.filter((c) => c.state === 'current').map((c) => [c.principal, c.credentialId]));
    const users = sorted(obs.users.keys()).filter((u) => u !== ROGUE);
    const keyed = users.filter((u) => stored.has(u) && obs.users.get(u)!.some((k) => k.startsWith(`${stored.get(u)}:`)));
    const groups = sorted(obs.groups.keys());
    const kinds: string[] = [];
    if (keyed.length) kinds.push('extraKey', 'deleteKey', 'deleteKey', 'deactivateKey', 'adminUser');
    if (users.length) kinds.push('inlinePolicy', 'untag');
    if (users.length && groups.length) kinds.push('extraMembership');
    if (groups.length) kinds.push('adminGroup', 'outsider', 'deleteGroup');
    if (obs.policies.size) kinds.push('policyEdit');
    if (!this.rogue) kinds.push('rogue');
    if (!kinds.length) return this.note("drift: (nothing of datagrant's in IAM to change)");
    const kind = this.pick(kinds);
    this.count(`drift.${kind}`);
    const iam = this.iam;
    const allowS3 = (resource: string[]) => JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: resource }] });
    switch (kind) {
      case 'extraKey': {
        const u = this.pick(keyed.filter((x) => obs.users.get(x)!.length < 2));
        if (!u) return this.note('drift: (no user with room for a second key)');
        // plan and apply read keys from the credential report, which tells them apart only by
        // creation second (±1): a key made by hand that close to datagrant's, and datagrant's then
        // deleted, passes for it (a known blind spot, reported with issue 9; `plan --exact` sees
        // it). A person or a script reacting to the new key takes longer than that.
        const issuedAt = Date.parse(creds.find((c) => c.principal === u && c.state === 'current')!.createdAt);
        await new Promise((r) => setTimeout(r, Math.max(0, issuedAt + 2_500 - Date.now())));
        const k = (await iam.send(new iamApi.CreateAccessKeyCommand({ UserName: u }))).AccessKey!;
        this.remember({ accessKeyId: k.AccessKeyId!, secretAccessKey: k.SecretAccessKey! }, `by hand for ${u}`);
        this.note(`drift: extra key ${k.AccessKeyId} for ${u}`);
        break;
      }
      case 'deleteKey': {
        const victims = this.chance(0.5) ? [this.pick(keyed)] : this.shuffle(keyed).slice(0, this.int(2, 4));
        for (const u of victims) {
          await iam.send(new iamApi.DeleteAccessKeyCommand({ UserName: u, AccessKeyId: stored.get(u)! }));
          this.handDeleted.add(stored.get(u)!);
        }
        this.note(`drift: stored keys of ${victims.join(', ')} deleted by hand`);
        break;
      }
      case 'deactivateKey': {
        const u = this.pick(keyed);
        await iam.send(new iamApi.UpdateAccessKeyCommand({ UserName: u, AccessKeyId: stored.get(u)!, Status: 'Inactive' }));
        this.note(`drift: key of ${u} deactivated by hand`);
        break;
      }
      case 'adminUser': {
        const u = this.pick(keyed);
        await iam.send(new iamApi.AttachUserPolicyCommand({ UserName: u, PolicyArn: ADMIN_ARN }));
        this.note(`drift: AdministratorAccess attached to user ${u}`);
        if (this.converged) {
          // The probes would see it: the drift really widens access until apply reverts it.
          const s3 = s3For(moto, await this.exportKey(u));
          expect(await this.attempt(s3, { op: 'GetObject', bucket: 'other-bucket', key: 'secret.txt', allowed: true })).toBe('allowed');
          s3.destroy();
        }
        break;
      }
      case 'inlinePolicy': {
        const u = this.pick(users);
        await iam.send(
          new iamApi.PutUserPolicyCommand({
            UserName: u,
            PolicyName: 'by-hand',
            PolicyDocument: allowS3(['arn:aws:s3:::other-bucket', 'arn:aws:s3:::other-bucket/*']),
          }),
        );
        this.note(`drift: inline policy on ${u}`);
        break;
      }
      case 'untag': {
        const u = this.pick(users);
        const tags = (obs.tags.get(u) ?? []).filter((t) => t !== 'datagrant:installation');
        if (!tags.length) return this.note(`drift: (${u} has no tag to remove)`);
        const t = this.pick(tags);
        await iam.send(new iamApi.UntagUserCommand({ UserName: u, TagKeys: [t] }));
        this.note(`drift: tag ${t} removed from ${u}`);
        break;
      }
      case 'extraMembership': {
        const u = this.pick(users);
        const others = groups.filter((x) => !obs.groups.get(x)!.includes(u));
        if (!others.length) return this.note(`drift: (${u} is in every group)`);
        const g = this.pick(others);
        await iam.send(new iamApi.AddUserToGroupCommand({ UserName: u, GroupName: g }));
        this.note(`drift: ${u} added to group ${g} by hand`);
        break;
      }
      case 'adminGroup': {
        const g = this.pick(groups);
        await iam.send(new iamApi.AttachGroupPolicyCommand({ GroupName: g, PolicyArn: ADMIN_ARN }));
        this.note(`drift: AdministratorAccess attached to group ${g}`);
        break;
      }
      case 'outsider': {
        if (!this.outsider) {
          await iam.send(new iamApi.CreateUserCommand({ UserName: OUTSIDER, Path: '/' }));
          const k = (await iam.send(new iamApi.CreateAccessKeyCommand({ UserName: OUTSIDER }))).AccessKey!;
          this.outsider = { accessKeyId: k.AccessKeyId!, secretAccessKey: k.SecretAccessKey! };
          this.secrets.add(k.SecretAccessKey!);
        }
        const g = this.pick(groups);
        await iam.send(new iamApi.AddUserToGroupCommand({ UserName: OUTSIDER, GroupName: g }));
        this.note(`drift: unmanaged user ${OUTSIDER} added to group ${g} by hand`);
        break;
      }
      case 'deleteGroup': {
        // Done as a person would have to in AWS: members out, policies off, then the group.
        const g = this.pick(groups);
        for (const u of obs.groups.get(g)!) await iam.send(new iamApi.RemoveUserFromGroupCommand({ GroupName: g, UserName: u }));
        const att = await iam.send(new iamApi.ListAttachedGroupPoliciesCommand({ GroupName: g }));
        for (const p of att.AttachedPolicies ?? []) await iam.send(new iamApi.DetachGroupPolicyCommand({ GroupName: g, PolicyArn: p.PolicyArn! }));
        await iam.send(new iamApi.DeleteGroupCommand({ GroupName: g }));
        this.note(`drift: group ${g} deleted by hand`);
        break;
      }
      case 'policyEdit': {
        const [name, p] = this.pick([...obs.policies]);
        if (p.versions >= 5) return this.note(`drift: (policy ${name} has 5 versions)`);
        await iam.send(new iamApi.CreatePolicyVersionCommand({ PolicyArn: p.arn, PolicyDocument: allowS3(['*']), SetAsDefault: true }));
        this.note(`drift: policy ${name} given a default version allowing s3:* on *`);
        break;
      }
      case 'rogue': {
        await iam.send(new iamApi.CreateUserCommand({ UserName: ROGUE, Path: PATH }));
        const k = (await iam.send(new iamApi.CreateAccessKeyCommand({ UserName: ROGUE }))).AccessKey!;
        this.remember({ accessKeyId: k.AccessKeyId!, secretAccessKey: k.SecretAccessKey! }, ROGUE);
        this.rogue = true;
        this.note(`drift: user ${ROGUE} with a key made by hand inside ${PATH}`);
        break;
      }
    }
    this.converged = false;
  }

  /** The account is wiped (a restored sandbox, the wrong account): every stored key is gone by hand. */
  async wipe(): Promise<void> {
    for (const c of await this.creds()) this.handDeleted.add(c.credentialId);
    await moto.reset();
    useMotoAdmin(moto);
    this.iam.destroy();
    this.iam = adminIam(moto);
    this.outsider = undefined;
    this.rogue = false;
    this.note('wipe: the account was emptied (moto reset)');
    this.count('wipe');
    this.converged = false;
  }

  async declined(): Promise<void> {
    await this.settleConflicts();
    const before = await this.snapshot();
    const flags = this.flagsFor(before);
    let asked = false;
    this.ws.confirm = async () => {
      asked = true;
      return false;
    };
    let r;
    try {
      r = await this.ws.run('apply');
    } finally {
      this.ws.confirm = undefined;
    }
    const out = `declined apply:\n${r.stdout}\n${r.stderr}`;
    if (flags.length) {
      this.expectRefusal(r, flags, 'declined apply');
      expect(asked, out).toBe(false);
    } else if (asked) {
      expect(r.code, out).toBe(1);
      expect(r.stderr, out).toContain('Apply cancelled.');
    } else {
      expect(r.code, out).toBe(0);
      expect(r.stdout, out).toContain('No changes.');
    }
    if (this.converged) expect(asked, `${out}\n(the model is converged: there is nothing to confirm)`).toBe(false);
    await this.expectUnchanged(before, 'a declined apply');
    this.note(`declined apply: ${flags.length ? `refused (${flags.join(' ')})` : asked ? 'cancelled at the prompt' : 'no changes'}`);
    this.count('declined');
  }

  async wrongKey(): Promise<void> {
    const before = await this.snapshot();
    const someone = this.pick(before.creds.map((c) => c.principal).concat(['nobody']));
    const args = this.pick([
      ['plan'],
      ['apply', '--auto-approve'],
      ['apply', '--auto-approve', ...ALL_FLAGS],
      ['drift'],
      ['credentials', 'export', someone, '--format', 'json'],
      ['credentials', 'rotate', someone],
    ]);
    const good = this.ws.env.DATAGRANT_MASTER_KEY;
    this.ws.env.DATAGRANT_MASTER_KEY = MasterKey.generate();
    let r;
    try {
      r = await this.ws.run(...args);
    } finally {
      this.ws.env.DATAGRANT_MASTER_KEY = good;
    }
    expect(r.code, `${args.join(' ')} with a wrong master key:\n${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stderr).toMatch(/wrong master key/);
    expect(r.stdout).toBe('');
    await this.expectUnchanged(before, `${args.join(' ')} with a wrong master key`);
    this.note(`wrong master key: ${args.join(' ')} refused`);
    this.count('wrongKey');
  }

  async readOnly(): Promise<void> {
    await this.settleConflicts();
    const before = await this.snapshot();
    const args = this.pick([['plan'], ['plan', '--exact'], ['plan', '--json'], ['drift']]);
    const r = await this.ws.run(...args, ...(args[0] === 'plan' ? ['--detailed-exitcode'] : []));
    const out = `${args.join(' ')}:\n${r.stdout}\n${r.stderr}`;
    expect([0, 2], out).toContain(r.code);
    if (this.converged) expect(r.code, `${out}\n(the model is converged)`).toBe(0);
    await this.expectUnchanged(before, args.join(' '));
    this.note(`${args.join(' ')}: exit ${r.code}`);
    this.count('readOnly');
  }

  /** A converged spec written again in another order plans nothing. */
  async reorder(): Promise<void> {
    this.writeSpec();
    if (!this.converged || this.world.conflicts().length) return this.note('spec rewritten in another order');
    const r = await this.ws.run('plan', '--detailed-exitcode');
    expect(r.code, `a reordered spec planned changes:\n${r.stdout}\n${r.stderr}`).toBe(0);
    this.note('spec rewritten in another order: no changes');
    this.count('reorder');
  }

  /**
   * The apply a careful operator runs: first without flags when the model says one is
   * legitimately needed (it must be refused, naming exactly those, and change nothing), then with
   * them. `crash` kills it at a random backend call instead.
   */
  async converge(crash: boolean): Promise<void> {
    await this.settleConflicts();
    const before = await this.snapshot();
    const flags = this.flagsFor(before);
    if (flags.length) {
      const refused = await this.ws.run('apply', '--auto-approve');
      this.expectRefusal(refused, flags, 'apply without the flags the situation needs');
      await this.expectUnchanged(before, 'a refused apply');
    }
    const concurrency = this.pick([1, 4, 8]);
    if (crash) {
      // A kill point among the calls this apply will make (retries aside), so that most kills fire.
      const plan = await this.ws.run('plan', '--json');
      expect(plan.code, plan.stderr).toBe(0);
      const n = this.int(1, Math.max(1, (JSON.parse(plan.stdout) as { changes: unknown[] }).changes.length));
      const after = this.chance(0.6);
      const killer = crashAt(n, after);
      // What `apply --auto-approve --concurrency N FLAGS` runs, with the kill point as its backend wrapper.
      const run = this.ws.call((io) =>
        applyCommand(io, {
          autoApprove: true,
          concurrency,
          massDestroy: flags.includes('--allow-mass-destroy'),
          missingCredentials: flags.includes('--allow-missing-credentials'),
          adopt: flags.includes('--adopt'),
          backendOptions: { wrap: killer.wrap },
        }).catch((e: unknown) => reportError(io, e)),
      );
      const ended = await Promise.race([run, killer.fired.then(() => 'killed' as const)]);
      if (ended === 'killed') {
        this.applied('');
        // A key the dead run set out to delete, once gone, is gone by datagrant's own hand: a key
        // deleted by hand that it set out to forget no longer justifies --allow-missing-credentials.
        for (const c of killer.started) if (c.kind === 'key' && c.action === 'delete') this.handDeleted.delete(String(c.before?.meta?.accessKeyId));
        this.note(`apply ${flags.join(' ')} (concurrency ${concurrency}) killed at backend call ${n}${after ? ' after IAM did it' : ' before it was sent'}`);
        this.count('crash');
        this.converged = false;
        return;
      }
      expect(ended.code, `apply (with a kill point past its end):\n${ended.stdout}\n${ended.stderr}`).toBe(0);
      this.applied(ended.stdout);
      this.note(`apply ${flags.join(' ')} finished before kill point ${n} (${killer.calls} calls)`);
      this.count('crash.missed');
    } else {
      const r = await this.ws.run('apply', '--auto-approve', '--concurrency', String(concurrency), ...flags);
      expect(r.code, `apply ${flags.join(' ')}:\n${r.stdout}\n${r.stderr}`).toBe(0);
      this.applied(r.stdout);
      this.note(`apply ${flags.join(' ')}: ${/Apply complete!.*|No changes\./.exec(r.stdout)?.[0] ?? 'ok'}`);
    }
    this.count(flags.length ? `converge${flags.join('')}` : 'converge');
    await this.verify();
  }

  /** `plan --out` then `apply FILE`: exactly that plan, and refused once the spec or IAM moved. */
  async saved(): Promise<void> {
    await this.settleConflicts();
    const before = await this.snapshot();
    const flags = this.flagsFor(before);
    const p = await this.ws.run('plan', '--out', 'fuzz.plan.json');
    expect(p.code, p.stderr).toBe(0);
    if (this.chance(0.35)) {
      const kind = this.chance(0.5) ? 'spec' : 'drift';
      const text = readFileSync(join(this.ws.dir, 'datagrant.yaml'), 'utf8');
      if (kind === 'spec') this.specEdit();
      else await this.drift();
      const moved = await this.snapshot();
      const r = await this.ws.run('apply', 'fuzz.plan.json', ...ALL_FLAGS);
      // Only a different spec file or a different IAM makes the plan stale: an edit can come out
      // as the same text, a drift step can find nothing to change, and a backend that is not
      // read cannot have moved.
      const stale =
        kind === 'spec' ? readFileSync(join(this.ws.dir, 'datagrant.yaml'), 'utf8') !== text : this.awsRead && moved.obs.snapshot !== before.obs.snapshot;
      if (!stale) {
        expect(r.code, `a saved plan still current after a ${kind} step that changed nothing:\n${r.stdout}\n${r.stderr}`).toBe(0);
        this.applied(r.stdout);
        this.note(`saved plan: still current after a ${kind} step that changed nothing, applied`);
        return this.verify();
      }
      expect(r.code, `a saved plan applied after the ${kind} moved:\n${r.stdout}\n${r.stderr}`).toBe(1);
      // An edit that took a SCIM user's name is refused for that first (settled by the next step).
      expect(r.stderr).toMatch(this.world.conflicts().length ? /has the name of SCIM user/ : /changed since the plan|spec changed since/);
      await this.expectUnchanged(moved, 'a stale saved plan');
      this.note(`saved plan refused after a ${kind} change`);
      this.count('saved.stale');
      return;
    }
    if (flags.length) {
      const refused = await this.ws.run('apply', 'fuzz.plan.json');
      this.expectRefusal(refused, flags, 'apply of a saved plan without the flags the situation needs');
      await this.expectUnchanged(before, 'a refused saved plan');
    }
    const r = await this.ws.run('apply', 'fuzz.plan.json', ...flags);
    expect(r.code, `apply fuzz.plan.json ${flags.join(' ')}:\n${r.stdout}\n${r.stderr}`).toBe(0);
    this.applied(r.stdout);
    this.note(`saved plan applied ${flags.join(' ')}`);
    this.count('saved');
    await this.verify();
  }

  /** What one request with `s3` gets: allowed, denied, or what went wrong. */
  async attempt(s3: S3Client, p: Probe): Promise<string> {
    try {
      if (p.op === 'GetObject') await (await s3.send(new GetObjectCommand({ Bucket: p.bucket, Key: p.key }))).Body?.transformToString();
      else if (p.op === 'PutObject') await s3.send(new PutObjectCommand({ Bucket: p.bucket, Key: p.key, Body: 'fuzz' }));
      else if (p.op === 'DeleteObject') await s3.send(new DeleteObjectCommand({ Bucket: p.bucket, Key: p.key }));
      else await s3.send(new ListObjectsV2Command({ Bucket: p.bucket, MaxKeys: 1 }));
      return 'allowed';
    } catch (e) {
      const name = (e as Error).name;
      if (name === 'NoSuchKey' && p.op === 'GetObject') return 'allowed';
      if (name === 'AccessDenied') return 'denied';
      return `${name}: ${(e as Error).message}`;
    }
  }

  /**
   * Reads and listings first, then writes, then deletes, each phase concurrently: moto's S3 answers
   * a listing that runs while another thread writes to the same bucket with a 500 now and then.
   */
  async probe(subjects: { who: string; key: AwsKey; access: ReadonlyMap<string, Level> }[]): Promise<void> {
    const clients = new Map(subjects.map((s) => [s.who, s3For(moto, s.key)]));
    const wrong: string[] = [];
    const all = subjects.flatMap((s) => probesFor(s.who, s.access).map((p) => ({ s, p })));
    try {
      for (const phase of [['GetObject', 'ListBucket'], ['PutObject'], ['DeleteObject']]) {
        await pool(
          12,
          all
            .filter(({ p }) => phase.includes(p.op))
            .map(({ s, p }) => async () => {
              const got = await this.attempt(clients.get(s.who)!, p);
              const want = p.allowed ? 'allowed' : 'denied';
              if (got !== want) {
                const kind = got === 'allowed' ? 'OVER-GRANT' : got === 'denied' ? 'UNDER-GRANT' : 'ERROR';
                wrong.push(`${kind}: ${s.who} ${p.op} ${p.bucket}/${p.key ?? ''} → ${got} (model: ${want}; access ${describeAccess(s.access)})`);
              }
            }),
        );
      }
    } finally {
      for (const c of clients.values()) c.destroy();
    }
    expect(wrong.sort(), 'what the issued keys can do, against the model').toEqual([]);
  }

  /** Whether a key still exists: a deleted one is refused as unknown, whatever it asks. */
  async keyExists(key: AwsKey): Promise<boolean> {
    const s3 = s3For(moto, key);
    try {
      const got = await this.attempt(s3, { op: 'GetObject', bucket: 'ai-model-data', key: 'training/a.txt', allowed: true });
      if (got === 'allowed' || got === 'denied') return true;
      expect(got).toMatch(/^InvalidAccessKeyId/);
      return false;
    } finally {
      s3.destroy();
    }
  }

  /** Everything the model says after a converging apply, proved against IAM and with the keys. */
  async verify(): Promise<void> {
    const again = await this.ws.run('plan', '--detailed-exitcode', ...(this.chance(0.25) ? ['--exact'] : []));
    expect(again.code, `a plan right after a converging apply must be empty:\n${again.stdout}\n${again.stderr}`).toBe(0);
    const { obs, creds } = await this.snapshot();
    const access = this.world.access();
    const want = sorted(access.keys());
    // A backend neither in the spec nor remembered is not read: another tool's user stays.
    const lingering = this.rogue && !this.awsRead;
    expect(sorted(obs.users.keys()), `IAM users under ${PATH}`).toEqual(sorted([...want, ...(lingering ? [ROGUE] : [])]));
    const aws = creds.filter((c) => c.backend === 'aws');
    expect(sorted(aws.map((c) => `${c.principal}:${c.state}`)), 'stored credentials: one current key per principal with access').toEqual(
      sorted(want.map((n) => `${n}:current`)),
    );
    // Every key in IAM has its secret stored, and every stored secret's key is in IAM, active.
    for (const c of aws) expect(obs.users.get(c.principal), `keys of ${c.principal} in IAM`).toEqual([`${c.credentialId}:Active`]);
    const issued = await Promise.all(want.map(async (name) => ({ who: name, key: await this.exportKey(name), access: access.get(name)! })));
    for (const s of issued) expect(s.key.accessKeyId).toBe(aws.find((c) => c.principal === s.who)!.credentialId);
    const subjects = [...issued, ...(this.outsider ? [{ who: OUTSIDER, key: this.outsider, access: new Map<string, Level>() }] : [])];
    await this.probe(subjects);
    // Keys no longer handed out are deleted, not merely deactivated (moto honours inactive keys).
    const live = new Set(issued.map((s) => s.key.accessKeyId));
    const stale = [...this.keys].filter(([id, k]) => !live.has(id) && !(lingering && k.owner === ROGUE));
    const alive: string[] = [];
    await pool(
      8,
      stale.map(([id, k]) => async () => {
        if (await this.keyExists(k)) alive.push(`${id} (${k.owner})`);
        else this.keys.delete(id);
      }),
    );
    expect(alive, 'keys that should have been deleted').toEqual([]);
    this.handDeleted.clear();
    this.rogue = lingering;
    if (!this.world.backendOn) this.remembered = false;
    this.converged = true;
    this.note(`  verified: ${want.map((n) => `${n}{${describeAccess(access.get(n)!)}}`).join(' ') || 'nobody has access'}`);
  }

  async run(steps: number): Promise<void> {
    this.writeSpec();
    const weights: [string, number][] = [
      ['spec', 26],
      ['scim', 16],
      ['converge', 20],
      ['crash', 8],
      ['drift', 10],
      ['clock', 5],
      ['declined', 4],
      ['wrongKey', 3],
      ['readOnly', 3],
      ['saved', 3],
      ['reorder', 2],
      ['wipe', 1],
    ];
    const total = weights.reduce((n, [, w]) => n + w, 0);
    for (this.step = 1; this.step <= steps; this.step++) {
      let r = this.rnd() * total;
      const kind = weights.find(([, w]) => (r -= w) < 0)![0];
      if (kind === 'spec') this.specEdit();
      else if (kind === 'scim') await this.scimStep();
      else if (kind === 'converge') await this.converge(false);
      else if (kind === 'crash') await this.converge(true);
      else if (kind === 'drift') await this.drift();
      else if (kind === 'clock') this.clock();
      else if (kind === 'declined') await this.declined();
      else if (kind === 'wrongKey') await this.wrongKey();
      else if (kind === 'readOnly') await this.readOnly();
      else if (kind === 'saved') await this.saved();
      else if (kind === 'reorder') await this.reorder();
      else await this.wipe();
    }
    // The run ends converged, whatever the last step left behind.
    this.note('final apply');
    await this.converge(false);
    expect((await this.ws.run('audit', 'verify')).code).toBe(0);
    // No secret in anything printed, other than by export (which the transcript leaves out).
    const printed = this.ws.transcript.join('\n');
    expect(
      [...this.secrets].filter((s) => printed.includes(s)),
      'secrets in command output',
    ).toEqual([]);
  }
}

test(`seeded model-based adversarial run: seed ${SEED}, ${STEPS} steps`, { timeout: 120_000 + STEPS * 4_000 }, async () => {
  console.log(`aws-fuzz: seed ${SEED}, ${STEPS} steps (replay: FUZZ_SEED=${SEED} FUZZ_STEPS=${STEPS} npm run fuzz)`);
  ws = workspace({ DATAGRANT_MASTER_KEY: MasterKey.generate() });
  const init = await ws.run('init');
  expect(init.code, init.stderr).toBe(0);
  const fuzz = new Fuzz(ws);
  onTestFailed(() => {
    console.error(
      `aws-fuzz FAILED at step ${fuzz.step} of seed ${SEED}. Replay: FUZZ_SEED=${SEED} FUZZ_STEPS=${fuzz.step} npm run fuzz\n--- step log ---\n${fuzz.log.join('\n')}\n--- spec ---\n${fuzz.world.specText((x) => x)}`,
    );
  });
  const started = Date.now();
  await fuzz.run(STEPS);
  if (process.env.FUZZ_VERBOSE) console.log(fuzz.log.join('\n'));
  if (SEED === CI_SEED && STEPS === CI_STEPS) {
    // The fixed sequence must keep exercising what this test is for; a change to the generator
    // that loses some of it needs another CI_SEED.
    const kinds = Object.keys(fuzz.stats);
    const uncovered = [
      ...[
        'crash',
        'conflict',
        'declined',
        'wrongKey',
        'readOnly',
        'saved',
        'saved.stale',
        'wipe',
        'clock',
        'spec.backend',
        'spec.clear',
        'scim.create',
        'scim.deactivate',
        'scim.reactivate',
        'scim.delete',
        'scim.duplicate',
        'scim.rename',
      ].filter((k) => !fuzz.stats[k]),
      ...ALL_FLAGS.filter((f) => !kinds.some((k) => k.startsWith('converge') && k.includes(f))),
    ];
    expect(uncovered, 'kinds of step the CI sequence no longer reaches').toEqual([]);
    expect(kinds.filter((k) => k.startsWith('drift.')).length, 'kinds of drift the CI sequence reaches').toBeGreaterThanOrEqual(10);
  }
  console.log(
    `aws-fuzz: seed ${SEED} passed in ${((Date.now() - started) / 1000).toFixed(0)} s; ${Object.entries(fuzz.stats)
      .sort()
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
});
