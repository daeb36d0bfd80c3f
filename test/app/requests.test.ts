// Requests for access through the app layer, on real SQLite stores (state and SCIM): every change
// and every refused decision is in the audit chain, decisions race once, and the one merge
// (mergedSpec) brings SCIM people and approved requests into the spec alike, a SCIM requester in no
// mapped group included.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import {
  approveRequest,
  cancelRequest,
  createRequest,
  denyRequest,
  expireDue,
  listRequests,
  mergedSpec,
  requestsWorld,
  type RequestsWorld,
} from '../../src/app/requests.js';
import { RequestError } from '../../src/core/errors.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { parseSpec } from '../../src/spec/load.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const T0 = new Date('2026-12-01T09:00:00Z');
const later = (ms: number) => new Date(T0.getTime() + ms);
const HOUR = 3600_000;

const TEXT = `version: 1
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, approvers: { groups: [owners] } }
  hr: { backend: aws, bucket: hr-data, approvers: { principals: [bob] } }
groups:
  owners: {}
  hr: { grants: [{ dataset: hr, access: read }] }
principals:
  alice: { type: person, email: alice@example.com }
  bob: { type: person, email: bob@example.com, groups: [owners] }
invariants:
  hr-only: { datasets: [hr], onlyMembersOf: [hr] }
scim:
  groups: { "Data Owners": owners }
`;

let state: SqliteStore;
let scim: SqliteScimStore;
let world: RequestsWorld;
const loaded = parseSpec(TEXT, { file: 'datagrant.yaml', env: {}, now: T0 });

beforeEach(async () => {
  state = new SqliteStore(':memory:', MasterKey.parse(MasterKey.generate()));
  scim = new SqliteScimStore(':memory:');
  // erin is in no mapped group (she compiles to nothing); finn owns data through the IdP.
  const erin = await scim.create('User', { userName: 'erin@example.com', active: true });
  const finn = await scim.create('User', { userName: 'finn@example.com', active: true });
  await scim.create('Group', { displayName: 'Data Owners', members: [{ value: finn.id, type: 'User' }] });
  expect([erin.principal, finn.principal]).toEqual(['erin', 'finn']);
  world = await requestsWorld(loaded.spec, scim, loaded.source);
});
afterEach(async () => {
  await state.close();
  await scim.close();
});

const ask = (requester: string, dataset = 'training', now = T0) =>
  createRequest(world, state, { requester, dataset, access: 'read', duration: '8h', reason: 'evaluate the ranker', via: `${requester}@cli`, now });
const events = async () => (await state.auditEntries()).map((e) => `${e.event} ${e.address} ${e.outcome}`);

