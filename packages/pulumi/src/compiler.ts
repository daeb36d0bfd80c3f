// The one bridge to datagrant's own compiler. The component never builds a policy, a name or a
// tag itself: it parses the spec and compiles it with exactly the code `datagrant plan|apply`
// runs (the `datagrant` package), so the two paths cannot disagree about what a grant means.
export {
  parseSpec,
  readSpecFile,
  compile,
  compileAws,
  assertSpecInvariants,
  DEFAULT_IAM_PATH,
  MANAGED_TAG,
  CompileError,
  SpecError,
  type LoadedSpec,
  type PolicyDocument,
  type Spec,
  type SpecInput,
  type Json,
  type Level,
  type Notice,
  type Resource,
} from 'datagrant';
