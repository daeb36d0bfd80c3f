// The SQL that makes the PostgreSQL role datagrant connects as, with what it needs to grant the
// spec's datasets and nothing more (issue 16): what `datagrant pg-setup` prints, for a superuser
// to run with psql. Pure: the spec and the role's name in, text out.
//
// What the driver needs, and why each line is there:
// - LOGIN CREATEROLE: it creates, alters and drops the principals' roles. PostgreSQL 16 and later
//   give the creator ADMIN OPTION on each role it creates (that is how it may grant memberships in
//   them and drop them); on 15, CREATEROLE reaches every non-superuser role.
// - pg_signal_backend: it ends the connections of logins it drops (sessions that ended).
// - CONNECT on each database, USAGE on each schema, the level's privileges on the tables and
//   sequences, all WITH GRANT OPTION: PostgreSQL lets a non-owner grant only what it holds so.
// - For all-table datasets, default privileges: the same, WITH GRANT OPTION, on the tables each
//   owner creates later (so the next migration's tables are grantable), and membership in each
//   owner, which `ALTER DEFAULT PRIVILEGES FOR ROLE <owner>` demands of whoever runs it. The
//   owners are found when the script runs (a DO block), as the driver finds them; on 16 and later
//   the membership is SET only, without INHERIT, so datagrant does not act with the owner's rights.
import type { Level } from '../core/types.js';
import { PG_LEVELS } from '../model/postgres-levels.js';
import { isPgDataset, type Grant, type PgDatasetSpec, type Spec } from '../spec/schema.js';

/** Identifiers are quoted here as the driver quotes them (the pure core cannot import the driver). */
const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
const literal = (value: string) => `'${value.replace(/'/g, "''")}'`;
const ORDER: Level[] = ['read', 'write', 'admin'];

/** The highest level any grant in the spec gives on `dataset` (read if none does yet). */
function highestLevel(spec: Spec, dataset: string): Level {
  const grants: Grant[] = [...Object.values(spec.principals).flatMap((p) => p.grants), ...Object.values(spec.groups).flatMap((g) => g.grants)];
  let i = 0;
  for (const g of grants) if (g.dataset === dataset) i = Math.max(i, ORDER.indexOf(g.access));
  return ORDER[i]!;
}

export interface PgSetupOptions {
  /** The role datagrant connects as (default datagrant). */
  role?: string;
  /** The spec file, named in the header. */
  source?: string;
}

