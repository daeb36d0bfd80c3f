#!/usr/bin/env bash
# The CI's wall time: runs the whole of scripts/test.sh (lint, type-check, build, every test) and
# prints how long it took, with the machine's load before and after, then the slowest test files.
# Long (minutes) and heavy: run on its own, or from `BENCH_CI=1 npm run bench`; arguments are
# passed on to vitest (a file name runs only that file).
set -uo pipefail
cd "$(dirname "$0")/.."
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime; }
before=$(load)
start=$(date +%s.%N)
bash scripts/test.sh "$@"
status=$?
end=$(date +%s.%N)
after=$(load)
source scripts/ensure-node.sh
node -e '
  const [start, end, status, before, after, cpus] = process.argv.slice(1);
  console.log(`ci wall time: ${(end - start).toFixed(0)} s (exit ${status}); load average before ${before}, after ${after}; ${cpus} CPUs`);
  let r;
  try {
    r = JSON.parse(require("fs").readFileSync(".tmp/vitest.json", "utf8"));
  } catch {
    process.exit(0);
  }
  const files = r.testResults
    .map((t) => ({ s: (t.endTime - t.startTime) / 1000, name: require("path").relative(process.cwd(), t.name) }))
    .sort((a, b) => b.s - a.s);
  console.log(`  tests (vitest): ${((Math.max(...r.testResults.map((t) => t.endTime)) - r.startTime) / 1000).toFixed(0)} s; slowest files:`);
  for (const f of files.slice(0, 8)) console.log(`    ${f.s.toFixed(0).padStart(5)} s  ${f.name}`);
' "$start" "$end" "$status" "$before" "$after" "$(nproc)"
exit $status
