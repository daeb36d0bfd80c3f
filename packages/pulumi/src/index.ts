export { DataAccess, DataAccessUser, compileSpec } from './data-access.js';
export type { CompiledSpec, DataAccessArgs, DataAccessUserArgs, PrincipalCredentials } from './data-access.js';
