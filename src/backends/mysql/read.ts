// Reading what datagrant owns on the server: one message of five queries over the grant tables
// (accounts and roles with a datagrant marker, the roles granted, and privileges on databases,
// tables and columns of marked objects). catalog.ts turns the rows into resources.
import type { ReadOptions } from '../backend.js';
import type { ActualState, ForeignObject } from '../../core/types.js';
import { mysqlAddress } from '../../model/mysql.js';
import { databaseGrantOf, resourcesFromCatalog, privilegeSetOf, type PrivilegeRow } from './catalog.js';
import type { Row } from './connection.js';
import type { MysqlContext } from './context.js';
import { hashFingerprint } from './sql.js';
import { OBJECT_COLUMNS } from './ownership.js';

const MARKED = `(User, Host) IN (SELECT User, Host FROM mysql.global_priv WHERE JSON_EXISTS(Priv, '$.datagrant'))`;

/** The set column of tables_priv / columns_priv ('Select,Show view') as privileges. */
const setOf = privilegeSetOf;

export async function readGrantTables(ctx: MysqlContext, ropts: ReadOptions): Promise<ActualState> {
  const { name, conn, owner } = ctx;
  const [objects, mappings, dbs, tables, columns] = await conn.send([
    `SELECT ${OBJECT_COLUMNS} FROM mysql.global_priv WHERE JSON_EXISTS(Priv, '$.datagrant')`,
    `SELECT User AS user, Host AS host, Role AS role FROM mysql.roles_mapping WHERE ${MARKED} OR Role IN (SELECT User FROM mysql.global_priv WHERE Host = '' AND JSON_EXISTS(Priv, '$.datagrant'))`,
    `SELECT * FROM mysql.db WHERE ${MARKED}`,
    `SELECT User AS user, Host AS host, Db AS db, Table_name AS tbl, Table_priv AS privs FROM mysql.tables_priv WHERE ${MARKED}`,
    `SELECT User AS user, Host AS host, Db AS db, Table_name AS tbl, Column_name AS col, Column_priv AS privs FROM mysql.columns_priv WHERE ${MARKED}`,
  ]);
  const foreign: ForeignObject[] = [];
  const live = objects!.map((r) => owner.live(r));
  for (const o of live) {
    if (o.foreign) foreign.push({ address: o.isRole ? mysqlAddress.role(name, o.user) : mysqlAddress.account(name, o.user), installation: o.foreign });
  }
  const ours = live.filter((o) => o.marker !== undefined);
  const databaseRows: PrivilegeRow[] = dbs!.map((r: Row) => databaseGrantOf(r));
  const resources = resourcesFromCatalog({
    backend: name,
    principals: ours.map((o) => ({
      user: o.user,
      host: o.host,
      isRole: o.isRole,
      marker: o.marker!,
      locked: o.locked,
      defaultRole: o.defaultRole,
      global: o.global,
      hashFingerprint: o.authenticationString ? hashFingerprint(o.authenticationString) : null,
    })),
    mappings: mappings!.map((r) => ({ user: String(r.user), host: String(r.host), role: String(r.role) })),
    databaseRows,
    tableRows: tables!.map((r) => ({ user: String(r.user), host: String(r.host), db: String(r.db), table: String(r.tbl), privileges: setOf(r.privs) })),
    columnRows: columns!.map((r) => ({
      user: String(r.user),
      host: String(r.host),
      db: String(r.db),
      table: String(r.tbl),
      column: String(r.col),
      privileges: setOf(r.privs),
    })),
    credentials: ropts.credentials,
  });
  return { backend: name, resources, ...(foreign.length ? { foreign } : {}) };
}
