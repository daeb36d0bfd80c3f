// What the driver needs of each resource kind. The driver holds one handler per kind in a table
// checked against every kind of the model (src/model/aws.ts), so a kind without a handler, or a
// handler given the wrong kind, does not compile.
import type { ExecuteResult } from '../../backend.js';
import type { Action } from '../../../core/types.js';
import type { AwsChangeOf, AwsKind } from '../../../model/aws.js';
import type { AwsConnection } from '../connection.js';

export interface Handler<K extends AwsKind> {
  /** Performs one change, idempotently (src/backends/backend.ts), after the ownership check. */
  readonly execute: (aws: AwsConnection, change: AwsChangeOf<K>) => Promise<ExecuteResult>;
  /**
   * Whether NoSuchEntity right after a create may be waited out by running the whole change again
   * (IAM is eventually consistent). Not for a change that must not run twice: it waits inside.
   */
  readonly repeatable: (action: Action) => boolean;
}

export type HandlerTable = { [K in AwsKind]: Handler<K> };

/** Any change but a delete (which tolerates what is gone) may be repeated. */
export const unlessDelete = (action: Action) => action !== 'delete';
