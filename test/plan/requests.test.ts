// Requests for access, purely: who may ask for what, who may approve, what an approval would
// break, and the one merge of approved requests into the spec (what plan, apply and serve see).
import { describe, expect, test } from 'vitest';
import { intendedAccess } from '../../src/compile/access.js';
import { compile, nextChangeAt } from '../../src/compile/index.js';
import { assertSpecInvariants, withholdBreaking } from '../../src/compile/invariants.js';
import { RequestError } from '../../src/core/errors.js';
import type { AccessRequest } from '../../src/model/request.js';
import {
  approvalBreaks,
  checkDecider,
  checkNewRequest,
  endOf,
  mergeRequests,
  requestableBy,
  resolvePrincipal,
  stateAt,
  type NewRequestInput,
} from '../../src/plan/requests.js';
import { parseSpec } from '../../src/spec/load.js';
import type { PrincipalSpec } from '../../src/spec/schema.js';

const NOW = new Date('2026-12-01T12:00:00Z');
const TEXT = `version: 1
backends:
  aws: { type: aws }
  wh: { type: postgres, url: "postgres://db.example/x" }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/, approvers: { principals: [bob], access: write } }
  features: { backend: aws, bucket: feature-data }
  hr: { backend: aws, bucket: hr-data }
  warehouse: { backend: wh, database: analytics, schema: features }
  unowned: { backend: aws, bucket: nobody-approves }
groups:
  owners: {}
  hr: { grants: [{ dataset: hr, access: read }] }
  readers: { grants: [{ dataset: features, access: read }] }
principals:
  alice: { type: person, email: alice@example.com }
  bob: { type: person, email: bob@example.com, groups: [owners] }
  carol: { type: person, email: Carol@Example.com, groups: [owners, readers] }
  dave: { type: person, email: dave@example.com, groups: [hr], grants: [{ dataset: training, access: read, expires: 2027-01-01 }] }
  pg_admin: { type: person, email: pg@example.com }
approvers:
  - { datasets: [features, hr, warehouse], groups: [owners] }
  - { datasets: [features], principals: [alice] }
invariants:
  hr-only: { datasets: [hr], onlyMembersOf: [hr] }
`;
const loaded = parseSpec(TEXT, { file: 'datagrant.yaml', env: {}, now: NOW });
const spec = loaded.spec;
const people = spec.principals;

const ask = (over: Partial<NewRequestInput> = {}): NewRequestInput => ({
  requester: 'alice',
  dataset: 'training',
  access: 'read',
  duration: '7d',
  reason: 'fine-tune the ranker',
  ...over,
});

let nextId = 1;
const approved = (over: Partial<AccessRequest> = {}): AccessRequest => ({
  id: nextId++,
  requester: 'alice',
  dataset: 'training',
  level: 'read',
  duration: '7d',
  reason: 'r',
  state: 'approved',
  requestedAt: '2026-12-01T00:00:00.000Z',
  requestedVia: 'alice@cli',
  decision: { by: 'bob', at: '2026-12-01T10:00:00.000Z', reason: 'ok', via: 'bob@cli' },
  endsAt: '2026-12-08T10:00:00.000Z',
  auditSeq: 1,
  ...over,
});

const refusal = (f: () => unknown): RequestError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(RequestError);
    return e as RequestError;
  }
  throw new Error('expected a RequestError');
};

