// The rgw driver: a Ceph RADOS gateway's users, their S3 keys and their inline policies. This file
// is wiring only; each concern has its own file:
//  connection.ts    the admin ops API (signed like S3) and the IAM API, deadlines, request
//                   counting, one queue per user; errors.ts turns what goes wrong into a BackendError
//  read.ts          the read, mapped into resources by state.ts (pure)
//  access.ts        effective access (every user, the datasets' buckets), by effective.ts (pure)
//  ownership.ts     the boundary (uid prefix and datagrant's mark), re-checked for every change
//  user-changes.ts  Ceph bug 48761: every change to a user deletes its policies; put them back
//  kinds/           one handler per resource kind, in the table below
//
// A change arrives as data (it may come from a saved plan file): it is narrowed to the RGW model
// first (src/model/rgw.ts), so an unknown kind or a malformed attribute is refused before any
// request, and every handler works on attributes of its own kind's type.
import type { Backend, BackendStats, ExecuteResult, ReadOptions } from '../backend.js';
import type { AccessQuery, AccessReading } from '../../model/access.js';
import type { ActualState, Change } from '../../core/types.js';
import { asRgwChange, type RgwChangeOf, type RgwKind } from '../../model/rgw.js';
import { readAccess } from './access.js';
import { RgwConnection, type RgwBackendOptions } from './connection.js';
import type { HandlerTable } from './kinds/handler.js';
import { inlinePolicies } from './kinds/inline-policies.js';
import { keys } from './kinds/keys.js';
import { users } from './kinds/users.js';
import { checkOwnership, recordChange } from './ownership.js';
import { readActual, type Ownership } from './read.js';

export type { RgwBackendOptions } from './connection.js';

/** One handler per kind of the model: a kind without one, or a handler of another kind, does not compile. */
export const handlers = {
  user: users,
  'inline-policy': inlinePolicies,
  key: keys,
} satisfies HandlerTable;

/** Runs the change through its kind's handler (`table` typed by kind, so `table[kind]` is `Handler<K>`). */
async function run<K extends RgwKind>(table: HandlerTable, rgw: RgwConnection, kind: K, c: RgwChangeOf<K>): Promise<ExecuteResult> {
  return table[kind].execute(rgw, c);
}

export class RgwBackend implements Backend {
  readonly type = 'rgw';
  readonly name: string;
  readonly #rgw: RgwConnection;
  /** What the ownership checks go by: the last read's, kept true as changes are made. */
  #ownership: Ownership | undefined;

  constructor(opts: RgwBackendOptions) {
    this.#rgw = new RgwConnection(opts);
    this.name = opts.name;
  }

  stats(): BackendStats {
    return this.#rgw.stats();
  }

  async close(): Promise<void> {
    this.#rgw.close();
  }

  async read(opts: ReadOptions): Promise<ActualState> {
    try {
      const { state, ownership } = await readActual(this.#rgw, opts);
      this.#ownership = ownership;
      return state;
    } catch (e) {
      throw this.#rgw.error(e);
    }
  }

  async readAccess(query: AccessQuery): Promise<AccessReading> {
    try {
      return await readAccess(this.#rgw, query, new Date());
    } catch (e) {
      throw this.#rgw.error(e);
    }
  }

  async execute(change: Change): Promise<ExecuteResult> {
    try {
      const c = asRgwChange(change);
      // A change executed before any read (apply of a saved plan) is checked against a read now.
      this.#ownership ??= (await readActual(this.#rgw, { credentials: [] })).ownership;
      checkOwnership(this.#rgw, this.#ownership, c);
      const out = await run(handlers, this.#rgw, c.kind, c);
      recordChange(this.#ownership, c);
      return out;
    } catch (e) {
      throw this.#rgw.error(e, change.address);
    }
  }
}

export function createRgwBackend(opts: RgwBackendOptions): RgwBackend {
  return new RgwBackend(opts);
}
