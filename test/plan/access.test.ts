import { describe, expect, test } from 'vitest';
import { awsAccessSet, awsSessionRoleName } from '../../src/compile/sessions.js';
import type { AccessReading, ActualAccess } from '../../src/model/access.js';
import { accessReport } from '../../src/plan/access.js';
import { parseSpec } from '../../src/spec/load.js';

const NOW = new Date('2026-12-01T00:00:00Z');

const SPEC = `
version: 1
backends:
  aws: { type: aws, region: us-east-1 }
  wh: { type: postgres, url: postgres://db/x }
datasets:
  train: { backend: aws, bucket: ai-model-data, prefix: training/ }
  hr: { backend: wh, database: app, schema: hr }
groups:
  analysts:
    grants: [{ dataset: hr, access: read }]
principals:
  alice: { type: person, email: a@example.com, grants: [{ dataset: train, access: write }] }
  bob: { type: person, email: b@example.com, groups: [analysts] }
  carol: { type: person, email: c@example.com, credentials: temporary, grants: [{ dataset: train, access: read }] }
  dave: { type: service, grants: [{ dataset: train, access: read, expires: 2026-01-01 }] }
`;
const spec = parseSpec(SPEC, { file: 'datagrant.yaml', env: {}, now: NOW }).spec;

const row = (backend: string, dataset: string, level: ActualAccess['level'], holder: ActualAccess['holder'], via = 'policy'): ActualAccess => ({
  backend,
  dataset,
  level,
  holder,
  paths: [{ via }],
});
const awsUser = (name: string, managed: boolean) => ({
  id: `arn:aws:iam::123456789012:user/${managed ? 'datagrant/' : ''}${name}`,
  kind: 'aws-user' as const,
  name,
  managed,
  ...(managed ? { principal: name } : {}),
});
const reading = (rows: ActualAccess[], usage: AccessReading['usage'] = []): AccessReading => ({ rows, usage, limits: [], requests: 3 });

function report(readings: Record<string, AccessReading>, filters = {}) {
  return accessReport({ spec, specHash: 'h', specFile: 'datagrant.yaml', now: NOW, readings, sessions: [], filters });
}

describe('intended against actual', () => {
  test('a grant the backend holds is both; one it lacks is intended only; access the spec lacks is actual only', () => {
    const r = report({
      aws: reading([
        row('aws', 'train', 'read', awsUser('alice', true)),
        // alice's write is missing in the backend; mallory is nobody's.
        row('aws', 'train', 'read', awsUser('mallory', false), 'inline policy open of user mallory'),
      ]),
      wh: reading([]),
    });
    const find = (who: string, level: string) => r.rows.find((x) => x.who === who && x.level === level && x.dataset === 'train');
    expect(find('alice', 'read')?.status).toBe('both');
    expect(find('alice', 'write')?.status).toBe('intended');
    expect(find('alice', 'admin')).toBeUndefined();
    const m = find('mallory', 'read')!;
    expect(m).toMatchObject({ status: 'actual', managed: false, actual: [{ via: 'inline policy open of user mallory' }] });
    expect(m.principal).toBeUndefined();
  });

  test('an unmanaged holder named like a principal is not taken for it', () => {
    const r = report({ aws: reading([row('aws', 'train', 'write', awsUser('alice', false))]), wh: reading([]) });
    const writes = r.rows.filter((x) => x.dataset === 'train' && x.level === 'write');
    expect(writes.map((x) => [x.who, x.status, x.managed]).sort()).toEqual([
      ['alice', 'actual', false],
      ['alice', 'intended', true],
    ]);
  });

  test('an expired grant is intended nowhere', () => {
    const r = report({ aws: reading([]), wh: reading([]) });
    expect(r.rows.filter((x) => x.who === 'dave')).toEqual([]);
  });

  test("an access-set role's access is the temporary principals' it serves", () => {
    const role = awsSessionRoleName(awsAccessSet(spec, 'aws', 'carol', NOW));
    const r = report({
      // Named as the AWS reader names it: `role/<name>`, by the ARN's last segment.
      aws: reading([row('aws', 'train', 'read', { id: `arn:aws:iam::1:role/datagrant/${role}`, kind: 'aws-role', name: `role/${role}`, managed: true })]),
      wh: reading([]),
    });
    const carol = r.rows.find((x) => x.who === 'carol')!;
    expect(carol.status).toBe('both');
    expect(carol.actual[0]!.via).toContain(`sessions of role/${role}`);
  });

  test("a managed group role's rows are its members', and are not repeated as the group's", () => {
    const r = report({
      aws: reading([]),
      wh: reading([
        row('wh', 'hr', 'read', { id: 'analysts', kind: 'pg-role', name: 'analysts', managed: true }),
        row('wh', 'hr', 'read', { id: 'bob', kind: 'pg-role', name: 'bob', managed: true, principal: 'bob' }, 'member of role analysts'),
        row('wh', 'hr', 'read', { id: 'PUBLIC', kind: 'pg-public', name: 'PUBLIC', managed: false }, 'GRANT SELECT ON hr.t TO PUBLIC'),
      ]),
    });
    const hr = r.rows.filter((x) => x.dataset === 'hr');
    expect(hr.map((x) => [x.who, x.status]).sort()).toEqual([
      ['PUBLIC', 'actual'],
      ['bob', 'both'],
    ]);
    expect(hr.find((x) => x.who === 'bob')!.intended[0]).toMatchObject({ via: 'group analysts', path: 'groups.analysts.grants[0]' });
  });
});

