// Pure-core benchmark: parse + compile + diff for a large organisation, no I/O.
// Target (issue 2): compile + diff of 10,000 principals, 200 groups, 500 datasets in < 1 s, < 512 MB.
// Target (issue 11): the whole path from the spec file to the plan (read, parse, validate, compile,
// diff against the state as read back) in < 1 s, each run cold in a process of its own as the CLI
// runs it (bench/file-to-plan.ts). BENCH_RUNS sets how many (the median is reported).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { compile } from '../src/compile/index.js';
import { checkInvariants, intendedFacts } from '../src/compile/invariants.js';
import type { ActualState } from '../src/core/types.js';
import { diff } from '../src/plan/diff.js';
import { parseSpec } from '../src/spec/load.js';

const PRINCIPALS = Number(process.env.BENCH_PRINCIPALS ?? 10_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const FILE_TO_PLAN_LIMIT_MS = 1000;
const GROUPS = 200;
const DATASETS = 500;
const NOW = new Date('2026-11-28T00:00:00Z');

// An AWS account holds at most 5,000 IAM users: the organisation spans as many accounts (aws
// backends, told apart by their endpoints) as it needs, each with its share of the datasets,
// groups and principals. Nothing here calls them.
const ACCOUNTS = Math.max(1, Math.ceil(PRINCIPALS / 5000));

function specText(): string {
  // Item i of n belongs to account a; account a's items are first(a, n) up to first(a + 1, n).
  const account = (i: number, n: number) => Math.floor((i * ACCOUNTS) / n);
  const first = (a: number, n: number) => Math.ceil((a * n) / ACCOUNTS);
  /** The i-th of account a's share of n items, wrapping round. */
  const nth = (a: number, n: number, i: number) => first(a, n) + (i % (first(a + 1, n) - first(a, n)));
  const l = ['version: 1', 'backends:'];
  for (let a = 0; a < ACCOUNTS; a++) l.push(`  aws${a}: { type: aws, endpoint: 'https://iam.account${a}.example' }`);
  l.push('datasets:');
  for (let d = 0; d < DATASETS; d++) l.push(`  ds${d}: { backend: aws${account(d, DATASETS)}, bucket: bucket-${d % 50}, prefix: team${d}/ }`);
  l.push('groups:');
  for (let g = 0; g < GROUPS; g++) {
    l.push(`  g${g}:`, '    grants:');
    const a = account(g, GROUPS);
    for (let k = 0; k < 3; k++) l.push(`      - { dataset: ds${nth(a, DATASETS, g * 3 + k)}, access: ${['read', 'write', 'admin'][k]} }`);
  }
  l.push('principals:');
  for (let p = 0; p < PRINCIPALS; p++) {
    const a = account(p, PRINCIPALS);
    l.push(`  user${p}:`, `    type: ${p % 5 ? 'person' : 'service'}`, `    groups: [g${nth(a, GROUPS, p)}, g${nth(a, GROUPS, p * 7 + 1)}]`);
    if (p % 10 === 0) l.push('    grants:', `      - { dataset: ds${nth(a, DATASETS, p)}, access: read, expires: 2027-06-30 }`);
  }
  return l.join('\n');
}

const ms = (t: bigint) => Number(t) / 1e6;
const text = specText();
const t0 = process.hrtime.bigint();
const { spec } = parseSpec(text, { file: 'bench.yaml', env: {}, now: NOW });
const t1 = process.hrtime.bigint();
const { desired } = compile(spec, NOW);
const t2 = process.hrtime.bigint();
const backends = Object.keys(desired);
const objects = backends.reduce((n, b) => n + desired[b]!.resources.length, 0);
const fromEmpty = diff(desired, Object.fromEntries(backends.map((b) => [b, { backend: b, resources: [] }])), { now: NOW, specHash: 'x' });
const t3 = process.hrtime.bigint();
// A no-op diff: actual equals desired (as a driver would read it back, as separate objects).
const actual: Record<string, ActualState> = Object.fromEntries(backends.map((b) => [b, { backend: b, resources: structuredClone(desired[b]!.resources) }]));
const t4 = process.hrtime.bigint();
const noop = diff(desired, actual, { now: NOW, specHash: 'x' });
const t5 = process.hrtime.bigint();
if (noop.changes.length !== 0) throw new Error(`no-op diff found ${noop.changes.length} changes`);
// Invariants that hold (every grant is checked, none breaks): what every plan of such a spec pays.
const invariants = {
  'ds0-stays-in-groups': { datasets: ['ds0'], onlyMembersOf: Object.keys(spec.groups) },
  'admin-only-through-groups': { access: 'admin' as const, onlyMembersOf: Object.keys(spec.groups) },
  'admin-spread': { access: 'admin' as const, maxDatasets: 10 },
};
const t6 = process.hrtime.bigint();
const broken = checkInvariants({ invariants }, intendedFacts(spec, NOW), NOW);
const t7 = process.hrtime.bigint();

const rssMb = process.resourceUsage().maxRSS / 1024;
console.log(
  `core: ${PRINCIPALS} principals, ${GROUPS} groups, ${DATASETS} datasets in ${ACCOUNTS} AWS account${ACCOUNTS === 1 ? '' : 's'} → ${objects} IAM objects (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'})`,
);
console.log(
  `  parse + validate        ${ms(t1 - t0)
    .toFixed(0)
    .padStart(6)} ms`,
);
console.log(
  `  compile                 ${ms(t2 - t1)
    .toFixed(0)
    .padStart(6)} ms`,
);
console.log(
  `  diff from empty         ${ms(t3 - t2)
    .toFixed(0)
    .padStart(6)} ms  (${fromEmpty.changes.length} changes)`,
);
console.log(
  `  diff no-op              ${ms(t5 - t4)
    .toFixed(0)
    .padStart(6)} ms`,
);
console.log(
  `  invariants (3)          ${ms(t7 - t6)
    .toFixed(0)
    .padStart(6)} ms  (${broken.length} broken)`,
);
console.log(`  compile + diff (worst)  ${(ms(t2 - t1) + Math.max(ms(t3 - t2), ms(t5 - t4))).toFixed(0).padStart(6)} ms  (target < 1000 ms)`);
console.log(`  peak RSS                ${rssMb.toFixed(0).padStart(6)} MB  (target < 512 MB)`);

// File to plan, cold: the spec and the state a driver would read back (equal to the desired one,
// so the diff compares every object and finds nothing to do) are written out for each run.
const dir = mkdtempSync(join(tmpdir(), 'dg-bench-'));
try {
  const specFile = join(dir, 'datagrant.yaml');
  const actualFile = join(dir, 'actual.json');
  writeFileSync(specFile, text);
  writeFileSync(actualFile, JSON.stringify(actual));
  type Run = { read: number; parse: number; compile: number; diff: number; total: number; cpu: number; changes: number };
  const runs: Run[] = [];
  const loads: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    loads.push(loadavg()[0]!);
    const child = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'file-to-plan.ts'), specFile, actualFile, NOW.toISOString()], {
      encoding: 'utf8',
    });
    if (child.status !== 0) throw new Error(`file-to-plan run failed:\n${child.stderr}`);
    const run = JSON.parse(child.stdout) as Run;
    if (run.changes !== 0) throw new Error(`file-to-plan: the plan against the read-back state has ${run.changes} changes`);
    runs.push(run);
  }
  const median = (k: keyof Run) => {
    const xs = runs.map((r) => r[k]).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  };
  const f = (x: number) => x.toFixed(0);
  const totals = runs.map((r) => r.total);
  console.log(
    `file-to-plan ${PRINCIPALS / 1000}k principals: ${f(median('total'))} ms (limit ${FILE_TO_PLAN_LIMIT_MS} ms)  median of ${RUNS} cold processes, min ${f(Math.min(...totals))}, max ${f(Math.max(...totals))}; load average ${Math.min(...loads).toFixed(2)}-${Math.max(...loads).toFixed(2)} on ${cpus().length} CPUs`,
  );
  console.log(
    `  read ${f(median('read'))} ms, parse + validate ${f(median('parse'))} ms, compile ${f(median('compile'))} ms, diff (no-op) ${f(median('diff'))} ms  (medians of each part); CPU time ${f(median('cpu'))} ms`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
