import { describe, expect, test } from 'vitest';
import { idlePrincipals } from '../../src/compile/unused.js';
import { parseSpec } from '../../src/spec/load.js';

const NOW = new Date('2026-12-01T00:00:00Z');
const spec = (settings: string) =>
  parseSpec(
    `version: 1
${settings}
backends: { aws: { type: aws }, wh: { type: postgres, url: postgres://db/x } }
datasets:
  d: { backend: aws, bucket: ai-model-data }
  t: { backend: wh, database: app, schema: s }
principals:
  a: { type: service, grants: [{ dataset: d, access: read }] }
  b: { type: service, grants: [{ dataset: d, access: read }] }
  c: { type: service, grants: [{ dataset: d, access: read }] }
  s: { type: person, credentials: temporary, grants: [{ dataset: d, access: read }] }
  p: { type: service, grants: [{ dataset: t, access: read }] }
`,
    { file: 'datagrant.yaml', env: {}, now: NOW },
  ).spec;
const use = (principal: string, createdAt: string, lastUsedAt: string | null) => ({ principal, credential: `AKIA${principal}`, createdAt, lastUsedAt });

describe('settings.expireUnused', () => {
  const usage = {
    aws: [
      use('a', '2026-01-01T00:00:00Z', '2026-08-01T00:00:00Z'), // last used 122 days ago
      use('b', '2026-01-01T00:00:00Z', '2026-11-20T00:00:00Z'), // used 11 days ago
      use('c', '2026-11-01T00:00:00Z', null), // never used, but issued 30 days ago
    ],
  };

  test('idle: every key last used, or never used and issued, before the limit; unknown use never counts', () => {
    const v = idlePrincipals(spec('settings: { expireUnused: 90d }'), usage, NOW);
    expect([...(v.idle.aws ?? [])]).toEqual(['a']);
    expect(v.notices.map((n) => n.message)).toEqual([
      expect.stringMatching(
        /^principal a: its grants on backend aws expire and its key is deactivated: last used on 2026-08-01, longer ago than settings\.expireUnused \(90d\)/,
      ),
      expect.stringMatching(/backend wh \(postgres\) records no use of its credentials/),
    ]);
    // A read that learnt nothing (no report) expires nothing.
    expect(idlePrincipals(spec('settings: { expireUnused: 90d }'), {}, NOW).idle).toEqual({});
  });

  test('a rotation asked for now exempts the principal; without the setting nothing is idle', () => {
    expect(idlePrincipals(spec('settings: { expireUnused: 90d }'), usage, NOW, new Set(['a'])).idle).toEqual({});
    expect(idlePrincipals(spec(''), usage, NOW)).toEqual({ idle: {}, notices: [] });
  });

  test('a limit under a day is refused with its position', () => {
    expect(() => spec('settings: { expireUnused: 90m }')).toThrow(/datagrant\.yaml:2:\d+.*expireUnused.*is too short; expireUnused is at least 1d/);
  });
});

describe('settings.expireUnused, unknown use', () => {
  test('a key whose use the read could not tell keeps the principal, however old its other key', () => {
    // The report was cached before `credentials rotate` issued the new key: only the old key is in it.
    const usage = {
      aws: [
        { principal: 'a', credential: 'AKIAOLD', createdAt: '2026-01-01T00:00:00Z', lastUsedAt: '2026-02-01T00:00:00Z' },
        { principal: 'a', credential: 'AKIANEW', createdAt: '2026-11-30T23:00:00Z' },
      ],
    };
    expect(idlePrincipals(spec('settings: { expireUnused: 90d }'), usage, NOW).idle).toEqual({});
  });
});