describe('making a request', () => {
  test('a request an approver other than the requester may grant is accepted, naming them', () => {
    expect(checkNewRequest(spec, people, ask(), NOW)).toEqual({
      requester: 'alice',
      dataset: 'training',
      level: 'read',
      duration: '7d',
      reason: 'fine-tune the ranker',
      approvers: ['bob'],
    });
    // The owners group and alice's own rule: alice is not among her own approvers.
    expect(checkNewRequest(spec, people, ask({ dataset: 'features' }), NOW).approvers).toEqual(['bob', 'carol']);
    // A name differing only in case is the principal (IAM names ignore case).
    expect(checkNewRequest(spec, people, ask({ requester: 'ALICE' }), NOW).requester).toBe('alice');
  });

  test.each<[string, Partial<NewRequestInput>, RegExp]>([
    [
      'a principal that does not exist',
      { requester: 'mallory' },
      /^principal "mallory" does not exist: it is neither a principal of the spec nor a SCIM person$/,
    ],
    [
      'a dataset that does not exist',
      { dataset: 'trainig' },
      /^dataset "trainig" is not defined; defined datasets: features, hr, training, unowned, warehouse$/,
    ],
    ['a level that is none', { access: 'owner' }, /^access "owner" is not a level; allowed: read, write, admin$/],
    ['a dataset nobody may approve', { dataset: 'unowned' }, /^access to dataset unowned cannot be requested: the spec names no approvers for it/],
    ['a level past what its approvers may grant', { access: 'admin' }, /^admin on dataset training cannot be requested: its approvers may approve up to write/],
    [
      'a duration over the default limit',
      { duration: '31d' },
      /^duration 31d is longer than a request may ask for: at most 30d \(the default; settings\.requests\.maxDuration sets another\)$/,
    ],
    ['no duration', { duration: 'a week' }, /^duration "a week" is not a duration; write one such as 8h, 7d or 30m \(at most 30d\)$/],
    ['a duration past any limit', { duration: '99999999999d' }, /longer than a request may ask for/],
    ['an empty reason', { reason: '  \n ' }, /^a request needs a reason: it is what the approver and the auditor read$/],
    ['a reason with control characters', { reason: 'ok\u001b[2J' }, /control characters/],
    [
      'a requester who is the only approver',
      { requester: 'bob' },
      /^no one but bob may approve read on dataset training, and no one approves their own request: the approvers \(datasets\.training\.approvers at datagrant\.yaml:6:82\) must name someone else$/,
    ],
    [
      'access held for good already',
      { requester: 'carol', dataset: 'features' },
      /^carol already has read on dataset features through group readers groups\.readers\.grants\[0\], with no end$/,
    ],
    [
      'a dataset the spec grants the requester directly',
      { requester: 'dave', access: 'write' },
      /^dave has a grant on dataset training in the spec \(principals\.dave\.grants\[0\]\), and a request cannot add one beside it: change that grant in the spec instead$/,
    ],
    [
      'a name PostgreSQL cannot hold as a role',
      { requester: 'pg_admin', dataset: 'warehouse' },
      /^principal name "pg_admin" .*, so it cannot be a role on backend wh$/,
    ],
  ])('refused: %s', (_what, over, message) => {
    const e = refusal(() => checkNewRequest(spec, people, ask(over), NOW, loaded.source));
    expect(e.kind).toBe('invalid');
    expect(e.message).toMatch(message);
  });

  test('settings.requests.maxDuration sets the limit', () => {
    const strict = { ...spec, settings: { requests: { maxDuration: '8h' } } };
    expect(checkNewRequest(strict, people, ask({ duration: '8h' }), NOW).duration).toBe('8h');
    expect(refusal(() => checkNewRequest(strict, people, ask({ duration: '9h' }), NOW)).message).toMatch(/at most 8h \(settings\.requests\.maxDuration\)$/);
  });

  test('a SCIM person the spec does not hold may ask, and a SCIM member of an approvers group may approve', () => {
    const scim: Record<string, PrincipalSpec> = {
      ...people,
      erin: { type: 'person', email: 'erin@example.com', groups: [], grants: [] },
      finn: { type: 'person', email: 'finn@example.com', groups: ['owners'], grants: [] },
    };
    expect(checkNewRequest(spec, scim, ask({ requester: 'erin', dataset: 'features' }), NOW).approvers).toEqual(['alice', 'bob', 'carol', 'finn']);
  });

  test('what a principal may ask for: datasets and levels someone else may approve', () => {
    expect(requestableBy(spec, people, 'bob')).toEqual([
      { dataset: 'features', backend: 'aws', levels: [{ level: 'read', approvers: ['alice', 'carol'] }] },
      { dataset: 'hr', backend: 'aws', levels: [{ level: 'read', approvers: ['carol'] }] },
      { dataset: 'warehouse', backend: 'wh', levels: [{ level: 'read', approvers: ['carol'] }] },
    ]);
    expect(requestableBy(spec, people, 'alice').find((d) => d.dataset === 'training')).toEqual({
      dataset: 'training',
      backend: 'aws',
      levels: [
        { level: 'read', approvers: ['bob'] },
        { level: 'write', approvers: ['bob'] },
      ],
    });
  });
});

