import { describe, expect, test } from 'vitest';
import type { ActualState, DesiredState, Plan, Resource } from '../../src/core/types.js';
import { attrsHash, diff, summarize } from '../../src/plan/diff.js';
import { renderPlanJson, renderPlanText } from '../../src/render/text.js';

const NOW = new Date('2026-11-28T00:00:00Z');
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const PASSWORD = 'correct-horse-battery-staple';

const res = (kind: string, name: string, attrs: Resource['attrs'], extra: Partial<Resource> = {}): Resource => ({
  address: `aws:${kind}/${name}`,
  backend: 'aws',
  kind,
  name,
  attrs,
  immutable: [],
  deps: [],
  ...extra,
});

const doc = (actions: string[]) => ({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: actions, Resource: ['arn:aws:s3:::ai-model-data/*'] }] });
// Meta that a careless backend might fill: it must never reach the text output.
const leakyMeta = { accessKeyId: 'AKIAOLD', createdAt: '2026-01-01T00:00:00Z', secretAccessKey: SECRET, password: PASSWORD };

function samplePlan(): Plan {
  const desired: Record<string, DesiredState> = {
    aws: {
      resources: [
        res('user', 'alice', { path: '/datagrant/' }),
        res('policy', 'dg-user-trainer', { path: '/datagrant/', document: doc(['s3:GetObject', 's3:PutObject']) }, { immutable: ['path'] }),
        res('key', 'trainer', { user: 'trainer', status: 'Active' }, { lifecycle: { rotateAfterSeconds: 86400 } }),
        res('group', 'ml', { path: '/datagrant/new/' }, { immutable: ['path'] }),
      ],
      notices: [{ level: 'warning', message: 'datagrant.yaml:9:50: group g: write access to data expired' }],
    },
  };
  const actual: Record<string, ActualState> = {
    aws: {
      backend: 'aws',
      resources: [
        res('user', 'bob', { path: '/datagrant/' }, { meta: leakyMeta }),
        res('policy', 'dg-user-trainer', { path: '/datagrant/', document: doc(['s3:GetObject']) }, { immutable: ['path'], meta: leakyMeta }),
        res('key', 'trainer', { user: 'trainer', status: 'Active' }, { meta: leakyMeta }),
        res('group', 'ml', { path: '/datagrant/' }, { immutable: ['path'], meta: leakyMeta }),
      ],
    },
  };
  return diff(desired, actual, { now: NOW, specHash: 'h', notices: [{ level: 'info', message: 'principal p: read access to d expires soon' }] });
}

