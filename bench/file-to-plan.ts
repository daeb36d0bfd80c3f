// One cold run of the path a plan takes from the spec file, in a process of its own as the CLI
// runs it: read the file, parse and validate, compile, diff against the actual state (read from
// `actual.json` before the clock starts, as a driver would have read it). Prints the times as JSON.
// Run by bench/core.ts: node --import tsx bench/file-to-plan.ts SPEC ACTUAL NOW
import { readFileSync } from 'node:fs';
import { loadSpec, readSpecFile } from '../src/app/engine.js';
import { compile } from '../src/compile/index.js';
import type { ActualState } from '../src/core/types.js';
import { diff } from '../src/plan/diff.js';

const [file, actualFile, nowText] = process.argv.slice(2);
if (!file || !actualFile || !nowText) throw new Error('usage: file-to-plan.ts SPEC ACTUAL NOW');
const now = new Date(nowText);
const actual = JSON.parse(readFileSync(actualFile, 'utf8')) as Record<string, ActualState>;

const ms = () => Number(process.hrtime.bigint()) / 1e6;
const cpu0 = process.cpuUsage();
const t0 = ms();
const source = readSpecFile(file);
const t1 = ms();
const loaded = loadSpec(source, {}, now);
const t2 = ms();
const { desired, notices } = compile(loaded.spec, now);
const t3 = ms();
const plan = diff(desired, actual, { now, specHash: loaded.specHash, applied: {}, credentials: [], notices: [...loaded.notices, ...notices] });
const t4 = ms();
// CPU time of the whole process (the garbage collector's threads included): less sensitive than
// wall time to other processes on a shared machine.
const cpu = process.cpuUsage(cpu0);

console.log(
  JSON.stringify({
    read: t1 - t0,
    parse: t2 - t1,
    compile: t3 - t2,
    diff: t4 - t3,
    total: t4 - t0,
    cpu: (cpu.user + cpu.system) / 1000,
    changes: plan.changes.length,
  }),
);
