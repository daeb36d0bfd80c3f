// AWS benchmark against moto (IAM enforcement on), through a counting proxy: wall time and the
// number of HTTP requests moto received for (a) apply from empty and (b) a no-op plan.
// Workload (issue 2): N principals in 10 groups, each group one read grant on its own prefix,
// 2 memberships and 1 key per principal. Reference: Terraform 1.11 + AWS provider on this
// machine, same moto and workload, N=500: apply 68 s / 3,116 requests; no-op plan 19 s / 1,570.
//
// Throttled (issue 10): the same workload, N=200, behind a proxy that throttles each IAM action
// above 20 requests/s the way AWS does (test/support/throttle-proxy.ts). The bound is the busiest
// action's requests ÷ its rate (AddUserToGroup: 400 ÷ 20 = 20 s). Targets: exit 0, wall ≤ 1.2×
// the bound, < 5 % of requests throttled. Reference: Terraform on the same proxy, 2.8–3.1× the
// bound with 11–13 % throttled.
import { cpus } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/app/io.js';
import { startMoto } from '../test/support/moto.js';
import { startProxy } from '../test/support/http-proxy.js';
import { startThrottlingProxy } from '../test/support/throttle-proxy.js';

const SIZES = (process.env.BENCH_AWS_PRINCIPALS ?? '500,1000').split(',').filter(Boolean).map(Number);
const GROUPS = 10;
const THROTTLED_PRINCIPALS = Number(process.env.BENCH_AWS_THROTTLED_PRINCIPALS ?? 200);
const THROTTLE_RATE = 20;

function spec(n: number): string {
  const l = ['version: 1', 'backends:', '  aws: { type: aws }', 'datasets:'];
  for (let g = 0; g < GROUPS; g++) l.push(`  ds${g}: { backend: aws, bucket: ai-model-data, prefix: team${g}/ }`);
  l.push('groups:');
  for (let g = 0; g < GROUPS; g++) l.push(`  g${g}: { grants: [{ dataset: ds${g}, access: read }] }`);
  l.push('principals:');
  for (let p = 0; p < n; p++) l.push(`  user${p}: { type: service, groups: [g${p % GROUPS}, g${(p + 1) % GROUPS}] }`);
  return l.join('\n');
}

/** A fresh state directory holding the spec for `n` principals; `run` times one CLI command through `proxy`. */
function workspace(n: number, proxy: { endpoint: string; reset(): void; count(): number }) {
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: moto.admin.accessKeyId,
    AWS_SECRET_ACCESS_KEY: moto.admin.secretAccessKey,
    AWS_REGION: moto.region,
    AWS_ENDPOINT_URL: proxy.endpoint,
  });
  const dir = mkdtempSync(join(tmpdir(), 'dg-bench-'));
  writeFileSync(join(dir, 'datagrant.yaml'), spec(n));
  let out = '';
  const io: Io = {
    stdout: (s) => (out += s),
    stderr: (s) => (out += s),
    env: { ...process.env, DATAGRANT_MASTER_KEY: 'a'.repeat(64) },
    cwd: dir,
    isTTY: false,
    now: () => new Date(),
  };
  const run = async (...args: string[]) => {
    out = '';
    proxy.reset();
    const t = performance.now();
    const code = await main(args, io);
    const s = (performance.now() - t) / 1000;
    if (code !== 0 && !(code === 2 && args.includes('--detailed-exitcode')))
      throw new Error(`datagrant ${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`);
    return { s, requests: proxy.count(), code };
  };
  return { run, output: () => out, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const moto = await startMoto({ auth: true });
const proxy = await startProxy(moto.endpoint);
const throttling = await startThrottlingProxy(moto.endpoint, { ratePerSecond: THROTTLE_RATE });
console.log(`aws: moto with IAM enforcement, ${GROUPS} groups, 2 memberships + 1 key per principal (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'})`);
try {
  for (const n of SIZES) {
    await moto.reset();
    const { run, output, remove } = workspace(n, proxy);
    const applied = await run('apply', '--auto-approve', '--concurrency', process.env.BENCH_CONCURRENCY ?? '16');
    const noop = await run('plan', '--detailed-exitcode');
    if (noop.code !== 0) throw new Error(`the plan after apply is not empty:\n${output().slice(-3000)}`);
    const perPrincipal = (applied.requests / n).toFixed(2);
    console.log(
      `  N=${String(n).padEnd(5)} apply from empty  ${applied.s.toFixed(1).padStart(6)} s  ${String(applied.requests).padStart(6)} requests (${perPrincipal}/principal; target ≤ 22.7 s at N=500, ≤ 4/principal + fixed)`,
    );
    console.log(
      `  N=${String(n).padEnd(5)} no-op plan        ${noop.s.toFixed(1).padStart(6)} s  ${String(noop.requests).padStart(6)} requests (target: constant, ≤ 78 = Terraform's 1,570 / 20)`,
    );
    remove();
  }
  if (THROTTLED_PRINCIPALS > 0) {
    const n = THROTTLED_PRINCIPALS;
    await moto.reset();
    const { run, output, remove } = workspace(n, throttling);
    const applied = await run('apply', '--auto-approve', '--concurrency', process.env.BENCH_CONCURRENCY ?? '16');
    const { requests, throttled, byAction } = throttling.stats();
    const [busiest, most] = Object.entries(byAction).sort(([, a], [, b]) => b.requests - b.throttled - (a.requests - a.throttled))[0]!;
    const bound = (most.requests - most.throttled) / THROTTLE_RATE;
    const noop = await run('plan', '--detailed-exitcode');
    if (noop.code !== 0) throw new Error(`the plan after the throttled apply is not empty:\n${output().slice(-3000)}`);
    console.log(
      `  N=${String(n).padEnd(5)} apply from empty, ${THROTTLE_RATE} req/s per action: ${applied.s.toFixed(1)} s; bound ${bound.toFixed(1)} s (${busiest} ${most.requests - most.throttled} ÷ ${THROTTLE_RATE}); ` +
        `ratio ${(applied.s / bound).toFixed(2)}; ${throttled} of ${requests} requests throttled (${((100 * throttled) / requests).toFixed(1)} %) (target: exit 0, ratio ≤ 1.2, < 5 %; Terraform 2.8–3.1, 11–13 %)`,
    );
    remove();
  }
} finally {
  await throttling.close();
  await proxy.close();
  await moto.stop();
}
