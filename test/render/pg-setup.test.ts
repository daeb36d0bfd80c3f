import { describe, expect, test } from 'vitest';
import { pgSetupSql } from '../../src/render/pg-setup.js';
import { specSchema } from '../../src/spec/schema.js';

const spec = specSchema.parse({
  version: 1,
  backends: { wh: { type: 'postgres', url: 'postgres://x@h/db' }, lake: { type: 'postgres', url: 'postgres://x@h/db' } },
  datasets: {
    b: { backend: 'wh', database: 'analytics', schema: 'features' },
    a: { backend: 'wh', database: 'analytics', schema: 'labels', tables: ['l1'] },
    c: { backend: 'wh', database: 'raw"db', schema: 'events' },
    d: { backend: 'lake', database: 'other', schema: 'x' },
  },
});

describe('pgSetupSql', () => {
  const sql = pgSetupSql(spec, 'wh', { role: 'dg' });

  test('each database of the backend once: CONNECT with the grant option, then its datasets', () => {
    expect(sql.match(/GRANT CONNECT ON DATABASE "analytics" TO "dg" WITH GRANT OPTION;/g)).toHaveLength(1);
    expect(sql).toContain('GRANT CONNECT ON DATABASE "raw""db" TO "dg" WITH GRANT OPTION;\n\\connect "raw""db"');
    expect(sql).not.toContain('"other"');
    const analytics = sql.slice(sql.indexOf('\\connect "analytics"'), sql.indexOf('-- Database raw"db'));
    expect(analytics.indexOf("n.nspname = 'labels'")).toBeGreaterThan(-1);
    expect(analytics.indexOf("n.nspname = 'features'")).toBeGreaterThan(-1);
  });

  test('the role: LOGIN CREATEROLE, ending sessions, and no password in the file', () => {
    expect(sql).toContain('CREATE ROLE "dg" LOGIN CREATEROLE;');
    expect(sql).toContain('GRANT pg_signal_backend TO "dg";');
    expect(sql).not.toMatch(/PASSWORD/);
  });

  test('owners are made the role’s, and a superuser owner is refused', () => {
    expect(sql).toContain("EXECUTE format('GRANT %I TO %I', o.rolname, 'dg');");
    expect(sql).toContain('RAISE EXCEPTION');
  });

  test('the header says what membership in an owner hands datagrant beyond the datasets', () => {
    expect(sql).toMatch(/may do\n-- whatever that owner may, also outside the datasets/);
    expect(sql).toMatch(/owners of their own that own nothing else/);
  });

  test('a backend without datasets gets the role alone', () => {
    const bare = pgSetupSql(specSchema.parse({ version: 1, backends: { wh: { type: 'postgres', url: 'u' } } }), 'wh');
    expect(bare).toContain('CREATE ROLE "datagrant" LOGIN CREATEROLE;');
    expect(bare).not.toContain('\\connect');
  });
});
