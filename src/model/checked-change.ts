// A change read back from a plan (or made by another version) checked against a backend's resource
// kinds before anything is sent: a driver must never act on a kind it does not know or attributes
// of another shape. Shared by the PostgreSQL and MariaDB models, whose kinds are zod schemas.
import type { z } from 'zod';
import { BackendError } from '../core/errors.js';
import type { Change } from '../core/types.js';

/**
 * `change` when its kind is one of `schemas` and its resources agree with it, else a BackendError
 * naming its address and what is wrong: an unknown kind, a resource of another kind, a missing
 * `before` (delete) or `after` (anything else), or attributes not of the kind's shape.
 */
export function checkedChange<T extends Change>(change: Change, schemas: Readonly<Record<string, z.ZodType>>): T {
  const backend = change.backend;
  const refuse = (problem: string, code = 'malformed-change') =>
    new BackendError(
      `${backend}: ${change.address}: the change cannot be applied: ${problem}; was the plan file made by another version or edited? Make a new plan`,
      backend,
      code,
      false,
      change.address,
    );
  const kind: unknown = change.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(schemas, kind))
    throw refuse(`unknown resource kind ${JSON.stringify(kind)} (known: ${Object.keys(schemas).join(', ')})`, 'unknown-kind');
  if (change.action === 'delete' ? !change.before : !change.after)
    throw refuse(`a ${change.action} needs its ${change.action === 'delete' ? 'before' : 'after'} resource`);
  for (const side of ['before', 'after'] as const) {
    const r = change[side] as unknown;
    if (r === null || r === undefined) continue;
    if (typeof r !== 'object') throw refuse(`${side} is not a resource`);
    const { kind: rkind, name, attrs } = r as { kind?: unknown; name?: unknown; attrs?: unknown };
    if (rkind !== kind) throw refuse(`${side} is a ${JSON.stringify(rkind)}, not a ${kind}`);
    if (typeof name !== 'string' || name.length === 0) throw refuse(`${side}.name must be a non-empty string`);
    const parsed = schemas[kind]!.safeParse(attrs);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${[side, 'attrs', ...i.path.map(String)].join('.')}: ${i.message}`);
      throw refuse(`the ${kind}'s attributes are malformed (${problems.join('; ')})`);
    }
  }
  return change as T;
}
