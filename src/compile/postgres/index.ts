// Registers the postgres compiler. Import this module from an entry point (not from
// compile/index.ts itself: that import cycle would run this before COMPILERS exists); or list
// `postgres: compilePostgres` in COMPILERS directly.
import { registerCompiler } from '../index.js';
import { compilePostgres } from './compile.js';

export { compilePostgres } from './compile.js';
registerCompiler('postgres', compilePostgres);
