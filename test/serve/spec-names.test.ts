// serve names new SCIM users around the principals the spec file defines at that moment.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { specPrincipalNames } from '../../src/serve/spec-names.js';
import { harness } from '../scim/helpers.js';
import { hashed } from '../scim/store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'dg-spec-names-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec = (principals: string) => `version: 1\nbackends: { aws: { type: aws } }\nprincipals:\n${principals}`;

test('the names of the file as it is now; a spec that fails validation still names its principals; broken YAML keeps the last names', () => {
  const file = join(dir, 'datagrant.yaml');
  const names = specPrincipalNames(file);
  expect(names()).toEqual([]); // no file yet
  writeFileSync(file, spec('  alice: { type: person }\n  Bob: { type: service }\n'));
  expect(names()).toEqual(['alice', 'Bob']);
  // invalid (unknown type, unset variable): the names are still there
  writeFileSync(file, spec('  carol: { type: robot, email: "${UNSET}" }\n'));
  expect(names()).toEqual(['carol']);
  writeFileSync(file, 'principals: {: [');
  expect(names()).toEqual(['carol']);
  writeFileSync(file, 'version: 1\n');
  expect(names()).toEqual([]);
});

test('a user created through the server never gets a name the spec defines at that moment', async () => {
  const file = join(dir, 'server.yaml');
  writeFileSync(file, spec('  Alice: { type: service }\n'));
  const h = await harness({ reservedNames: specPrincipalNames(file) });
  try {
    const a = await h.req('POST', '/scim/v2/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'alice@x.example' });
    expect(a.status).toBe(201);
    expect((await h.store.get('User', a.body.id as string))!.principal).toBe(hashed('alice', 'alice@x.example'));
    // the spec no longer defines it: the next user may have it, and the first keeps its own
    writeFileSync(file, spec('  bob: { type: service }\n'));
    const b = await h.req('POST', '/scim/v2/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'alice@y.example' });
    expect((await h.store.get('User', b.body.id as string))!.principal).toBe('alice');
    expect((await h.store.get('User', a.body.id as string))!.principal).toBe(hashed('alice', 'alice@x.example'));
    expect(Object.keys(await h.principals()).sort()).toEqual(['alice', hashed('alice', 'alice@x.example')]);
  } finally {
    await h.close();
  }
});
