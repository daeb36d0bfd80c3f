// MariaDB benchmark against the private test server (scripts/mysql-setup.sh): apply 500
// principals in 20 groups from empty, and a no-op plan, through the CLI's own code path, with the
// messages and statements each sent.
//
// The floor: every statement the apply sent that changes the grant tables (CREATE USER/ROLE,
// GRANT, REVOKE, SET DEFAULT ROLE, ALTER USER, the marker's UPDATE), recorded as sent, its accounts
// and roles renamed, run by the `mariadb` client from one file on the same server: what the same
// work costs without datagrant's reads, checks, journal and round trips, one statement after the
// other (the apply runs 8 changes at once, so it may beat a floor that MariaDB's own serial
// grant-table writes bound). Rounds alternate apply and floor, so that load from elsewhere on the
// machine weighs on both; the medians are compared.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import mysqlCore from 'mysql2';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/app/io.js';
import { mysqlAdmin, mysqlFixture, mysqlUrlFor } from '../test/support/mysql.js';

const N = Number(process.env.BENCH_MYSQL_PRINCIPALS ?? 500);
const ROUNDS = Math.max(1, Number(process.env.BENCH_MYSQL_ROUNDS ?? 3));
const GROUPS = 20;
const fx = mysqlFixture('bench');
const dbs: string[] = [];
for (let g = 0; g < GROUPS; g++) dbs.push(await fx.database(`d${g}`));
await mysqlAdmin(dbs.map((d) => `CREATE TABLE \`${d}\`.t (id int)`).join(';\n'));

const l = ['version: 1', 'backends:', `  db: { type: mysql, url: "\${DB_URL}", scope: ${fx.run} }`, 'datasets:'];
dbs.forEach((d, g) => l.push(`  d${g}: { backend: db, database: ${d} }`));
l.push('groups:');
for (let g = 0; g < GROUPS; g++) l.push(`  ${fx.run}_g${g}: { grants: [{ dataset: d${g}, access: ${g % 2 ? 'write' : 'read'} }] }`);
l.push('principals:');
for (let p = 0; p < N; p++) l.push(`  ${fx.run}_u${p}: { type: service, groups: [${fx.run}_g${p % GROUPS}] }`);

const dir = mkdtempSync(join(tmpdir(), 'dg-mysqlbench-'));
writeFileSync(join(dir, 'datagrant.yaml'), l.join('\n'));
let out = '';
const io: Io = {
  stdout: (s) => (out += s),
  stderr: (s) => (out += s),
  env: { ...process.env, DB_URL: mysqlUrlFor(), DATAGRANT_MASTER_KEY: 'b'.repeat(64) },
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

/** Every message the driver sends while `fn` runs (a message holds one or more `;\n`-separated statements). */
async function recording(fn: () => Promise<number>): Promise<{ seconds: number; sent: string[] }> {
  const sent: string[] = [];
  const proto = mysqlCore.Connection.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const query = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const first = args[0] as string | { sql?: string };
    sent.push(typeof first === 'string' ? first : (first.sql ?? ''));
    return query.apply(this, args);
  };
  try {
    return { seconds: await fn(), sent };
  } finally {
    proto.query = query;
  }
}

const statementsOf = (sent: string[]) => sent.flatMap((t) => t.split(/;\n/)).map((s) => s.trim());
const WRITE = /^(CREATE|ALTER|GRANT|REVOKE|SET DEFAULT ROLE|UPDATE mysql\.global_priv|DROP)\b/i;
const mariadb = (file: string) => {
  const u = new URL(mysqlUrlFor());
  execFileSync('mariadb', ['--protocol=tcp', '-h', u.hostname, '-P', u.port, '-u', decodeURIComponent(u.username)], {
    env: { ...process.env, MYSQL_PWD: decodeURIComponent(u.password) },
    input: `source ${file}\n`,
    stdio: ['pipe', 'ignore', 'inherit'],
  });
};

/** The apply's grant-table writes, its accounts and roles renamed, timed under the mariadb client; then dropped. */
function floor(sent: string[]): { seconds: number; statements: number } {
  const writes = statementsOf(sent).filter((s) => WRITE.test(s));
  const name = new RegExp(`${fx.run}_([gu]\\d+)`, 'g');
  const renamed = writes.map((s) => s.replace(name, `${fx.run}_f_$1`));
  const users = [...new Set(renamed.flatMap((s) => [...s.matchAll(/^CREATE USER ('[^']+'@'[^']*')/g)].map((m) => m[1]!)))];
  const roles = [...new Set(renamed.flatMap((s) => [...s.matchAll(/^CREATE ROLE (`[^`]+`)/g)].map((m) => m[1]!)))];
  const file = join(dir, 'floor.sql');
  writeFileSync(file, renamed.map((s) => `${s};\n`).join(''));
  const t = performance.now();
  mariadb(file);
  const seconds = (performance.now() - t) / 1000;
  writeFileSync(file, [...users.map((u) => `DROP USER ${u};\n`), ...roles.map((r) => `DROP ROLE ${r};\n`)].join(''));
  mariadb(file);
  return { seconds, statements: writes.length };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
console.log(`mysql: ${N} principals in ${GROUPS} groups, one database each (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}), ${ROUNDS} round(s)`);
try {
  const rounds: { apply: number; floor: number; noop: number; messages: number; statements: number; noopMessages: number; noopStatements: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const { seconds: apply, sent } = await recording(() => run('apply', '--auto-approve', '--concurrency', process.env.BENCH_CONCURRENCY ?? '8'));
    const { seconds: noop, sent: noopSent } = await recording(() => run('plan', '--detailed-exitcode'));
    await run('destroy', '--auto-approve');
    const { seconds: f, statements } = floor(sent);
    const round = {
      apply,
      floor: f,
      noop,
      messages: sent.length,
      statements: statementsOf(sent).length,
      noopMessages: noopSent.length,
      noopStatements: statementsOf(noopSent).length,
    };
    rounds.push(round);
    console.log(
      `  round ${r + 1}: apply ${apply.toFixed(2)} s (${round.messages} messages, ${round.statements} statements), mariadb floor ${f.toFixed(2)} s (${statements} statements): ${(apply / f).toFixed(2)}×; no-op plan ${noop.toFixed(2)} s (${round.noopMessages} messages, ${round.noopStatements} statements)`,
    );
  }
  const ratio = median(rounds.map((x) => x.apply / x.floor));
  console.log(
    `  apply from empty     ${median(rounds.map((x) => x.apply))
      .toFixed(1)
      .padStart(6)} s  (${rounds[0]!.statements} statements in ${rounds[0]!.messages} messages)`,
  );
  console.log(
    `  mariadb floor        ${median(rounds.map((x) => x.floor))
      .toFixed(1)
      .padStart(6)} s  (the same writes from one file; apply/floor ${ratio.toFixed(2)}×, medians)`,
  );
  console.log(
    `  no-op plan           ${median(rounds.map((x) => x.noop))
      .toFixed(2)
      .padStart(6)} s  (${rounds[0]!.noopStatements} statements in ${rounds[0]!.noopMessages} messages)`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
  await fx.cleanup();
}
