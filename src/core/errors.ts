// Named errors carry context; only the CLI entry point turns them into text and exit codes.

export interface SpecProblem {
  file: string;
  line: number;
  column: number;
  /** Dotted path of the offending field, e.g. `principals.alice.grants[0].access`. */
  path: string;
  message: string;
}

export class DatagrantError extends Error {
  override name = 'DatagrantError';
}

export class SpecError extends DatagrantError {
  override name = 'SpecError';
  constructor(readonly problems: SpecProblem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

export function formatProblem(p: SpecProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/** A limit of the target system (IAM quotas, identifier lengths) that the spec exceeds. */
export class CompileError extends DatagrantError {
  override name = 'CompileError';
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

export class BackendError extends DatagrantError {
  override name = 'BackendError';
  constructor(
    message: string,
    readonly backend: string,
    readonly code: string | undefined,
    readonly retryable: boolean,
    readonly address?: string,
  ) {
    super(message);
  }
}

export class ApplyError extends DatagrantError {
  override name = 'ApplyError';
  constructor(
    message: string,
    readonly failures: { address: string; message: string }[],
  ) {
    super(message);
  }
}

export class StalePlanError extends DatagrantError {
  override name = 'StalePlanError';
}

export class StoreError extends DatagrantError {
  override name = 'StoreError';
}

/**
 * The state moved to another master key (`datagrant rekey`) after this process opened it: every
 * run it starts is refused until it is restarted with the new key, so a long-running process
 * (serve) tells this apart from a failure that a retry may cure.
 */
export class KeyChangedError extends StoreError {
  override name = 'KeyChangedError';
}

export class LockError extends DatagrantError {
  override name = 'LockError';
}

export class UsageError extends DatagrantError {
  override name = 'UsageError';
}

export interface PrincipalNameConflict {
  /** The spec's principal, as the spec spells it. */
  principal: string;
  /** The SCIM user that owns the name; its userName is absent when the user has been deleted. */
  scimId: string;
  scimUserName?: string;
}

/**
 * The spec defines a principal under a name a SCIM identity was given. Names are case-insensitive
 * in IAM, and a SCIM identity's name is its own for ever: merging the two would hand the person's
 * IAM user, key and role to the spec's principal (or, once deleted, reuse them), so nothing is
 * planned until the spec's principal is renamed.
 */
export class PrincipalNameConflictError extends DatagrantError {
  override name = 'PrincipalNameConflictError';
  constructor(readonly conflicts: PrincipalNameConflict[]) {
    super(
      conflicts
        .map(
          (c) =>
            `the spec's principal ${JSON.stringify(c.principal)} has the name of SCIM user ${c.scimUserName !== undefined ? `${JSON.stringify(c.scimUserName)} (id ${c.scimId})` : `${c.scimId} (deleted; its name stays reserved)`}, whose name it is for good: rename the spec's principal`,
        )
        .join('\n'),
    );
  }
}

/** An access review asked to do what it cannot: a taken name, a closed review, a row not in it. */
export class ReviewError extends DatagrantError {
  override name = 'ReviewError';
}

/**
 * A request for access refused, or a decision on one that cannot be taken. `kind` says whose the
 * problem is, for serve's answer: the request itself (`invalid`), who asks (`forbidden`), a request
 * that does not exist (`not-found`), or one no longer in a state that allows it, or an approval
 * that would break an invariant (`conflict`).
 */
export class RequestError extends DatagrantError {
  override name = 'RequestError';
  constructor(
    readonly kind: 'invalid' | 'forbidden' | 'not-found' | 'conflict',
    message: string,
    /** The invariants an approval would break, each in its own words. */
    readonly violations: readonly string[] = [],
  ) {
    super(message);
  }
}
