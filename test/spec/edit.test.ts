// Spec text edits keep every other byte: the revocation patch shows only the lines it removes.
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { removeSequenceItems } from '../../src/spec/edit.js';

const SPEC = `# Access to the AI data (reviewed quarterly)
version: 1
principals:
  alice:   { type: person, email: alice@example.com, groups: [ml-researchers, other] }   # lead
  bob:
    type: person
    groups:
      - ml-researchers   # joined 2025
      # moved from platform
      - other
    grants:
      - dataset: artifacts    # for the eval job
        access: read

      - { dataset: features, access: read, expires: 2027-01-31 }
  carol: { type: person, groups: [ ml ] }
`;

describe('removeSequenceItems', () => {
  test.each([
    [
      'an item of a block list, with its trailing comment',
      [{ path: ['principals', 'bob', 'groups'], index: 0 }],
      SPEC.replace('      - ml-researchers   # joined 2025\n', ''),
    ],
    [
      'a multi-line map item of a block list',
      [{ path: ['principals', 'bob', 'grants'], index: 0 }],
      SPEC.replace('      - dataset: artifacts    # for the eval job\n        access: read\n', ''),
    ],
    [
      'the last item of a block list',
      [{ path: ['principals', 'bob', 'grants'], index: 1 }],
      SPEC.replace('      - { dataset: features, access: read, expires: 2027-01-31 }\n', ''),
    ],
    [
      'every item of a block list: the key stays, with an empty list',
      [
        { path: ['principals', 'bob', 'groups'], index: 1 },
        { path: ['principals', 'bob', 'groups'], index: 0 },
      ],
      SPEC.replace('    groups:\n      - ml-researchers   # joined 2025\n      # moved from platform\n      - other\n', '    groups: []\n'),
    ],
    [
      'an item of a flow list inside a flow map',
      [{ path: ['principals', 'alice', 'groups'], index: 0 }],
      SPEC.replace('groups: [ml-researchers, other] }   # lead', 'groups: [other] }   # lead'),
    ],
    ['the only item of a padded flow list', [{ path: ['principals', 'carol', 'groups'], index: 0 }], SPEC.replace('groups: [ ml ]', 'groups: []')],
    [
      'items of several lists at once',
      [
        { path: ['principals', 'alice', 'groups'], index: 1 },
        { path: ['principals', 'bob', 'groups'], index: 1 },
      ],
      SPEC.replace('[ml-researchers, other]', '[ml-researchers]').replace('      # moved from platform\n      - other\n', '      # moved from platform\n'),
    ],
  ])('%s', (_what, removals, expected) => {
    const out = removeSequenceItems(SPEC, removals);
    expect(out.refused).toEqual([]);
    expect(out.text).toBe(expected);
    expect(() => parse(out.text) as unknown).not.toThrow();
  });

  test('the data is what the edit says: the item is gone, every other value is as it was', () => {
    const out = removeSequenceItems(SPEC, [{ path: ['principals', 'bob', 'grants'], index: 0 }]);
    const before = parse(SPEC);
    const after = parse(out.text);
    before.principals.bob.grants.splice(0, 1);
    expect(after).toEqual(before);
  });

  test.each([
    [
      'a list reached through an alias',
      `x: &common [a, b]\nprincipals:\n  alice: { groups: *common }\n`,
      ['principals', 'alice', 'groups'],
      /principals\.alice\.groups is the alias \*common/,
    ],
    ['a list carrying an anchor', `principals:\n  alice: { groups: &g [a, b] }\n  bob: { groups: *g }\n`, ['principals', 'alice', 'groups'], /anchor &g/],
    [
      'a map reached through a merge key',
      `base: &b { groups: [a] }\nprincipals:\n  alice: { <<: *b }\n`,
      ['principals', 'alice', 'groups'],
      /not in the spec's text/,
    ],
    ['a principal the file does not define (SCIM)', SPEC, ['principals', 'dave', 'groups'], /principals\.dave\.groups is not in the spec's text/],
    ['an index past the end', SPEC, ['principals', 'carol', 'groups'], /has no item \[3\]/],
    ['a flow list with a comment inside', `principals:\n  alice:\n    groups: [a, # why\n      b]\n`, ['principals', 'alice', 'groups'], /comment inside/],
  ])('refused, text untouched: %s', (_what, text, path, why) => {
    const index = path[1] === 'carol' ? 3 : 0;
    const out = removeSequenceItems(text, [{ path, index }]);
    expect(out.text).toBe(text);
    expect(out.refused).toHaveLength(1);
    expect(out.refused[0]!.why).toMatch(why);
  });
});
