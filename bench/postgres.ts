// PostgreSQL benchmark against the local server (issue 4): apply 1,000 principals in 20 groups
// from empty (target ≤ 10 s) and a no-op plan (target ≤ 1 s), through the CLI's own code path.
import { cpus } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/app/io.js';
import { adminQuery, pgFixture, urlFor } from '../test/support/pg.js';

const N = Number(process.env.BENCH_PG_PRINCIPALS ?? 1000);
const GROUPS = 20;
const fx = pgFixture('bench');
const db = await fx.database('warehouse');
const schemas = Array.from({ length: GROUPS }, (_, g) => `s${g}`);
await adminQuery(db, schemas.map((s) => `CREATE SCHEMA ${s}; CREATE TABLE ${s}.t (id int);`).join('\n'));

const l = ['version: 1', 'backends:', `  wh: { type: postgres, url: "\${WH_URL}", scope: ${fx.run} }`, 'datasets:'];
for (const s of schemas) l.push(`  ${s}: { backend: wh, database: ${db}, schema: ${s} }`);
l.push('groups:');
for (let g = 0; g < GROUPS; g++) l.push(`  ${fx.run}_g${g}: { grants: [{ dataset: s${g}, access: ${g % 2 ? 'write' : 'read'} }] }`);
l.push('principals:');
for (let p = 0; p < N; p++) l.push(`  ${fx.run}_u${p}: { type: service, groups: [${fx.run}_g${p % GROUPS}] }`);

const dir = mkdtempSync(join(tmpdir(), 'dg-pgbench-'));
writeFileSync(join(dir, 'datagrant.yaml'), l.join('\n'));
let out = '';
const io: Io = {
  stdout: (s) => (out += s),
  stderr: (s) => (out += s),
  env: { ...process.env, WH_URL: urlFor(db), DATAGRANT_MASTER_KEY: 'b'.repeat(64) },
  cwd: dir,
  isTTY: false,
  now: () => new Date(),
};
const run = async (...args: string[]) => {
  out = '';
  const t = performance.now();
  const code = await main(args, io);
  if (code !== 0) throw new Error(`datagrant ${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`);
  return (performance.now() - t) / 1000;
};
console.log(`postgres: ${N} principals in ${GROUPS} groups, one schema each (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'})`);
try {
  const applied = await run('apply', '--auto-approve', '--concurrency', process.env.BENCH_CONCURRENCY ?? '8');
  const noop = await run('plan', '--detailed-exitcode');
  console.log(`  apply from empty     ${applied.toFixed(1).padStart(6)} s  (target ≤ 10 s)`);
  console.log(`  no-op plan           ${noop.toFixed(2).padStart(6)} s  (target ≤ 1 s)`);
  await run('destroy', '--auto-approve');
} finally {
  rmSync(dir, { recursive: true, force: true });
  await fx.cleanup();
}
