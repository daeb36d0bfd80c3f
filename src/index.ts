// datagrant as a library: the pure core (spec → desired state → plan → text), the types it speaks,
// and the CLI's entry point. @datagrant/pulumi builds on exactly this.
export { parseSpec, type LoadedSpec } from './spec/load.js';
export { specSchema, type Spec, type SpecInput } from './spec/schema.js';
export { readSpecFile } from './app/engine.js';
export { compile } from './compile/index.js';
export { compileAws } from './compile/aws/compile.js';
export {
  actualFacts,
  assertSpecInvariants,
  checkInvariants,
  intendedFacts,
  InvariantError,
  type AccessFact,
  type AccessFacts,
  type FactHolder,
} from './compile/invariants.js';
export type { AccessReportRow, ActualAccess, InvariantViolation } from './model/access.js';
export { DEFAULT_IAM_PATH, INSTALLATION_TAG, MANAGED_TAG } from './model/aws.js';
export type { PolicyDocument } from './model/aws-policy.js';
export { diff, summarize } from './plan/diff.js';
export { renderPlanJson, renderPlanText } from './render/text.js';
export type { Action, ActualState, Address, Change, DesiredState, Json, Level, Notice, Plan, Resource } from './core/types.js';
export { ApplyError, BackendError, CompileError, DatagrantError, SpecError, StalePlanError, StoreError, UsageError } from './core/errors.js';
export { main } from './cli/main.js';
