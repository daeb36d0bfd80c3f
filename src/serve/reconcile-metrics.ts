// What a reconciler counts, in a module of its own: the server's thread needs the shape and the
// zeros without loading the reconciler (the engine, the compiler, the drivers).
export interface ReconcileMetrics {
  runs: number;
  failures: number;
  skippedLocked: number;
  /** Runs asked for by a SCIM change that found nothing changed since the last good run. */
  skippedUnchanged: number;
  /** Runs asked for by a SCIM change that another run (this replica's or another's) had covered. */
  skippedCovered: number;
  changesApplied: number;
  /** Runs that found a mass deprovisioning and held its irreversible deletions for a person. */
  massEvents: number;
  /** Deletions held right now, waiting for `datagrant apply --allow-mass-destroy`. */
  heldDeletions: number;
  /** Violations of the spec's invariants whose access a reconcile withheld (the rest applied). */
  invariantsWithheld: number;
  lastDurationSeconds: number;
  durationSecondsSum: number;
}

export const ZERO_METRICS: Readonly<ReconcileMetrics> = {
  runs: 0,
  failures: 0,
  skippedLocked: 0,
  skippedUnchanged: 0,
  skippedCovered: 0,
  changesApplied: 0,
  massEvents: 0,
  heldDeletions: 0,
  invariantsWithheld: 0,
  lastDurationSeconds: 0,
  durationSecondsSum: 0,
};