describe('filters and last use', () => {
  const usage = (holder: string, lastUsedAt: string | null, createdAt: string, principal?: string) => ({
    backend: 'aws',
    holder,
    credential: `AKIA${holder.length}`,
    createdAt,
    lastUsedAt,
    ...(principal ? { principal } : {}),
  });
  const mallory = awsUser('mallory', false);
  const readings = () => ({
    aws: reading(
      [row('aws', 'train', 'read', awsUser('alice', true)), row('aws', 'train', 'write', awsUser('alice', true)), row('aws', 'train', 'read', mallory)],
      [usage(awsUser('alice', true).id, '2026-11-30T00:00:00Z', '2026-01-01T00:00:00Z', 'alice'), usage(mallory.id, null, '2026-01-01T00:00:00Z')],
    ),
    wh: reading([]),
  });

  test('--unused keeps rows whose credentials were not used within the window, never those of unknown use', () => {
    const r = report(readings(), { unused: '90d' });
    expect([...new Set(r.rows.map((x) => x.who))]).toEqual(['mallory']);
    expect(r.rows[0]!.lastUsedAt).toBeNull();
    // bob's use (PostgreSQL) cannot be known: not reported unused.
    expect(r.rows.some((x) => x.who === 'bob')).toBe(false);
  });

  test('a never-used key younger than the window is not unused', () => {
    const r = report(
      { aws: reading([row('aws', 'train', 'read', mallory)], [usage(mallory.id, null, '2026-11-20T00:00:00Z')]), wh: reading([]) },
      { unused: '90d' },
    );
    expect(r.rows).toEqual([]);
  });

  test('--principal matches a principal, or an unmanaged holder by name or ARN; --dataset one dataset', () => {
    expect(new Set(report(readings(), { principal: 'alice' }).rows.map((x) => x.who))).toEqual(new Set(['alice']));
    expect(report(readings(), { principal: mallory.id }).rows.map((x) => x.who)).toEqual(['mallory']);
    expect(new Set(report(readings(), { dataset: 'hr' }).rows.map((x) => x.dataset))).toEqual(new Set(['hr']));
  });
});

