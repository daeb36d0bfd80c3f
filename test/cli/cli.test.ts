// CLI behaviour that needs no backend: the published JSON Schema, validation of the examples,
// refusals with clear messages and exit codes.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { workspace, type Workspace } from '../support/cli.js';

const root = resolve(import.meta.dirname, '../..');
let ws: Workspace;
afterEach(() => ws?.cleanup());

describe('datagrant CLI', () => {
  test('schema prints a JSON Schema that describes every top-level key and refuses unknown ones', async () => {
    ws = workspace();
    const r = await ws.run('schema');
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout) as { properties: Record<string, unknown>; required: string[]; additionalProperties: boolean };
    expect(Object.keys(schema.properties).sort()).toEqual([
      'approvers',
      'backends',
      'datasets',
      'groups',
      'invariants',
      'knownAccess',
      'principals',
      'scim',
      'settings',
      'version',
    ]);
    expect(schema.required).toEqual(expect.arrayContaining(['version', 'backends']));
    expect(schema.additionalProperties).toBe(false);
    // An invariant's selectors and rules, so that editors complete and check them.
    const invariant = (schema.properties.invariants as { additionalProperties: { properties: Record<string, unknown>; additionalProperties: boolean } })
      .additionalProperties;
    expect(Object.keys(invariant.properties).sort()).toEqual(
      ['access', 'datasets', 'description', 'expiresWithin', 'maxDatasets', 'onlyMembersOf', 'onlyPrincipals', 'require', 'type'].sort(),
    );
    expect(invariant.additionalProperties).toBe(false);
  });

  test.each(['examples/seed.yaml', 'examples/datagrant.yaml'])('%s is valid', async (file) => {
    ws = workspace();
    ws.writeSpec(readFileSync(resolve(root, file), 'utf8'));
    const r = await ws.run('validate');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^The spec is valid \(aws: \d+ objects\)\.\n$/);
  });

  test('validate fails on a spec that breaks its invariants, naming each invariant and the grant that breaks it', async () => {
    ws = workspace();
    ws.writeSpec(`version: 1
backends: { aws: { type: aws } }
datasets: { hr-private: { backend: aws, bucket: hr-data } }
groups: { hr: { grants: [{ dataset: hr-private, access: read }] } }
principals:
  carol: { type: person, email: carol@example.com, groups: [hr] }
  bob:
    type: person
    grants:
      - { dataset: hr-private, access: read }
invariants:
  hr-private-stays-in-hr: { datasets: [hr-private], onlyMembersOf: [hr] }
  people-have-email: { type: person, require: [email] }
`);
    const r = await ws.run('validate');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      [
        'Error: the spec breaks its invariants in 2 places (no backend was read or changed):',
        '  invariant hr-private-stays-in-hr: principal bob gets read on hr-private through principals.bob.grants[0] (datagrant.yaml:10:9), and bob is not in group hr',
        '  invariant people-have-email: principal bob (datagrant.yaml:7:3) has no email',
        '',
      ].join('\n'),
    );
  });

  test('exporting a credential nobody holds names what is stored', async () => {
    ws = workspace({ DATAGRANT_MASTER_KEY: 'd'.repeat(64) });
    const r = await ws.run('credentials', 'export', 'nobody', '--format', 'env');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no stored credential for "nobody"; stored: \(none\)/);
  });

  test('a missing spec file and a missing master key are one-line errors', async () => {
    ws = workspace();
    const noSpec = await ws.run('plan');
    expect(noSpec.code).toBe(1);
    expect(noSpec.stderr).toMatch(/datagrant\.yaml.*cannot read the spec: no such file/);
    expect(noSpec.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
    ws.writeSpec(readFileSync(resolve(root, 'examples/seed.yaml'), 'utf8'));
    const noKey = await ws.run('credentials', 'list');
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/no master key: set DATAGRANT_MASTER_KEY .* or run `datagrant init`/);
    expect(noKey.stderr).not.toMatch(/\n\s+at /);
  });

  test('an unknown export format names the allowed ones', async () => {
    ws = workspace({ DATAGRANT_MASTER_KEY: 'd'.repeat(64) });
    const r = await ws.run('credentials', 'export', 'x', '--format', 'yaml');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/env, aws-profile, json, pgpass, url/);
  });
});
