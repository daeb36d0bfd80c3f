// What every resource kind's handler works with, and the shape of the handler table.
import type { ExecuteResult } from '../backend.js';
import type { PgChangeOf, PgKind } from '../../model/postgres.js';
import type { Connections, Query } from './connection.js';
import type { Ownership } from './ownership.js';
import { notTakenEffect, type Held } from './verify.js';

export interface PgContext {
  /** The backend's name: the prefix of its addresses, and of its errors. */
  name: string;
  conn: Connections;
  owner: Ownership;
}

/** Executes one change to a resource of kind K. */
export type Handler<K extends PgKind> = (ctx: PgContext, change: PgChangeOf<K>) => Promise<ExecuteResult>;

/** One handler per kind: a kind without one does not compile. */
export type PgHandlers = { [K in PgKind]: Handler<K> };

/** Fails the change (its transaction) unless what it wanted and what the catalog holds agree; see verify.ts. */
export async function confirm(ctx: PgContext, q: Query, address: string, role: string, found: { missing: Held[]; leftover: Held[] }): Promise<void> {
  if (found.missing.length === 0 && found.leftover.length === 0) return;
  const me = (await q('SELECT current_user AS me')).rows[0] as { me: string };
  throw notTakenEffect(ctx.name, address, role, me.me, found.missing, found.leftover);
}
