// The `invariants:` section as the spec reads it: the four documented kinds load as written; every
// mistake is one problem at its own line and column, naming what is allowed.
import { describe, expect, test } from 'vitest';
import { SpecError, type SpecProblem } from '../../src/core/errors.js';
import { parseSpec } from '../../src/spec/load.js';

const NOW = new Date('2026-06-01T00:00:00Z');
const load = (text: string) => parseSpec(text, { file: 'datagrant.yaml', env: {}, now: NOW });

function problemsOf(text: string): SpecProblem[] {
  try {
    load(text);
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return (e as SpecError).problems;
  }
  throw new Error('spec loaded, but problems were expected');
}

const at = (problems: SpecProblem[]) => problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`);

// Line 10 is `invariants:`; what a test appends starts on line 11.
const BASE = `version: 1
backends:
  aws: { type: aws }
datasets:
  hr-private: { backend: aws, bucket: hr-data }
  features: { backend: aws, bucket: feature-data }
groups:
  hr: { grants: [{ dataset: hr-private, access: read }] }
principals: { carol: { type: person, email: carol@example.com, groups: [hr] } }
invariants:
`;

describe('invariants that load', () => {
  test('the four documented kinds, with their selectors, read as written; the section is optional', () => {
    const { spec } = load(`${BASE}  hr-private-stays-in-hr:
    description: only HR reads HR's data
    datasets: [hr-private]
    access: read
    onlyMembersOf: [hr]
  people-write-expires:
    type: person
    access: write
    expiresWithin: 90d
  admin-spread:
    access: admin
    maxDatasets: 3
  people-have-email:
    type: person
    require: [email]
`);
    expect(spec.invariants).toEqual({
      'hr-private-stays-in-hr': { description: "only HR reads HR's data", datasets: ['hr-private'], access: 'read', onlyMembersOf: ['hr'] },
      'people-write-expires': { type: 'person', access: 'write', expiresWithin: '90d' },
      'admin-spread': { access: 'admin', maxDatasets: 3 },
      'people-have-email': { type: 'person', require: ['email'] },
    });
    expect(load(BASE.replace('invariants:\n', '')).spec.invariants).toEqual({});
  });

  test('onlyMembersOf and onlyPrincipals together are one rule: who may hold the access', () => {
    const { spec } = load(`${BASE}  hr-only: { datasets: [hr-private], onlyMembersOf: [hr], onlyPrincipals: [carol] }\n`);
    expect(spec.invariants['hr-only']).toEqual({ datasets: ['hr-private'], onlyMembersOf: ['hr'], onlyPrincipals: ['carol'] });
  });

  test('maxDatasets: 0 is allowed: no one holds the access at all', () => {
    expect(load(`${BASE}  no-admin: { access: admin, maxDatasets: 0 }\n`).spec.invariants['no-admin']).toEqual({ access: 'admin', maxDatasets: 0 });
  });
});

describe('mistakes in invariants', () => {
  test('every one is reported at once, at its own position, with what is allowed', () => {
    const problems = problemsOf(`${BASE}  typo:
    datasets: [hr-privat]
    onlyMembersOf: [hrr]
  selects-only:
    access: write
  two-rules:
    expiresWithin: 90d
    maxDatasets: 3
  bad-values: { type: robot, access: owner, require: [email, phone] }
  empty: { onlyMembersOf: [], colour: red }
  negative: { maxDatasets: -1 }
  fraction: { maxDatasets: 1.5 }
  unknown-principal: { onlyPrincipals: [mallory] }
  "bad name!": { maxDatasets: 1 }
`);
    expect(at(problems)).toEqual([
      '12:16 invariants.typo.datasets[0]: dataset "hr-privat" is not defined; defined datasets: features, hr-private',
      '13:21 invariants.typo.onlyMembersOf[0]: group "hrr" is not defined; defined groups: hr',
      expect.stringMatching(
        /^15:5 invariants\.selects-only: an invariant states one rule, and this one states none; write one of: onlyMembersOf and\/or onlyPrincipals .*, expiresWithin .*, maxDatasets .* or require /,
      ),
      expect.stringMatching(
        /^18:18 invariants\.two-rules\.maxDatasets: an invariant states one rule, and this one states 2 \(expiresWithin, maxDatasets\): write one invariant for each rule/,
      ),
      '19:23 invariants.bad-values.type: type "robot" is not allowed; allowed: person, service (or leave it out for both)',
      '19:38 invariants.bad-values.access: access "owner" is not a level; allowed: read, write, admin',
      '19:62 invariants.bad-values.require[1]: "phone" cannot be required; allowed: email, description',
      '20:27 invariants.empty.onlyMembersOf: onlyMembersOf must name at least one group; to let no one hold the access, write maxDatasets: 0',
      '20:31 invariants.empty.colour: unknown key "colour"; allowed: description, datasets, type, access, onlyMembersOf, onlyPrincipals, expiresWithin, maxDatasets, require',
      '21:28 invariants.negative.maxDatasets: must be a whole number, 0 or more (0: no one may hold the access on the selected datasets) (got -1)',
      '22:28 invariants.fraction.maxDatasets: must be a whole number, 0 or more (0: no one may hold the access on the selected datasets) (got 1.5)',
      '23:41 invariants.unknown-principal.onlyPrincipals[0]: principal "mallory" is not defined; defined principals: carol',
      expect.stringMatching(/^24:3 invariants\.bad name!: invariant name may contain only letters, digits .*\(got "bad name!"\)$/),
    ]);
  });

  test('a principal the file does not define is a warning, not an error, when SCIM people can bear the name', () => {
    const { notices } = load(`${BASE}  hr-only: { datasets: [hr-private], onlyPrincipals: [jdoe] }\nscim: { groups: { HR: hr } }\n`);
    expect(notices).toEqual([
      {
        level: 'warning',
        message:
          'datagrant.yaml:11:55: invariant hr-only: principal "jdoe" is not in the file; unless it is the name of a SCIM person, no principal of that name can hold the access',
      },
    ]);
  });

  test('references are still checked when the shape of another part is wrong', () => {
    const problems = problemsOf(`${BASE}  typo: { datasets: [nowhere], maxDatasets: 1 }\nscim: 7\n`);
    expect(at(problems)).toEqual([
      '11:22 invariants.typo.datasets[0]: dataset "nowhere" is not defined; defined datasets: features, hr-private',
      expect.stringMatching(/^12:7 scim: must be a mapping/),
    ]);
  });
});
