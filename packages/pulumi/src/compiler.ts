// The one bridge to datagrant's own compiler. The component never builds a policy, a name or a
// tag itself: it parses the spec and compiles it with exactly the code `datagrant plan|apply`
// runs, so the two paths cannot disagree about what a grant means.
export { parseSpec, type LoadedSpec } from '../../../src/spec/load.js';
export { readSpecFile } from '../../../src/app/engine.js';
export { compile } from '../../../src/compile/index.js';
export { compileAws, DEFAULT_IAM_PATH, MANAGED_TAG } from '../../../src/compile/aws/compile.js';
export type { PolicyDocument } from '../../../src/model/aws-policy.js';
export type { Spec, SpecInput } from '../../../src/spec/schema.js';
export type { Json, Level, Notice, Resource } from '../../../src/core/types.js';
export { CompileError, SpecError } from '../../../src/core/errors.js';
