// What the driver needs of each resource kind. The driver holds one handler per kind in a table
// checked against every kind of the model (src/model/rgw.ts), so a kind without a handler, or a
// handler given the wrong kind, does not compile.
import type { ExecuteResult } from '../../backend.js';
import type { RgwChangeOf, RgwKind } from '../../../model/rgw.js';
import type { RgwConnection } from '../connection.js';

export interface Handler<K extends RgwKind> {
  /** Performs one change, idempotently (src/backends/backend.ts), after the ownership check. */
  readonly execute: (rgw: RgwConnection, change: RgwChangeOf<K>) => Promise<ExecuteResult>;
}

export type HandlerTable = { [K in RgwKind]: Handler<K> };
