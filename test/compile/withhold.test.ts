import { describe, expect, test } from 'vitest';
import { intendedAccess } from '../../src/compile/access.js';
import { withholdBreaking } from '../../src/compile/invariants.js';
import { parseSpec } from '../../src/spec/load.js';

const NOW = new Date('2026-12-01T00:00:00Z');
const spec = parseSpec(
  `version: 1
backends: { aws: { type: aws } }
datasets:
  hr: { backend: aws, bucket: hr-private }
  train: { backend: aws, bucket: ai-model-data }
groups:
  hr: { grants: [{ dataset: hr, access: read }] }
  everyone: { grants: [{ dataset: train, access: read }, { dataset: hr, access: read }] }
invariants:
  hr-in-hr: { datasets: [hr], onlyMembersOf: [hr] }
principals:
  ann: { type: person, email: a@example.com, groups: [hr] }
  bob: { type: person, email: b@example.com, groups: [everyone], grants: [{ dataset: hr, access: write }, { dataset: train, access: write }] }
  cy: { type: person, email: c@example.com, grants: [{ dataset: train, access: read }] }
`,
  { file: 'datagrant.yaml', env: {}, now: NOW },
).spec;

describe("serve's withholding of access that breaks an invariant", () => {
  test("withholds exactly the breaking principal's access to the dataset, direct and through groups; keeps the rest", () => {
    // Built another way than parseSpec (SCIM people join after validation): the breach is in the spec.
    const { spec: held, withheld } = withholdBreaking(spec, NOW);
    // One violation per breaking grant (bob's own write, and the read through everyone), all bob's on hr.
    expect(new Set(withheld.map((v) => `${v.invariant} ${v.principal} ${v.dataset}`))).toEqual(new Set(['hr-in-hr bob hr']));
    expect(withheld.length).toBe(2);
    const access = intendedAccess(held, NOW).map((a) => `${a.principal} ${a.level} ${a.dataset}`);
    expect(access.sort()).toEqual(['ann read hr', 'bob read train', 'bob write train', 'cy read train']);
    // everyone also granted train: bob's membership becomes that grant, direct; his own write stays.
    expect(held.principals.bob!.groups).toEqual([]);
    expect(held.principals.ann).toBe(spec.principals.ann);
  });
});

describe('withholding is exact', () => {
  const NOW2 = new Date('2026-12-01T00:00:00Z');
  const load = (text: string) => parseSpec(text, { file: 'datagrant.yaml', env: {}, now: NOW2 }).spec;
  const base = `version: 1
backends: { aws: { type: aws } }
datasets:
  a: { backend: aws, bucket: aaa-data }
  b: { backend: aws, bucket: bbb-data }
  c: { backend: aws, bucket: ccc-data }
  d: { backend: aws, bucket: ddd-data }
`;
  const ml = `groups:
  ml: { grants: [{ dataset: a, access: read }, { dataset: b, access: read }, { dataset: c, access: read }] }
`;
  const access = (s: ReturnType<typeof load>) =>
    intendedAccess(s, NOW2)
      .map((x) => `${x.principal} ${x.level} ${x.dataset}${x.expires ? ' until' : ''}`)
      .sort();

  test('a non-expiring write withholds that grant only; the group still gives the rest', () => {
    const s = load(`${base}${ml}invariants:
  write-expires: { access: write, expiresWithin: 90d }
principals:
  alice: { type: person, email: a@example.com, groups: [ml], grants: [{ dataset: a, access: write }, { dataset: d, access: write, expires: 2027-01-15 }] }
`);
    const { spec: held } = withholdBreaking(s, NOW2);
    expect(access(held)).toEqual(['alice read a', 'alice read b', 'alice read c', 'alice write d until']);
    expect(held.principals.alice!.groups).toEqual(['ml']);
  });

  test("one dataset of a group's that breaks onlyMembersOf leaves the member the group's other datasets, as direct grants", () => {
    const s = load(`${base}invariants:
  c-for-hr: { datasets: [c], onlyMembersOf: [hr] }
groups:
  ml: { grants: [{ dataset: a, access: read }, { dataset: b, access: read }, { dataset: c, access: read }] }
  hr: { grants: [{ dataset: c, access: read }] }
principals:
  ann: { type: person, email: a@example.com, groups: [hr] }
  bob: { type: person, email: b@example.com, groups: [ml] }
`);
    const { spec: held } = withholdBreaking(s, NOW2);
    expect(access(held)).toEqual(['ann read c', 'bob read a', 'bob read b']);
  });

  test('maxDatasets withholds only the datasets past the limit', () => {
    const s = load(`${base}${ml}invariants:
  spread: { access: read, maxDatasets: 3 }
principals:
  bob: { type: person, email: b@example.com, groups: [ml], grants: [{ dataset: d, access: read }] }
`);
    const { spec: held } = withholdBreaking(s, NOW2);
    expect(access(held)).toEqual(['bob read a', 'bob read b', 'bob read c']);
  });
});