describe('deciding', () => {
  const pending = (over: Partial<AccessRequest> = {}): AccessRequest => {
    const { decision: _d, endsAt: _e, ...rest } = approved(over);
    return { ...rest, state: 'pending' };
  };

  test('an approver of the dataset may approve or deny; the requester never, an outsider never', () => {
    expect(checkDecider(spec, people, pending(), 'bob', 'approve')).toEqual(['bob']);
    const self = refusal(() => checkDecider(spec, people, pending({ requester: 'bob', dataset: 'features' }), 'bob', 'approve'));
    expect(self.kind).toBe('forbidden');
    expect(self.message).toMatch(/^bob cannot approve their own request #\d+; another approver must: alice, carol$/);
    expect(refusal(() => checkDecider(spec, people, pending({ requester: 'bob', dataset: 'features' }), 'bob', 'deny')).message).toMatch(
      /cannot deny their own request #\d+ \(cancel it to withdraw it\)/,
    );
    const outsider = refusal(() => checkDecider(spec, people, pending(), 'carol', 'approve', loaded.source));
    expect(outsider.kind).toBe('forbidden');
    expect(outsider.message).toMatch(
      /^carol may not approve read on dataset training: the approvers are bob \(datasets\.training\.approvers at datagrant\.yaml:6:82\)$/,
    );
    // A rule for read does not let its approvers grant write.
    expect(refusal(() => checkDecider(spec, people, pending({ dataset: 'features', level: 'write' }), 'carol', 'approve')).message).toMatch(
      /write on dataset features cannot be requested: its approvers may approve up to read/,
    );
  });

  test('approvers are named by principal name or e-mail (ignoring case)', () => {
    expect(resolvePrincipal(people, 'carol@example.com')).toBe('carol');
    expect(resolvePrincipal(people, 'Bob')).toBe('bob');
    expect(refusal(() => resolvePrincipal(people, 'mallory@example.com')).message).toMatch(/is no principal/);
  });

  test('an approval that would break an invariant is refused with its message; breaches already there do not count', () => {
    const r = pending({ requester: 'alice', dataset: 'hr' });
    const breaks = approvalBreaks(spec, people, [], r, 'carol', NOW, loaded.source);
    expect(breaks).toEqual([`invariant hr-only: principal alice gets read on hr through request #${r.id} (approved by carol), and alice is not in group hr`]);
    expect(approvalBreaks(spec, people, [], pending({ dataset: 'features' }), 'carol', NOW)).toEqual([]);
    // alice already holds hr through another approved request: this one changes nothing new.
    const earlier = approved({ dataset: 'hr', decision: { by: 'carol', at: NOW.toISOString(), reason: 'x', via: 'x' } });
    expect(approvalBreaks(spec, people, [earlier], pending({ requester: 'carol', dataset: 'features' }), 'bob', NOW)).toEqual([]);
  });

  test('the end is the approval time plus the duration, to the second', () => {
    expect(endOf({ duration: '7d' }, spec, new Date('2026-12-01T12:00:00.750Z'))).toBe('2026-12-08T12:00:00.000Z');
    expect(endOf({ duration: '90m' }, spec, NOW)).toBe('2026-12-01T13:30:00.000Z');
  });

  test('expired is a state a reader sees once the end or the wait for a decision has passed', () => {
    expect(stateAt(approved(), spec, new Date('2026-12-08T09:59:59Z'))).toBe('approved');
    expect(stateAt(approved(), spec, new Date('2026-12-08T10:00:00Z'))).toBe('expired');
    expect(stateAt(pending(), spec, new Date('2026-12-07T23:59:59Z'))).toBe('pending');
    expect(stateAt(pending(), spec, new Date('2026-12-08T00:00:01Z'))).toBe('expired');
    expect(stateAt(pending(), { settings: { requests: { decideWithin: '1h' } } }, new Date('2026-12-01T01:00:01Z'))).toBe('expired');
    expect(stateAt({ ...approved(), state: 'denied' }, spec, NOW)).toBe('denied');
  });
});

describe('merging approved requests into the spec', () => {
  test('a live approval is a direct grant that ends by itself, with its origin and a notice; the rest merge nothing', () => {
    const live = approved();
    const { spec: merged, notices } = mergeRequests(spec, [live, approved({ state: 'denied' }), approved({ endsAt: NOW.toISOString() })], NOW);
    expect(merged.principals.alice!.grants).toEqual([
      { dataset: 'training', access: 'read', expires: live.endsAt, origin: { request: live.id, approvedBy: 'bob' } },
    ]);
    expect(notices).toEqual([
      {
        level: 'info',
        message: `request #${live.id} (read on training for alice until ${live.endsAt}, approved by bob): a grant that ends by itself`,
      },
    ]);
    // Nothing else changes, and the spec passed in is untouched.
    expect(merged.principals.bob).toBe(spec.principals.bob);
    expect(spec.principals.alice!.grants).toEqual([]);
    expect(mergeRequests(spec, [], NOW).spec).toBe(spec);
  });

  test('it compiles to an aws:CurrentTime bound, counts as intended access from the request, and wakes serve at its end', () => {
    const live = approved();
    const merged = mergeRequests(spec, [live], NOW).spec;
    const policy = compile(merged, NOW).desired.aws!.resources.find((r) => r.address === 'aws:inline-policy/user/alice/dg-direct-grants');
    const statements = (policy!.attrs.document as { Statement: { Condition?: unknown }[] }).Statement;
    expect(statements.length).toBeGreaterThan(0);
    for (const s of statements) expect(s.Condition).toMatchObject({ DateLessThan: { 'aws:CurrentTime': ['2026-12-08T10:00:00Z'] } });
    expect(intendedAccess(merged, NOW).filter((a) => a.principal === 'alice')).toEqual([
      {
        backend: 'aws',
        dataset: 'training',
        level: 'read',
        principal: 'alice',
        via: `request #${live.id} (approved by bob)`,
        path: `requests.${live.id}`,
        expires: live.endsAt,
        request: live.id,
      },
    ]);
    expect(nextChangeAt(merged, [], NOW)).toEqual(new Date(live.endsAt!));
    // After its end, the same requests merge nothing: the next apply removes alice's access.
    expect(
      compile(mergeRequests(spec, [live], new Date(live.endsAt!)).spec, new Date(live.endsAt!)).desired.aws!.resources.some((r) => r.name === 'alice'),
    ).toBe(false);
  });

  test('on PostgreSQL, a principal whose only access is a request logs in until its end', () => {
    const live = approved({ dataset: 'warehouse', decision: { by: 'carol', at: NOW.toISOString(), reason: 'x', via: 'x' } });
    const wh = compile(mergeRequests(spec, [live], NOW).spec, NOW).desired.wh!.resources;
    expect(wh.find((r) => r.kind === 'role' && r.name === 'alice')?.attrs).toMatchObject({ login: true, validUntil: live.endsAt });
    expect(wh.some((r) => r.kind === 'grant' && r.address.startsWith('wh:grant/alice/'))).toBe(true);
  });

  test('one grant per principal and dataset: the highest level, then the latest end', () => {
    const read = approved({ endsAt: '2026-12-20T00:00:00.000Z' });
    const write = approved({ level: 'write', endsAt: '2026-12-03T00:00:00.000Z' });
    const write2 = approved({ level: 'write', endsAt: '2026-12-05T00:00:00.000Z' });
    const grants = mergeRequests(spec, [read, write, write2], NOW).spec.principals.alice!.grants;
    expect(grants).toEqual([{ dataset: 'training', access: 'write', expires: write2.endsAt, origin: { request: write2.id, approvedBy: 'bob' } }]);
  });

  test("the spec's own grant on the dataset stands; a principal or dataset that is gone merges nothing; each says so", () => {
    const beside = approved({ requester: 'dave', level: 'write' });
    const gone = approved({ requester: 'zed' });
    const noData = approved({ dataset: 'dropped' });
    const { spec: merged, notices } = mergeRequests(spec, [beside, gone, noData], NOW);
    expect(merged.principals.dave!.grants).toEqual(spec.principals.dave!.grants);
    expect(Object.keys(merged.principals)).not.toContain('zed');
    expect(notices.map((n) => `${n.level}: ${n.message}`)).toEqual([
      `warning: request #${beside.id} (write on training for dave until ${beside.endsAt}, approved by bob) is not merged: the spec grants training to dave itself (principals.dave.grants[0]), and the spec's grant stands`,
      `warning: request #${gone.id} (read on training for zed until ${gone.endsAt}, approved by bob) grants nothing: principal zed no longer exists`,
      `warning: request #${noData.id} (read on dropped for alice until ${noData.endsAt}, approved by bob) grants nothing: dataset dropped is no longer in the spec`,
    ]);
  });

  test('a requester the spec does not hold (a SCIM person in no mapped group) comes from `people`', () => {
    const erin: PrincipalSpec = { type: 'person', email: 'erin@example.com', groups: [], grants: [] };
    const live = approved({ requester: 'erin' });
    const merged = mergeRequests(spec, [live], NOW, { erin }).spec;
    expect(merged.principals.erin).toEqual({
      ...erin,
      grants: [{ dataset: 'training', access: 'read', expires: live.endsAt, origin: { request: live.id, approvedBy: 'bob' } }],
    });
  });

  test('invariants judge merged grants: the CLI refuses naming the request, serve withholds exactly that grant', () => {
    const bad = approved({ dataset: 'hr', decision: { by: 'carol', at: NOW.toISOString(), reason: 'x', via: 'x' } });
    const good = approved({ dataset: 'features', decision: { by: 'carol', at: NOW.toISOString(), reason: 'x', via: 'x' } });
    const merged = mergeRequests(spec, [bad, good], NOW).spec;
    expect(() => assertSpecInvariants(merged, NOW, loaded.source)).toThrow(
      `invariant hr-only: principal alice gets read on hr through request #${bad.id} (approved by carol), and alice is not in group hr`,
    );
    const { spec: held, withheld } = withholdBreaking(merged, NOW, loaded.source);
    expect(withheld.map((v) => v.grant)).toEqual([`requests.${bad.id}`]);
    expect(held.principals.alice!.grants.map((g) => g.dataset)).toEqual(['features']);
  });
});