describe('asking and deciding', () => {
  test('a SCIM person in no mapped group asks; a SCIM approver approves; the grant is merged for everyone alike', async () => {
    const { request, approvers } = await ask('erin');
    expect(approvers).toEqual(['bob', 'finn']);
    expect(request).toMatchObject({ requester: 'erin', state: 'pending', requestedVia: 'erin@cli' });
    const ok = await approveRequest(world, state, {
      id: request.id,
      as: 'finn@example.com',
      reason: 'for the Q4 eval',
      via: 'oidc:corp:u-finn',
      now: later(HOUR),
    });
    expect(ok).toMatchObject({
      state: 'approved',
      endsAt: later(9 * HOUR).toISOString(),
      decision: { by: 'finn', reason: 'for the Q4 eval', via: 'oidc:corp:u-finn' },
    });

    // The merge plan, apply and serve use: erin is a principal with a grant that ends by itself.
    const { spec, notices } = await mergedSpec(loaded.spec, { scim, requests: state }, later(2 * HOUR));
    expect(spec.principals.erin).toEqual({
      type: 'person',
      email: 'erin@example.com',
      groups: [],
      grants: [{ dataset: 'training', access: 'read', expires: ok.endsAt, origin: { request: request.id, approvedBy: 'finn' } }],
    });
    expect(spec.principals.finn?.groups).toEqual(['owners']);
    expect(notices.map((n) => n.message)).toEqual([
      `request #${request.id} (read on training for erin until ${ok.endsAt}, approved by finn): a grant that ends by itself`,
    ]);
    // After its end, nothing of it is merged; SCIM people still are.
    const after = await mergedSpec(loaded.spec, { scim, requests: state }, later(9 * HOUR));
    expect(Object.keys(after.spec.principals).sort()).toEqual(['alice', 'bob', 'finn']);

    expect(await events()).toEqual([`request.create request/${request.id} ok`, `request.approve request/${request.id} ok`]);
    const entries = await state.auditEntries();
    expect(entries[1]!.actor).toBe('oidc:corp:u-finn');
    expect(entries[1]!.detail).toBe(`approved by finn: erin gets read on training until ${ok.endsAt}; reason: "for the Q4 eval"`);
  });

  test('the requester cannot approve their own request, nor can someone who is no approver; each refusal is audited', async () => {
    const { request } = await createRequest(world, state, {
      requester: 'finn',
      dataset: 'training',
      access: 'read',
      duration: '1d',
      reason: 'x',
      via: 'finn@cli',
      now: T0,
    });
    const self = await approveRequest(world, state, { id: request.id, as: 'finn', reason: 'mine', via: 'finn@cli', now: T0 }).catch((e: Error) => e);
    expect(self).toBeInstanceOf(RequestError);
    expect(self).toMatchObject({ kind: 'forbidden', message: `finn cannot approve their own request #${request.id}; another approver must: bob` });
    const outsider = await approveRequest(world, state, { id: request.id, as: 'alice', reason: 'sure', via: 'alice@cli', now: T0 }).catch((e: Error) => e);
    expect(outsider).toMatchObject({
      kind: 'forbidden',
      message: expect.stringMatching(/^alice may not approve read on dataset training: the approvers are bob/),
    });
    expect(await events()).toEqual([
      `request.create request/${request.id} ok`,
      `request.refused request/${request.id} refused`,
      `request.refused request/${request.id} refused`,
    ]);
    expect((await state.request(request.id))?.state).toBe('pending');
    expect(await state.verifyAudit()).toMatchObject({ ok: true });
  });

  test('an approval that would break an invariant is refused with its message, audited, and changes nothing', async () => {
    const { request } = await ask('alice', 'hr');
    const err = await approveRequest(world, state, { id: request.id, as: 'bob', reason: 'ok', via: 'bob@cli', now: T0 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).kind).toBe('conflict');
    expect((err as RequestError).violations).toEqual([
      `invariant hr-only: principal alice gets read on hr through request #${request.id} (approved by bob), and alice is not in group hr`,
    ]);
    expect((err as Error).message).toMatch(/^approving request #\d+ would break an invariant of the spec, so it is refused:\n {2}invariant hr-only: /);
    expect((await state.request(request.id))?.state).toBe('pending');
    expect((await events()).at(-1)).toBe(`request.refused request/${request.id} refused`);
  });

  test('a denial is final; a second decision is a conflict; the requester may cancel only while it is pending or lasts', async () => {
    const { request } = await ask('alice');
    const denied = await denyRequest(world, state, { id: request.id, as: 'bob', reason: 'use the sample set', via: 'bob@cli', now: T0 });
    expect(denied).toMatchObject({ state: 'denied', decision: { by: 'bob', reason: 'use the sample set' } });
    expect(denied.endsAt).toBeUndefined();
    await expect(approveRequest(world, state, { id: request.id, as: 'finn', reason: 'x', via: 'finn@cli', now: T0 })).rejects.toThrow(
      /request #\d+ is denied by bob at .*; only a pending request can be approved/,
    );
    // Nothing denied is merged.
    expect((await mergedSpec(loaded.spec, { scim, requests: state }, T0)).spec.principals.alice!.grants).toEqual([]);

    const second = (await ask('alice', 'training', later(1000))).request;
    await expect(cancelRequest(world, state, { id: second.id, as: 'bob', via: 'bob@cli', now: later(2000) })).rejects.toThrow(
      new RegExp(`only alice, who asked, may cancel request #${second.id}; bob may not`),
    );
    await approveRequest(world, state, { id: second.id, as: 'bob', reason: 'ok', via: 'bob@cli', now: later(2000) });
    const cancelled = await cancelRequest(world, state, { id: second.id, as: 'alice', reason: 'done early', via: 'alice@cli', now: later(HOUR) });
    expect(cancelled).toMatchObject({ state: 'cancelled', decision: { by: 'bob' }, closed: { by: 'alice', reason: 'done early' } });
    expect((await mergedSpec(loaded.spec, { scim, requests: state }, later(HOUR))).spec.principals.alice!.grants).toEqual([]);
  });

  test('asking twice for the same pending access is refused, naming the first request', async () => {
    const { request } = await ask('alice');
    await expect(ask('alice')).rejects.toThrow(new RegExp(`alice already asked for read on dataset training: request #${request.id}, pending since`));
  });
});

describe('listing and expiry', () => {
  test('a principal sees its own requests and those it may decide; expired shows before an apply records it, then is recorded once', async () => {
    const a = (await ask('alice')).request;
    const e = (await ask('erin', 'hr')).request;
    await approveRequest(world, state, { id: a.id, as: 'bob', reason: 'ok', via: 'bob@cli', now: T0 });
    const ids = (rs: { id: number }[]) => rs.map((r) => r.id);
    expect(ids(await listRequests(world, state, T0, { principal: 'alice' }))).toEqual([a.id]);
    // bob approves hr, and approved alice's; finn does neither.
    expect(ids(await listRequests(world, state, T0, { principal: 'bob', pending: true }))).toEqual([e.id]);
    expect(ids(await listRequests(world, state, T0, { principal: 'bob' }))).toEqual([a.id, e.id]);
    expect(ids(await listRequests(world, state, T0, { principal: 'finn' }))).toEqual([]);
    const listed = await listRequests(world, state, T0, { pending: true });
    expect(listed.map((r) => [r.id, r.stateNow, r.approvers])).toEqual([[e.id, 'pending', ['bob']]]);

    // Past alice's end and erin's wait for a decision (7 days): both read as expired.
    const week = later(8 * 24 * HOUR);
    expect((await listRequests(world, state, week)).map((r) => [r.state, r.stateNow])).toEqual([
      ['approved', 'expired'],
      ['pending', 'expired'],
    ]);
    const expired = await expireDue(state, loaded.spec, week, 'ops@cli');
    expect(expired.map((r) => r.id)).toEqual([a.id, e.id]);
    expect(await expireDue(state, loaded.spec, week, 'ops@cli')).toEqual([]);
    expect((await events()).filter((x) => x.startsWith('request.expire'))).toEqual([`request.expire request/${a.id} ok`, `request.expire request/${e.id} ok`]);
    await expect(approveRequest(world, state, { id: e.id, as: 'bob', reason: 'late', via: 'bob@cli', now: week })).rejects.toThrow(
      /request #\d+ is expired at .*; only a pending request can be approved/,
    );
  });
});