describe('text', () => {
  test('no changes: an explicit "No changes." and no Plan line', () => {
    const plan = diff({ aws: { resources: [], notices: [] } }, {}, { now: NOW, specHash: 'h' });
    expect(renderPlanText(plan)).toBe('No changes. The backends match the spec.\n');
  });

  test('notices are shown before "No changes."', () => {
    const plan = diff(
      { aws: { resources: [], notices: [{ level: 'warning', message: 'w' }] } },
      {},
      { now: NOW, specHash: 'h', notices: [{ level: 'info', message: 'i' }] },
    );
    expect(renderPlanText(plan)).toBe('Note: i\nWarning: w\n\nNo changes. The backends match the spec.\n');
  });

  test('a notice about one object names it', () => {
    const retiring = res('key', 'alice~AKIAOLD', { user: 'alice', status: 'Active' }, { lifecycle: { retireAt: '2026-11-29T00:00:00.000Z' }, meta: leakyMeta });
    const current = res('key', 'alice', { user: 'alice', status: 'Active' });
    const plan = diff({ aws: { resources: [current], notices: [] } }, { aws: { backend: 'aws', resources: [current, retiring] } }, { now: NOW, specHash: 'h' });
    expect(renderPlanText(plan)).toBe(
      'Note: aws:key/alice~AKIAOLD: superseded credential stays valid until 2026-11-29T00:00:00.000Z (rotation grace), then is deleted\n\nNo changes. The backends match the spec.\n',
    );
  });

  test('every kind of change, in the fixed Terraform-like shape', () => {
    const text = renderPlanText(samplePlan());
    expect(text).toBe(
      [
        'Note: principal p: read access to d expires soon',
        'Warning: datagrant.yaml:9:50: group g: write access to data expired',
        '',
        'datagrant will perform the following actions:',
        '',
        '  Legend: + create, ~ update in place, - destroy, -/+ replace',
        '',
        '  # aws:group/ml must be replaced (spec changed: path)',
        '  -/+ aws:group/ml',
        '      ~ path: "/datagrant/" -> "/datagrant/new/"',
        '',
        '  # aws:key/trainer must be replaced (rotation due (older than 1d))',
        '  -/+ aws:key/trainer',
        '      (a new key is issued; the old one stays valid for the rotation grace period)',
        '',
        '  # aws:policy/dg-user-trainer will be updated in place (spec changed: document)',
        '  ~ aws:policy/dg-user-trainer',
        '      ~ document:',
        '          {',
        '            "Statement": [',
        '              {',
        '                "Action": [',
        '        -         "s3:GetObject"',
        '        +         "s3:GetObject",',
        '        +         "s3:PutObject"',
        '                ],',
        '                "Effect": "Allow",',
        '                "Resource": [',
        '                  "arn:aws:s3:::ai-model-data/*"',
        '                ]',
        '              }',
        '            ],',
        '            "Version": "2012-10-17"',
        '          }',
        '',
        '  # aws:user/alice will be created (new in spec)',
        '  + aws:user/alice',
        '      path: "/datagrant/"',
        '',
        '  # aws:user/bob will be destroyed (no longer in spec)',
        '  - aws:user/bob',
        '      path: "/datagrant/"',
        '',
        'Plan: 3 to add, 1 to change, 3 to destroy.',
        '',
      ].join('\n'),
    );
  });

  test.each<[string, Resource['attrs'], Resource['attrs'], string[]]>([
    ['a scalar on one line', { path: '/a/' }, { path: '/b/' }, ['      ~ path: "/a/" -> "/b/"']],
    ['an attribute removed', { path: '/a/', note: 'x' }, { path: '/a/' }, ['      ~ note: "x" -> (none)']],
    ['an attribute added', { path: '/a/' }, { path: '/a/', note: 'x' }, ['      ~ note: (none) -> "x"']],
    [
      'a tag added, as a line diff with context',
      { tags: { a: '1', c: '3' } },
      { tags: { a: '1', b: '2', c: '3' } },
      ['      ~ tags:', '          {', '            "a": "1",', '        +   "b": "2",', '            "c": "3"', '          }'],
    ],
    [
      'a value changed inside a structure: removal first',
      { tags: { a: '1' } },
      { tags: { a: '2' } },
      ['      ~ tags:', '          {', '        -   "a": "1"', '        +   "a": "2"', '          }'],
    ],
  ])('update rendering: %s', (_what, before, after, lines) => {
    const plan = diff(
      { aws: { resources: [res('user', 'u', after)], notices: [] } },
      { aws: { backend: 'aws', resources: [res('user', 'u', before)] } },
      { now: NOW, specHash: 'h' },
    );
    const text = renderPlanText(plan);
    expect(text).toContain(`  ~ aws:user/u\n${lines.join('\n')}\n\nPlan: 0 to add, 1 to change, 0 to destroy.\n`);
  });

  test('the Plan line agrees with summarize()', () => {
    const plan = samplePlan();
    const s = summarize(plan);
    expect(renderPlanText(plan)).toContain(`\nPlan: ${s.add} to add, ${s.change} to change, ${s.destroy} to destroy.\n`);
  });

  test.each([
    [1, '1 change reverts drift (edits made outside datagrant).'],
    [2, '2 changes revert drift (edits made outside datagrant).'],
  ])('drift is flagged per change and counted (%i)', (n, line) => {
    const mine = res('user', 'a', { path: '/datagrant/' });
    const extra = res('user', 'z', { path: '/datagrant/' });
    const have = n === 1 ? [mine, extra] : [res('user', 'a', { path: '/elsewhere/' }), extra];
    const plan = diff(
      { aws: { resources: [mine], notices: [] } },
      { aws: { backend: 'aws', resources: have } },
      { now: NOW, specHash: 'h', applied: { [mine.address]: attrsHash(mine) } },
    );
    const text = renderPlanText(plan);
    expect(text).toContain('  # aws:user/z will be destroyed (drift: not made by datagrant)\n');
    expect(text).toContain(`\n${line}\nPlan: `);
  });

  test('colour only when asked, and only as ANSI codes around the change lines', () => {
    const plan = samplePlan();
    expect(renderPlanText(plan)).not.toContain('\u001b[');
    const coloured = renderPlanText(plan, { color: true });
    expect(coloured).toContain('\u001b[32m  + aws:user/alice\u001b[0m');
    expect(coloured).toContain('\u001b[31m  - aws:user/bob\u001b[0m');
    // Stripping the codes gives the plain text back.
    const ansi = new RegExp(`${String.fromCharCode(27)}\\[\\d+m`, 'g');
    expect(coloured.replace(ansi, '')).toBe(renderPlanText(plan));
  });

  test('nothing from meta reaches the text, and no secret-looking field at all', () => {
    for (const color of [false, true]) {
      const text = renderPlanText(samplePlan(), { color });
      for (const s of [SECRET, PASSWORD, 'secretAccessKey', 'password', 'AKIAOLD', 'accessKeyId']) expect(text).not.toContain(s);
    }
  });
});

describe('json', () => {
  test('round-trips: the parsed output is the plan plus its summary', () => {
    const plan = samplePlan();
    const parsed = JSON.parse(renderPlanJson(plan)) as unknown;
    expect(parsed).toEqual({ ...plan, summary: summarize(plan) });
    expect(parsed).toEqual(JSON.parse(JSON.stringify({ ...plan, summary: { add: 3, change: 1, destroy: 3 } })));
  });

  test('an empty plan round-trips with a zero summary', () => {
    const plan = diff({}, {}, { now: NOW, specHash: 'h' });
    expect(JSON.parse(renderPlanJson(plan))).toEqual({ ...plan, summary: { add: 0, change: 0, destroy: 0 } });
  });

  test('is one JSON document ending in a newline', () => {
    const out = renderPlanJson(samplePlan());
    expect(out.endsWith('}\n')).toBe(true);
    expect(() => JSON.parse(out) as unknown).not.toThrow();
  });
});
