// AWS benchmark against moto (IAM enforcement on), through a counting proxy: wall time and the
// number of HTTP requests moto received for (a) apply from empty and (b) a no-op plan.
// Workload (issue 2): N principals in 10 groups, each group one read grant on its own prefix,
// 2 memberships and 1 key per principal. Reference: Terraform 1.11 + AWS provider on this
// machine, same moto and workload, N=500: apply 68 s / 3,116 requests; no-op plan 19 s / 1,570.
import { cpus } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/app/io.js';
import { silenceSdkNodeVersionWarning } from '../src/app/warnings.js';
import { startMoto } from '../test/support/moto.js';
import { startProxy } from '../test/support/http-proxy.js';

silenceSdkNodeVersionWarning();
const SIZES = (process.env.BENCH_AWS_PRINCIPALS ?? '500,1000').split(',').map(Number);
const GROUPS = 10;

function spec(n: number): string {
  const l = ['version: 1', 'backends:', '  aws: { type: aws }', 'datasets:'];
  for (let g = 0; g < GROUPS; g++) l.push(`  ds${g}: { backend: aws, bucket: ai-model-data, prefix: team${g}/ }`);
  l.push('groups:');
  for (let g = 0; g < GROUPS; g++) l.push(`  g${g}: { grants: [{ dataset: ds${g}, access: read }] }`);
  l.push('principals:');
  for (let p = 0; p < n; p++) l.push(`  user${p}: { type: service, groups: [g${p % GROUPS}, g${(p + 1) % GROUPS}] }`);
  return l.join('\n');
}

const moto = await startMoto({ auth: true });
const proxy = await startProxy(moto.endpoint);
console.log(`aws: moto with IAM enforcement, ${GROUPS} groups, 2 memberships + 1 key per principal (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'})`);
try {
  for (const n of SIZES) {
    await moto.reset();
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: moto.admin.accessKeyId,
      AWS_SECRET_ACCESS_KEY: moto.admin.secretAccessKey,
      AWS_REGION: moto.region,
      AWS_ENDPOINT_URL: proxy.endpoint,
    });
    const dir = mkdtempSync(join(tmpdir(), 'dg-bench-'));
    writeFileSync(join(dir, 'datagrant.yaml'), spec(n));
    let out = '';
    const io: Io = { stdout: (s) => (out += s), stderr: (s) => (out += s), env: { ...process.env, DATAGRANT_MASTER_KEY: 'a'.repeat(64) }, cwd: dir, isTTY: false, now: () => new Date() };
    const run = async (...args: string[]) => {
      out = '';
      proxy.reset();
      const t = performance.now();
      const code = await main(args, io);
      const s = (performance.now() - t) / 1000;
      if (code !== 0 && !(code === 2 && args.includes('--detailed-exitcode'))) throw new Error(`datagrant ${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`);
      return { s, requests: proxy.count(), code };
    };
    const applied = await run('apply', '--auto-approve', '--concurrency', process.env.BENCH_CONCURRENCY ?? '16');
    const noop = await run('plan', '--detailed-exitcode');
    if (noop.code !== 0) throw new Error(`the plan after apply is not empty:\n${out.slice(-3000)}`);
    const perPrincipal = (applied.requests / n).toFixed(2);
    console.log(`  N=${String(n).padEnd(5)} apply from empty  ${applied.s.toFixed(1).padStart(6)} s  ${String(applied.requests).padStart(6)} requests (${perPrincipal}/principal; target ≤ 22.7 s at N=500, ≤ 4/principal + fixed)`);
    console.log(`  N=${String(n).padEnd(5)} no-op plan        ${noop.s.toFixed(1).padStart(6)} s  ${String(noop.requests).padStart(6)} requests (target: constant, ≤ 78 = Terraform's 1,570 / 20)`);
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  await proxy.close();
  await moto.stop();
}
