// The aws driver: IAM users, groups, access-set roles, managed policies, attachments, memberships,
// inline policies and access keys, and the sessions of temporary principals (sessions.ts). This file is wiring only; each concern has its own file:
//  connection.ts  the IAM and STS clients, deadlines, request counting and pacing; errors.ts
//                 turns what goes wrong into a BackendError
//  read.ts        the bulk read, mapped into resources by state.ts (pure)
//  access.ts      effective access: the whole account's policies and the datasets' bucket
//                 policies, in bulk, mapped by effective.ts (pure)
//  ownership.ts   the boundary, re-checked for every change before any request
//  kinds/         one handler per resource kind, in the table below
//
// A change arrives as data (it may come from a saved plan file): it is narrowed to the AWS model
// first (src/model/aws.ts), so an unknown kind or a malformed attribute is refused before any
// request, and every handler works on attributes of its own kind's type.
import type { Backend, BackendStats, ExecuteResult, IssuedBackendSession, ReadOptions, SessionIssueRequest } from '../backend.js';
import type { ActualState, Change } from '../../core/types.js';
import type { AccessQuery, AccessReading } from '../../model/access.js';
import { asAwsChange, type AwsChangeOf, type AwsKind } from '../../model/aws.js';
import { readAccess } from './access.js';
import { AwsConnection, type AwsBackendOptions } from './connection.js';
import type { HandlerTable } from './kinds/handler.js';
import { attachments } from './kinds/attachments.js';
import { groups } from './kinds/groups.js';
import { inlinePolicies } from './kinds/inline-policies.js';
import { keys } from './kinds/keys.js';
import { memberships } from './kinds/memberships.js';
import { policies } from './kinds/policies.js';
import { roles } from './kinds/roles.js';
import { users } from './kinds/users.js';
import { checkOwnership, recordChange, type Ownership } from './ownership.js';
import { readActual, readOwnership } from './read.js';
import { issueSession } from './sessions.js';

export type { AwsBackendOptions } from './connection.js';

/** One handler per kind of the model: a kind without one, or a handler of another kind, does not compile. */
export const handlers = {
  user: users,
  group: groups,
  role: roles,
  policy: policies,
  attachment: attachments,
  membership: memberships,
  'inline-policy': inlinePolicies,
  key: keys,
} satisfies HandlerTable;

/** Runs the change through its kind's handler (`table` typed by kind, so `table[kind]` is `Handler<K>`). */
async function run<K extends AwsKind>(table: HandlerTable, aws: AwsConnection, kind: K, c: AwsChangeOf<K>): Promise<ExecuteResult> {
  const handler = table[kind];
  return handler.repeatable(c.action) ? aws.consistent(() => handler.execute(aws, c)) : handler.execute(aws, c);
}

export class AwsBackend implements Backend {
  readonly type = 'aws';
  readonly name: string;
  readonly #aws: AwsConnection;
  /** What the ownership checks go by: the last read's, kept true as changes are made. */
  #ownership: Ownership | undefined;

  constructor(opts: AwsBackendOptions) {
    this.#aws = new AwsConnection(opts);
    this.name = opts.name;
  }

  stats(): BackendStats {
    return this.#aws.stats();
  }

  async close(): Promise<void> {
    this.#aws.close();
  }

  async read(opts: ReadOptions): Promise<ActualState> {
    try {
      const { state, ownership } = await readActual(this.#aws, opts);
      this.#ownership = ownership;
      return state;
    } catch (e) {
      throw this.#aws.error(e);
    }
  }

  async execute(change: Change): Promise<ExecuteResult> {
    try {
      const c = asAwsChange(change);
      // A change executed before any read (apply of a saved plan) is checked against a bulk read now.
      this.#ownership ??= await readOwnership(this.#aws);
      checkOwnership(this.#aws, this.#ownership, c);
      const out = await run(handlers, this.#aws, c.kind, c);
      recordChange(this.#ownership, c);
      return out;
    } catch (e) {
      throw this.#aws.error(e, change.address);
    }
  }

  /** Who can reach the query's datasets, datagrant's principals or not: access.ts. */
  async readAccess(query: AccessQuery): Promise<AccessReading> {
    try {
      return await readAccess(this.#aws, query, new Date());
    } catch (e) {
      throw this.#aws.error(e);
    }
  }

  /** A session of `req.principal` as its access-set role: sessions.ts. */
  async issueSession(req: SessionIssueRequest): Promise<IssuedBackendSession> {
    try {
      return await issueSession(this.#aws, req);
    } catch (e) {
      throw this.#aws.error(e);
    }
  }
}

export function createAwsBackend(opts: AwsBackendOptions): AwsBackend {
  return new AwsBackend(opts);
}
