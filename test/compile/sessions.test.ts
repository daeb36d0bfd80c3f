// Which session a principal gets: refusals that speak only of the asker, roles shared by access set.
import { describe, expect, test } from 'vitest';
import { nextChangeAt, sessionTarget } from '../../src/compile/index.js';
import { specSchema, type SpecInput } from '../../src/spec/schema.js';

const NOW = new Date('2026-11-30T12:00:00Z');
const spec = (principals: SpecInput['principals'], settings?: SpecInput['settings']) =>
  specSchema.parse({
    version: 1,
    ...(settings ? { settings } : {}),
    backends: { aws: { type: 'aws' }, wh: { type: 'postgres', url: 'postgres://h/db' } },
    datasets: {
      train: { backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' },
      evals: { backend: 'aws', bucket: 'ai-model-data', prefix: 'eval/' },
      feats: { backend: 'wh', database: 'db', schema: 'features' },
    },
    groups: { researchers: { grants: [{ dataset: 'train', access: 'read' }] }, analysts: { grants: [{ dataset: 'feats', access: 'read' }] } },
    principals,
  });

describe('sessionTarget', () => {
  const s = spec(
    {
      alice: { type: 'person', credentials: 'temporary', groups: ['researchers'] },
      bob: { type: 'person', credentials: 'temporary', groups: ['researchers', 'analysts'], maxSession: '4h' },
      carol: {
        type: 'person',
        credentials: 'temporary',
        groups: ['researchers'],
        grants: [{ dataset: 'evals', access: 'write', expires: '2026-11-30T12:10:00Z' }],
      },
      dave: { type: 'person', groups: ['researchers'] },
      erin: { type: 'person', credentials: 'temporary', grants: [{ dataset: 'evals', access: 'read', expires: '2026-11-01' }] },
    },
    { maxSession: '2h' },
  );

  test('principals with the same access set share a role; another set gets another', () => {
    const a = sessionTarget(s, 'aws', 'alice', NOW);
    const b = sessionTarget(s, 'aws', 'bob', NOW);
    const c = sessionTarget(s, 'aws', 'carol', NOW);
    // bob's other group grants nothing on aws, so on aws his access is alice's.
    expect(a).toEqual({ target: expect.stringMatching(/^dg-s-[0-9a-f]{12}$/), maxSeconds: 7200 });
    expect(b).toEqual({ target: (a as { target: string }).target, maxSeconds: 4 * 3600 });
    expect(c).toMatchObject({ target: expect.stringMatching(/^dg-s-/), maxSeconds: 7200, endsAt: '2026-11-30T12:10:00.000Z' });
    expect((c as { target: string }).target).not.toBe((a as { target: string }).target);
  });

  test('on PostgreSQL the session joins the principal role', () => {
    expect(sessionTarget(s, 'wh', 'bob', NOW)).toEqual({ target: 'bob', maxSeconds: 4 * 3600 });
  });

  test.each([
    ['zed', 'aws', 'unknown-principal', /^there is no principal "zed"$/],
    ['alice', 'gcp', 'unknown-backend', /^there is no backend "gcp"$/],
    ['dave', 'aws', 'not-temporary', /^principal "dave" has a long-lived key, not sessions/],
    ['alice', 'wh', 'no-access', /^principal "alice" has no unexpired grant on backend "wh"$/],
    ['erin', 'aws', 'no-access', /^principal "erin" has no unexpired grant on backend "aws"$/],
  ])('%s on %s is refused: %s', (principal, backend, reason, message) => {
    const r = sessionTarget(s, backend, principal, NOW);
    expect(r).toEqual({ refused: reason, message: expect.stringMatching(message) });
  });
});

describe('nextChangeAt: when the desired state next changes by itself', () => {
  const s = spec({
    alice: { type: 'person', grants: [{ dataset: 'feats', access: 'read', expires: '2026-11-30T18:00:00Z' }] },
    bob: { type: 'person', credentials: 'temporary', grants: [{ dataset: 'feats', access: 'read', expires: '2026-11-29' }] },
  });
  const fact = (expiresAt: string) => ({ backend: 'wh', principal: 'bob', target: 'bob~x', lastIssuedAt: '2026-11-30T11:00:00Z', expiresAt });

  test('the earliest future grant expiry or session end; past ones do not count', () => {
    expect(nextChangeAt(s, [], NOW)?.toISOString()).toBe('2026-11-30T18:00:00.000Z');
    expect(nextChangeAt(s, [fact('2026-11-30T12:30:00Z'), fact('2026-11-30T11:59:00Z')], NOW)?.toISOString()).toBe('2026-11-30T12:30:00.000Z');
    expect(nextChangeAt(spec({}), [fact('2026-11-30T11:00:00Z')], NOW)).toBeUndefined();
  });
});