describe('knownAccess', () => {
  const withKnown = parseSpec(
    `${SPEC}knownAccess:
  bootstrap:
    backend: wh
    holders: [postgres, "arn:aws:iam::*:role/Admin*"]
    access: write
    reason: the bootstrap superuser, break-glass only
`,
    { file: 'datagrant.yaml', env: {}, now: NOW },
  ).spec;
  const superuser = { id: 'postgres', kind: 'pg-role' as const, name: 'postgres', managed: false };

  test('marks the unmanaged access it accepts, on its backend only', () => {
    const r = accessReport({
      spec: withKnown,
      specHash: 'h',
      specFile: 'datagrant.yaml',
      now: NOW,
      sessions: [],
      readings: {
        wh: reading([
          row('wh', 'hr', 'write', superuser, 'superuser'),
          row('wh', 'hr', 'admin', superuser, 'superuser'),
          row('wh', 'hr', 'read', { ...superuser, id: 'postgres2', name: 'postgres2' }),
        ]),
        // The same name on another backend is not accepted: the entry names backend wh (and an IAM user
        // is matched by its ARN, never by its bare name).
        aws: reading([row('aws', 'train', 'read', { ...awsUser('postgres', false) })]),
      },
    });
    const by = (who: string, backend: string, level = 'write') =>
      r.rows.find((x) => x.who === who && x.backend === backend && (backend !== 'wh' || x.level === level))!;
    expect(by('postgres', 'wh').known).toEqual({ name: 'bootstrap', reason: 'the bootstrap superuser, break-glass only' });
    // Above the level the entry accepts, the access is a difference.
    expect(by('postgres', 'wh', 'admin').known).toBeUndefined();
    expect(by('postgres2', 'wh', 'read').known).toBeUndefined();
    expect(by('postgres', 'aws').known).toBeUndefined();
  });

  test('a pattern whose own name is only wildcards, an unknown backend or dataset, no level: spec errors with their position', () => {
    const bad = `${SPEC}knownAccess:
  all:
    backend: nowhere
    holders: ["*", "arn:aws:iam::123456789012:role/*"]
    datasets: [nope]
    access: read
    reason: x
`;
    let message = '';
    try {
      parseSpec(bad, { file: 'datagrant.yaml', env: {}, now: NOW });
    } catch (e) {
      message = (e as Error).message;
    }
    const noLevel = `${SPEC}knownAccess:\n  x: { backend: wh, holders: [postgres], reason: y }\n`;
    expect(() => parseSpec(noLevel, { file: 'datagrant.yaml', env: {}, now: NOW })).toThrow(
      /datagrant\.yaml:\d+:\d+: knownAccess\.x: missing key "access"|knownAccess\.x.*access/,
    );
    expect(message).toMatch(/backend "nowhere" is not defined/);
    expect(message).toMatch(/holder "\*" would accept every holder, including/);
    expect(message).toMatch(/holder "arn:aws:iam::123456789012:role\/\*" would accept every holder of that kind/);
    expect(message).toMatch(/dataset "nope" is not defined/);
  });
});

describe("PostgreSQL roles that claim to be datagrant's", () => {
  const login = (name: string, sessionOf: string) => ({ id: name, kind: 'pg-role' as const, name, managed: true, sessionOf });
  const run = (rows: ActualAccess[], sessions: { backend: string; principal: string; target: string; lastIssuedAt: string; expiresAt: string }[]) =>
    accessReport({ spec, specHash: 'h', specFile: 'datagrant.yaml', now: NOW, readings: { wh: reading(rows), aws: reading([]) }, sessions });

  test('a session login the session log records counts as its principal', () => {
    const r = run(
      [row('wh', 'hr', 'read', login('bob~a1b2c3', 'bob'), 'member of role analysts')],
      [{ backend: 'wh', principal: 'bob', target: 'bob~a1b2c3', lastIssuedAt: '2026-11-30T23:00:00Z', expiresAt: '2026-12-01T01:00:00Z' }],
    );
    expect(r.rows.filter((x) => x.dataset === 'hr').map((x) => [x.who, x.status, x.managed])).toEqual([['bob', 'both', true]]);
  });

  test("one the log does not record (a copied marker) is someone else's access, shown as such", () => {
    const r = run([row('wh', 'hr', 'read', login('bob~forged', 'bob'), 'member of role analysts')], []);
    const forged = r.rows.find((x) => x.who === 'bob~forged')!;
    expect(forged).toMatchObject({ status: 'actual', managed: false });
    expect(forged.actual[0]!.via).toContain('claims to be a session login of bob, which the session log does not record');
    // bob's own grant is still intended only: the forged login did not stand in for it.
    expect(r.rows.find((x) => x.who === 'bob' && x.dataset === 'hr')!.status).toBe('intended');
  });

  test("a marked role that is no principal or group of the spec is not datagrant's", () => {
    const r = run([row('wh', 'hr', 'read', { id: 'stray', kind: 'pg-role', name: 'stray', managed: true })], []);
    expect(r.rows.find((x) => x.who === 'stray')).toMatchObject({ status: 'actual', managed: false });
  });
});
