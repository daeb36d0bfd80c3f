// Ceph RGW benchmark against the local gateway (scripts/rgw-setup.sh), through a counting proxy:
// wall time and the number of HTTP requests the gateway received for (a) apply from empty and
// (b) a no-op plan, through the CLI's own code path. Workload as bench/aws.ts: N principals in 10
// groups, each group one read grant on its own prefix, 2 groups and 1 key per principal. RGW has
// no groups, so each principal holds 2 inline policies.
//
// What it costs, by construction: apply is per principal 1 user + 1 key (its metadata read, the
// key) + 2 policies = 5 requests; a no-op plan 1 list per 1,000 uids + 1 metadata read per user.
import { cpus, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/app/io.js';
import { startProxy } from '../test/support/http-proxy.js';
import { rgwFixture } from '../test/support/rgw.js';

const SIZES = (process.env.BENCH_RGW_PRINCIPALS ?? '500').split(',').filter(Boolean).map(Number);
const GROUPS = 10;
const fx = rgwFixture('bench');
const bucket = await fx.makeBucket('data', []);
const proxy = await startProxy(fx.rgw.endpoint);

function spec(n: number): string {
  const l = [
    'version: 1',
    'backends:',
    `  onprem: { type: rgw, endpoint: "${proxy.endpoint}", accessKeyId: "\${RGW_KEY}", secretAccessKey: "\${RGW_SECRET}", userPrefix: ${fx.prefix} }`,
    'datasets:',
  ];
  for (let g = 0; g < GROUPS; g++) l.push(`  ds${g}: { backend: onprem, bucket: ${bucket}, prefix: team${g}/ }`);
  l.push('groups:');
  for (let g = 0; g < GROUPS; g++) l.push(`  g${g}: { grants: [{ dataset: ds${g}, access: read }] }`);
  l.push('principals:');
  for (let p = 0; p < n; p++) l.push(`  user${p}: { type: service, groups: [g${p % GROUPS}, g${(p + 1) % GROUPS}] }`);
  return l.join('\n');
}

console.log(`rgw: N principals in ${GROUPS} groups, 2 groups each, through a counting proxy (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'})`);
try {
  for (const n of SIZES) {
    const dir = mkdtempSync(join(tmpdir(), 'dg-rgwbench-'));
    writeFileSync(join(dir, 'datagrant.yaml'), spec(n));
    let out = '';
    const io: Io = {
      stdout: (s) => (out += s),
      stderr: (s) => (out += s),
      env: { ...process.env, RGW_KEY: fx.rgw.admin.accessKeyId, RGW_SECRET: fx.rgw.admin.secretAccessKey, DATAGRANT_MASTER_KEY: 'c'.repeat(64) },
      cwd: dir,
      isTTY: false,
      now: () => new Date(),
    };
    const run = async (...args: string[]) => {
      out = '';
      proxy.reset();
      const t = performance.now();
      const code = await main(args, io);
      if (code !== 0 && !(args.includes('--detailed-exitcode') && code === 2))
        throw new Error(`datagrant ${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`);
      return { s: (performance.now() - t) / 1000, requests: proxy.count(), code };
    };
    try {
      await run('init');
      const applied = await run('apply', '--auto-approve');
      const noop = await run('plan', '--detailed-exitcode');
      if (noop.code !== 0) throw new Error(`the plan after apply is not empty:\n${out.slice(-3000)}`);
      const destroyed = await run('destroy', '--auto-approve');
      console.log(
        `  N=${String(n).padEnd(5)} apply from empty  ${applied.s.toFixed(1).padStart(6)} s  ${String(applied.requests).padStart(6)} requests (${(applied.requests / n).toFixed(2)}/principal)`,
      );
      console.log(
        `  N=${String(n).padEnd(5)} no-op plan        ${noop.s.toFixed(1).padStart(6)} s  ${String(noop.requests).padStart(6)} requests (1 list + 1 per user)`,
      );
      console.log(`  N=${String(n).padEnd(5)} destroy           ${destroyed.s.toFixed(1).padStart(6)} s  ${String(destroyed.requests).padStart(6)} requests`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  await proxy.close();
  await fx.cleanup();
}
