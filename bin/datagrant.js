#!/usr/bin/env node
import { silenceSdkNodeVersionWarning } from '../dist/app/warnings.js';

silenceSdkNodeVersionWarning();
const { main } = await import('../dist/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
