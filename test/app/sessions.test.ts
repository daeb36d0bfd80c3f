// The session broker: who gets a session, how long it lasts, what the state keeps of it, and that
// drivers are made once and kept. The backend is a fake that answers as the real drivers do.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { createSessionBroker, SessionsUnsupportedError, type LocalSessionBroker } from '../../src/app/sessions.js';
import { SessionRefusedError, type AwsSession, type PostgresSession } from '../../src/app/sessions-port.js';
import { specSchema, type Spec, type SpecInput } from '../../src/spec/schema.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { FakeBackend, FakeSessionBackend } from '../support/fake-backend.js';

const T0 = new Date('2026-11-30T12:00:00Z');

const makeSpec = (principals: SpecInput['principals'], backends?: SpecInput['backends']): Spec =>
  specSchema.parse({
    version: 1,
    settings: { maxSession: '2h' },
    backends: backends ?? { aws: { type: 'aws' }, wh: { type: 'postgres', url: 'postgres://h/db' } },
    datasets: {
      train: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' },
      evals: { backend: 'aws', bucket: 'ai-model-data', prefix: 'eval/' },
      feats: { backend: 'wh', database: 'db', schema: 'features' },
    },
    groups: { researchers: { grants: [{ dataset: 'train', access: 'read' }] }, analysts: { grants: [{ dataset: 'feats', access: 'read' }] } },
    principals,
  });

const principals: SpecInput['principals'] = {
  alice: { type: 'person', credentials: 'temporary', groups: ['researchers', 'analysts'] },
  bob: { type: 'person', credentials: 'temporary', groups: ['researchers'], maxSession: '4h' },
  carol: {
    type: 'person',
    credentials: 'temporary',
    groups: ['researchers'],
    grants: [{ dataset: 'evals', access: 'write', expires: '2026-11-30T12:10:00Z' }],
  },
  dave: { type: 'person', groups: ['researchers'] },
  erin: { type: 'person', credentials: 'temporary', grants: [{ dataset: 'evals', access: 'read', expires: '2026-11-01' }] },
  frank: { type: 'person', credentials: 'temporary', grants: [{ dataset: 'evals', access: 'read', expires: '2026-11-30T12:00:00.600Z' }] },
};

let clock: Date;
let spec: Spec;
let store: SqliteStore;
let made: Backend[];
let broker: LocalSessionBroker;
let makeDriver: (name: string, type: string) => Backend;

const advance = (ms: number) => (clock = new Date(clock.getTime() + ms));

beforeEach(() => {
  clock = T0;
  spec = makeSpec(principals);
  store = new SqliteStore(':memory:', MasterKey.parse('a'.repeat(64)));
  made = [];
  makeDriver = (name, type) => new FakeSessionBackend(name, type === 'aws' ? 'aws' : 'postgres', () => clock);
  broker = createSessionBroker({
    spec: async () => spec,
    store: async () => store,
    makeBackend: (name, b) => {
      const d = makeDriver(name, b.type);
      made.push(d);
      return d;
    },
    now: () => clock,
  });
});

afterEach(async () => {
  await broker.close();
  await store.close();
});

const driver = (name: string) => made.find((d) => d.name === name) as FakeSessionBackend;

