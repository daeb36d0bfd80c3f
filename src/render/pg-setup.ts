// The SQL that makes the PostgreSQL role datagrant connects as, with what it needs to grant the
// spec's datasets and nothing more (issue 16): what `datagrant pg-setup` prints, for a superuser
// to run with psql. Pure: the spec and the role's name in, text out.
//
// What the driver needs, and why each line is there:
// - LOGIN CREATEROLE: it creates, alters and drops the principals' roles. PostgreSQL 16 and later
//   give the creator ADMIN OPTION on each role it creates (that is how it may grant memberships in
//   them and drop them); on 15, CREATEROLE reaches every non-superuser role.
// - pg_signal_backend: it ends the connections of logins it drops (sessions that ended).
// - CONNECT on each database WITH GRANT OPTION: a non-owner grants only what it holds so.
// - Membership in each owner of a dataset's schema and of the tables in it. PostgreSQL lets only
//   an owner's members set the default privileges of the tables it creates later (ALTER DEFAULT
//   PRIVILEGES FOR ROLE, which the driver runs for all-table datasets), and a privilege such a
//   default gave is recorded as granted by the owner: only a role acting with the owner's
//   privileges can revoke it. So datagrant grants and revokes on a dataset's tables as their owner,
//   and needs nothing on them of its own. The owners are found when the script runs (a DO block),
//   as the driver finds them. A member may act as the owner (SET ROLE), so an owner that can do
//   more than own is refused: a superuser, a role with CREATEROLE, REPLICATION or BYPASSRLS, or one
//   that holds a predefined role (pg_execute_server_program is a shell as the server's user) —
//   directly or through a role it is a member of. A schema owned by pg_database_owner (public,
//   from PostgreSQL 15) belongs to the database's owner, which cannot have explicit members: that
//   owner is the one made a member of, under the same refusals.
import { isPgDataset, type PgDatasetSpec, type Spec } from '../spec/schema.js';

/** Identifiers are quoted here as the driver quotes them (the pure core cannot import the driver). */
const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
const literal = (value: string) => `'${value.replace(/'/g, "''")}'`;

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
    '-- Run it again when the spec adds a dataset, or a table gets a new owner. Set the password',
    `-- afterwards (\\password ${role}), never in this file.`,
    "-- Datagrant becomes a member of each owner of the datasets' schemas and tables, and so may do",
    '-- whatever that owner may, also outside the datasets: read and change everything else it owns',
    "-- (other schemas and tables; the whole database, for a schema public that the database's owner",
    '-- holds). Give the datasets owners of their own that own nothing else. An owner that can do more',
    '-- than own (a superuser, CREATEROLE, REPLICATION, BYPASSRLS, a predefined role) is refused.',
    '',
    "-- Creates, alters and drops the principals' roles. On PostgreSQL 16 and later it has ADMIN OPTION",
    '-- on the roles it creates, and on no other; on 15, CREATEROLE reaches every non-superuser role,',
    "-- so guard this role's password as a superuser's.",
    `DO $dg$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${literal(role)}) THEN CREATE ROLE ${me} LOGIN CREATEROLE; END IF; END $dg$;`,
    `ALTER ROLE ${me} LOGIN CREATEROLE;`,
    '-- Ends the connections of the logins it drops (a session that ended, a principal removed).',
    `GRANT pg_signal_backend TO ${me};`,
  ];
  for (const [database, sets] of [...byDatabase].sort(([a], [b2]) => (a < b2 ? -1 : 1))) {
    out.push('', `-- Database ${database}: CONNECT, which every level gives.`, `GRANT CONNECT ON DATABASE ${ident(database)} TO ${me} WITH GRANT OPTION;`);
    out.push(`\\connect ${ident(database)}`);
    for (const [name, ds] of sets) {
      out.push(
        '',
        `-- Dataset ${name}: schema ${ds.schema}${ds.tables ? `, tables ${ds.tables.join(', ')}` : ''}. Datagrant grants and`,
        `-- revokes there as the owners of the schema and its tables, so it is made a member of each.`,
        ownersBlock(role, ds.schema),
      );
    }
  }
  if (!byDatabase.size) out.push('', `-- The spec has no dataset on backend ${backendName} yet: only the role.`);
  return `${out.join('\n')}\n`;
}

function ownersBlock(role: string, schema: string): string {
  const where = literal(schema);
  return `DO $dg$ DECLARE o record; held text; BEGIN
  FOR o IN WITH owners AS (
             SELECT n.nspowner AS owner FROM pg_namespace n WHERE n.nspname = ${where}
             UNION SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = ${where} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S'))
           -- pg_database_owner (PostgreSQL 15 and later) cannot have members: its one member,
           -- the database's owner, is who datagrant acts as.
           SELECT DISTINCT r.oid, r.rolname, r.rolsuper, r.oid <> w.owner AS of_database
             FROM owners w JOIN pg_roles r ON r.oid = CASE
               WHEN w.owner = (SELECT oid FROM pg_roles WHERE rolname = 'pg_database_owner')
               THEN (SELECT datdba FROM pg_database WHERE datname = current_database()) ELSE w.owner END
  LOOP
    CONTINUE WHEN o.rolname = ${literal(role)};
    IF o.rolsuper AND o.of_database THEN
      RAISE EXCEPTION 'schema % is owned by pg_database_owner, that is by the owner of database %, the superuser %: datagrant would act as a superuser to grant there; give the schema (ALTER SCHEMA ... OWNER TO) or the database (ALTER DATABASE ... OWNER TO) to a role of its own first', ${where}, current_database(), o.rolname;
    END IF;
    IF o.rolsuper THEN
      RAISE EXCEPTION 'schema % has objects owned by the superuser %: datagrant would act as a superuser to grant on them; give them to a role of their own first (ALTER SCHEMA/TABLE ... OWNER TO)', ${where}, o.rolname;
    END IF;
    -- What a member could do as the owner (SET ROLE), itself or through the roles it may become.
    SELECT string_agg(CASE WHEN p.oid = o.oid THEN '' ELSE p.rolname || ': ' END || concat_ws(', ',
             CASE WHEN p.rolsuper THEN 'SUPERUSER' END, CASE WHEN p.rolcreaterole THEN 'CREATEROLE' END,
             CASE WHEN p.rolreplication THEN 'REPLICATION' END, CASE WHEN p.rolbypassrls THEN 'BYPASSRLS' END,
             CASE WHEN p.rolname LIKE 'pg\\_%' THEN 'the predefined role ' || p.rolname END), '; ' ORDER BY p.rolname)
      INTO held
      FROM pg_roles p
     WHERE pg_has_role(o.oid, p.oid, 'MEMBER')
       AND (p.rolsuper OR p.rolcreaterole OR p.rolreplication OR p.rolbypassrls
            OR (p.rolname LIKE 'pg\\_%' AND p.rolname <> 'pg_database_owner'
                AND (p.rolname <> 'pg_signal_backend' OR pg_has_role(o.oid, p.oid, 'MEMBER WITH ADMIN OPTION'))));
    IF held IS NOT NULL THEN
      RAISE EXCEPTION 'the owner % of schema % can do more than own (%): as its member, datagrant could do that too; give the schema and its tables to a role without these first (ALTER SCHEMA/TABLE ... OWNER TO)',
        o.rolname || CASE WHEN o.of_database THEN ' (the owner of database ' || current_database() || ', who acts as pg_database_owner)' ELSE '' END, ${where}, held;
    END IF;
    EXECUTE format('GRANT %I TO %I', o.rolname, ${literal(role)});
  END LOOP;
END $dg$;`;
}
