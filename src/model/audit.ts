// Audit entry details that one part of datagrant writes and another reads back: apply records the
// spec hash each run applied, so that a review can tell the run that applied its revocations
// (a changed spec) from one that only re-applied the spec the review was started against.

/** The detail of `apply.start`. */
export const applyStartDetail = (changes: number, runId: string, specHash: string) => `${changes} changes, run ${runId}, spec sha256 ${specHash}`;

/** The spec hash an `apply.start` detail names; undefined for runs recorded before it was. */
export function specHashOfRun(detail: string | null): string | undefined {
  return /, spec sha256 (\S+)$/.exec(detail ?? '')?.[1];
}
