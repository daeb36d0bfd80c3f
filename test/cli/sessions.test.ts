// `datagrant credentials export NAME` of a temporary principal: a fresh session on stdout (the
// credential_process shape), audited, recorded, and nothing secret on stderr or in the audit log.
// The backend is a fake that answers as the real drivers do, injected where the drivers are made.
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { credentialsExport } from '../../src/cli/commands/credentials.js';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { FakeSessionBackend } from '../support/fake-backend.js';
import { workspace, type Workspace } from '../support/cli.js';

const MASTER_KEY = 'c'.repeat(64);
const T0 = new Date('2026-11-30T12:00:00Z');

const SPEC = `version: 1
settings: { credentials: temporary }
backends:
  aws: { type: aws, endpoint: "http://127.0.0.1:9" }
  wh: { type: postgres, url: "postgres://datagrant@127.0.0.1:9/db" }
datasets:
  train: { backend: aws, bucket: ai-model-data, prefix: training/ }
  evals: { backend: aws, bucket: ai-model-data, prefix: eval/ }
  feats: { backend: wh, database: db, schema: features }
groups:
  researchers: { grants: [{ dataset: train, access: read }] }
principals:
  alice: { type: person, groups: [researchers] }
  carol: { type: person, groups: [researchers], grants: [{ dataset: evals, access: write, expires: "2026-11-30T12:10:00Z" }] }
  erin: { type: person }
  dave: { type: person, credentials: key, groups: [researchers] }
  pat: { type: person, grants: [{ dataset: feats, access: read }] }
`;

let ws: Workspace;
let clock: Date;
let fakes: FakeSessionBackend[];

beforeEach(() => {
  ws = workspace({ DATAGRANT_MASTER_KEY: MASTER_KEY });
  clock = T0;
  ws.now = () => clock;
  ws.writeSpec(SPEC);
  fakes = [];
});

afterEach(() => ws.cleanup());

const exportVia = (name: string, format: string, backend?: string) =>
  ws.call((io) =>
    credentialsExport(io, {
      name,
      format,
      ...(backend ? { backend } : {}),
      backendOptions: {
        wrap: (real) => {
          const fake = new FakeSessionBackend(real.name, real.type === 'aws' ? 'aws' : 'postgres', () => clock);
          fakes.push(fake);
          return fake;
        },
      },
    }),
  );

async function state<T>(fn: (s: SqliteStore) => Promise<T>): Promise<T> {
  const s = new SqliteStore(join(ws.dir, '.datagrant', 'state.db'), MasterKey.parse(MASTER_KEY));
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

describe('an AWS session', () => {
  test('json is the credential_process shape; the issue is audited and recorded, its secrets only on stdout', async () => {
    const r = await exportVia('alice', 'json');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toEqual({
      Version: 1,
      AccessKeyId: expect.stringMatching(/^ASIA/),
      SecretAccessKey: fakes[0]!.secrets[0],
      SessionToken: fakes[0]!.secrets[1],
      Expiration: '2026-11-30T13:00:00.000Z',
    });
    expect(fakes[0]!.sessionRequests).toEqual([{ principal: 'alice', target: expect.stringMatching(/^dg-s-/), durationSeconds: 3600 }]);
    await state(async (s) => {
      const entries = (await s.auditEntries()).filter((e) => e.event.startsWith('session.'));
      expect(entries.map((e) => [e.actor, e.event, e.outcome, e.detail])).toEqual([
        ['test@cli', 'session.issue', 'ok', 'principal alice, backend aws: duration 3600 s until 2026-11-30T13:00:00.000Z, ready in 3 ms, source cli'],
      ]);
      expect(await s.sessions()).toEqual([
        {
          backend: 'aws',
          principal: 'alice',
          target: fakes[0]!.sessionRequests[0]!.target,
          lastIssuedAt: T0.toISOString(),
          expiresAt: '2026-11-30T13:00:00.000Z',
        },
      ]);
      const audit = JSON.stringify(await s.auditEntries());
      for (const secret of fakes[0]!.secrets) expect(audit).not.toContain(secret);
    });
  });

  test('env carries the session token; a grant ending in 10 minutes sets Expiration 10 minutes away', async () => {
    const r = await exportVia('carol', 'env');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `AWS_ACCESS_KEY_ID=${/AWS_ACCESS_KEY_ID=(\S+)/.exec(r.stdout)![1]}\nAWS_SECRET_ACCESS_KEY=${fakes[0]!.secrets[0]}\nAWS_SESSION_TOKEN=${fakes[0]!.secrets[1]}\nAWS_CREDENTIAL_EXPIRATION=2026-11-30T12:10:00.000Z\n`,
    );
    expect(fakes[0]!.sessionRequests[0]!.durationSeconds).toBe(600);
  });

  test('a PostgreSQL format is refused before any session is issued', async () => {
    const r = await ws.run('credentials', 'export', 'alice', '--format', 'pgpass');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: format pgpass does not fit a session on backend aws (type aws); use json, env, aws-profile\n');
    expect(r.stdout).toBe('');
    await state(async (s) => expect(await s.sessions()).toEqual([]));
  });
});

describe('a PostgreSQL session', () => {
  test('as a URL and as JSON, for the backend the principal has access on', async () => {
    const url = await exportVia('pat', 'url');
    expect(url).toMatchObject({ code: 0, stderr: '' });
    const [pg] = fakes.filter((f) => f.name === 'wh');
    expect(pg!.sessionRequests).toEqual([{ principal: 'pat', target: 'pat', durationSeconds: 3600 }]);
    const user = /^postgres:\/\/([^:]+):/.exec(url.stdout)![1];
    expect(user).toMatch(/^pat_s_/);
    expect(url.stdout).toBe(`postgres://${user}:${encodeURIComponent(pg!.secrets[0]!)}@db.internal:5432/warehouse\n`);
    const json = JSON.parse((await exportVia('pat', 'json')).stdout) as Record<string, unknown>;
    expect(json).toEqual({
      user: expect.stringMatching(/^pat_s_/),
      password: expect.any(String),
      host: 'db.internal',
      port: 5432,
      database: 'warehouse',
      validUntil: '2026-11-30T13:00:00.000Z',
    });
  });
});

test('a refusal through the command line: the asker is told of itself only, on stderr; it is audited', async () => {
  const r = await ws.run('credentials', 'export', 'erin', '--format', 'json');
  expect(r).toEqual({ code: 1, stdout: '', stderr: 'Error: principal "erin" has no unexpired grant on any backend\n' });
  const again = await ws.run('credentials', 'export', 'erin', '--format', 'json', '--backend', 'aws');
  expect(again.stderr).toBe('Error: principal "erin" has no unexpired grant on backend "aws"\n');
  await state(async (s) => {
    const entries = (await s.auditEntries()).filter((e) => e.event.startsWith('session.'));
    expect(entries.map((e) => [e.actor, e.event, e.outcome, e.detail])).toEqual([
      ['test@cli', 'session.refused', 'refused', 'principal erin: no-access'],
      ['test@cli', 'session.refused', 'refused', 'principal erin, backend aws: no-access'],
    ]);
    expect(await s.sessions()).toEqual([]);
  });
});

test('a principal with keys still gets its stored key, not a session', async () => {
  const r = await ws.run('credentials', 'export', 'dave', '--format', 'json');
  expect(r).toEqual({ code: 1, stdout: '', stderr: 'Error: no stored credential for "dave"; stored: (none)\n' });
  await state(async (s) => expect((await s.auditEntries()).filter((e) => e.event.startsWith('session.'))).toEqual([]));
});
