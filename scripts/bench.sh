#!/usr/bin/env bash
# Prints the performance figures the issues name (see each section's target).
set -euo pipefail
cd "$(dirname "$0")/.."
# Node 22+ (Node 24 from the npm registry when the machine's is older).
source scripts/ensure-node.sh
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/ensure-moto.sh
npm run --silent build
node --import tsx bench/core.ts
node --import tsx bench/aws.ts
node --import tsx bench/access.ts
# The console's matrix is measured in Debian's chromium.
bash scripts/ensure-chromium.sh
node --import tsx bench/console.ts
pg_line=$(bash scripts/pg-setup.sh | tail -n 1)
export "${pg_line?}"
node --import tsx bench/postgres.ts
rgw_lines=$(bash scripts/rgw-setup.sh | tail -n 3)
while read -r line; do export "${line?}"; done <<<"$rgw_lines"
node --import tsx bench/rgw.ts
mysql_line=$(bash scripts/mysql-setup.sh | tail -n 1)
export "${mysql_line?}"
node --import tsx bench/mysql.ts
# wrk loads the SCIM server from a process of its own (Debian's package).
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
  $apt_get install -y wrk >/dev/null 2>&1 || { $apt_get update >/dev/null && $apt_get install -y wrk >/dev/null; }
fi
node --import tsx bench/scim.ts
node --import tsx bench/sessions.ts
# The CI's wall time (minutes: the whole test suite), only when asked for.
if [ "${BENCH_CI:-0}" = 1 ]; then
  bash scripts/ci-time.sh
fi
