// What every resource kind's handler works with, and the shape of the handler table.
import type { ExecuteResult } from '../backend.js';
import type { MysqlChangeOf, MysqlKind } from '../../model/mysql.js';
import type { Connections } from './connection.js';
import type { Ownership } from './ownership.js';

export interface MysqlContext {
  /** The backend's name: the prefix of its addresses, and of its errors. */
  name: string;
  conn: Connections;
  owner: Ownership;
}

/** Executes one change to a resource of kind K. */
export type Handler<K extends MysqlKind> = (ctx: MysqlContext, change: MysqlChangeOf<K>) => Promise<ExecuteResult>;

/** One handler per kind: a kind without one does not compile. */
export type MysqlHandlers = { [K in MysqlKind]: Handler<K> };
