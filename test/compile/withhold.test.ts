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
    expect(access.sort()).toEqual(['ann read hr', 'bob write train', 'cy read train']);
    // everyone also granted train: bob loses that membership, and keeps his own write to train.
    expect(held.principals.bob!.groups).toEqual([]);
    expect(held.principals.ann).toBe(spec.principals.ann);
  });
});
