// Effective access on the server, read in bulk: every account and role, the roles granted, every
// database grant, the table and column grants on the datasets' databases, PROXY grants and the
// datasets' tables — one message of seven queries, whatever the number of accounts or tables.
// A query the server refuses is retried alone so that the others still count, and is named in
// `failures`: the report says what it could not see rather than show less. effective.ts turns the
// rows into access. Reads only.
import type { AccessDataset, AccessQuery, AccessReading } from '../../model/access.js';
import { databaseGrantOf, globalPrivileges, ourMarker, privilegeSetOf, type MarkerValue } from './catalog.js';
import type { Row, Send } from './connection.js';
import type { MysqlContext } from './context.js';
import { effectiveAccess, type MysqlAccessDataset, type MysqlAccessFacts, type MysqlPrivilegeFact } from './effective.js';
import { literal } from './sql.js';

const isMysql = (d: AccessDataset): d is MysqlAccessDataset => 'database' in d && !('schema' in d);

const truthy = (v: unknown) => v === 1 || v === '1' || v === 'true' || v === true;

/** The set column of tables_priv / columns_priv ('Select,Show view') as privileges. */
const setOf = privilegeSetOf;

interface Query {
  sql: string;
  /** What is not reported when it fails. */
  what: string;
}

export async function readAccess(ctx: MysqlContext, query: AccessQuery): Promise<AccessReading> {
  const { conn, owner } = ctx;
  const before = conn.stats.requests;
  const datasets = query.datasets.filter(isMysql);
  const wanted = [...new Set(datasets.map((d) => d.database))].sort();
  const inWanted = wanted.length ? `IN (${wanted.map(literal).join(', ')})` : 'IS NULL';
  const queries: Query[] = [
    {
      sql: `SELECT User AS user, Host AS host, JSON_QUERY(Priv, '$.datagrant') AS marker, JSON_VALUE(Priv, '$.is_role') AS is_role,
                   JSON_VALUE(Priv, '$.account_locked') AS locked, JSON_VALUE(Priv, '$.password_last_changed') AS changed,
                   JSON_VALUE(Priv, '$.default_role') AS default_role, JSON_VALUE(Priv, '$.access') AS access
              FROM mysql.global_priv`,
      what: 'the accounts and roles (mysql.global_priv) could not be read: no account or role, and no global privilege, is reported',
    },
    {
      sql: `SELECT User AS user, Host AS host, Role AS role FROM mysql.roles_mapping`,
      what: 'the roles granted (mysql.roles_mapping) could not be read: access through roles is not reported',
    },
    { sql: `SELECT * FROM mysql.db`, what: 'database grants (mysql.db) could not be read: access they give is not reported' },
    {
      sql: `SELECT User AS user, Host AS host, Db AS db, Table_name AS tbl, Table_priv AS privs FROM mysql.tables_priv WHERE Db ${inWanted}`,
      what: 'table grants (mysql.tables_priv) could not be read: access they give is not reported',
    },
    {
      sql: `SELECT User AS user, Host AS host, Db AS db, Table_name AS tbl, Column_name AS col, Column_priv AS privs FROM mysql.columns_priv WHERE Db ${inWanted}`,
      what: 'column grants (mysql.columns_priv) could not be read: access they give is not reported',
    },
    {
      sql: `SELECT User AS user, Host AS host, Proxied_user AS puser, Proxied_host AS phost FROM mysql.proxies_priv`,
      what: 'PROXY grants (mysql.proxies_priv) could not be read: access through them is not reported',
    },
    {
      sql: `SELECT s.SCHEMA_NAME AS db, t.TABLE_NAME AS tbl FROM information_schema.SCHEMATA s
              LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME
             WHERE s.SCHEMA_NAME ${inWanted} ORDER BY 1, 2`,
      what: "the datasets' databases and tables (information_schema) could not be read: no access to them is reported",
    },
  ];

  const failures: string[] = [];
  const results = await conn.on(async (send) => read(send, queries, (q, e) => failures.push(`${q.what} (${conn.error(e).message})`)));
  const [objects, mappings, dbs, tables, columns, proxies, schemas] = results;

  const databases: Record<string, string[]> = {};
  for (const r of schemas ?? []) {
    const tbls = (databases[String(r.db)] ??= []);
    if (typeof r.tbl === 'string') tbls.push(r.tbl);
  }
  const facts: MysqlAccessFacts = {
    backend: ctx.name,
    objects: (objects ?? []).map((r) => {
      const marker = ourMarker(r.marker as MarkerValue, owner.scope, owner.installation);
      return {
        user: String(r.user),
        host: String(r.host),
        isRole: truthy(r.is_role),
        ours: marker !== undefined,
        ...(marker?.createdAt ? { createdAt: marker.createdAt } : {}),
        locked: truthy(r.locked),
        passwordExpired: r.changed === '0' || r.changed === 0,
        defaultRole: (r.default_role as string | null) || null,
        global: globalPrivileges(r.access as string | null),
      };
    }),
    mappings: (mappings ?? []).map((r) => ({ user: String(r.user), host: String(r.host), role: String(r.role) })),
    databaseRows: (dbs ?? []).map((r): MysqlPrivilegeFact => databaseGrantOf(r)),
    tableRows: (tables ?? []).map((r) => ({ user: String(r.user), host: String(r.host), db: String(r.db), table: String(r.tbl), privileges: setOf(r.privs) })),
    columnRows: (columns ?? []).map((r) => ({
      user: String(r.user),
      host: String(r.host),
      db: String(r.db),
      table: String(r.tbl),
      column: String(r.col),
      privileges: setOf(r.privs),
    })),
    proxies: (proxies ?? []).map((r) => ({ user: String(r.user), host: String(r.host), proxiedUser: String(r.puser), proxiedHost: String(r.phost) })),
    databases,
  };
  // Without the databases' list every dataset would read as missing: the failure above says why instead.
  const reading = effectiveAccess(facts, schemas ? datasets : []);
  return { ...reading, failures: [...failures, ...reading.failures], requests: conn.stats.requests - before };
}

/** Every query's rows in one message; when the server refuses one, each alone, a refused one undefined. */
async function read(send: Send, queries: Query[], failed: (q: Query, e: unknown) => void): Promise<(Row[] | undefined)[]> {
  try {
    return await send(queries.map((q) => q.sql));
  } catch {
    const out: (Row[] | undefined)[] = [];
    for (const q of queries) {
      try {
        out.push((await send([q.sql]))[0]);
      } catch (e) {
        failed(q, e);
        out.push(undefined);
      }
    }
    return out;
  }
}
