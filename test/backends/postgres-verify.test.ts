// The read-back after a PostgreSQL grant change, as pure logic: which of a level's privileges are
// missing or left over, and the message that names them with the statements that fix them.
import { describe, expect, test } from 'vitest';
import type { RelationRow } from '../../src/backends/postgres/catalog.js';
import { notTakenEffect, schemaGrantShortfall, type Held, type SchemaAclFact } from '../../src/backends/postgres/verify.js';
import type { GrantPrivileges } from '../../src/compile/postgres/compile.js';

const rel = (name: string, kind: 'table' | 'sequence' = 'table', ownedBy: string | null = null): RelationRow => ({
  database: 'd',
  schema: 's',
  name,
  kind,
  owner: 'o',
  ownedBy,
});
const fact = (kind: SchemaAclFact['kind'], relation: string | null, privilege: string, grantor = 'admin', column: string | null = null): SchemaAclFact => ({
  kind,
  relation,
  column,
  privilege,
  grantor,
});
const READ = { schema: ['USAGE'], tables: ['SELECT'], sequences: [] };
const WRITE = { schema: [], tables: ['INSERT', 'UPDATE', 'DELETE'], sequences: ['USAGE', 'SELECT'] };
const privileges = (p: Partial<GrantPrivileges>): GrantPrivileges => ({ schema: [], tables: [], sequences: [], defaultTables: [], defaultSequences: [], ...p });
const words = (hs: Held[]) => hs.map((h) => `${h.privilege} on ${h.label}${h.grantor ? ` by ${h.grantor}` : ''}`);

describe('schemaGrantShortfall', () => {
  test.each<[string, Parameters<typeof schemaGrantShortfall>[0], string[], string[]]>([
    [
      'all tables: a table the GRANT did not reach is missing',
      {
        schema: 's',
        levelPrivileges: READ,
        privileges: privileges({ schema: ['USAGE'], tables: ['SELECT'] }),
        scope: '*',
        relations: [rel('a'), rel('b')],
        facts: [fact('SCHEMA', null, 'USAGE'), fact('TABLE', 'a', 'SELECT')],
      },
      ['SELECT on table s.b'],
      [],
    ],
    [
      'all tables: one made meanwhile by someone else may hold the privilege, and need not',
      {
        schema: 's',
        levelPrivileges: READ,
        privileges: privileges({ schema: ['USAGE'], tables: ['SELECT'] }),
        scope: '*',
        relations: [rel('a')],
        facts: [fact('SCHEMA', null, 'USAGE'), fact('TABLE', 'a', 'SELECT'), fact('TABLE', 'new', 'SELECT')],
      },
      [],
      [],
    ],
    [
      'listed tables: the listed table and its sequence are wanted; another table is left over, with its grantor',
      {
        schema: 's',
        levelPrivileges: WRITE,
        privileges: privileges({ tables: ['DELETE', 'INSERT', 'UPDATE'], sequences: ['SELECT', 'USAGE'] }),
        scope: ['a'],
        relations: [rel('a'), rel('b'), rel('a_id_seq', 'sequence', 'a')],
        facts: [
          fact('TABLE', 'a', 'INSERT'),
          fact('TABLE', 'a', 'UPDATE'),
          fact('TABLE', 'a', 'DELETE'),
          fact('SEQUENCE', 'a_id_seq', 'USAGE'),
          fact('TABLE', 'b', 'INSERT', 'other'),
        ],
      },
      ['SELECT on sequence s.a_id_seq'],
      ['INSERT on table s.b by other'],
    ],
    [
      'removal: every privilege of the level still held is left over; other levels are not its business',
      {
        schema: 's',
        levelPrivileges: READ,
        privileges: undefined,
        scope: '*',
        relations: [rel('a')],
        facts: [fact('SCHEMA', null, 'USAGE', 'owner'), fact('TABLE', 'a', 'INSERT', 'owner')],
      },
      [],
      ['USAGE on schema s by owner'],
    ],
    [
      'a column privilege of the level is always left over (datagrant never grants one)',
      {
        schema: 's',
        levelPrivileges: READ,
        privileges: privileges({ schema: ['USAGE'], tables: ['SELECT'] }),
        scope: ['a'],
        relations: [rel('a'), rel('b')],
        facts: [fact('SCHEMA', null, 'USAGE'), fact('TABLE', 'a', 'SELECT'), fact('COLUMN', 'b', 'SELECT', 'other', 'secret')],
      },
      [],
      ['SELECT ("secret") on column s.b.secret by other'],
    ],
  ])('%s', (_what, input, missing, leftover) => {
    const found = schemaGrantShortfall(input);
    expect(words(found.missing)).toEqual(missing);
    expect(words(found.leftover)).toEqual(leftover);
  });
});

describe('notTakenEffect', () => {
  test('names what is missing and left over, with one statement per kind and privileges, long lists shortened', () => {
    const table = (t: string, privilege: string, grantor?: string): Held => ({
      kind: 'TABLE',
      object: `"s"."${t}"`,
      label: `table s.${t}`,
      privilege,
      ...(grantor ? { grantor } : {}),
    });
    const missing = [
      ...['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((t) => table(t, 'SELECT')),
      { kind: 'SCHEMA', object: '"s"', label: 'schema s', privilege: 'USAGE' },
    ];
    const e = notTakenEffect('wh', 'wh:grant/r/d.s/read', 'r', 'adm', missing, [table('x', 'INSERT', 'other')]);
    expect(e).toMatchObject({ backend: 'wh', code: 'not-granted', retryable: false, address: 'wh:grant/r/d.s/read' });
    expect(e.message).toBe(
      'wh: the change did not take effect, so none of it was kept. ' +
        'USAGE on schema s; SELECT on table s.a, table s.b, table s.c, table s.d, table s.e and 2 more were not granted to r: the connecting role adm can grant only what it holds with the grant option (PostgreSQL merely warns "no privileges were granted"). ' +
        'As the owner or a superuser, run: GRANT USAGE ON SCHEMA "s" TO "adm" WITH GRANT OPTION; GRANT SELECT ON TABLE "s"."a", "s"."b", "s"."c", "s"."d", "s"."e", "s"."f", "s"."g" TO "adm" WITH GRANT OPTION; ' +
        'INSERT on table s.x is still held by r, granted by other: a REVOKE by adm removes only what adm granted. As other or a superuser, run: REVOKE INSERT ON TABLE "s"."x" FROM "r"; ' +
        'Then apply again.',
    );
  });
});