export function pgSetupSql(spec: Spec, backendName: string, opts: PgSetupOptions = {}): string {
  const b = spec.backends[backendName];
  if (!b || b.type !== 'postgres') throw new Error(`backend ${backendName} is not a postgres backend`);
  const role = opts.role ?? 'datagrant';
  const me = ident(role);
  const datasets = Object.entries(spec.datasets)
    .filter((e): e is [string, PgDatasetSpec] => e[1].backend === backendName && isPgDataset(e[1]))
    .sort(([a], [b2]) => (a < b2 ? -1 : 1));
  const byDatabase = new Map<string, [string, PgDatasetSpec][]>();
  for (const d of datasets) byDatabase.set(d[1].database, [...(byDatabase.get(d[1].database) ?? []), d]);

  const out: string[] = [
    `-- datagrant pg-setup for backend ${backendName}${opts.source ? ` (${opts.source})` : ''}: the role datagrant connects as,`,
    '-- and what it needs to grant the datasets of the spec. Run as a superuser:',
    '--   psql -v ON_ERROR_STOP=1 -f pg-setup.sql',
    '-- Run it again when the spec adds a dataset or raises a level. Set the password afterwards',
    `-- (\\password ${role}), never in this file. The levels below are the highest the spec grants on`,
    '-- each dataset: an approved request above them fails apply with the GRANT that is missing.',
    '',
    "-- Creates, alters and drops the principals' roles. On PostgreSQL 16 and later it has ADMIN OPTION",
    '-- on the roles it creates, and on no other; on 15, CREATEROLE reaches every non-superuser role,',
    "-- so guard this role's password as a superuser's.",
    `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${literal(role)}) THEN CREATE ROLE ${me} LOGIN CREATEROLE; END IF; END $$;`,
    `ALTER ROLE ${me} LOGIN CREATEROLE;`,
    '-- Ends the connections of the logins it drops (a session that ended, a principal removed).',
    `GRANT pg_signal_backend TO ${me};`,
  ];
  for (const [database, sets] of [...byDatabase].sort(([a], [b2]) => (a < b2 ? -1 : 1))) {
    out.push('', `-- Database ${database}: CONNECT, which every level gives.`, `GRANT CONNECT ON DATABASE ${ident(database)} TO ${me} WITH GRANT OPTION;`);
    out.push(`\\connect ${ident(database)}`);
    for (const [name, ds] of sets) {
      const level = highestLevel(spec, name);
      const p = PG_LEVELS[level];
      const sch = ident(ds.schema);
      out.push('', `-- Dataset ${name}: schema ${ds.schema}${ds.tables ? `, tables ${ds.tables.join(', ')}` : ''}, up to ${level}.`);
      out.push(`GRANT ${p.schema.join(', ')} ON SCHEMA ${sch} TO ${me} WITH GRANT OPTION;`);
      if (!ds.tables) {
        out.push(`GRANT ${p.tables.join(', ')} ON ALL TABLES IN SCHEMA ${sch} TO ${me} WITH GRANT OPTION;`);
        if (p.sequences.length) out.push(`GRANT ${p.sequences.join(', ')} ON ALL SEQUENCES IN SCHEMA ${sch} TO ${me} WITH GRANT OPTION;`);
        out.push(
          `-- Tables created later in ${ds.schema}: grantable by datagrant, and datagrant may set the principals'`,
          `-- defaults FOR ROLE each owner (the schema's and its tables' owners, as the driver finds them).`,
          ownersBlock(role, ds.schema, p.tables, p.sequences),
        );
      } else {
        const tables = [...ds.tables].sort().map((t) => `${sch}.${ident(t)}`);
        out.push(`GRANT ${p.tables.join(', ')} ON TABLE ${tables.join(', ')} TO ${me} WITH GRANT OPTION;`);
        if (p.sequences.length) out.push(sequencesBlock(role, ds.schema, ds.tables, p.sequences));
      }
    }
  }
  if (!byDatabase.size) out.push('', `-- The spec has no dataset on backend ${backendName} yet: only the role.`);
  return `${out.join('\n')}\n`;
}

function ownersBlock(role: string, schema: string, tables: readonly string[], sequences: readonly string[]): string {
  const seq = sequences.length
    ? `\n    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT ${sequences.join(', ')} ON SEQUENCES TO %I WITH GRANT OPTION', o, ${literal(schema)}, ${literal(role)});`
    : '';
  return `DO $$ DECLARE o name; BEGIN
  FOR o IN SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE n.nspname = ${literal(schema)}
           UNION SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ${literal(schema)} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  LOOP
    CONTINUE WHEN o = ${literal(role)};
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT ${tables.join(', ')} ON TABLES TO %I WITH GRANT OPTION', o, ${literal(schema)}, ${literal(role)});${seq}
    IF current_setting('server_version_num')::int >= 160000 THEN
      EXECUTE format('GRANT %I TO %I WITH INHERIT FALSE, SET TRUE', o, ${literal(role)});
    ELSE
      EXECUTE format('GRANT %I TO %I', o, ${literal(role)});
    END IF;
  END LOOP;
END $$;`;
}

/** The sequences owned by the listed tables (serial columns), as the driver grants them. */
function sequencesBlock(role: string, schema: string, tables: readonly string[], sequences: readonly string[]): string {
  return `DO $$ DECLARE s name; BEGIN
  FOR s IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_depend d ON d.objid = c.oid AND d.deptype IN ('a', 'i') JOIN pg_class t ON t.oid = d.refobjid
            WHERE c.relkind = 'S' AND n.nspname = ${literal(schema)} AND t.relname = ANY (ARRAY[${tables.map(literal).join(', ')}])
  LOOP
    EXECUTE format('GRANT ${sequences.join(', ')} ON SEQUENCE %I.%I TO %I WITH GRANT OPTION', ${literal(schema)}, s, ${literal(role)});
  END LOOP;
END $$;`;
}
