// `approvers:` and `settings.requests` as the spec reads them: on a dataset and as top-level
// rules; every mistake is one problem at its own line and column, naming what is allowed; and
// approversOf says who may approve what.
import { describe, expect, test } from 'vitest';
import { SpecError, type SpecProblem } from '../../src/core/errors.js';
import { approversOf } from '../../src/spec/approvers.js';
import { parseSpec } from '../../src/spec/load.js';

const NOW = new Date('2026-06-01T00:00:00Z');
const load = (text: string) => parseSpec(text, { file: 'datagrant.yaml', env: {}, now: NOW });

function problemsOf(text: string): string[] {
  try {
    load(text);
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return (e as SpecError).problems.map((p: SpecProblem) => `${p.line}:${p.column} ${p.path}: ${p.message}`);
  }
  throw new Error('spec loaded, but problems were expected');
}

// Line 12 is `approvers:`; what a test appends there starts on line 13.
const spec = (training = '', rules = '', extra = '') => `version: 1
backends:
  aws: { type: aws }
datasets:
  training: { backend: aws, bucket: ai-model-data${training} }
  features: { backend: aws, bucket: feature-data }
groups:
  owners: {}
principals:
  bob: { type: person, email: bob@example.com, groups: [owners] }
  carol: { type: person, email: carol@example.com }
approvers:
${rules || '  []'}
${extra}`;

describe('approvers that load', () => {
  test('on a dataset and as rules, with their defaults; settings.requests too', () => {
    const { spec: s } = load(
      spec(
        ', approvers: { principals: [carol], access: write }',
        '  - { groups: [owners], datasets: [features] }\n  - { principals: [bob], access: admin, description: break-glass }',
        'settings: { requests: { maxDuration: 14d, decideWithin: 2d } }\n',
      ),
    );
    expect(s.datasets.training!.approvers).toEqual({ principals: ['carol'], access: 'write' });
    expect(s.approvers).toEqual([
      { groups: ['owners'], datasets: ['features'] },
      { principals: ['bob'], access: 'admin', description: 'break-glass' },
    ]);
    expect(s.settings?.requests).toEqual({ maxDuration: '14d', decideWithin: '2d' });
    expect(load(spec()).spec.approvers).toEqual([]);
  });

  test('approversOf: named principals and group members, by the rules that reach the level', () => {
    const { spec: s } = load(spec(', approvers: { principals: [carol], access: write }', '  - { groups: [owners] }'));
    const people = s.principals;
    expect(approversOf(s, people, 'training', 'read')).toMatchObject({ principals: ['bob', 'carol'], maxLevel: 'write' });
    // The group rule lets only read be approved (its default): write is carol's alone.
    expect(approversOf(s, people, 'training', 'write')).toMatchObject({ principals: ['carol'], maxLevel: 'write' });
    expect(approversOf(s, people, 'training', 'admin')).toMatchObject({ principals: [], maxLevel: 'write' });
    expect(approversOf(s, people, 'features', 'read')).toMatchObject({ principals: ['bob'], maxLevel: 'read' });
    // A SCIM person in the group counts; a principal a rule names that does not exist does not.
    const scim = { ...people, dana: { type: 'person' as const, groups: ['owners'], grants: [] } };
    expect(approversOf({ ...s, approvers: [{ principals: ['ghost'], groups: ['owners'] }] }, scim, 'features', 'read').principals).toEqual(['bob', 'dana']);
  });
});

describe('approvers mistakes', () => {
  test.each([
    [
      'a principal that is not defined',
      spec(', approvers: { principals: [carl] }'),
      /^5:78 datasets\.training\.approvers\.principals\[0\]: principal "carl" is not defined; defined principals: bob, carol$/,
    ],
    [
      'a group that is not defined, in a rule',
      spec('', '  - { groups: [owner] }'),
      /^13:16 approvers\[0\]\.groups\[0\]: group "owner" is not defined; defined groups: owners$/,
    ],
    [
      'a dataset that is not defined, in a rule',
      spec('', '  - { datasets: [trainig], principals: [bob] }'),
      /^13:18 approvers\[0\]\.datasets\[0\]: dataset "trainig" is not defined; defined datasets: features, training$/,
    ],
    [
      'a rule that names no one',
      spec('', '  - { datasets: [training] }'),
      /^13:5 approvers\[0\]: approvers must name at least one principal \(principals: \[\.\.\]\) or group \(groups: \[\.\.\]\) who may approve$/,
    ],
    [
      'an empty approvers on a dataset',
      spec(', approvers: { principals: [] }'),
      /^5:63 datasets\.training\.approvers: approvers must name at least one principal/,
    ],
    [
      'a level that is none',
      spec('', '  - { groups: [owners], access: owner }'),
      /^13:33 approvers\[0\]\.access: access "owner" is not a level; allowed: read, write, admin$/,
    ],
    [
      'an unknown key in a rule',
      spec('', '  - { groups: [owners], level: read }'),
      /^13:25 approvers\[0\]\.level: unknown key "level"; allowed: description, datasets, principals, groups, access$/,
    ],
    [
      'a maximum duration that is no duration',
      spec('', '', 'settings: { requests: { maxDuration: a week } }\n'),
      /^14:38 settings\.requests\.maxDuration: must be a duration such as 90d, 24h, 30m or 3600s \(got "a week"\)$/,
    ],
    [
      'an unknown request setting',
      spec('', '', 'settings: { requests: { maxDays: 3 } }\n'),
      /^14:25 settings\.requests\.maxDays: unknown key "maxDays"; allowed: maxDuration, decideWithin$/,
    ],
  ])('%s', (_what, text, message) => {
    const problems = problemsOf(text);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(message);
  });

  test('with a scim: section, a principal the file does not define is a warning: it may be a SCIM person', () => {
    const { notices } = load(spec(', approvers: { principals: [dana] }', '', 'scim: { groups: { "Data Owners": owners } }\n'));
    expect(notices.map((n) => n.message)).toEqual([
      'datagrant.yaml:5:78: approvers of dataset training: principal "dana" is not in the file; unless it is the name of a SCIM person, no one of that name can approve',
    ]);
  });
});