describe('an AWS session', () => {
  test('runs as the access set role for maxSession, and the state records it without secrets', async () => {
    const s = (await broker.issue({ backend: 'aws', principal: 'alice', source: 'cli' })) as AwsSession;
    expect(s).toEqual({
      kind: 'aws',
      accessKeyId: expect.stringMatching(/^ASIA/),
      secretAccessKey: expect.any(String),
      sessionToken: expect.stringMatching(/^FwoG/),
      expiration: '2026-11-30T14:00:00.000Z',
    });
    expect(driver('aws').sessionRequests).toEqual([{ principal: 'alice', target: expect.stringMatching(/^dg-s-[0-9a-f]{12}$/), durationSeconds: 7200 }]);
    const records = await store.sessions();
    expect(records).toEqual([
      {
        backend: 'aws',
        principal: 'alice',
        target: driver('aws').sessionRequests[0]!.target,
        lastIssuedAt: T0.toISOString(),
        expiresAt: '2026-11-30T14:00:00.000Z',
      },
    ]);
    for (const secret of driver('aws').secrets) expect(JSON.stringify(records)).not.toContain(secret);
  });

  test("the principal's own maxSession caps it", async () => {
    const s = (await broker.issue({ backend: 'aws', principal: 'bob', source: 'oidc', subject: 'u-bob', issuer: 'corp' })) as AwsSession;
    expect(driver('aws').sessionRequests[0]!.durationSeconds).toBe(4 * 3600);
    expect(s.expiration).toBe('2026-11-30T16:00:00.000Z');
  });

  test('a grant ending in 10 minutes: asked for 600 s, Expiration in 10 minutes, recorded until the backend ends it', async () => {
    const d = await broker.issueDetailed({ backend: 'aws', principal: 'carol', source: 'cli' });
    expect(d.durationSeconds).toBe(600);
    expect(driver('aws').sessionRequests[0]!.durationSeconds).toBe(600);
    // STS issues 15 minutes at least; the caller is told the grant's end.
    expect((d.session as AwsSession).expiration).toBe('2026-11-30T12:10:00.000Z');
    expect((await store.sessions())[0]!.expiresAt).toBe('2026-11-30T12:15:00.000Z');
  });

  test('the issue instant recorded is taken after the backend answered (revocation covers the session)', async () => {
    const fake = new FakeSessionBackend('aws', 'aws', () => clock);
    const slow = Object.assign(Object.create(fake) as FakeSessionBackend, {
      issueSession: async (req: Parameters<FakeSessionBackend['issueSession']>[0]) => {
        const res = await fake.issueSession(req);
        advance(2500);
        return res;
      },
    });
    makeDriver = () => slow;
    await broker.issue({ backend: 'aws', principal: 'alice', source: 'cli' });
    expect((await store.sessions())[0]!.lastIssuedAt).toBe('2026-11-30T12:00:02.500Z');
  });
});

describe('a PostgreSQL session', () => {
  test('is a login role valid until the session ends, recorded under its own name', async () => {
    const s = (await broker.issue({ backend: 'wh', principal: 'alice', source: 'cli' })) as PostgresSession;
    expect(s).toEqual({
      kind: 'postgres',
      user: expect.stringMatching(/^alice_s_/),
      password: expect.any(String),
      host: 'db.internal',
      port: 5432,
      database: 'warehouse',
      validUntil: '2026-11-30T14:00:00.000Z',
    });
    expect(driver('wh').sessionRequests).toEqual([{ principal: 'alice', target: 'alice', durationSeconds: 7200 }]);
    expect(await store.sessions()).toEqual([
      { backend: 'wh', principal: 'alice', target: s.user, lastIssuedAt: T0.toISOString(), expiresAt: '2026-11-30T14:00:00.000Z' },
    ]);
  });
});

