// PostgreSQL benchmark against the local server: apply 1,000 principals in 20 groups from empty
// (issue 4: ≤ 10 s; issue 11: ≤ 1.3× the psql floor) and a no-op plan (≤ 1 s), through the CLI's
// own code path.
//
// The floor: every statement the apply sent that changes the catalog (CREATE/ALTER ROLE, COMMENT,
// GRANT, REVOKE, ALTER DEFAULT PRIVILEGES), recorded as sent, its roles renamed, run by
// `psql -1 -f` in one transaction on the same server: what the same work costs without
// datagrant's reads, checks, journal and round trips. Rounds alternate apply and floor, so that
// load from elsewhere on the machine weighs on both; the medians are compared.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/app/io.js';
import { adminQuery, pgFixture, urlFor } from '../test/support/pg.js';

const N = Number(process.env.BENCH_PG_PRINCIPALS ?? 1000);
const ROUNDS = Math.max(1, Number(process.env.BENCH_PG_ROUNDS ?? 3));
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

/** Every statement text the driver sends while `fn` runs. */
async function recording(fn: () => Promise<number>): Promise<{ seconds: number; sent: string[] }> {
  const sent: string[] = [];
  const query = pg.Client.prototype.query;
  (pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown }).query = function (this: pg.Client, ...args: unknown[]) {
    const first = args[0] as string | { text?: string };
    sent.push(typeof first === 'string' ? first : (first.text ?? ''));
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  };
  try {
    return { seconds: await fn(), sent };
  } finally {
    pg.Client.prototype.query = query;
  }
}

const WRITE = /^(CREATE|ALTER|COMMENT|GRANT|REVOKE|DROP)\b/i;
const psql = (file: string) => {
  const u = new URL(urlFor(db));
  const password = decodeURIComponent(u.password);
  u.password = '';
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-1', '-f', file, u.toString()], {
    env: { ...process.env, PGPASSWORD: password },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
};

/** The apply's catalog writes, with its roles `${run}_u1` renamed `${run}_f_u1`, timed under `psql -1 -f`; then dropped. */
function floor(sent: string[]): { seconds: number; statements: number } {
  // The driver separates the statements of one message with ";\n"; no literal it writes holds a newline.
  const writes = sent
    .flatMap((t) => t.split(/;\n/))
    .map((s) => s.trim())
    .filter((s) => WRITE.test(s));
  const role = new RegExp(`"${fx.run}_([gu]\\d+)"`, 'g');
  const renamed = writes.map((s) => s.replace(role, `"${fx.run}_f_$1"`));
  const roles = [...new Set(renamed.flatMap((s) => [...s.matchAll(/^CREATE ROLE ("[^"]+")/g)].map((m) => m[1]!)))];
  const file = join(dir, 'floor.sql');
  writeFileSync(file, renamed.map((s) => `${s};\n`).join(''));
  const t = performance.now();
  psql(file);
  const seconds = (performance.now() - t) / 1000;
  writeFileSync(file, `DROP OWNED BY ${roles.join(', ')};\nDROP ROLE ${roles.join(', ')};\n`);
  psql(file);
  return { seconds, statements: writes.length };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
console.log(`postgres: ${N} principals in ${GROUPS} groups, one schema each (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}), ${ROUNDS} round(s)`);
try {
  const rounds: { apply: number; floor: number; noop: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const { seconds: apply, sent } = await recording(() => run('apply', '--auto-approve', '--concurrency', process.env.BENCH_CONCURRENCY ?? '8'));
    const noop = await run('plan', '--detailed-exitcode');
    await run('destroy', '--auto-approve');
    const { seconds: f, statements } = floor(sent);
    rounds.push({ apply, floor: f, noop });
    console.log(
      `  round ${r + 1}: apply ${apply.toFixed(2)} s (${sent.length} queries), psql floor ${f.toFixed(2)} s (${statements} statements): ${(apply / f).toFixed(2)}×`,
    );
  }
  const apply = median(rounds.map((x) => x.apply));
  const fl = median(rounds.map((x) => x.floor));
  const ratio = median(rounds.map((x) => x.apply / x.floor));
  console.log(`  apply from empty     ${apply.toFixed(1).padStart(6)} s  (target ≤ 10 s)`);
  console.log(`  psql -1 floor        ${fl.toFixed(1).padStart(6)} s  (apply/floor ${ratio.toFixed(2)}×, target ≤ 1.3×; medians)`);
  console.log(
    `  no-op plan           ${median(rounds.map((x) => x.noop))
      .toFixed(2)
      .padStart(6)} s  (target ≤ 1 s)`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
  await fx.cleanup();
}
