// The console's pages and charts as rendered on the server: escaping of every value that comes from
// people (names, reasons), the matrix's data (highest level, its end), the charts' buckets, and
// that no page carries inline script or style (the CSP forbids both).
import { describe, expect, test } from 'vitest';
import type { IntendedAccess } from '../../src/model/access.js';
import type { AccessRequest } from '../../src/model/request.js';
import { expiringBars, keyAgeBars } from '../../src/render/console-charts.js';
import { matrixData, overviewPage, principalPage, requestsPage, signInPage, type Viewer } from '../../src/render/console.js';

const NOW = new Date('2026-12-01T00:00:00Z');
const person: Viewer = { kind: 'person', name: 'bob', actor: 'oidc:corp:u-bob', csrf: 'tok"en<' };
const grant = (principal: string, dataset: string, level: 'read' | 'write' | 'admin', expires?: string): IntendedAccess => ({
  backend: 'aws',
  principal,
  dataset,
  level,
  via: 'direct grant',
  path: `principals.${principal}.grants[0]`,
  ...(expires ? { expires } : {}),
});

describe('matrixData', () => {
  test('a cell holds the highest level, with the latest end of that level (none when one has none)', () => {
    const d = matrixData(
      ['alice', 'bob'],
      ['eval', 'train'],
      [
        grant('alice', 'train', 'read'),
        grant('alice', 'train', 'write', '2026-12-10T00:00:00.000Z'),
        grant('alice', 'train', 'write', '2026-12-20T00:00:00.000Z'),
        grant('bob', 'eval', 'read', '2026-12-05T00:00:00.000Z'),
        grant('bob', 'eval', 'read'),
        grant('carol', 'eval', 'admin'),
      ],
      NOW,
    );
    const cells = [];
    for (let i = 0; i < d.cells.length; i += 4) cells.push(d.cells.slice(i, i + 4));
    expect(cells).toEqual([
      [0, 1, 2, Date.parse('2026-12-20T00:00:00Z') / 1000],
      [1, 0, 1, 0],
    ]);
  });
});

describe('charts', () => {
  test('grants ending in the next 13 weeks, by week; past and later ends are left out', () => {
    const bars = expiringBars(['2026-11-30T00:00:00Z', '2026-12-01T01:00:00Z', '2026-12-08T00:00:01Z', '2027-02-28T00:00:00Z', '2027-06-01T00:00:00Z'], NOW);
    expect(bars).toHaveLength(13);
    expect(bars.map((b) => b.value)).toEqual([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(bars[0]!.title).toBe('1 grant ends in the week from 2026-12-01');
  });

  test('keys by age band', () => {
    const bars = keyAgeBars(['2026-11-30T00:00:00Z', '2026-10-01T00:00:00Z', '2024-01-01T00:00:00Z'], NOW);
    expect(bars.map((b) => `${b.label}=${b.value}`)).toEqual(['< 7 d=1', '7–30 d=0', '30–90 d=1', '90–180 d=0', '180–365 d=0', '> 1 y=1']);
  });
});

describe('pages', () => {
  const request: AccessRequest = {
    id: 7,
    requester: 'alice',
    dataset: 'train',
    level: 'read',
    duration: '1h',
    reason: '<script>alert(1)</script> & "quotes"',
    state: 'pending',
    requestedAt: '2026-12-01T00:00:00.000Z',
    requestedVia: 'oidc:corp:u-alice',
    auditSeq: 3,
  };

  test('what people wrote is escaped, and every form carries the CSRF token (escaped too)', () => {
    const html = requestsPage(person, { waiting: [request], mine: [], others: [], options: { datasets: [] } });
    expect(html).not.toContain('<script>alert');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;');
    const forms = html.match(/<form method="post"[\s\S]*?<\/form>/g) ?? [];
    expect(forms.length).toBeGreaterThanOrEqual(2);
    for (const f of forms) expect(f).toContain('<input type="hidden" name="_csrf" value="tok&quot;en&lt;">');
    expect(html).toContain('Approve #7');
  });

  test('no page carries inline script or style', () => {
    const pages = [
      signInPage({ admin: true, next: '/ui', issuer: { name: 'corp', href: '/ui/signin/oidc' } }),
      overviewPage(person, { now: NOW, principals: 2, datasets: 1, grants: 1, waiting: 0, grantEnds: ['2026-12-03T00:00:00Z'], keyCreated: [], keysOf: 'own' }),
      requestsPage(person, {
        waiting: [request],
        mine: [request],
        others: [],
        options: { datasets: [{ name: 'train', levels: ['read'], approvers: ['bob'] }] },
      }),
      principalPage(person, { name: 'alice', type: 'person', groups: [], access: [grant('alice', 'train', 'read')] }),
    ];
    for (const html of pages) {
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
      expect(html).not.toMatch(/\sstyle=/);
      expect(html).not.toMatch(/\son[a-z]+=/);
    }
  });

  test("another person's page says whose credentials are hidden, and has none", () => {
    const html = principalPage(person, { name: 'alice', type: 'person', groups: ['ml'], access: [] });
    expect(html).toContain('Credentials and history are shown only to alice and to operators.');
    expect(html).not.toContain('<h2>History</h2>');
  });
});