describe('refusals', () => {
  const others = Object.keys(principals);
  test.each([
    ['mallory', 'aws', 'unknown-principal', 'there is no principal "mallory"'],
    ['alice', 'nowhere', 'unknown-backend', 'there is no backend "nowhere"'],
    ['dave', 'aws', 'not-temporary', 'principal "dave" has a long-lived key'],
    ['erin', 'aws', 'no-access', 'principal "erin" has no unexpired grant on backend "aws"'],
    ['bob', 'wh', 'no-access', 'principal "bob" has no unexpired grant on backend "wh"'],
    // Its grant ends in 0.6 s: no whole second of session is left.
    ['frank', 'aws', 'no-access', 'principal "frank" has no unexpired grant on backend "aws"'],
  ])('%s on %s: %s', async (principal, backend, reason, message) => {
    const e = await broker.issue({ backend, principal, source: 'cli' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SessionRefusedError);
    expect((e as SessionRefusedError).reason).toBe(reason);
    expect((e as Error).message).toContain(message);
    for (const other of others.filter((o) => o !== principal)) expect((e as Error).message).not.toContain(other);
    expect(made.flatMap((d) => (d as FakeSessionBackend).sessionRequests)).toEqual([]);
    expect(await store.sessions()).toEqual([]);
  });

  test('a grant that has expired since the previous session is refused at the next', async () => {
    await broker.issue({ backend: 'aws', principal: 'carol', source: 'cli' });
    advance(10 * 60_000);
    // carol keeps her group's grant on train; her direct grant is gone, so her role is another.
    const first = driver('aws').sessionRequests[0]!.target;
    await broker.issue({ backend: 'aws', principal: 'carol', source: 'cli' });
    expect(driver('aws').sessionRequests[1]).toEqual({ principal: 'carol', target: expect.not.stringMatching(first), durationSeconds: 7200 });
    spec = makeSpec({ ...principals, carol: { ...principals.carol!, groups: [] } });
    const e = await broker.issue({ backend: 'aws', principal: 'carol', source: 'cli' }).catch((x: unknown) => x);
    expect((e as SessionRefusedError).reason).toBe('no-access');
  });

  test('a backend whose driver issues no sessions is named with its type', async () => {
    makeDriver = (name) => new FakeBackend(name);
    const e = await broker.issue({ backend: 'aws', principal: 'alice', source: 'cli' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SessionsUnsupportedError);
    expect((e as Error).message).toBe('temporary credentials are not supported on backend type fake (backend "aws")');
    expect(await store.sessions()).toEqual([]);
  });

  test('a session the backend fails to issue is not recorded, and the failure passes through', async () => {
    await broker.issue({ backend: 'aws', principal: 'alice', source: 'cli' });
    driver('aws').failWith = new Error('AccessDenied: not authorized to perform sts:AssumeRole');
    advance(60_000);
    await expect(broker.issue({ backend: 'aws', principal: 'alice', source: 'cli' })).rejects.toThrow(/AccessDenied/);
    expect((await store.sessions()).map((r) => r.lastIssuedAt)).toEqual([T0.toISOString()]);
  });
});

describe('drivers', () => {
  test('are made once per backend and reused, also by concurrent requests', async () => {
    await Promise.all([
      broker.issue({ backend: 'aws', principal: 'alice', source: 'cli' }),
      broker.issue({ backend: 'aws', principal: 'bob', source: 'cli' }),
      broker.issue({ backend: 'wh', principal: 'alice', source: 'cli' }),
    ]);
    await broker.issue({ backend: 'aws', principal: 'carol', source: 'cli' });
    expect(made.map((d) => d.name).sort()).toEqual(['aws', 'wh']);
    expect(
      driver('aws')
        .sessionRequests.map((r) => r.principal)
        .sort(),
    ).toEqual(['alice', 'bob', 'carol']);
  });

  test('a backend whose spec changed gets a new driver; close closes every one', async () => {
    const closed: Backend[] = [];
    makeDriver = (name, type) => {
      const d = new FakeSessionBackend(name, type === 'aws' ? 'aws' : 'postgres', () => clock);
      d.close = async () => void closed.push(d);
      return d;
    };
    await broker.issue({ backend: 'aws', principal: 'alice', source: 'cli' });
    spec = makeSpec(principals, { aws: { type: 'aws', region: 'eu-west-1' }, wh: { type: 'postgres', url: 'postgres://h/db' } });
    await broker.issue({ backend: 'aws', principal: 'alice', source: 'cli' });
    expect(made).toHaveLength(2);
    expect(closed).toEqual([]);
    await broker.close();
    expect(closed).toHaveLength(2);
    expect(new Set(closed)).toEqual(new Set(made));
  });
});
